use std::time::{Duration, UNIX_EPOCH};

use ratatui::crossterm::event::{KeyCode, KeyModifiers};

use super::*;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn group(id: u8, name: &str) -> GroupSummary {
    GroupSummary {
        name: Some(name.to_owned()),
        members: 2,
        ..GroupSummary::new(vec![id; 16])
    }
}

fn two_groups() -> Model {
    let mut model = Model::new("alice/laptop");
    model.set_groups(vec![group(1, "Ops"), group(2, "Lunch")]);
    model
}

fn press(model: &mut Model, code: KeyCode, modifiers: KeyModifiers) {
    model.handle_key(KeyEvent::new(code, modifiers), now());
}

fn type_line(model: &mut Model, text: &str) {
    for c in text.chars() {
        press(model, KeyCode::Char(c), KeyModifiers::NONE);
    }
    press(model, KeyCode::Enter, KeyModifiers::NONE);
}

fn shown(model: &Model) -> Vec<LineKind> {
    let lines = model.conversation().map(|c| c.lines().iter());
    lines
        .into_iter()
        .flatten()
        .map(|l| l.kind.clone())
        .collect()
}

fn unread(model: &Model) -> Vec<usize> {
    model.groups().iter().map(|g| g.unread).collect()
}

#[test]
fn lines_for_another_group_count_as_unread_and_selecting_it_reports_them_read() {
    let mut model = two_groups();
    assert_eq!(model.selected().map(|g| g.id.clone()), Some(vec![1; 16]));
    assert!(model.push_line(&[1; 16], Line::message(now(), "bob/phone", "here")));
    assert!(!model.push_line(&[2; 16], Line::message(now(), "bob/phone", "lunch?")));
    assert!(!model.push_line(&[2; 16], Line::message(now(), "bob/phone", "now?")));
    assert_eq!(unread(&model), [0, 2]);
    assert_eq!(model.take_actions(), []);

    press(&mut model, KeyCode::Char('n'), KeyModifiers::CONTROL);
    assert_eq!(model.selected().map(|g| g.label()), Some("Lunch".into()));
    assert_eq!(unread(&model), [0, 0]);
    assert_eq!(model.take_actions(), [Action::Read { group: vec![2; 16] }]);
    // A group with nothing unread is selected without a report.
    press(&mut model, KeyCode::Up, KeyModifiers::ALT);
    assert_eq!(model.selected().map(|g| g.label()), Some("Ops".into()));
    assert_eq!(model.take_actions(), []);
}

#[test]
fn group_keys_wrap_around_the_list() {
    let mut model = two_groups();
    press(&mut model, KeyCode::Char('p'), KeyModifiers::CONTROL);
    assert_eq!(model.selected().map(|g| g.label()), Some("Lunch".into()));
    press(&mut model, KeyCode::Tab, KeyModifiers::NONE);
    assert_eq!(model.selected().map(|g| g.label()), Some("Ops".into()));
    press(&mut model, KeyCode::Down, KeyModifiers::ALT);
    assert_eq!(model.selected().map(|g| g.label()), Some("Lunch".into()));
}

#[test]
fn a_new_group_list_keeps_the_selection_and_the_counted_unread_lines() {
    let mut model = two_groups();
    press(&mut model, KeyCode::Tab, KeyModifiers::NONE);
    model.push_line(&[1; 16], Line::message(now(), "bob/phone", "here"));
    let renamed = GroupSummary {
        topic: Some("deploys at 5".into()),
        ..group(1, "Operations")
    };
    let fresh = GroupSummary {
        unread: 4,
        ..group(3, "New")
    };
    model.set_groups(vec![renamed, group(2, "Lunch"), fresh]);
    assert_eq!(model.selected().map(|g| g.label()), Some("Lunch".into()));
    assert_eq!(unread(&model), [1, 0, 4]);
    assert_eq!(model.groups()[0].topic.as_deref(), Some("deploys at 5"));
}

#[test]
fn a_line_for_an_unknown_group_lists_it_unnamed() {
    let mut model = Model::new("alice/laptop");
    assert!(model.push_line(
        &[0xab, 0xcd, 0xef, 0x01, 0x23],
        Line::system(now(), "joined")
    ));
    assert_eq!(model.groups()[0].label(), "abcdef01");
    assert!(!model.push_line(&[9], Line::system(now(), "joined")));
    assert_eq!(unread(&model), [0, 0], "a system line is not unread");
    model.push_line(&[9], Line::message(now(), "bob/laptop", "hi"));
    assert_eq!(unread(&model), [0, 1]);
}

#[test]
fn enter_sends_the_line_to_the_selected_group_and_empties_it() {
    let mut model = two_groups();
    type_line(&mut model, "hello there");
    type_line(&mut model, "//etc/passwd is a path");
    type_line(&mut model, "   ");
    assert_eq!(
        model.take_actions(),
        [
            Action::Send {
                group: vec![1; 16],
                text: "hello there".into()
            },
            Action::Send {
                group: vec![1; 16],
                text: "/etc/passwd is a path".into()
            },
        ]
    );
    assert!(model.input().is_empty());
    // Sent lines are shown by the adapter once the client has them.
    assert_eq!(shown(&model), []);
}

#[test]
fn a_slash_command_becomes_an_action_on_the_selected_group() {
    let mut model = two_groups();
    type_line(&mut model, "/add bob carol");
    type_line(&mut model, "/new Lunch club");
    assert_eq!(
        model.take_actions(),
        [
            Action::Command {
                group: Some(vec![1; 16]),
                command: Command::Add {
                    users: vec!["bob".into(), "carol".into()]
                }
            },
            Action::Command {
                group: Some(vec![1; 16]),
                command: Command::New {
                    name: "Lunch club".into()
                }
            },
        ]
    );
}

#[test]
fn a_bad_command_is_answered_with_an_error_line_and_no_action() {
    let mut model = two_groups();
    type_line(&mut model, "/x");
    type_line(&mut model, "/add");
    assert_eq!(model.take_actions(), []);
    assert_eq!(
        shown(&model),
        [
            LineKind::System {
                text: "unknown command /x: /help lists them".into(),
                alert: true
            },
            LineKind::System {
                text: "/add USER...: needs at least one user".into(),
                alert: true
            },
        ]
    );
}

#[test]
fn without_a_group_messages_and_group_commands_say_how_to_make_one() {
    let mut model = Model::new("alice/laptop");
    type_line(&mut model, "hello");
    type_line(&mut model, "/verify");
    type_line(&mut model, "/new Ops");
    assert_eq!(
        model.take_actions(),
        [Action::Command {
            group: None,
            command: Command::New { name: "Ops".into() }
        }]
    );
    assert_eq!(
        shown(&model),
        [
            LineKind::System {
                text: "no group to send to: /new NAME creates one".into(),
                alert: true
            },
            LineKind::System {
                text: "no group selected: /new NAME creates one".into(),
                alert: true
            },
        ]
    );
}

#[test]
fn help_lists_every_command_in_the_conversation() {
    let mut model = two_groups();
    type_line(&mut model, "/help");
    assert_eq!(model.take_actions(), []);
    let lines = shown(&model);
    assert_eq!(lines.len(), COMMANDS.len() + 1);
    for (line, spec) in lines[1..].iter().zip(COMMANDS) {
        match line {
            LineKind::System { text, alert: false } => {
                assert!(
                    text.contains(spec.usage) && text.contains(spec.about),
                    "{text}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn ctrl_c_quit_and_ctrl_d_on_an_empty_line_end_the_chat() {
    let mut model = two_groups();
    press(&mut model, KeyCode::Char('c'), KeyModifiers::CONTROL);
    type_line(&mut model, "/quit");
    press(&mut model, KeyCode::Char('d'), KeyModifiers::CONTROL);
    assert_eq!(
        model.take_actions(),
        [Action::Quit, Action::Quit, Action::Quit]
    );
    // On a line being typed, Ctrl-D deletes under the cursor instead.
    press(&mut model, KeyCode::Char('x'), KeyModifiers::NONE);
    press(&mut model, KeyCode::Home, KeyModifiers::NONE);
    press(&mut model, KeyCode::Char('d'), KeyModifiers::CONTROL);
    assert_eq!(model.take_actions(), []);
    assert!(model.input().is_empty());
}

#[test]
fn a_commands_answer_goes_to_its_group_without_counting_as_unread() {
    let mut model = two_groups();
    model.info(Some(&[2; 16]), now(), "bob/phone: key 1a2b");
    model.error(None, now(), "no such user");
    assert_eq!(unread(&model), [0, 0]);
    assert_eq!(
        shown(&model),
        [LineKind::System {
            text: "no such user".into(),
            alert: true
        }]
    );
}

#[test]
fn the_safety_code_shows_for_its_group_until_dismissed() {
    let mut model = two_groups();
    model.set_safety_code(&[1; 16], Some("1234 5678".into()));
    assert_eq!(model.safety_code(), Some("1234 5678"));
    press(&mut model, KeyCode::Tab, KeyModifiers::NONE);
    assert_eq!(model.safety_code(), None);
    press(&mut model, KeyCode::Tab, KeyModifiers::NONE);
    assert_eq!(model.safety_code(), Some("1234 5678"));
    press(&mut model, KeyCode::Esc, KeyModifiers::NONE);
    assert_eq!(model.safety_code(), None);
}

#[test]
fn own_messages_never_count_as_unread() {
    let mut model = two_groups();
    assert!(!model.push_line(&[2; 16], Line::own(now(), "alice/laptop", "sent from here")));
    assert_eq!(unread(&model), [0, 0]);
}

#[test]
fn the_first_group_listed_is_selected_and_its_unread_lines_reported_read() {
    let mut model = Model::new("alice/laptop");
    let ops = GroupSummary {
        unread: 3,
        ..group(1, "Ops")
    };
    model.set_groups(vec![ops, group(2, "Lunch")]);
    assert_eq!(model.selected().map(|g| g.label()), Some("Ops".into()));
    assert_eq!(unread(&model), [0, 0]);
    assert_eq!(model.take_actions(), [Action::Read { group: vec![1; 16] }]);
}

#[test]
fn history_restored_at_start_is_shown_but_only_the_kept_unread_count_counts() {
    let mut model = Model::new("alice/laptop");
    let old = vec![
        Line::message(now(), "bob/laptop", "one"),
        Line::message(now(), "bob/laptop", "two"),
    ];
    model.replace(&[1], old.clone());
    model.replace(&[2], old);
    let mut second = GroupSummary::new(vec![2]);
    second.unread = 1;
    model.set_groups(vec![GroupSummary::new(vec![1]), second]);
    assert_eq!(unread(&model), [0, 1]);
    assert_eq!(model.conversation().map(|c| c.lines().len()), Some(2));
}
