//! `silo-bench cluster`: the cluster's targets on loopback, with real `silo serve` processes
//! (the binary beside this one, or `--silo`).
//!
//! `--nodes` servers on a scratch PostgreSQL (Debian's `postgresql`, as `http --postgres`
//! makes one), one local store directory, one master key and one `[cluster] secret`.
//! `--tenants` tenants are created through the first server while it runs alone (so it owns
//! them all), each with an owner's token; then the others start.
//! 1. **Rebalance** (target 3): `silo cluster rebalance` on the first server moves its tenants
//!    beyond its fair share to the others while clients read every tenant through every
//!    server, retrying on 503 as Retry-After says: requests that failed (target: none).
//! 2. **Forwarding** (target 4): `GET /api/v1/w/{slug}/tasks?limit=1` sent to the tenant's
//!    server and to another (forwarded), interleaved, `--samples` each on one keep-alive
//!    connection per server: p50 and p99 of both and the difference.
//! 3. **Every tenant on every server** (target 1): one read of each tenant through each server.
//! 4. **A big tenant's move** (target 3): a tenant of the first server grown to `--big-mb` MB
//!    (tasks with 20 kB of random text, through the API) is moved to the second
//!    (`POST /api/v1/tenants/{slug}/move`) while a client reads it every 10 ms through the
//!    first, retrying on 503: the longest time without an answer (target: ≤ 1 s).
//! 5. **Failover** (target 1): a writer on each of `--writers` tenants creates tasks through
//!    the servers but the last (retrying on 503 and refused connections, as Retry-After says)
//!    for `--seconds`; the last server is killed with SIGKILL; the writers go on until every
//!    written tenant of that server has answered a write again. Figures: when each answered
//!    again after the kill (the target: all within 30 s), acknowledged writes missing
//!    afterwards and how long before the kill the oldest of them was acknowledged (the target:
//!    none older than the 1 s continuous interval + 1 s), and `integrity_check` of every
//!    written tenant taken over.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::StreamExt;

use crate::measure::Latencies;
use crate::shared_schema::Postgres;

/// `silo-bench cluster` options.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Servers.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Tenants.
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    /// Tenants written to during the failover.
    #[arg(long, default_value_t = 300)]
    writers: usize,
    /// Size of the tenant moved whole, MB.
    #[arg(long, default_value_t = 100)]
    big_mb: usize,
    /// Requests per path (direct, forwarded) for the forwarding figure.
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    /// Seconds of writing before the kill.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Pause of each writer between its writes, ms.
    #[arg(long, default_value_t = 500)]
    pause_ms: u64,
    /// `[cluster] heartbeat_seconds` (the lease is three).
    #[arg(long, default_value_t = 5)]
    heartbeat: u64,
    /// The `silo` binary (default: beside this one).
    #[arg(long)]
    silo: Option<PathBuf>,
}

const SECRET: &str = "silo-bench-cluster-secret";

/// The servers, killed when dropped.
struct Servers(Vec<Option<Child>>);

impl Drop for Servers {
    fn drop(&mut self) {
        for child in self.0.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The environment every server and CLI command of the cluster runs with.
fn env(command: &mut Command, url: &str, store: &Path, key: &str, node: &str, heartbeat: u64) {
    command
        .env("SILO_CONTROL__URL", url)
        .env("SILO_CLUSTER__NODE", node)
        .env("SILO_CLUSTER__SECRET", SECRET)
        .env("SILO_CLUSTER__HEARTBEAT_SECONDS", heartbeat.to_string())
        .env("SILO_BACKUP__LOCAL_DIR", store)
        .env("SILO_MASTER_KEY", key)
        // `SILO_BENCH_SERVER_LOG=info` (say) to see what the servers did, in `<dir>/nN.log`.
        .env("SILO_LOG", std::env::var("SILO_BENCH_SERVER_LOG").unwrap_or_else(|_| "error".to_owned()));
}

pub async fn run(dir: &Path, args: ClusterArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.nodes >= 2, "a cluster needs two servers at least");
    let binary = crate::measure::silo_binary(args.silo.clone())?;
    let postgres = Postgres::start()?;
    let admin = sqlx::PgPool::connect(&postgres.url()).await?;
    sqlx::query("CREATE DATABASE silo").execute(&admin).await?;
    admin.close().await;
    let url = postgres.url().replace("/postgres", "/silo");
    let store = dir.join("store");
    let key = silo_core::tokens::random_hex(32);

    let mut servers = Servers(Vec::new());
    let mut bases = Vec::new();
    let start = |i: usize| {
        let mut command = Command::new(&binary);
        let log = std::fs::File::create(dir.join(format!("n{i}.log")))?;
        command.arg("--data-dir").arg(dir.join(format!("n{i}"))).stdout(log.try_clone()?).stderr(log);
        env(&mut command, &url, &store, &key, &format!("n{i}"), args.heartbeat);
        Ok::<_, anyhow::Error>(crate::measure::spawn_serve(command))
    };
    let (child, base) = start(1)?.await?;
    servers.0.push(Some(child));
    bases.push(base);

    // People and tokens in this process, on the shared control plane (no tenant file needed).
    let mut settings = silo_web::settings::Settings::load(None)?;
    settings.fleet.data_dir = dir.join("bench-process");
    settings.fleet.control.url = Some(silo_core::Secret::new(url.clone()));
    let tenancy = silo_web::schema::open(settings.fleet.clone()).await?;
    let accounts = silo_accounts::Accounts::new(tenancy.clone(), settings.accounts());
    accounts.users().create("ops@bench.example", "bench password 1", None, "bench").await?;
    accounts.users().grant_operator("ops@bench.example", "bench").await?;
    let operator =
        accounts.tokens().issue("ops@bench.example", silo_accounts::TokenScope::Operator, "bench").await?;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut spread: Vec<(String, String)> = Vec::new();
    for i in 0..args.tenants {
        // One owner per 50 tenants (an account keeps 50 live tokens).
        let owner = format!("owner{}@bench.example", i / 50);
        if i % 50 == 0 {
            accounts.users().create(&owner, "bench password 1", None, "bench").await?;
        }
        let slug = format!("cluster-{i}");
        let created = client
            .post(format!("{}/api/v1/tenants", bases[0]))
            .bearer_auth(&operator)
            .json(&serde_json::json!({ "slug": slug, "owner_email": owner }))
            .send()
            .await?;
        anyhow::ensure!(created.status() == 201, "creating {slug}: {}", created.text().await?);
        let scope = silo_accounts::TokenScope::Personal(slug.parse()?);
        let token = accounts.tokens().issue(&owner, scope, "bench").await?;
        let project = client
            .post(format!("{}/api/v1/w/{slug}/projects", bases[0]))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "name": "bench" }))
            .send()
            .await?;
        anyhow::ensure!(project.status() == 201, "a project in {slug}: {}", project.text().await?);
        spread.push((slug, token));
    }
    println!(
        "cluster: {} servers on one PostgreSQL and one store; {} tenants created through n1 alone ({:.1} s)",
        args.nodes,
        args.tenants,
        started.elapsed().as_secs_f64()
    );
    for i in 2..=args.nodes {
        let (child, base) = start(i)?.await?;
        servers.0.push(Some(child));
        bases.push(base);
    }

    // 1. Rebalance under reads.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let (client, bases, stop) = (client.clone(), bases.clone(), stop.clone());
            let mine: Vec<(String, String)> = spread.iter().skip(r).step_by(4).cloned().collect();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (slug, token) = &mine[n % mine.len()];
                    let url = format!("{}/api/v1/w/{slug}/tasks?limit=1", bases[n % bases.len()]);
                    tally.add(get_retrying(&client, &url, token, None).await);
                }
                tally
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rebalancing = Instant::now();
    let mut command = Command::new(&binary);
    command.arg("--data-dir").arg(dir.join("n1")).args(["cluster", "rebalance", "--json"]);
    env(&mut command, &url, &store, &key, "n1", args.heartbeat);
    let out = command.output()?;
    anyhow::ensure!(out.status.success(), "rebalance: {}", String::from_utf8_lossy(&out.stderr));
    let rebalanced: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let rebalance_took = rebalancing.elapsed();
    // Until the servers that received tenants have restored them (at their next heartbeat).
    tokio::time::sleep(Duration::from_secs(args.heartbeat + 1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut tally = Tally::default();
    for reader in readers {
        tally.merge(reader.await?);
    }
    let moved = rebalanced["moved"].as_array().map_or(0, Vec::len);
    let unavailable: Vec<u64> = rebalanced["moved"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m[2].as_f64())
        .map(|ms| (ms * 1e6) as u64)
        .collect();
    let unavailable = Latencies::new(unavailable);
    println!(
        "rebalance: {moved} tenants moved from n1 in {:.1} s ({} failed), each unavailable on n1 p50 {:.1} ms p99 {:.1} ms; \
         meanwhile {} reads through every server, {} answered 503 and were retried, {} failed (target: 0)",
        rebalance_took.as_secs_f64(),
        rebalanced["failed"].as_array().map_or(0, Vec::len),
        unavailable.percentile_us(50.0) / 1000.0,
        unavailable.percentile_us(99.0) / 1000.0,
        tally.requests,
        tally.retried,
        tally.failed
    );
    if let Some(first) = &tally.first_failure {
        println!("rebalance: the first failed read: {first}");
    }
    let owners: HashMap<String, String> =
        tenancy.routes().await?.into_iter().map(|(slug, node, _)| (slug, node)).collect();
    let base_of = |node: &str| bases[node.trim_start_matches('n').parse::<usize>().unwrap_or(1) - 1].clone();

    // 2. Forwarding overhead.
    let (mut direct, mut forwarded) = (Vec::new(), Vec::new());
    for n in 0..args.samples {
        let (slug, token) = &spread[n % spread.len()];
        let own = base_of(&owners[slug]);
        let other = bases.iter().find(|b| **b != own).expect("two servers at least").clone();
        for (base, into) in [(&own, &mut direct), (&other, &mut forwarded)] {
            let sent = Instant::now();
            let answer =
                client.get(format!("{base}/api/v1/w/{slug}/tasks?limit=1")).bearer_auth(token).send().await?;
            anyhow::ensure!(answer.status() == 200, "{slug} through {base}: {}", answer.status());
            answer.bytes().await?;
            into.push(sent.elapsed().as_nanos() as u64);
        }
    }
    let (direct, forwarded) = (Latencies::new(direct), Latencies::new(forwarded));
    println!(
        "forwarding: direct p50 {:.0} µs p99 {:.0} µs; forwarded p50 {:.0} µs p99 {:.0} µs; overhead p50 {:.0} µs (target: ≤ 1000 µs)",
        direct.percentile_us(50.0),
        direct.percentile_us(99.0),
        forwarded.percentile_us(50.0),
        forwarded.percentile_us(99.0),
        forwarded.percentile_us(50.0) - direct.percentile_us(50.0)
    );

    // 3. Every tenant on every server.
    let mut answered = 0;
    for (slug, token) in &spread {
        for base in &bases {
            let answer =
                client.get(format!("{base}/api/v1/w/{slug}/tasks?limit=1")).bearer_auth(token).send().await?;
            answered += usize::from(answer.status() == 200);
        }
    }
    println!("every tenant on every server: {answered} of {} reads answered 200", spread.len() * bases.len());

    // 4. A big tenant's move.
    let (big, big_token) =
        spread.iter().find(|(slug, _)| owners[slug] == "n1").cloned().context("n1 kept no tenant")?;
    let filling = Instant::now();
    let written = futures::stream::iter(0..args.big_mb * 1_000_000 / 20_000)
        .map(|n| {
            let (client, url, token) =
                (client.clone(), format!("{}/api/v1/w/{big}/tasks", bases[0]), big_token.clone());
            // Random text: a tenant's data compresses about as much in the store.
            let text = silo_core::tokens::random_hex(10_000);
            let body = serde_json::json!({ "project_id": 1, "title": format!("big {n}"), "body": text });
            async move {
                let answer = client.post(url).bearer_auth(token).json(&body).send().await?;
                anyhow::ensure!(answer.status() == 201, "growing the big tenant: {}", answer.text().await?);
                Ok(())
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<anyhow::Result<()>>>()
        .await;
    written.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    println!("big tenant: {big} grown to {} MB in {:.1} s", args.big_mb, filling.elapsed().as_secs_f64());
    // Its commits reach the store (the continuous interval), then the move.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let probing = Arc::new(AtomicBool::new(false));
    let probe = tokio::spawn({
        let (client, probing, token) = (client.clone(), probing.clone(), big_token.clone());
        let url = format!("{}/api/v1/w/{big}/tasks?limit=1", bases[0]);
        async move {
            let (mut answers, mut tally) = (Vec::new(), Tally::default());
            while !probing.load(Ordering::Relaxed) {
                let outcome = get_retrying(&client, &url, &token, Some(Duration::from_millis(10))).await;
                if outcome.is_ok() {
                    answers.push(Instant::now());
                }
                tally.add(outcome);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (answers, tally)
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let moving = Instant::now();
    let answer = client
        .post(format!("{}/api/v1/tenants/{big}/move", bases[1]))
        .bearer_auth(&operator)
        .json(&serde_json::json!({ "node": "n2" }))
        .send()
        .await?;
    let status = answer.status();
    let move_body: serde_json::Value = answer.json().await?;
    anyhow::ensure!(status == 200, "moving {big}: {move_body}");
    let move_took = moving.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    probing.store(true, Ordering::Relaxed);
    let (answers, big_tally) = probe.await?;
    let (gap, gap_at) = answers
        .windows(2)
        .map(|w| (w[1] - w[0], w[0].saturating_duration_since(moving)))
        .max()
        .unwrap_or_default();
    println!(
        "big tenant: moved n1 → n2 in {:.2} s (its backup first, while it served); the switch held it {:.0} ms on n1; \
         a reader every 10 ms through n1 waited at most {:.0} ms for an answer, {:.0} ms after the move began (target: ≤ 1000 ms), {} retries on 503 (every 10 ms), {} reads failed",
        move_took.as_secs_f64(),
        move_body["unavailable_ms"].as_f64().unwrap_or_default(),
        gap.as_secs_f64() * 1000.0,
        gap_at.as_secs_f64() * 1000.0,
        big_tally.retried,
        big_tally.failed
    );

    // 5. Failover under writes.
    let victim = args.nodes;
    let victim_name = format!("n{victim}");
    let survivors: Arc<Vec<String>> = Arc::new(bases[..victim - 1].to_vec());
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let pause = Duration::from_millis(args.pause_ms);
    let written: Vec<(String, String)> = spread
        .iter()
        .step_by((spread.len() / args.writers.max(1)).max(1))
        .take(args.writers)
        .cloned()
        .collect();
    let writers: Vec<_> = written
        .iter()
        .enumerate()
        .map(|(i, (slug, token))| {
            let (client, survivors, stop, killed_at) =
                (client.clone(), survivors.clone(), stop.clone(), killed_at.clone());
            let (slug, token) = (slug.clone(), token.clone());
            tokio::spawn(async move {
                let base = survivors[i % survivors.len()].clone();
                let (mut acked, mut back_after, mut refused) = (Vec::new(), None, 0u64);
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let title = format!("{slug} write {n}");
                    let body = serde_json::json!({ "project_id": 1, "title": title });
                    let sent = client
                        .post(format!("{base}/api/v1/w/{slug}/tasks"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await;
                    match sent.map(|r| r.status().as_u16()) {
                        Ok(201) => {
                            acked.push((title, Instant::now()));
                            let killed = *killed_at.lock().expect("not poisoned");
                            if back_after.is_none()
                                && let Some(killed) = killed
                            {
                                back_after = Some(killed.elapsed());
                            }
                            tokio::time::sleep(pause).await;
                        }
                        // 408: the server did not read the request in time, so did not run it.
                        Ok(503 | 408) | Err(_) => {
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Ok(other) => anyhow::bail!("{slug}: write answered {other}"),
                    }
                }
                Ok((slug, acked, back_after, refused))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let mut child = servers.0[victim - 1].take().expect("the victim runs");
    let sigkill = child.kill();
    let killed = Instant::now();
    *killed_at.lock().expect("not poisoned") = Some(killed);
    child.wait()?;
    sigkill.context("SIGKILL")?;
    let owners: HashMap<String, String> =
        tenancy.routes().await?.into_iter().map(|(slug, node, _)| (slug, node)).collect();
    let victims: HashSet<&String> =
        written.iter().map(|(s, _)| s).filter(|s| owners[*s] == victim_name).collect();
    // Until every tenant of the killed server has acknowledged a write again (or 90 s).
    let deadline = killed + Duration::from_secs(90);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let routes = tenancy.routes().await?;
        let moved = routes.iter().filter(|(s, n, _)| victims.contains(s) && *n != victim_name).count();
        if moved == victims.len() || Instant::now() > deadline {
            // A little longer, so each writer has one acknowledged write after the takeover.
            tokio::time::sleep(Duration::from_secs(3)).await;
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for writer in writers {
        results.push(writer.await??);
    }

    // What survived: every acknowledged write looked for, through a survivor.
    let (mut writes, mut lost, mut oldest_lost, mut lost_elsewhere) =
        (0usize, 0usize, Duration::ZERO, 0usize);
    let mut back = Vec::new();
    let mut refusals = 0;
    for ((slug, acked, back_after, refused), (_, token)) in results.iter().zip(&written) {
        refusals += refused;
        let mut titles = HashSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = match &cursor {
                Some(c) => format!("{}/api/v1/w/{slug}/tasks?limit=100&cursor={c}", survivors[0]),
                None => format!("{}/api/v1/w/{slug}/tasks?limit=100", survivors[0]),
            };
            let page: serde_json::Value = client.get(page).bearer_auth(token).send().await?.json().await?;
            for item in page["items"].as_array().into_iter().flatten() {
                titles.insert(item["title"].as_str().unwrap_or_default().to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        for (title, at) in acked {
            writes += 1;
            if !titles.contains(title) {
                lost += 1;
                if victims.contains(slug) {
                    oldest_lost = oldest_lost.max(killed.saturating_duration_since(*at));
                } else {
                    lost_elsewhere += 1;
                }
            }
        }
        if victims.contains(slug) {
            back.push(back_after.unwrap_or(Duration::MAX));
        }
    }
    back.sort();
    let all_back = back.last().copied().unwrap_or_default();
    let median_back = back.get(back.len() / 2).copied().unwrap_or_default();

    // integrity_check of every tenant taken over, on its new server (`silo tenant sql`).
    let routes: HashMap<String, String> =
        tenancy.routes().await?.into_iter().map(|(slug, node, _)| (slug, node)).collect();
    let mut intact = 0;
    for slug in &victims {
        let node = &routes[*slug];
        let mut command = Command::new(&binary);
        command.arg("--data-dir").arg(dir.join(node)).args(["tenant", "sql", slug, "PRAGMA integrity_check"]);
        env(&mut command, &url, &store, &key, node, args.heartbeat);
        let out = command.output()?;
        intact += usize::from(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"));
    }
    println!(
        "failover: {} of {} written tenants on the killed server {victim_name}; SIGKILL after {} s of writes ({writes} acknowledged, {refusals} refusals retried); its tenants answered writes again after median {:.1} s, all within {:.1} s (target: 30 s; lease {} s); {lost} acknowledged writes missing ({lost_elsewhere} of other servers' tenants), the oldest acknowledged {:.2} s before the kill (target: none older than the 1 s interval + 1 s); integrity_check ok for {intact} of {}",
        victims.len(),
        written.len(),
        args.seconds,
        median_back.as_secs_f64(),
        all_back.as_secs_f64(),
        args.heartbeat * 3,
        oldest_lost.as_secs_f64(),
        victims.len()
    );
    tenancy.shutdown().await;
    drop(servers);
    Ok(())
}

/// Reads answered, retried and failed.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    retried: u64,
    failed: u64,
    first_failure: Option<String>,
}

impl Tally {
    fn add(&mut self, outcome: Result<u64, String>) {
        self.requests += 1;
        match outcome {
            Ok(retries) => self.retried += retries,
            Err(why) => {
                self.failed += 1;
                self.first_failure.get_or_insert(why);
            }
        }
    }

    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.retried += other.retried;
        self.failed += other.failed;
        if self.first_failure.is_none() {
            self.first_failure = other.first_failure;
        }
    }
}

/// A GET as a client that retries on 503 (at most 300 times) as Retry-After says, or after
/// `every` when given (to see how long the server refuses): how many retries it took, or why
/// it failed.
async fn get_retrying(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    every: Option<Duration>,
) -> Result<u64, String> {
    for retries in 0..=300 {
        let answer = client.get(url).bearer_auth(token).send().await.map_err(|e| e.to_string())?;
        match answer.status().as_u16() {
            200 => {
                let _ = answer.bytes().await;
                return Ok(retries);
            }
            503 => {
                let wait = answer
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .unwrap_or(1);
                tokio::time::sleep(every.unwrap_or(Duration::from_secs(wait))).await;
            }
            other => return Err(format!("{url}: {other} {}", answer.text().await.unwrap_or_default())),
        }
    }
    Err(format!("{url}: still 503 after 300 retries"))
}
