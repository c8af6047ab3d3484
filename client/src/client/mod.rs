//! [`Client`]: one device's view of Confide. It owns the device's signature
//! key and every group secret; the delivery service only ever sees
//! PublicMessage handshakes and PrivateMessage ciphertext.
//!
//! Ratchet-tree operations and membership changes happen here. A commit that
//! loses the race for its epoch is dropped, the client catches up from the
//! group log, and the operation is rebuilt and retried without the caller
//! doing anything. A commit that never got an answer stays pending, in doubt,
//! until the group log shows whether the group took it.
//!
//! One `impl Client` per concern: `session.rs` (register, open,
//! authenticate), `key_packages.rs`, `groups.rs` (create, join, add,
//! remove, update, group state), `contacts.rs` (pinned identity keys and
//! safety numbers), `commit.rs` (the commit protocol and
//! commits in doubt), `outbox.rs` (sending messages), `stream.rs` (the event
//! stream and catching up), `processing.rs` (applying what arrives),
//! `linking.rs` (a new device waiting to be linked), `approve.rs` (an
//! existing device linking it and adding it to its groups), `devices.rs`
//! (listing a user's devices, revoking one), `resync.rs` (rejoining a
//! group by external commit when stuck or restored), `history.rs` (each
//! group's history, name and unread messages, and the MIMI content messages
//! are sent as) and `leave.rs` (leaving a group by proposing its own
//! removal).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use confide_core::ClientId;
use confide_core::certificate::DeviceCertificate;
use confide_proto::v1;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;

use crate::api::Api;
use crate::error::{ClientError, ClientResult, mls};
use crate::events::{Event, GroupId};
use crate::identity::UserIdentity;
use crate::lock::StateLock;
use crate::roster;
use crate::store::{Provider, StateDb};
use crate::verify::Verifier;

mod approve;
mod commit;
mod contacts;
mod devices;
mod groups;
mod history;
mod key_packages;
mod leave;
mod linking;
mod outbox;
mod processing;
mod resync;
mod session;
mod stream;

pub use approve::{GroupLinked, LinkRequest};
pub use commit::CommitSummary;
pub use devices::{DeviceStatus, GroupRemoval, ListedDevice};
pub use groups::Added;
pub use key_packages::KEY_PACKAGE_BATCH;
pub use leave::Leave;
pub use linking::PendingLink;
pub use stream::Incoming;

/// How often an operation is rebuilt after losing a commit race (and a
/// message encrypted again after losing one to a commit).
const MAX_COMMIT_ATTEMPTS: u32 = 32;

fn to_bytes(message: MlsMessageOut) -> ClientResult<Vec<u8>> {
    message.to_bytes().map_err(mls)
}

pub struct Client {
    id: ClientId,
    signer: SignatureKeyPair,
    /// The user's identity key, which certifies (and revokes) its devices.
    identity: UserIdentity,
    /// The identity key's certificate for this device, in each of its leaves.
    certificate: DeviceCertificate,
    credential: CredentialWithKey,
    /// Checks every leaf this client sees against its users' pinned keys.
    verifier: Verifier,
    provider: Provider,
    db: StateDb,
    api: Api,
    groups: HashMap<GroupId, MlsGroup>,
    /// Events not yet handed over, with their numbers in the state file.
    events: VecDeque<(i64, Event)>,
    stream: Option<tonic::Streaming<v1::Envelope>>,
    /// Groups with removals proposed (by the DS, or by a member leaving)
    /// that this client has yet to commit.
    pending_removals: BTreeSet<GroupId>,
    /// Per group, the application messages from its current epoch this
    /// client could not decrypt in a row (a run means it is stuck).
    undecryptable_run: HashMap<GroupId, u32>,
    /// The pause before the first resend of an unanswered commit.
    commit_resend_after: Duration,
    /// When the current session should be renewed, if the DS said when it
    /// ends.
    session_renew_at: Option<std::time::Instant>,
    /// The state file's lock, held as long as the client lives (last, so
    /// it is released after the state's connections close).
    _lock: Option<StateLock>,
}

impl Client {
    pub fn id(&self) -> &ClientId {
        &self.id
    }

    /// Sets the pause before the first resend of a commit that got no
    /// answer; the pause grows linearly over the resends, so the default
    /// 200 ms gives the DS about 11 s before the commit is left in doubt
    /// ([`ClientError::CommitInDoubt`]). For tests, which shorten it.
    pub fn set_commit_resend_pause(&mut self, pause: Duration) {
        self.commit_resend_after = pause;
    }

    /// The authenticated connection, for calls the library does not wrap.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// The user's identity key, which every device of the user carries a
    /// certificate by.
    pub fn identity_key(&self) -> &[u8] {
        self.identity.public()
    }

    /// The user's identity key pair, to hand to a device being linked or
    /// into a backup.
    pub fn identity(&self) -> &UserIdentity {
        &self.identity
    }

    /// This device's certificate by its user's identity key.
    pub fn certificate(&self) -> &DeviceCertificate {
        &self.certificate
    }

    /// This device's key fingerprint, as other members see it in their
    /// rosters ([`crate::GroupMember::fingerprint`]).
    pub fn fingerprint(&self) -> String {
        roster::fingerprint(self.signer.public())
    }

    /// Secret material this client holds that must never reach the DS: its
    /// signature private key and, per group, a secret exported from the
    /// current epoch. For leak tests (searching what the DS stores, logs and
    /// exports); the client already owns these keys.
    #[doc(hidden)]
    pub fn secret_material(&self) -> ClientResult<Vec<Vec<u8>>> {
        // openmls exposes the private key only through its serde form.
        let signer = serde_json::to_value(&self.signer).map_err(mls)?;
        let private: Vec<u8> = serde_json::from_value(signer["private"].clone())
            .or_else(|_| serde_json::from_value(signer["private"]["vec"].clone()))
            .map_err(|e| ClientError::Invalid(format!("reading the signature key: {e}")))?;
        let mut secrets = vec![private];
        for group in self.groups.values() {
            secrets.push(
                group
                    .export_secret(self.provider.crypto(), "confide leak test", b"", 32)
                    .map_err(mls)?,
            );
        }
        Ok(secrets)
    }
}

/// Fails to compile if a `Client` future could not be spawned on a
/// multi-threaded runtime.
#[cfg(test)]
#[allow(dead_code)]
fn client_futures_are_send(client: &mut Client, group: &[u8]) {
    fn send<T: Send>(_: T) {}
    send(client.sync());
    send(client.next_event());
    send(client.receive());
    send(client.catch_up());
    send(client.send(group, b""));
    send(client.self_update(group));
    send(client.add_users(group, &[]));
    send(client.remove_users(group, &[]));
    send(client.leave(group));
    send(client.create_group());
    send(client.authenticate());
    send(client.publish_key_packages(1, false));
    send(client.rejoin(group));
}
