//! The tenant lifecycle: create, suspend, resume, delete (soft) and purge.
//!
//! Provisioning copies a migrated template file into place (temp name, fsync, rename, fsync
//! the directory) and only then inserts the control-plane row; if the insert fails the file is
//! removed, so a failed create leaves nothing behind. Purge takes a lease, so no connection is
//! open when the files are unlinked and nothing can write into an unlinked file.

use std::path::{Path, PathBuf};

use silo_storage::sqlite::{self, OpenMode};
use sqlx::migrate::Migration;

use crate::control::{AuditEntry, NewTenant, Tenant, TenantFilter, TenantQuery, TenantStatus};
use crate::jobs::TENANT_PURGE;
use crate::{Error, Result, Tenancy, schema};
use silo_core::ids::{TenantId, TenantRef, TenantSlug};
use silo_jobs::NewJob;

/// What `create` needs.
#[derive(Clone, Debug, Default)]
pub struct CreateTenant {
    /// The slug (validated).
    pub slug: String,
    /// Display name; the slug when absent.
    pub name: Option<String>,
    /// Region; the default region when absent.
    pub region: Option<String>,
    /// Plan; `free` when absent.
    pub plan: Option<String>,
}

impl CreateTenant {
    /// A tenant with this slug and every default.
    pub fn with_slug(slug: impl Into<String>) -> Self {
        Self { slug: slug.into(), ..Self::default() }
    }
}

/// Writes a new tenant's first rows into its file before it is published (the founder's
/// member row): the product's code, run on the file's only connection.
pub type Seed = Box<dyn FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<()> + Send>;

/// The first member of a new tenant, created with it as one operation: their membership is
/// inserted in the transaction that inserts the tenant row, and `seed` writes their row into
/// the file before that transaction (a failure of either leaves no tenant, no file and no
/// membership behind).
pub struct Founder {
    /// The account.
    pub user_id: String,
    /// Their role (`owner`).
    pub role: String,
    /// Their row in the tenant file.
    pub seed: Seed,
}

/// The tenant lifecycle: create, suspend, resume, delete, purge, rename, plan (from [`Tenancy::tenants`]).
#[derive(Clone)]
pub struct Tenants(pub(crate) Tenancy);

impl Tenants {
    /// Tenants by status and region (all when both are `None`).
    pub async fn list(&self, filter: &TenantFilter) -> Result<Vec<Tenant>> {
        self.0.control().list(filter).await
    }

    /// A page of tenants matching a search, and how many match in all.
    pub async fn search(&self, query: &TenantQuery) -> Result<(Vec<Tenant>, i64)> {
        self.0.control().search(query).await
    }

    /// A tenant by id, whatever its status.
    pub async fn by_id(&self, id: TenantId) -> Result<Tenant> {
        self.0.control().tenant_by_id(id).await
    }

    /// The tenants among `ids` (by id; ids that name none are absent), whatever their status.
    pub async fn by_ids(&self, ids: &[String]) -> Result<std::collections::HashMap<String, Tenant>> {
        self.0.control().tenants_by_ids(ids).await
    }

    /// The newest `limit` audit entries about a tenant.
    pub async fn audit_of(&self, id: TenantId, limit: i64) -> Result<Vec<AuditEntry>> {
        self.0.control().audit_entries(id, limit).await
    }

    /// Provisions a tenant: control row, file and schema, all or nothing.
    pub async fn create(&self, request: CreateTenant, actor: &str) -> Result<Tenant> {
        self.create_with(request, None, actor).await
    }

    /// Provisions a tenant with its first member ([`Founder`]), all or nothing.
    #[tracing::instrument(name = "tenant_create", skip_all, fields(slug = %request.slug))]
    pub async fn create_with(
        &self,
        request: CreateTenant,
        founder: Option<Founder>,
        actor: &str,
    ) -> Result<Tenant> {
        let slug = TenantSlug::parse(&request.slug)?;
        let region = request.region.unwrap_or_else(|| self.0.settings().default_region.clone());
        if request.name.as_ref().is_some_and(|n| n.chars().count() > 200) {
            return Err(Error::invalid("name", "a tenant name is at most 200 characters"));
        }
        let name = request.name.map(|n| silo_core::text::trim(&n).to_owned()).filter(|n| !n.is_empty());
        self.0.placement().root(&region)?;
        if self.0.control().slug_taken(&slug).await? {
            return Err(Error::SlugTaken(slug.to_string()));
        }
        let id = TenantId::new();
        let path = self.0.placement().database_path(&region, id.as_uuid())?;
        let template = self.template().await?;
        sqlite::install_copy(template, &path).await?;
        let (member, seed) = match founder {
            Some(f) => (Some((f.user_id, f.role)), Some(f.seed)),
            None => (None, None),
        };
        if let Err(e) = first_open(
            &path,
            self.0.settings().tenant_tuning(),
            self.0.migrations(),
            seed,
            self.0.control().now(),
        )
        .await
        {
            let _ = sqlite::remove_database_files(&path).await;
            return Err(e);
        }
        let new = NewTenant {
            id,
            name: name.unwrap_or_else(|| slug.to_string()),
            slug,
            region,
            plan: request.plan.unwrap_or_else(|| "free".to_owned()),
            schema_version: schema::latest_version(self.0.migrations()),
        };
        let members = self.0.members();
        let founder = match (&member, &members) {
            (Some((user_id, role)), Some(members)) => {
                Some((members.as_ref(), user_id.as_str(), role.as_str()))
            }
            (Some(_), None) => {
                let _ = sqlite::remove_database_files(&path).await;
                return Err(Error::Config(
                    "a tenant with a first member needs the owner of memberships (silo-accounts) registered"
                        .into(),
                ));
            }
            (None, _) => None,
        };
        match self.0.control().insert_tenant(&new, founder, actor).await {
            Ok(tenant) => {
                self.0.forget_tenants();
                tracing::info!(tenant = %id, slug = %new.slug, "tenant created");
                // In a cluster another server must be able to take it over from the store.
                if self.0.settings().cluster.secret().is_some()
                    && let Some(copies) = self.0.copies()
                {
                    copies.after_create(&self.0, &tenant).await;
                }
                Ok(tenant)
            }
            Err(e) => {
                if let Err(cleanup) = sqlite::remove_database_files(&path).await {
                    tracing::error!(tenant = %id, error = %cleanup, "removing the file of a failed create failed");
                }
                Err(e)
            }
        }
    }

    /// Closes an active tenant to its users; its file is kept.
    pub async fn suspend(&self, tenant: &TenantRef, actor: &str) -> Result<Tenant> {
        self.change_status(tenant, &[TenantStatus::Active], TenantStatus::Suspended, actor, "tenant.suspend")
            .await
    }

    /// Reopens a suspended tenant.
    pub async fn resume(&self, tenant: &TenantRef, actor: &str) -> Result<Tenant> {
        // A held restore is released: its members see it from now on.
        let action = if self.0.tenant(tenant).await?.held { "tenant.release" } else { "tenant.resume" };
        self.change_status(tenant, &[TenantStatus::Suspended], TenantStatus::Active, actor, action).await
    }

    /// Soft-deletes a tenant: closed (`410 Gone`), file kept until [`Tenants::purge`].
    ///
    /// A `tenant.purge` job is queued for the end of the grace period
    /// (`tenants.deletion_grace_days`); [`Tenants::undelete`] cancels it.
    pub async fn delete(&self, tenant: &TenantRef, actor: &str) -> Result<Tenant> {
        let from = [TenantStatus::Active, TenantStatus::Suspended];
        let deleted =
            self.change_status(tenant, &from, TenantStatus::Deleting, actor, "tenant.delete").await?;
        let grace = std::time::Duration::from_secs(self.0.settings().tenants.deletion_grace_days * 86_400);
        let payload = serde_json::json!({ "tenant": deleted.id.to_string() });
        let job = NewJob { delay: grace, ..NewJob::new(TENANT_PURGE, payload) };
        self.0.jobs().enqueue(job, actor).await?;
        Ok(deleted)
    }

    /// A soft delete by the tenant's owner, which they may undo ([`Tenants::undelete_by_owner`]);
    /// otherwise as [`Tenants::delete`].
    pub async fn delete_by_owner(&self, tenant: &TenantRef, actor: &str) -> Result<Tenant> {
        let deleted = self.delete(tenant, actor).await?;
        self.0.control().mark_deleted_by_owner(deleted.id).await?;
        Ok(deleted)
    }

    /// An owner brings back a workspace they deleted ([`Tenants::undelete`]); one the operators
    /// deleted is theirs to bring back.
    pub async fn undelete_by_owner(&self, tenant: &TenantRef, actor: &str) -> Result<Tenant> {
        let found = self.0.tenant(tenant).await?;
        if found.status == TenantStatus::Deleting && !self.0.control().deleted_by_owner(found.id).await? {
            return Err(Error::InvalidTransition {
                tenant: found.slug.to_string(),
                action: "bring back",
                status: "deleted by the operators of this Silo: only they can bring it back".to_owned(),
            });
        }
        self.undelete(tenant, actor).await
    }

    /// Brings a soft-deleted tenant back (within its grace period) to the status it had — a
    /// suspended (or held) one stays suspended, so an undelete never lifts a suspension — its
    /// scheduled purge cancelled.
    pub async fn undelete(&self, tenant: &TenantRef, actor: &str) -> Result<Tenant> {
        let id = self.0.tenant(tenant).await?.id;
        let back_to = self.0.control().status_before_delete(id).await?;
        let restored =
            self.change_status(tenant, &[TenantStatus::Deleting], back_to, actor, "tenant.undelete").await?;
        for job in self.0.jobs().queued_for(TENANT_PURGE, restored.id).await? {
            self.0.jobs().cancel(&job.id, actor).await?;
        }
        Ok(restored)
    }

    /// When a soft-deleted tenant's scheduled purge runs, if one is queued.
    pub async fn purge_due(&self, tenant: TenantId) -> Result<Option<silo_core::Timestamp>> {
        Ok(self.0.jobs().queued_for(TENANT_PURGE, tenant).await?.into_iter().map(|j| j.run_after).min())
    }

    /// Removes a soft-deleted tenant for good, every copy of it: its backup objects first
    /// (a store that cannot be reached stops the purge, which can be run again), then its
    /// files under a lease and its export zips, then — in one control-plane transaction — its
    /// catalogue rows and its wrapped data key (so a copy of a backup that survives elsewhere
    /// is unreadable), its slug and name (the row keeps its id: `purged-<id>`), the slug and
    /// name in its audit entries, the status `deleted` and a deletion certificate in the audit
    /// log.
    #[tracing::instrument(name = "tenant_purge", skip_all, fields(tenant = %tenant))]
    pub async fn purge(&self, tenant: &TenantRef, actor: &str) -> Result<Tenant> {
        let current = self.0.tenant(tenant).await?;
        if current.status != TenantStatus::Deleting {
            let status = current.status.to_string();
            return Err(Error::InvalidTransition {
                tenant: current.slug.to_string(),
                action: "purge",
                status,
            });
        }
        // In a cluster the file is on the tenant's server: the purge runs there (a job is
        // handed back for it, the API forwards), never beside a file it cannot reach.
        self.0.here_or_elsewhere(&current).await?;
        let copies = self.0.copies_for("a purge")?;
        let path = self.0.tenant_path(&current)?;
        let backups = copies.delete_all(&self.0, current.id).await?;
        let lease = self.0.cache().lease(current.id).await?;
        let removed = sqlite::remove_database_files(&path).await?;
        // Plaintext copies a killed process left behind (an export's snapshot, a restore's
        // staging) are copies of the tenant too.
        let scratch = self.0.sweep_scratch() + crate::scratch::sweep_restores(&path);
        let exports = self.0.exports().remove_of_tenant(current.id).await?;
        // The certificate names the tenant by id only: its slug and name go with the purge.
        let certificate = serde_json::json!({
            "certificate": "tenant deletion",
            "tenant": current.id,
            "purged_at": self.0.control().now(),
            "database": { "path": path, "files_removed": removed, "scratch_copies_removed": scratch },
            "exports": { "deleted": exports.len(), "jobs": exports },
            "backups": backups,
            "data_key_destroyed": true,
        });
        let mut statements = self.0.purge_statements();
        statements.extend_from_slice(copies.purge_statements());
        let purged = self.0.control().finish_purge(current.id, actor, &certificate, &statements).await?;
        drop(lease);
        // The purge the soft delete scheduled has nothing left to do.
        for job in self.0.jobs().queued_for(TENANT_PURGE, current.id).await? {
            let _ = self.0.jobs().cancel(&job.id, actor).await;
        }
        // An export that finished while the purge ran (its zip renamed in after the sweep
        // above) sees the tenant deleted and deletes itself; one more sweep for good measure.
        self.0.exports().remove_of_tenant(current.id).await?;
        self.0.forget_tenants();
        // The wrapped data key was zeroed in the database (secure_delete); its old copies in
        // the WAL go with the checkpoint.
        self.0.control().checkpoint_truncate().await?;
        // The control plane's copies in the store hold the wrapped key too: a copy without it
        // replaces them (retried by the shipper's passes if the store fails now).
        if let Err(e) = copies.supersede_control_copies(&self.0).await {
            tracing::warn!(tenant = %current.id, error = %e, "the control plane's copies could not be replaced yet; retrying");
        }
        tracing::info!(tenant = %current.id, files = removed, objects = certificate["backups"]["objects_deleted"].as_u64(), "tenant purged");
        Ok(purged)
    }

    /// Renames a tenant.
    pub async fn rename(&self, id: TenantId, name: &str, actor: &str) -> Result<Tenant> {
        let tenant = self.0.control().rename(id, name, actor).await;
        self.0.forget_tenants();
        tenant
    }

    /// Changes a tenant's plan (the name as given: which plans exist is billing's to check,
    /// `silo_billing::Subscriptions::change`). Its storage limit applies to the open handle at
    /// once.
    pub async fn set_plan(&self, id: TenantId, plan: &str, actor: &str) -> Result<Tenant> {
        let tenant = self.0.control().set_plan(id, plan, actor).await;
        self.0.forget_tenants();
        let tenant = tenant?;
        self.0.cache().apply_plan(&tenant).await?;
        Ok(tenant)
    }

    #[tracing::instrument(name = "tenant_status", skip_all, fields(tenant = %tenant, action))]
    async fn change_status(
        &self,
        tenant: &TenantRef,
        from: &[TenantStatus],
        to: TenantStatus,
        actor: &str,
        action: &'static str,
    ) -> Result<Tenant> {
        let current = self.0.tenant(tenant).await?;
        let detail = serde_json::json!({ "slug": current.slug, "from": current.status });
        let changed = self.0.control().transition(current.id, from, to, actor, action, detail).await?;
        self.0.forget_tenants();
        if to != TenantStatus::Active {
            self.0.cache().retire(current.id).await;
        }
        Ok(changed)
    }

    /// The migrated template that provisioning copies, built on first use. Its name carries a
    /// fingerprint of the migrations, so a changed migration set builds a new one.
    async fn template(&self) -> Result<&Path> {
        let path = self
            .0
            .inner
            .template
            .get_or_try_init(|| async {
                let dir = self.0.settings().data_dir.join("tmp");
                let path =
                    dir.join(format!("tenant-template-{}.db", schema::fingerprint(self.0.migrations())));
                if !path.exists() {
                    build_template(&dir, &path, self.0.migrations(), self.0.control().now()).await?;
                }
                Ok::<PathBuf, Error>(path)
            })
            .await?;
        Ok(path.as_path())
    }
}

/// Opens a freshly installed tenant file once: checks that the copy is a current tenant
/// database, and lets SQLite create its `-wal` and `-shm` files (kept between opens) now rather
/// than on the tenant's first request.
async fn first_open(
    path: &Path,
    tuning: silo_storage::SqliteTuning,
    migrations: &'static [Migration],
    seed: Option<Seed>,
    now: silo_core::Timestamp,
) -> Result<()> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = sqlite::open_sync(&path, tuning, OpenMode::Existing)?;
        schema::migrate(&mut conn, migrations, &now)?;
        if let Some(seed) = seed {
            seed(&mut conn)?;
        }
        Ok(())
    })
    .await
    .expect("opening a new tenant file panicked")
}

/// Builds a migrated tenant file under a unique temporary name and renames it into place, so a
/// crash or a concurrent builder never leaves a half-built template at `path`.
async fn build_template(
    dir: &Path,
    path: &Path,
    migrations: &'static [Migration],
    now: silo_core::Timestamp,
) -> Result<()> {
    let building = dir.join(format!("template-{}.building", TenantId::new()));
    let tuning = silo_storage::SqliteTuning::default();
    let result = async {
        let file = building.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = sqlite::open_sync(&file, tuning, OpenMode::Create)?;
            schema::migrate(&mut conn, migrations, &now)?;
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
            drop(conn);
            // Everything is in the main file after the checkpoint; the side files (which
            // open_sync keeps between closes) must not travel with copies of the template.
            for side in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{side}", file.display()));
            }
            Ok::<_, Error>(())
        })
        .await
        .expect("building the template panicked")?;
        std::fs::rename(&building, path)
            .map_err(|e| Error::Config(format!("cannot install template: {e}")))?;
        silo_storage::sqlite::fsync_dir(dir)?;
        Ok(())
    }
    .await;
    if result.is_err() {
        let _ = sqlite::remove_database_files(&building).await;
    }
    result
}
