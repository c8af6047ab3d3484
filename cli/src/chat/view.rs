//! Drawing the model: the status line on top, the group list on the left,
//! the selected conversation on the right, the input line and a key hint
//! at the bottom. Every string that came from the network is drawn
//! escaped (`rows::inline`, or [`confide_client::display::safe`] through
//! `rows::rows_after`), never raw.

use std::time::Instant;

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line as Row, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use super::model::{Connection, Conversation, Model};
use super::rows::{self, Zone, inline, rows_after, truncate, width};

/// What drawing needs to know of the time: now, for the retry countdown,
/// and the time zone, for each line's time. Passed in, so that the same
/// model always draws the same screen.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub now: Instant,
    pub zone: Zone,
}

impl Clock {
    /// Now, in this system's time zone: what the chat draws with.
    pub fn local() -> Self {
        Clock {
            now: Instant::now(),
            zone: Zone::Local,
        }
    }
}

const HINT: &str =
    "Enter send · Ctrl-N/P or Alt-↑/↓ group · PgUp/PgDn scroll · /help · Ctrl-C quit";

/// Draws the whole chat. Takes the model mutably only to record what
/// depends on the pane's size: how far PageUp goes, and where a scrolled
/// conversation settled.
pub fn render(frame: &mut Frame, model: &mut Model, clock: &Clock) {
    let safety = safety_rows(model, frame.area().width);
    let [status, safety_area, body, rule, input, hint] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(safety.len() as u16),
        Constraint::Min(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let list_width = (body.width / 4).clamp(12, 28);
    let [list, pane] =
        Layout::horizontal([Constraint::Length(list_width), Constraint::Min(1)]).areas(body);
    frame.render_widget(
        Paragraph::new(status_row(model, clock)).style(Style::new().bg(Color::Black)),
        status,
    );
    frame.render_widget(Paragraph::new(safety), safety_area);
    groups(frame, list, model);
    conversation(frame, pane, model, clock);
    frame.render_widget(Block::new().borders(Borders::TOP), rule);
    input_line(frame, input, model);
    frame.render_widget(Paragraph::new(HINT).style(rows::time_style()), hint);
}

fn status_row(model: &Model, clock: &Clock) -> Row<'static> {
    let separator = || Span::styled(" │ ", rows::time_style());
    let mut spans = match model.connection() {
        Connection::Connected => vec![Span::styled("● connected", Style::new().fg(Color::Green))],
        Connection::Connecting => vec![Span::styled(
            "○ connecting…",
            Style::new().fg(Color::Yellow),
        )],
        Connection::Reconnecting {
            reason,
            attempt,
            retry_at,
        } => {
            let when = match retry_at.map(|at| at.saturating_duration_since(clock.now)) {
                Some(wait) if !wait.is_zero() => {
                    format!("in {}s", wait.as_millis().div_ceil(1000))
                }
                _ => "now".to_owned(),
            };
            let attempt = match attempt {
                0 | 1 => String::new(),
                n => format!(", attempt {n}"),
            };
            vec![Span::styled(
                format!("○ reconnecting {when} ({}{attempt})", inline(reason)),
                Style::new().fg(Color::Yellow),
            )]
        }
        Connection::Ended { reason } => vec![Span::styled(
            format!("✕ disconnected for good ({})", inline(reason)),
            Style::new().fg(Color::Red),
        )],
    };
    spans.extend([separator(), Span::raw(inline(model.me()))]);
    if let Some(group) = model.selected() {
        spans.extend([
            separator(),
            Span::styled(
                inline(&group.label()),
                Style::new().add_modifier(Modifier::BOLD),
            ),
        ]);
        if let Some(topic) = &group.topic {
            spans.push(Span::raw(format!(": {}", inline(topic))));
        }
        let members = match group.members {
            1 => "1 member".to_owned(),
            n => format!("{n} members"),
        };
        spans.extend([separator(), Span::raw(members)]);
    }
    Row::from(spans)
}

/// The rows under the status line that show the safety code the user
/// asked for, whole (twelve groups of five digits do not fit beside the
/// rest, nor always on one row).
fn safety_rows(model: &Model, columns: u16) -> Vec<Row<'static>> {
    let Some(code) = model.safety_code() else {
        return Vec::new();
    };
    let style = Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD);
    let columns = usize::from(columns).max(1);
    let about = "safety code of this epoch: compare it with the other members (Esc hides)";
    let mut shown = vec![Row::styled(about, style.remove_modifier(Modifier::BOLD))];
    let code = rows::wrap(&inline(code), columns, columns);
    shown.extend(code.into_iter().map(|row| Row::styled(row, style)));
    shown
}

/// The group list: each group's name (or id) and unread count, the
/// selected one highlighted, scrolled to keep it in view.
fn groups(frame: &mut Frame, area: Rect, model: &Model) {
    let block = Block::new().borders(Borders::RIGHT);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let columns = inner.width as usize;
    let selected = model.selected().map(|group| group.id.as_slice());
    let at = model
        .groups()
        .iter()
        .position(|group| Some(group.id.as_slice()) == selected)
        .unwrap_or(0);
    let skip = at.saturating_sub((inner.height as usize).saturating_sub(1));
    let rows: Vec<Row> = model
        .groups()
        .iter()
        .skip(skip)
        .map(|group| {
            let is_selected = Some(group.id.as_slice()) == selected;
            let marker = if is_selected { "> " } else { "  " };
            let unread = match group.unread {
                0 => String::new(),
                n => format!(" {n}"),
            };
            // The marker before, a column before the border.
            let room = columns.saturating_sub(3 + width(&unread));
            let label = truncate(&inline(&group.label()), room);
            let pad = " ".repeat(room.saturating_sub(width(&label)));
            let style = match is_selected {
                true => Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD),
                false if group.unread > 0 => Style::new().add_modifier(Modifier::BOLD),
                false => Style::new(),
            };
            Row::from(vec![
                Span::raw(marker),
                Span::raw(label),
                Span::raw(pad),
                Span::styled(unread, Style::new().fg(Color::Yellow)),
                Span::raw(" "),
            ])
            .style(style)
        })
        .collect();
    frame.render_widget(Paragraph::new(rows), inner);
}

/// The selected conversation: the newest rows, or where the user scrolled
/// to, with a marker row saying what is below.
fn conversation(frame: &mut Frame, area: Rect, model: &mut Model, clock: &Clock) {
    let area = Rect {
        x: area.x + 1,
        width: area.width.saturating_sub(1),
        ..area
    };
    model.set_pane_height(area.height as usize);
    if model.groups().is_empty() && model.conversation().is_some_and(|c| c.lines().is_empty()) {
        let hint = "no groups yet: /new NAME creates one, or wait to be added to one";
        frame.render_widget(Paragraph::new(hint).style(rows::system_style()), area);
        return;
    }
    let (columns, height) = (area.width as usize, area.height as usize);
    let zone = clock.zone;
    let conversation = model.conversation_mut();
    let Some((shown, below)) = scrolled(conversation, columns, height, zone) else {
        let shown = newest(conversation, columns, height, zone);
        frame.render_widget(Paragraph::new(shown), area);
        return;
    };
    let [text, marker] = Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(area);
    frame.render_widget(Paragraph::new(shown), text);
    let what = match below {
        0 => "more below".to_owned(),
        n => format!("{n} new below"),
    };
    frame.render_widget(
        Paragraph::new(format!("── {what} · PgDn ──"))
            .alignment(Alignment::Center)
            .style(Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)),
        marker,
    );
}

/// The rows of the newest lines that fill `height` rows; only those lines
/// are laid out.
fn newest(
    conversation: &Conversation,
    columns: usize,
    height: usize,
    zone: Zone,
) -> Vec<Row<'static>> {
    let lines = conversation.lines();
    let mut shown = Vec::new();
    for (index, line) in lines.iter().enumerate().rev() {
        if shown.len() >= height {
            break;
        }
        let before = index.checked_sub(1).map(|before| &lines[before]);
        shown.splice(0..0, rows_after(line, before, columns, zone));
    }
    let skip = shown.len().saturating_sub(height);
    shown.split_off(skip)
}

/// Where a conversation scrolled up is: the rows above the marker row and
/// how many lines that arrived since it was scrolled are below them.
/// `None` when it follows the newest line (or has scrolled back to it).
fn scrolled(
    conversation: &mut Conversation,
    columns: usize,
    height: usize,
    zone: Zone,
) -> Option<(Vec<Row<'static>>, usize)> {
    let scroll = conversation.scroll()?;
    let lines = conversation.lines();
    let laid: Vec<Vec<Row>> = lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            let before = index.checked_sub(1).map(|before| &lines[before]);
            rows_after(line, before, columns, zone)
        })
        .collect();
    let total: usize = laid.iter().map(Vec::len).sum();
    let content = height.saturating_sub(1);
    let arrived: usize = laid[scroll.counted.min(laid.len())..]
        .iter()
        .map(Vec::len)
        .sum();
    let up = (scroll.rows_up + arrived).min(total.saturating_sub(content));
    conversation.settle_scroll(up);
    if up == 0 {
        return None;
    }
    let end = total - up;
    let mut first_row = 0;
    let mut below = 0;
    for (index, line_rows) in laid.iter().enumerate() {
        if index >= scroll.new_from && first_row >= end {
            below += 1;
        }
        first_row += line_rows.len();
    }
    let start = end.saturating_sub(content);
    let shown = laid.into_iter().flatten().skip(start).take(content);
    Some((shown.collect(), below))
}

/// The line being typed, after a prompt, scrolled sideways to keep the
/// cursor in view; the terminal's cursor is put where typing goes.
fn input_line(frame: &mut Frame, area: Rect, model: &Model) {
    const PROMPT: &str = "> ";
    let input = model.input();
    let text = inline(input.text());
    let cursor = width(&inline(input.before_cursor()));
    let room = (area.width as usize)
        .saturating_sub(width(PROMPT) + 1)
        .max(1);
    let mut skipped = 0;
    let mut visible = text.as_str();
    while cursor - skipped > room {
        let Some(c) = visible.chars().next() else {
            break;
        };
        skipped += width(c.encode_utf8(&mut [0; 4]));
        visible = &visible[c.len_utf8()..];
    }
    frame.render_widget(
        Paragraph::new(Row::from(vec![
            Span::styled(PROMPT, Style::new().fg(Color::Cyan)),
            Span::raw(visible.to_owned()),
        ])),
        area,
    );
    let x = area.x as usize + width(PROMPT) + cursor - skipped;
    frame.set_cursor_position(Position {
        x: x.min(u16::MAX as usize) as u16,
        y: area.y,
    });
}

#[cfg(test)]
mod tests;
