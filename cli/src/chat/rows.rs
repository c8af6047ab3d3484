//! How a conversation line is laid out in rows of the pane: the local
//! time, the sender (or a system marker), and the text, escaped with
//! [`safe`] and wrapped under itself, so that no row of a message's text
//! starts where a line of its own would.

use std::time::{SystemTime, UNIX_EPOCH};

use confide_client::display::safe;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line as Row, Span};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::model::{Line, LineKind};

/// The narrowest text column worth keeping under the prefix; in a pane
/// narrower than that, wrapped rows start at the left edge instead.
const MIN_TEXT: usize = 12;

/// How a system line starts; an alert's is louder.
const SYSTEM_MARKER: &str = "-- ";
const ALERT_MARKER: &str = "!! ";

pub fn time_style() -> Style {
    Style::new().fg(Color::DarkGray)
}

pub fn system_style() -> Style {
    Style::new()
        .fg(Color::Gray)
        .add_modifier(Modifier::DIM | Modifier::ITALIC)
}

pub fn alert_style() -> Style {
    Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
}

/// `HH:MM` of `at`, `utc_offset_secs` east of UTC.
pub fn hhmm(at: SystemTime, utc_offset_secs: i32) -> String {
    let secs = match at.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs() as i64,
        Err(before) => -(before.duration().as_secs() as i64),
    };
    let local = (secs + i64::from(utc_offset_secs)).rem_euclid(86_400);
    format!("{:02}:{:02}", local / 3600, local % 3600 / 60)
}

/// Untrusted text for a place that has one row (a name, a topic): escaped,
/// with a newline shown as `\x0a` rather than starting a continuation.
pub fn inline(text: &str) -> String {
    text.split('\n').map(safe).collect::<Vec<_>>().join("\\x0a")
}

/// Columns `text` takes on a terminal.
pub fn width(text: &str) -> usize {
    text.width()
}

/// `text` cut to `max` columns, ending in `…` if it was cut.
pub fn truncate(text: &str, max: usize) -> String {
    if width(text) <= max {
        return text.to_owned();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > max {
            break;
        }
        out.push(c);
        used += w;
    }
    if max > 0 {
        out.push('…');
    }
    out
}

/// The rows `line` takes in a pane `width` columns wide.
pub fn rows(line: &Line, width: usize, utc_offset_secs: i32) -> Vec<Row<'static>> {
    let width = width.max(1);
    let mut head = vec![
        Span::styled(hhmm(line.at, utc_offset_secs), time_style()),
        Span::raw(" "),
    ];
    let (text, style) = match &line.kind {
        LineKind::Message { sender, own, text } => {
            let sender_style = if *own {
                Style::new().fg(Color::Green).add_modifier(Modifier::BOLD)
            } else {
                Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
            };
            head.push(Span::styled(inline(sender), sender_style));
            if *own {
                head.push(Span::styled(" (you)", Style::new().fg(Color::Green)));
            }
            head.push(Span::raw(": "));
            (text, Style::new())
        }
        LineKind::System { text, alert } => {
            let (marker, style) = match alert {
                true => (ALERT_MARKER, alert_style()),
                false => (SYSTEM_MARKER, system_style()),
            };
            head.push(Span::styled(marker, style));
            (text, style)
        }
    };
    let prefix: usize = head.iter().map(Span::width).sum();
    let indent = if prefix + MIN_TEXT <= width {
        prefix
    } else {
        0
    };
    let first = width.saturating_sub(prefix);
    let rest = width - indent;
    let mut out = Vec::new();
    for (index, segment) in safe(text).split('\n').enumerate() {
        let chunks = match index {
            0 => wrap(segment, first, rest),
            _ => wrap(segment, rest, rest),
        };
        for (row, chunk) in chunks.into_iter().enumerate() {
            let span = Span::styled(chunk, style);
            out.push(match (index, row) {
                (0, 0) => Row::from([head.clone(), vec![span]].concat()),
                _ => Row::from(vec![Span::raw(" ".repeat(indent)), span]),
            });
        }
    }
    out
}

/// `text` in chunks of at most `first` columns, then `rest` (`rest >=
/// first`), broken after the last space that fits or, in a word longer
/// than a row, anywhere.
fn wrap(text: &str, first: usize, rest: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut limit = first;
    if limit == 0 {
        chunks.push(String::new());
        limit = rest;
    }
    let mut row = String::new();
    let mut used = 0;
    // Where the row could break: the byte after its last space, and the
    // columns up to there.
    let mut space: Option<(usize, usize)> = None;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > limit && used > 0 {
            match space.take() {
                Some((at, at_used)) if at < row.len() => {
                    let tail = row.split_off(at);
                    chunks.push(std::mem::replace(&mut row, tail));
                    used -= at_used;
                }
                _ => {
                    chunks.push(std::mem::take(&mut row));
                    used = 0;
                }
            }
            limit = rest;
        }
        row.push(c);
        used += w;
        if c == ' ' {
            space = Some((row.len(), used));
        }
    }
    chunks.push(row);
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_local_hours_and_minutes() {
        let at = UNIX_EPOCH + std::time::Duration::from_secs(86_400 * 365 + 13 * 3600 + 7 * 60);
        assert_eq!(hhmm(at, 0), "13:07");
        assert_eq!(hhmm(at, 3600 + 1800), "14:37");
        assert_eq!(hhmm(at, -14 * 3600), "23:07");
    }

    #[test]
    fn text_wraps_after_the_last_space_that_fits() {
        assert_eq!(
            wrap("see you all tomorrow", 10, 10),
            ["see you ", "all ", "tomorrow"]
        );
        assert_eq!(wrap("abcdefghij", 4, 6), ["abcd", "efghij"]);
        assert_eq!(wrap("ab", 0, 5), ["", "ab"]);
        assert_eq!(wrap("", 5, 5), [""]);
    }

    #[test]
    fn wide_characters_take_two_columns() {
        assert_eq!(wrap("日本語です", 5, 5), ["日本", "語で", "す"]);
        assert_eq!(truncate("日本語です", 5), "日本…");
        assert_eq!(truncate("Ops", 5), "Ops");
        assert_eq!(truncate("Operations", 5), "Oper…");
    }

    #[test]
    fn a_newline_in_a_name_is_shown_escaped_on_one_row() {
        assert_eq!(inline("Ops\n\x1b[2Jroot"), "Ops\\x0a\\x1b[2Jroot");
    }
}
