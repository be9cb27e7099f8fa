//! Which tenants changed since their last backup. Every tenant connection of the handle cache
//! carries a SQLite commit hook that marks its tenant here (one short lock per write
//! transaction; read-only transactions do not fire it). The scheduler takes the marks before
//! it snapshots, so a write during a backup marks the tenant again for the next pass.
//!
//! Marks live in memory: writes made while no `silo serve` runs (the CLI) or lost with a
//! killed process are caught by the scheduler's first pass, which compares file times.
//!
//! The same hook counts each tenant's **data version** ([`ChangeTracker::version`]): it grows
//! with every commit, and with every operation that may change the file behind the cache (a
//! lease, a retired handle), so an answer built from the file can be validated (`ETag`)
//! without opening it. The version is per process (with a random epoch): after a restart no
//! old validator matches.

use std::collections::{HashMap, HashSet};

use parking_lot::Mutex;

use silo_core::ids::TenantId;

/// Tenants written to since the scheduler last took the marks, and every tenant's data version.
#[derive(Debug)]
pub struct ChangeTracker {
    marks: Mutex<Marks>,
    epoch: u64,
}

#[derive(Debug, Default)]
struct Marks {
    changed: HashSet<TenantId>,
    versions: HashMap<TenantId, u64>,
}

impl Default for ChangeTracker {
    fn default() -> Self {
        Self { marks: Mutex::default(), epoch: rand::random() }
    }
}

/// A tenant's data version in this process ([`ChangeTracker::version`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DataVersion {
    /// Random per process.
    pub epoch: u64,
    /// Commits and file operations seen in this process.
    pub count: u64,
}

impl ChangeTracker {
    /// Marks a tenant changed (for the next backup, and a new data version).
    pub fn mark(&self, tenant: TenantId) {
        let mut marks = self.marks.lock();
        marks.changed.insert(tenant);
        *marks.versions.entry(tenant).or_default() += 1;
    }

    /// A new data version without a backup mark: the file may have changed behind the cache
    /// (a lease ended, a handle was retired).
    pub fn bump(&self, tenant: TenantId) {
        *self.marks.lock().versions.entry(tenant).or_default() += 1;
    }

    /// The tenant's data version now.
    pub fn version(&self, tenant: TenantId) -> DataVersion {
        DataVersion {
            epoch: self.epoch,
            count: self.marks.lock().versions.get(&tenant).copied().unwrap_or(0),
        }
    }

    /// Takes every mark.
    pub fn take(&self) -> HashSet<TenantId> {
        std::mem::take(&mut self.marks.lock().changed)
    }

    /// Whether a tenant is marked (without taking it).
    pub fn is_marked(&self, tenant: TenantId) -> bool {
        self.marks.lock().changed.contains(&tenant)
    }

    /// Installs the hook on a tenant connection; with `log`, also continuous backup's hooks
    /// (a connection has one commit hook: this one notes the commit's time for it).
    pub(crate) fn watch(
        self: &std::sync::Arc<Self>,
        conn: &rusqlite::Connection,
        tenant: TenantId,
        log: Option<std::sync::Arc<super::log::TenantLog>>,
    ) {
        let tracker = self.clone();
        if log.is_some() {
            super::log::install(conn);
        }
        let installed = conn.commit_hook(Some(move || {
            tracker.mark(tenant);
            if let Some(log) = &log {
                super::log::committing(log);
            }
            false // let the commit proceed
        }));
        if let Err(e) = installed {
            // Not fatal for serving; the scheduler's file-time check still sees the writes.
            tracing::error!(tenant = %tenant, error = %e, "installing the change hook failed");
        }
    }
}
