//! The keyboard: which [`Intent`] a key press means, and the input line
//! the user edits (readline's keys, and the lines sent before with Up and
//! Down).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// What a key press asks for, before the model applies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    Insert(char),
    Left,
    Right,
    Home,
    End,
    Backspace,
    /// Ctrl-D: deletes the character under the cursor, or ends the chat on
    /// an empty line (as a shell does).
    DeleteOrQuit,
    Delete,
    /// Ctrl-U: deletes everything before the cursor.
    KillToStart,
    /// Ctrl-W: deletes the word before the cursor.
    KillWord,
    HistoryBack,
    HistoryForward,
    Submit,
    NextGroup,
    PreviousGroup,
    PageUp,
    PageDown,
    /// Esc: dismisses what the status line shows on request (the safety code).
    Dismiss,
    Quit,
}

/// The intent of a key press; `None` for keys that mean nothing here and
/// for releases and repeats' ends (terminals that report them).
pub fn intent(key: KeyEvent) -> Option<Intent> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    Some(match key.code {
        KeyCode::Char('c') if ctrl => Intent::Quit,
        KeyCode::Char('d') if ctrl => Intent::DeleteOrQuit,
        KeyCode::Char('u') if ctrl => Intent::KillToStart,
        KeyCode::Char('w') if ctrl => Intent::KillWord,
        KeyCode::Char('a') if ctrl => Intent::Home,
        KeyCode::Char('e') if ctrl => Intent::End,
        KeyCode::Char('b') if ctrl => Intent::Left,
        KeyCode::Char('f') if ctrl => Intent::Right,
        KeyCode::Char('n') if ctrl => Intent::NextGroup,
        KeyCode::Char('p') if ctrl => Intent::PreviousGroup,
        KeyCode::Char(_) if ctrl || alt => return None,
        KeyCode::Char(c) => Intent::Insert(c),
        KeyCode::Up if alt => Intent::PreviousGroup,
        KeyCode::Down if alt => Intent::NextGroup,
        KeyCode::Up => Intent::HistoryBack,
        KeyCode::Down => Intent::HistoryForward,
        KeyCode::Tab => Intent::NextGroup,
        KeyCode::BackTab => Intent::PreviousGroup,
        KeyCode::Left => Intent::Left,
        KeyCode::Right => Intent::Right,
        KeyCode::Home => Intent::Home,
        KeyCode::End => Intent::End,
        KeyCode::Backspace => Intent::Backspace,
        KeyCode::Delete => Intent::Delete,
        KeyCode::Enter => Intent::Submit,
        KeyCode::PageUp => Intent::PageUp,
        KeyCode::PageDown => Intent::PageDown,
        KeyCode::Esc => Intent::Dismiss,
        _ => return None,
    })
}

/// The line being typed. The cursor is a character index (not a byte or
/// a column), so editing never splits a character.
#[derive(Debug, Default)]
pub struct InputLine {
    text: String,
    cursor: usize,
    /// Lines sent before, oldest first.
    history: Vec<String>,
    /// While walking the history: the entry shown, and the line that was
    /// being typed before, given back when walking past the newest.
    browsing: Option<(usize, String)>,
}

/// How many sent lines Up and Down walk through.
const HISTORY: usize = 100;

impl InputLine {
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text before the cursor, to place the terminal's cursor after it.
    pub fn before_cursor(&self) -> &str {
        &self.text[..self.byte(self.cursor)]
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Applies an editing intent; the others are not the line's.
    pub fn edit(&mut self, intent: Intent) {
        match intent {
            // A control character would only be escaped on screen: a
            // terminal never types one but through a key this ignores.
            Intent::Insert(c) if c.is_control() => {}
            Intent::Insert(c) => {
                let at = self.byte(self.cursor);
                self.text.insert(at, c);
                self.cursor += 1;
            }
            Intent::Left => self.cursor = self.cursor.saturating_sub(1),
            Intent::Right => self.cursor = (self.cursor + 1).min(self.len()),
            Intent::Home => self.cursor = 0,
            Intent::End => self.cursor = self.len(),
            Intent::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.remove(self.cursor, self.cursor + 1);
            }
            Intent::Delete | Intent::DeleteOrQuit if self.cursor < self.len() => {
                self.remove(self.cursor, self.cursor + 1)
            }
            Intent::KillToStart => {
                self.remove(0, self.cursor);
                self.cursor = 0;
            }
            Intent::KillWord => {
                let chars: Vec<char> = self.text.chars().collect();
                let mut start = self.cursor;
                while start > 0 && chars[start - 1].is_whitespace() {
                    start -= 1;
                }
                while start > 0 && !chars[start - 1].is_whitespace() {
                    start -= 1;
                }
                self.remove(start, self.cursor);
                self.cursor = start;
            }
            Intent::HistoryBack => self.history_back(),
            Intent::HistoryForward => self.history_forward(),
            _ => {}
        }
    }

    /// Inserts pasted text at the cursor, on this one line: a line break
    /// (`\n`, `\r\n`, or `\r`, as many terminals paste one) or a tab is a
    /// space and other control characters are left out, so a pasted
    /// paragraph is one message, not one per line.
    pub fn paste(&mut self, text: &str) {
        for c in text.replace("\r\n", "\n").chars() {
            match c {
                '\n' | '\r' | '\t' => self.edit(Intent::Insert(' ')),
                c => self.edit(Intent::Insert(c)),
            }
        }
    }

    /// Takes the line to send, remembering it for Up, and empties it.
    pub fn take(&mut self) -> String {
        self.browsing = None;
        self.cursor = 0;
        let line = std::mem::take(&mut self.text);
        if !line.trim().is_empty() && self.history.last() != Some(&line) {
            if self.history.len() == HISTORY {
                self.history.remove(0);
            }
            self.history.push(line.clone());
        }
        line
    }

    fn history_back(&mut self) {
        let index = match &mut self.browsing {
            Some((0, _)) => return,
            Some((index, _)) => {
                *index -= 1;
                *index
            }
            None if self.history.is_empty() => return,
            None => {
                let index = self.history.len() - 1;
                self.browsing = Some((index, std::mem::take(&mut self.text)));
                index
            }
        };
        self.show(self.history[index].clone());
    }

    fn history_forward(&mut self) {
        match self.browsing.take() {
            None => {}
            Some((index, typed)) if index + 1 < self.history.len() => {
                self.browsing = Some((index + 1, typed));
                self.show(self.history[index + 1].clone());
            }
            Some((_, typed)) => self.show(typed),
        }
    }

    fn show(&mut self, text: String) {
        self.text = text;
        self.cursor = self.len();
    }

    fn len(&self) -> usize {
        self.text.chars().count()
    }

    /// The byte offset of a character index.
    fn byte(&self, index: usize) -> usize {
        self.text
            .char_indices()
            .nth(index)
            .map_or(self.text.len(), |(at, _)| at)
    }

    /// Removes the characters `start..end`.
    fn remove(&mut self, start: usize, end: usize) {
        let (start, end) = (self.byte(start), self.byte(end));
        self.text.replace_range(start..end, "");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(text: &str) -> InputLine {
        let mut line = InputLine::default();
        for c in text.chars() {
            line.edit(Intent::Insert(c));
        }
        line
    }

    fn press(code: KeyCode, modifiers: KeyModifiers) -> Option<Intent> {
        intent(KeyEvent::new(code, modifiers))
    }

    #[test]
    fn keys_mean_what_a_chat_client_and_readline_make_them_mean() {
        let none = KeyModifiers::NONE;
        let ctrl = KeyModifiers::CONTROL;
        let alt = KeyModifiers::ALT;
        assert_eq!(press(KeyCode::Char('c'), ctrl), Some(Intent::Quit));
        assert_eq!(press(KeyCode::Char('d'), ctrl), Some(Intent::DeleteOrQuit));
        assert_eq!(press(KeyCode::Char('n'), ctrl), Some(Intent::NextGroup));
        assert_eq!(press(KeyCode::Char('p'), ctrl), Some(Intent::PreviousGroup));
        assert_eq!(press(KeyCode::Down, alt), Some(Intent::NextGroup));
        assert_eq!(press(KeyCode::Up, alt), Some(Intent::PreviousGroup));
        assert_eq!(press(KeyCode::Tab, none), Some(Intent::NextGroup));
        assert_eq!(press(KeyCode::Up, none), Some(Intent::HistoryBack));
        assert_eq!(press(KeyCode::PageUp, none), Some(Intent::PageUp));
        assert_eq!(press(KeyCode::Enter, none), Some(Intent::Submit));
        assert_eq!(press(KeyCode::Char('x'), alt), None);
        assert_eq!(press(KeyCode::Char('é'), none), Some(Intent::Insert('é')));
        let mut release = KeyEvent::new(KeyCode::Enter, none);
        release.kind = KeyEventKind::Release;
        assert_eq!(intent(release), None);
    }

    #[test]
    fn the_cursor_moves_and_edits_by_character() {
        let mut line = typed("héllo");
        line.edit(Intent::Left);
        line.edit(Intent::Left);
        line.edit(Intent::Backspace);
        assert_eq!(line.text(), "hélo");
        assert_eq!(line.before_cursor(), "hé");
        line.edit(Intent::Home);
        line.edit(Intent::Delete);
        line.edit(Intent::Insert('H'));
        assert_eq!(line.text(), "Hélo");
        line.edit(Intent::End);
        line.edit(Intent::Insert('!'));
        assert_eq!(line.text(), "Hélo!");
        line.edit(Intent::Right);
        assert_eq!(line.before_cursor(), "Hélo!");
    }

    #[test]
    fn ctrl_u_deletes_before_the_cursor_and_ctrl_w_the_word_before_it() {
        let mut line = typed("see you  tomorrow");
        line.edit(Intent::KillWord);
        assert_eq!(line.text(), "see you  ");
        line.edit(Intent::KillWord);
        assert_eq!(line.text(), "see ");
        line.edit(Intent::Insert('x'));
        line.edit(Intent::Left);
        line.edit(Intent::KillToStart);
        assert_eq!(line.text(), "x");
        assert_eq!(line.before_cursor(), "");
    }

    #[test]
    fn control_characters_are_not_inserted() {
        let line = typed("a\x1b[2J\nb");
        assert_eq!(line.text(), "a[2Jb");
    }

    #[test]
    fn pasted_lines_become_one_line_at_the_cursor() {
        let mut line = typed("say: ");
        line.paste("first line\r\nsecond\tline\rthird\nfourth\x1b[2J");
        line.edit(Intent::Insert('!'));
        assert_eq!(line.text(), "say: first line second line third fourth[2J!");
    }

    #[test]
    fn up_and_down_walk_the_lines_sent_and_give_back_the_one_being_typed() {
        let mut line = typed("first");
        assert_eq!(line.take(), "first");
        line = InputLine {
            history: line.history,
            ..typed("second")
        };
        line.take();
        for c in "draft".chars() {
            line.edit(Intent::Insert(c));
        }
        line.edit(Intent::HistoryBack);
        assert_eq!(line.text(), "second");
        line.edit(Intent::HistoryBack);
        line.edit(Intent::HistoryBack);
        assert_eq!(line.text(), "first");
        line.edit(Intent::HistoryForward);
        assert_eq!(line.text(), "second");
        line.edit(Intent::HistoryForward);
        assert_eq!(line.text(), "draft");
        assert_eq!(line.before_cursor(), "draft");
    }
}
