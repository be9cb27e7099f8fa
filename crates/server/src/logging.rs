//! Logging: tracing-subscriber to stderr, human-readable by default, JSON with
//! `SILO_LOG_FORMAT=json`, filtered by `SILO_LOG` (`RUST_LOG` syntax).
//!
//! A log line that cannot be written (stderr redirected to a file on a full disk, a closed
//! pipe) is dropped and counted (`silo_log_lines_lost_total` on `/metrics`), never an error:
//! tracing-subscriber reports a failed write with `eprintln!`, which panics when stderr itself
//! fails — and a panic in a request's handler dropped its connection without an answer.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::EnvFilter;

/// Log lines dropped because stderr could not take them.
static LOST: AtomicU64 = AtomicU64::new(0);

/// How many log lines could not be written since the process started.
pub fn lost_lines() -> u64 {
    LOST.load(Ordering::Relaxed)
}

/// stderr that never fails: a write it cannot complete is counted and dropped.
struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if std::io::stderr().write_all(buf).is_err() {
            LOST.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Installs the global subscriber. Servers log at `info` by default; CLI commands at `warn`
/// so their output stays readable.
pub fn init(server: bool) {
    // actix reports each unparseable request a client sends (a malformed header) as an ERROR
    // of its dispatcher; the client got its 400, and nothing is wrong with this server.
    let default = if server { "info,actix_http::h1::dispatcher=off" } else { "warn" };
    let filter = EnvFilter::try_from_env("SILO_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr)
        .log_internal_errors(false)
        // Colour only for people: escape codes break log files and parsers.
        .with_ansi(std::io::stderr().is_terminal());
    let json = std::env::var("SILO_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let _ = if json { builder.json().with_current_span(true).try_init() } else { builder.try_init() };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lossy_writer_never_fails() {
        let mut writer = LossyStderr;
        assert_eq!(writer.write(b"a line\n").unwrap(), 7);
        assert!(writer.flush().is_ok());
    }
}
