//! The registry of open tenant handles and of leases: **one owner per tenant file**.
//!
//! The cache alone cannot answer "is a connection to this file open?": an evicted handle lives
//! on while requests hold it, and an open may be in flight. The registry knows, per tenant, the
//! one connection that may have the file — a handle from the moment its open starts until its
//! connection has closed, or a private connection for work outside the cache — and records
//! leases. A second open never starts while the first lives: it is handed the live handle
//! ([`Access::Live`]) or waits for the close ([`Access::Busy`]). Tenant files open without file
//! locks (`silo_storage::sqlite::OWNER_VFS`), so this is what keeps two connections (and two
//! WAL indexes) off one file; `silo_storage::sqlite::owners` checks it again at the open.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::handle::TenantDb;
use silo_core::ids::TenantId;

#[derive(Default, Debug)]
struct Slot {
    /// Handles opening, open, or closing.
    open: usize,
    /// A lease holds the tenant: no new handle may open.
    leased: bool,
    /// The handle most recently published to the cache.
    current: Option<Weak<TenantDb>>,
}

/// Open counts and leases per tenant.
#[derive(Default, Debug)]
pub(crate) struct Registry {
    slots: Mutex<HashMap<TenantId, Slot>>,
    /// Signalled whenever a handle closes or a lease is released.
    changed: Notify,
    open_total: AtomicUsize,
}

/// What [`Registry::access`] allows.
pub(crate) enum Access {
    /// Nobody has the file: the caller may open it (and must turn the reservation into a
    /// handle, or drop it once its connection is closed).
    Open(Reservation),
    /// The file's live handle: use it.
    Live(Arc<TenantDb>),
    /// An open or a close is in flight (or a retired handle is still held): wait for
    /// [`Registry::changed`] and ask again.
    Busy,
    /// A lease holds the tenant.
    Leased,
}

impl Registry {
    /// Asks to use a tenant's file: see [`Access`].
    pub(crate) fn access(self: &Arc<Self>, id: TenantId) -> Access {
        let mut slots = self.slots.lock();
        let slot = slots.entry(id).or_default();
        if slot.leased {
            return Access::Leased;
        }
        if let Some(db) = slot.current.as_ref().and_then(Weak::upgrade)
            && !db.is_retired()
        {
            return Access::Live(db);
        }
        if slot.open > 0 {
            return Access::Busy;
        }
        slot.open += 1;
        self.open_total.fetch_add(1, Ordering::Relaxed);
        Access::Open(Reservation { registry: Some(self.clone()), id })
    }

    /// The file's live handle, if it has one (reserves nothing).
    pub(crate) fn live(&self, id: TenantId) -> Option<Arc<TenantDb>> {
        let slots = self.slots.lock();
        let slot = slots.get(&id)?;
        if slot.leased {
            return None;
        }
        slot.current.as_ref().and_then(Weak::upgrade).filter(|db| !db.is_retired())
    }

    /// Publishes an opened handle; refused (`false`) if a lease was taken meanwhile.
    pub(crate) fn publish(&self, db: &Arc<TenantDb>) -> bool {
        let mut slots = self.slots.lock();
        let slot = slots.entry(db.id()).or_default();
        if slot.leased {
            return false;
        }
        slot.current = Some(Arc::downgrade(db));
        drop(slots);
        // Whoever waits for the file (a backup, an export) may use this handle now; without the
        // wake-up it slept until the lease timeout.
        self.changed.notify_waiters();
        true
    }

    /// Marks the current handle retired so cache hits stop handing it out.
    pub(crate) fn retire(&self, id: TenantId) {
        let slots = self.slots.lock();
        if let Some(db) = slots.get(&id).and_then(|s| s.current.as_ref()).and_then(Weak::upgrade) {
            db.retire();
        }
    }

    /// Takes the lease; `false` if another lease holds the tenant.
    pub(crate) fn try_lease(&self, id: TenantId) -> bool {
        let mut slots = self.slots.lock();
        let slot = slots.entry(id).or_default();
        if slot.leased {
            return false;
        }
        slot.leased = true;
        if let Some(db) = slot.current.take().and_then(|w| w.upgrade()) {
            db.retire();
        }
        true
    }

    /// Releases a lease.
    pub(crate) fn release(&self, id: TenantId) {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get_mut(&id) {
            slot.leased = false;
            if slot.open == 0 {
                slots.remove(&id);
            }
        }
        drop(slots);
        self.changed.notify_waiters();
    }

    /// A handle (or an aborted open) has closed all its connections.
    pub(crate) fn closed(&self, id: TenantId) {
        let mut slots = self.slots.lock();
        if let Some(slot) = slots.get_mut(&id) {
            slot.open = slot.open.saturating_sub(1);
            if slot.open == 0 && !slot.leased {
                slots.remove(&id);
            }
        }
        drop(slots);
        self.open_total.fetch_sub(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    /// Handles of this tenant opening, open or closing.
    pub(crate) fn open_count(&self, id: TenantId) -> usize {
        self.slots.lock().get(&id).map_or(0, |s| s.open)
    }

    /// Handles of all tenants opening, open or closing.
    pub(crate) fn open_total(&self) -> usize {
        self.open_total.load(Ordering::Relaxed)
    }

    /// Waits for the next change (a publish, a close or a release); `notified` must be created before
    /// the condition is checked so no wake-up is lost.
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}

/// An open in progress. Dropping it without [`Reservation::into_registry`] counts the open as
/// closed.
pub(crate) struct Reservation {
    registry: Option<Arc<Registry>>,
    id: TenantId,
}

impl Reservation {
    /// Hands the count over to a handle, which reports its own close.
    pub(crate) fn into_registry(mut self) -> Arc<Registry> {
        self.registry.take().expect("reservation used once")
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.take() {
            registry.closed(self.id);
        }
    }
}
