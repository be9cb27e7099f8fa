//! The operator socket: a `silo` command next to a running server is run **by** the server.
//!
//! One process owns a data directory and every tenant file in it (tenant files open without
//! file locks, one connection each: see `silo_storage::sqlite::open_sync`), so a CLI must never
//! open a file behind a running `silo serve`. Instead the server listens on
//! `<data_dir>/silo.sock` ([`SOCKET`], mode 0600, and only peers running as the server's own
//! OS user — or root — are answered), and the CLI sends it its arguments (and its standard
//! input, for `--password-stdin`); the server parses them as `silo` would, runs the command
//! in-process — with its leases, its handle cache, its owners — with the output captured
//! ([`crate::output::capture`]), and sends back what the command printed and its exit code.
//! The CLI prints both as if it had run the command itself. Without a server (no socket, or a
//! socket nobody listens on) the CLI runs the command itself under the data-directory lock.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use super::{Cli, Command, Services};
use crate::output::{self, Captured};

/// The socket's file name in the data directory.
pub const SOCKET: &str = "silo.sock";

/// The largest request read (arguments and standard input).
const MAX_REQUEST: u64 = 1 << 20;

/// How long a client may take to send its request.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What the CLI sends.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    /// The arguments after `silo`.
    args: Vec<String>,
    /// Standard input's first line, for commands that read it.
    stdin: Option<String>,
    /// The person behind `sudo`, as the CLI's environment says: the server names the operator
    /// from the socket peer's uid, and believes this only of root.
    sudo_user: Option<String>,
    /// The CLI's working directory (relative paths in `args` are relative to it).
    cwd: Option<PathBuf>,
}

/// What the server answers.
#[derive(Debug, Serialize, Deserialize)]
struct Response {
    stdout: String,
    stderr: String,
    /// The process exit code the CLI ends with.
    code: u8,
}

/// The socket's path in `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET)
}

/// Runs the command through the server listening in `data_dir`, if one is: `None` when nobody
/// listens there (the caller runs the command itself).
pub async fn forward(data_dir: &Path, args: Vec<String>) -> Option<anyhow::Result<ExitCode>> {
    let stream = match UnixStream::connect(socket_path(data_dir)).await {
        Ok(stream) => stream,
        Err(e)
            if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) =>
        {
            return None;
        }
        Err(e) => return Some(Err(e).context("cannot reach the running server's operator socket")),
    };
    Some(exchange(stream, args).await)
}

async fn exchange(mut stream: UnixStream, args: Vec<String>) -> anyhow::Result<ExitCode> {
    let stdin = if args.iter().any(|a| a == "--password-stdin") {
        Some(tokio::task::spawn_blocking(output::read_stdin_line).await??)
    } else {
        None
    };
    let request = Request { args, stdin, sudo_user: output::sudo_user(), cwd: std::env::current_dir().ok() };
    stream.write_all(&serde_json::to_vec(&request)?).await?;
    stream.shutdown().await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.context("reading the server's answer")?;
    let response: Response = serde_json::from_slice(&answer)
        .context("the server closed the operator socket without an answer (did it stop?)")?;
    output::out(&response.stdout);
    output::err(&response.stderr);
    Ok(ExitCode::from(response.code))
}

/// Answers on `listener` (from [`bind`]) until `stop` completes, running each request's
/// command on `services`; removes the socket file when it stops.
pub async fn serve_on(
    listener: UnixListener,
    data_dir: &Path,
    services: Services,
    stop: impl std::future::Future<Output = ()>,
) {
    let path = socket_path(data_dir);
    // Commands in flight are awaited when the server stops: the application closes tenant
    // files and lets go of the data directory only after them, so a command is never cut off
    // half-way and no second process opens a file one of them still holds.
    let mut running = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let services = services.clone();
                    running.spawn(async move {
                        if let Err(e) = answer(stream, services).await {
                            tracing::warn!(error = %e, "an operator socket request failed");
                        }
                    });
                    // Reap finished ones so the set stays as small as what runs.
                    while running.try_join_next().is_some() {}
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting on the operator socket failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            () = &mut stop => break,
        }
    }
    // No new command from here on; the ones running finish and answer.
    drop(listener);
    let _ = std::fs::remove_file(&path);
    if !running.is_empty() {
        tracing::info!(commands = running.len(), "waiting for CLI commands in progress");
    }
    while running.join_next().await.is_some() {}
}

/// Binds the socket, owner-only. The caller holds the data-directory lock, so a socket file
/// already there is a dead server's and is replaced.
pub fn bind(data_dir: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = socket_path(data_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove the stale {}", path.display())),
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("cannot listen on {}", path.display()))?;
    // Peers are checked by uid too (below), so the moment before this is no opening.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    Ok(listener)
}

async fn answer(mut stream: UnixStream, services: Services) -> anyhow::Result<()> {
    let peer = stream.peer_cred()?.uid();
    let own = rustix::process::geteuid().as_raw();
    // Read first (bounded in size and time), so even a refusal reaches the client.
    let mut body = Vec::new();
    let mut limited = (&mut stream).take(MAX_REQUEST);
    tokio::time::timeout(READ_TIMEOUT, limited.read_to_end(&mut body))
        .await
        .context("the request did not arrive in time")??;
    let response = if peer != own && peer != 0 {
        Response {
            stdout: String::new(),
            stderr: format!("error: uid {peer} may not run silo commands\n"),
            code: 1,
        }
    } else {
        match serde_json::from_slice::<Request>(&body) {
            Ok(request) => run(request, peer, services).await,
            Err(e) => Response {
                stdout: String::new(),
                stderr: format!("error: a malformed request: {e}\n"),
                code: 2,
            },
        }
    };
    stream.write_all(&serde_json::to_vec(&response)?).await?;
    stream.shutdown().await?;
    Ok(())
}

/// Parses and runs one request's command with its output captured.
async fn run(request: Request, peer: u32, services: Services) -> Response {
    let cli = match Cli::try_parse_from(std::iter::once("silo".to_owned()).chain(request.args)) {
        Ok(cli) => cli,
        // `--help`, `--version` and usage errors: what clap would print, with its exit code.
        Err(e) => {
            let text = e.render().to_string();
            let (stdout, stderr) = if e.use_stderr() { (String::new(), text) } else { (text, String::new()) };
            return Response { stdout, stderr, code: u8::try_from(e.exit_code()).unwrap_or(2) };
        }
    };
    if matches!(cli.command, Command::Serve { .. }) {
        let stderr = "error: a server is already running on this data directory\n".to_owned();
        return Response { stdout: String::new(), stderr, code: 1 };
    }
    let user = output::operator(peer, request.sudo_user.as_deref());
    let given = Captured { stdin: request.stdin, user, cwd: request.cwd, ..Captured::default() };
    tracing::info!(user = %given.user, "running a silo command for the CLI");
    let (result, mut captured) = output::capture(given, cli.command.execute(&services)).await;
    let code = match result {
        Ok(code) if code == ExitCode::SUCCESS => 0,
        Ok(_) => 1,
        Err(error) => {
            captured.stderr.push_str(&format!("error: {}\n", super::describe(&error)));
            1
        }
    };
    Response { stdout: captured.stdout, stderr: captured.stderr, code }
}
