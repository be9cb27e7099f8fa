//! Which tenants changed since their last backup. Every tenant connection of the handle cache
//! carries a SQLite commit hook that marks its tenant here (one short lock per write
//! transaction; read-only transactions do not fire it). The scheduler takes the marks before
//! it snapshots, so a write during a backup marks the tenant again for the next pass.
//!
//! Marks live in memory: writes made while no `silo serve` runs (the CLI) or lost with a
//! killed process are caught by the scheduler's first pass, which compares file times.

use std::collections::HashSet;

use parking_lot::Mutex;

use crate::ids::TenantId;

/// Tenants written to since the scheduler last took the marks.
#[derive(Debug, Default)]
pub struct ChangeTracker {
    changed: Mutex<HashSet<TenantId>>,
}

impl ChangeTracker {
    /// Marks a tenant changed.
    pub fn mark(&self, tenant: TenantId) {
        self.changed.lock().insert(tenant);
    }

    /// Takes every mark.
    pub fn take(&self) -> HashSet<TenantId> {
        std::mem::take(&mut *self.changed.lock())
    }

    /// Whether a tenant is marked (without taking it).
    pub fn is_marked(&self, tenant: TenantId) -> bool {
        self.changed.lock().contains(&tenant)
    }

    /// Installs the hook on a tenant connection.
    pub(crate) fn watch(self: &std::sync::Arc<Self>, conn: &rusqlite::Connection, tenant: TenantId) {
        let tracker = self.clone();
        let installed = conn.commit_hook(Some(move || {
            tracker.mark(tenant);
            false // let the commit proceed
        }));
        if let Err(e) = installed {
            // Not fatal for serving; the scheduler's file-time check still sees the writes.
            tracing::error!(tenant = %tenant, error = %e, "installing the change hook failed");
        }
    }
}
