//! The one-shot commands: each opens the state file, or hands itself to the
//! `confide listen` holding it, and prints what it did.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use confide_client::display::safe;
use confide_client::roster::fingerprint;
use confide_client::{Backup, Client, ClientError, ClientId, Event, Leave, StateLocation};

use serde_json::json;

use crate::args::Conn;
use crate::handoff::{self, Answer, HandoffError, Request};
use crate::json::Printer;
use crate::output;

/// `confide register`: a new device identity in a new state file.
pub async fn register(
    conn: &Conn,
    user: String,
    device: String,
    token: &str,
    json: bool,
) -> anyhow::Result<()> {
    let api = conn.api().await?;
    let client = Client::register(
        api,
        ClientId::new(user, device)?,
        &StateLocation::File(conn.state.clone()),
        token,
    )
    .await
    .map_err(|error| {
        let refused_without_certificate = matches!(&error, ClientError::Rpc(status)
            if status.message().contains("certificate") || status.message().contains("link"));
        let error = anyhow::Error::from(error);
        match refused_without_certificate {
            // The DS says why; the CLI says what to type.
            true => error.context(
                "a new device of an existing user is linked, not registered: run `confide link --user U --device D` on it and `confide approve CODE` on one of the user's devices",
            ),
            false => error,
        }
    })?;
    match json {
        true => output::println(json!({ "registered": client.id().to_string() })),
        false => output::println(format_args!("registered {}", client.id())),
    }
    Ok(())
}

/// `confide register --restore-identity`: the device again, in a new state
/// file, certified by the restored identity key (with its backed-up
/// signature key, or a new one); it rejoins every group the DS has it in.
pub async fn restore(
    conn: &Conn,
    user: String,
    device: String,
    token: &str,
    identity: &Path,
    json: bool,
) -> anyhow::Result<()> {
    let secret =
        std::fs::read(identity).with_context(|| format!("reading {}", identity.display()))?;
    let backup = Backup::from_secret_bytes(&secret)?;
    let api = conn.api().await?;
    let (client, groups) = Client::restore(
        api,
        ClientId::new(user, device)?,
        &StateLocation::File(conn.state.clone()),
        token,
        backup,
    )
    .await?;
    if json {
        output::println(json!({
            "restored": client.id().to_string(),
            "rejoined": groups.iter().map(hex::encode).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    output::println(format_args!("restored {}", client.id()));
    for group in groups {
        output::println(format_args!("[{}] re-joined (resync)", hex::encode(group)));
    }
    Ok(())
}

/// `confide identity export`: the user's identity key and this device's
/// signature key, for a backup.
pub async fn export_identity(conn: &Conn, out: Option<&Path>) -> anyhow::Result<()> {
    let client = open(conn).await?;
    let secret = client.backup()?.to_secret_bytes()?;
    eprintln!(
        "warning: this is {}'s identity key and {}'s signature key, a secret: whoever holds it can act as this device and certify devices as this user. Keep it offline.",
        client.id().user(),
        client.id()
    );
    match out {
        Some(path) => {
            write_private(path, &secret).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            use std::io::Write as _;
            let mut stdout = std::io::stdout();
            stdout.write_all(&secret)?;
            stdout.write_all(b"\n")?;
        }
    }
    Ok(())
}

/// Writes a new file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// Opens the state file's client; a state file another process holds is
/// reported as such ([`ClientError::StateLocked`]), without context.
pub async fn open(conn: &Conn) -> anyhow::Result<Client> {
    if !conn.state.exists() {
        // Before connecting, so that a mistyped path is reported as such.
        return Err(ClientError::NoStateFile(conn.state.clone()).into());
    }
    let api = conn.api().await?;
    match Client::open(api, &StateLocation::File(conn.state.clone())).await {
        Err(locked @ ClientError::StateLocked { .. }) => Err(locked.into()),
        opened => opened.with_context(|| format!("opening {}", conn.state.display())),
    }
}

/// The state file's client, signed in; or, when the DS cannot be reached,
/// the client as its state file has it (its groups and history are shown
/// at once) with why, for the connection to sign in once it can.
pub async fn open_even_offline(conn: &Conn) -> anyhow::Result<(Client, Option<String>)> {
    let error = match open(conn).await {
        Ok(client) => return Ok((client, None)),
        Err(error) => error,
    };
    let unreachable = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<ClientError>())
        .is_some_and(|error| {
            // A removed device can still read what it holds.
            error.is_connection_lost() || matches!(error, ClientError::SignInRefused(_))
        });
    if !unreachable {
        return Err(error);
    }
    tracing::info!(error = %format!("{error:#}"), "starting without the delivery service");
    let client = Client::open_offline(conn.lazy_api()?, &StateLocation::File(conn.state.clone()))?;
    Ok((client, Some(format!("{error:#}"))))
}

/// Catches up with the DS, or, when it cannot be reached, warns that what
/// follows is `what` this device holds.
async fn catch_up_if_reachable(client: &mut Client, what: &str) -> anyhow::Result<()> {
    match client.catch_up().await {
        Err(error) if error.is_connection_lost() || error.needs_new_session() => {
            tracing::warn!("{error}; {what}");
            Ok(())
        }
        caught_up => Ok(caught_up?),
    }
}

/// An error as `main` prints it, with its causes, but never a backtrace
/// (for an answer to a handed-over command).
pub fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    let causes: Vec<String> = error.chain().skip(1).map(ToString::to_string).collect();
    if !causes.is_empty() {
        text.push_str("\n\nCaused by:");
        for (i, cause) in causes.iter().enumerate() {
            match causes.len() {
                1 => text.push_str(&format!("\n    {cause}")),
                _ => text.push_str(&format!("\n    {i}: {cause}")),
            }
        }
    }
    text
}

/// The group `--group` names: a group of this device by its name (as its
/// members set it), or by its id, as `confide create-group` printed it, or
/// the start of the id that no other group of this device shares.
fn group_id(client: &Client, given: &str) -> anyhow::Result<Vec<u8>> {
    group_among(client, client.groups(), given)
}

/// Like [`group_id`], also among groups this device has left but kept the
/// history of.
fn history_group(client: &Client, given: &str) -> anyhow::Result<Vec<u8>> {
    group_among(client, groups_and_former(client)?, given)
}

/// This device's groups, then those it left whose history it keeps, each
/// part in id order.
pub fn groups_and_former(client: &Client) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut groups = client.groups();
    groups.sort();
    let mut former = client.groups_with_history()?;
    former.sort();
    for group in former {
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    Ok(groups)
}

/// The one of `groups` that `given` names (see [`group_id`]).
fn group_among(client: &Client, groups: Vec<Vec<u8>>, given: &str) -> anyhow::Result<Vec<u8>> {
    let named: Vec<&Vec<u8>> = groups
        .iter()
        .filter(|group| {
            client
                .group_profile(group)
                .is_ok_and(|profile| profile.name.as_deref() == Some(given))
        })
        .collect();
    match named.as_slice() {
        [group] => return Ok(group.to_vec()),
        [] => {}
        several => {
            let mut ids: Vec<String> = several.iter().map(hex::encode).collect();
            ids.sort();
            anyhow::bail!(
                "{} groups of this device are named {:?} ({}): give the start of an id instead",
                several.len(),
                safe(given),
                ids.join(", ")
            )
        }
    }
    let prefix = given.to_ascii_lowercase();
    if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
        anyhow::bail!(
            "no group of this device is named {:?}, and it is not a group id (ids are \
             hexadecimal): `confide groups` lists your groups",
            safe(given)
        );
    }
    let mut matching: Vec<Vec<u8>> = groups
        .into_iter()
        .filter(|group| hex::encode(group).starts_with(&prefix))
        .collect();
    match matching.len() {
        1 => Ok(matching.remove(0)),
        // Not here yet: a command that syncs first may find it (a
        // Welcome), and otherwise the client says why it is not here.
        0 if prefix.len().is_multiple_of(2) => {
            Ok(hex::decode(&prefix).context("the group id is hex")?)
        }
        0 => Err(ClientError::UnknownGroup.into()),
        n => {
            let mut ids: Vec<String> = matching.iter().map(hex::encode).collect();
            ids.sort();
            anyhow::bail!(
                "{prefix} starts {n} group ids of this device ({}): give more of the id",
                ids.join(", ")
            )
        }
    }
}

/// An event as the CLI prints it. Everything the CLI prints that came from
/// the network goes through here or through `Event`'s `Display`, which show
/// it with [`safe`]: a member's text cannot drive the terminal or pass for a
/// line of its own.
pub fn line(event: &Event) -> String {
    match event {
        Event::Message {
            group,
            sender,
            body,
            ..
        } => format!(
            "[{}] {}: {}",
            hex::encode(group),
            safe(&sender.to_string()),
            safe(&String::from_utf8_lossy(body))
        ),
        other => match other.group() {
            Some(group) => format!("[{}] {other}", hex::encode(group)),
            None => format!("{other}"),
        },
    }
}

/// Runs a one-shot command on the state file, or hands it to the process
/// holding the file (`confide listen`), and prints what it printed there.
pub async fn one_shot(conn: &Conn, request: Request, json: bool) -> anyhow::Result<()> {
    // A listener holding the file takes the command over its socket, with
    // its own connection: this one's endpoint does not matter then.
    match handoff::hand_over(&conn.state, &request, json).await {
        Ok(answer) => return print_answer(answer),
        Err(HandoffError::NoHolder { .. }) => {}
        Err(error) => return Err(error.into()),
    }
    // What this device holds is readable without the DS.
    let opened = match request {
        Request::History { .. } | Request::Groups => {
            open_even_offline(conn).await.map(|(client, _)| client)
        }
        _ => open(conn).await,
    };
    let locked = match opened {
        Ok(mut client) => {
            let mut out = Printer::new(json);
            let result = execute(&mut client, &request, &mut out).await;
            output::print(out.into_string());
            return result;
        }
        Err(error) => match error.downcast_ref::<ClientError>() {
            Some(ClientError::StateLocked { .. }) => error,
            _ => return Err(error),
        },
    };
    match handoff::hand_over(&conn.state, &request, json).await {
        Ok(answer) => print_answer(answer),
        Err(HandoffError::NoHolder { .. }) => {
            anyhow::bail!("{locked}; try again when it finishes")
        }
        Err(error) => Err(error.into()),
    }
}

/// Prints what the holder of the state file answered to a handed-over
/// command, as if this process had run it.
fn print_answer(answer: Answer) -> anyhow::Result<()> {
    output::print(&answer.stdout);
    if let Some(error) = answer.error {
        // As `main` prints an error it returns.
        eprintln!("Error: {error}");
        std::process::exit(1);
    }
    Ok(())
}

/// Runs a one-shot command on `client`, writing what it prints to `out`.
pub async fn execute(
    client: &mut Client,
    request: &Request,
    out: &mut Printer,
) -> anyhow::Result<()> {
    match request {
        Request::CreateGroup { name, topic } => {
            create_group(client, name.as_deref(), topic.as_deref(), out).await
        }
        Request::Rename { group, name, topic } => {
            rename(
                client,
                &group_id(client, group)?,
                name,
                topic.as_deref(),
                out,
            )
            .await
        }
        Request::History { group, limit } => history(client, group, *limit, out).await,
        Request::Add { group, users } => add(client, &group_id(client, group)?, users, out).await,
        Request::Remove { group, users } => {
            remove(client, &group_id(client, group)?, users, out).await
        }
        Request::Leave { group } => leave(client, &group_id(client, group)?, out).await,
        Request::Send { group, text } => send(client, &group_id(client, group)?, text, out).await,
        Request::Sync => sync(client, out).await,
        Request::Members { group } => members(client, &group_id(client, group)?, out).await,
        Request::Groups => groups(client, out).await,
        Request::Devices { user } => crate::link::devices(client, user.as_deref(), out).await,
        Request::RemoveDevice { device } => crate::link::remove_device(client, device, out).await,
        Request::Contacts => contacts(client, out),
        Request::Verify { user, accept } => verify(client, user, *accept, out),
    }
}

async fn create_group(
    client: &mut Client,
    name: Option<&str>,
    topic: Option<&str>,
    out: &mut Printer,
) -> anyhow::Result<()> {
    let group = client.create_group().await?;
    writeln!(out, "{}", hex::encode(&group))?;
    out.json(json!({ "group": hex::encode(&group), "name": name, "topic": topic }));
    if let Some(name) = name {
        client
            .rename(&group, name, topic)
            .await
            .context("the group was made, but naming it failed: try `confide rename`")?;
    }
    Ok(())
}

async fn rename(
    client: &mut Client,
    group: &[u8],
    name: &str,
    topic: Option<&str>,
    out: &mut Printer,
) -> anyhow::Result<()> {
    // The topic stays unless given; an empty one clears it.
    let kept = client.group_profile(group)?.topic;
    let topic = match topic {
        Some("") => None,
        Some(topic) => Some(topic),
        None => kept.as_deref(),
    };
    let seq = client.rename(group, name, topic).await?;
    writeln!(out, "named the group \"{}\" (#{seq})", safe(name))?;
    out.json(json!({ "group": hex::encode(group), "seq": seq, "name": name, "topic": topic }));
    Ok(())
}

/// The group's history on this device; it is read then.
async fn history(
    client: &mut Client,
    group: &str,
    limit: usize,
    out: &mut Printer,
) -> anyhow::Result<()> {
    // What arrived since is history too; the events stay for `sync`.
    catch_up_if_reachable(client, "this is the history as this device has it").await?;
    let group = history_group(client, group)?;
    for entry in client.history(&group, limit)? {
        writeln!(out, "{}", history_line(client, &entry))?;
        let mut event = crate::json::event_json(&entry.event);
        event["recorded_at_ms"] = json!(entry.at_ms);
        event["own"] =
            json!(matches!(&entry.event, Event::Message { sender, .. } if sender == client.id()));
        out.json(event);
    }
    client.mark_read(&group)?;
    Ok(())
}

/// One entry of `confide history`: when, who, what.
fn history_line(client: &Client, entry: &confide_client::HistoryEntry) -> String {
    match &entry.event {
        Event::Message {
            sender,
            body,
            sent_at_ms,
            ..
        } => {
            let you = match sender == client.id() {
                true => " (you)",
                false => "",
            };
            format!(
                "{}  {}{you}: {}",
                crate::time::date_time(sent_at_ms.unwrap_or(entry.at_ms)),
                safe(&sender.to_string()),
                safe(&String::from_utf8_lossy(body))
            )
        }
        other => format!("{}  * {other}", crate::time::date_time(entry.at_ms)),
    }
}

async fn add(
    client: &mut Client,
    group: &[u8],
    users: &[String],
    out: &mut Printer,
) -> anyhow::Result<()> {
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    let added = client.add_users(group, &users).await?;
    out.json(json!({
        "group": hex::encode(group),
        "epoch": added.commit.epoch,
        "added": added.clients.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "refused": added.refused.iter().map(|ghost| json!({
            "client": ghost.client.to_string(),
            "fingerprint": ghost.fingerprint,
            "reason": ghost.reason,
        })).collect::<Vec<_>>(),
    }));
    for member in added.clients {
        writeln!(out, "added {}", safe(&member.to_string()))?;
    }
    for ghost in added.refused {
        writeln!(
            out,
            "refused {} (key {}): {}",
            safe(&ghost.client.to_string()),
            ghost.fingerprint,
            safe(&ghost.reason)
        )?;
    }
    Ok(())
}

async fn remove(
    client: &mut Client,
    group: &[u8],
    users: &[String],
    out: &mut Printer,
) -> anyhow::Result<()> {
    let users: Vec<&str> = users.iter().map(String::as_str).collect();
    let summary = client.remove_users(group, &users).await?;
    writeln!(out, "removed; group is at epoch {}", summary.epoch)?;
    out.json(json!({ "group": hex::encode(group), "removed": users, "epoch": summary.epoch }));
    Ok(())
}

async fn leave(client: &mut Client, group: &[u8], out: &mut Printer) -> anyhow::Result<()> {
    let group_hex = hex::encode(group);
    match client.leave(group).await? {
        Leave::Proposed { devices, epoch } => {
            let names: Vec<String> = devices.iter().map(ToString::to_string).collect();
            let shown: Vec<String> = names.iter().map(|d| safe(d)).collect();
            writeln!(
                out,
                "asked to leave (removing {}); you are out once another member's device \
                 commits it (`confide sync` or `listen` shows it)",
                shown.join(", ")
            )?;
            out.json(
                json!({ "group": group_hex, "left": "proposed", "epoch": epoch, "devices": names }),
            );
        }
        Leave::Alone => {
            writeln!(
                out,
                "left: nobody else was in the group to tell, so this device forgot it"
            )?;
            out.json(json!({ "group": group_hex, "left": "alone" }));
        }
        Leave::Out => {
            writeln!(out, "you were removed from the group already")?;
            out.json(json!({ "group": group_hex, "left": "already-out" }));
        }
    }
    Ok(())
}

async fn send(
    client: &mut Client,
    group: &[u8],
    text: &str,
    out: &mut Printer,
) -> anyhow::Result<()> {
    match client.send_text(group, text).await {
        Ok(seq) => {
            writeln!(out, "sent as #{seq}")?;
            out.json(json!({ "group": hex::encode(group), "seq": seq }));
        }
        Err(error) if error.is_in_doubt() => anyhow::bail!(
            "no answer from the delivery service ({error}); the message is saved in the \
             state file and will be resent, once, by the next `confide send` (of the \
             same text or another), `sync`, `members` or `listen`"
        ),
        Err(error) => return Err(error.into()),
    }
    Ok(())
}

async fn sync(client: &mut Client, out: &mut Printer) -> anyhow::Result<()> {
    for event in client.sync().await? {
        out.event(&event);
    }
    Ok(())
}

async fn members(client: &mut Client, group: &[u8], out: &mut Printer) -> anyhow::Result<()> {
    // Brings the roster up to date; the events stay for `sync`.
    client.catch_up().await?;
    let epoch = client.epoch(group)?;
    let roster = client.roster(group)?;
    let safety_code = client.safety_code(group)?;
    out.json(json!({
        "group": hex::encode(group),
        "epoch": epoch,
        "members": roster.iter().map(|member| json!({
            "client": member.client.to_string(),
            "fingerprint": member.fingerprint,
            "certified": member.certified,
            "this_device": &member.client == client.id(),
        })).collect::<Vec<_>>(),
        "safety_code": safety_code,
    }));
    writeln!(out, "epoch {epoch}")?;
    for member in roster {
        let you = match (&member.client == client.id(), member.certified) {
            (true, _) => "  (this device)",
            (false, true) => "",
            (false, false) => "  GHOST: not certified by its user",
        };
        writeln!(
            out,
            "{:<32} key {}{you}",
            safe(&member.client.to_string()),
            member.fingerprint
        )?;
    }
    writeln!(out, "safety code {safety_code}")?;
    Ok(())
}

/// Every group of this device: its name, id, members and unread messages,
/// one line each.
async fn groups(client: &mut Client, out: &mut Printer) -> anyhow::Result<()> {
    // Takes in the groups this device was added to; the events stay for
    // `sync`.
    catch_up_if_reachable(client, "these are the groups as this device has them").await?;
    let mut groups = client.groups();
    if groups.is_empty() {
        writeln!(
            out,
            "no groups yet: `confide create-group --name NAME` makes one, or a member adds you"
        )?;
    }
    groups.sort();
    for group in groups {
        let members: Vec<String> = client
            .members(&group)?
            .iter()
            .map(|member| safe(&member.to_string()))
            .collect();
        let profile = client.group_profile(&group)?;
        let unread = client.unread(&group)?;
        out.json(json!({
            "group": hex::encode(&group),
            "name": profile.name,
            "topic": profile.topic,
            "epoch": client.epoch(&group)?,
            "members": client.members(&group)?.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "unread": unread,
        }));
        let name = match profile.name {
            Some(name) => format!("\"{}\"", safe(&name)),
            None => "(no name)".into(),
        };
        writeln!(
            out,
            "{name}  {}  {} member{}: {}  {} unread",
            hex::encode(&group),
            members.len(),
            if members.len() == 1 { "" } else { "s" },
            members.join(", "),
            unread
        )?;
    }
    Ok(())
}

fn contacts(client: &mut Client, out: &mut Printer) -> anyhow::Result<()> {
    let contacts = client.contacts()?;
    if contacts.is_empty() {
        writeln!(out, "no contacts yet")?;
    }
    for contact in contacts {
        out.json(json!({
            "user": contact.user,
            "identity_key": fingerprint(&contact.identity_key),
            "verified": contact.verified,
            "changed_to": contact.changed_to.as_deref().map(fingerprint),
        }));
        let verified = match contact.verified {
            true => "verified",
            false => "not verified",
        };
        write!(
            out,
            "{:<24} identity key {}  {verified}",
            safe(&contact.user),
            fingerprint(&contact.identity_key)
        )?;
        if let Some(new) = &contact.changed_to {
            write!(out, "  CHANGED to {} (not accepted)", fingerprint(new))?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn verify(client: &mut Client, user: &str, accept: bool, out: &mut Printer) -> anyhow::Result<()> {
    let contact = match accept {
        true => client.accept_identity_key(user)?,
        false => client.contact(user)?.with_context(|| {
            format!(
                "no identity key is pinned for {}: this device has not seen a device of theirs yet",
                safe(user)
            )
        })?,
    };
    let key = contact.changed_to.as_ref().unwrap_or(&contact.identity_key);
    out.json(json!({
        "user": contact.user,
        "identity_key": fingerprint(&contact.identity_key),
        "changed_to": contact.changed_to.as_deref().map(fingerprint),
        "verified": contact.verified,
        "safety_number": client.safety_number(&contact.user, key),
    }));
    let user = safe(user);
    match &contact.changed_to {
        Some(new) => {
            writeln!(
                out,
                "the identity key of {user} CHANGED from {} to {}; its devices under the new key are refused",
                fingerprint(&contact.identity_key),
                fingerprint(new)
            )?;
            writeln!(
                out,
                "safety number with the new key: {}",
                client.safety_number(&contact.user, new)
            )?;
            writeln!(
                out,
                "compare it with {user}; if it matches, run `confide verify {user} --accept`"
            )?;
        }
        None => {
            writeln!(
                out,
                "safety number with {user}: {}",
                client.safety_number(&contact.user, &contact.identity_key)
            )?;
            let key = fingerprint(&contact.identity_key);
            match contact.verified {
                true => writeln!(out, "{user}'s identity key {key} is verified")?,
                false => writeln!(
                    out,
                    "{user}'s identity key {key} is not verified: compare the number with \
                     {user}'s, then run `confide verify {user} --accept`"
                )?,
            }
        }
    }
    Ok(())
}
