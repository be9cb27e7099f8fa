//! `silo migrate`: bring tenant files to the latest schema.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use silo_tenancy::schema::tenant_migrations;
use silo_tenancy::{Tenancy, TenantRef};

use crate::output::{print_json, table};

/// `silo migrate` options.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Migrate only this tenant (slug or UUID).
    #[arg(long, value_name = "SLUG")]
    tenant: Option<String>,
    /// Tenants migrated at once (default: the number of cores).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

impl MigrateArgs {
    /// Runs the fleet migration; exit code 1 when any tenant failed.
    pub async fn run(self, tenancy: &Tenancy) -> anyhow::Result<ExitCode> {
        let only = self.tenant.as_deref().map(str::parse::<TenantRef>).transpose()?;
        let targets = tenancy.fleet_targets(only.as_ref()).await?;
        let concurrency = self
            .concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let bar = ProgressBar::with_draw_target(Some(targets.len() as u64), ProgressDrawTarget::stderr());
        if self.json || !std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} tenants {per_sec} eta {eta} {msg}")
                .expect("valid template"),
        );
        let summary = tenancy
            .migrate_tenants(targets, tenant_migrations(), concurrency, &|m| {
                if let Err(e) = &m.outcome {
                    bar.println(format!("failed: {} — {e}", m.slug));
                }
                bar.inc(1);
            })
            .await?;
        bar.finish_and_clear();
        if self.json {
            print_json(&summary)?;
        } else {
            println!(
                "{} tenants: {} migrated, {} already current, {} failed (target schema {}, {} ms)",
                summary.total,
                summary.migrated,
                summary.already_current,
                summary.failed,
                summary.target_version,
                summary.elapsed_ms
            );
            if !summary.failures.is_empty() {
                let rows: Vec<Vec<String>> =
                    summary.failures.iter().map(|f| vec![f.slug.clone(), f.error.clone()]).collect();
                println!("{}", table(&["FAILED", "ERROR"], &rows));
            }
        }
        Ok(if summary.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
    }
}
