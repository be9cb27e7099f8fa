//! A plan's seat and project limits, checked where they are spent, in the same statement that
//! spends them: inviting someone takes a seat (members and pending invitations count),
//! creating a project takes one of the plan's projects. Operators adding members from the
//! console or the CLI are not held to seats (as they are not held to the role rules): the limit
//! is the customer's, not the operator's.

use crate::{Error, Result};
use silo_accounts::{Role, users::User};
use silo_tenancy::{Tenant, Turn};

use crate::Billing;

/// What a tenant's plan allows: seats, projects, API requests per minute (from [`Billing::limits`]).
#[derive(Clone, Copy)]
pub struct Limits<'a>(pub(crate) &'a Billing);

impl Billing {
    /// What a tenant's plan allows: seats, projects, API requests per minute.
    pub fn limits(&self) -> Limits<'_> {
        Limits(self)
    }
}

impl Limits<'_> {
    /// Invites `email` into `tenant` if its plan has a seat left (members and pending
    /// invitations count); the count and the invitation are one statement, so two concurrent
    /// invitations cannot both take the last seat (see
    /// `silo_accounts::invitations::Invitations::create`).
    pub async fn invite(
        &self,
        tenant: &Tenant,
        email: &str,
        role: Role,
        inviter: &User,
        base_url: &str,
    ) -> Result<(silo_accounts::invitations::Invitation, String)> {
        let seats = self.0.plans().0.get(&tenant.plan).and_then(|p| p.seats).map(i64::from);
        let invited =
            self.0.accounts().invitations().create(tenant, email, role, inviter, base_url, seats).await;
        match (invited, seats) {
            (Err(silo_accounts::Error::LimitReached(_)), Some(seats)) => {
                Err(self.no_seat_left(tenant, seats).await)
            }
            (invited, _) => Ok(invited?),
        }
    }

    async fn no_seat_left(&self, tenant: &Tenant, seats: i64) -> Error {
        let members = self.0.accounts().memberships().count(tenant.id).await.unwrap_or_default();
        let pending = self.0.accounts().invitations().pending_count(tenant.id).await.unwrap_or_default();
        Error::invalid(
            "seats",
            format!(
                "The {} plan has {seats} seats and all are taken ({members} members, {pending} pending invitations): \
             revoke an invitation, remove someone, or choose a larger plan.",
                tenant.plan
            ),
        )
    }

    /// Creates a project if the tenant's plan has one left (count and insert in one
    /// statement: two concurrent creations cannot both take the last one); returns its id.
    pub fn create_project(
        &self,
        tenant: &Tenant,
        db: &Turn,
        name: &str,
        description: &str,
        created_by: Option<i64>,
    ) -> Result<i64> {
        let limit = self.0.plans().0.get(&tenant.plan).and_then(|p| p.projects);
        let created =
            silo_workspace::projects::create_within(db, name, description, created_by, limit.map(i64::from))?;
        created.ok_or_else(|| {
            let limit = limit.unwrap_or_default();
            Error::invalid("projects", format!(
                "The {} plan allows {limit} projects and this workspace has {limit}: archive or delete one, or choose a larger plan.",
                tenant.plan
            ))
        })
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
    /// What the file holds of what the plan allows, in the plan table's units: "0.34 MB of
    /// 1 GB" (or "0.34 MB" without a limit).
    pub storage_text: String,
    /// Members plus pending invitations.
    pub seats_used: i64,
    /// Projects not archived (`None`: the file is not open to count them).
    pub projects: Option<i64>,
}

impl Limits<'_> {
    /// How much of its plan a tenant uses (`projects`: counted in its file by a caller with a
    /// turn there, [`silo_workspace::projects::count`]; the turn is not held across this
    /// function's reads of the control plane).
    pub async fn usage(&self, tenant: &Tenant, projects: Option<i64>) -> Result<Usage> {
        let path = self.0.tenancy().tenant_path(tenant)?;
        let members = self.0.accounts().memberships().count(tenant.id).await?;
        let pending = self.0.accounts().invitations().pending_count(tenant.id).await?;
        let terms = self.0.plans().0.get(&tenant.plan).cloned();
        let storage_bytes = silo_storage::sqlite::database_size(&path);
        let storage_mb = format!("{:.2}", storage_bytes as f64 / 1e6);
        let storage_text = match terms.as_ref().and_then(|t| t.storage_mb) {
            Some(limit) => format!("{storage_mb} MB of {}", crate::plans::megabytes_text(limit)),
            None => format!("{storage_mb} MB"),
        };
        Ok(Usage {
            plan: tenant.plan.clone(),
            price: terms.as_ref().map(crate::Plan::price_text),
            terms,
            storage_bytes,
            storage_mb,
            storage_text,
            seats_used: members + pending,
            projects,
        })
    }
}
