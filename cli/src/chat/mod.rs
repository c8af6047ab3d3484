//! The view layer of `confide chat`: an interactive terminal chat (groups
//! on the left, the selected conversation on the right, a status line on
//! top, the input line below), kept pure so that tests draw it on
//! ratatui's `TestBackend` and the adapter to `confide_client::Client`
//! stays thin.
//!
//! The adapter owns the loop: it feeds the model what the client reports
//! ([`model::Model`]'s `set_groups`, `push_line`, `set_status`,
//! `set_safety_code`, and `info`/`error` for a command's answer) and what
//! the user does (`handle_key`, `handle_paste`), runs the
//! [`model::Action`]s the model hands back (`take_actions`: send, a slash
//! [`command::Command`], a group read, quit), and draws with
//! [`terminal::Terminal::draw`] (or [`view::render`] on any backend), at
//! [`view::Clock::local`].
//!
//! - `model`: the view model and its updates; `input`: keys and the input
//!   line; `command`: slash-command parsing;
//! - `view`: drawing; `rows`: one conversation line laid out in rows
//!   (time, sender, escaped and wrapped text);
//! - `terminal`: raw mode, the alternate screen and bracketed paste,
//!   restored on exit and on panic.
//!
//! Every string from the network is kept raw in the model and escaped as
//! it is drawn (`confide_client::display`), so it cannot steer the
//! terminal or pass for a line of its own.

pub mod command;
pub mod input;
pub mod model;
pub mod rows;
pub mod session;
pub mod terminal;
pub mod view;
