//! The terminal in the chat's mode (raw input, the alternate screen,
//! bracketed paste) for as long as a [`Terminal`] lives, and restored
//! after: when it is dropped, so on every return and error, and by a panic
//! hook on a panic, so a crash never leaves the shell raw or on the
//! alternate screen.

use std::io::{self, stdout};

use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{DisableBracketedPaste, EnableBracketedPaste};
use ratatui::crossterm::execute;

use super::model::Model;
use super::view::{self, Clock};

pub struct Terminal {
    terminal: DefaultTerminal,
}

impl Terminal {
    /// Enters raw mode and the alternate screen with ratatui's panic hook
    /// that leaves them (`ratatui::try_init`), and turns on bracketed paste
    /// (a pasted newline is text, not Enter: `Event::Paste` for
    /// [`Model::handle_paste`]), turned off by the same hook.
    pub fn enter() -> io::Result<Self> {
        let terminal = ratatui::try_init().and_then(|terminal| {
            execute!(stdout(), EnableBracketedPaste)?;
            Ok(terminal)
        });
        match terminal {
            Ok(terminal) => {
                let restore_ratatui = std::panic::take_hook();
                std::panic::set_hook(Box::new(move |info| {
                    let _ = execute!(stdout(), DisableBracketedPaste);
                    restore_ratatui(info);
                }));
                Ok(Terminal { terminal })
            }
            Err(error) => {
                // Raw mode may be on already when a later step failed.
                restore();
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
            restore();
        }
    }
}

fn restore() {
    let _ = execute!(stdout(), DisableBracketedPaste);
    ratatui::restore();
}
