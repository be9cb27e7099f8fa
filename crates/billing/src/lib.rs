//! `silo-billing`: plans and the limits they set, above the accounts (a plan's seats count
//! memberships) and below the web layer, which renders them. No HTTP types here.
//!
//! Built so far: plans from the settings ([`plans`]) and the storage quota, enforced at the
//! file: [`Billing::new`] installs each plan's storage limit into the fleet's handle cache, so
//! every tenant connection runs with `PRAGMA max_page_count` from its plan, and
//! [`Billing::change_plan`] applies a new plan to already-open handles at once. A write past
//! the limit fails with `Error::QuotaExceeded` (HTTP 507), is rolled back, and loses nothing.
//! Seats (invitations) and projects are checked where they are spent ([`limits`]); API
//! requests per minute per tenant are admitted by a token bucket ([`rate`]); requests are
//! metered per tenant and day ([`metering`]). An invoice's arithmetic (day-based proration,
//! trials, storage overage, tax, in integer minor units) is [`invoice`]; storing, numbering
//! and running invoices, and dunning, are not built yet.
//!
//! # Layout
//! - [`Billing`] (this file): the service over the accounts and the plans.
//! - [`plans`]: [`Plan`], [`Plans`] (defaults `free`, `team`, `business`).
//! - [`limits`]: seats and projects, checked on invite and create.
//! - [`rate`]: API requests per minute per tenant.
//! - [`metering`]: requests per tenant, counted in memory, flushed to `usage_daily` each minute.
//! - [`invoice`]: one month's lines and totals for a tenant (pure arithmetic).
//! - [`accounts`]: the layer below, re-exported.

pub mod invoice;
pub mod limits;
pub mod metering;
pub mod plans;
pub mod rate;

use std::sync::Arc;

pub use plans::{Plan, Plans};
pub use silo_accounts as accounts;
use silo_accounts::Accounts;
use silo_tenancy::{Result, Tenancy, Tenant, TenantRef};

/// Billing over one process's accounts and fleet.
#[derive(Clone)]
pub struct Billing {
    accounts: Accounts,
    plans: Arc<Plans>,
    buckets: Arc<rate::Buckets>,
    meter: Arc<metering::Meter>,
}

impl Billing {
    /// Billing with `plans`; installs their storage limits into the fleet's handle cache (the
    /// quota holds for every handle opened from now on).
    pub fn new(accounts: Accounts, plans: Plans) -> Self {
        let plans = Arc::new(plans);
        let limits = plans.clone();
        accounts
            .tenancy()
            .cache()
            .set_storage_limits(Arc::new(move |plan: &str| limits.0.get(plan).and_then(Plan::storage_bytes)));
        Self { accounts, plans, buckets: Arc::default(), meter: Arc::default() }
    }

    /// The people.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The fleet.
    pub fn tenancy(&self) -> &Tenancy {
        self.accounts.tenancy()
    }

    /// The plans.
    pub fn plans(&self) -> &Plans {
        &self.plans
    }

    /// Provisions a tenant on a plan that exists (the default plan, `free`, when none is given).
    pub async fn create_tenant(&self, request: silo_tenancy::CreateTenant, actor: &str) -> Result<Tenant> {
        if let Some(plan) = &request.plan {
            self.plans.get(plan)?;
        }
        self.tenancy().tenants().create(request, actor).await
    }

    /// Moves a tenant to another plan (which must exist); its storage limit applies at once,
    /// to the open handle too. Audited.
    pub async fn change_plan(&self, tenant: &TenantRef, plan: &str, actor: &str) -> Result<Tenant> {
        self.plans.get(plan)?;
        let tenant = self.tenancy().tenant(tenant).await?;
        self.tenancy().tenants().set_plan(tenant.id, plan, actor).await
    }
}
