//! `silo migrate`: bring tenant files to the latest schema.

use silo_backups::BackupsExt;
use std::process::ExitCode;

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use silo_backups::BackupKind;
use silo_core::TenantRef;
use silo_tenancy::Tenancy;
use silo_workspace::migrations as tenant_migrations;

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
    /// Skip the pre-migration backup of each tenant that is behind (faster; no rollback).
    #[arg(long)]
    no_backup: bool,
    /// Instead of migrating: restore this tenant's newest pre-migration backup in place.
    #[arg(long, value_name = "SLUG", conflicts_with_all = ["tenant", "no_backup"])]
    rollback: Option<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

impl MigrateArgs {
    /// Runs the fleet migration; exit code 1 when any tenant failed.
    pub async fn run(self, tenancy: &Tenancy) -> anyhow::Result<ExitCode> {
        if let Some(slug) = &self.rollback {
            return rollback(tenancy, slug, self.json).await;
        }
        let only = self.tenant.as_deref().map(str::parse::<TenantRef>).transpose()?;
        let targets = tenancy.fleet().targets(only.as_ref()).await?;
        let concurrency = self
            .concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let bar = ProgressBar::with_draw_target(Some(targets.len() as u64), ProgressDrawTarget::stderr());
        if self.json || !crate::output::stderr_is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} tenants {per_sec} eta {eta} {msg}")
                .expect("valid template"),
        );
        let summary = tenancy
            .fleet()
            .migrate(targets, tenant_migrations(), concurrency, !self.no_backup, &|m| {
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
            crate::say!(
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
                crate::say!("{}", table(&["FAILED", "ERROR"], &rows));
            }
        }
        Ok(if summary.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
    }
}

/// `silo migrate --rollback SLUG`: the newest pre-migration backup, restored in place.
async fn rollback(tenancy: &Tenancy, slug: &str, json: bool) -> anyhow::Result<ExitCode> {
    let tenant = tenancy.tenant(&slug.parse()?).await?;
    let backup = tenancy
        .backups()
        .of_tenant(tenant.id)
        .await?
        .into_iter()
        .find(|b| b.kind == BackupKind::PreMigration)
        .ok_or_else(|| anyhow::anyhow!("tenant `{}` has no pre-migration backup", tenant.slug))?;
    let restored =
        tenancy.backups().restore(&TenantRef::Id(tenant.id), Some(&backup.id), None, &super::actor()).await?;
    if json {
        print_json(&restored)?;
    } else {
        crate::say!(
            "rolled `{}` back to backup {} of {} (schema version {}); unavailable {:.1} ms",
            tenant.slug,
            backup.id,
            backup.created_at,
            backup.schema_version,
            restored.unavailable.as_secs_f64() * 1000.0
        );
        let latest = silo_tenancy::schema::latest_version(tenant_migrations());
        if backup.schema_version < latest {
            crate::say!(
                "note: this binary migrates files to schema {latest} when it opens them; run the previous release until the migration is fixed"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
