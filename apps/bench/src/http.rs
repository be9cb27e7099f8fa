//! `silo-bench http`: the HTTP server under load, in one process.
//!
//! The real HTTP server (`silo_server::start`, two actix workers, without the
//! application's background loops) serves a scratch data
//! directory; the load generator is a minimal HTTP/1.1 keep-alive client on **one** thread
//! (a current-thread tokio runtime), so the server has the rest of the machine. Phases, each
//! at `--connections` connections for `--seconds` after a warm-up:
//!
//! - (a) `GET /healthz`
//! - (b) `GET /api/v1/w/{slug}/tasks?limit=20` on one warm tenant (bearer token)
//! - (c) the same over `--tenants` tenants chosen by Zipf(1.1), handle-cache capacity 1,024
//! - (d) `POST /api/v1/w/{slug}/tasks` on one tenant
//! - (e) a signed-in HTML page (`GET /w/{slug}/`, session cookie)
//!
//! Then it times the pieces of (b) in-process (token, tenant, role, handle, member, query,
//! JSON) to show where a request's microseconds go.
//!
//! With `--wrk SCRIPT` the load comes from `wrk` instead (Debian package `wrk`, two threads,
//! `--connections`), so figures compare with other servers driven by the same script: the
//! bench writes a `TOKENS` file of `slug token` lines (one per tenant of the spread) and runs
//! `/healthz` without a script, then the script with `ZIPF=1.1` and with `ZIPF=0` (uniform),
//! each after 2 unmeasured seconds of the same load; the script prints one summary line per
//! run. `--capacity` sets the handle cache (e.g. 100
//! over 1,000 tenants: the active set ten times the cache; 0 sizes it as `silo serve` does).
//!
//! With `--postgres` as well, every wrk case runs a second time right after Silo's against
//! the shared-schema PostgreSQL build of the same endpoint (`shared_schema.rs`: the same
//! tenants, tokens and tasks in one schema with a `tenant_id` column, a scratch cluster of the
//! Debian package `postgresql` started by the bench), and the run ends with a table of both
//! and their ratios.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Zipf};
use silo_accounts::{Accounts, Role, TokenScope};
use silo_core::{TenantRef, TenantSlug};
use silo_tenancy::{Tenancy, Tenant};
use silo_workspace::tasks::{NewTask, TaskFilter};
use silo_workspace::{members, projects, tasks};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::measure::{Latencies, create_tenants, tenancy};

/// `silo-bench http` options.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Tenants of the spread phase (c).
    #[arg(long, default_value_t = 10_000)]
    tenants: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds per phase (after 2 s of warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Tasks per tenant.
    #[arg(long, default_value_t = 20)]
    tasks: usize,
    /// Run only these phases (letters, e.g. `--only a,b`).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Handle-cache capacity.
    #[arg(long, default_value_t = 1024)]
    capacity: u64,
    /// Drive the load with `wrk` and this Lua script (see the module docs) instead.
    #[arg(long)]
    wrk: Option<std::path::PathBuf>,
    /// With `--wrk`: run each case also against the shared-schema PostgreSQL build of the same
    /// endpoint (`shared_schema`; the Debian package `postgresql`), side by side.
    #[arg(long, requires = "wrk")]
    postgres: bool,
}

const EMAIL: &str = "bench@example.com";

/// Tokens one bench account holds (the accounts' limit on live tokens).
const TOKENS_PER_ACCOUNT: usize = 50;
const PASSWORD: &str = "bench password, long enough";

/// What one phase measured.
pub(crate) struct Phase {
    name: &'static str,
    requests: u64,
    pub(crate) errors: u64,
    pub(crate) rps: f64,
    latencies: Latencies,
    pub(crate) cpu_us_per_request: f64,
}

/// Builds one request (bytes on the wire) for a connection's random source.
pub(crate) type MakeRequest = Arc<dyn Fn(&mut SmallRng) -> Vec<u8> + Send + Sync>;

pub async fn run(dir: &Path, args: HttpArgs) -> anyhow::Result<()> {
    let tenancy = tenancy(dir, args.capacity).await?;
    let (accounts, server_settings) = crate::measure::accounts_and_server(&tenancy)?;
    let setup = Instant::now();
    let rss_before = crate::measure::proc_status("VmRSS:");
    let fixture = Fixture::build(&accounts, args.tenants, args.tasks).await?;
    println!(
        "setup: {} tenants × {} tasks, tokens and a session in {:.0?}; RSS {:.0} MiB before, {:.0} MiB after",
        args.tenants + 2,
        args.tasks,
        setup.elapsed(),
        rss_before as f64 / 1024.0,
        crate::measure::proc_status("VmRSS:") as f64 / 1024.0
    );

    let (addr, handle) = crate::measure::serve_in_process(
        silo_billing::Billing::new(accounts.clone(), Default::default(), Default::default()),
        server_settings,
    )?;

    if let Some(script) = &args.wrk {
        let result = with_wrk(&tenancy, &fixture, addr, script, dir, &args).await;
        handle.stop(true).await;
        tenancy.shutdown().await;
        return result;
    }

    let warm = fixture.warm_slug.clone();
    let warm_token = fixture.warm_token.clone();
    let get = |path: String, header: String| {
        format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{header}\r\n").into_bytes()
    };

    let healthz: MakeRequest = Arc::new(move |_| get("/healthz".into(), String::new()));
    let path = format!("/api/v1/w/{warm}/tasks?limit=20");
    let auth = format!("Authorization: Bearer {warm_token}\r\n");
    let one_tenant: MakeRequest = Arc::new(move |_| get(path.clone(), auth.clone()));
    let spread = fixture.spread.clone();
    let zipf = Zipf::new(spread.len() as f64, 1.1)?;
    let many_tenants: MakeRequest = Arc::new(move |rng| {
        let (slug, token) = &spread[zipf.sample(rng) as usize - 1];
        get(format!("/api/v1/w/{slug}/tasks?limit=20"), format!("Authorization: Bearer {token}\r\n"))
    });
    let (post_slug, post_token, project) =
        (fixture.write_slug.clone(), fixture.write_token.clone(), fixture.write_project);
    let post: MakeRequest = Arc::new(move |_| {
        let body = format!(
            "{{\"project_id\":{project},\"title\":\"load test task\",\"body\":\"written by silo-bench\"}}"
        );
        format!(
            "POST /api/v1/w/{post_slug}/tasks HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {post_token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let (page_slug, cookie) = (warm.clone(), fixture.session_cookie.clone());
    let page: MakeRequest =
        Arc::new(move |_| get(format!("/w/{page_slug}/"), format!("Cookie: {cookie}\r\n")));

    let mut phases = Vec::new();
    let wanted =
        |name: &str| args.only.is_empty() || args.only.iter().any(|o| name.starts_with(&format!("({o})")));
    for (name, make) in [
        ("(a) GET /healthz", healthz),
        ("(b) GET tasks, one warm tenant", one_tenant),
        ("(c) GET tasks, Zipf over tenants", many_tenants),
        ("(d) POST a task", post),
        ("(e) signed-in HTML page", page),
    ] {
        if !wanted(name) {
            continue;
        }
        let hits_before = tenancy.cache().stats();
        let phase = load(name, addr, make, args.connections, Duration::from_secs(args.seconds)).await?;
        let hits_after = tenancy.cache().stats();
        let (hits, misses) = (hits_after.hits - hits_before.hits, hits_after.misses - hits_before.misses);
        println!(
            "{:<36} {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  errors {}  cpu {:.0} µs/req  cache hits {:.1}%",
            phase.name,
            phase.rps,
            phase.latencies.percentile_us(50.0) / 1000.0,
            phase.latencies.percentile_us(99.0) / 1000.0,
            phase.errors,
            phase.cpu_us_per_request,
            100.0 * hits as f64 / (hits + misses).max(1) as f64
        );
        phases.push(phase);
    }
    if phases.len() == 5 {
        let base = phases[0].rps;
        println!(
            "ratios to (a): (b) {:.2} (target ≥ 0.40), (c) {:.2} (target ≥ 0.25), (d) {:.2}, (e) {:.2}; p99 of (b) {:.2} ms (target < 5)",
            phases[1].rps / base,
            phases[2].rps / base,
            phases[3].rps / base,
            phases[4].rps / base,
            phases[1].latencies.percentile_us(99.0) / 1000.0
        );
    }
    let total_requests: u64 = phases.iter().map(|p| p.requests).sum();
    let total_errors: u64 = phases.iter().map(|p| p.errors).sum();
    println!("{total_requests} requests, {total_errors} errors");

    handle.stop(true).await;
    breakdown(&accounts, &fixture).await?;
    tenancy.shutdown().await;
    Ok(())
}

/// Runs `wrk` against the server: `/healthz`, then `script` with `ZIPF=1.1` and `ZIPF=0`;
/// with `--postgres`, each case also against the shared-schema PostgreSQL build right after.
async fn with_wrk(
    tenancy: &Tenancy,
    fixture: &Fixture,
    addr: SocketAddr,
    script: &Path,
    dir: &Path,
    args: &HttpArgs,
) -> anyhow::Result<()> {
    let tokens = fixture.write_tokens(dir)?;
    let wrk = Wrk { tokens, connections: args.connections, seconds: args.seconds };
    let silo = format!("http://{addr}");
    let postgres = match args.postgres {
        true => Some(Comparison::start(fixture, args.tasks).await?),
        false => None,
    };

    let healthz = wrk.run(&format!("{silo}/healthz"), None, "0").await?;
    println!("wrk /healthz: {:.0} req/s, p50 {} p99 {}", healthz.rps, healthz.p50, healthz.p99);
    if let Some(pg) = &postgres {
        let theirs = wrk.run(&format!("{}/healthz", pg.url), None, "0").await?;
        println!(
            "wrk /healthz of the PostgreSQL build: {:.0} req/s, p50 {} p99 {}",
            theirs.rps, theirs.p50, theirs.p99
        );
    }
    // A static response of about the tasks page's size (the 4.9 KB stylesheet, from memory):
    // what the HTTP stack and the kernel cost for that many bytes, with no tenant work at all.
    let stylesheet = wrk.run(&format!("{silo}/static/silo.css"), None, "0").await?;
    println!("wrk /static/silo.css: {:.0} req/s, {:.0} bytes per response", stylesheet.rps, stylesheet.bytes);
    let mut table = Vec::new();
    for zipf in ["1.1", "0"] {
        // Two unmeasured seconds first (as the in-process phases have), so the figures are of
        // a server in steady use, not of its first look at each tenant.
        wrk.warm_up(&silo, script, zipf).await?;
        let before = tenancy.cache().stats();
        let ours = wrk.run(&silo, Some(script), zipf).await?;
        let after = tenancy.cache().stats();
        let opens = after.opens - before.opens;
        let mean_open_us =
            (after.open_latency_sum_us - before.open_latency_sum_us) as f64 / opens.max(1) as f64;
        println!(
            "wrk tasks, {} tenants, ZIPF={zipf}, capacity {}: {} ({:.2}× healthz, {:.2}× the stylesheet; {:.0} bytes per response); {opens} opens, mean open {:.0} µs",
            fixture.spread.len(),
            args.capacity,
            ours.summary,
            ours.rps / healthz.rps,
            ours.rps / stylesheet.rps,
            ours.bytes,
            mean_open_us
        );
        if let Some(pg) = &postgres {
            wrk.warm_up(&pg.url, script, zipf).await?;
            let theirs = wrk.run(&pg.url, Some(script), zipf).await?;
            println!(
                "wrk tasks, {} tenants, ZIPF={zipf}, shared-schema PostgreSQL: {} ({:.0} bytes per response)",
                fixture.spread.len(),
                theirs.summary,
                theirs.bytes
            );
            table.push((zipf, ours, theirs));
        }
    }
    memory(tenancy).await;
    if let Some(pg) = postgres {
        println!("side by side, {} tenants × {} tasks ({}):", fixture.spread.len(), args.tasks, pg.describe);
        println!("| case | Silo | shared-schema PostgreSQL | ratio | p99 ratio |");
        println!("|---|---|---|---|---|");
        for (zipf, ours, theirs) in &table {
            let case = if *zipf == "0" { "uniform".to_owned() } else { format!("Zipf({zipf})") };
            println!(
                "| {case} | {:.1}k, p50 {:.1} ms, p99 {:.1} ms | {:.1}k, p50 {:.1} ms, p99 {:.1} ms | {:.2}× | {:.2}× |",
                ours.rps / 1000.0,
                ours.p50_us / 1000.0,
                ours.p99_us / 1000.0,
                theirs.rps / 1000.0,
                theirs.p50_us / 1000.0,
                theirs.p99_us / 1000.0,
                ours.rps / theirs.rps,
                ours.p99_us / theirs.p99_us
            );
        }
        pg.stop().await;
    }
    Ok(())
}

/// Memory with the fleet cached (after the load), then after every handle is closed, then
/// after glibc gives its free pages back (`malloc_trim`): what a cached tenant costs, and
/// whether the memory of a burst returns to the system by itself.
async fn memory(tenancy: &Tenancy) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let heap = || {
        let (used, free) = crate::measure::heap_mib();
        format!("C heap {used:.0} MiB in use, {free:.0} MiB free but held")
    };
    let stats = tenancy.cache().stats();
    let (rss, sqlite) = (crate::measure::proc_status("VmRSS:"), silo_storage::memory::sqlite_used());
    println!(
        "memory: RSS {:.0} MiB with {} tenants cached ({:.1} KiB each, RSS over cached handles), SQLite's own allocations {:.0} MiB ({:.1} KiB per cached tenant); {}",
        mib(rss),
        stats.cached_handles,
        rss as f64 / stats.cached_handles.max(1) as f64,
        sqlite as f64 / (1024.0 * 1024.0),
        sqlite as f64 / 1024.0 / stats.cached_handles.max(1) as f64,
        heap()
    );
    tenancy.cache().clear().await;
    let closed = tenancy.cache().wait_all_closed(Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_close = crate::measure::proc_status("VmRSS:");
    println!(
        "memory: RSS {:.0} MiB after closing every handle ({}), SQLite's own allocations {:.0} MiB; {}",
        mib(after_close),
        if closed { "all closed" } else { "some still open after 120 s" },
        silo_storage::memory::sqlite_used() as f64 / (1024.0 * 1024.0),
        heap()
    );
    silo_storage::memory::return_freed();
    println!(
        "memory: RSS {:.0} MiB after malloc_trim(0); {}",
        mib(crate::measure::proc_status("VmRSS:")),
        heap()
    );
}

/// How `wrk` is run: two threads, `connections` connections, `seconds` per measurement, the
/// script's `TOKENS` file.
struct Wrk {
    tokens: std::path::PathBuf,
    connections: usize,
    seconds: u64,
}

/// What one `wrk` run reported.
struct WrkRun {
    rps: f64,
    /// Bytes per response (`Transfer/sec` over `Requests/sec`).
    bytes: f64,
    /// `--latency`'s percentiles as wrk printed them (runs without the script).
    p50: String,
    p99: String,
    /// The script's summary line and its percentiles (runs with the script).
    summary: String,
    p50_us: f64,
    p99_us: f64,
}

impl Wrk {
    /// Two unmeasured seconds of the script's load.
    async fn warm_up(&self, url: &str, script: &Path, zipf: &str) -> anyhow::Result<()> {
        self.spawn(url, Some(script), zipf, 2).await.map(drop)
    }

    /// One measured run of `seconds`.
    async fn run(&self, url: &str, script: Option<&Path>, zipf: &str) -> anyhow::Result<WrkRun> {
        let stdout = self.spawn(url, script, zipf, self.seconds).await?;
        // `--latency` prints the distribution as lines such as `     50%  412.00us`.
        let percentile = |p: &str| {
            stdout
                .lines()
                .find_map(|l| l.trim().strip_prefix(p).map(|v| v.trim().to_owned()))
                .unwrap_or_else(|| "?".to_owned())
        };
        let summary = stdout.lines().find(|l| l.contains("rps=")).unwrap_or("").to_owned();
        let field = |name: &str| {
            summary
                .split_whitespace()
                .find_map(|f| f.strip_prefix(name).and_then(|v| v.parse().ok()))
                .unwrap_or(f64::NAN)
        };
        anyhow::ensure!(script.is_none() || !summary.is_empty(), "the script printed no summary: {stdout}");
        let rps = requests_per_second(&stdout);
        Ok(WrkRun {
            rps: if script.is_some() { field("rps=") } else { rps },
            bytes: bytes_per_second(&stdout) / rps,
            p50: percentile("50%"),
            p99: percentile("99%"),
            p50_us: field("p50_us="),
            p99_us: field("p99_us="),
            summary,
        })
    }

    async fn spawn(
        &self,
        url: &str,
        script: Option<&Path>,
        zipf: &str,
        seconds: u64,
    ) -> anyhow::Result<String> {
        let mut command = std::process::Command::new("wrk");
        command
            .args(["-t2", &format!("-c{}", self.connections), &format!("-d{seconds}s"), "--latency"])
            .env("TOKENS", &self.tokens)
            .env("ZIPF", zipf);
        if let Some(script) = script {
            command.arg("-s").arg(script);
        }
        command.arg(url);
        let output = tokio::task::spawn_blocking(move || command.output())
            .await?
            .map_err(|e| anyhow::anyhow!("wrk could not run ({e}); install the Debian package `wrk`"))?;
        anyhow::ensure!(output.status.success(), "wrk failed: {}", String::from_utf8_lossy(&output.stderr));
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// The shared-schema PostgreSQL build of the same endpoint, loaded with the fixture's data.
struct Comparison {
    _postgres: crate::shared_schema::Postgres,
    url: String,
    handle: actix_web::dev::ServerHandle,
    describe: String,
}

impl Comparison {
    async fn start(fixture: &Fixture, tasks: usize) -> anyhow::Result<Self> {
        let started = Instant::now();
        let postgres = crate::shared_schema::Postgres::start()?;
        let (addr, handle, pool) = crate::shared_schema::serve(&postgres.url()).await?;
        crate::shared_schema::load(&pool, &fixture.spread, tasks).await?;
        println!(
            "PostgreSQL: a scratch cluster started and loaded with {} tenants × {tasks} tasks in {:.0?}",
            fixture.spread.len(),
            started.elapsed()
        );
        let describe = crate::shared_schema::describe(&postgres);
        Ok(Self { _postgres: postgres, url: format!("http://{addr}"), handle, describe })
    }

    async fn stop(self) {
        self.handle.stop(true).await;
    }
}

/// `Requests/sec:` of wrk's report.
fn requests_per_second(report: &str) -> f64 {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:").and_then(|v| v.trim().parse().ok()))
        .unwrap_or(f64::NAN)
}

/// `Transfer/sec:` of wrk's report (e.g. `12.34MB`), in bytes.
fn bytes_per_second(report: &str) -> f64 {
    let Some(value) = report.lines().find_map(|l| l.trim().strip_prefix("Transfer/sec:")) else {
        return f64::NAN;
    };
    let value = value.trim();
    let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let scale = match &value[digits.len()..] {
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        _ => 1.0,
    };
    digits.parse::<f64>().map_or(f64::NAN, |n| n * scale)
}

/// The data the phases use (and `silo-bench soak`).
pub(crate) struct Fixture {
    pub(crate) warm_slug: String,
    pub(crate) warm_token: String,
    write_slug: String,
    write_token: String,
    write_project: i64,
    /// The spread's tenants: (slug, bearer token); each has project 1 with the tasks.
    pub(crate) spread: Arc<Vec<(String, String)>>,
    session_cookie: String,
}

impl Fixture {
    /// Writes the `TOKENS` file of the wrk script (`slug token` per line of the spread) under
    /// `dir`; returns its path.
    pub(crate) fn write_tokens(&self, dir: &Path) -> std::io::Result<std::path::PathBuf> {
        let path = dir.join("tokens.txt");
        let lines: String = self.spread.iter().map(|(slug, token)| format!("{slug} {token}\n")).collect();
        std::fs::write(&path, lines)?;
        Ok(path)
    }

    /// `tenants` tenants with `tasks` tasks each, plus the two warm ones.
    pub(crate) async fn build(accounts: &Accounts, tenants: usize, tasks: usize) -> anyhow::Result<Self> {
        let all = create_tenants(accounts.tenancy(), "t", tenants, 4).await?;
        Self::prepare(accounts, all, tasks).await
    }

    /// Gives each of `all` a member with a token, a project and `tasks` tasks (plus two warm
    /// tenants).
    pub(crate) async fn prepare(
        accounts: &Accounts,
        mut all: Vec<Tenant>,
        tasks: usize,
    ) -> anyhow::Result<Self> {
        let tenancy = accounts.tenancy();
        // warm-0 serves the reads, warm-1 takes the writes (so (e) sees a normal workspace);
        // first, so that their owner is `EMAIL`, whose session (e) uses.
        let mut warm = create_tenants(tenancy, "warm", 2, 1).await?;
        warm.append(&mut all);
        let all = warm;
        // An account holds at most 50 live tokens: each holds those of 50 tenants.
        let holders: Vec<String> = (0..all.len().div_ceil(TOKENS_PER_ACCOUNT))
            .map(|n| if n == 0 { EMAIL.to_owned() } else { format!("bench-{n}@example.com") })
            .collect();
        for holder in &holders {
            accounts.users().create(holder, PASSWORD, Some("Bench"), "bench").await?;
        }
        let task_count = tasks;
        let count = all.len();
        let holders = &holders;
        let prepared = futures::stream::iter(all.into_iter().enumerate())
            .map(|(i, tenant)| async move {
                let reference = TenantRef::Id(tenant.id);
                let holder = &holders[i / TOKENS_PER_ACCOUNT];
                accounts.memberships().add(&reference, holder, Role::Owner, "bench").await?;
                let token = accounts.tokens().issue(holder, TokenScope::Personal(reference), "bench").await?;
                let db = tenancy.db(tenant.id).await?;
                let project = projects::create(&db.turn().await, "bench", "", None)?;
                for i in 0..task_count {
                    let title = format!("task {i} of {}", tenant.slug);
                    tasks::create(
                        &db.turn().await,
                        &NewTask { project_id: project, title, ..Default::default() },
                        None,
                    )?;
                }
                // Each task was its own commit: ~3 MiB of WAL per tenant until the automatic
                // checkpoint at 1,000 pages. Checkpointed and truncated here, so 10,000 tenants
                // do not need 30+ GiB of scratch disk.
                db.turn().await.call(|conn| conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)"))?;
                anyhow::Ok((tenant.slug.to_string(), token, project))
            })
            .buffer_unordered(4);
        let started = std::time::Instant::now();
        let (mut done, mut last) = (Vec::with_capacity(count), std::time::Instant::now());
        futures::pin_mut!(prepared);
        while let Some(result) = prepared.next().await {
            done.push(result);
            // Past 20,000 tenants, each 10,000's rate: a slow-down shows where it starts.
            if count >= 20_000 && done.len().is_multiple_of(10_000) {
                eprintln!(
                    "  prepared {} tenants ({:.0}/s, the last 10,000 at {:.0}/s)",
                    done.len(),
                    done.len() as f64 / started.elapsed().as_secs_f64(),
                    10_000.0 / last.elapsed().as_secs_f64()
                );
                last = std::time::Instant::now();
            }
        }
        let mut spread = Vec::new();
        let (mut warm, mut writes) = (None, None);
        for result in done {
            let (slug, token, project) = result?;
            match slug.as_str() {
                "warm-0" => warm = Some((slug, token)),
                "warm-1" => writes = Some((slug, token, project)),
                _ => spread.push((slug, token)),
            }
        }
        let (warm_slug, warm_token) = warm.expect("the warm tenant");
        let (write_slug, write_token, write_project) = writes.expect("the tenant written to");
        let user = accounts.users().by_email(EMAIL).await?;
        let session = accounts
            .sessions()
            .create(&user.id, "silo-bench", "127.0.0.1", Duration::from_secs(3600), None)
            .await?;
        Ok(Self {
            warm_slug,
            warm_token,
            write_slug,
            write_token,
            write_project,
            spread: Arc::new(spread),
            session_cookie: format!("silo_session={}", session.secret),
        })
    }
}

/// Runs one phase on a dedicated current-thread runtime (one core for the load generator).
pub(crate) async fn load(
    name: &'static str,
    addr: SocketAddr,
    make: MakeRequest,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Phase> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let result = runtime.block_on(async move {
            let warm_up = Instant::now() + Duration::from_secs(2);
            let end = warm_up + duration;
            let workers: Vec<_> = (0..connections)
                .map(|i| tokio::spawn(connection(addr, make.clone(), i as u64, warm_up, end)))
                .collect();
            tokio::time::sleep_until(warm_up.into()).await;
            let cpu_start = crate::measure::cpu_time().as_micros() as u64;
            let mut samples = Vec::new();
            let mut errors = 0;
            for worker in workers {
                let (s, e) = worker.await.expect("a load connection panicked");
                samples.extend(s);
                errors += e;
            }
            let cpu = crate::measure::cpu_time().as_micros() as u64 - cpu_start;
            (samples, errors, cpu)
        });
        let _ = tx.send(result);
    });
    let (samples, errors, cpu) = rx.await?;
    let requests = samples.len() as u64;
    Ok(Phase {
        name,
        requests,
        errors,
        rps: requests as f64 / duration.as_secs_f64(),
        latencies: Latencies::new(samples),
        cpu_us_per_request: cpu as f64 / requests.max(1) as f64,
    })
}

/// One keep-alive connection sending requests until `end`; latencies after `warm_up`.
async fn connection(
    addr: SocketAddr,
    make: MakeRequest,
    seed: u64,
    warm_up: Instant,
    end: Instant,
) -> (Vec<u64>, u64) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut samples = Vec::new();
    let mut errors = 0;
    let mut stream: Option<BufReader<TcpStream>> = None;
    while Instant::now() < end {
        if stream.is_none() {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(BufReader::new(s));
                }
                Err(_) => {
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let request = make(&mut rng);
        let started = Instant::now();
        let result = exchange(stream.as_mut().expect("connected"), &request).await;
        let measuring = started >= warm_up;
        match result {
            Ok(status) if (200..300).contains(&status) => {
                if measuring {
                    samples.push(started.elapsed().as_nanos() as u64);
                }
            }
            Ok(_) => errors += u64::from(measuring),
            Err(_) => {
                errors += u64::from(measuring);
                stream = None;
            }
        }
    }
    (samples, errors)
}

/// Writes a request and reads the whole response; returns the status.
async fn exchange(stream: &mut BufReader<TcpStream>, request: &[u8]) -> std::io::Result<u16> {
    stream.get_mut().write_all(request).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        stream.read_line(&mut line).await?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().map_err(std::io::Error::other)?;
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await?;
    Ok(status)
}

/// Times each step of phase (b) in-process, without HTTP.
async fn breakdown(accounts: &Accounts, fixture: &Fixture) -> anyhow::Result<()> {
    let tenancy = accounts.tenancy();
    const N: u32 = 20_000;
    let slug: TenantSlug = fixture.warm_slug.parse()?;
    let tenant = tenancy.resolve(&slug).await?;
    let user = accounts.users().by_email(EMAIL).await?;
    let db = tenancy.db(tenant.id).await?;
    let filter = TaskFilter::default();
    let rows = tasks::list(&db.turn().await, &filter, 21)?;
    let mut report = Vec::new();
    macro_rules! step {
        ($name:expr, $body:expr) => {{
            let started = Instant::now();
            for _ in 0..N {
                std::hint::black_box($body);
            }
            report.push(($name, started.elapsed().as_nanos() as f64 / f64::from(N) / 1000.0));
        }};
    }
    step!("bearer token (sha256 + directory)", accounts.tokens().authenticate(&fixture.warm_token).await?);
    step!("tenant by slug (directory)", tenancy.resolve(&slug).await?);
    step!("membership role (directory)", accounts.memberships().role(tenant.id, &user.id).await?);
    step!("handle cache get", tenancy.db(tenant.id).await?);
    step!("member row (SQLite)", members::by_user(&db.turn().await, &user.id)?);
    step!("21 tasks (SQLite, prepared)", tasks::list(&db.turn().await, &filter, 21)?);
    step!("JSON of 20 tasks (serde_json)", serde_json::to_vec(&rows[..20])?);
    println!("where the microseconds of (b) go, in-process (mean of {N}):");
    let mut sum = 0.0;
    for (name, us) in &report {
        sum += us;
        println!("  {name:<36} {us:>7.2} µs");
    }
    println!(
        "  {:<36} {sum:>7.2} µs (the rest of (b)'s cpu/request is HTTP, actix and the load generator)",
        "sum"
    );
    Ok(())
}
