//! `silo-bench cluster`: the cluster's targets on loopback, with real `silo serve` processes
//! (the binary beside this one, or `--silo`).
//!
//! `--nodes` servers on a scratch PostgreSQL (Debian's `postgresql`, as `http --postgres`
//! makes one), one local store directory, one master key and one `[cluster] secret`;
//! `--tenants` tenants created through the servers in turn (each owns its share), each with an
//! owner's token.
//! 1. **Forwarding** (target 4): `GET /api/v1/w/{slug}/tasks?limit=1` sent to the tenant's
//!    server and to another (forwarded), interleaved, `--samples` each on one keep-alive
//!    connection per server: p50 and p99 of both and the difference.
//! 2. **Every tenant on every server** (target 1): one read of each tenant through each server.
//! 3. **Failover** (target 1): a writer per tenant creates tasks through the servers but the
//!    last (retrying on 503 and refused connections, as Retry-After says) for `--seconds`; the
//!    last server is killed with SIGKILL; the writers go on until every tenant of that server
//!    has answered a write again. Figures: when each of its tenants answered again after the
//!    kill (the target: all within 30 s), acknowledged writes missing afterwards and how long
//!    before the kill the oldest of them was acknowledged (the target: none older than the
//!    1 s continuous interval + 1 s), and `integrity_check` of every tenant taken over.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::measure::Latencies;
use crate::shared_schema::Postgres;

/// `silo-bench cluster` options.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Servers.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Tenants.
    #[arg(long, default_value_t = 300)]
    tenants: usize,
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
        .env("SILO_LOG", "error");
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
    for i in 1..=args.nodes {
        let mut command = Command::new(&binary);
        command.arg("--data-dir").arg(dir.join(format!("n{i}"))).stdout(Stdio::null());
        env(&mut command, &url, &store, &key, &format!("n{i}"), args.heartbeat);
        let (child, base) = crate::measure::spawn_serve(command).await?;
        servers.0.push(Some(child));
        bases.push(base);
    }

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
            .post(format!("{}/api/v1/tenants", bases[i % args.nodes]))
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
        "cluster: {} servers on one PostgreSQL and one store; {} tenants created through them in turn ({:.1} s)",
        args.nodes,
        args.tenants,
        started.elapsed().as_secs_f64()
    );
    let owners: HashMap<String, String> =
        tenancy.routes().await?.into_iter().map(|(slug, node, _)| (slug, node)).collect();
    let base_of = |node: &str| bases[node.trim_start_matches('n').parse::<usize>().unwrap_or(1) - 1].clone();

    // 1. Forwarding overhead.
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

    // 2. Every tenant on every server.
    let mut answered = 0;
    for (slug, token) in &spread {
        for base in &bases {
            let answer =
                client.get(format!("{base}/api/v1/w/{slug}/tasks?limit=1")).bearer_auth(token).send().await?;
            answered += usize::from(answer.status() == 200);
        }
    }
    println!("every tenant on every server: {answered} of {} reads answered 200", spread.len() * bases.len());

    // 3. Failover under writes.
    let victim = args.nodes;
    let victim_name = format!("n{victim}");
    let survivors: Arc<Vec<String>> = Arc::new(bases[..victim - 1].to_vec());
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let pause = Duration::from_millis(args.pause_ms);
    let writers: Vec<_> = spread
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
                        Ok(503) | Err(_) => {
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
    let victims: HashSet<&String> =
        owners.iter().filter(|(_, n)| **n == victim_name).map(|(s, _)| s).collect();
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
    for ((slug, acked, back_after, refused), (_, token)) in results.iter().zip(&spread) {
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
        "failover: {} of {} tenants on the killed server {victim_name}; SIGKILL after {} s of writes ({writes} acknowledged, {refusals} refusals retried); its tenants answered writes again after median {:.1} s, all within {:.1} s (target: 30 s; lease {} s); {lost} acknowledged writes missing ({lost_elsewhere} of other servers' tenants), the oldest acknowledged {:.2} s before the kill (target: none older than the 1 s interval + 1 s); integrity_check ok for {intact} of {}",
        victims.len(),
        args.tenants,
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
