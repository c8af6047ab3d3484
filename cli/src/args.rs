//! The command line, as clap parses it.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use confide_client::{Api, TlsOptions};

#[derive(Parser)]
#[command(
    name = "confide",
    version,
    about = "Confide: end-to-end encrypted group chat on MLS"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Print JSON instead of text: one object per line (a stream of
    /// events, a list, or a command's result).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct Conn {
    /// Delivery service address.
    #[arg(
        long,
        env = "CONFIDE_ENDPOINT",
        default_value = "http://127.0.0.1:7420"
    )]
    pub endpoint: String,
    /// This device's state file (keys and groups; keep it private).
    #[arg(long, env = "CONFIDE_STATE")]
    pub state: PathBuf,
    /// A CA certificate (PEM) to trust for an `https://` endpoint, besides
    /// the web PKI roots.
    #[arg(long, env = "CONFIDE_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// A client certificate and key (PEM), for a DS that requires them.
    #[arg(long, env = "CONFIDE_CLIENT_CERT", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The private key (PEM) of `--client-cert`.
    #[arg(long, env = "CONFIDE_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Allow `http://` to a host that is not loopback (unencrypted transport).
    #[arg(long)]
    allow_plaintext: bool,
}

impl Conn {
    pub async fn api(&self) -> anyhow::Result<Api> {
        Api::connect_with(&self.endpoint, &self.tls()?)
            .await
            .with_context(|| format!("connecting to {}", self.endpoint))
    }

    /// The connection, made at its first call: for `confide chat`, which
    /// starts without the DS.
    pub fn lazy_api(&self) -> anyhow::Result<Api> {
        Api::connect_lazily_with(&self.endpoint, &self.tls()?)
            .with_context(|| format!("connecting to {}", self.endpoint))
    }

    fn tls(&self) -> anyhow::Result<TlsOptions> {
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        Ok(TlsOptions {
            ca_certificate: self.ca_cert.as_ref().map(read).transpose()?,
            client_identity: match (&self.client_cert, &self.client_key) {
                (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                _ => None,
            },
            allow_plaintext: self.allow_plaintext,
        })
    }
}

/// `--group`, as every command on one group takes it.
#[derive(clap::Args)]
pub struct Group {
    /// The group: its name (as `confide groups` lists it), its id, or the
    /// start of the id no other group of this device shares.
    #[arg(long = "group", value_name = "GROUP")]
    pub id: String,
}

#[derive(Subcommand)]
pub enum IdentityCommand {
    /// Writes a backup of this device: the user's identity key and the
    /// device's signature key (a secret: whoever holds it can act as the
    /// device and certify devices as its user), to restore the device with
    /// `confide register --restore-identity`.
    Export {
        #[command(flatten)]
        conn: Conn,
        /// The file to write (made readable by its owner only); standard
        /// output if not given.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum Command {
    /// Plays a conversation between alice, bob and carol on an in-process DS.
    Demo,
    /// Creates a device identity in the state file and registers it.
    Register {
        #[command(flatten)]
        conn: Conn,
        /// Your user name, the one others add you by (`confide add USER`).
        #[arg(long)]
        user: String,
        /// A name for this device, unique among your devices (`laptop`,
        /// `phone`).
        #[arg(long)]
        device: String,
        /// Registration token, if the DS requires one.
        #[arg(long, env = "CONFIDE_REGISTRATION_TOKEN", default_value = "")]
        token: String,
        /// Restore this device after losing its state file, from its backup
        /// (`confide identity export`): the device is certified by the
        /// backed-up identity key and rejoins every group it was in.
        #[arg(long)]
        restore_identity: Option<PathBuf>,
    },
    /// The user's identity key.
    Identity {
        #[command(subcommand)]
        command: IdentityCommand,
    },
    /// Makes a new device of an existing user: shows a code and an
    /// authentication string, and waits until one of the user's devices
    /// approves it (`confide approve`).
    Link {
        #[command(flatten)]
        conn: Conn,
        /// Your user name, the one others add you by (`confide add USER`).
        #[arg(long)]
        user: String,
        /// A name for this device, unique among your devices (`laptop`,
        /// `phone`).
        #[arg(long)]
        device: String,
        /// Registration token, if the DS requires one.
        #[arg(long, env = "CONFIDE_REGISTRATION_TOKEN", default_value = "")]
        token: String,
        /// Seconds to wait for the approval.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Links a new device of this user: takes the code (or URI) it shows,
    /// checks the authentication string, certifies it and adds it to every
    /// group of this device.
    Approve {
        #[command(flatten)]
        conn: Conn,
        /// `ABCD-EFGH-JKLM` or `confide://link/USER/ABCD-EFGH-JKLM`.
        code: String,
        /// The 6 digits the new device shows; asked for if not given.
        #[arg(long)]
        sas: Option<String>,
    },
    /// Lists a user's devices (this device's user by default), each
    /// certificate and revocation checked by this device.
    Devices {
        #[command(flatten)]
        conn: Conn,
        /// The user whose devices to list; yours if not given.
        user: Option<String>,
    },
    /// Revokes another device of this user and removes it from every group
    /// of this device; it can never come back.
    RemoveDevice {
        #[command(flatten)]
        conn: Conn,
        /// `USER/DEVICE`.
        device: String,
    },
    /// Creates a group and prints its id.
    CreateGroup {
        #[command(flatten)]
        conn: Conn,
        /// A name for the group, shown to every member (end-to-end
        /// encrypted, like messages: the server never sees it).
        #[arg(long)]
        name: Option<String>,
        /// A topic for the group, shown with its name.
        #[arg(long, requires = "name")]
        topic: Option<String>,
    },
    /// Names the group (and sets its topic) for every member; the server
    /// never sees either.
    Rename {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        group: Group,
        /// The new name.
        name: String,
        /// A new topic for the group (`""` clears it); without it, the
        /// topic stays.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Prints the group's history on this device, your own messages
    /// included, and marks it read.
    History {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        group: Group,
        /// Only the last N events.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Adds every device of the users to a group.
    Add {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        group: Group,
        /// The users to add; every certified device of each is added.
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Removes every device of the users from a group.
    Remove {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        group: Group,
        /// The users to remove; every device of each is removed.
        #[arg(required = true)]
        users: Vec<String>,
    },
    /// Leaves a group, with every device of yours in it: proposes your
    /// removal, which another member's device commits when it next syncs.
    Leave {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        group: Group,
    },
    /// Sends a message.
    Send {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        group: Group,
        /// The message; `-` reads it from standard input.
        text: String,
    },
    /// Processes everything pending and prints it.
    Sync {
        #[command(flatten)]
        conn: Conn,
    },
    /// The interactive chat: your groups, their conversations and an
    /// input line, in the terminal (`/help` lists its commands).
    Chat {
        #[command(flatten)]
        conn: Conn,
        /// Log to standard error instead of `STATE.log` (under the chat's
        /// screen: for debugging).
        #[arg(long)]
        verbose: bool,
    },
    /// Prints events as they arrive until interrupted.
    Listen {
        #[command(flatten)]
        conn: Conn,
    },
    /// Prints a group's members with their key fingerprints, whether each
    /// device is certified by its user (a GHOST is not), and the group's
    /// safety code, to compare with the other members out of band.
    Members {
        #[command(flatten)]
        conn: Conn,
        #[command(flatten)]
        group: Group,
    },
    /// Lists this device's groups: name, id, members and unread messages,
    /// one line each.
    Groups {
        #[command(flatten)]
        conn: Conn,
    },
    /// Prints each user whose identity key this device pinned (the first
    /// one seen certifying a device of theirs), its fingerprint, whether
    /// you verified it and whether another key has appeared since.
    Contacts {
        #[command(flatten)]
        conn: Conn,
    },
    /// Prints the safety number between you and USER; compare it with
    /// USER's (`confide verify YOU` on their device) in person or on a call.
    Verify {
        #[command(flatten)]
        conn: Conn,
        /// The user to compare safety numbers with.
        user: String,
        /// The numbers matched: mark USER's identity key verified or, if it
        /// changed, accept the new key (its devices count as USER's from
        /// now on, the old key's no longer).
        #[arg(long)]
        accept: bool,
    },
    /// Prints a completion script for SHELL: for bash,
    /// `confide completions bash > ~/.local/share/bash-completion/completions/confide`.
    Completions {
        /// The shell to complete in.
        shell: clap_complete::Shell,
    },
}
