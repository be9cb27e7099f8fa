//! Each tenant's write-ahead log as continuous backup follows it: which commits are in the
//! log and not yet in the store, when each was made, and which chain of backups they belong
//! to. The handle cache installs the hooks on every tenant connection it opens; the shipper
//! (`silo-backups`) reads commits out through [`TenantLog`]'s methods and stores them.
//!
//! - **Commit times.** Each tenant connection of the handle cache carries a commit hook (the
//!   change tracker's, which notes the time here) and a WAL hook, run once the commit is in the
//!   log on the same thread, which records (frames in the log, time) in the tenant's
//!   [`TenantLog`] and marks the tenant for the shipper. A WAL hook replaces SQLite's automatic
//!   checkpoint: checkpoints are the shipper's ([`TenantLog::checkpoint`]), so a checkpoint
//!   never discards a frame that was not shipped. Only if the log passes
//!   [`MAX_UNSHIPPED_FRAMES`] (the store down for long) is it checkpointed unshipped, to bound
//!   the disk: the chain is broken, and the next ship starts a new one with a snapshot.
//! - **Closing.** A connection that closes (eviction, a lease, shutdown) checkpoints its log
//!   away; the commits not shipped yet are read out first and kept here for the next ship.
//!
//! Enabled ([`Logs::enable`]) in `silo serve` when the scheduler runs and
//! `backup.continuous_interval` is not `0`; otherwise no hook is installed and SQLite
//! checkpoints as usual.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::Serialize;
use silo_storage::segment::TimedCommit;
use silo_storage::wal::{self, WalPosition};

use crate::Result;
use silo_core::ids::TenantId;

/// Frames of shipped log after which the shipper checkpoints it (SQLite's own automatic
/// checkpoint's threshold: ~4 MiB at 4 KiB pages).
pub const CHECKPOINT_FRAMES: u32 = 1000;

/// Frames of log past which it is checkpointed even though not shipped (~64 MiB).
pub const MAX_UNSHIPPED_FRAMES: u32 = 16_000;

/// Every tenant's log as this process follows it. Cheap to share.
#[derive(Debug, Default)]
pub struct Logs {
    enabled: AtomicBool,
    tenants: Mutex<HashMap<TenantId, Arc<TenantLog>>>,
    /// Tenants that committed since the shipper last looked.
    dirty: Arc<Mutex<HashSet<TenantId>>>,
}

impl Logs {
    /// Turns continuous backup on for connections opened from now on.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Release);
    }

    /// Whether connections get the hooks.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// The tenant's log, for a connection being opened (`None` when disabled).
    pub(crate) fn watching(&self, tenant: TenantId) -> Option<Arc<TenantLog>> {
        if !self.is_enabled() {
            return None;
        }
        Some(self.log(tenant))
    }

    /// The tenant's log, followed from now on.
    pub fn log(&self, tenant: TenantId) -> Arc<TenantLog> {
        self.tenants
            .lock()
            .entry(tenant)
            .or_insert_with(|| {
                Arc::new(TenantLog {
                    tenant,
                    state: Mutex::default(),
                    shipping: tokio::sync::Mutex::new(()),
                    dirty: self.dirty.clone(),
                })
            })
            .clone()
    }

    /// The tenant's log if this process follows it.
    pub fn get(&self, tenant: TenantId) -> Option<Arc<TenantLog>> {
        self.tenants.lock().get(&tenant).cloned()
    }

    /// The tenants that committed since the last call (the shipper's work).
    pub fn take_dirty(&self) -> Vec<TenantId> {
        std::mem::take(&mut *self.dirty.lock()).into_iter().collect()
    }

    /// Marks a tenant for the next pass (its shipping failed).
    pub fn mark(&self, tenant: TenantId) {
        self.dirty.lock().insert(tenant);
    }

    /// Forgets a tenant's log (its file was replaced): the next pass starts a new chain with a
    /// snapshot.
    pub fn reset(&self, tenant: TenantId) {
        if let Some(log) = self.get(tenant) {
            *log.state.lock() = LogState::default();
            self.mark(tenant);
        }
    }

    /// Stops following a tenant (deleted): its state goes, and it is not visited again.
    pub fn forget(&self, tenant: TenantId) {
        self.tenants.lock().remove(&tenant);
    }

    /// The file was written behind the log (a connection without the hooks: an erasure or a
    /// migration while the tenant was not open): its chain cannot continue, the next pass
    /// starts a new one with a snapshot.
    pub fn written_outside(&self, tenant: TenantId) {
        if let Some(log) = self.get(tenant) {
            log.state.lock().broken = true;
            self.mark(tenant);
        }
    }

    /// How far behind the store the followed tenants are: (tenants with commits not shipped,
    /// the oldest such commit's age).
    pub fn lag(&self) -> Lag {
        let now = now_ms();
        let tenants: Vec<_> = self.tenants.lock().values().cloned().collect();
        let mut lag = Lag::default();
        for log in tenants {
            if let Some(behind) = log.state.lock().behind(now) {
                lag.tenants_behind += 1;
                lag.oldest_unshipped_ms = lag.oldest_unshipped_ms.max(behind.oldest_unshipped_ms);
                lag.unshipped_bytes += behind.unshipped_bytes;
            }
        }
        lag
    }

    /// The chains whose every commit is in the store (nothing pending, nothing unread, not
    /// broken): `(tenant, chain's snapshot id)`.
    pub fn complete_chains(&self) -> Vec<(TenantId, String)> {
        let tenants: Vec<_> = self.tenants.lock().values().cloned().collect();
        tenants
            .iter()
            .filter_map(|log| {
                let state = log.state.lock();
                let complete = state.pending.is_empty() && state.times.is_empty() && !state.broken;
                state.chain.as_ref().filter(|_| complete).map(|chain| (log.tenant, chain.backup.clone()))
            })
            .collect()
    }

    /// One tenant's lag (`None`: not followed here, or nothing unshipped).
    pub fn lag_of(&self, tenant: TenantId) -> Option<Lag> {
        self.get(tenant)?.state.lock().behind(now_ms())
    }
}

impl LogState {
    /// What of this log is not in the store: its oldest commit's age and its bytes.
    fn behind(&self, now: i64) -> Option<Lag> {
        let at = self.pending.first().map(|c| c.at_ms).or(self.times.front().map(|t| t.1))?;
        let pending: usize =
            self.pending.iter().flat_map(|c| &c.commit.pages).map(|(_, page)| page.len()).sum();
        let (shipped, page_size) = self.position.map_or((0, 4096), |p| (p.frames, p.page_size));
        let logged = self.times.back().map_or(0, |t| t.0.saturating_sub(shipped));
        Some(Lag {
            tenants_behind: 1,
            oldest_unshipped_ms: (now - at).max(0) as u64,
            unshipped_bytes: pending as u64 + u64::from(logged) * u64::from(page_size),
        })
    }
}

/// What is not in the store yet ([`Logs::lag`]).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Lag {
    /// Tenants with commits not shipped.
    pub tenants_behind: usize,
    /// Age of the oldest commit not shipped, milliseconds.
    pub oldest_unshipped_ms: u64,
    /// Bytes of log (pages) not shipped, over all tenants.
    pub unshipped_bytes: u64,
}

impl Lag {
    /// The lag as Prometheus gauges (`silo_backup_continuous_…`).
    pub fn to_prometheus(&self) -> String {
        let gauges = [
            (
                "tenants_behind",
                "Tenants with commits not in the backup store yet.",
                self.tenants_behind as f64,
            ),
            (
                "lag_seconds",
                "Age of the oldest commit not in the backup store yet (0: none).",
                self.oldest_unshipped_ms as f64 / 1000.0,
            ),
            (
                "lag_bytes",
                "Bytes of write-ahead log not in the backup store yet.",
                self.unshipped_bytes as f64,
            ),
        ];
        gauges
            .iter()
            .map(|(name, help, value)| {
                format!(
                    "# HELP silo_backup_continuous_{name} {help}\n# TYPE silo_backup_continuous_{name} gauge\nsilo_backup_continuous_{name} {value}\n"
                )
            })
            .collect()
    }
}

/// One tenant's log: what was committed and not shipped, where shipping stands.
#[derive(Debug)]
pub struct TenantLog {
    tenant: TenantId,
    state: Mutex<LogState>,
    /// Held by whoever ships or snapshots the tenant, so segments stay in order.
    shipping: tokio::sync::Mutex<()>,
    dirty: Arc<Mutex<HashSet<TenantId>>>,
}

#[derive(Debug, Default)]
struct LogState {
    /// `(frames in the log after the commit, commit time)` of commits not shipped, oldest first.
    times: VecDeque<(u32, i64)>,
    /// Shipped (or taken) up to here in the current log.
    position: Option<WalPosition>,
    /// Commits read from a closing connection, not shipped yet.
    pending: Vec<TimedCommit>,
    /// The chain segments go to.
    chain: Option<Chain>,
    /// Frames left the log without being read (a forced checkpoint): start a new chain.
    broken: bool,
    /// The log was read to its end and then closed or checkpointed: its restart loses nothing.
    restart_expected: bool,
}

/// A chain of continuous backup: its snapshot, the next segment's number, and the time of its
/// last commit stored (the snapshot's while it has none).
#[derive(Clone, Debug)]
pub struct Chain {
    /// The snapshot's backup id.
    pub backup: String,
    /// The next segment's number.
    pub next_seq: u64,
    /// The time of the last commit stored in it (ms since the epoch).
    pub covered_ms: i64,
}

thread_local! {
    /// The commit in progress on this thread: set by the commit hook, taken by the WAL hook
    /// that SQLite runs right after it on the same thread (a failed commit never reaches the
    /// WAL hook, and the next commit hook replaces it).
    static COMMITTING: RefCell<Option<(Arc<TenantLog>, i64)>> = const { RefCell::new(None) };
}

/// Notes a commit starting on this thread (from the commit hook).
pub(crate) fn committing(log: &Arc<TenantLog>) {
    COMMITTING.with(|c| *c.borrow_mut() = Some((log.clone(), now_ms())));
}

/// Installs the WAL hook (the commit hook is the change tracker's).
pub(crate) fn install(conn: &rusqlite::Connection) {
    conn.wal_hook(Some(on_wal_commit));
}

fn on_wal_commit(wal: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    let Some((log, at)) = COMMITTING.with(|c| c.borrow_mut().take()) else { return Ok(()) };
    let frames = u32::try_from(frames).unwrap_or(0);
    log.state.lock().times.push_back((frames, at));
    log.dirty.lock().insert(log.tenant);
    if frames >= MAX_UNSHIPPED_FRAMES {
        tracing::warn!(
            tenant = %log.tenant, frames,
            "the write-ahead log grew past its bound without reaching the backup store; it is checkpointed, and the next backup starts a new chain"
        );
        {
            let mut state = log.state.lock();
            state.times.clear();
            state.broken = true;
        }
        // The transaction committed whatever this says: a failed checkpoint is retried at the
        // next commit, never reported as the statement's failure.
        if let Err(e) = wal.checkpoint() {
            tracing::warn!(tenant = %log.tenant, error = %e, "checkpointing an unshipped log failed");
        }
    }
    Ok(())
}

impl TenantLog {
    /// Waits for, and holds, the right to ship or snapshot this tenant.
    pub async fn shipping(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.shipping.lock().await
    }

    /// Commits taken for a snapshot that then failed: shipped with the next segment instead.
    pub fn put_back(&self, commits: Vec<TimedCommit>) {
        if commits.is_empty() {
            return;
        }
        let mut state = self.state.lock();
        let newer = std::mem::replace(&mut state.pending, commits);
        state.pending.extend(newer);
        self.dirty.lock().insert(self.tenant);
    }

    /// Before the connection closes (and its close checkpoints the log away): the commits not
    /// shipped are read out and kept for the next ship. `db` is the database file's path.
    pub(crate) fn before_close(&self, db: &Path) {
        let mut state = self.state.lock();
        match read_timed(&mut state, db) {
            Ok(commits) => {
                if !commits.is_empty() {
                    state.pending.extend(commits);
                    self.dirty.lock().insert(self.tenant);
                }
                state.restart_expected = true;
            }
            Err(e) => {
                tracing::warn!(tenant = %self.tenant, error = %e, "reading the log before closing failed; the next backup starts a new chain");
                state.broken = true;
            }
        }
    }
}

/// Reads the commits after `state.position` from the log of `db` and gives each its time;
/// advances the position. Call it holding the database's connection.
fn read_timed(state: &mut LogState, db: &Path) -> Result<Vec<TimedCommit>> {
    let read = wal::read_commits(&wal_path(db), state.position)?;
    if read.restarted && !state.restart_expected {
        state.broken = true;
    }
    if read.restarted {
        // Whatever the times said was about the old log.
        state.times.retain(|&(frames, _)| frames <= read.commits.last().map_or(0, |c| c.end_frame));
    }
    state.restart_expected = false;
    state.position = read.position;
    let now = now_ms();
    let commits = read
        .commits
        .into_iter()
        .map(|commit| {
            // Times of commits up to this one (a commit of a connection without the hooks, e.g.
            // a migration at open, has none: it gets the next recorded time, or now).
            let mut at = None;
            while let Some(&(frames, time)) = state.times.front() {
                if frames > commit.end_frame {
                    break;
                }
                state.times.pop_front();
                if frames == commit.end_frame {
                    at = Some(time);
                }
            }
            let at_ms = at.or(state.times.front().map(|t| t.1)).unwrap_or(now);
            TimedCommit { at_ms, commit }
        })
        .collect();
    Ok(commits)
}

fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl TenantLog {
    /// Called with the tenant's connection (`live`: its handle's, with the hooks) just before
    /// a snapshot is taken on it: takes the commits not shipped yet and puts the log's
    /// position at the snapshot. Returns them.
    pub fn at_snapshot(&self, db: &Path, live: bool) -> Result<Vec<TimedCommit>> {
        let mut state = self.state.lock();
        let mut tail = std::mem::take(&mut state.pending);
        match read_timed(&mut state, db) {
            Ok(read) => tail.extend(read),
            Err(e) => {
                state.pending = tail;
                return Err(e);
            }
        }
        // Every commit so far is in the snapshot: no time recorded before it is needed again.
        state.times.clear();
        if !live {
            // A connection of its own: its close checkpoints the log away.
            state.position = None;
            state.restart_expected = true;
        }
        Ok(tail)
    }

    /// The commits not shipped: those a close handed over, then the log's after the position
    /// (which advances). Call it holding the connection of the file at `db`.
    pub fn take_commits(&self, db: &Path) -> Result<Vec<TimedCommit>> {
        let mut state = self.state.lock();
        let mut commits = std::mem::take(&mut state.pending);
        match read_timed(&mut state, db) {
            Ok(read) => commits.extend(read),
            Err(e) => {
                // The commits a close handed over stay for the next attempt.
                state.pending = commits;
                return Err(e);
            }
        }
        Ok(commits)
    }

    /// The commits a close handed over (the file is not open).
    pub fn take_pending(&self) -> Vec<TimedCommit> {
        std::mem::take(&mut self.state.lock().pending)
    }

    /// Whether frames left the log unread: its chain cannot continue.
    pub fn is_broken(&self) -> bool {
        self.state.lock().broken
    }

    /// The chain segments go to, if one started.
    pub fn chain(&self) -> Option<Chain> {
        self.state.lock().chain.clone()
    }

    /// Starts `chain` (a snapshot was taken): returns the chain it ends and whether the log
    /// was broken before it (then the old chain's last commits cannot be trusted).
    pub fn start_chain(&self, chain: Chain) -> (Option<Chain>, bool) {
        let mut state = self.state.lock();
        let old = state.chain.replace(chain);
        (old, std::mem::take(&mut state.broken))
    }

    /// A segment of `backup`'s chain reaching `covered_ms` was stored.
    pub fn segment_stored(&self, backup: &str, covered_ms: i64) {
        let mut state = self.state.lock();
        if let Some(current) = state.chain.as_mut()
            && current.backup == backup
        {
            current.next_seq += 1;
            current.covered_ms = covered_ms;
        }
    }

    /// Whether the shipped part of the log has passed [`CHECKPOINT_FRAMES`].
    pub fn is_long(&self) -> bool {
        self.state.lock().position.is_some_and(|p| p.frames >= CHECKPOINT_FRAMES)
    }

    /// Checkpoints the log on `conn` (the file's connection, held): commits made since the
    /// last ship are read out first (shipped at the next pass), so a busy tenant's log is
    /// checkpointed too. A broken log is left alone (its next snapshot starts afresh).
    pub fn checkpoint(&self, conn: &rusqlite::Connection, db: &Path) -> Result<()> {
        let mut state = self.state.lock();
        let unread = read_timed(&mut state, db)?;
        if state.broken {
            return Ok(());
        }
        if !unread.is_empty() {
            state.pending.extend(unread);
            self.dirty.lock().insert(self.tenant);
        }
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        state.restart_expected = true;
        state.times.clear();
        Ok(())
    }
}
