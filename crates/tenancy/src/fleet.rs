//! Fleet migration: bring every tenant file to the latest schema with bounded concurrency,
//! continuing past failures and recording each tenant's result in the control plane.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;
use sqlx::migrate::Migration;

use crate::control::{MigrationRecord, Tenant};
use crate::schema::{self, MigrationOutcome};
use crate::{Result, Tenancy};
use silo_core::ids::{TenantId, TenantRef};

/// Control-plane results are written in batches of this many tenants.
const RECORD_BATCH: usize = 256;

/// The result of migrating one tenant.
#[derive(Clone, Debug)]
pub struct TenantMigration {
    /// The tenant.
    pub tenant: TenantId,
    /// Its slug.
    pub slug: String,
    /// What happened, or the error.
    pub outcome: std::result::Result<MigrationOutcome, String>,
}

/// One failed tenant in a [`FleetSummary`].
#[derive(Clone, Debug, Serialize)]
pub struct FleetFailure {
    /// Tenant id.
    pub tenant: String,
    /// Tenant slug.
    pub slug: String,
    /// The error.
    pub error: String,
}

/// What a fleet migration did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FleetSummary {
    /// Tenants considered.
    pub total: usize,
    /// Tenants that had migrations applied.
    pub migrated: usize,
    /// Tenants already at the latest version.
    pub already_current: usize,
    /// Tenants that failed (recorded in the control plane).
    pub failed: usize,
    /// The failures.
    pub failures: Vec<FleetFailure>,
    /// The schema version the run aimed at.
    pub target_version: i64,
    /// Wall time, ms.
    pub elapsed_ms: u128,
}

/// Fleet runs: migrating every tenant file (from [`Tenancy::fleet`]).
#[derive(Clone)]
pub struct Fleet(pub(crate) Tenancy);

impl Fleet {
    /// How many live tenants are at each schema version.
    pub async fn schema_histogram(&self) -> Result<Vec<(i64, i64)>> {
        self.0.control().schema_histogram().await
    }

    /// How many tenants are in each status.
    pub async fn status_counts(&self) -> Result<Vec<(String, i64)>> {
        self.0.control().status_counts().await
    }

    /// Up to `limit` quarantined tenants.
    pub async fn quarantined(&self, limit: i64) -> Result<Vec<Tenant>> {
        self.0.control().quarantined(limit).await
    }

    /// The tenants a fleet migration covers: one tenant, or every active and suspended one
    /// this server serves (each server of a cluster migrates its own).
    pub async fn targets(&self, only: Option<&TenantRef>) -> Result<Vec<Tenant>> {
        match only {
            Some(tenant) => Ok(vec![self.0.tenant(tenant).await?]),
            None => {
                let mut tenants = self.0.control().live().await?;
                tenants.retain(|t| self.0.is_here(t.id));
                Ok(tenants)
            }
        }
    }

    /// Migrates `tenants` with `migrations`, `concurrency` at a time, calling `progress` after
    /// each. Failures do not stop the run; every outcome is recorded in the control plane.
    pub async fn migrate(
        &self,
        tenants: Vec<Tenant>,
        migrations: &[Migration],
        concurrency: usize,
        pre_migration_backup: bool,
        progress: &(dyn Fn(&TenantMigration) + Sync),
    ) -> Result<FleetSummary> {
        let started = Instant::now();
        let mut summary = FleetSummary {
            total: tenants.len(),
            target_version: schema::latest_version(migrations),
            ..Default::default()
        };
        let migrations: Arc<[Migration]> = Arc::from(migrations);
        let mut results = futures::stream::iter(tenants)
            .map(|tenant| self.migrate_one(tenant, migrations.clone(), pre_migration_backup))
            .buffer_unordered(concurrency.max(1))
            .ready_chunks(RECORD_BATCH);
        while let Some(batch) = results.next().await {
            let mut records = Vec::new();
            for (migration, before) in batch {
                progress(&migration);
                match &migration.outcome {
                    Ok(MigrationOutcome::Migrated(_)) => summary.migrated += 1,
                    Ok(MigrationOutcome::AlreadyCurrent(_)) => summary.already_current += 1,
                    Err(error) => {
                        summary.failed += 1;
                        summary.failures.push(FleetFailure {
                            tenant: migration.tenant.to_string(),
                            slug: migration.slug.clone(),
                            error: error.clone(),
                        });
                    }
                }
                // Write only what changed: most tenants of a no-op run need no control-plane write.
                let record = match &migration.outcome {
                    Ok(outcome)
                        if before.schema_version == outcome.version() && before.migration_error.is_none() =>
                    {
                        None
                    }
                    Ok(outcome) => Some(MigrationRecord {
                        tenant: migration.tenant,
                        schema_version: Some(outcome.version()),
                        error: None,
                    }),
                    Err(error) => Some(MigrationRecord {
                        tenant: migration.tenant,
                        schema_version: None,
                        error: Some(error.clone()),
                    }),
                };
                records.extend(record);
            }
            if !records.is_empty() {
                self.0.control().record_migrations(&records).await?;
                self.0.forget_tenants();
            }
        }
        summary.elapsed_ms = started.elapsed().as_millis();
        Ok(summary)
    }

    #[tracing::instrument(name = "tenant_migrate", skip_all, fields(tenant = %tenant.id))]
    async fn migrate_one(
        &self,
        tenant: Tenant,
        migrations: Arc<[Migration]>,
        pre_migration_backup: bool,
    ) -> (TenantMigration, Tenant) {
        if pre_migration_backup && let Err(error) = self.back_up_before_migrating(&tenant, &migrations).await
        {
            let outcome = Err(format!("pre-migration backup failed, migration not attempted: {error}"));
            return (TenantMigration { tenant: tenant.id, slug: tenant.slug.to_string(), outcome }, tenant);
        }
        // Through the file's owner: a tenant serving requests is migrated on its own connection
        // between two requests (and its handle then retired, so the next request reopens it at
        // the new version); an idle one on a connection of its own.
        let now = self.0.control().now();
        let outcome = match self.0.tenant_path(&tenant) {
            Ok(path) => {
                self.0
                    .cache()
                    .with_file(tenant.id, path, move |conn| schema::migrate(conn, &migrations, &now))
                    .await
            }
            Err(e) => Err(e),
        }
        .map_err(|e| e.to_string());
        if matches!(outcome, Ok(MigrationOutcome::Migrated(_))) {
            self.0.cache().retire(tenant.id).await;
        }
        if matches!(outcome, Ok(MigrationOutcome::Migrated(_))) {
            self.0.cache().changes().mark(tenant.id);
        }
        let migration = TenantMigration { tenant: tenant.id, slug: tenant.slug.to_string(), outcome };
        (migration, tenant)
    }

    /// Takes a `pre-migration` backup when the tenant's file is behind `migrations` (a file
    /// already current needs none).
    async fn back_up_before_migrating(&self, tenant: &Tenant, migrations: &[Migration]) -> Result<()> {
        let path = self.0.tenant_path(tenant)?;
        let version = self.0.cache().with_file(tenant.id, path, |conn| schema::file_version(conn)).await?;
        if version < schema::latest_version(migrations) {
            self.0.copies_for("a pre-migration backup")?.before_migration(&self.0, tenant).await?;
        }
        Ok(())
    }
}
