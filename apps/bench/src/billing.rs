//! `silo-bench billing`: what billing costs.
//!
//! 1. **Metering on the request path**: three real HTTP servers over the same fleet — metering
//!    on, off, and off again — serve the warm tenant's API read (`GET
//!    /api/v1/w/{slug}/tasks?limit=20`, bearer token) one after the other in each round, each
//!    going first equally often; the figure is the median over rounds of on/off (target: within
//!    3 %), beside off-again/off, which measures nothing but the machine's noise. Then one
//!    `Metering::record` call is timed in a loop against a request's CPU time.
//! 2. **The billing run at scale**: `--tenants` control-plane rows (no files: the run reads
//!    only `control.db`) on the `business` plan since three months ago, each with a member,
//!    then `Invoices::run` for last month, timed (target: under 60 s for 100,000), and a
//!    second run, which must create nothing.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use silo_billing::{Billing, BillingSettings, Period};
use silo_core::db;

use crate::http::{Fixture, MakeRequest, load};
use crate::measure::tenancy;

/// `silo-bench billing` options.
#[derive(Debug, Args)]
pub struct BillingArgs {
    /// Tenants of the billing run.
    #[arg(long, default_value_t = 100_000)]
    tenants: usize,
    /// Concurrent connections of the metering comparison.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured seconds per round (after 2 s of warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds per setting (alternating; the machine's drift is larger than metering's cost,
    /// so several); 0 skips the comparison.
    #[arg(long, default_value_t = 8)]
    rounds: usize,
}

pub async fn run(dir: &Path, args: BillingArgs) -> anyhow::Result<()> {
    if args.rounds > 0 {
        metering(&dir.join("metering"), &args).await?;
    }
    billing_run(&dir.join("run"), args.tenants).await
}

async fn metering(dir: &Path, args: &BillingArgs) -> anyhow::Result<()> {
    let tenancy = tenancy(dir, 1024).await?;
    let (accounts, server_settings) = crate::measure::accounts_and_server(&tenancy)?;
    let fixture = Fixture::build(&accounts, 1, 20).await?;
    // Three servers: metering on, off, and off again — the two "off" servers compare a
    // setting with itself, which shows how far apart the machine's noise alone puts them.
    let mut servers = Vec::new();
    for (name, metering) in [("metering on", true), ("metering off", false), ("off again", false)] {
        let billing = Billing::new(
            accounts.clone(),
            Default::default(),
            BillingSettings { metering, ..Default::default() },
        );
        let (addr, handle) = crate::measure::serve_in_process(billing, server_settings.clone())?;
        servers.push((name, addr, handle));
    }
    let path = format!("/api/v1/w/{}/tasks?limit=20", fixture.warm_slug);
    let auth = format!("Authorization: Bearer {}\r\n", fixture.warm_token);
    let read: MakeRequest =
        Arc::new(move |_| format!("GET {path} HTTP/1.1\r\nHost: bench\r\n{auth}\r\n").into_bytes());
    let (mut errors, mut cpu) = (0, 0.0);
    let (mut sums, mut on_off, mut off_off) = ([0.0; 3], Vec::new(), Vec::new());
    for round in 0..args.rounds {
        // Each server goes first, second and third equally often.
        let mut rps = [0.0; 3];
        for k in 0..3 {
            let i = (round + k) % 3;
            let (name, addr, _) = &servers[i];
            let phase =
                load(name, *addr, read.clone(), args.connections, Duration::from_secs(args.seconds)).await?;
            println!("round {} {name:<13} {:>8.0} req/s  errors {}", round + 1, phase.rps, phase.errors);
            errors += phase.errors;
            cpu += phase.cpu_us_per_request;
            rps[i] = phase.rps;
        }
        for i in 0..3 {
            sums[i] += rps[i];
        }
        on_off.push(rps[0] / rps[1]);
        off_off.push(rps[2] / rps[1]);
    }
    let median = |ratios: &mut Vec<f64>| {
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    };
    let n = args.rounds as f64;
    println!(
        "warm tenant read: metering on {:.0} req/s, off {:.0}, off again {:.0}; median of the rounds' ratios: \
         on/off {:.3} ({:+.1} %; target within 3 %), off again/off {:.3} ({:+.1} %: the noise), {errors} errors",
        sums[0] / n,
        sums[1] / n,
        sums[2] / n,
        median(&mut on_off),
        100.0 * (median(&mut on_off) - 1.0),
        median(&mut off_off),
        100.0 * (median(&mut off_off) - 1.0),
    );
    // The meter's own cost, without the machine's drift: one call, timed in a loop (three
    // accounts, as a tenant with a few active users), against the CPU a request costs.
    let meter = Billing::new(accounts.clone(), Default::default(), Default::default());
    let tenant = tenancy.tenant(&fixture.warm_slug.parse()?).await?.id;
    let users = [
        "0190a1b2-0000-7000-8000-000000000001",
        "0190a1b2-0000-7000-8000-000000000002",
        "0190a1b2-0000-7000-8000-000000000003",
    ];
    let calls = 3_000_000;
    let started = Instant::now();
    for i in 0..calls {
        meter.metering().record(tenant, users[i % users.len()]);
    }
    let ns = started.elapsed().as_nanos() as f64 / calls as f64;
    let cpu_us = cpu / (3 * args.rounds) as f64;
    println!(
        "Metering::record: {ns:.0} ns a call; a request costs {cpu_us:.0} µs of CPU (server and load generator): {:.3} % of it",
        100.0 * ns / (cpu_us * 1000.0)
    );
    for (_, _, handle) in servers {
        handle.stop(true).await;
    }
    tenancy.shutdown().await;
    Ok(())
}

async fn billing_run(dir: &Path, tenants: usize) -> anyhow::Result<()> {
    let tenancy = tenancy(dir, 64).await?;
    let accounts = silo_accounts::Accounts::new(tenancy.clone(), Default::default());
    let billing = Billing::new(accounts.clone(), Default::default(), Default::default());
    let started = Instant::now();
    let writer = tenancy.control().writer();
    accounts.users().create("owner@example.com", "bench password, long enough", None, "bench").await?;
    let owner = accounts.users().by_email("owner@example.com").await?;
    // Rows only (the run never opens a tenant file), inserted in one statement each; the
    // triggers record each tenant's plan history as a provisioning would.
    let mut tx = writer.begin().await?;
    db::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?1),
              ids(i, h) AS (SELECT i, lower(hex(randomblob(16))) FROM n)
         INSERT INTO tenants (id, slug, name, status, region, plan, schema_version, created_at, updated_at)
         SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(h, 14, 3) || '-8' || substr(h, 18, 3)
                    || '-' || substr(h, 21, 12),
                printf('customer-%06d', i), printf('Customer %d GmbH', i), 'active', 'local', 'business', 1,
                strftime('%Y-%m-%dT%H:%M:%fZ', 'now', 'start of month', '-3 months'),
                strftime('%Y-%m-%dT%H:%M:%fZ', 'now', 'start of month', '-3 months')
         FROM ids",
    )
    .bind(tenants as i64)
    .execute(&mut *tx)
    .await?;
    db::query(
        "INSERT INTO memberships (user_id, tenant_id, role, created_at)
         SELECT ?1, id, 'owner', created_at FROM tenants",
    )
    .bind(owner.id.to_string())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    println!("{tenants} tenants on business with an owner each, inserted in {:.1?}", started.elapsed());

    let period = Period::of(silo_core::time::utc_now().as_str())?.previous();
    let started = Instant::now();
    let first = billing.invoices().run(period, "bench").await?;
    let first_took = started.elapsed();
    let started = Instant::now();
    let second = billing.invoices().run(period, "bench").await?;
    let second_took = started.elapsed();
    let numbers = first.numbers.map(|(a, b)| format!("{a}–{b}")).unwrap_or_default();
    println!(
        "billing run {period} over {tenants} tenants: {:.1} s (target < 60 s): {} created, {} finalised, numbers {numbers}, totals {:?}",
        first_took.as_secs_f64(),
        first.created,
        first.finalised,
        first.totals
    );
    println!(
        "second run: {:.1} s, {} created, {} already invoiced (idempotent)",
        second_took.as_secs_f64(),
        second.created,
        second.already_invoiced
    );
    anyhow::ensure!(
        second.created == 0 && first.finalised == tenants,
        "the run did not invoice each tenant once"
    );
    tenancy.shutdown().await;
    Ok(())
}
