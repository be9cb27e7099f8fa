//! `silo-bench admin`: the admin console's tenant list over a large control plane.
//!
//! Inserts `--tenants` control-plane rows (no files: the list never opens tenants), then times
//! the queries behind `/admin` — first page, a deep page, search by part of the slug or name
//! (a scan of the tenants table), status and plan filters, each sort — and the whole page over
//! HTTP.

use std::path::Path;
use std::time::Instant;

use silo_core::{TenantId, TenantSlug};
use silo_tenancy::control::NewTenant;
use silo_tenancy::{TenantQuery, TenantSort, TenantStatus};

use crate::measure::{Latencies, tenancy};

pub async fn run(dir: &Path, tenants: usize) -> anyhow::Result<()> {
    let tenancy = tenancy(dir, 64).await?;
    let started = Instant::now();
    let plans = ["free", "pro", "enterprise"];
    for i in 0..tenants {
        let new = NewTenant {
            id: TenantId::new(),
            slug: TenantSlug::parse(&format!("customer-{i:06}"))?,
            name: format!("Customer {i} GmbH"),
            region: "local".into(),
            plan: plans[i % plans.len()].into(),
            schema_version: 1,
        };
        tenancy.control().insert_tenant(&new, None, "bench").await?;
    }
    println!("inserted {tenants} tenant rows in {:.1?}", started.elapsed());
    let queries: Vec<(&str, TenantQuery)> = vec![
        ("first page, by slug", TenantQuery { limit: 50, ..Default::default() }),
        ("page 1000, by slug", TenantQuery { limit: 50, offset: 50 * 999, ..Default::default() }),
        (
            "search \"customer-0999\"",
            TenantQuery { search: Some("customer-0999".into()), limit: 50, ..Default::default() },
        ),
        (
            "search \"omer 4242 g\" (inside)",
            TenantQuery { search: Some("omer 4242 g".into()), limit: 50, ..Default::default() },
        ),
        (
            "status suspended (none)",
            TenantQuery { status: Some(TenantStatus::Suspended), limit: 50, ..Default::default() },
        ),
        (
            "plan pro, by name",
            TenantQuery { plan: Some("pro".into()), sort: TenantSort::Name, limit: 50, ..Default::default() },
        ),
        ("newest first", TenantQuery { sort: TenantSort::Newest, limit: 50, ..Default::default() }),
    ];
    println!("{:<32} {:>10} {:>10} {:>8}", "query (with the total count)", "p50 ms", "p99 ms", "rows");
    for (name, query) in queries {
        let mut samples = Vec::new();
        let mut rows = 0;
        for _ in 0..30 {
            let started = Instant::now();
            let (found, _total) = tenancy.control().search(&query).await?;
            samples.push(started.elapsed().as_nanos() as u64);
            rows = found.len();
        }
        let latencies = Latencies::new(samples);
        println!(
            "{name:<32} {:>10.2} {:>10.2} {rows:>8}",
            latencies.percentile_us(50.0) / 1000.0,
            latencies.percentile_us(99.0) / 1000.0
        );
    }
    tenancy.shutdown().await;
    Ok(())
}
