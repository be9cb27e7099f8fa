//! Entering a workspace: slug → tenant → membership → status → open handle, the same for the
//! HTML pages and the JSON API.
//!
//! The order matters for isolation: membership is checked before status, so someone outside a
//! tenant gets the same 404 for an unknown, suspended or deleted tenant — and for every object
//! in it — and never learns it exists. Objects are looked up only in the entered tenant's own
//! file, so an id from another tenant finds nothing.

use std::sync::Arc;

use silo_accounts::Accounts;
use silo_accounts::Role;
use silo_tenancy::{Tenant, TenantDb, TenantSlug, TenantStatus, Turn};

use super::error::Failure;

/// A workspace entered by a member.
pub struct Entered {
    /// The tenant.
    pub tenant: Tenant,
    /// The member's role.
    pub role: Role,
    /// The tenant's open database.
    pub db: Arc<TenantDb>,
    user_id: String,
    /// This request's turn at the tenant's connections, held until the handler is done, so
    /// its statements never wait on a lock that blocks the executor thread.
    _turn: Turn,
}

impl Entered {
    /// The member's row id in the tenant file (what tasks and comments point at). Looked up
    /// only by the handlers that write, so reads cost one query less.
    pub fn member_id(&self) -> Result<Option<i64>, Failure> {
        Ok(silo_workspace::members::by_user(&self.db, &self.user_id)?.map(|m| m.id))
    }

    /// Refuses (403) unless the member has at least `needed` (owner > admin > member).
    pub fn require(&self, needed: Role) -> Result<(), Failure> {
        if self.role.includes(needed) {
            Ok(())
        } else {
            Err(Failure::forbidden(format!("Only a workspace {} can do that.", needed.as_str())))
        }
    }
}

/// Enters `slug` as `user_id`.
pub async fn enter(accounts: &Accounts, slug: &str, user_id: &str) -> Result<Entered, Failure> {
    let slug = TenantSlug::parse(slug).map_err(|_| Failure::not_found())?;
    let tenancy = accounts.tenancy();
    let tenant = tenancy.resolve(&slug).await?;
    tracing::Span::current().record("tenant", tracing::field::display(tenant.id));
    let role = accounts.memberships().role(tenant.id, user_id).await?.ok_or_else(Failure::not_found)?;
    match tenant.status {
        TenantStatus::Active => {}
        TenantStatus::Suspended => return Err(silo_tenancy::Error::Suspended(tenant.slug.to_string()).into()),
        TenantStatus::Deleting | TenantStatus::Deleted => {
            return Err(silo_tenancy::Error::Gone(tenant.slug.to_string()).into());
        }
    }
    let db = tenancy.db_for(&tenant).await?;
    let turn = db.turn().await;
    Ok(Entered { tenant, role, db, user_id: user_id.to_owned(), _turn: turn })
}
