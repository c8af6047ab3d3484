//! Slash commands: what a line typed in the input that starts with `/`
//! asks for, parsed into a [`Command`] the adapter executes, or a
//! [`CommandError`] the view shows as it is (each says how the command is
//! used). The table of commands is written once, in [`COMMANDS`], for both
//! `/help` and the errors.

use confide_core::ids::valid_user;

/// What the user asked for with a slash command. Commands that act on a
/// group act on the one selected when the line was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Creates a group with this name.
    New { name: String },
    /// Adds every device of each user to the group.
    Add { users: Vec<String> },
    /// Removes every device of each user from the group.
    Remove { users: Vec<String> },
    /// Leaves the group.
    Leave,
    /// Renames the group.
    Rename { name: String },
    /// Sets the group's topic.
    Topic { text: String },
    /// Lists the group's members, each device with its key fingerprint.
    Members,
    /// Shows the group's safety code, to compare with the other members.
    Verify,
    /// Lists a user's devices (this device's user's without one).
    Devices { user: Option<String> },
    /// Lists the commands.
    Help,
    /// Ends the chat.
    Quit,
}

impl Command {
    /// Whether the command acts on the selected group, so it needs one.
    pub fn needs_group(&self) -> bool {
        matches!(
            self,
            Command::Add { .. }
                | Command::Remove { .. }
                | Command::Leave
                | Command::Rename { .. }
                | Command::Topic { .. }
                | Command::Members
                | Command::Verify
        )
    }
}

/// One command as `/help` lists it: its name, how it is used, what it does.
pub struct Usage {
    pub name: &'static str,
    pub usage: &'static str,
    pub about: &'static str,
}

/// Every command, in the order `/help` lists them.
pub const COMMANDS: &[Usage] = &[
    Usage {
        name: "new",
        usage: "/new NAME",
        about: "create a group",
    },
    Usage {
        name: "add",
        usage: "/add USER...",
        about: "add every device of each user to this group",
    },
    Usage {
        name: "remove",
        usage: "/remove USER...",
        about: "remove every device of each user from this group",
    },
    Usage {
        name: "leave",
        usage: "/leave",
        about: "leave this group",
    },
    Usage {
        name: "rename",
        usage: "/rename NAME",
        about: "rename this group",
    },
    Usage {
        name: "topic",
        usage: "/topic TEXT",
        about: "set this group's topic",
    },
    Usage {
        name: "members",
        usage: "/members",
        about: "list this group's members and their keys",
    },
    Usage {
        name: "verify",
        usage: "/verify",
        about: "show this group's safety code, to compare with the others",
    },
    Usage {
        name: "devices",
        usage: "/devices [USER]",
        about: "list a user's devices (yours without USER)",
    },
    Usage {
        name: "help",
        usage: "/help",
        about: "list the commands",
    },
    Usage {
        name: "quit",
        usage: "/quit",
        about: "end the chat",
    },
];

/// Why a slash command was not understood; shown to the user as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("unknown command /{0}: /help lists them")]
    Unknown(String),
    #[error("{usage}: {problem}")]
    Usage {
        usage: &'static str,
        problem: &'static str,
    },
    #[error("{usage}: {name:?} is not a user name (1 to 64 of A-Z a-z 0-9 . _ -)")]
    BadUser { usage: &'static str, name: String },
}

/// Parses a line the user typed. `None` when it is not a command but a
/// message: it does not start with `/`, or starts with `//`, which sends
/// the rest with one `/` ([`message_text`]).
pub fn parse(line: &str) -> Option<Result<Command, CommandError>> {
    let rest = line.strip_prefix('/')?;
    if rest.starts_with('/') {
        return None;
    }
    let (name, args) = match rest.split_once(char::is_whitespace) {
        Some((name, args)) => (name, args.trim()),
        None => (rest, ""),
    };
    Some(command(name, args))
}

/// The text a line that is not a command sends: as typed, but a leading
/// `//` stands for `/`, so a message may start with a slash.
pub fn message_text(line: &str) -> &str {
    match line.strip_prefix("//") {
        Some(_) => &line[1..],
        None => line,
    }
}

fn command(name: &str, args: &str) -> Result<Command, CommandError> {
    let Some(spec) = COMMANDS.iter().find(|c| c.name == name) else {
        return Err(CommandError::Unknown(name.to_owned()));
    };
    let usage = spec.usage;
    let problem = |problem| CommandError::Usage { usage, problem };
    let no_args = |command: Command| match args {
        "" => Ok(command),
        _ => Err(problem("takes no arguments")),
    };
    let text = |what| match args {
        "" => Err(problem(what)),
        text => Ok(text.to_owned()),
    };
    match name {
        "new" => Ok(Command::New {
            name: text("needs the group's name")?,
        }),
        "add" => Ok(Command::Add {
            users: users(usage, args)?,
        }),
        "remove" => Ok(Command::Remove {
            users: users(usage, args)?,
        }),
        "leave" => no_args(Command::Leave),
        "rename" => Ok(Command::Rename {
            name: text("needs the group's new name")?,
        }),
        "topic" => Ok(Command::Topic {
            text: text("needs the topic")?,
        }),
        "members" => no_args(Command::Members),
        "verify" => no_args(Command::Verify),
        "devices" => match users(usage, args).as_deref() {
            Err(_) if args.is_empty() => Ok(Command::Devices { user: None }),
            Ok([user]) => Ok(Command::Devices {
                user: Some(user.clone()),
            }),
            Ok(_) => Err(problem("takes at most one user")),
            Err(error) => Err(error.clone()),
        },
        "help" => no_args(Command::Help),
        "quit" => no_args(Command::Quit),
        _ => unreachable!("every name in COMMANDS is parsed"),
    }
}

/// At least one user name, each valid.
fn users(usage: &'static str, args: &str) -> Result<Vec<String>, CommandError> {
    let users: Vec<String> = args.split_whitespace().map(str::to_owned).collect();
    if users.is_empty() {
        return Err(CommandError::Usage {
            usage,
            problem: "needs at least one user",
        });
    }
    match users.iter().find(|user| !valid_user(user)) {
        Some(name) => Err(CommandError::BadUser {
            usage,
            name: name.clone(),
        }),
        None => Ok(users),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(line: &str) -> Command {
        match parse(line) {
            Some(Ok(command)) => command,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    fn error(line: &str) -> String {
        match parse(line) {
            Some(Err(error)) => error.to_string(),
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn every_command_parses_with_its_arguments() {
        assert_eq!(
            ok("/new Ops team"),
            Command::New {
                name: "Ops team".into()
            }
        );
        assert_eq!(
            ok("/add bob  carol"),
            Command::Add {
                users: vec!["bob".into(), "carol".into()]
            }
        );
        assert_eq!(
            ok("/remove bob"),
            Command::Remove {
                users: vec!["bob".into()]
            }
        );
        assert_eq!(ok("/leave"), Command::Leave);
        assert_eq!(ok("/rename  Ops "), Command::Rename { name: "Ops".into() });
        assert_eq!(
            ok("/topic deploys at 5, not before"),
            Command::Topic {
                text: "deploys at 5, not before".into()
            }
        );
        assert_eq!(ok("/members"), Command::Members);
        assert_eq!(ok("/verify"), Command::Verify);
        assert_eq!(ok("/devices"), Command::Devices { user: None });
        assert_eq!(
            ok("/devices bob"),
            Command::Devices {
                user: Some("bob".into())
            }
        );
        assert_eq!(ok("/help"), Command::Help);
        assert_eq!(ok("/quit"), Command::Quit);
    }

    #[test]
    fn every_command_in_the_table_parses() {
        for spec in COMMANDS {
            let line = spec
                .usage
                .replace("USER...", "bob")
                .replace("[USER]", "")
                .replace("NAME", "Ops")
                .replace("TEXT", "news");
            assert!(matches!(parse(&line), Some(Ok(_))), "{line}");
        }
    }

    #[test]
    fn an_unknown_command_says_how_to_list_them() {
        assert_eq!(error("/x"), "unknown command /x: /help lists them");
        assert_eq!(error("/"), "unknown command /: /help lists them");
        assert_eq!(error("/ADD bob"), "unknown command /ADD: /help lists them");
    }

    #[test]
    fn bad_usage_says_how_the_command_is_used() {
        assert_eq!(error("/add"), "/add USER...: needs at least one user");
        assert_eq!(
            error("/remove   "),
            "/remove USER...: needs at least one user"
        );
        assert_eq!(error("/new"), "/new NAME: needs the group's name");
        assert_eq!(error("/rename"), "/rename NAME: needs the group's new name");
        assert_eq!(error("/topic"), "/topic TEXT: needs the topic");
        assert_eq!(error("/leave now"), "/leave: takes no arguments");
        assert_eq!(
            error("/devices bob carol"),
            "/devices [USER]: takes at most one user"
        );
        assert_eq!(
            error("/add bob al!ce"),
            "/add USER...: \"al!ce\" is not a user name (1 to 64 of A-Z a-z 0-9 . _ -)"
        );
    }

    #[test]
    fn a_line_without_a_leading_slash_or_with_two_is_a_message() {
        assert_eq!(parse("hello /quit"), None);
        assert_eq!(parse("//quit is how you leave"), None);
        assert_eq!(
            message_text("//quit is how you leave"),
            "/quit is how you leave"
        );
        assert_eq!(message_text("hello"), "hello");
    }

    #[test]
    fn group_commands_need_a_group_and_the_others_do_not() {
        assert!(ok("/add bob").needs_group());
        assert!(ok("/verify").needs_group());
        assert!(!ok("/new Ops").needs_group());
        assert!(!ok("/devices").needs_group());
        assert!(!ok("/help").needs_group());
    }
}
