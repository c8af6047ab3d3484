//! The terminal in the chat's mode (raw input, the alternate screen) for
//! as long as a [`Terminal`] lives, and restored after: when it is dropped,
//! so on every return and error, and by ratatui's panic hook on a panic,
//! so a crash never leaves the shell raw or on the alternate screen.

use std::io;

use ratatui::DefaultTerminal;

use super::model::Model;
use super::view::{self, Clock};

pub struct Terminal {
    terminal: DefaultTerminal,
}

impl Terminal {
    /// Enters raw mode and the alternate screen, and installs the panic
    /// hook that leaves them (`ratatui::try_init`).
    pub fn enter() -> io::Result<Self> {
        match ratatui::try_init() {
            Ok(terminal) => Ok(Terminal { terminal }),
            Err(error) => {
                // Raw mode may be on already when the alternate screen failed.
                ratatui::restore();
                Err(error)
            }
        }
    }

    /// Draws the model; ratatui writes only the cells that changed.
    pub fn draw(&mut self, model: &mut Model, clock: &Clock) -> io::Result<()> {
        self.terminal
            .draw(|frame| view::render(frame, model, clock))
            .map(drop)
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // Unwinding from a panic, the hook has restored the terminal and
        // printed the message: leaving the alternate screen again would put
        // the cursor back above that message, and what follows over it.
        if !std::thread::panicking() {
            ratatui::restore();
        }
    }
}
