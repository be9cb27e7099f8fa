//! Continuous backup: every commit of a tenant reaches the object store within
//! `backup.continuous_interval` (default 1 s), so a lost disk loses at most that much, and a
//! tenant can be restored to any moment its chain covers ([`super::restore`]).
//!
//! - **Chains.** A snapshot backup (any kind) starts a chain; the commits after it are shipped
//!   as numbered *segments* of that chain, `tenants/<tenant>/chains/<backup id>/<seq>.seg.zst.enc`,
//!   each compressed and sealed with the tenant's data key like a snapshot. Restoring to T takes
//!   the newest snapshot at or before T and replays its chain's commits up to T.
//! - **Commit times.** The fleet's handle cache follows each tenant's log
//!   ([`silo_tenancy::cache::log`]): every commit's time, what is not shipped yet, the chain.
//! - **Shipping.** Every interval the shipper takes the marked tenants — idle tenants are never
//!   visited and cost no request — and, holding the tenant's connection, reads the commits after
//!   its position out of the `-wal` ([`silo_storage::wal::read_commits`]); the segment is
//!   built, sealed and stored after the connection is given back. Once the shipped log is long
//!   ([`silo_tenancy::cache::log::TenantLog::is_long`]) the shipper checkpoints it; a log
//!   broken by a forced checkpoint or a write behind it starts a new chain with a snapshot.
//!
//! Enabled in `silo serve` when the scheduler runs and `backup.continuous_interval` is not
//! `0` ([`silo_tenancy::cache::log::Logs::enable`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use silo_storage::segment::{self, TimedCommit};
use silo_storage::wal;
use silo_tenancy::cache::log::{Chain, TenantLog};

use super::{BackupKind, Backups};
use crate::{Error, Result};
use silo_core::ids::{TenantId, TenantRef};
use silo_tenancy::{Tenant, TenantStatus};

/// Segments a replay fetches ahead of the one it applies.
const REPLAY_PREFETCH: usize = 8;

/// What binds a sealed segment to its tenant, chain and place (AES-GCM associated data).
fn segment_context(tenant: TenantId, chain: &str, seq: u64) -> Vec<u8> {
    format!("silo/segment/v1/{tenant}/{chain}/{seq}").into_bytes()
}

/// The folder of a chain's segments.
pub(crate) fn chain_prefix(tenant: TenantId, chain: &str) -> String {
    format!("tenants/{tenant}/chains/{chain}/")
}

/// A segment's key: its number (zero-padded, so keys sort in order) and the time of its
/// first and last commit (ms), so a listing tells which segments a restore needs.
fn segment_key(tenant: TenantId, chain: &str, seq: u64, first_ms: i64, last_ms: i64) -> String {
    format!("{}{seq:012}-{first_ms}-{last_ms}.seg.zst.enc", chain_prefix(tenant, chain))
}

/// A stored segment, from its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SegmentRef {
    pub key: String,
    pub seq: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

pub(crate) fn parse_segment_key(key: &str) -> Option<SegmentRef> {
    let name = key.rsplit('/').next()?.strip_suffix(".seg.zst.enc")?;
    let mut parts = name.splitn(3, '-');
    let seq = parts.next()?.parse().ok()?;
    let first_ms = parts.next()?.parse().ok()?;
    let last_ms = parts.next()?.parse().ok()?;
    Some(SegmentRef { key: key.to_owned(), seq, first_ms, last_ms })
}

/// What a shipper pass did.
#[derive(Debug, Default, Serialize)]
pub struct ShipRun {
    /// Tenants whose commits were stored.
    pub shipped: usize,
    /// Segments stored.
    pub segments: usize,
    /// Commits stored.
    pub commits: usize,
    /// Chains started (a snapshot taken).
    pub chains_started: usize,
    /// Tenants whose shipping failed (slug or id, error); they are tried again next pass.
    pub failed: Vec<(String, String)>,
}

impl Backups {
    /// The logs this process follows.
    pub fn logs(&self) -> &Arc<crate::Logs> {
        self.fleet.cache().logs()
    }

    /// Runs the shipper until `stop` completes: a pass every `interval`, and a last one at
    /// the stop (connections closing hand their commits over first).
    pub async fn run_shipper(self, interval: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(interval) => false,
                () = &mut stop => true,
            };
            let run = self.shipper_pass(stopping).await;
            if stopping {
                tracing::info!(shipped = run.shipped, "continuous backup stopped");
                return;
            }
        }
    }

    /// A pass of the shipper's loop: [`Backups::ship_changes`], then a copy of the control
    /// plane if it changed ([`super::control_copies`]; at the `last` pass whatever the pace).
    pub async fn shipper_pass(&self, last: bool) -> ShipRun {
        let run = self.ship_changes().await;
        if !run.failed.is_empty() {
            tracing::warn!(
                failed = run.failed.len(),
                "continuous backup: some tenants could not ship; retrying"
            );
        }
        let copied = if last { self.copy_control_now().await } else { self.copy_control_if_changed().await };
        if let Err(e) = copied {
            tracing::warn!(error = %e, "continuous backup: copying control.db to the store failed; retrying");
        }
        run
    }

    /// At a stop, once everything is shipped: every complete chain reaches this moment (after
    /// it, the file may change without this process seeing it: a CLI command, another
    /// release). Without this, the next process would close the chain at its last commit, and
    /// the quiet moments after it would be refused as unknown.
    pub async fn close_chains_at_stop(&self) {
        let now = silo_core::Timestamp::now();
        for (tenant, backup) in self.logs().complete_chains() {
            if let Err(e) = self.catalogue().close_chain(&backup, &now).await {
                tracing::warn!(tenant = %tenant, error = %e, "recording where a chain ends failed");
                // The control plane cannot be reached: the others would each wait for it too,
                // and a stop must not. Their chains close at their last commit instead.
                if e.kind() == silo_core::ErrorKind::Unavailable {
                    tracing::warn!(
                        "the control plane is unreachable: the other chains are not closed at this stop"
                    );
                    break;
                }
            }
        }
    }

    /// One shipper pass: every tenant that committed since the last pass ships its commits.
    pub async fn ship_changes(&self) -> ShipRun {
        let dirty = self.logs().take_dirty();
        let mut run = ShipRun::default();
        if dirty.is_empty() {
            return run;
        }
        let concurrency = self.fleet.settings().backup.concurrency();
        let mut results = futures::stream::iter(dirty)
            .map(|tenant| async move { (tenant, self.ship(tenant).await) })
            .buffer_unordered(concurrency);
        while let Some((tenant, result)) = results.next().await {
            match result {
                Ok(shipped) => {
                    run.shipped += usize::from(shipped.commits > 0 || shipped.chain_started);
                    run.segments += shipped.segments;
                    run.commits += shipped.commits;
                    run.chains_started += usize::from(shipped.chain_started);
                }
                Err(e) => {
                    tracing::warn!(tenant = %tenant, error = %e, "shipping a tenant's commits failed");
                    // Tried again at the next pass.
                    self.logs().mark(tenant);
                    run.failed.push((tenant.to_string(), e.to_string()));
                }
            }
        }
        run
    }

    /// Ships one tenant's commits (or starts its chain).
    pub(crate) async fn ship(&self, tenant_id: TenantId) -> Result<Shipped> {
        let Some(log) = self.logs().get(tenant_id) else { return Ok(Shipped::default()) };
        let _shipping = log.shipping().await;
        // This server's lease lapsed (the control plane out of reach): what it remembers of the
        // tenant, at once, rather than waiting for a connection at each step while the time to
        // ship before another server takes the tenant over runs.
        let lapsed = self.fleet.ownership().is_some_and(|o| !o.deadline().holds());
        let remembered = self.state.shipping.lock().get(&tenant_id).cloned();
        let tenant = match remembered {
            Some((tenant, Some(_))) if lapsed => Ok(tenant),
            _ => self.fleet.control().tenant_inline(&TenantRef::Id(tenant_id)).await,
        };
        let tenant = match tenant {
            Ok(tenant) => {
                let mut remembered = self.state.shipping.lock();
                let key = remembered.remove(&tenant_id).and_then(|(_, key)| key);
                remembered.insert(tenant_id, (tenant.clone(), key));
                tenant
            }
            Err(Error::NotFound(_)) => return Ok(Shipped::default()),
            // The control plane cannot be reached: what was committed under the lease still
            // goes to the store (a server taking the tenant over restores it from there).
            Err(e) if e.kind() == silo_core::ErrorKind::Unavailable => {
                match self.state.shipping.lock().get(&tenant_id) {
                    Some((tenant, _)) => tenant.clone(),
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        if !matches!(tenant.status, TenantStatus::Active | TenantStatus::Suspended) {
            // Deleted: nothing of it is shipped again (and it is not visited again).
            self.logs().forget(tenant_id);
            return Ok(Shipped::default());
        }
        let path = self.fleet.tenant_path(&tenant)?;
        if log.chain().is_none() {
            // The snapshot holds every commit so far; segments follow it.
            self.snapshot_in_chain(&tenant, &log, BackupKind::Scheduled, "continuous backup").await?;
            return Ok(Shipped { chain_started: true, ..Shipped::default() });
        }
        // Commits handed over by a close come before the log's (taken in the same hold).
        let (db, reader) = (path.clone(), log.clone());
        let read = self.fleet.cache().with_open_file(tenant_id, move |_| reader.take_commits(&db)).await?;
        // Not open: what it committed was handed over when it closed.
        let commits = read.unwrap_or_else(|| log.take_pending());
        let broken = log.is_broken();
        if broken {
            // Frames left the log unread: the chain cannot continue (the snapshot has them all).
            self.snapshot_in_chain(&tenant, &log, BackupKind::Scheduled, "continuous backup").await?;
            return Ok(Shipped { chain_started: true, ..Shipped::default() });
        }
        let mut shipped = Shipped::default();
        if !commits.is_empty() {
            if let Err(e) = self.store_segment(&tenant, &log, &commits).await {
                // Kept for the next attempt, ahead of anything newer.
                log.put_back(commits);
                return Err(e);
            }
            shipped.segments = 1;
            shipped.commits = commits.len();
        }
        self.checkpoint_if_long(tenant_id, &path, &log).await?;
        Ok(shipped)
    }

    /// Seals and stores `commits` as the next segment of the tenant's chain.
    async fn store_segment(&self, tenant: &Tenant, log: &TenantLog, commits: &[TimedCommit]) -> Result<()> {
        let Some(chain) = log.chain() else {
            return Err(Error::Config("a segment without a chain".into()));
        };
        self.store_segment_in(tenant, &chain, commits).await?;
        log.segment_stored(&chain.backup, commits[commits.len() - 1].at_ms);
        Ok(())
    }

    async fn store_segment_in(&self, tenant: &Tenant, chain: &Chain, commits: &[TimedCommit]) -> Result<()> {
        let key = self.shipping_key(tenant).await?;
        let (first, last) = (commits[0].at_ms, commits[commits.len() - 1].at_ms);
        let object = segment_key(tenant.id, &chain.backup, chain.next_seq, first, last);
        let context = segment_context(tenant.id, &chain.backup, chain.next_seq);
        let plain = segment::encode(commits);
        let packed = tokio::task::spawn_blocking(move || silo_storage::backup::pack(&plain, &key, &context))
            .await
            .expect("sealing a segment panicked")?;
        self.store().await?.store().put(&object, packed.bytes).await?;
        Ok(())
    }

    /// The tenant's data key for a segment, or the one remembered while the control plane
    /// cannot be reached.
    async fn shipping_key(&self, tenant: &Tenant) -> Result<silo_storage::crypto::DataKey> {
        let lapsed = self.fleet.ownership().is_some_and(|o| !o.deadline().holds());
        let remembered = self.state.shipping.lock().get(&tenant.id).and_then(|(_, key)| key.clone());
        if let (true, Some(wrapped)) = (lapsed, &remembered) {
            return self.unwrap_key(tenant, wrapped).await;
        }
        match self.data_key(tenant, true).await {
            Err(e) if e.kind() == silo_core::ErrorKind::Unavailable => match remembered {
                Some(wrapped) => self.unwrap_key(tenant, &wrapped).await,
                None => Err(e),
            },
            other => other,
        }
    }

    /// Checkpoints the log once it is long and wholly shipped (holding the connection, so no
    /// commit falls between the check and the checkpoint).
    async fn checkpoint_if_long(&self, tenant: TenantId, path: &Path, log: &Arc<TenantLog>) -> Result<()> {
        if !log.is_long() {
            return Ok(());
        }
        let (db, log) = (path.to_owned(), log.clone());
        self.fleet.cache().with_open_file(tenant, move |conn| log.checkpoint(conn, &db)).await?;
        Ok(())
    }

    /// Takes a snapshot that starts a new chain; the commits not shipped yet close the old
    /// chain first. Holds the tenant's shipping lock.
    pub(crate) async fn backup_in_chain(
        &self,
        tenant: &Tenant,
        kind: BackupKind,
        actor: &str,
    ) -> Result<super::Backup> {
        if !self.logs().is_enabled() || tenant.status == TenantStatus::Deleted {
            return self.snapshot(tenant, kind, actor, None).await.map(|(backup, _)| backup);
        }
        let log = self.logs().log(tenant.id);
        let _shipping = log.shipping().await;
        self.snapshot_in_chain(tenant, &log, kind, actor).await
    }

    /// [`Backups::backup_in_chain`] with the shipping lock held.
    async fn snapshot_in_chain(
        &self,
        tenant: &Tenant,
        log: &Arc<TenantLog>,
        kind: BackupKind,
        actor: &str,
    ) -> Result<super::Backup> {
        let (backup, tail) = self.snapshot(tenant, kind, actor, Some(log)).await?;
        let created_ms = backup.created_at.unix_ms();
        let chain = Chain { backup: backup.id.clone(), next_seq: 0, covered_ms: created_ms };
        let (old, broken) = log.start_chain(chain);
        // The old chain's last commits (before the snapshot) close it, so a restore to a
        // moment just before the snapshot finds them — unless frames went missing before them
        // (a broken log): after a gap they would be replayed onto the wrong pages. A failure
        // here loses no data (the snapshot has them), only those moments of the old chain,
        // and the catalogue says how far the old chain reaches.
        let closed = match old {
            Some(old) => {
                let complete = !broken
                    && (tail.is_empty()
                        || match self.store_segment_in(tenant, &old, &tail).await {
                            Ok(()) => true,
                            Err(e) => {
                                tracing::warn!(tenant = %tenant.id, error = %e, "storing the last segment of a chain failed");
                                false
                            }
                        });
                let until = if complete { created_ms } else { old.covered_ms };
                Some((old.backup, until))
            }
            // This process's first chain of the tenant: the one before it (another process's,
            // or before a restore) reaches its last stored commit.
            None => self.open_chain_before(tenant, &backup.id).await,
        };
        if let Some((id, until)) = closed
            && let Err(e) =
                self.catalogue().close_chain(&id, &silo_core::Timestamp::from_unix_ms(until)).await
        {
            tracing::warn!(tenant = %tenant.id, backup = %id, error = %e, "recording where a chain ends failed");
        }
        Ok(backup)
    }
}

impl Backups {
    /// How far the chain of `backup` (not the tenant's newest) reaches: `chain_until` when
    /// recorded; else (a chain from before the column, or one no process closed) its last
    /// stored commit, or its snapshot's moment when it has none — one listing, recorded so
    /// the next look costs nothing.
    pub(crate) async fn chain_reach(
        &self,
        tenant: &Tenant,
        backup: &super::Backup,
    ) -> Result<silo_core::Timestamp> {
        if let Some(until) = &backup.chain_until {
            return Ok(until.clone());
        }
        let store = self.store().await?.store();
        let keys = store.list(&chain_prefix(tenant.id, &backup.id)).await?;
        let last = keys.iter().filter_map(|k| parse_segment_key(k)).map(|s| s.last_ms).max();
        let reach = last.map_or_else(|| backup.created_at.clone(), silo_core::Timestamp::from_unix_ms);
        self.catalogue().close_chain(&backup.id, &reach).await?;
        Ok(reach)
    }

    /// The tenant's newest backup before `current` if its chain is open (not closed by this
    /// process), with the time of the last commit in it: where it ends.
    async fn open_chain_before(&self, tenant: &Tenant, current: &str) -> Option<(String, i64)> {
        let backups = self.of_tenant(tenant.id).await.ok()?;
        let previous = backups.into_iter().find(|b| b.id.as_str() < current)?;
        if previous.chain_until.is_some() {
            return None;
        }
        let store = self.store().await.ok()?.store();
        let keys = store.list(&chain_prefix(tenant.id, &previous.id)).await.ok()?;
        let last = keys.iter().filter_map(|k| parse_segment_key(k)).map(|s| s.last_ms).max();
        Some((previous.id.clone(), last.unwrap_or(previous.created_at.unix_ms())))
    }

    /// Replays the chain of `backup` onto `dest` (its snapshot, restored there and closed,
    /// with the segments before `from_seq` replayed already): every commit at or before
    /// `until_ms`, in order. A missing or damaged segment stops the replay with an error
    /// naming it. Returns the commits applied, the time of the last one (`None`: none) and
    /// the number of the last segment applied.
    ///
    /// Replaying a segment again is harmless (its commits carry whole pages, applied in
    /// order): a replay that goes on from an earlier one starts again at its last segment,
    /// which may have been stored again since with more commits.
    pub(crate) async fn replay_chain(
        &self,
        tenant: &Tenant,
        backup: &super::Backup,
        from_seq: u64,
        until_ms: i64,
        dest: &Path,
    ) -> Result<(usize, Option<i64>, Option<u64>)> {
        let store = self.store().await?.store();
        let mut segments: Vec<SegmentRef> = store
            .list(&chain_prefix(tenant.id, &backup.id))
            .await?
            .iter()
            .filter_map(|k| parse_segment_key(k))
            .collect();
        // A segment stored again after an upload that failed ambiguously has the same number
        // and the commits of the first try plus newer ones: the one reaching furthest wins.
        segments.sort_by_key(|s| (s.seq, std::cmp::Reverse(s.last_ms)));
        segments.dedup_by_key(|s| s.seq);
        segments.retain(|s| s.seq >= from_seq);
        // The segments up to the moment, in order (a later one missing does not matter), each
        // number present: a gap would replay pages onto the wrong state.
        let due = segments.iter().take_while(|s| s.first_ms <= until_ms).count();
        segments.truncate(due);
        for (expected, found) in (from_seq..).zip(&segments) {
            if found.seq != expected {
                return Err(damaged(
                    &found.key,
                    &format!("segment {expected} of the chain is missing before it"),
                ));
            }
        }
        let key = Arc::new(self.data_key(tenant, false).await?);
        let db = std::fs::OpenOptions::new().write(true).open(dest).map_err(|e| silo_storage::Error::Io {
            action: "open",
            path: dest.to_owned(),
            source: e,
        })?;
        let db = Arc::new(db);
        // Segments are fetched a few at a time ahead of the one being applied (an hour of a
        // busy tenant is 3,600 of them), and applied in order without an fsync each: the
        // file is a staging copy, synced once at the end.
        let mut fetched = futures::stream::iter(segments)
            .map(|found| async move { (store.get(&found.key).await, found) })
            .buffered(REPLAY_PREFETCH);
        let (mut applied, mut last, mut last_seq) = (0, None, None);
        while let Some((bytes, found)) = fetched.next().await {
            let bytes = bytes?;
            let context = segment_context(tenant.id, &backup.id, found.seq);
            let (key, db, file, name) = (key.clone(), db.clone(), dest.to_owned(), found.key.clone());
            let (count, at, complete) = tokio::task::spawn_blocking(move || {
                let plain = silo_storage::backup::unseal(&bytes, &key, &context)
                    .map_err(|e| damaged(&name, &e.to_string()))?;
                let commits = segment::decode(&plain, &name)?;
                let due: Vec<_> = commits.iter().take_while(|c| c.at_ms <= until_ms).collect();
                wal::write_commits(&db, &file, due.iter().map(|c| &c.commit))?;
                Ok::<_, Error>((due.len(), due.last().map(|c| c.at_ms), due.len() == commits.len()))
            })
            .await
            .expect("replaying a segment panicked")?;
            applied += count;
            last = at.or(last);
            last_seq = Some(found.seq);
            if !complete {
                break;
            }
        }
        let file = dest.to_owned();
        tokio::task::spawn_blocking(move || {
            db.sync_all().map_err(|e| silo_storage::Error::Io {
                action: "fsync",
                path: file.clone(),
                source: e,
            })
        })
        .await
        .expect("syncing a replayed file panicked")?;
        Ok((applied, last, last_seq))
    }
}

/// A segment that cannot be used, named.
fn damaged(key: &str, detail: &str) -> Error {
    Error::Storage(silo_storage::Error::Corrupt { path: key.into(), detail: detail.to_owned() })
}

/// What shipping one tenant did.
#[derive(Debug, Default)]
pub(crate) struct Shipped {
    pub(crate) segments: usize,
    pub(crate) commits: usize,
    pub(crate) chain_started: bool,
}
