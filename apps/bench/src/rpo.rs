//! `silo-bench rpo`: what a lost machine loses with continuous backup on (its recovery point).
//!
//! `--tenants` tenants, each with an owner's token, then the real `silo serve` (the binary
//! beside this one, or `--silo`) on its defaults but for a backup store outside its data
//! directory. One writer per tenant creates tasks through the API for `--seconds`; the server
//! is killed with SIGKILL mid-write and its whole data directory deleted. `silo recover
//! --from-store` (with a copy of the master key) rebuilds it; then every acknowledged write
//! is looked for. The figure: how long before the kill the oldest lost acknowledged write was
//! acknowledged (the target: nothing acknowledged more than `continuous_interval` + 1 s before
//! the kill is lost), how many were lost, how long recovery took, and `integrity_check`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use clap::Args;
use silo_core::TenantRef;

use crate::http::Fixture;
use crate::measure::{accounts_and_server, tenancy};

/// `silo-bench rpo` options.
#[derive(Debug, Args)]
pub struct RpoArgs {
    /// Tenants written to.
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// Seconds of writing before the kill.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Pause of each writer between its writes, ms.
    #[arg(long, default_value_t = 50)]
    pause_ms: u64,
    /// The `silo` binary (default: beside this one).
    #[arg(long)]
    silo: Option<PathBuf>,
}

fn silo(binary: &Path, data: &Path, store: &Path) -> Command {
    let mut command = Command::new(binary);
    command.arg("--data-dir").arg(data).env("SILO_BACKUP__LOCAL_DIR", store).env("SILO_LOG", "error");
    command
}

pub async fn run(dir: &Path, args: RpoArgs) -> anyhow::Result<()> {
    let binary = crate::measure::silo_binary(args.silo)?;
    let (data, store) = (dir.join("data"), dir.join("store"));
    // The fleet, its people and tokens, made in process before the server owns the directory.
    let spread = {
        let fleet = tenancy(&data, 0).await?;
        let (accounts, _) = accounts_and_server(&fleet)?;
        let fixture = Fixture::build(&accounts, args.tenants, 0).await?;
        fleet.shutdown().await;
        fixture.spread.as_ref().clone()
    };
    let mut command = silo(&binary, &data, &store);
    command.stdout(Stdio::null());
    let (mut server, base): (Child, String) = crate::measure::spawn_serve(command).await?;
    let key = dir.join("master.key.copy");
    std::fs::copy(data.join("master.key"), &key).context("the server's master key")?;

    let client = reqwest::Client::new();
    let pause = Duration::from_millis(args.pause_ms);
    let writers: Vec<_> = spread
        .iter()
        .cloned()
        .map(|(slug, token)| {
            let (client, base) = (client.clone(), base.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0.. {
                    let title = format!("{slug} write {n}");
                    let body = serde_json::json!({ "project_id": 1, "title": title });
                    let sent = client
                        .post(format!("{base}/api/v1/w/{slug}/tasks"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await;
                    match sent {
                        Ok(response) if response.status() == 201 => acked.push((title, SystemTime::now())),
                        Ok(response) => anyhow::bail!("{slug}: {}", response.status()),
                        Err(_) => break, // the server is gone
                    }
                    tokio::time::sleep(pause).await;
                }
                Ok((slug, acked))
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    server.kill()?; // SIGKILL
    let killed = SystemTime::now();
    server.wait()?;
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.push(writer.await??);
    }
    std::fs::remove_dir_all(&data)?;

    let recovering = Instant::now();
    let out = silo(&binary, &data, &store)
        .args(["recover", "--from-store", "--master-key-file"])
        .arg(&key)
        .output()?;
    let recovery = recovering.elapsed();
    anyhow::ensure!(out.status.success(), "silo recover failed: {}", String::from_utf8_lossy(&out.stderr));

    let fleet = tenancy(&data, 0).await?;
    let (mut writes, mut lost, mut oldest_lost, mut intact) = (0, 0, Duration::ZERO, 0);
    for (slug, acked) in &acknowledged {
        let tenant: TenantRef = slug.parse()?;
        let check = fleet.queries().read_only(&tenant, "PRAGMA integrity_check").await?;
        intact += usize::from(check.rows[0][0] == "ok");
        let rows = fleet.queries().read_only(&tenant, "SELECT title FROM tasks").await?;
        let titles: std::collections::HashSet<&str> =
            rows.rows.iter().filter_map(|row| row[0].as_str()).collect();
        for (title, at) in acked {
            writes += 1;
            if !titles.contains(title.as_str()) {
                lost += 1;
                oldest_lost = oldest_lost.max(killed.duration_since(*at).unwrap_or_default());
            }
        }
    }
    fleet.shutdown().await;
    println!(
        "rpo: {} tenants, {writes} writes acknowledged in {} s; SIGKILL, data directory deleted, `silo recover --from-store` in {:.1} s: {lost} acknowledged writes lost, the oldest acknowledged {:.2} s before the kill (target: none older than the 1 s interval + 1 s); integrity_check ok for {intact} of {}",
        args.tenants,
        args.seconds,
        recovery.as_secs_f64(),
        oldest_lost.as_secs_f64(),
        acknowledged.len()
    );
    Ok(())
}
