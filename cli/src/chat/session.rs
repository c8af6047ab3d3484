//! `confide chat`: the loop that joins the view model to the client. It
//! holds the state file for its lifetime (and takes the commands other
//! `confide` processes hand over, as `confide listen` does), keeps the
//! connection up through [`Connection`], draws from each group's history in
//! the state file (so a message this device sent shows once the DS has it,
//! even after a reconnection), and runs what the user asks for.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use confide_client::{Client, Event, GroupMember, HistoryEntry, Leave};
use ratatui::crossterm::event::{self as terminal_event, Event as TerminalEvent};
use tokio::sync::mpsc;

use super::command::Command;
use super::model::{Action, Connection as Shown, GroupKey, GroupSummary, Line, Model};
use super::terminal::Terminal;
use super::view::Clock;
use crate::args::Conn;
use crate::commands::open_even_offline;
use crate::connection::{Connection, Status};
use crate::handoff::Server;

/// What a group this device is no longer in answers.
const NOT_A_MEMBER: &str =
    "this device is no longer in this group (it left or was removed): its history stays here";

/// How many lines of each group's history the chat shows when it starts.
const HISTORY_SHOWN: usize = 500;
/// How often the view is drawn without anything happening (the reconnect
/// countdown).
const TICK: Duration = Duration::from_secs(1);

/// Runs the chat until the user quits.
pub async fn run(conn: &Conn) -> anyhow::Result<()> {
    let (mut client, unreachable) = open_even_offline(conn).await?;
    let server = match Server::bind(&conn.state) {
        Ok(server) => Some(server),
        Err(error) => {
            tracing::warn!(%error, "other commands cannot be handed to this chat");
            None
        }
    };
    let mut chat = Chat {
        model: Model::new(client.id().to_string()),
        shown_up_to: 0,
        positions: HashMap::new(),
        verifying: None,
    };
    if unreachable.is_none()
        && let Err(error) = client.catch_up().await
    {
        tracing::warn!(%error, "catching up at start");
    }
    chat.start(&mut client)?;
    chat.model.set_status(match unreachable {
        // The first attempt to connect comes at once, through `connection`.
        Some(reason) => Shown::Reconnecting {
            reason,
            attempt: 1,
            retry_at: None,
        },
        None => Shown::Connected,
    });

    let mut terminal = Terminal::enter()?;
    let mut keys = terminal_events();
    let mut connection = Connection::new(conn);
    let mut tick = tokio::time::interval(TICK);
    let mut ended = false;
    loop {
        chat.draw(&mut terminal)?;
        tokio::select! {
            event = keys.recv() => match event {
                Some(TerminalEvent::Key(key)) => chat.model.handle_key(key, SystemTime::now()),
                Some(TerminalEvent::Paste(text)) => chat.model.handle_paste(&text),
                Some(_) => {}
                None => break,
            },
            wake = connection.wait(&mut client), if !ended => {
                match connection.handle(&mut client, wake).await {
                    Ok(Some(status)) => chat.model.set_status(shown(&status)),
                    Ok(None) => {}
                    // The DS refused this device for good: what the state
                    // file holds stays readable, and the user sees why.
                    Err(error) => {
                        let reason = format!("{error:#}");
                        chat.model.error(None, SystemTime::now(), reason.clone());
                        chat.model.set_status(Shown::Ended { reason });
                        ended = true;
                    }
                }
            }
            handed = crate::listen::accept(server.as_ref()) => match handed {
                Ok(handed) => {
                    crate::listen::serve(conn, &mut client, connection.reconnecting(), handed).await
                }
                Err(error) => tracing::warn!(%error, "accepting a handed-over command"),
            },
            _ = tick.tick() => {}
        }
        let mut quit = false;
        for action in chat.model.take_actions() {
            match action {
                Action::Quit => quit = true,
                action => chat.act(&mut client, action).await,
            }
        }
        chat.catch_up_view(&mut client)?;
        if quit {
            break;
        }
    }
    Ok(())
}

/// Terminal input, read on a thread of its own (crossterm's `read`
/// blocks).
fn terminal_events() -> mpsc::UnboundedReceiver<TerminalEvent> {
    let (sender, events) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        while let Ok(event) = terminal_event::read() {
            if sender.send(event).is_err() {
                break;
            }
        }
    });
    events
}

fn shown(status: &Status) -> Shown {
    match status {
        Status::Connected => Shown::Connected,
        Status::Reconnecting {
            attempt,
            next_in,
            reason,
        } => Shown::Reconnecting {
            reason: reason.clone(),
            attempt: *attempt,
            retry_at: Some(std::time::Instant::now() + *next_in),
        },
    }
}

struct Chat {
    model: Model,
    /// The last history entry the view shows.
    shown_up_to: i64,
    /// Per group, the latest place in its order the view shows.
    positions: HashMap<GroupKey, u64>,
    /// The group whose safety code `/verify` showed: the code is an
    /// epoch's, so it is shown anew when the group changes.
    verifying: Option<GroupKey>,
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl Chat {
    /// The groups, and each one's history.
    fn start(&mut self, client: &mut Client) -> anyhow::Result<()> {
        // What is pending is in the history already.
        while client.take_event()?.is_some() {}
        let groups = self.summaries(client)?;
        for group in &groups {
            self.show_history(client, &group.id)?;
        }
        self.model.set_groups(groups);
        Ok(())
    }

    /// Draws the group's conversation from its history, in the group's
    /// order (nothing in it counts as unread: the state file keeps that).
    fn show_history(&mut self, client: &Client, group: &[u8]) -> anyhow::Result<()> {
        let mut lines = Vec::new();
        for entry in client.history(group, HISTORY_SHOWN)? {
            self.shown_up_to = self.shown_up_to.max(entry.id);
            let last = self.positions.entry(group.to_vec()).or_default();
            *last = (*last).max(entry.position);
            lines.extend(line_of(client, &entry));
        }
        self.model.replace(group, lines);
        Ok(())
    }

    /// Every group of this device, and those it left whose history it
    /// keeps; names, members and unread counts as the client has them.
    fn summaries(&self, client: &Client) -> anyhow::Result<Vec<GroupSummary>> {
        crate::commands::groups_and_former(client)?
            .into_iter()
            .map(|id| {
                let profile = client.group_profile(&id)?;
                Ok(GroupSummary {
                    name: profile.name,
                    topic: profile.topic,
                    unread: client.unread(&id)? as usize,
                    members: client.members(&id).map(|m| m.len()).unwrap_or(0),
                    id,
                })
            })
            .collect()
    }

    /// Shows what the history gained since it was last drawn, and the
    /// events that belong to no group (an identity key that changed).
    fn catch_up_view(&mut self, client: &mut Client) -> anyhow::Result<()> {
        let mut groups_changed = false;
        let mut reorder = BTreeSet::new();
        let mut seen = BTreeSet::new();
        while let Some(event) = client.take_event()? {
            if event.group().is_none() {
                let alert = matches!(event, Event::IdentityKeyChanged { .. });
                let text = event.to_string();
                match alert {
                    true => self.model.error(None, SystemTime::now(), text),
                    false => self.model.info(None, SystemTime::now(), text),
                }
            }
        }
        loop {
            let entries = client.history_since(self.shown_up_to, 1000)?;
            if entries.is_empty() {
                break;
            }
            for (group, entry) in entries {
                self.shown_up_to = entry.id;
                groups_changed |= !matches!(entry.event, Event::Message { .. });
                let last = self.positions.entry(group.clone()).or_default();
                if entry.position < *last {
                    // It goes before what is shown (this device's own
                    // message went first, the DS ordered another before
                    // it): the group's order is the one every member sees.
                    reorder.insert(group.clone());
                }
                *last = (*last).max(entry.position);
                if let Some(line) = line_of(client, &entry)
                    && self.model.push_line(&group, line)
                {
                    seen.insert(group);
                }
            }
        }
        for group in &reorder {
            self.show_history(client, group)?;
        }
        // What arrives in the group on screen is read.
        for group in &seen {
            client.mark_read(group)?;
        }
        if groups_changed {
            let groups = self.summaries(client)?;
            self.model.set_groups(groups);
            if let Some(group) = &self.verifying
                && self.model.safety_code().is_some()
            {
                self.model
                    .set_safety_code(group, client.safety_code(group).ok());
            }
        }
        Ok(())
    }

    fn draw(&mut self, terminal: &mut Terminal) -> anyhow::Result<()> {
        terminal.draw(&mut self.model, &Clock::local())?;
        Ok(())
    }

    /// Does what the user asked for; what it answers is shown in the
    /// group's conversation.
    async fn act(&mut self, client: &mut Client, action: Action) {
        let now = SystemTime::now();
        match action {
            Action::Send { group, .. } if !client.groups().contains(&group) => {
                self.model.error(Some(&group), now, NOT_A_MEMBER)
            }
            Action::Send { group, text } => match client.send_text(&group, &text).await {
                Ok(_) => {}
                Err(error) if error.is_in_doubt() => self.model.error(
                    Some(&group),
                    now,
                    format!(
                        "not sent yet, no answer from the delivery service: \"{}\" is kept \
                         and goes out once the connection is back",
                        text
                    ),
                ),
                Err(error) => self.model.error(Some(&group), now, error.to_string()),
            },
            Action::Read { group } => {
                if let Err(error) = client.mark_read(&group) {
                    tracing::warn!(%error, "marking a group read");
                }
            }
            Action::Command {
                group: Some(group),
                command,
            } if command.needs_group() && !client.groups().contains(&group) => {
                self.model.error(Some(&group), now, NOT_A_MEMBER)
            }
            Action::Command { group, command } => {
                let result = self.command(client, group.as_deref(), command).await;
                if let Err(error) = result {
                    self.model.error(group.as_deref(), now, error.to_string());
                }
            }
            Action::Quit => {}
        }
    }

    async fn command(
        &mut self,
        client: &mut Client,
        group: Option<&[u8]>,
        command: Command,
    ) -> anyhow::Result<()> {
        let now = SystemTime::now();
        let selected = || group.ok_or_else(|| anyhow::anyhow!("no group selected"));
        match command {
            Command::New { name } => {
                let created = client.create_group().await?;
                client.rename(&created, &name, None).await?;
                self.catch_up_view(client)?;
                let groups = self.summaries(client)?;
                self.model.set_groups(groups);
                self.model.select(&created);
                self.model.info(
                    Some(&created),
                    now,
                    format!("created \"{name}\": /add USER to invite people"),
                );
            }
            Command::Add { users } => {
                let group = selected()?;
                let users: Vec<&str> = users.iter().map(String::as_str).collect();
                let added = client.add_users(group, &users).await?;
                for ghost in added.refused {
                    self.model.error(
                        Some(group),
                        now,
                        format!(
                            "refused {} (key {}): {}",
                            ghost.client, ghost.fingerprint, ghost.reason
                        ),
                    );
                }
            }
            Command::Remove { users } => {
                let group = selected()?;
                let users: Vec<&str> = users.iter().map(String::as_str).collect();
                client.remove_users(group, &users).await?;
            }
            Command::Leave => {
                let group = selected()?;
                let said = match client.leave(group).await? {
                    Leave::Proposed { .. } => {
                        "asked to leave: you are out once another member's device commits it"
                    }
                    Leave::Alone => {
                        "nobody else was in the group: this device left it and forgot it \
                         (its history stays here)"
                    }
                    Leave::Out => "this device is out of the group already",
                };
                self.model.info(Some(group), now, said);
                let groups = self.summaries(client)?;
                self.model.set_groups(groups);
            }
            Command::Rename { name } => {
                let group = selected()?;
                let topic = client.group_profile(group)?.topic;
                client.rename(group, &name, topic.as_deref()).await?;
            }
            Command::Topic { text } => {
                let group = selected()?;
                let Some(name) = client.group_profile(group)?.name else {
                    anyhow::bail!("name the group first (/rename NAME), then set its topic");
                };
                let topic = (!text.is_empty()).then_some(text.as_str());
                client.rename(group, &name, topic).await?;
            }
            Command::Members => {
                let group = selected()?;
                client.catch_up().await?;
                self.model.info(
                    Some(group),
                    now,
                    format!("epoch {}, members:", client.epoch(group)?),
                );
                for member in client.roster(group)? {
                    self.model
                        .info(Some(group), now, member_line(client, &member));
                }
            }
            Command::Verify => {
                let group = selected()?;
                let code = client.safety_code(group)?;
                self.model.set_safety_code(group, Some(code));
                self.verifying = Some(group.to_vec());
            }
            Command::Devices { user } => {
                let user = user.unwrap_or_else(|| client.id().user().to_string());
                let devices = client.devices(&user).await?;
                if devices.is_empty() {
                    anyhow::bail!("{user} has no devices on this server: is the name right?");
                }
                for device in devices {
                    let status = match device.status {
                        confide_client::DeviceStatus::Certified => "certified".to_string(),
                        confide_client::DeviceStatus::Revoked => "revoked".to_string(),
                        confide_client::DeviceStatus::Uncertified(why) => {
                            format!("NOT CERTIFIED ({why})")
                        }
                    };
                    self.model.info(
                        group,
                        now,
                        format!("{}  key {}  {status}", device.client, device.fingerprint),
                    );
                }
            }
            Command::Help | Command::Quit => {}
        }
        Ok(())
    }
}

fn member_line(client: &Client, member: &GroupMember) -> String {
    let note = match (&member.client == client.id(), member.certified) {
        (true, _) => "  certified, this device",
        (false, true) => "  certified by its user",
        (false, false) => "  GHOST: not certified by its user",
    };
    format!("  {}  key {}{note}", member.client, member.fingerprint)
}

/// How a history entry is shown: a message, or a system line (an alert
/// for what the user must notice).
fn line_of(client: &Client, entry: &HistoryEntry) -> Option<Line> {
    let recorded = at(entry.at_ms);
    Some(match &entry.event {
        Event::Message {
            sender,
            body,
            sent_at_ms,
            ..
        } => {
            let when = sent_at_ms.map_or(recorded, at);
            let text = String::from_utf8_lossy(body).into_owned();
            match sender == client.id() {
                true => Line::own(when, sender.to_string(), text),
                false => Line::message(when, sender.to_string(), text),
            }
        }
        Event::MembersAdded { by, members, .. } if members.iter().all(|m| &m.client == by) => {
            Line::system(
                recorded,
                format!("{} joined by external commit", keyed(members)),
            )
        }
        Event::MembersAdded { by, members, .. } => {
            Line::system(recorded, format!("{by} added {}", keyed(members)))
        }
        Event::MembersRemoved { by, members, .. } => {
            Line::system(recorded, format!("{by} removed {}", keyed(members)))
        }
        Event::Joined { members, epoch, .. } => Line::system(
            recorded,
            format!("you joined at epoch {epoch}, with {}", keyed(members)),
        ),
        Event::Removed { by, left: true, .. } => Line::system(
            recorded,
            format!("you left the group ({by}'s device committed it)"),
        ),
        Event::Removed { by, .. } => Line::alert(
            recorded,
            format!("{by} removed you from the group: nothing more arrives from it"),
        ),
        event @ (Event::GhostDevice { .. }
        | Event::DeviceRefused { .. }
        | Event::Gap { .. }
        | Event::Undecryptable { .. }
        | Event::IdentityKeyChanged { .. }) => Line::alert(recorded, event.to_string()),
        event => Line::system(recorded, event.to_string()),
    })
}

/// `bob/laptop (key 1a2b 3c4d …), carol/phone (key …)`.
fn keyed(members: &[GroupMember]) -> String {
    members
        .iter()
        .map(|member| format!("{} (key {})", member.client, member.fingerprint))
        .collect::<Vec<_>>()
        .join(", ")
}
