//! The view model: what the chat shows (groups, conversations, the
//! connection, the line being typed) and every change to it, as plain
//! methods the adapter calls with what the client reported, or that a key
//! press makes. What the user asks the client for comes out as
//! [`Action`]s ([`Model::take_actions`]); nothing here does I/O.
//!
//! Every string in these types is kept as it came (from the network, most
//! of them): the view escapes each one as it draws it, so the adapter
//! never escapes and cannot forget to. It builds system lines from the raw
//! names and texts, not from `Event`'s `Display`, which has escaped them
//! already (its continuation lines would be marked twice).

use std::collections::{HashMap, VecDeque};
use std::time::{Instant, SystemTime};

use ratatui::crossterm::event::KeyEvent;

use super::command::{self, COMMANDS, Command};
use super::input::{InputLine, Intent, intent};

/// A group, by its id.
pub type GroupKey = Vec<u8>;

/// A group as the list and the status line show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSummary {
    pub id: GroupKey,
    /// The name its members gave it; unnamed groups show the start of
    /// their id.
    pub name: Option<String>,
    pub topic: Option<String>,
    /// Lines that arrived while the group was not selected.
    pub unread: usize,
    /// How many devices are in it.
    pub members: usize,
}

impl GroupSummary {
    /// A group with nothing known but its id.
    pub fn new(id: GroupKey) -> Self {
        GroupSummary {
            id,
            name: None,
            topic: None,
            unread: 0,
            members: 0,
        }
    }

    /// What the list calls the group: its name, or the first bytes of its
    /// id in hex (what `--group` takes).
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => hex::encode(&self.id[..self.id.len().min(4)]),
        }
    }
}

/// One line of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub at: SystemTime,
    pub kind: LineKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// A message; `own` when this device sent it.
    Message {
        sender: String,
        own: bool,
        text: String,
    },
    /// What happened to the group (members, epochs, renames) or what a
    /// command answered; `alert` for what the user must notice (a ghost
    /// device, withheld messages, an error).
    System { text: String, alert: bool },
}

impl Line {
    pub fn message(at: SystemTime, sender: impl Into<String>, text: impl Into<String>) -> Self {
        Self::sent(at, sender, text, false)
    }

    /// A message this device sent.
    pub fn own(at: SystemTime, sender: impl Into<String>, text: impl Into<String>) -> Self {
        Self::sent(at, sender, text, true)
    }

    pub fn system(at: SystemTime, text: impl Into<String>) -> Self {
        Line {
            at,
            kind: LineKind::System {
                text: text.into(),
                alert: false,
            },
        }
    }

    pub fn alert(at: SystemTime, text: impl Into<String>) -> Self {
        Line {
            at,
            kind: LineKind::System {
                text: text.into(),
                alert: true,
            },
        }
    }

    fn sent(at: SystemTime, sender: impl Into<String>, text: impl Into<String>, own: bool) -> Self {
        Line {
            at,
            kind: LineKind::Message {
                sender: sender.into(),
                own,
                text: text.into(),
            },
        }
    }
}

/// The connection to the delivery service, as the status line shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Connected,
    /// The stream broke for `reason`; attempt number `attempt` (1 for the
    /// first) is made at `retry_at` (`None` while it is under way).
    Reconnecting {
        reason: String,
        attempt: u32,
        retry_at: Option<Instant>,
    },
    /// The DS refused this device for good (it was removed, say): the chat
    /// stays open on what the state file holds, and tries no more.
    Ended {
        reason: String,
    },
}

/// What the user asked for, for the adapter to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `text` to the group. The model does not show it: the adapter
    /// pushes it as an own line once the client has it.
    Send { group: GroupKey, text: String },
    /// Run a slash command; `group` is the group selected when it was
    /// typed, always there for a command that [`Command::needs_group`].
    Command {
        group: Option<GroupKey>,
        command: Command,
    },
    /// The group's unread lines were seen (it was selected): persist that.
    Read { group: GroupKey },
    /// End the chat.
    Quit,
}

/// How many lines a conversation keeps; older ones are dropped (the
/// client's state file keeps the history).
const MAX_LINES: usize = 5_000;

/// A conversation's lines and where it is scrolled to.
#[derive(Debug, Default)]
pub struct Conversation {
    lines: VecDeque<Line>,
    /// `None` while following the newest line.
    scroll: Option<Scroll>,
}

/// A conversation scrolled up. Rows depend on the pane's width, known only
/// when drawing, so the view settles the lines that came since it last
/// drew ([`Conversation::settle_scroll`]): that keeps the same lines in
/// view however many arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scroll {
    /// Rows between the bottom of the pane and the end of the first
    /// `counted` lines.
    pub rows_up: usize,
    pub counted: usize,
    /// The first line that arrived while scrolled up ("N new below").
    pub new_from: usize,
}

impl Conversation {
    pub fn lines(&self) -> &VecDeque<Line> {
        &self.lines
    }

    pub fn scroll(&self) -> Option<Scroll> {
        self.scroll
    }

    /// Records where the view put the pane: `rows_up` rows up from the
    /// newest line (counting all of them), at most as far as the first.
    /// At the newest line it follows them again.
    pub fn settle_scroll(&mut self, rows_up: usize) {
        match &mut self.scroll {
            Some(_) if rows_up == 0 => self.scroll = None,
            Some(scroll) => {
                scroll.rows_up = rows_up;
                scroll.counted = self.lines.len();
            }
            None => {}
        }
    }

    fn push(&mut self, line: Line) {
        if self.lines.len() == MAX_LINES {
            self.lines.pop_front();
            if let Some(scroll) = &mut self.scroll {
                scroll.counted = scroll.counted.saturating_sub(1);
                scroll.new_from = scroll.new_from.saturating_sub(1);
            }
        }
        self.lines.push_back(line);
    }

    fn page_up(&mut self, page: usize) {
        let len = self.lines.len();
        let scroll = self.scroll.get_or_insert(Scroll {
            rows_up: 0,
            counted: len,
            new_from: len,
        });
        scroll.rows_up += page;
    }

    fn page_down(&mut self, page: usize) {
        let len = self.lines.len();
        let Some(scroll) = &mut self.scroll else {
            return;
        };
        if scroll.rows_up <= page && scroll.counted == len {
            self.scroll = None;
        } else {
            scroll.rows_up = scroll.rows_up.saturating_sub(page);
        }
    }
}

/// Everything the chat shows.
#[derive(Debug)]
pub struct Model {
    /// This device, `user/device`.
    me: String,
    groups: Vec<GroupSummary>,
    selected: Option<GroupKey>,
    conversations: HashMap<GroupKey, Conversation>,
    /// Where lines go while no group is selected (there is none yet).
    console: Conversation,
    connection: Connection,
    /// The safety code the user asked for (`/verify`), with its group.
    safety: Option<(GroupKey, String)>,
    input: InputLine,
    actions: Vec<Action>,
    /// Rows PageUp and PageDown move: the pane's height less some
    /// context, as the view last drew it.
    page: usize,
}

impl Model {
    pub fn new(me: impl Into<String>) -> Self {
        Model {
            me: me.into(),
            groups: Vec::new(),
            selected: None,
            conversations: HashMap::new(),
            console: Conversation::default(),
            connection: Connection::Connecting,
            safety: None,
            input: InputLine::default(),
            actions: Vec::new(),
            page: 10,
        }
    }

    /// The groups to list, in order. Names, topics and member counts are
    /// taken from `groups`; unread counts only for groups new to the
    /// model, which has counted every line pushed since for the others.
    /// The selection stays if its group is still there, and is the first
    /// group otherwise (selected as by [`Model::select`]).
    pub fn set_groups(&mut self, groups: Vec<GroupSummary>) {
        let known: HashMap<GroupKey, usize> = self
            .groups
            .iter()
            .map(|group| (group.id.clone(), group.unread))
            .collect();
        self.groups = groups;
        for group in &mut self.groups {
            if let Some(unread) = known.get(&group.id) {
                group.unread = *unread;
            }
        }
        let kept = self
            .selected
            .as_ref()
            .filter(|id| self.index(id).is_some())
            .cloned();
        match kept.or_else(|| self.groups.first().map(|group| group.id.clone())) {
            Some(id) => self.select(&id),
            None => self.selected = None,
        }
    }

    /// Adds a line to a group's conversation (a group not listed yet is
    /// added, unnamed). Returns whether the user sees it, its group being
    /// selected; otherwise a message from someone else counts as unread.
    pub fn push_line(&mut self, group: &[u8], line: Line) -> bool {
        // Only others' messages count, as `confide groups` counts them: a
        // system line (a join, a rename) is news, not something to read.
        let counts = matches!(line.kind, LineKind::Message { own: false, .. });
        if self.index(group).is_none() {
            self.groups.push(GroupSummary::new(group.to_vec()));
            if self.selected.is_none() {
                self.selected = Some(group.to_vec());
            }
        }
        self.conversations
            .entry(group.to_vec())
            .or_default()
            .push(line);
        let seen = self.selected.as_deref() == Some(group);
        if !seen
            && counts
            && let Some(index) = self.index(group)
        {
            self.groups[index].unread += 1;
        }
        seen
    }

    /// Replaces a group's conversation with `lines` (its history, when the
    /// chat starts or when an entry arrived after a later one), following
    /// the newest line. Nothing in it counts as unread: the group is listed
    /// by [`Model::set_groups`], with the unread count the state file keeps.
    pub fn replace(&mut self, group: &[u8], lines: Vec<Line>) {
        let mut conversation = Conversation::default();
        for line in lines {
            conversation.push(line);
        }
        self.conversations.insert(group.to_vec(), conversation);
    }

    /// Shows a command's answer in `group`'s conversation, or the selected
    /// one's without a group; never counted as unread.
    pub fn info(&mut self, group: Option<&[u8]>, line_at: SystemTime, text: impl Into<String>) {
        self.notice(group, Line::system(line_at, text));
    }

    /// Shows a command's failure, as an alert, like [`Model::info`].
    pub fn error(&mut self, group: Option<&[u8]>, line_at: SystemTime, text: impl Into<String>) {
        self.notice(group, Line::alert(line_at, text));
    }

    /// Selects a group; if it had unread lines they are cleared and an
    /// [`Action::Read`] reports it.
    pub fn select(&mut self, group: &[u8]) {
        let Some(index) = self.index(group) else {
            return;
        };
        self.selected = Some(group.to_vec());
        if self.groups[index].unread > 0 {
            self.groups[index].unread = 0;
            self.actions.push(Action::Read {
                group: group.to_vec(),
            });
        }
    }

    pub fn set_status(&mut self, connection: Connection) {
        self.connection = connection;
    }

    /// The group's safety code, shown in the status line while the group is
    /// selected; `None` hides it. It is the code of one epoch: the adapter
    /// replaces or hides it when the epoch changes.
    pub fn set_safety_code(&mut self, group: &[u8], code: Option<String>) {
        self.safety = code.map(|code| (group.to_vec(), code));
    }

    /// Applies a key press; `now` stamps the lines it shows (errors, help).
    pub fn handle_key(&mut self, key: KeyEvent, now: SystemTime) {
        let Some(intent) = intent(key) else {
            return;
        };
        match intent {
            Intent::Quit => self.actions.push(Action::Quit),
            Intent::DeleteOrQuit if self.input.is_empty() => self.actions.push(Action::Quit),
            Intent::Submit => self.submit(now),
            Intent::NextGroup => self.step(1),
            Intent::PreviousGroup => self.step(-1),
            Intent::PageUp => {
                let page = self.page;
                self.conversation_mut().page_up(page)
            }
            Intent::PageDown => {
                let page = self.page;
                self.conversation_mut().page_down(page)
            }
            Intent::Dismiss => self.safety = None,
            edit => self.input.edit(edit),
        }
    }

    /// Inserts what the user pasted (the terminal's bracketed paste) into
    /// the input line, as one line.
    pub fn handle_paste(&mut self, text: &str) {
        self.input.paste(text);
    }

    /// What the user asked for since the last call, oldest first.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// Records the conversation pane's height, as the view draws it.
    pub fn set_pane_height(&mut self, rows: usize) {
        // One row is the "new below" marker, one stays for context.
        self.page = rows.saturating_sub(2).max(1);
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    pub fn groups(&self) -> &[GroupSummary] {
        &self.groups
    }

    pub fn selected(&self) -> Option<&GroupSummary> {
        self.index(self.selected.as_deref()?)
            .map(|index| &self.groups[index])
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The safety code to show, if the user asked for the selected group's.
    pub fn safety_code(&self) -> Option<&str> {
        match &self.safety {
            Some((group, code)) if self.selected.as_ref() == Some(group) => Some(code),
            _ => None,
        }
    }

    pub fn input(&self) -> &InputLine {
        &self.input
    }

    /// The conversation the pane shows: the selected group's, or the
    /// console's while there is no group.
    pub fn conversation(&self) -> Option<&Conversation> {
        match &self.selected {
            Some(group) => self.conversations.get(group),
            None => Some(&self.console),
        }
    }

    pub fn conversation_mut(&mut self) -> &mut Conversation {
        match &self.selected {
            Some(group) => self.conversations.entry(group.clone()).or_default(),
            None => &mut self.console,
        }
    }

    fn index(&self, group: &[u8]) -> Option<usize> {
        self.groups.iter().position(|summary| summary.id == group)
    }

    fn notice(&mut self, group: Option<&[u8]>, line: Line) {
        match group {
            Some(group) if self.index(group).is_some() => self
                .conversations
                .entry(group.to_vec())
                .or_default()
                .push(line),
            _ => self.conversation_mut().push(line),
        }
    }

    /// Selects the group `by` places down the list (up when negative),
    /// wrapping around.
    fn step(&mut self, by: isize) {
        if self.groups.is_empty() {
            return;
        }
        let len = self.groups.len() as isize;
        let at = self
            .selected
            .as_deref()
            .and_then(|id| self.index(id))
            .map_or(0, |index| (index as isize + by).rem_euclid(len));
        let id = self.groups[at as usize].id.clone();
        self.select(&id);
    }

    fn submit(&mut self, now: SystemTime) {
        let line = self.input.take();
        if line.trim().is_empty() {
            return;
        }
        let group = self.selected.clone();
        match command::parse(&line) {
            None => match group {
                Some(group) => {
                    self.conversation_mut().scroll = None;
                    let text = command::message_text(&line).to_owned();
                    self.actions.push(Action::Send { group, text });
                }
                None => self.error(None, now, "no group to send to: /new NAME creates one"),
            },
            Some(Err(error)) => self.error(None, now, error.to_string()),
            Some(Ok(Command::Help)) => self.help(now),
            Some(Ok(Command::Quit)) => self.actions.push(Action::Quit),
            Some(Ok(command)) if command.needs_group() && group.is_none() => {
                self.error(None, now, "no group selected: /new NAME creates one")
            }
            Some(Ok(command)) => self.actions.push(Action::Command { group, command }),
        }
    }

    fn help(&mut self, now: SystemTime) {
        self.info(
            None,
            now,
            "commands (to send a message that starts with /, type // for it):",
        );
        let width = COMMANDS.iter().map(|c| c.usage.len()).max().unwrap_or(0);
        for spec in COMMANDS {
            let line = format!("  {:width$}  {}", spec.usage, spec.about);
            self.info(None, now, line);
        }
    }
}

#[cfg(test)]
mod tests;
