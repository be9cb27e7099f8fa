//! `silo backup create|list|verify|prune`, `silo restore` and `silo export`.
//!
//! Backups, verifications and exports read tenant files with `VACUUM INTO` and are safe
//! while `silo serve` runs. Restoring in place replaces a file under a lease, and leases are
//! per process: like purges, in-place restores refuse to run beside a server (the admin
//! console restores through the server itself).

use silo_backups::BackupsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use silo_backups::{Backup, BackupKind};
use silo_core::TenantRef;
use silo_tenancy::Tenancy;

use super::actor;
use crate::output::{self, print_json, table};

/// Backup commands.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back up one tenant, or every live tenant with --all.
    Create {
        /// Slug or UUID.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        tenant: Option<String>,
        /// Every active and suspended tenant.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a tenant's backups, newest first.
    List {
        /// Slug or UUID.
        tenant: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup to a temporary file and check it (checksum, decryption, integrity).
    Verify {
        /// Slug or UUID.
        tenant: String,
        /// Backup id (default: the newest).
        #[arg(long, value_name = "ID")]
        backup: Option<String>,
    },
    /// Apply the retention policy and remove orphan objects.
    Prune,
}

/// `silo restore` options.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Slug or UUID of the tenant whose backup is restored.
    tenant: String,
    /// Backup id (default: the newest).
    #[arg(long, value_name = "ID", conflicts_with = "at")]
    backup: Option<String>,
    /// Restore to this moment (UTC, e.g. 2026-12-05T10:42:13Z): the last commit at or before
    /// it that reached the store.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Restore into a new tenant with this slug instead of in place.
    #[arg(long = "as", value_name = "NEW_SLUG")]
    as_slug: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `silo recover` options.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// Rebuild from the backup store (the `[backup]` store of the configuration): the newest
    /// copy of the control plane, then every live tenant to its last commit there.
    #[arg(long, required = true)]
    from_store: bool,
    /// The installation's master key file, copied to the data directory's key path first
    /// (default: the key already there, or `SILO_MASTER_KEY`).
    #[arg(long, value_name = "FILE")]
    master_key_file: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `silo export` options.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Slug or UUID.
    tenant: String,
    /// The zip to write.
    #[arg(long, value_name = "FILE.zip")]
    out: PathBuf,
}

impl BackupCommand {
    /// Runs the command; exit code 1 when any tenant's backup failed.
    pub async fn run(self, tenancy: &Tenancy) -> anyhow::Result<ExitCode> {
        match self {
            Self::Create { tenant: Some(tenant), json, .. } => {
                let backup = tenancy.backups().create(&tenant.parse()?, BackupKind::Manual, &actor()).await?;
                if json {
                    print_json(&backup)?;
                } else {
                    crate::say!(
                        "backed up {tenant}: backup {} ({} stored, {} database)",
                        backup.id,
                        output::bytes(backup.size as u64),
                        output::bytes(backup.db_size as u64)
                    );
                }
            }
            Self::Create { json, .. } => {
                let tenants = tenancy.backups().live_tenants().await?;
                let run = tenancy.backups().create_all(tenants, BackupKind::Manual, &actor()).await;
                if json {
                    print_json(&run)?;
                } else {
                    crate::say!(
                        "{} tenants backed up, {} failed, {} stored in {} ms",
                        run.backed_up,
                        run.failed.len(),
                        output::bytes(run.bytes),
                        run.elapsed_ms
                    );
                    if !run.failed.is_empty() {
                        let rows: Vec<Vec<String>> = run
                            .failed
                            .iter()
                            .map(|(slug, error)| vec![slug.clone(), error.clone()])
                            .collect();
                        crate::say!("{}", table(&["FAILED", "ERROR"], &rows));
                    }
                }
                if !run.failed.is_empty() {
                    return Ok(ExitCode::FAILURE);
                }
            }
            Self::List { tenant, json } => {
                let tenant = tenancy.tenant(&tenant.parse()?).await?;
                let backups = tenancy.backups().of_tenant(tenant.id).await?;
                if json {
                    print_json(&backups)?;
                } else {
                    print_backups(&backups);
                }
            }
            Self::Verify { tenant, backup } => {
                let verified = tenancy.backups().verify(&tenant.parse()?, backup.as_deref()).await?;
                crate::say!(
                    "backup {} of {tenant} is good: checksum, decryption and integrity check pass ({} restored)",
                    verified.backup.id,
                    output::bytes(verified.restored_size)
                );
            }
            Self::Prune => {
                let report = tenancy.backups().prune().await?;
                crate::say!(
                    "pruned {} expired backups and {} orphan objects",
                    report.expired,
                    report.orphans
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl RestoreArgs {
    /// Restores in place (under a lease) or as a new tenant.
    pub async fn run(self, tenancy: &Tenancy) -> anyhow::Result<ExitCode> {
        let reference: TenantRef = self.tenant.parse()?;
        let restored = match &self.at {
            Some(at) => {
                let at = silo_core::Timestamp::parse_moment(at).map_err(|e| anyhow::anyhow!("--at: {e}"))?;
                tenancy.backups().restore_to(&reference, &at, self.as_slug.as_deref(), &actor()).await?
            }
            None => {
                tenancy
                    .backups()
                    .restore(&reference, self.backup.as_deref(), self.as_slug.as_deref(), &actor())
                    .await?
            }
        };
        let moment = match (&restored.at, &restored.reached) {
            (Some(at), Some(reached)) => format!(
                " at {at} (its last commit by then: {reached}; {} commits replayed)",
                restored.commits_replayed
            ),
            _ => String::new(),
        };
        if self.json {
            print_json(&restored)?;
        } else if self.as_slug.is_some() {
            crate::say!(
                "restored backup {}{moment} of {} as new tenant {} ({}); held: suspended and shown to no \
                 member until `silo tenant resume {}` releases it",
                restored.backup.id,
                self.tenant,
                restored.tenant.slug,
                restored.tenant.id,
                restored.tenant.slug
            );
        } else {
            crate::say!(
                "restored {} to backup {} of {}{moment} ({}); unavailable {:.1} ms",
                restored.tenant.slug,
                restored.backup.id,
                restored.backup.created_at,
                output::bytes(restored.size),
                restored.unavailable.as_secs_f64() * 1000.0
            );
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl RecoverArgs {
    /// Rebuilds the empty data directory of `settings` from the store (holding its lock).
    pub async fn run(self, settings: crate::settings::Settings) -> anyhow::Result<ExitCode> {
        debug_assert!(self.from_store, "clap requires --from-store");
        if let Some(file) = &self.master_key_file {
            install_master_key(file, &settings.fleet.master_key_path())?;
        }
        let control = silo_backups::recover::recover_control(&settings.fleet).await?;
        let tenancy = crate::schema::open(settings.fleet.clone()).await?;
        // The accounts say who each tenant's members are now (a restored file gets them).
        let _accounts = silo_accounts::Accounts::new(tenancy.clone(), settings.accounts());
        let tenants = tenancy.backups().recover_tenants(&actor()).await;
        tenancy.shutdown().await;
        let tenants = tenants?;
        if self.json {
            print_json(&serde_json::json!({ "control": control, "tenants": tenants }))?;
        } else {
            crate::say!(
                "control plane: copy {} taken at {} ({})",
                control.copy,
                control.taken_at,
                output::bytes(control.size)
            );
            let commits: usize = tenants.restored.iter().map(|(_, commits, _)| commits).sum();
            crate::say!(
                "tenants: {} restored to their last commit in the store ({commits} commits replayed after their snapshots{}), {} failed, in {:.1} s",
                tenants.restored.len(),
                match tenants.adopted {
                    0 => String::new(),
                    n => format!("; {n} snapshots newer than the control plane's copy catalogued"),
                },
                tenants.failed.len(),
                tenants.elapsed_ms as f64 / 1000.0
            );
            for (slug, error) in &tenants.failed {
                crate::say!("  {slug}: {error}");
            }
        }
        Ok(if tenants.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
    }
}

/// Copies the master key file to where the installation reads it (mode 0600); one already
/// there must be the same key.
fn install_master_key(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let key =
        std::fs::read_to_string(from).with_context(|| format!("--master-key-file {}", from.display()))?;
    silo_storage::crypto::MasterKey::from_hex(key.trim())
        .map_err(|e| anyhow::anyhow!("--master-key-file {}: {e}", from.display()))?;
    if to.exists() {
        let there = std::fs::read_to_string(to).with_context(|| format!("read {}", to.display()))?;
        anyhow::ensure!(
            there.trim() == key.trim(),
            "{} holds another master key: remove it, or leave out --master-key-file",
            to.display()
        );
        return Ok(());
    }
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .with_context(|| format!("create {}", to.display()))?;
    file.write_all(format!("{}\n", key.trim()).as_bytes())?;
    file.sync_all()?;
    Ok(())
}

impl ExportArgs {
    /// Writes the export zip.
    pub async fn run(self, tenancy: &Tenancy) -> anyhow::Result<ExitCode> {
        let manifest = tenancy
            .exports()
            .export(&self.tenant.parse()?, &crate::output::resolve(&self.out), &actor())
            .await?;
        let rows: u64 = manifest.row_counts.values().sum();
        crate::say!(
            "exported {} ({} tables, {rows} rows, schema {}) to {}",
            manifest.slug,
            manifest.row_counts.len(),
            manifest.schema_version,
            self.out.display()
        );
        Ok(ExitCode::SUCCESS)
    }
}

fn print_backups(backups: &[Backup]) {
    let rows: Vec<Vec<String>> = backups
        .iter()
        .map(|b| {
            vec![
                b.id.clone(),
                b.created_at.to_string(),
                b.kind.to_string(),
                output::bytes(b.size as u64),
                output::bytes(b.db_size as u64),
                b.schema_version.to_string(),
                match (&b.verify_error, &b.verified_at) {
                    (Some(error), _) => format!("FAILED: {error}"),
                    (None, Some(at)) => at.clone(),
                    (None, None) => "-".into(),
                },
            ]
        })
        .collect();
    crate::say!("{}", table(&["ID", "CREATED", "KIND", "STORED", "DATABASE", "SCHEMA", "VERIFIED"], &rows));
    crate::say!("({} backup{})", backups.len(), if backups.len() == 1 { "" } else { "s" });
}
