//! Command output: one JSON document on stdout with `--json`, aligned tables otherwise.
//!
//! Commands write through [`say!`](crate::say) and [`say_err!`](crate::say_err) rather than
//! `println!`: a command that a running server runs for the CLI (`crate::cli::remote`) has its
//! output captured ([`capture`]) and sent back, so the operator sees what the command prints
//! when it runs on its own.

use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// What a command run for a remote CLI was given and what it printed.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Captured {
    /// What the command printed on standard output.
    pub stdout: String,
    /// What it printed on standard error.
    pub stderr: String,
    /// The CLI's standard input, when the command reads it (`--password-stdin`).
    pub stdin: Option<String>,
    /// The CLI's operator (the audit log's `cli:<user>`): the socket peer's account, named by
    /// the server (see [`operator`]).
    pub user: String,
    /// The CLI's working directory, which relative paths in its arguments are relative to.
    pub cwd: Option<std::path::PathBuf>,
}

tokio::task_local! {
    static CAPTURE: Arc<Mutex<Captured>>;
}

/// Runs `command` with its output captured; returns its result and what it printed.
pub async fn capture<F: std::future::Future>(given: Captured, command: F) -> (F::Output, Captured) {
    let cell = Arc::new(Mutex::new(given));
    let result = CAPTURE.scope(cell.clone(), command).await;
    let captured = cell.lock().clone();
    (result, captured)
}

/// Writes `text` to standard output, or to the capture.
pub fn out(text: &str) {
    if CAPTURE.try_with(|c| c.lock().stdout.push_str(text)).is_err() {
        // A reader that went away (`silo tenant list | head -1`) is not an error of the command.
        let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    }
}

/// Writes `text` to standard error, or to the capture.
pub fn err(text: &str) {
    if CAPTURE.try_with(|c| c.lock().stderr.push_str(text)).is_err() {
        let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
    }
}

/// The first line of standard input (the CLI's, for a captured command), without its newline.
pub fn read_stdin_line() -> std::io::Result<String> {
    let line = match CAPTURE.try_with(|c| c.lock().stdin.clone()) {
        Ok(given) => given.unwrap_or_default(),
        Err(_) => {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::stdin().lock(), &mut line)?;
            line
        }
    };
    Ok(line.lines().next().unwrap_or_default().to_owned())
}

/// A path from the command line, as the operator meant it: relative to the CLI's working
/// directory (not the server's, for a captured command).
pub fn resolve(path: &std::path::Path) -> std::path::PathBuf {
    match CAPTURE.try_with(|c| c.lock().cwd.clone()) {
        Ok(Some(cwd)) if path.is_relative() => cwd.join(path),
        _ => path.to_owned(),
    }
}

/// Whether standard error is a terminal (never for a captured command).
pub fn stderr_is_terminal() -> bool {
    CAPTURE.try_with(|_| ()).is_err() && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// The OS user the audit log names for CLI actions (the remote CLI's, for a captured command).
pub fn os_user() -> String {
    CAPTURE
        .try_with(|c| c.lock().user.clone())
        .ok()
        .filter(|user| !user.is_empty())
        .unwrap_or_else(login_user)
}

/// This process's operator (see [`operator`]).
fn login_user() -> String {
    operator(rustix::process::geteuid().as_raw(), sudo_user().as_deref())
}

/// The person behind `sudo`, as `sudo` says (`SUDO_USER`), if any.
pub fn sudo_user() -> Option<String> {
    std::env::var("SUDO_USER").ok().filter(|v| !v.trim().is_empty())
}

/// Who the audit log names for a command run by `uid`: that account's name (from
/// `/etc/passwd`, not from the environment, which the caller sets), else `uid N`; for root,
/// the person `sudo` names, if any ("alice (as root)"), so the log names who acted rather than
/// the account they borrowed. Only root can be another person through `sudo`: for any other
/// uid the claim is ignored.
pub fn operator(uid: u32, sudo_user: Option<&str>) -> String {
    let name = account_name(uid).unwrap_or_else(|| format!("uid {uid}"));
    // What a login name may hold, and not much of it: the claim is written into the audit log
    // and the server's log, where a newline or a direction mark would forge or garble a line.
    let sudo = sudo_user.map(|claimed| {
        claimed
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
            .take(64)
            .collect::<String>()
    });
    match sudo.filter(|sudo| uid == 0 && !sudo.is_empty() && *sudo != name) {
        Some(sudo) => format!("{sudo} (as {name})"),
        None => name,
    }
}

/// The name of `uid` in `/etc/passwd`.
fn account_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?;
        (id.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

/// `println!` for commands: standard output, or the capture.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut line = format!($($arg)*);
        line.push('\n');
        $crate::output::out(&line);
    }};
}

/// `eprintln!` for commands: standard error, or the capture.
#[macro_export]
macro_rules! say_err {
    ($($arg:tt)*) => {{
        let mut line = format!($($arg)*);
        line.push('\n');
        $crate::output::err(&line);
    }};
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    crate::say!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Renders rows as a table with a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

pub use silo_core::units::bytes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_is_the_uids_account_and_sudo_only_for_root() {
        assert_eq!(operator(0, None), "root");
        assert_eq!(operator(0, Some("alice")), "alice (as root)");
        assert_eq!(operator(0, Some("eve\nINFO forged line")), "eveINFOforgedline (as root)");
        assert_eq!(operator(0, Some("\u{202e}toor")), "toor (as root)");
        assert_eq!(operator(0, Some(&"a".repeat(3000))).len(), 64 + " (as root)".len());
        assert_eq!(operator(0, Some("\n")), "root", "nothing left of the claim");
        assert!(!operator(4242, Some("alice")).contains("alice"), "only root is someone else through sudo");
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![vec!["acme".to_owned(), "active".to_owned()], vec!["b".to_owned(), "x".to_owned()]];
        assert_eq!(table(&["SLUG", "STATUS"], &rows), "SLUG  STATUS\nacme  active\nb     x");
    }
}
