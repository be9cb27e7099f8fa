//! The control plane in the store: a consistent copy of `control.db` (accounts, tenants and
//! their wrapped data keys, invoices, the erasure ledger, the backup catalogue) reaches the
//! object store within continuous backup's interval after it changes, so the installation can
//! be rebuilt from the store and the master key alone ([`super::recover`]).
//!
//! **Why copies rather than its WAL.** Tenant files have one owning connection, so Silo
//! decides when their log is checkpointed and can ship it. `control.db` is shared: sqlx's
//! pools and every `silo` command write it, and any of them may checkpoint. A copy needs none
//! of that: one read-only connection notices a change (`PRAGMA data_version` moves when
//! another connection commits) and serializes the database inside one read transaction.
//! Measured with `silo-bench continuous`: a copy costs milliseconds at 10,000 tenants. A copy
//! that takes long (a very large control plane) spaces the next one out, so the copier never
//! spends more than [`DUTY`] of a core; its lag shows in `/metrics`.
//!
//! Objects are `control/<copy id>.db.zst.enc` (a UUID v7: ordered by time), compressed and
//! sealed with a key derived from the master key (the copy holds the wrapped tenant keys: it
//! is as secret as the master key makes it). Retention keeps the newest [`KEEP_NEWEST`], the
//! newest of each hour for `keep_all_hours` and of each day for `keep_daily_days`.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use silo_storage::crypto::{DataKey, MasterKey};
use silo_storage::sqlite;
use uuid::Uuid;

use super::Backups;
use crate::{Error, Result};

/// Where the copies live in the store.
pub const PREFIX: &str = "control/";

/// Copies always kept, whatever their age.
pub const KEEP_NEWEST: usize = 60;

/// The share of a core the copier may take: a copy that took `d` is followed by the next no
/// sooner than `d / DUTY` later.
pub const DUTY: f64 = 0.05;

/// The key copies are sealed with (derived, so the master key alone opens them).
pub(crate) fn copy_key(master: &MasterKey) -> DataKey {
    master.derive("silo/control-copy/v1")
}

/// What binds a sealed copy to its id.
pub(crate) fn copy_context(id: &str) -> Vec<u8> {
    format!("silo/control/v1/{id}").into_bytes()
}

fn copy_object(id: &str) -> String {
    format!("{PREFIX}{id}.db.zst.enc")
}

/// The copy id of an object key under [`PREFIX`], and its time.
pub(crate) fn parse_copy_key(key: &str) -> Option<(String, SystemTime)> {
    let id = key.strip_prefix(PREFIX)?.strip_suffix(".db.zst.enc")?;
    let uuid = Uuid::parse_str(id).ok()?;
    let (seconds, nanos) = uuid.get_timestamp()?.to_unix();
    Some((id.to_owned(), SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos)))
}

/// The copier's state (one per process).
#[derive(Debug, Default)]
pub struct ControlCopies {
    state: tokio::sync::Mutex<CopyState>,
    /// What the last copy was (for `/metrics`), outside the lock the copy holds.
    last: parking_lot::Mutex<Option<LastCopy>>,
    /// When `control.db` was first seen changed and not copied yet (ms since the epoch).
    behind_since: parking_lot::Mutex<Option<i64>>,
    /// Copies older than the first copy taken after this moment (a UUID v7, made after an
    /// erasure or a purge committed) must go: retried by every pass until done.
    supersede_after: parking_lot::Mutex<Option<String>>,
}

#[derive(Default)]
struct CopyState {
    /// A read-only connection kept open: `PRAGMA data_version` is per connection.
    watcher: Option<rusqlite::Connection>,
    /// The data version the newest stored copy holds.
    copied: Option<i64>,
    /// No copy before this (the duty cycle).
    not_before: Option<Instant>,
}

impl std::fmt::Debug for CopyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyState").field("copied", &self.copied).finish_non_exhaustive()
    }
}

/// The newest copy this process stored.
#[derive(Clone, Debug, Serialize)]
pub struct LastCopy {
    /// Its id (`control/<id>.db.zst.enc`).
    pub id: String,
    /// When it was taken (ms since the epoch).
    pub at_ms: i64,
    /// Bytes of `control.db` copied.
    pub db_size: u64,
    /// Bytes stored.
    pub stored: u64,
    /// How long reading, compressing, sealing and storing it took.
    pub took_ms: f64,
}

impl ControlCopies {
    /// The newest copy this process stored.
    pub fn last(&self) -> Option<LastCopy> {
        self.last.lock().clone()
    }

    /// Seconds since `control.db` changed with the change not in the store yet (0: current).
    pub fn behind_seconds(&self) -> f64 {
        self.behind_since
            .lock()
            .map_or(0.0, |since| (silo_tenancy::cache::log::now_ms() - since).max(0) as f64 / 1000.0)
    }

    /// `/metrics` gauges (`silo_backup_control_copy_…`).
    pub fn to_prometheus(&self) -> String {
        let last = self.last();
        let gauges = [
            (
                "behind_seconds",
                "Seconds control.db has had changes not in the backup store (0: none).",
                self.behind_seconds(),
            ),
            (
                "bytes",
                "Bytes of control.db in its newest copy.",
                last.as_ref().map_or(0.0, |l| l.db_size as f64),
            ),
            (
                "duration_seconds",
                "How long the newest copy of control.db took.",
                last.as_ref().map_or(0.0, |l| l.took_ms / 1000.0),
            ),
        ];
        gauges
            .iter()
            .map(|(name, help, value)| {
                format!(
                    "# HELP silo_backup_control_copy_{name} {help}\n# TYPE silo_backup_control_copy_{name} gauge\nsilo_backup_control_copy_{name} {value}\n"
                )
            })
            .collect()
    }
}

impl Backups {
    /// The control-plane copier's state.
    pub fn control_copies(&self) -> &ControlCopies {
        &self.state.control_copies
    }

    /// Stores a copy of `control.db` if it changed since the last one and the duty cycle
    /// allows (continuous backup's passes). Returns the copy stored, if any.
    pub async fn copy_control_if_changed(&self) -> Result<Option<LastCopy>> {
        let copied = self.copy_control(true).await?;
        self.finish_superseding().await?;
        Ok(copied)
    }

    /// Stores a copy of `control.db` if it changed since the last one, now (a stop).
    pub async fn copy_control_now(&self) -> Result<Option<LastCopy>> {
        self.copy_control(false).await
    }

    async fn copy_control(&self, paced: bool) -> Result<Option<LastCopy>> {
        // A control plane on PostgreSQL is not a file of ours: its operator backs it up.
        if !self.fleet.control().is_embedded() {
            return Ok(None);
        }
        let copies = self.control_copies();
        let mut state = copies.state.lock().await;
        let started = Instant::now();
        let may_copy = !paced || state.not_before.is_none_or(|t| started >= t);
        let mut watcher = match state.watcher.take() {
            Some(conn) => conn,
            None => open_watcher(&self.fleet.settings().control_db_path())?,
        };
        let copied = state.copied;
        // The version is read before the copy: a commit during it is copied next time.
        let (watcher, read) = tokio::task::spawn_blocking(move || {
            let read = (|| -> Result<Option<(i64, Option<Vec<u8>>)>> {
                let version: i64 = watcher.query_row("PRAGMA data_version", [], |r| r.get(0))?;
                if copied == Some(version) {
                    return Ok(None);
                }
                let plain = if may_copy { Some(sqlite::snapshot_bytes(&mut watcher)?) } else { None };
                Ok(Some((version, plain)))
            })();
            (watcher, read)
        })
        .await
        .expect("copying control.db panicked");
        state.watcher = Some(watcher);
        let (version, plain) = match read? {
            None => {
                *copies.behind_since.lock() = None;
                return Ok(None);
            }
            Some((version, plain)) => {
                copies.behind_since.lock().get_or_insert_with(silo_tenancy::cache::log::now_ms);
                (version, plain)
            }
        };
        // Changed, but the last copy was recent and slow: this one waits (the lag shows).
        let Some(plain) = plain else { return Ok(None) };
        let id = Uuid::now_v7().to_string();
        let key = copy_key(&self.store().await?.master);
        let (context, db_size) = (copy_context(&id), plain.len() as u64);
        let packed = tokio::task::spawn_blocking(move || silo_storage::backup::pack(&plain, &key, &context))
            .await
            .expect("sealing a copy of control.db panicked")?;
        let stored = packed.bytes.len() as u64;
        self.store().await?.store().put(&copy_object(&id), packed.bytes).await?;
        let took = started.elapsed();
        state.copied = Some(version);
        state.not_before = Some(started + took.div_f64(DUTY));
        *copies.behind_since.lock() = None;
        let last = LastCopy {
            id,
            at_ms: silo_tenancy::cache::log::now_ms(),
            db_size,
            stored,
            took_ms: took.as_secs_f64() * 1000.0,
        };
        *copies.last.lock() = Some(last.clone());
        tracing::debug!(copy = %last.id, bytes = db_size, took_ms = last.took_ms, "control.db copied to the store");
        Ok(Some(last))
    }

    /// After an erasure or a purge: stores a copy of `control.db` as it is now, then deletes
    /// every older copy, so no copy in the store still holds what was erased or the purged
    /// tenant's wrapped key (retention would keep some for `keep_daily_days`). If the store
    /// fails, every later pass of the shipper tries again (in this process). Returns how many
    /// copies went.
    pub async fn supersede_control_copies(&self) -> Result<usize> {
        if !self.fleet.control().is_embedded() {
            return self.remove_control_copies().await;
        }
        let threshold = Uuid::now_v7().to_string();
        {
            // Asked for before the store is touched: a store that fails leaves the request.
            let mut after = self.control_copies().supersede_after.lock();
            if after.as_ref().is_none_or(|t| *t < threshold) {
                *after = Some(threshold.clone());
            }
        }
        // No copies (continuous backup never ran with this store): none is made now either.
        if self.store().await?.store().list(PREFIX).await?.is_empty() {
            clear_if(&self.control_copies().supersede_after, &threshold);
            return Ok(0);
        }
        // The next copy is taken whatever `data_version` says: one taken by a pass racing
        // the change may hold control.db as it was.
        self.control_copies().state.lock().await.copied = None;
        self.copy_control_now().await?;
        self.finish_superseding().await
    }

    /// Deletes the copies older than this process's newest once that one was taken after the
    /// moment asked for (see [`Backups::supersede_control_copies`]).
    async fn finish_superseding(&self) -> Result<usize> {
        let copies = self.control_copies();
        let Some(threshold) = copies.supersede_after.lock().clone() else { return Ok(0) };
        let store = self.store().await?.store();
        let stored: Vec<String> = self.stored_copies().await?.into_iter().map(|(id, _)| id).collect();
        let newest = match copies.last() {
            Some(last) if last.id > threshold => last.id,
            // No copy after the change yet (a paced pass, or the copy failed): later.
            _ if !stored.is_empty() => return Ok(0),
            // No copies at all: nothing holds what went.
            _ => {
                clear_if(&copies.supersede_after, &threshold);
                return Ok(0);
            }
        };
        let mut gone = 0;
        for id in stored.iter().filter(|id| **id < newest) {
            store.delete(&copy_object(id)).await?;
            gone += 1;
        }
        clear_if(&copies.supersede_after, &threshold);
        Ok(gone)
    }

    /// On PostgreSQL: removes the copies of `control.db` made before this control plane was
    /// installed from the store. They are of the control plane this installation had before
    /// `silo control copy-to-postgres`, no copy replaces them (PostgreSQL is backed up with
    /// its own tools), and they would keep what later erasures and purges removed — and
    /// `silo recover` would rebuild that old control plane from them. Newer ones are not this
    /// installation's (another, on `control.db`, sharing the store by mistake): left alone.
    /// Returns how many went.
    pub async fn remove_control_copies(&self) -> Result<usize> {
        let installed = SystemTime::UNIX_EPOCH
            + Duration::from_millis(self.fleet.control().installed_ms().await?.max(0) as u64);
        let store = self.store().await?.store();
        let stored: Vec<String> = self
            .stored_copies()
            .await?
            .into_iter()
            .filter(|(_, at)| *at < installed)
            .map(|(id, _)| id)
            .collect();
        for id in &stored {
            store.delete(&copy_object(id)).await?;
        }
        if !stored.is_empty() {
            tracing::info!(
                copies = stored.len(),
                "removed the copies of control.db from the store: the control plane is on PostgreSQL now"
            );
        }
        Ok(stored.len())
    }

    /// The copies of `control.db` in the store: their ids and when each was made.
    async fn stored_copies(&self) -> Result<Vec<(String, SystemTime)>> {
        let keys = self.store().await?.store().list(PREFIX).await?;
        Ok(keys.iter().filter_map(|key| parse_copy_key(key)).collect())
    }

    /// Applies the retention policy to the control plane's copies (on PostgreSQL, removes
    /// them all: [`Backups::remove_control_copies`]); returns how many went.
    pub(crate) async fn prune_control_copies(&self, now: SystemTime) -> Result<usize> {
        if !self.fleet.control().is_embedded() {
            return self.remove_control_copies().await;
        }
        let settings = &self.fleet.settings().backup;
        let store = self.store().await?.store();
        let copies = self.stored_copies().await?;
        let keep_all = Duration::from_secs(settings.keep_all_hours.saturating_mul(3600));
        let gone = super::retention::expired_copies(&copies, now, keep_all, settings.keep_daily_days);
        for id in &gone {
            store.delete(&copy_object(id)).await?;
        }
        Ok(gone.len())
    }
}

/// Clears a superseding request if no newer one came meanwhile.
fn clear_if(request: &parking_lot::Mutex<Option<String>>, threshold: &str) {
    let mut request = request.lock();
    if request.as_deref() == Some(threshold) {
        *request = None;
    }
}

fn open_watcher(path: &Path) -> Result<rusqlite::Connection> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// Writes the newest copy of the control plane in `store` to `dest` (which must not exist):
/// decrypted with `master`, checked (`integrity_check`), fsynced. Returns the copy's id and time.
pub async fn fetch_newest(
    store: &dyn silo_storage::objects::ObjectStore,
    master: &MasterKey,
    dest: &Path,
) -> Result<(String, SystemTime, u64)> {
    let newest =
        store.list(PREFIX).await?.iter().filter_map(|key| parse_copy_key(key)).max_by(|a, b| a.0.cmp(&b.0));
    let Some((id, at)) = newest else {
        return Err(Error::Unavailable(format!(
            "the backup store ({}) holds no copy of the control plane under `{PREFIX}`: it is copied by `silo serve` with continuous backup on",
            store.describe()
        )));
    };
    let object = copy_object(&id);
    let bytes = store.get(&object).await?;
    let (key, context, dest) = (copy_key(master), copy_context(&id), dest.to_owned());
    let name = object.clone();
    let size = tokio::task::spawn_blocking(move || -> Result<u64> {
        let plain = silo_storage::backup::unseal(&bytes, &key, &context).map_err(|e| {
            Error::Storage(silo_storage::Error::Corrupt {
                path: name.clone().into(),
                detail: format!("{e} (the wrong master key, or an altered object)"),
            })
        })?;
        silo_storage::backup::write_database(&plain, &dest)?;
        Ok(plain.len() as u64)
    })
    .await
    .expect("writing the control plane's copy panicked")?;
    Ok((id, at, size))
}
