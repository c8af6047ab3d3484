//! How a conversation line is laid out in rows of the pane: the local
//! time, the sender (or a system marker), and the text, escaped with
//! [`safe`] and wrapped under itself, so that no row of a message's text
//! starts where a line of its own would; and the date, where the day
//! changes.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{Local, TimeZone};
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

/// The time zone lines' times are shown in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    /// This system's (`TZ`, `/etc/localtime`), daylight saving included:
    /// each time with the offset in force then, as `confide history` shows
    /// them.
    Local,
    /// Seconds east of UTC, all year: a screen that does not depend on
    /// where it is drawn (tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Fixed(i32),
}

impl Zone {
    fn offset_at(self, unix_secs: i64) -> i32 {
        match self {
            Zone::Fixed(offset) => offset,
            Zone::Local => Local
                .timestamp_opt(unix_secs, 0)
                .single()
                .map_or(0, |local| local.offset().local_minus_utc()),
        }
    }
}

/// Seconds since the epoch of `at` on the clocks of `zone`.
fn local_secs(at: SystemTime, zone: Zone) -> i64 {
    let secs = match at.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs() as i64,
        Err(before) => -(before.duration().as_secs() as i64),
    };
    secs + i64::from(zone.offset_at(secs))
}

/// `HH:MM` of `at` in `zone`.
pub fn hhmm(at: SystemTime, zone: Zone) -> String {
    let local = local_secs(at, zone).rem_euclid(86_400);
    format!("{:02}:{:02}", local / 3600, local % 3600 / 60)
}

/// The day of `at` in `zone`, in days since 1970-01-01.
fn day(at: SystemTime, zone: Zone) -> i64 {
    local_secs(at, zone).div_euclid(86_400)
}

/// `YYYY-MM-DD` of a day since 1970-01-01 (the proleptic Gregorian
/// calendar; Howard Hinnant's `civil_from_days`).
fn date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
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

/// The rows `line` takes in a pane `width` columns wide, after the line
/// before it: a line on another day than that one starts with the date,
/// since each line shows only its time.
pub fn rows_after(
    line: &Line,
    before: Option<&Line>,
    width: usize,
    zone: Zone,
) -> Vec<Row<'static>> {
    let today = day(line.at, zone);
    let mut out = Vec::new();
    if before.is_some_and(|before| day(before.at, zone) != today) {
        let row = format!("── {} ──", date(today));
        out.push(Row::styled(row, time_style()));
    }
    out.extend(rows(line, width, zone));
    out
}

/// The rows `line` takes in a pane `width` columns wide.
fn rows(line: &Line, width: usize, zone: Zone) -> Vec<Row<'static>> {
    let width = width.max(1);
    let mut head = vec![
        Span::styled(hhmm(line.at, zone), time_style()),
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
pub fn wrap(text: &str, first: usize, rest: usize) -> Vec<String> {
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
        assert_eq!(hhmm(at, Zone::Fixed(0)), "13:07");
        assert_eq!(hhmm(at, Zone::Fixed(3600 + 1800)), "14:37");
        assert_eq!(hhmm(at, Zone::Fixed(-14 * 3600)), "23:07");
    }

    #[test]
    fn local_time_is_this_systems_with_the_offset_in_force_then() {
        for secs in [0, 1_688_200_000, 1_700_000_000] {
            let at = UNIX_EPOCH + std::time::Duration::from_secs(secs);
            let expected = Local
                .timestamp_opt(secs as i64, 0)
                .single()
                .expect("a time");
            assert_eq!(hhmm(at, Zone::Local), expected.format("%H:%M").to_string());
        }
    }

    #[test]
    fn days_are_calendar_dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(-1), "1969-12-31");
        assert_eq!(date(11_016), "2000-02-29");
        assert_eq!(date(19_675), "2023-11-14");
        assert_eq!(date(19_782), "2024-02-29");
        assert_eq!(date(20_789), "2026-12-02");
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
