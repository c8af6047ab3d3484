//! Captures the delivery service's logs (every level of the `confide_ds`
//! target, of every DS in this process) so a test can search them, e.g. for
//! plaintext that must never be there. `TEST_LOG=1` also echoes them to
//! stderr.

use std::io::{self, Write};
use std::sync::{Mutex, Once};

static CAPTURED: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture {
    echo: bool,
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        CAPTURED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        if self.echo {
            io::stderr().write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber once per process.
pub(crate) fn capture() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let echo = std::env::var_os("TEST_LOG").is_some();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("confide_ds=trace"))
            .with_ansi(false)
            .with_writer(move || Capture { echo })
            .try_init();
    });
}

/// Everything the delivery services of this process logged so far.
pub fn captured_ds_logs() -> Vec<u8> {
    CAPTURED.lock().unwrap_or_else(|p| p.into_inner()).clone()
}
