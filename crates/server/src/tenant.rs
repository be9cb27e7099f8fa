//! Entering a workspace: slug → tenant → membership → status → open handle, the same for the
//! HTML pages and the JSON API.
//!
//! The order matters for isolation: membership is checked before status, so someone outside a
//! tenant gets the same 404 for an unknown, suspended or deleted tenant — and for every object
//! in it — and never learns it exists. Objects are looked up only in the entered tenant's own
//! file, so an id from another tenant finds nothing.
//!
//! Entering is two steps, [`admit`] (control plane only) then [`Admitted::open`] (the file),
//! so a read that the caller already has can be answered between them without opening the
//! file: [`Admitted::etag`] validates it from the tenant's data version and the caller.

use silo_accounts::Accounts;
use silo_accounts::Role;
use silo_core::TenantSlug;
use silo_tenancy::{Tenant, TenantStatus, Turn};

use super::error::Failure;

/// A workspace a member is in: what a page needs to render, without the file.
pub struct Workspace {
    /// The tenant.
    pub tenant: Tenant,
    /// The member's role.
    pub role: Role,
    /// The validator of this read, when the request is a conditional-capable read.
    pub etag: Option<String>,
    user_id: String,
}

impl Workspace {
    /// Refuses (403) unless the member has at least `needed` (owner > admin > member).
    pub fn require(&self, needed: Role) -> Result<(), Failure> {
        if self.role.includes(needed) {
            Ok(())
        } else {
            Err(Failure::forbidden(format!("Only a workspace {} can do that.", needed.as_str())))
        }
    }
}

/// A workspace entered by a member: the [`Workspace`] and this request's turn at its file,
/// the only way to its connection. A handler [`leave`](Entered::leave)s — releases the turn —
/// once it has read or written the file, before it awaits the control plane or renders, so
/// the next request of the tenant does not wait on that.
pub struct Entered {
    workspace: Workspace,
    turn: Turn,
}

impl std::ops::Deref for Entered {
    type Target = Workspace;

    fn deref(&self) -> &Workspace {
        &self.workspace
    }
}

impl Entered {
    /// This request's turn at the tenant's file: what the repositories take.
    pub fn turn(&self) -> &Turn {
        &self.turn
    }

    /// Releases the turn; what remains renders the page.
    pub fn leave(self) -> Workspace {
        self.workspace
    }

    /// Records the validator of this read.
    pub fn set_etag(&mut self, etag: Option<String>) {
        self.workspace.etag = etag;
    }

    /// The member's row id in the tenant file (what tasks and comments point at). Looked up
    /// only by the handlers that write, so reads cost one query less.
    pub fn member_id(&self) -> Result<Option<i64>, Failure> {
        Ok(silo_workspace::members::by_user(&self.turn, &self.workspace.user_id)?.map(|m| m.id))
    }
}

/// A tenant as its members may see it: a held restore is nothing to them until an operator
/// releases it (404, as for a tenant they are not in).
fn visible(tenant: Tenant) -> Result<Tenant, Failure> {
    if tenant.held { Err(Failure::not_found()) } else { Ok(tenant) }
}

/// A workspace its member may enter (membership and status checked), not yet opened.
pub struct Admitted {
    /// The tenant.
    pub tenant: Tenant,
    /// The member's role.
    pub role: Role,
    user_id: String,
}

impl Admitted {
    /// The validator (`ETag`) of what this member reads from the tenant's file now: the file's
    /// data version (every commit, lease and retired handle changes it), the tenant's row and
    /// the member and role. Valid for answers built from the file alone.
    pub fn etag(&self, accounts: &Accounts) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        accounts.tenancy().data_version(self.tenant.id).hash(&mut hasher);
        let tenant = &self.tenant;
        (tenant.id.to_string(), tenant.slug.as_str(), &tenant.name, &tenant.plan, tenant.schema_version)
            .hash(&mut hasher);
        (self.role.as_str(), &self.user_id).hash(&mut hasher);
        format!("\"{:016x}\"", hasher.finish())
    }

    /// Opens the tenant's file and takes this request's turn at it.
    pub async fn open(self, accounts: &Accounts) -> Result<Entered, Failure> {
        let turn = accounts.tenancy().db_for(&self.tenant).await?.turn().await;
        let workspace = Workspace { tenant: self.tenant, role: self.role, etag: None, user_id: self.user_id };
        Ok(Entered { workspace, turn })
    }
}

/// Enters `slug` as `user_id`.
pub async fn enter(accounts: &Accounts, slug: &str, user_id: &str) -> Result<Entered, Failure> {
    admit(accounts, slug, user_id).await?.open(accounts).await
}

/// A workspace's billing, which stays open to its members while it is suspended (an owner
/// must be able to see the unpaid invoice and pay it): membership checked as [`admit`] does,
/// a suspended tenant admitted, the file not opened.
pub async fn admit_to_billing(accounts: &Accounts, slug: &str, user_id: &str) -> Result<Workspace, Failure> {
    let slug = TenantSlug::parse(slug).map_err(|_| Failure::not_found())?;
    let tenant = visible(accounts.tenancy().resolve(&slug).await?)?;
    let role = accounts.memberships().role(tenant.id, user_id).await?.ok_or_else(Failure::not_found)?;
    match tenant.status {
        TenantStatus::Active | TenantStatus::Suspended => {}
        TenantStatus::Deleting | TenantStatus::Deleted => {
            return Err(silo_tenancy::Error::Gone(tenant.slug.to_string()).into());
        }
    }
    Ok(Workspace { tenant, role, etag: None, user_id: user_id.to_owned() })
}

/// Checks that `user_id` may enter `slug` (without opening its file).
pub async fn admit(accounts: &Accounts, slug: &str, user_id: &str) -> Result<Admitted, Failure> {
    let slug = TenantSlug::parse(slug).map_err(|_| Failure::not_found())?;
    let tenancy = accounts.tenancy();
    let tenant = visible(tenancy.resolve(&slug).await?)?;
    tracing::Span::current().record("tenant", tracing::field::display(tenant.id));
    let role = accounts.memberships().role(tenant.id, user_id).await?.ok_or_else(Failure::not_found)?;
    match tenant.status {
        TenantStatus::Active => {}
        TenantStatus::Suspended => return Err(silo_tenancy::Error::Suspended(tenant.slug.to_string()).into()),
        TenantStatus::Deleting | TenantStatus::Deleted => {
            return Err(silo_tenancy::Error::Gone(tenant.slug.to_string()).into());
        }
    }
    Ok(Admitted { tenant, role, user_id: user_id.to_owned() })
}
