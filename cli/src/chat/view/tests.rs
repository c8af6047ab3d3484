use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::{Color, Modifier};

use super::*;
use crate::chat::model::{GroupSummary, Line};

/// 2023-11-14 at `hh:mm` UTC.
fn at(hh: u64, mm: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_699_920_000 + hh * 3600 + mm * 60)
}

fn clock() -> Clock {
    Clock {
        now: Instant::now(),
        zone: Zone::Fixed(0),
    }
}

const OPS: [u8; 16] = [1; 16];
const LUNCH: [u8; 16] = [2; 16];

fn model() -> Model {
    let mut model = Model::new("alice/laptop");
    model.set_groups(vec![
        GroupSummary {
            name: Some("Ops".into()),
            topic: Some("deploys at 5".into()),
            members: 3,
            ..GroupSummary::new(OPS.to_vec())
        },
        GroupSummary {
            name: Some("Lunch".into()),
            members: 2,
            ..GroupSummary::new(LUNCH.to_vec())
        },
        GroupSummary::new(vec![0x1a, 0x2b, 0x3c, 0x4d, 0x5e]),
    ]);
    model
}

fn draw(model: &mut Model, clock: &Clock, columns: u16, rows: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(columns, rows)).expect("test terminal");
    terminal
        .draw(|frame| render(frame, model, clock))
        .expect("drawn");
    terminal.backend().buffer().clone()
}

/// The screen as the user reads it, one string per row, trailing spaces cut.
fn text(buffer: &Buffer) -> Vec<String> {
    (0..buffer.area.height)
        .map(|y| {
            let row: String = (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect();
            row.trim_end().to_owned()
        })
        .collect()
}

fn screen(model: &mut Model) -> Vec<String> {
    text(&draw(model, &clock(), 80, 14))
}

/// The conversation pane's part of each row (right of the group list).
fn pane(screen: &[String]) -> Vec<String> {
    screen[1..screen.len() - 3]
        .iter()
        .map(|row| match row.split_once('│') {
            Some((_, pane)) => pane.trim().to_owned(),
            None => String::new(),
        })
        .collect()
}

/// The conversation pane's rows, on the usual 80×14 screen.
fn shown(model: &mut Model) -> Vec<String> {
    pane(&screen(model))
}

fn row_with<'a>(screen: &'a [String], needle: &str) -> &'a str {
    screen
        .iter()
        .find(|row| row.contains(needle))
        .unwrap_or_else(|| panic!("no row shows {needle:?}:\n{}", screen.join("\n")))
}

fn press(model: &mut Model, code: KeyCode) {
    model.handle_key(KeyEvent::new(code, KeyModifiers::NONE), at(12, 0));
}

#[test]
fn the_group_list_shows_each_name_or_id_start_and_unread_count() {
    let mut model = model();
    for text in ["lunch?", "now?"] {
        model.push_line(&LUNCH, Line::message(at(12, 0), "bob/phone", text));
    }
    let screen = screen(&mut model);
    assert!(row_with(&screen, "> Ops").starts_with("> Ops "));
    let lunch = row_with(&screen, "Lunch");
    assert!(lunch.starts_with("  Lunch"), "{lunch}");
    assert_eq!(
        lunch.split('│').next().map(str::trim_end),
        Some("  Lunch          2")
    );
    row_with(&screen, "  1a2b3c4d");
}

#[test]
fn the_selected_group_is_highlighted() {
    let mut model = model();
    let buffer = draw(&mut model, &clock(), 80, 14);
    let selected = (0..buffer.area.height)
        .find(|&y| buffer[(2, y)].symbol() == "O")
        .expect("Ops listed");
    assert!(buffer[(2, selected)].modifier.contains(Modifier::REVERSED));
    assert!(
        !buffer[(2, selected + 1)]
            .modifier
            .contains(Modifier::REVERSED)
    );
}

#[test]
fn a_message_shows_its_time_sender_and_text() {
    let mut model = model();
    model.push_line(
        &OPS,
        Line::message(at(9, 5), "bob/phone", "deploy is green"),
    );
    let screen = screen(&mut model);
    assert_eq!(pane(&screen)[0], "09:05 bob/phone: deploy is green");
}

#[test]
fn times_are_shown_in_the_local_time_zone() {
    let mut model = model();
    model.push_line(&OPS, Line::message(at(9, 5), "bob/phone", "hi"));
    let clock = Clock {
        zone: Zone::Fixed(-5 * 3600 - 1800),
        ..clock()
    };
    let screen = text(&draw(&mut model, &clock, 80, 14));
    assert_eq!(pane(&screen)[0], "03:35 bob/phone: hi");
}

#[test]
fn a_line_on_another_day_than_the_one_before_starts_with_the_date() {
    let mut model = model();
    let next_day = at(9, 30) + Duration::from_secs(86_400);
    model.push_line(&OPS, Line::message(at(23, 59), "bob/phone", "late"));
    model.push_line(&OPS, Line::message(next_day, "bob/phone", "early"));
    model.push_line(&OPS, Line::message(next_day, "bob/phone", "again"));
    assert_eq!(
        shown(&mut model)[..4],
        [
            "23:59 bob/phone: late",
            "── 2023-11-15 ──",
            "09:30 bob/phone: early",
            "09:30 bob/phone: again",
        ]
    );
}

#[test]
fn own_messages_are_shown_and_marked_as_yours() {
    let mut model = model();
    model.push_line(&OPS, Line::message(at(9, 5), "bob/phone", "ready?"));
    model.push_line(&OPS, Line::own(at(9, 6), "alice/laptop", "ready"));
    let buffer = draw(&mut model, &clock(), 80, 14);
    let screen = text(&buffer);
    assert_eq!(pane(&screen)[1], "09:06 alice/laptop (you): ready");
    let x = screen[2].find("alice").expect("shown") as u16;
    assert_eq!(buffer[(x, 2)].fg, Color::Green);
}

#[test]
fn system_lines_and_alerts_are_marked_and_styled_apart_from_messages() {
    let mut model = model();
    model.push_line(
        &OPS,
        Line::system(at(9, 0), "alice/laptop added bob/laptop (key 1a2b3c4d…)"),
    );
    model.push_line(
        &OPS,
        Line::system(at(9, 1), "alice/laptop renamed the group to \"Ops\""),
    );
    model.push_line(
        &OPS,
        Line::alert(
            at(9, 2),
            "GHOST DEVICE mallory/x (key 9f9f) is in the group: not certified",
        ),
    );
    let buffer = draw(&mut model, &clock(), 100, 14);
    let screen = text(&buffer);
    let pane = pane(&screen);
    assert_eq!(
        pane[..3],
        [
            "09:00 -- alice/laptop added bob/laptop (key 1a2b3c4d…)",
            "09:01 -- alice/laptop renamed the group to \"Ops\"",
            "09:02 !! GHOST DEVICE mallory/x (key 9f9f) is in the group: not certified",
        ]
    );
    let x = screen[1].find("added").expect("shown") as u16;
    assert!(buffer[(x, 1)].modifier.contains(Modifier::ITALIC));
    let x = screen[3].find("GHOST").expect("shown") as u16;
    assert_eq!(buffer[(x, 3)].fg, Color::Red);
    assert!(buffer[(x, 3)].modifier.contains(Modifier::BOLD));
}

#[test]
fn control_characters_from_the_network_are_shown_escaped_never_sent_to_the_terminal() {
    let mut model = model();
    model.set_groups(vec![GroupSummary {
        name: Some("Ops\x1b]0;pwned\x07".into()),
        topic: Some("line one\nline two".into()),
        ..GroupSummary::new(OPS.to_vec())
    }]);
    model.push_line(
        &OPS,
        Line::message(
            at(9, 0),
            "bob/phone",
            "\x1b[2Jcleared?\ncarol/phone: forged",
        ),
    );
    model.push_line(&OPS, Line::system(at(9, 1), "\u{202e}reversed\r"));
    let buffer = draw(&mut model, &clock(), 100, 14);
    let screen = text(&buffer);
    let pane = pane(&screen);
    assert_eq!(pane[0], "09:00 bob/phone: \\x1b[2Jcleared?");
    // The forged line is a marked continuation under the text, not a line.
    assert_eq!(pane[1], "| carol/phone: forged");
    assert!(screen[2].find('|') > screen[1].find("\\x1b"), "{screen:?}");
    assert_eq!(pane[2], "09:01 -- \\u{202e}reversed\\x0d");
    let status = &screen[0];
    assert!(status.contains("Ops\\x1b]0;pwned\\x07"), "{status}");
    assert!(status.contains("line one\\x0aline two"), "{status}");
    row_with(&screen, "> Ops\\x1b]0;");
    for cell in buffer.content() {
        assert!(
            !cell
                .symbol()
                .chars()
                .any(|c| c.is_control() || c == '\u{202e}'),
            "{:?} drawn raw",
            cell.symbol()
        );
    }
}

#[test]
fn a_long_message_wraps_under_its_text() {
    let mut model = model();
    let long = "the deploy went out at five and everything looks green so far, watching the graphs";
    model.push_line(&OPS, Line::message(at(9, 0), "bob/phone", long));
    let screen = text(&draw(&mut model, &clock(), 60, 14));
    let column = screen[1].find("the deploy").expect("shown");
    let taken = pane(&screen)
        .iter()
        .take_while(|row| !row.is_empty())
        .count();
    assert!(taken > 1, "{screen:?}");
    let wrapped: Vec<&str> = screen[1..=taken].iter().map(|row| &row[column..]).collect();
    assert_eq!(wrapped.join(" "), long);
    for row in &screen[2..=taken] {
        let indent = row[..column].rsplit('│').next().unwrap_or_default();
        assert!(indent.len() > 10 && indent.trim().is_empty(), "{row:?}");
    }
}

fn numbered(model: &mut Model, range: std::ops::Range<u32>) {
    for n in range {
        model.push_line(
            &OPS,
            Line::message(at(9, 0), "bob/phone", format!("message {n}")),
        );
    }
}

#[test]
fn page_up_shows_earlier_lines_and_keeps_them_in_view_as_new_ones_arrive() {
    let mut model = model();
    numbered(&mut model, 0..40);
    let newest = shown(&mut model);
    assert_eq!(newest.len(), 10);
    assert_eq!(newest[0], "09:00 bob/phone: message 30");
    assert_eq!(newest[9], "09:00 bob/phone: message 39");

    press(&mut model, KeyCode::PageUp);
    let scrolled = shown(&mut model);
    assert_eq!(scrolled[0], "09:00 bob/phone: message 23");
    assert_eq!(scrolled[8], "09:00 bob/phone: message 31");
    assert!(scrolled[9].contains("more below"), "{scrolled:?}");

    numbered(&mut model, 40..43);
    let kept = shown(&mut model);
    assert_eq!(kept[..9], scrolled[..9]);
    assert!(kept[9].contains("3 new below"), "{kept:?}");

    press(&mut model, KeyCode::PageDown);
    let down = shown(&mut model);
    assert_eq!(down[0], "09:00 bob/phone: message 31");
    assert_eq!(down[8], "09:00 bob/phone: message 39");
    assert!(down[9].contains("3 new below"), "{down:?}");

    press(&mut model, KeyCode::PageDown);
    let bottom = shown(&mut model);
    assert_eq!(bottom[9], "09:00 bob/phone: message 42");
    numbered(&mut model, 43..44);
    let following = shown(&mut model);
    assert_eq!(following[9], "09:00 bob/phone: message 43");
}

#[test]
fn a_conversation_shorter_than_the_pane_keeps_following_after_page_up() {
    let mut model = model();
    numbered(&mut model, 0..3);
    press(&mut model, KeyCode::PageUp);
    screen(&mut model);
    numbered(&mut model, 3..24);
    let rows = shown(&mut model);
    assert_eq!(rows[9], "09:00 bob/phone: message 23");
    assert!(!rows.iter().any(|row| row.contains("below")), "{rows:?}");
}

#[test]
fn page_up_stops_at_the_first_line() {
    let mut model = model();
    numbered(&mut model, 0..15);
    for _ in 0..5 {
        press(&mut model, KeyCode::PageUp);
        screen(&mut model);
    }
    let top = shown(&mut model);
    assert_eq!(top[0], "09:00 bob/phone: message 0");
    press(&mut model, KeyCode::PageDown);
    let bottom = shown(&mut model);
    assert_eq!(bottom[9], "09:00 bob/phone: message 14");
}

#[test]
fn the_status_line_shows_the_connection_and_the_selected_group() {
    let mut model = model();
    model.set_status(Connection::Connected);
    let screen = screen(&mut model);
    assert_eq!(
        screen[0],
        "● connected │ alice/laptop │ Ops: deploys at 5 │ 3 members"
    );
}

#[test]
fn the_status_line_shows_a_reconnection_with_its_reason_and_countdown() {
    let mut model = model();
    let clock = clock();
    model.set_status(Connection::Reconnecting {
        reason: "connection refused".into(),
        attempt: 1,
        retry_at: Some(clock.now + Duration::from_millis(4_200)),
    });
    let screen = text(&draw(&mut model, &clock, 100, 14));
    assert!(
        screen[0].starts_with("○ reconnecting in 5s (connection refused) │ alice/laptop │ Ops"),
        "{}",
        screen[0]
    );
    model.set_status(Connection::Reconnecting {
        reason: "no answer within 10s".into(),
        attempt: 3,
        retry_at: None,
    });
    let screen = text(&draw(&mut model, &clock, 100, 14));
    assert!(
        screen[0].starts_with("○ reconnecting now (no answer within 10s, attempt 3)"),
        "{}",
        screen[0]
    );
}

#[test]
fn the_status_line_says_when_the_ds_refused_this_device_for_good() {
    let mut model = model();
    let clock = clock();
    model.set_status(Connection::Ended {
        reason: "it was removed from the server".into(),
    });
    let screen = text(&draw(&mut model, &clock, 100, 14));
    assert!(
        screen[0].starts_with("✕ disconnected for good (it was removed from the server) │"),
        "{}",
        screen[0]
    );
}

#[test]
fn the_safety_code_is_shown_whole_when_asked_for() {
    let mut model = model();
    let code = "12345 67890 13579 24680 11111 22222 33333 44444 55555 66666 77777 88888";
    model.set_safety_code(&OPS, Some(code.into()));
    let screen = screen(&mut model);
    assert_eq!(
        screen[0],
        "○ connecting… │ alice/laptop │ Ops: deploys at 5 │ 3 members"
    );
    assert_eq!(
        screen[1],
        "safety code of this epoch: compare it with the other members (Esc hides)"
    );
    assert_eq!(screen[2], code);
    assert!(screen[3].starts_with("> Ops"), "{screen:?}");
    // Narrower, the code is wrapped, never cut.
    let narrow = text(&draw(&mut model, &clock(), 40, 14));
    assert_eq!(narrow[2..4].join(" "), code);
    press(&mut model, KeyCode::Esc);
    let screen = self::screen(&mut model);
    assert!(screen[1].starts_with("> Ops"), "{screen:?}");
}

#[test]
fn help_is_shown_in_the_conversation() {
    let mut model = model();
    for c in "/help".chars() {
        press(&mut model, KeyCode::Char(c));
    }
    press(&mut model, KeyCode::Enter);
    let screen = text(&draw(&mut model, &clock(), 100, 20));
    row_with(&screen, "-- commands");
    row_with(&screen, "/add USER...");
    row_with(&screen, "/quit");
}

#[test]
fn the_input_line_shows_what_is_typed_with_the_cursor_in_it_and_a_key_hint() {
    let mut model = model();
    for c in "hello".chars() {
        press(&mut model, KeyCode::Char(c));
    }
    press(&mut model, KeyCode::Left);
    let mut terminal = Terminal::new(TestBackend::new(80, 14)).expect("test terminal");
    terminal
        .draw(|frame| render(frame, &mut model, &clock()))
        .expect("drawn");
    let screen = text(terminal.backend().buffer());
    assert_eq!(screen[12], "> hello");
    assert!(
        screen[13].starts_with("Enter send · Ctrl-N/P"),
        "{}",
        screen[13]
    );
    let cursor = terminal.get_cursor_position().expect("cursor");
    assert_eq!((cursor.x, cursor.y), (6, 12));
}

#[test]
fn a_long_input_line_scrolls_to_keep_the_cursor_in_view() {
    let mut model = model();
    let typed: String = (0..100)
        .map(|n| char::from(b'a' + (n % 26) as u8))
        .collect();
    for c in typed.chars() {
        press(&mut model, KeyCode::Char(c));
    }
    let screen = text(&draw(&mut model, &clock(), 40, 14));
    assert!(screen[12].starts_with("> "));
    assert!(typed.ends_with(&screen[12][2..]), "{}", screen[12]);
}

#[test]
fn without_groups_the_pane_says_how_to_start() {
    let mut model = Model::new("alice/laptop");
    let screen = screen(&mut model);
    row_with(&screen, "no groups yet: /new NAME");
}

#[test]
fn a_tiny_terminal_is_drawn_without_panicking() {
    let mut model = model();
    numbered(&mut model, 0..30);
    model.push_line(
        &OPS,
        Line::message(at(9, 0), "bob/phone", "日本語\n\x1b[2J"),
    );
    for c in "a long line being typed 日本語".chars() {
        press(&mut model, KeyCode::Char(c));
    }
    for (columns, rows) in [(1, 1), (2, 2), (10, 3), (20, 6), (7, 40)] {
        draw(&mut model, &clock(), columns, rows);
        press(&mut model, KeyCode::PageUp);
        draw(&mut model, &clock(), columns, rows);
    }
}
