//! Logging: tracing-subscriber to stderr, human-readable by default, JSON with
//! `SILO_LOG_FORMAT=json`, filtered by `SILO_LOG` (`RUST_LOG` syntax).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Servers log at `info` by default; CLI commands at `warn`
/// so their output stays readable.
pub fn init(server: bool) {
    let default = if server { "info" } else { "warn" };
    let filter = EnvFilter::try_from_env("SILO_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for people: escape codes break log files and parsers.
        .with_ansi(std::io::stderr().is_terminal());
    let json = std::env::var("SILO_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let _ = if json { builder.json().with_current_span(true).try_init() } else { builder.try_init() };
}
