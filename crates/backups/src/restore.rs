//! Restores: in place (the tenant's file is replaced under a lease) or as a new tenant (a
//! clone with its own id, file and slug); from a snapshot, or to a moment ([`Backups::restore_to`]:
//! the newest snapshot at or before it, then its chain's commits up to it, see
//! [`super::continuous`]).
//!
//! Both first write the backup to a staging file beside the destination and check it
//! (checksum, decryption, `integrity_check`, schema version), then replay the erasure ledger
//! on it (people erased since the backup are erased from it: [`silo_tenancy::erasure`]) and bring its
//! member rows to the tenant's current members (someone who left since is marked gone, someone
//! who joined since gets a row, so new work is attributed); only then is anything switched.
//! A restore that fails before the switch changes nothing. In place, the tenant is unavailable
//! only for the switch: lease (in-flight requests finish), remove the old `-wal`/`-shm`,
//! rename, fsync the directory, release.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use silo_storage::sqlite;

use super::Backups;
use super::catalogue::Backup;
use crate::{Error, Result};
use silo_core::ids::{TenantId, TenantRef, TenantSlug};
use silo_tenancy::control::{MigrationRecord, NewTenant, Tenant, TenantStatus};

/// What a restore did.
#[derive(Debug, Serialize)]
pub struct Restored {
    /// The tenant restored into (the new one for `--as`).
    pub tenant: Tenant,
    /// The backup used.
    pub backup: Backup,
    /// Bytes of the restored database.
    pub size: u64,
    /// How long the tenant was unavailable (in place only).
    #[serde(serialize_with = "as_millis")]
    pub unavailable: Duration,
    /// People the erasure ledger names who were in the backup and were erased from the
    /// restored file before it served.
    pub forgotten: usize,
    /// The moment restored to (a restore to a point in time), and the commits of the
    /// snapshot's chain replayed to reach it.
    pub at: Option<silo_core::Timestamp>,
    /// Commits replayed after the snapshot.
    pub commits_replayed: usize,
    /// The moment the restored file is of: its last replayed commit's time, or the snapshot's
    /// (earlier than `at` when nothing was committed in between — or when nothing that was
    /// reached the store).
    pub reached: Option<silo_core::Timestamp>,
}

/// The moments a tenant can be restored to ([`Backups::restorable`]).
#[derive(Debug, Default, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Restorable {
    /// The earliest: its oldest backup (`null`: it has none).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub from: Option<silo_core::Timestamp>,
    /// The latest: the last commit of its newest chain in the store, or that chain's snapshot.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub to: Option<silo_core::Timestamp>,
    /// Spans inside that no moment can be restored to exactly (a chain ended before the next
    /// backup: retention removed those in between, or continuous backup was off), newest first.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<String>>))]
    pub gaps: Vec<(silo_core::Timestamp, silo_core::Timestamp)>,
    /// Backups kept.
    pub backups: usize,
    /// Whether continuous backup runs in this process (else only the backups' own moments
    /// are restorable, and there is no lag to report).
    pub continuous: bool,
    /// Commits not in the store yet: the oldest one's age (ms) and their bytes (`null`: none,
    /// or continuous backup does not run in this process).
    pub unshipped_ms: Option<u64>,
    /// Bytes of those commits.
    pub unshipped_bytes: Option<u64>,
}

/// A staged file: its size, the people the erasure ledger erased from it, its schema version,
/// and the commits replayed onto the snapshot.
struct Staged {
    size: u64,
    forgotten: usize,
    schema_version: i64,
    replayed: usize,
    reached: Option<silo_core::Timestamp>,
    /// The chain's last segment replayed, if any.
    last_seq: Option<u64>,
}

/// A tenant restored beside its file's place before it moves here ([`Backups::prepare`]):
/// at the switch only the commits since are replayed.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The snapshot it was restored from.
    backup: String,
    /// Where it is.
    path: PathBuf,
    /// The chain's segment to go on from (the last one replayed, again).
    resume_seq: u64,
    /// When it was prepared.
    at: Instant,
}

/// A prepared tenant not moved here after this long is dropped (a move switches within
/// moments of its prepare; a copy must not outlive a move that failed, nor a purge elsewhere).
const PREPARED_FOR: Duration = Duration::from_secs(120);

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// A staging path beside `dest` (see [`silo_tenancy::scratch::restore_staging`]).
fn staging_path(dest: &Path) -> PathBuf {
    silo_tenancy::scratch::restore_staging(dest)
}

/// A restore's `until` that replays every commit of the chain, whatever its time.
const EVERY_COMMIT: i64 = i64::MAX;

impl Backups {
    /// Restores `backup` (default: the newest) of a tenant: into the tenant itself, or, with
    /// `as_slug`, into a new tenant with that slug (a clone).
    pub async fn restore(
        &self,
        tenant: &TenantRef,
        backup: Option<&str>,
        as_slug: Option<&str>,
        actor: &str,
    ) -> Result<Restored> {
        let tenant = self.fleet.tenant(tenant).await?;
        Self::check_restorable(&tenant, as_slug)?;
        let backup = self.find(&tenant, backup).await?;
        match as_slug {
            None => self.restore_in_place(tenant, backup, None, actor).await,
            Some(slug) => self.restore_as_new(tenant, backup, None, slug, actor).await,
        }
    }

    /// Restores a tenant to the moment `at`: the last commit at or before it that reached the
    /// store (the newest snapshot at or before `at`, then its chain's commits up to `at`). In
    /// place, or with `as_slug` as a new tenant.
    pub async fn restore_to(
        &self,
        tenant: &TenantRef,
        at: &silo_core::Timestamp,
        as_slug: Option<&str>,
        actor: &str,
    ) -> Result<Restored> {
        let tenant = self.fleet.tenant(tenant).await?;
        Self::check_restorable(&tenant, as_slug)?;
        if at > &self.fleet.control().now() {
            return Err(Error::invalid(
                "at",
                format!("{at} is in the future: restore to a moment that has passed"),
            ));
        }
        let backups = self.of_tenant(tenant.id).await?;
        let Some(base) = backups.iter().find(|b| &b.created_at <= at).cloned() else {
            let detail = match backups.last() {
                Some(first) => format!("its earliest backup is of {}", first.created_at),
                None => "it has no backup".to_owned(),
            };
            return Err(Error::invalid(
                "at",
                format!(
                    "`{}` cannot be restored to {at}: {detail}, and a restore starts from a backup at or before the moment",
                    tenant.slug
                ),
            ));
        };
        // A chain closed before `at` (the backups after it expired, or continuous backup was
        // off) cannot reproduce `at`: refused rather than landing earlier unannounced.
        if backups.first().is_some_and(|newest| newest.id != base.id) {
            let reach = self.chain_reach(&tenant, &base).await?;
            if at > &reach {
                let next = backups.iter().rev().find(|b| &b.created_at > at).map(|b| b.created_at.clone());
                let next = next.map_or_else(String::new, |n| format!(" or from {n}"));
                return Err(Error::invalid(
                    "at",
                    format!(
                        "`{}` cannot be restored to {at} exactly: what the store keeps of it reaches {reach}, then starts again later (the backups in between expired, or continuous backup was off); restore to a moment up to {reach}{next}",
                        tenant.slug
                    ),
                ));
            }
        }
        let until = Some(at.unix_ms());
        match as_slug {
            None => self.restore_in_place(tenant, base, until, actor).await,
            Some(slug) => self.restore_as_new(tenant, base, until, slug, actor).await,
        }
    }

    /// Restores `tenant`, about to move to this server, beside its file's place from the
    /// store (its newest snapshot and chain so far) while its server still serves it: the
    /// takeover at the switch only replays the commits since (see [`Backups::take_over`]).
    pub async fn prepare(&self, tenant: &Tenant) -> Result<()> {
        Self::check_restorable(tenant, None)?;
        if self.fleet.ownership().is_some_and(|o| o.holds(tenant.id)) {
            return Err(Error::invalid(
                "tenant",
                format!("tenant `{}` is this server's already: nothing to prepare", tenant.slug),
            ));
        }
        self.drop_prepared(|id, p| id == tenant.id || p.at.elapsed() > PREPARED_FOR).await;
        let backup = self.find(tenant, None).await?;
        let dest = self.fleet.tenant_path(tenant)?;
        super::recover::create_parent(&dest)?;
        let path = staging_path(&dest);
        let staged = self.stage(tenant, &backup, Some(EVERY_COMMIT), &path).await?;
        tracing::info!(tenant = %tenant.id, backup = %backup.id, commits = staged.replayed, "tenant prepared here before it moves here");
        let (id, at) = (tenant.id, Instant::now());
        let prepared = Prepared { backup: backup.id, path, resume_seq: staged.last_seq.unwrap_or(0), at };
        self.state.prepared.lock().insert(id, prepared);
        let backups = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(PREPARED_FOR).await;
            backups.drop_prepared(|t, p| t == id && p.at == at).await;
        });
        Ok(())
    }

    /// Removes the prepared copies `which` picks (the tenant's again, ones never moved here,
    /// a purged tenant's); answers how many there were.
    pub(crate) async fn drop_prepared(&self, which: impl Fn(TenantId, &Prepared) -> bool) -> usize {
        let dropped: Vec<Prepared> = {
            let mut prepared = self.state.prepared.lock();
            let ids: Vec<TenantId> =
                prepared.iter().filter(|(id, p)| which(**id, p)).map(|(id, _)| *id).collect();
            ids.iter().filter_map(|id| prepared.remove(id)).collect()
        };
        let count = dropped.len();
        for old in dropped {
            if let Err(e) = sqlite::remove_database_files(&old.path).await {
                tracing::warn!(path = %old.path.display(), error = %e, "removing a prepared copy failed");
            }
        }
        count
    }

    /// Removes this server's prepared copy of `tenant` (asked by the server that purges it);
    /// answers whether there was one.
    pub async fn forget_prepared(&self, tenant: TenantId) -> bool {
        self.drop_prepared(|id, _| id == tenant).await > 0
    }

    /// Asks every other live server of the cluster to remove its prepared copy of `tenant`
    /// (a move prepared there that never switched); answers the servers that had one. A
    /// server that cannot be asked is named in the log: its copy goes when it expires
    /// ([`PREPARED_FOR`]) or, were the server stopped, at its next start's sweep.
    pub(crate) async fn forget_prepared_elsewhere(&self, tenant: TenantId) -> Result<Vec<String>> {
        let (Some(ownership), Some(peers)) = (self.fleet.ownership(), self.fleet.peers()) else {
            return Ok(Vec::new());
        };
        let mut had = Vec::new();
        for (node, live) in self.fleet.nodes().list().await? {
            if !live || node.name == ownership.node() {
                continue;
            }
            match peers.forget(&node.advertise, tenant).await {
                Ok(true) => had.push(node.name),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(tenant = %tenant, node = %node.name, error = %e, "asking a server to remove its prepared copy of a purged tenant failed: it expires there within minutes");
                }
            }
        }
        Ok(had)
    }

    /// The tenant's prepared copy, if there is one (no longer prepared afterwards).
    fn take_prepared(&self, tenant: TenantId) -> Option<Prepared> {
        self.state.prepared.lock().remove(&tenant).filter(|p| p.path.exists())
    }

    /// Stages a prepared tenant at `staging`: the commits since it was prepared replayed
    /// onto it.
    async fn catch_up(
        &self,
        tenant: &Tenant,
        backup: &Backup,
        prepared: Prepared,
        staging: &Path,
    ) -> Result<Staged> {
        tokio::fs::rename(&prepared.path, staging).await.map_err(|e| silo_storage::Error::Io {
            action: "rename",
            path: prepared.path.clone(),
            source: e,
        })?;
        // Its side files (a `-shm` from the checks that opened it) stay under the old name.
        sqlite::remove_database_files(&prepared.path).await?;
        let size = sqlite::database_size(staging);
        let from = (size, prepared.resume_seq);
        let staged = self.replay_onto(tenant, backup, Some(EVERY_COMMIT), staging, from, false).await?;
        tracing::info!(tenant = %tenant.id, commits = staged.replayed, "a prepared tenant caught up");
        Ok(staged)
    }

    /// Restores a tenant in place to the last commit the store holds of it: its newest
    /// snapshot and that chain's every segment, whatever their times (a takeover: the commits
    /// carry the lost server's clock, which may run ahead of this one's).
    pub(crate) async fn restore_newest(&self, tenant: &Tenant, actor: &str) -> Result<Restored> {
        Self::check_restorable(tenant, None)?;
        let base = self.find(tenant, None).await?;
        self.restore_in_place(tenant.clone(), base, Some(EVERY_COMMIT), actor).await
    }

    /// The moments `tenant` can be restored to: its oldest backup to the last commit of its
    /// newest chain in the store (one listing of that chain), less the gaps between chains.
    pub async fn restorable(&self, tenant: &Tenant) -> Result<Restorable> {
        let backups = self.of_tenant(tenant.id).await?;
        let lag = self.logs().lag_of(tenant.id);
        let mut window = Restorable {
            backups: backups.len(),
            continuous: self.logs().is_enabled(),
            unshipped_ms: lag.map(|l| l.oldest_unshipped_ms),
            unshipped_bytes: lag.map(|l| l.unshipped_bytes),
            ..Restorable::default()
        };
        let (Some(newest), Some(oldest)) = (backups.first(), backups.last()) else { return Ok(window) };
        window.from = Some(oldest.created_at.clone());
        for pair in backups.windows(2) {
            let (newer, older) = (&pair[0], &pair[1]);
            let reach = self.chain_reach(tenant, older).await?;
            if reach < newer.created_at {
                window.gaps.push((reach, newer.created_at.clone()));
            }
        }
        let store = self.store().await?.store();
        let keys = store.list(&super::continuous::chain_prefix(tenant.id, &newest.id)).await?;
        let last =
            keys.iter().filter_map(|k| super::continuous::parse_segment_key(k)).map(|s| s.last_ms).max();
        window.to = Some(last.map_or_else(|| newest.created_at.clone(), silo_core::Timestamp::from_unix_ms));
        Ok(window)
    }

    /// Refuses a purged tenant, and an in-place restore of one being deleted.
    fn check_restorable(tenant: &Tenant, as_slug: Option<&str>) -> Result<()> {
        match tenant.status {
            TenantStatus::Deleted => Err(Error::KeyDestroyed(tenant.slug.to_string())),
            TenantStatus::Deleting if as_slug.is_none() => Err(Error::InvalidTransition {
                tenant: tenant.slug.to_string(),
                action: "restore",
                status: tenant.status.to_string(),
            }),
            _ => Ok(()),
        }
    }

    #[tracing::instrument(name = "tenant_restore", skip_all, fields(tenant = %tenant.id, backup = %backup.id))]
    async fn restore_in_place(
        &self,
        tenant: Tenant,
        backup: Backup,
        until: Option<i64>,
        actor: &str,
    ) -> Result<Restored> {
        let path = self.fleet.tenant_path(&tenant)?;
        let staging = staging_path(&path);
        let prepared =
            self.take_prepared(tenant.id).filter(|p| p.backup == backup.id && until == Some(EVERY_COMMIT));
        let staged = match prepared {
            Some(prepared) => self.catch_up(&tenant, &backup, prepared, &staging).await?,
            None => self.stage(&tenant, &backup, until, &staging).await?,
        };
        let Staged { size, forgotten, schema_version, replayed, reached, .. } = staged;
        // No segment or snapshot of the file being replaced may be stored once the new one is
        // in place (it would continue a chain the new file does not belong to).
        let log = self.logs().get(tenant.id);
        let _shipping = match &log {
            Some(log) => Some(log.shipping().await),
            None => None,
        };
        let switched = async {
            let lease = self.fleet.cache().lease(tenant.id).await?;
            let started = Instant::now();
            // Under the lease no membership change can write the tenant's file: the staged
            // one gets today's members (the backup's may have left, or be missing).
            self.reconcile_members(tenant.id, &staging).await?;
            let (from, to) = (staging.clone(), path.clone());
            tokio::task::spawn_blocking(move || sqlite::replace_database(&from, &to))
                .await
                .expect("a restore task panicked")?;
            // The file now holds the backup's schema (and is no longer whatever got it
            // quarantined): record both before anyone opens it.
            let record =
                MigrationRecord { tenant: tenant.id, schema_version: Some(schema_version), error: None };
            self.fleet.control().record_migrations(&[record]).await?;
            let unavailable = started.elapsed();
            drop(lease);
            Ok::<_, Error>(unavailable)
        }
        .await;
        let unavailable = match switched {
            Ok(unavailable) => unavailable,
            Err(e) => {
                let _ = sqlite::remove_database_files(&staging).await;
                return Err(e);
            }
        };
        self.fleet.forget_tenants();
        // The file is another one now: its log starts afresh, with a new chain.
        self.logs().reset(tenant.id);
        let at = until.filter(|&until| until != EVERY_COMMIT).map(silo_core::Timestamp::from_unix_ms);
        let detail = serde_json::json!({
            "backup": backup.id, "backup_created_at": backup.created_at, "size": size,
            "unavailable_ms": unavailable.as_secs_f64() * 1000.0, "forgotten": forgotten,
            "at": at, "commits_replayed": replayed,
        });
        self.fleet.control().record_audit(tenant.id, actor, "tenant.restore", &detail).await?;
        tracing::info!(backup = %backup.id, unavailable_ms = unavailable.as_millis() as u64, "tenant restored in place");
        let tenant = self.fleet.control().tenant_by_id(tenant.id).await?;
        Ok(Restored { tenant, backup, size, unavailable, forgotten, at, commits_replayed: replayed, reached })
    }

    #[tracing::instrument(name = "tenant_clone", skip_all, fields(tenant = %source.id, backup = %backup.id))]
    async fn restore_as_new(
        &self,
        source: Tenant,
        backup: Backup,
        until: Option<i64>,
        slug: &str,
        actor: &str,
    ) -> Result<Restored> {
        let slug = TenantSlug::parse(slug)?;
        if self.fleet.control().slug_taken(&slug).await? {
            return Err(Error::SlugTaken(slug.to_string()));
        }
        let id = TenantId::new();
        let path = self.fleet.placement().database_path(source.region.as_str(), id.as_uuid())?;
        let dir = path.parent().expect("a database path has a parent directory").to_owned();
        tokio::fs::create_dir_all(&dir).await.map_err(|e| silo_storage::Error::Io {
            action: "create directory",
            path: dir,
            source: e,
        })?;
        let staging = staging_path(&path);
        let Staged { size, forgotten, schema_version, replayed, reached, .. } =
            self.stage(&source, &backup, until, &staging).await?;
        // The clone gets the source's members (`insert_clone` copies them).
        if let Err(e) = self.reconcile_members(source.id, &staging).await {
            let _ = sqlite::remove_database_files(&staging).await;
            return Err(e);
        }
        let (from, to) = (staging.clone(), path.clone());
        let installed = tokio::task::spawn_blocking(move || sqlite::replace_database(&from, &to))
            .await
            .expect("a restore task panicked");
        if let Err(e) = installed {
            let _ = sqlite::remove_database_files(&staging).await;
            return Err(e.into());
        }
        let new = NewTenant {
            id,
            name: format!(
                "{} (restored {})",
                source.name,
                backup.created_at.as_str().get(..16).unwrap_or_default()
            ),
            slug,
            region: source.region.to_string(),
            plan: source.plan.clone(),
            schema_version,
        };
        let members = self.fleet.members();
        let inserted =
            self.fleet.control().insert_clone(&new, source.id, &backup.id, members.as_deref(), actor).await;
        let tenant = match inserted {
            Ok(tenant) => tenant,
            Err(e) => {
                let _ = sqlite::remove_database_files(&path).await;
                return Err(e);
            }
        };
        self.fleet.forget_tenants();
        tracing::info!(clone = %id, "backup restored as a new tenant");
        let at = until.filter(|&until| until != EVERY_COMMIT).map(silo_core::Timestamp::from_unix_ms);
        Ok(Restored {
            tenant,
            backup,
            size,
            unavailable: Duration::ZERO,
            forgotten,
            at,
            commits_replayed: replayed,
            reached,
        })
    }

    /// Brings the member rows of the file at `path` (not serving) to `tenant`'s current members.
    async fn reconcile_members(&self, tenant: TenantId, path: &Path) -> Result<usize> {
        let Some(members) = self.fleet.current_members(tenant).await? else { return Ok(0) };
        let reconcile = self.fleet.schema().reconcile;
        let (path, tuning, now) =
            (path.to_owned(), self.fleet.settings().tenant_tuning(), self.fleet.control().now());
        tokio::task::spawn_blocking(move || -> Result<usize> {
            let mut conn = sqlite::open_sync(&path, tuning, sqlite::OpenMode::Existing)?;
            let changed = reconcile(&mut conn, &members, &now)?;
            conn.close()?;
            Ok(changed)
        })
        .await
        .expect("reconciling members panicked")
    }

    /// Writes and checks the backup at `staging`, replays its chain's commits up to `until`
    /// (ms since the epoch) when given and checks the result (`integrity_check` once, after
    /// the replay), then replays the erasure
    /// ledger on it. On failure nothing is left.
    async fn stage(
        &self,
        tenant: &Tenant,
        backup: &Backup,
        until: Option<i64>,
        staging: &Path,
    ) -> Result<Staged> {
        // With commits to replay, the file is checked once, after them.
        let size = self.fetch_backup_checked(tenant, backup, staging, until.is_none()).await?;
        self.replay_onto(tenant, backup, until, staging, (size, 0), true).await
    }

    /// [`Backups::stage`] once the snapshot is at `staging` (`size` bytes), with the chain's
    /// segments before `from_seq` replayed already; `check`: `integrity_check` the result
    /// (a prepared file was checked when prepared, and the commits replayed onto it since are
    /// sealed like every segment: the switch does not read the whole file again).
    async fn replay_onto(
        &self,
        tenant: &Tenant,
        backup: &Backup,
        until: Option<i64>,
        staging: &Path,
        (size, from_seq): (u64, u64),
        check: bool,
    ) -> Result<Staged> {
        let staged = async {
            let (mut size, mut schema_version, mut replayed) = (size, backup.schema_version, 0);
            let mut reached = until.map(|_| backup.created_at.clone());
            let mut last_seq = None;
            if let Some(until) = until {
                let last;
                (replayed, last, last_seq) = self.replay_chain(tenant, backup, from_seq, until, staging).await?;
                reached = last.map(silo_core::Timestamp::from_unix_ms).or(reached);
                {
                    let (file, latest) = (staging.to_owned(), silo_tenancy::schema::latest_version(self.fleet.migrations()));
                    (size, schema_version) = tokio::task::spawn_blocking(move || {
                        if check {
                            sqlite::check_integrity(&file)?;
                        }
                        let version = silo_tenancy::schema::read_file_version(&file)?;
                        if version > latest {
                            return Err(Error::Schema(format!(
                                "the restored file is at schema version {version}, newer than this binary's {latest}"
                            )));
                        }
                        Ok::<_, Error>((sqlite::database_size(&file), version))
                    })
                    .await
                    .expect("checking a restored file panicked")?;
                }
            }
            let forgotten = self.fleet.erasures().replay(staging).await?;
            Ok(Staged { size, forgotten, schema_version, replayed, reached, last_seq })
        }
        .await;
        if staged.is_err() {
            let _ = sqlite::remove_database_files(staging).await;
        }
        staged
    }
}
