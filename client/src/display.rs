//! Printing what came from the network. A message body (or any name or
//! reason another party chose) goes to a terminal, which obeys escape
//! sequences and control characters: a member could clear another's screen,
//! move the cursor, retitle the window, or start a line that looks like
//! someone else speaking. [`Untrusted`] shows every such character as a
//! visible escape and every line after the first as a marked continuation,
//! so nothing a member sends can pass for output of the client.

use std::fmt::{self, Write as _};

/// How a continuation line of untrusted text starts: indented and marked, so
/// a forged "carol: ..." inside a message never starts a line of its own.
pub const CONTINUATION: &str = "\n  | ";

/// Displays untrusted text safely: control characters (C0, DEL, C1, so
/// every escape sequence), bidirectional overrides and isolates, and line or
/// paragraph separators are written as visible escapes (`\x1b`,
/// `\u{202e}`); a newline starts a [`CONTINUATION`] line. Other text is
/// written unchanged.
pub struct Untrusted<'a>(pub &'a str);

/// [`Untrusted`] as a string.
pub fn safe(text: &str) -> String {
    Untrusted(text).to_string()
}

/// Whether a character is written as an escape rather than as itself.
fn escaped(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            // Bidi embeddings and overrides, isolates, marks.
            '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{061c}'
                // Line and paragraph separators: a line break to some terminals.
                | '\u{2028}'
                | '\u{2029}'
        )
}

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '\n' => f.write_str(CONTINUATION)?,
                c if escaped(c) && (c as u32) < 0x80 => write!(f, "\\x{:02x}", c as u32)?,
                c if escaped(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_written_unchanged() {
        let text = "héllo, wörld! 👋 «quotes» \\ tab-free; 日本語";
        assert_eq!(safe(text), text);
    }

    #[test]
    fn escape_sequences_are_shown_not_obeyed() {
        let shown = safe("\x1b[2J\x1b]0;owned\x07gone\r\x7f\u{9b}31m");
        assert_eq!(shown, "\\x1b[2J\\x1b]0;owned\\x07gone\\x0d\\x7f\\u{9b}31m");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
    }

    #[test]
    fn a_newline_starts_a_marked_continuation_line() {
        let shown = safe("see you\ncarol/phone: forged\n");
        assert_eq!(shown, "see you\n  | carol/phone: forged\n  | ");
        for line in shown.lines().skip(1) {
            assert!(line.starts_with("  | "), "{line:?}");
        }
    }

    #[test]
    fn bidi_controls_and_separators_are_escaped() {
        assert_eq!(
            safe("a\u{202e}cba\u{2066}x\u{2069}\u{200f}\u{2028}"),
            "a\\u{202e}cba\\u{2066}x\\u{2069}\\u{200f}\\u{2028}"
        );
    }
}
