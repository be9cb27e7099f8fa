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
    let asked = directives(server, std::env::var("SILO_LOG").ok().as_deref());
    // A SILO_LOG that does not parse: the default rather than no log.
    let filter = EnvFilter::try_new(&asked).unwrap_or_else(|_| EnvFilter::new(directives(server, None)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr)
        .log_internal_errors(false)
        // Colour only for people: escape codes break log files and parsers.
        .with_ansi(std::io::stderr().is_terminal());
    let json = std::env::var("SILO_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let _ = if json { builder.json().with_current_span(true).try_init() } else { builder.try_init() };
}

/// actix reports each unparseable request a client sends (a malformed header) as an ERROR of
/// its dispatcher; the client got its 400, and nothing is wrong with this server. Silenced
/// whatever level `SILO_LOG` asks for (the systemd unit sets it), unless it names actix_http
/// itself: otherwise anyone could fill the log with ERRORs.
const QUIET_DISPATCHER: &str = "actix_http::h1::dispatcher=off";

/// The log filter: `SILO_LOG`'s (a server's with [`QUIET_DISPATCHER`]), else `info` for a
/// server and `warn` for a CLI command.
fn directives(server: bool, silo_log: Option<&str>) -> String {
    let asked = silo_log.map(str::trim).filter(|d| !d.is_empty());
    match (server, asked) {
        (true, Some(asked)) if asked.contains("actix_http") => asked.to_owned(),
        (true, Some(asked)) => format!("{asked},{QUIET_DISPATCHER}"),
        (true, None) => format!("info,{QUIET_DISPATCHER}"),
        (false, Some(asked)) => asked.to_owned(),
        (false, None) => "warn".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_servers_log_never_carries_actix_parse_errors_unless_asked_for() {
        assert_eq!(directives(true, None), "info,actix_http::h1::dispatcher=off");
        assert_eq!(directives(true, Some("info")), "info,actix_http::h1::dispatcher=off");
        assert_eq!(directives(true, Some("debug,actix_http=trace")), "debug,actix_http=trace");
        assert_eq!(directives(false, None), "warn");
        assert_eq!(directives(false, Some("debug")), "debug");
    }

    #[test]
    fn the_lossy_writer_never_fails() {
        let mut writer = LossyStderr;
        assert_eq!(writer.write(b"a line\n").unwrap(), 7);
        assert!(writer.flush().is_ok());
    }
}
