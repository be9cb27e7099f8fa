//! The seam between the fleet and the crate that owns memberships (`silo-accounts`): a new
//! tenant is inserted with its first member, and a restored clone with its source's members,
//! each in one control-plane transaction — but the membership tables belong to the crate that
//! queries them, so the fleet calls the [`Members`] that crate registers
//! ([`crate::Tenancy::set_members`]) instead of writing their SQL itself.

use futures::future::BoxFuture;
use silo_core::db::Conn;
use silo_core::{TenantId, Timestamp};

use crate::Result;

/// A tenant's current member, as the control plane holds them (what a restored file's member
/// rows are brought to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentMember {
    /// The account.
    pub user_id: String,
    /// Its address.
    pub email: String,
    /// Its name.
    pub display_name: String,
    /// `owner`, `admin` or `member`.
    pub role: String,
}

/// What the fleet asks of the owner of memberships.
pub trait Members: Send + Sync {
    /// A tenant's current members.
    fn current(&self, tenant: TenantId) -> BoxFuture<'static, Result<Vec<CurrentMember>>>;

    /// Makes `user_id` a member of the new `tenant` with `role` since `now`, inside the
    /// transaction that inserts the tenant (`conn`).
    fn add_founder<'a>(
        &'a self,
        conn: &'a mut Conn,
        now: &'a Timestamp,
        tenant: TenantId,
        user_id: &'a str,
        role: &'a str,
    ) -> BoxFuture<'a, Result<()>>;

    /// Gives `clone` the members of `source`, and `source`'s former members' history (the
    /// clone's file holds their rows too, kept as gone: erasing one of them must reach it),
    /// inside the transaction that inserts the clone (`conn`).
    fn copy<'a>(&'a self, conn: &'a mut Conn, source: TenantId, clone: TenantId)
    -> BoxFuture<'a, Result<()>>;
}
