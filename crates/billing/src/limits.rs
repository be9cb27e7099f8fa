//! A plan's seat and project limits, checked where they are spent: inviting someone takes a
//! seat (members and pending invitations count), creating a project takes one of the plan's
//! projects. Operators adding members from the console or the CLI are not held to seats (as
//! they are not held to the role rules): the limit is the customer's, not the operator's.

use silo_accounts::{Role, users::User};
use silo_tenancy::{Error, Result, Tenant, TenantDb};

use crate::Billing;

impl Billing {
    /// Refuses a new seat when the tenant's plan has none left.
    pub async fn check_seat(&self, tenant: &Tenant) -> Result<()> {
        let Some(seats) = self.plans().0.get(&tenant.plan).and_then(|p| p.seats) else { return Ok(()) };
        let members = self.accounts().memberships().count(tenant.id).await?;
        let pending = self.accounts().invitations().pending(tenant.id).await?.len() as i64;
        if members + pending >= i64::from(seats) {
            return Err(Error::InvalidInput(format!(
                "The {} plan has {seats} seats and all are taken ({members} members, {pending} pending invitations): \
                 revoke an invitation, remove someone, or choose a larger plan.",
                tenant.plan
            )));
        }
        Ok(())
    }

    /// Invites `email` into `tenant` if its plan has a seat left (see
    /// `silo_accounts::invitations::Invitations::create`).
    pub async fn invite(
        &self,
        tenant: &Tenant,
        email: &str,
        role: Role,
        inviter: &User,
        base_url: &str,
    ) -> Result<(silo_accounts::invitations::Invitation, String)> {
        self.check_seat(tenant).await?;
        self.accounts().invitations().create(tenant, email, role, inviter, base_url).await
    }

    /// Refuses a new project when the tenant's plan has none left.
    pub fn check_project(&self, tenant: &Tenant, db: &TenantDb) -> Result<()> {
        let Some(limit) = self.plans().0.get(&tenant.plan).and_then(|p| p.projects) else { return Ok(()) };
        let projects = silo_workspace::projects::count(db)?;
        if projects >= i64::from(limit) {
            return Err(Error::InvalidInput(format!(
                "The {} plan allows {limit} projects and this workspace has {projects}: archive or delete one, or choose a larger plan.",
                tenant.plan
            )));
        }
        Ok(())
    }
}

/// A tenant's use of its plan's limits, for the workspace's billing card and the console.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Usage {
    /// The plan's name.
    pub plan: String,
    /// The plan's terms.
    pub terms: Option<crate::Plan>,
    /// The plan's prices in words.
    pub price: Option<String>,
    /// Bytes of the tenant's file (with its WAL).
    pub storage_bytes: u64,
    /// The same in MB, for people.
    pub storage_mb: String,
    /// Members plus pending invitations.
    pub seats_used: i64,
    /// Projects not archived (`None`: the file is not open to count them).
    pub projects: Option<i64>,
}

impl Billing {
    /// How much of its plan a tenant uses (`db`: its open handle, to count projects).
    pub async fn usage(&self, tenant: &Tenant, db: Option<&TenantDb>) -> Result<Usage> {
        let path = self.tenancy().tenant_path(tenant)?;
        let members = self.accounts().memberships().count(tenant.id).await?;
        let pending = self.accounts().invitations().pending(tenant.id).await?.len() as i64;
        let terms = self.plans().0.get(&tenant.plan).cloned();
        let storage_bytes = silo_storage::sqlite::database_size(&path);
        Ok(Usage {
            plan: tenant.plan.clone(),
            price: terms.as_ref().map(crate::Plan::price_text),
            terms,
            storage_bytes,
            storage_mb: format!("{:.2}", storage_bytes as f64 / 1e6),
            seats_used: members + pending,
            projects: db.map(silo_workspace::projects::count).transpose()?,
        })
    }
}
