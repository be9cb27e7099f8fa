//! `silo-bench login`: what sign-in costs and what a burst of guesses does to the server.
//!
//! It runs a `silo` binary as a separate process (`--silo PATH`, default: the `silo` next to
//! this benchmark), so the figures are the server's own — and so an older build can be
//! measured the same way, side by side:
//! 1. the cost of a sign-in: sequential correct sign-ins (GET /login for the form token, POST
//!    /login), p50 and p99 of the POST;
//! 2. a burst: `--burst` concurrent wrong-password sign-ins for one account; how many were
//!    answered 401 (a password was checked), 429 (throttled) or 503 (hashing queue full), and
//!    the server's peak resident memory (`VmHWM`) against its memory before the burst;
//! 3. the same burst spread over as many accounts, on a fresh server whose per-client limit is
//!    lifted (as a botnet would spread it): every attempt is a hash, so this is what bounds
//!    hashing memory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::Context;

use crate::measure::Latencies;

/// `silo-bench login` options.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The `silo` binary to measure (default: the one built next to silo-bench).
    #[arg(long)]
    silo: Option<PathBuf>,
    /// Concurrent wrong-password sign-ins in the burst.
    #[arg(long, default_value_t = 200)]
    burst: usize,
    /// Sequential correct sign-ins timed.
    #[arg(long, default_value_t = 40)]
    sign_ins: usize,
}

const PASSWORD: &str = "correct horse battery staple";

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn memory_kib(&self, field: &str) -> u64 {
        crate::measure::process_status(&self.child.id().to_string(), field)
    }
}

fn silo(binary: &Path, data: &Path) -> Command {
    let mut command = Command::new(binary);
    command.arg("--data-dir").arg(data).env("SILO_BACKUP__SCHEDULE", "false").env("SILO_LOG", "error");
    command
}

/// Starts `silo serve` over `data` with two accounts; `env` adds settings.
async fn start(binary: &Path, data: &Path, env: &[(&str, &str)]) -> anyhow::Result<Server> {
    for email in ["ada@example.com", "bob@example.com"] {
        let mut create = silo(binary, data)
            .args(["user", "create", email, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        std::io::Write::write_all(&mut create.stdin.take().context("stdin")?, PASSWORD.as_bytes())?;
        anyhow::ensure!(create.wait()?.success(), "silo user create {email} failed");
    }
    let mut command = silo(binary, data);
    command.envs(env.iter().copied());
    let (child, base) = crate::measure::spawn_serve(command).await?;
    Ok(Server { child, base })
}

/// A client with its own cookie jar and the sign-in form's token.
async fn form(base: &str) -> anyhow::Result<(reqwest::Client, String)> {
    let client =
        reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build()?;
    let page = client.get(format!("{base}/login")).send().await?.text().await?;
    let start = page.find("name=\"csrf\" value=\"").context("no form token")? + 19;
    let token = page[start..].split('"').next().unwrap_or_default().to_owned();
    Ok((client, token))
}

async fn sign_in(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<u16> {
    let fields = [("csrf", token), ("email", email), ("password", password)];
    Ok(client.post(format!("{base}/login")).form(&fields).send().await?.status().as_u16())
}

pub async fn run(dir: &Path, args: LoginArgs) -> anyhow::Result<()> {
    let binary = crate::measure::silo_binary(args.silo)?;
    let server = start(&binary, &dir.join("login"), &[]).await?;
    println!("silo-bench login: {}", binary.display());

    let mut samples = Vec::with_capacity(args.sign_ins);
    for _ in 0..args.sign_ins {
        let (client, token) = form(&server.base).await?;
        let started = Instant::now();
        let status = sign_in(&client, &server.base, &token, "bob@example.com", PASSWORD).await?;
        samples.push(started.elapsed().as_nanos() as u64);
        anyhow::ensure!(status == 303, "a correct sign-in was answered {status}");
    }
    let latencies = Latencies::new(samples);
    println!(
        "sign-in (correct password, sequential): p50 {:.1} ms  p99 {:.1} ms  (n={})",
        latencies.percentile_us(50.0) / 1000.0,
        latencies.percentile_us(99.0) / 1000.0,
        args.sign_ins
    );

    burst(&server, args.burst, |_| "ada@example.com".to_owned(), "for one account").await?;
    drop(server);
    let lifted = [("SILO_SERVER__LOGIN_FAILURES_PER_CLIENT", "1000000")];
    let server = start(&binary, &dir.join("spread"), &lifted).await?;
    burst(&server, args.burst, |i| format!("user{i}@example.com"), "for as many accounts").await
}

/// `n` concurrent wrong-password sign-ins (for the accounts `email` names); prints the answers
/// and the server's memory.
async fn burst(server: &Server, n: usize, email: impl Fn(usize) -> String, what: &str) -> anyhow::Result<()> {
    let rss_before = server.memory_kib("VmRSS");
    let (client, token) = form(&server.base).await?;
    let started = Instant::now();
    let guesses = (0..n).map(|i| {
        let (client, token, base, email) = (&client, &token, &server.base, email(i));
        async move { sign_in(client, base, token, &email, &format!("wrong guess {i}")).await }
    });
    let statuses: Vec<u16> =
        futures::future::join_all(guesses).await.into_iter().collect::<anyhow::Result<_>>()?;
    let elapsed = started.elapsed();
    let count = |code: u16| statuses.iter().filter(|s| **s == code).count();
    println!(
        "burst of {n} wrong-password sign-ins {what}: {} checked (401), {} throttled (429), {} busy (503), \
         other {}; {:.0} ms",
        count(401),
        count(429),
        count(503),
        n - count(401) - count(429) - count(503),
        elapsed.as_secs_f64() * 1000.0
    );
    println!(
        "  server memory: {:.0} MiB before the burst, peak {:.0} MiB (VmHWM)",
        rss_before as f64 / 1024.0,
        server.memory_kib("VmHWM") as f64 / 1024.0
    );
    Ok(())
}
