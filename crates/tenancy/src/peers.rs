//! The seam through which a server of a cluster asks another server for something: the
//! crate that serves HTTP holds the cluster's secret and its client, so it registers the
//! [`Peers`] ([`crate::Tenancy::set_peers`]) and the fleet's crates call them.
//!
//! Two requests so far: before a tenant moves to another server, that server *prepares* it —
//! restores it from the store beside where its file goes, while this server still serves it —
//! so that at the switch it only replays the last commits (`silo_backups`' moves); and a purge
//! asks every server to *forget* such a copy, which a move that never switched leaves behind.

use futures::future::BoxFuture;
use silo_core::TenantId;

use crate::Result;

/// What a server asks the other servers of its cluster.
pub trait Peers: Send + Sync + 'static {
    /// Asks the server reached at `advertise` to prepare `tenant`, about to move to it;
    /// answers once it has (or why it could not).
    fn prepare<'a>(&'a self, advertise: &'a str, tenant: TenantId) -> BoxFuture<'a, Result<()>>;

    /// Asks the server reached at `advertise` to remove its prepared copy of `tenant` (a
    /// purge reaches every copy); answers whether it had one.
    fn forget<'a>(&'a self, advertise: &'a str, tenant: TenantId) -> BoxFuture<'a, Result<bool>>;
}
