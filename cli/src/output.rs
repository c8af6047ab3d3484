//! What the commands print on standard output.

use std::io::{ErrorKind, Write};

/// The exit status of a process that a closed pipe stopped, as a shell
/// reports one killed by SIGPIPE (128 + 13).
const CLOSED_PIPE: i32 = 141;

/// Writes `text` to standard output. When the reader has gone
/// (`confide members | head -1`), the process ends at once and quietly,
/// as any Unix filter does, instead of panicking as `print!` would.
pub fn print(text: impl std::fmt::Display) {
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = write!(stdout, "{text}").and_then(|()| stdout.flush()) {
        if error.kind() == ErrorKind::BrokenPipe {
            std::process::exit(CLOSED_PIPE);
        }
        eprintln!("Error: writing to standard output: {error}");
        std::process::exit(1);
    }
}

/// [`print`] and a newline.
pub fn println(line: impl std::fmt::Display) {
    print(format_args!("{line}\n"));
}
