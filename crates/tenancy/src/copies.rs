//! The seam between the fleet and the crate that keeps copies of tenants outside their files
//! (`silo-backups`: the backup store and its catalogue, continuous backup, the copies of
//! `control.db`). A purge must reach every copy (and the catalogue's rows and the data key), an
//! erasure must replace `control.db`'s copies, a migration may want a backup first, and a stop
//! must let the last commits reach the store, a server taking a tenant over from one that
//! stopped restores it from the store — but the store and its catalogue belong to the
//! crate that runs them, so the fleet calls the [`Copies`] that crate registers
//! ([`crate::Tenancy::copies_or_register`]). A purge or an erasure in a process without it is
//! refused: the copies would keep what they remove.
//!
//! Each call is handed the fleet, so the registered value holds no reference back to it.

use std::any::Any;
use std::sync::Arc;

use futures::future::BoxFuture;
use silo_core::TenantId;

use crate::{Result, Tenancy, Tenant};

/// What the fleet asks of the owner of the copies.
pub trait Copies: Send + Sync + 'static {
    /// Statements run in the purge's control-plane transaction (`?1`: the tenant's id): what
    /// the owner's tables hold of the tenant (the catalogue's rows, the wrapped data key).
    fn purge_statements(&self) -> &'static [&'static str];

    /// Deletes every copy of `tenant` outside its file (a purge, before the file goes);
    /// returns what the deletion certificate records of them. An error stops the purge.
    fn delete_all<'a>(
        &'a self,
        fleet: &'a Tenancy,
        tenant: TenantId,
    ) -> BoxFuture<'a, Result<serde_json::Value>>;

    /// Replaces the copies of `control.db` in the store by one of it as it is now (after a
    /// purge or an erasure removed something from it); returns how many were replaced.
    fn supersede_control_copies<'a>(&'a self, fleet: &'a Tenancy) -> BoxFuture<'a, Result<usize>>;

    /// Takes a `pre-migration` backup of `tenant`.
    fn before_migration<'a>(&'a self, fleet: &'a Tenancy, tenant: &'a Tenant) -> BoxFuture<'a, Result<()>>;

    /// At a stop, once the handles are closed (`all_closed`: every one of them): what is not
    /// in the store yet goes there.
    fn at_stop<'a>(&'a self, fleet: &'a Tenancy, all_closed: bool) -> BoxFuture<'a, ()>;

    /// Whether the store holds a copy of `tenant` to restore it from (taking a tenant over
    /// from a server that stopped needs one).
    fn can_restore<'a>(&'a self, fleet: &'a Tenancy, tenant: &'a Tenant) -> BoxFuture<'a, Result<bool>>;

    /// Restores `tenant`'s file on this server from the store, to its last commit there (a
    /// takeover: the server that had it stopped); returns when that commit was made (ms since
    /// the Unix epoch), when known.
    fn take_over<'a>(&'a self, fleet: &'a Tenancy, tenant: &'a Tenant) -> BoxFuture<'a, Result<Option<i64>>>;

    /// `tenant` was provisioned on this server of a cluster: its first copy goes to the store
    /// now (another server takes a tenant over from the store only), and the tenant to the
    /// server with the most room when that is another ([`crate::room`]). Failures are logged
    /// (the tenant stays here).
    fn after_create<'a>(&'a self, fleet: &'a Tenancy, tenant: &'a Tenant) -> BoxFuture<'a, ()>;

    /// The registered value itself (the registering crate finds its state again).
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}
