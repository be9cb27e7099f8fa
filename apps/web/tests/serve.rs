//! `silo serve` as a process: it starts on its defaults in a fresh directory, answers
//! `/healthz`, stops cleanly on SIGTERM, owns the data directory (the CLI's commands run
//! through it) and survives SIGKILL.

mod common;

use silo_backups::BackupsExt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A running `silo serve` and its log.
struct Server {
    child: Child,
    log: std::sync::mpsc::Receiver<String>,
}

impl Drop for Server {
    /// A test that fails half-way leaves no server behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `silo serve` in `dir` (data in `dir/data`); returns the process and its address.
fn start_server(dir: &Path) -> (Server, String) {
    start_server_with(dir, &common::control_env(&dir.join("data")))
}

/// [`start_server`] with `env` set.
fn start_server_with(dir: &Path, env: &[(&'static str, String)]) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_silo"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .current_dir(dir)
        .env_remove("SILO_DATA_DIR")
        .envs(env.iter().cloned())
        .env("SILO_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the log on a thread so a server that never starts fails the test instead of hanging it.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (lines, log) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let addr = loop {
        let line =
            log.recv_timeout(Duration::from_secs(30)).expect("the server logs its address within 30 s");
        if line.contains("silo listening") {
            let addr = line.split("addr=").nth(1).and_then(|rest| rest.split_whitespace().next());
            break addr.expect("addr=… in the log line").to_owned();
        }
    };
    (Server { child, log }, addr)
}

/// SIGTERM: the process exits successfully after the application's ordered shutdown (server,
/// then the background loops, then the tenant handles and the control plane).
fn stop(mut server: Server) -> Vec<String> {
    let killed = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "graceful exit, got {status}");
    let log: Vec<String> = server.log.iter().collect();
    let at = |needle: &str| {
        log.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle:?} in {log:#?}"))
    };
    let stopping = at("stopping: the server has stopped accepting");
    let closed = at("stopped: tenant handles and the control plane are closed");
    // Every loop that ran stopped in between (the scheduler only when it was on); the last
    // "job workers stopping" is the server's (a CLI command it ran may have run workers too).
    let last = |needle: &str| log.iter().rposition(|l| l.contains(needle)).expect(needle);
    let mut loops = vec![last("job workers stopping")];
    if log.iter().any(|l| l.contains("backup scheduler started")) {
        loops.push(at("backup scheduler stopped"));
    }
    assert!(loops.iter().all(|&l| stopping < l && l < closed), "{log:#?}");
    log
}

fn silo(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_silo"))
        .args(args)
        .current_dir(dir)
        .env_remove("SILO_DATA_DIR")
        .envs(common::control_env(&dir.join("data")))
        .output()
        .unwrap()
}

#[test]
fn serve_starts_on_defaults_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = start_server(dir.path());
    let mut stream = TcpStream::connect(&addr).unwrap();
    write!(stream, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(dir.path().join("data/master.key").exists(), "the default data dir is ./data");
    // The control plane is control.db there, unless this binary put it on PostgreSQL.
    assert_eq!(dir.path().join("data/control.db").exists(), !common::on_postgres());
    // A request actix cannot parse gets its 400, and leaves no ERROR in a log run with
    // SILO_LOG=info (as the systemd unit runs it): anyone could fill the log with them.
    let mut garbage = TcpStream::connect(&addr).unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Type: \x01bad\r\n\r\n").unwrap();
    let mut answer = String::new();
    let _ = garbage.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let log = stop(child);
    let errors: Vec<&String> = log.iter().filter(|line| line.contains("ERROR")).collect();
    assert!(errors.is_empty(), "{errors:#?}");
}

fn silo_with_stdin(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_silo"))
        .args(args)
        .current_dir(dir)
        .env_remove("SILO_DATA_DIR")
        .envs(common::control_env(&dir.join("data")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Files under the data directory whose name ends with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map_while(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_ending(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found
}

/// One process owns the data directory and every tenant file in it: while `silo serve` runs,
/// CLI commands are run by the server (through `data/silo.sock`) and print what they print
/// without it — including the ones that read or replace tenant files (`tenant sql`, `backup
/// create`, `export`, `migrate`, `gdpr`, a purge, a restore) — and a second server is refused.
#[test]
fn a_running_server_runs_the_clis_commands_and_refuses_a_second_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert!(silo(d, &["tenant", "create", "held"]).status.success());
    assert!(silo(d, &["tenant", "create", "doomed"]).status.success());
    let count = ["tenant", "sql", "held", "SELECT count(*) AS n FROM members"];
    let alone = stdout(&silo(d, &count));
    let (child, _) = start_server(d);
    let socket = d.join("data/silo.sock");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "owner-only");
    }

    assert_eq!(stdout(&silo(d, &count)), alone, "the same output through the server");
    let created = stdout(&silo_with_stdin(
        d,
        &["user", "create", "ann@example.com", "--password-stdin"],
        "a long enough password\n",
    ));
    assert!(created.contains("ann@example.com"), "{created}");
    stdout(&silo(d, &["member", "add", "held", "ann@example.com", "--role", "owner"]));
    let backup: serde_json::Value =
        serde_json::from_slice(&silo(d, &["backup", "create", "held", "--json"]).stdout).unwrap();
    assert_eq!(backup["kind"], "manual");
    let exported = stdout(&silo(d, &["export", "held", "--out", "held.zip"]));
    assert!(exported.contains("to held.zip"), "{exported}");
    assert!(d.join("held.zip").metadata().unwrap().len() > 0, "relative to the CLI's directory");
    let subject = stdout(&silo(d, &["gdpr", "export-subject", "ann@example.com", "--out", "ann.zip"]));
    assert!(subject.contains("ann.zip (1 workspaces)"), "{subject}");
    assert!(d.join("ann.zip").exists());
    stdout(&silo(d, &["migrate"]));
    let restored = silo(d, &["restore", "held", "--backup", backup["id"].as_str().unwrap()]);
    assert!(
        restored.status.success(),
        "in place, under a lease: {}",
        String::from_utf8_lossy(&restored.stderr)
    );
    stdout(&silo(d, &["tenant", "delete", "doomed", "--purge"]));
    // The audit log names the operator who ran each command, through the server or not: the
    // account of its uid (not what USER says), and for root the person behind sudo.
    let me =
        String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap().trim().to_owned();
    let root = rustix::process::geteuid().is_root();
    let as_user = |user: &str, sudo: Option<&str>, args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_silo"));
        command
            .args(args)
            .current_dir(d)
            .env_remove("SILO_DATA_DIR")
            .envs(common::control_env(&d.join("data")))
            .env("USER", user)
            .env_remove("SUDO_USER");
        if let Some(sudo) = sudo {
            command.env("SUDO_USER", sudo);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    as_user("mallory", None, &["tenant", "suspend", "held"]);
    as_user("mallory", Some("bob-ops"), &["tenant", "resume", "held"]);

    // Errors keep their words and exit code; usage errors are clap's.
    let missing = silo(d, &["tenant", "show", "nobody"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).starts_with("error: "), "{missing:?}");
    let usage = silo(d, &["tenant", "frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("unrecognized subcommand"), "{usage:?}");

    let second = silo(d, &["serve", "--bind", "127.0.0.1:0"]);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("another silo process"));
    assert!(
        files_ending(&d.join("data/regions"), "-shm").is_empty(),
        "no -shm files: the WAL index is in memory"
    );

    stop(child);
    assert!(!socket.exists(), "the socket goes with the server");
    as_user("mallory", None, &["tenant", "set-plan", "held", "team"]);
    let actors = tokio::runtime::Runtime::new().unwrap().block_on(audit_actors(&d.join("data")));
    let sudo = if root { format!("cli:bob-ops (as {me})") } else { format!("cli:{me}") };
    for (actor, action) in [
        (format!("cli:{me}"), "tenant.suspend"),
        (sudo, "tenant.resume"),
        (format!("cli:{me}"), "tenant.plan"),
    ] {
        assert!(
            actors.iter().any(|(a, b)| (a.as_str(), b.as_str()) == (actor.as_str(), action)),
            "{actor} {action} in {actors:?}"
        );
    }
    assert!(!actors.iter().any(|(a, _)| a.contains("mallory")), "USER names no one: {actors:?}");
    assert_eq!(stdout(&silo(d, &count)), stdout(&silo(d, &count)), "without a server the CLI runs it");
    let gone = silo(d, &["tenant", "show", "doomed"]);
    assert!(!gone.status.success(), "purged while serving (its slug is gone with it)");
}

/// A job whose `silo serve` is killed (SIGKILL) mid-run is taken up by the next `silo serve`
/// once its lease runs out, and finishes once in effect: tenants the killed run backed up are
/// not backed up again.
#[test]
fn a_job_cut_off_by_sigkill_finishes_after_a_restart() {
    use silo_jobs::NewJob;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::write(dir.path().join("silo.toml"), "[jobs]\nlease_seconds = 3\n[backup]\nschedule = false\n")
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tenants = 400;
    let job = runtime.block_on(async {
        let settings = common::fleet_settings(&data);
        let tenancy = silo_web::schema::open(settings).await.unwrap();
        for i in 0..tenants {
            let create = silo_tenancy::CreateTenant { slug: format!("t-{i}"), ..Default::default() };
            tenancy.tenants().create(create, "test").await.unwrap();
        }
        let job =
            tenancy.jobs().enqueue(NewJob::new("fleet.backup", serde_json::json!({})), "test").await.unwrap();
        tenancy.shutdown().await;
        job.id
    });
    let show = || -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_silo"))
            .args(["jobs", "show", &job, "--json"])
            .current_dir(dir.path())
            .env_remove("SILO_DATA_DIR")
            .envs(common::control_env(&dir.path().join("data")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let wait_for = |what: &str, done: &dyn Fn(&serde_json::Value) -> bool| -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let job = show();
            if done(&job) {
                return job;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {job}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    // The first server claims it and starts backing up; it is killed mid-run.
    let (mut first, _) = start_server(dir.path());
    wait_for("the job is claimed", &|j| j["status"] == "running");
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    let killed = show();
    assert_eq!(killed["status"], "running", "cut off mid-run: {killed}");
    // What the killed run got done (its backups are in the catalogue).
    let done_before = runtime.block_on(backed_up_tenants(&data, tenants));
    assert!(done_before < tenants, "the kill came before the end ({done_before} of {tenants})");

    // The next server takes it up after the lease and finishes it, skipping what is done.
    let (second, _) = start_server(dir.path());
    let finished = wait_for("the job finishes after the restart", &|j| {
        j["status"] != "running" && j["status"] != "queued"
    });
    assert_eq!(finished["status"], "done", "{finished}");
    assert_eq!(finished["attempts"], 2, "claimed again once: {finished}");
    let result = &finished["result"];
    assert_eq!(
        result["skipped"].as_i64(),
        Some(done_before),
        "the killed run's backups are kept, not redone: {result}"
    );
    assert_eq!(result["backed_up"].as_i64(), Some(tenants - done_before), "{result}");
    assert_eq!(result["failed"], serde_json::json!([]), "{result}");
    stop(second);
    // Once in effect: every tenant has exactly one backup.
    assert_eq!(runtime.block_on(backed_up_tenants(&data, tenants)), tenants);
}

/// How many of the tenants `t-0…` have a backup; panics if one has more than one.
async fn backed_up_tenants(data: &Path, tenants: i64) -> i64 {
    let settings = common::fleet_settings(data);
    let tenancy = silo_web::schema::open(settings).await.unwrap();
    let mut with_backup = 0;
    for i in 0..tenants {
        let tenant = tenancy.tenant(&format!("t-{i}").parse().unwrap()).await.unwrap();
        let backups = tenancy.backups().of_tenant(tenant.id).await.unwrap().len();
        assert!(backups <= 1, "t-{i} was backed up {backups} times");
        with_backup += backups as i64;
    }
    tenancy.shutdown().await;
    with_backup
}

/// Who did what, from the audit log.
async fn audit_actors(data: &Path) -> Vec<(String, String)> {
    let control = common::control(data).await;
    let rows = silo_core::db::query_as("SELECT actor, action FROM audit_log ORDER BY id")
        .fetch_all(&control)
        .await
        .unwrap();
    control.close().await;
    rows
}

/// How many tenants the erasure ledger records as done for its (one) erasure.
async fn erased_tenants(data: &Path) -> i64 {
    let control = common::control(data).await;
    let done: i64 = silo_core::db::query_scalar(
        "SELECT count(*) FROM erasures, json_each(erasures.tenants) AS t WHERE t.value <> 'pending'",
    )
    .fetch_one(&control)
    .await
    .unwrap_or(0);
    control.close().await;
    done
}

/// An erasure whose `silo serve` is killed (SIGKILL) part-way through its tenants finishes
/// after a restart: the tenants already erased are not redone, the rest are, and the person
/// is gone from every file and from the control plane.
#[test]
fn an_erasure_cut_off_by_sigkill_finishes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::write(dir.path().join("silo.toml"), "[jobs]\nlease_seconds = 3\n[backup]\nschedule = false\n")
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let tenants = 500;
    let email = "leaving@example.com";
    let job = runtime.block_on(async {
        let settings = common::fleet_settings(&data);
        let tenancy = silo_web::schema::open(settings).await.unwrap();
        let accounts = silo_accounts::Accounts::new(tenancy.clone(), Default::default());
        accounts.users().create(email, "a long enough password", Some("Leaving"), "test").await.unwrap();
        for i in 0..tenants {
            let slug = format!("t-{i}");
            tenancy.tenants().create(silo_tenancy::CreateTenant::with_slug(&slug), "test").await.unwrap();
            let member = silo_accounts::Role::Member;
            accounts.memberships().add(&slug.parse().unwrap(), email, member, "test").await.unwrap();
        }
        let job = accounts.subjects().start_erasure(email, "test").await.unwrap();
        tenancy.shutdown().await;
        job.id
    });
    let show = || -> serde_json::Value {
        serde_json::from_slice(&silo(dir.path(), &["jobs", "show", &job, "--json"]).stdout).unwrap()
    };

    // The first server starts erasing; it is killed once some tenants, not all, are done.
    let (mut first, _) = start_server(dir.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while runtime.block_on(erased_tenants(&data)) == 0 {
        assert!(std::time::Instant::now() < deadline, "the erasure starts: {}", show());
        std::thread::sleep(Duration::from_millis(5));
    }
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    let before = runtime.block_on(erased_tenants(&data));
    assert!(before < tenants, "the kill came before the end ({before} of {tenants})");
    assert_eq!(show()["status"], "running", "cut off mid-run");

    // The next server takes it up after the lease and finishes it.
    let (second, _) = start_server(dir.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let finished = loop {
        let job = show();
        if job["status"] != "running" && job["status"] != "queued" {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "the erasure finishes after the restart: {job}");
        std::thread::sleep(Duration::from_millis(100));
    };
    stop(second);
    assert_eq!(finished["status"], "done", "{finished}");
    assert_eq!(finished["attempts"], 2, "claimed again once: {finished}");
    let result = &finished["result"];
    assert_eq!(result["tenants"].as_object().map(|t| t.len()), Some(tenants as usize), "{result}");
    runtime.block_on(async {
        let settings = common::fleet_settings(&data);
        let tenancy = silo_web::schema::open(settings).await.unwrap();
        let accounts = silo_accounts::Accounts::new(tenancy.clone(), Default::default());
        assert!(accounts.users().by_email(email).await.is_err(), "the account is gone");
        for i in 0..tenants {
            let tenant = tenancy.tenant(&format!("t-{i}").parse().unwrap()).await.unwrap();
            // Nobody else belonged: the workspace is closed (soft-deleted), its file kept.
            assert_eq!(tenant.status, silo_tenancy::TenantStatus::Deleting, "t-{i}");
            use sqlx::Connection;
            let url = format!("sqlite://{}?mode=ro", tenancy.tenant_path(&tenant).unwrap().display());
            let mut file = sqlx::SqliteConnection::connect(&url).await.unwrap();
            let rows: i64 =
                sqlx::query_scalar("SELECT count(*) FROM members").fetch_one(&mut file).await.unwrap();
            let _ = file.close().await;
            assert_eq!(rows, 0, "t-{i} still has the member");
        }
        let erasure = tenancy.erasures().get(result["subject"].as_str().unwrap()).await.unwrap().unwrap();
        assert!(erasure.completed_at.is_some(), "{erasure:?}");
        tenancy.shutdown().await;
    });
}

/// A log that cannot be written never costs a request: with stderr on a full device
/// (`/dev/full`, every write fails with ENOSPC) and every line logged, the server answers
/// probes, pages, refusals and 404s, counts the lost lines, and stops cleanly.
#[test]
fn a_log_that_cannot_be_written_costs_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_silo"))
        .args(["serve", "--bind", &addr])
        .current_dir(dir.path())
        .env_remove("SILO_DATA_DIR")
        .envs(common::control_env(&dir.path().join("data")))
        .env("SILO_LOG", "debug")
        .stderr(Stdio::from(full))
        .spawn()
        .unwrap();
    let get = |path: &str| -> Option<String> {
        let mut stream = TcpStream::connect(&addr).ok()?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        Some(response)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while get("/healthz").is_none_or(|r| !r.starts_with("HTTP/1.1 200")) {
        assert!(std::time::Instant::now() < deadline, "the server did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..20 {
        for (path, status) in [
            ("/readyz", "200"),
            ("/login", "200"),
            ("/w/nope/", "303"),
            ("/nope", "404"),
            ("/api/v1/tenants", "401"),
        ] {
            let response = get(path).unwrap_or_else(|| panic!("{path}: the connection was dropped"));
            assert!(response.starts_with(&format!("HTTP/1.1 {status}")), "{path}: {response}");
        }
    }
    let metrics = get("/metrics").unwrap();
    let lost = metrics
        .lines()
        .find_map(|l| l.strip_prefix("silo_log_lines_lost_total "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(lost > 0, "the lines that could not be written are counted: {metrics}");
    let killed = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success(), "a clean stop");
}

/// `count` tenants `{prefix}-{i}` with the account `w@example.com` as their owner, and a
/// personal token of that account for each: `(slug, token)`.
fn tenants_with_tokens(d: &Path, prefix: &str, count: usize) -> Vec<(String, String)> {
    let created = silo_with_stdin(
        d,
        &["user", "create", "w@example.com", "--password-stdin"],
        "a long enough password\n",
    );
    assert!(created.status.success());
    (0..count)
        .map(|i| {
            let slug = format!("{prefix}-{i}");
            stdout(&silo(d, &["tenant", "create", &slug]));
            stdout(&silo(d, &["member", "add", &slug, "w@example.com", "--role", "owner"]));
            let token = stdout(&silo(d, &["user", "token", "w@example.com", "--tenant", &slug]));
            (slug, token.trim().to_owned())
        })
        .collect()
}

/// Writes acknowledged by a server: per tenant, each task's title and when its 201 arrived.
type Acknowledged = Vec<(String, Vec<(String, std::time::SystemTime)>)>;

/// One writer per tenant creating tasks through the API (`pause` between writes) until the
/// server at `addr` goes away; `kill` is awaited, then what each writer had acknowledged.
async fn write_until_killed(
    addr: &str,
    tokens: &[(String, String)],
    pause: Duration,
    kill: impl std::future::Future<Output = ()>,
) -> Acknowledged {
    let client = reqwest::Client::new();
    let writers: Vec<_> = tokens
        .iter()
        .cloned()
        .map(|(slug, token)| {
            let (client, addr) = (client.clone(), addr.to_owned());
            tokio::spawn(async move {
                let base = format!("http://{addr}/api/v1/w/{slug}");
                let project: serde_json::Value = client
                    .post(format!("{base}/projects"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "name": "crash" }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let mut done = Vec::new();
                for n in 0.. {
                    let title = format!("{slug} write {n}");
                    let body = serde_json::json!({ "project_id": project["id"], "title": title });
                    match client.post(format!("{base}/tasks")).bearer_auth(&token).json(&body).send().await {
                        Ok(response) if response.status() == 201 => {
                            done.push((title, std::time::SystemTime::now()))
                        }
                        Ok(response) => panic!("{slug}: {}", response.status()),
                        Err(_) => break, // the server is gone
                    }
                    tokio::time::sleep(pause).await;
                }
                (slug, done)
            })
        })
        .collect();
    kill.await;
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.push(writer.await.unwrap());
    }
    acknowledged
}

/// Crash safety of the owner model (no file locks, the WAL index in memory): `silo serve`
/// killed with SIGKILL while writers commit across many tenants loses no acknowledged write,
/// every file passes `integrity_check`, and the next server serves them all.
#[test]
fn sigkill_during_writes_across_tenants_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tenants = 12;
    let tokens = tenants_with_tokens(d, "k", tenants);
    let (mut server, addr) = start_server(d);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let acknowledged = runtime.block_on(write_until_killed(&addr, &tokens, Duration::ZERO, async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        server.child.kill().unwrap(); // SIGKILL, mid-write
        server.child.wait().unwrap();
    }));
    let total: usize = acknowledged.iter().map(|(_, done)| done.len()).sum();
    assert!(total > tenants, "the writers wrote before the kill ({total})");
    for (slug, done) in &acknowledged {
        // No server runs: the file is this process's to check.
        let shown: serde_json::Value =
            serde_json::from_str(&stdout(&silo(d, &["tenant", "show", slug, "--json"]))).unwrap();
        let path = Path::new(shown["path"].as_str().unwrap());
        let path = if path.is_absolute() { path.to_owned() } else { d.join(path) };
        silo_storage::sqlite::check_integrity(&path).unwrap_or_else(|e| panic!("{slug}: {e}"));
        let stored: serde_json::Value = serde_json::from_str(&stdout(&silo(
            d,
            &["tenant", "sql", slug, "SELECT title FROM tasks", "--json"],
        )))
        .unwrap();
        let titles: std::collections::HashSet<&str> =
            stored["rows"].as_array().unwrap().iter().filter_map(|row| row["title"].as_str()).collect();
        for (title, _) in done {
            assert!(
                titles.contains(title.as_str()),
                "{slug}: acknowledged {title:?} is lost ({} acknowledged, {} stored: {stored})",
                done.len(),
                titles.len()
            );
        }
    }
    assert!(files_ending(&d.join("data/regions"), "-shm").is_empty());
    let (again, _) = start_server(d);
    stop(again);
}

/// SIGTERM while a CLI command runs through the server: the server lets the command finish and
/// answer before it closes the tenant files and lets go of the data directory, so the command
/// is not cut off and no second server can open a file it still holds.
#[test]
fn a_stopping_server_finishes_the_clis_command_first() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    stdout(&silo(d, &["tenant", "create", "long"]));
    let (server, _) = start_server(d);
    let slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000000) \
                SELECT count(*) AS n FROM c";
    let command = Command::new(env!("CARGO_BIN_EXE_silo"))
        .args(["tenant", "sql", "long", slow, "--json"])
        .current_dir(d)
        .env_remove("SILO_DATA_DIR")
        .envs(common::control_env(&d.join("data")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let log = stop(server);
    let out = command.wait_with_output().unwrap();
    assert!(out.status.success(), "the command finished: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("30000000"), "{out:?}");
    let waited = log.iter().position(|l| l.contains("waiting for CLI commands in progress"));
    let closed = log.iter().position(|l| l.contains("tenant handles and the control plane are closed"));
    assert!(waited.is_some() && waited < closed, "the server waited for the command: {log:#?}");
    // The server stopped only after it (stop() waited for the exit); a new one starts.
    let (again, _) = start_server(d);
    stop(again);
}

/// Disaster recovery under a crash: `silo serve` killed with SIGKILL while writers commit
/// across tenants, then its whole data directory lost (control plane, tenant files, master
/// key); the store (another disk) and a copy of the master key survive. `silo recover
/// --from-store` on an empty directory brings back every tenant with every write acknowledged
/// before the last seconds, each passing `integrity_check`, and `silo serve` starts on it.
/// The target is `continuous_interval` (1 s) + 1 s; the test allows one more second, as the
/// test machine runs other tests at once (`silo-bench continuous` measures the figure).
#[test]
fn after_sigkill_and_a_lost_data_directory_recover_brings_back_all_but_the_last_seconds() {
    if common::on_postgres() {
        eprintln!("not run with the control plane on PostgreSQL: `silo recover` rebuilds control.db");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    std::fs::write(d.join("silo.toml"), format!("[backup]\nlocal_dir = {:?}\n", store.display().to_string()))
        .unwrap();
    let tenants = 8;
    let tokens = tenants_with_tokens(d, "c", tenants);
    let (mut server, addr) = start_server(d);
    // Kept apart from the data directory, as the README asks (created as the server starts).
    let key_copy = d.join("master.key.copy");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::read_to_string(d.join("data/master.key")) {
            Ok(key) if key.trim().len() == 64 => break std::fs::write(&key_copy, key).unwrap(),
            _ => assert!(std::time::Instant::now() < deadline, "the server creates its master key"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut killed_at = std::time::SystemTime::now();
    // ~20 writes a second per tenant: several segments each.
    let acknowledged =
        runtime.block_on(write_until_killed(&addr, &tokens, Duration::from_millis(50), async {
            tokio::time::sleep(Duration::from_secs(6)).await;
            server.child.kill().unwrap(); // SIGKILL, mid-write
            killed_at = std::time::SystemTime::now();
            server.child.wait().unwrap();
        }));
    // The disk with the data directory is lost.
    std::fs::remove_dir_all(d.join("data")).unwrap();
    let refused = silo(d, &["recover", "--from-store"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no master key"), "{refused:?}");
    let recovered = silo(d, &["recover", "--from-store", "--master-key-file", key_copy.to_str().unwrap()]);
    assert!(recovered.status.success(), "{}", String::from_utf8_lossy(&recovered.stderr));
    let said = String::from_utf8_lossy(&recovered.stdout);
    assert!(said.contains(&format!("tenants: {tenants} restored")) && said.contains("0 failed"), "{said}");
    let again = silo(d, &["recover", "--from-store"]);
    assert!(!again.status.success(), "a second recovery over the rebuilt directory is refused");

    let moment = killed_at - Duration::from_secs(3);
    let mut checked = 0;
    for (slug, done) in &acknowledged {
        let check: serde_json::Value = serde_json::from_str(&stdout(&silo(
            d,
            &["tenant", "sql", slug, "PRAGMA integrity_check", "--json"],
        )))
        .unwrap();
        assert_eq!(check["rows"][0]["integrity_check"], "ok", "{slug}: {check}");
        let stored: serde_json::Value = serde_json::from_str(&stdout(&silo(
            d,
            &["tenant", "sql", slug, "SELECT title FROM tasks", "--json"],
        )))
        .unwrap();
        let titles: std::collections::HashSet<&str> =
            stored["rows"].as_array().unwrap().iter().filter_map(|row| row["title"].as_str()).collect();
        for (title, acked) in done {
            if *acked <= moment {
                checked += 1;
                assert!(
                    titles.contains(title.as_str()),
                    "{slug}: {title:?}, acknowledged 3 s before the kill, is lost"
                );
            }
        }
    }
    assert!(checked > tenants * 20, "the writers wrote well before the kill ({checked})");
    // The rebuilt installation serves: the owner's token still works.
    let (server, addr) = start_server(d);
    let (slug, token) = &tokens[0];
    let listed = runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("http://{addr}/api/v1/w/{slug}/tasks"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(listed, 200);
    stop(server);
}

/// The JSON answer to `request`.
async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// An installation on `control.db` moves its control plane to PostgreSQL with
/// `silo control copy-to-postgres` (the server stopped) and goes on there: the same tokens,
/// tenants and data, new rows after the copied ones; the data directory then refuses to start
/// without the URL, and a second copy into the filled database is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_db_copied_to_postgres_serves_the_same_installation() {
    if common::on_postgres() {
        return; // the copy starts from control.db
    }
    let Some(url) = silo_core::db::testing::postgres_database().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let on_postgres = [("SILO_CONTROL__URL", url.clone())];
    let tenants = tenants_with_tokens(d, "copy", 2);
    let client = reqwest::Client::new();
    let task = |addr: &str, slug: &str, token: &str, title: &str| {
        let (client, base, token) =
            (client.clone(), format!("http://{addr}/api/v1/w/{slug}"), token.to_owned());
        let title = title.to_owned();
        async move {
            let projects = json_of(client.get(format!("{base}/projects")).bearer_auth(&token)).await;
            let project = match projects["items"].as_array().and_then(|p| p.first()) {
                Some(project) => project["id"].clone(),
                None => {
                    let made = client.post(format!("{base}/projects")).bearer_auth(&token);
                    json_of(made.json(&serde_json::json!({ "name": "P" }))).await["id"].clone()
                }
            };
            let body = serde_json::json!({ "project_id": project, "title": title });
            client
                .post(format!("{base}/tasks"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let titles = |addr: String, slug: String, token: String| {
        let client = client.clone();
        async move {
            let tasks = json_of(
                client.get(format!("http://{addr}/api/v1/w/{slug}/tasks?limit=100")).bearer_auth(&token),
            )
            .await;
            let mut titles: Vec<String> = tasks["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["title"].as_str().unwrap().to_owned())
                .collect();
            titles.sort();
            titles
        }
    };

    // On control.db: tasks in each tenant. The copy is refused while the server runs.
    let (server, addr) = start_server(d);
    for (slug, token) in &tenants {
        assert_eq!(task(&addr, slug, token, "before the copy").await, 201);
    }
    let refused = silo(d, &["control", "copy-to-postgres", "--url", &url]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("copy its control plane"), "{refused:?}");
    stop(server);

    // More of what a control plane holds: a backup (its wrapped data key: bytes) and a session
    // whose parent comes after it in control.db, more than one batch of rows later (a column
    // naming its own table's rows).
    stdout(&silo(d, &["backup", "create", "copy-0"]));
    let control = sqlx::SqlitePool::connect(&format!("sqlite://{}", d.join("data/control.db").display()))
        .await
        .unwrap();
    let fillers = (0..600).map(|n| format!("filler-{n}"));
    for id in std::iter::once("child".to_owned()).chain(fillers).chain(["parent".to_owned()]) {
        sqlx::query(
            "INSERT INTO sessions (id_sha256, user_id, csrf_token, created_at, last_seen_at, expires_at)
             SELECT ?1, id, 'csrf', '2026-12-01T00:00:00Z', '2026-12-01T00:00:00Z', '2099-01-01T00:00:00Z' FROM users",
        )
        .bind(id)
        .execute(&control)
        .await
        .unwrap();
    }
    sqlx::query("UPDATE sessions SET parent_id = 'parent' WHERE id_sha256 = 'child'")
        .execute(&control)
        .await
        .unwrap();
    control.close().await;

    let unreachable =
        silo(d, &["control", "copy-to-postgres", "--url", "postgres://nobody@127.0.0.1:1/none"]);
    assert!(!unreachable.status.success());
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach"), "{unreachable:?}");
    assert!(d.join("data/control.db").exists(), "a failed copy leaves control.db where it was");

    let control_copies = || {
        let copies = d.join("data/objects/control");
        if copies.exists() { files_ending(&copies, ".db.zst.enc") } else { Vec::new() }
    };
    assert!(!control_copies().is_empty(), "the server copied control.db to the (local) store");
    let copied = stdout(&silo(d, &["control", "copy-to-postgres", "--url", &url, "--json"]));
    let copied: serde_json::Value = serde_json::from_str(&copied).unwrap();
    let rows = |table: &str| {
        copied["tables"].as_array().unwrap().iter().find(|t| t[0] == table).map(|t| t[1].as_u64().unwrap())
    };
    assert_eq!(rows("tenants"), Some(2), "{copied}");
    assert_eq!(rows("users"), Some(1), "{copied}");
    assert!(rows("audit_log").unwrap() > 0, "{copied}");
    assert_eq!(rows("nodes"), None, "the servers' own state is not copied: {copied}");
    // The store's copies of control.db go: they would keep what later erasures remove, and
    // `silo recover` would rebuild the old control plane from them.
    assert!(copied["store_copies_removed"].as_u64().unwrap() > 0, "{copied}");
    assert_eq!(control_copies(), Vec::<std::path::PathBuf>::new());
    let database = copied["database"].as_str().unwrap();
    assert!(url.ends_with(database) && !database.contains('@'), "named without credentials: {database}");
    assert!(!d.join("data/control.db").exists() && d.join("data/control.db.copied-to-postgres").exists());
    let again = silo(d, &["control", "copy-to-postgres", "--url", &url]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("copied to PostgreSQL already"), "{again:?}");
    let typo =
        silo(d, &["--data-dir", "/nonexistent/silo-data", "control", "copy-to-postgres", "--url", &url]);
    assert!(String::from_utf8_lossy(&typo.stderr).contains("has no control.db to copy"), "{typo:?}");
    assert!(!Path::new("/nonexistent/silo-data").exists(), "a mistyped data directory is not made");
    // Without the URL the data directory is refused, not served from an empty control.db.
    let without = silo(d, &["tenant", "list"]);
    assert!(!without.status.success());
    assert!(String::from_utf8_lossy(&without.stderr).contains("is on PostgreSQL"), "{without:?}");

    // On PostgreSQL: the same tokens reach the same data; new rows (tasks in the files, a
    // tenant and its audit entries in the control plane) come after the copied ones.
    let (server, addr) = start_server_with(d, &on_postgres);
    for (slug, token) in &tenants {
        assert_eq!(task(&addr, slug, token, "after the copy").await, 201);
        let seen = titles(addr.clone(), slug.clone(), token.clone()).await;
        assert_eq!(seen, ["after the copy", "before the copy"], "{slug}");
    }
    let target = silo_core::db::Db::postgres(&url, 1).await.unwrap();
    let parent: Option<String> =
        silo_core::db::query_scalar("SELECT parent_id FROM sessions WHERE id_sha256 = 'child'")
            .fetch_one(&target)
            .await
            .unwrap();
    assert_eq!(parent.as_deref(), Some("parent"));
    target.close().await;
    // The backup decrypts with its data key as copied.
    stdout(&silo(d, &["backup", "verify", "copy-0"]));
    stdout(&silo(d, &["tenant", "create", "after-copy"]));
    let listed = stdout(&silo(d, &["tenant", "list"]));
    assert!(["copy-0", "copy-1", "after-copy"].iter().all(|slug| listed.contains(slug)), "{listed}");
    stop(server);

    // The old file copied again into the same database: refused, the database unchanged.
    let again = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(again.path().join("data")).unwrap();
    std::fs::copy(d.join("data/control.db.copied-to-postgres"), again.path().join("data/control.db"))
        .unwrap();
    let twice = silo(again.path(), &["control", "copy-to-postgres", "--url", &url]);
    assert!(!twice.status.success());
    assert!(String::from_utf8_lossy(&twice.stderr).contains("is not empty"), "{twice:?}");
}
