//! The `confide` binary itself, run as a user runs it (one test binary;
//! the `harness` runs the binary, built once, against a DS): what it prints
//! and what it leaves on disk (`commands`, against an in-process DS on the
//! in-memory store), the pinned identity keys and safety numbers
//! (`contacts`), and one process per state file, with `confide listen`
//! running the commands of the others (`state_file`, against a real DS on
//! PostgreSQL and clients of the library), and linking a second device
//! (`linking`, two state files against an in-process DS), and what scripts
//! rely on: standard input, help on every flag, completions, a closed pipe
//! (`scripting`), and `confide listen` staying up through a restarted DS
//! and expired sessions (`reconnecting`, against a real DS on PostgreSQL),
//! and `confide chat` as three people use it in terminals of their own
//! (`chat`, in tmux, against a real DS that is restarted).

mod chat;
mod commands;
mod contacts;
mod harness;
mod linking;
mod reconnecting;
mod scripting;
mod state_file;
