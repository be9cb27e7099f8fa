//! `silo-billing`: plans, quotas, metering, invoices and dunning, above the accounts (a plan's
//! seats count memberships) and below the web layer, which renders them. No HTTP types here.
//!
//! Plans come from the settings ([`plans`]). The storage quota is enforced at the file:
//! [`Billing::new`] installs each plan's storage limit into the fleet's handle cache, so every
//! tenant connection runs with `PRAGMA max_page_count` from its plan, and
//! [`Subscriptions::change`] applies a new plan to already-open handles at once. Seats and
//! projects are checked where they are spent ([`limits`]); API requests per minute per tenant
//! are admitted by a token bucket ([`rate`]); requests and active users are metered per tenant
//! and day ([`metering`]). Once a month the billing run ([`run`]) turns the plan history and
//! the metered seats into one invoice per tenant ([`invoice`] is the arithmetic, [`invoices`]
//! the stored documents with gapless numbers, credit notes and payment), paid through a
//! [`payment::PaymentProvider`]; [`dunning`] reminds and suspends over unpaid ones.
//!
//! # Layout
//! - [`Billing`] (this file): the accounts, the plans and `[billing]`, and the small services it
//!   hands out: [`Subscriptions`] (this file), [`limits::Limits`], [`metering::Metering`],
//!   [`invoices::Invoices`], [`dunning::Dunning`], [`profile::Profiles`], [`jobs::Schedule`].
//! - [`plans`]: [`Plan`], [`Plans`] (defaults `free`, `team`, `business`).
//! - [`settings`]: [`BillingSettings`] (`[billing]`: seller, terms, tax rates, dunning).
//! - [`limits`]: seats and projects, checked on invite and create.
//! - [`rate`]: API requests per minute per tenant.
//! - [`metering`]: requests and active users per tenant, counted in memory, flushed each minute.
//! - [`period`]: a calendar month and its day arithmetic.
//! - [`invoice`]: one month's lines and totals for a tenant (pure arithmetic).
//! - [`run`]: the billing run over every tenant for a month.
//! - [`invoices`]: stored invoices: finalise (numbers), pay, void (credit notes), CSV.
//! - [`payment`]: the [`payment::PaymentProvider`] trait and the manual provider.
//! - [`dunning`]: reminders and suspension over overdue invoices.
//! - [`profile`]: a tenant's billing contact; [`countries`]: the ISO 3166-1 codes it may name.
//! - [`overview`]: MRR, open and overdue invoices, tenants by plan.
//! - [`jobs`]: the `billing.run` and `billing.dunning` jobs and their schedule.
//! - [`accounts`]: the layer below, re-exported.

pub mod countries;
pub mod dunning;
mod error;
pub mod invoice;
pub mod invoices;
pub mod jobs;
pub mod limits;
pub mod metering;
pub mod overview;
pub mod payment;
pub mod period;

use std::collections::HashMap;
pub mod plans;
pub mod profile;
pub mod rate;
pub mod run;
pub mod settings;

use std::sync::Arc;

pub use error::{Error, Result};
pub use invoices::{Invoice, InvoiceFilter, InvoiceStatus};
pub use period::Period;
pub use plans::{Plan, Plans};
pub use profile::BillingProfile;
pub use settings::{BillingSettings, DunningSettings};
pub use silo_accounts as accounts;
use silo_accounts::Accounts;
use silo_core::TenantRef;
use silo_core::db;
use silo_tenancy::{Tenancy, Tenant};

/// Billing over one process's accounts and fleet.
#[derive(Clone)]
pub struct Billing {
    accounts: Accounts,
    plans: Arc<Plans>,
    settings: Arc<BillingSettings>,
    payments: Arc<dyn payment::PaymentProvider>,
    buckets: Arc<rate::Buckets>,
    meter: Arc<metering::Meter>,
}

impl Billing {
    /// Billing with `plans` and `settings`, paid through the manual provider; installs the
    /// plans' storage limits into the fleet's handle cache (the quota holds for every handle
    /// opened from now on).
    pub fn new(accounts: Accounts, plans: Plans, settings: BillingSettings) -> Self {
        let plans = Arc::new(plans);
        // A purged workspace's billing contact goes with it (its invoices keep their copy).
        accounts.tenancy().add_purge_statements(&["DELETE FROM billing_profiles WHERE tenant_id = ?1"]);
        // An erased person's address leaves the billing contacts; the billed company's name,
        // address and VAT number stay (issued invoices copy them, Art. 17(3)(b)).
        accounts.add_erasure_steps(&[silo_core::erasure::ErasureStep {
            table: "billing_profiles",
            rows: "billing_profiles WHERE lower(email) = ?2",
            set: Some("email = ''"),
        }]);
        let limits = plans.clone();
        accounts
            .tenancy()
            .cache()
            .set_storage_limits(Arc::new(move |plan: &str| limits.0.get(plan).and_then(Plan::storage_bytes)));
        let payments =
            Arc::new(payment::ManualProvider { instructions: settings.payment_instructions.clone() });
        Self {
            accounts,
            plans,
            settings: Arc::new(settings),
            payments,
            buckets: Arc::default(),
            meter: Arc::default(),
        }
    }

    /// Now, on the process's clock (the control plane's): invoice dates, due dates, dunning.
    pub fn now(&self) -> silo_core::Timestamp {
        self.accounts.tenancy().control().now()
    }

    /// The same billing, paid through `provider` (a card processor) instead.
    pub fn with_payment_provider(self, provider: Arc<dyn payment::PaymentProvider>) -> Self {
        Self { payments: provider, ..self }
    }

    /// `[billing]`.
    pub fn settings(&self) -> &BillingSettings {
        &self.settings
    }

    /// How invoices are paid.
    pub fn payments(&self) -> &dyn payment::PaymentProvider {
        self.payments.as_ref()
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
}

/// Which plan each tenant is on: provisioning on a plan, owners' and operators' changes (from [`Billing::subscriptions`]).
#[derive(Clone, Copy)]
pub struct Subscriptions<'a>(pub(crate) &'a Billing);

/// A plan change before it is confirmed: what it does to this month's invoice.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ChangePreview {
    /// The plan held now.
    pub from: String,
    /// The plan chosen.
    pub to: String,
    /// The days of this month the change is billed for.
    pub days: u32,
    /// The change of this month's invoice, minor units before tax (negative: less).
    pub change: i64,
    /// Its currency.
    pub currency: String,
    /// The change in words.
    pub text: String,
}

impl Billing {
    /// Which plan each tenant is on: provisioning on a plan, owners' and operators' changes.
    pub fn subscriptions(&self) -> Subscriptions<'_> {
        Subscriptions(self)
    }
}

impl Subscriptions<'_> {
    /// Provisions a tenant on a plan that exists (the default plan, `free`, when none is given),
    /// with `owner` as its owner when given: tenant, file and owner as one operation.
    pub async fn create_tenant(
        &self,
        request: silo_tenancy::CreateTenant,
        owner: Option<&silo_accounts::users::User>,
        actor: &str,
    ) -> Result<Tenant> {
        if let Some(plan) = &request.plan {
            self.0.plans.get(plan)?;
        }
        let founder = owner.map(|user| {
            silo_accounts::memberships::Memberships::founder(user, silo_accounts::Role::Owner, &self.0.now())
        });
        Ok(self.0.tenancy().tenants().create_with(request, founder, actor).await?)
    }

    /// An operator provisions a tenant for `owner` (an email), as [`Subscriptions::create_tenant`]:
    /// an address with an account becomes the owner at once; one without is sent an
    /// invitation to own it (returned with its link's secret), instead of being refused.
    pub async fn provision(
        &self,
        request: silo_tenancy::CreateTenant,
        owner: Option<&str>,
        operator: &silo_accounts::users::User,
        base_url: &str,
    ) -> Result<(Tenant, Option<silo_accounts::invitations::Invitation>)> {
        let accounts = self.0.accounts();
        let Some(owner) = owner else {
            return Ok((self.create_tenant(request, None, &operator.email).await?, None));
        };
        let email = silo_accounts::Email::parse(owner)?;
        match accounts.users().by_email(email.as_str()).await {
            Ok(user) => Ok((self.create_tenant(request, Some(&user), &operator.email).await?, None)),
            Err(silo_accounts::Error::UnknownUser(_)) => {
                let tenant = self.create_tenant(request, None, &operator.email).await?;
                let (invitation, _secret) = accounts
                    .invitations()
                    .invite_first_owner(&tenant, email.as_str(), operator, base_url)
                    .await?;
                Ok((tenant, Some(invitation)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// What moving `tenant` to `plan` today would change on this month's invoice, before it is
    /// confirmed, as the run will bill it: each day at the dearest plan held that day (so today
    /// counts only when `plan` is dearer than every plan held today), trials from the day a plan
    /// was first taken, at today's seats as metering counts them, before tax.
    pub async fn preview(&self, tenant: &Tenant, plan: &str) -> Result<ChangePreview> {
        if tenant.plan == plan {
            // A change to the plan it is on would cost nothing and change nothing.
            return Err(Error::invalid("plan", format!("This workspace is on the {plan} plan already.")));
        }
        let to = self.self_service(plan)?.clone();
        let now = self.0.now();
        let period = Period::of(now.as_str())?;
        let (days_in_month, today) = (period.days(), period.day_of(now.as_str()));
        // Seats as metering counts them, which is what the month's days are billed at: members
        // and pending invitations.
        let seats = self.0.accounts().memberships().count(tenant.id).await?
            + self.0.accounts().invitations().pending_count(tenant.id).await?;
        let seats = u32::try_from(seats).unwrap_or(0);
        let control = self.0.tenancy().control().reader();
        // The plans held at some moment today (the run bills today at the dearest of them):
        // the one in force when the day began, and every one taken since.
        let today_start = format!("{}T00:00:00.000Z", &now.as_str()[..10]);
        let mut held_today: Vec<String> = db::query_scalar(
            "SELECT plan FROM tenant_plans WHERE tenant_id = ?1 AND since >= ?2
             UNION SELECT plan FROM (SELECT plan FROM tenant_plans WHERE tenant_id = ?1 AND since < ?2
                                     ORDER BY seq DESC LIMIT 1) AS in_force",
        )
        .bind(tenant.id.to_string())
        .bind(&today_start)
        .fetch_all(control)
        .await?;
        if !held_today.contains(&tenant.plan) {
            held_today.push(tenant.plan.clone());
        }
        // Trials count from the day a plan was first taken (as the billing run counts them): a
        // plan never held starts its trial today.
        let today_number = period::day_of_timestamp(now.as_str())?;
        let mut terms = HashMap::new();
        for name in held_today.iter().map(String::as_str).chain([plan]) {
            if terms.contains_key(name) {
                continue;
            }
            let first_taken: Option<String> =
                db::query_scalar("SELECT min(since) FROM tenant_plans WHERE tenant_id = ? AND plan = ?")
                    .bind(tenant.id.to_string())
                    .bind(name)
                    .fetch_one(control)
                    .await?;
            let first = match first_taken {
                Some(since) => period::day_of_timestamp(&since)?,
                None => today_number,
            };
            let plan_terms = self.0.plans.get(name).cloned().unwrap_or_default();
            let trial_end = first + i64::from(plan_terms.trial_days);
            terms.insert(name.to_owned(), (plan_terms, trial_end));
        }
        let in_trial = |name: &str, day: u32| {
            silo_core::time::day_number(period.year, period.month, day) < terms[name].1
        };
        // One day on one plan, as the run prices it (cumulative rounding makes the days of a
        // month add up to its price exactly).
        let day_cost = |name: &str, day: u32| {
            let segment = invoice::Segment {
                plan: name.to_owned(),
                terms: terms[name].0.clone(),
                from_day: day,
                to_day: day,
                seats,
                trial: in_trial(name, day),
            };
            invoice::compute(days_in_month, &[segment], 0, 0, 0).subtotal
        };
        let dearest_today = |plans: &[&str]| plans.iter().map(|p| day_cost(p, today)).max().unwrap_or(0);
        let before: Vec<&str> = held_today.iter().map(String::as_str).collect();
        let after: Vec<&str> = before.iter().copied().chain([plan]).collect();
        let today_change = dearest_today(&after) - dearest_today(&before);
        let rest: i64 =
            (today + 1..=days_in_month).map(|day| day_cost(plan, day) - day_cost(&tenant.plan, day)).sum();
        let change = today_change + rest;
        let first = if today_change > 0 { today } else { today + 1 };
        let days = (days_in_month + 1).saturating_sub(first);
        let amount = invoices::money(change.abs(), &to.currency);
        let days_left = format!("{days} day{}", if days == 1 { "" } else { "s" });
        let free = (first..=days_in_month).filter(|&day| in_trial(plan, day)).count();
        let trial = match free {
            0 => String::new(),
            n => format!(" The first {n} day{} on {plan} are its free trial.", if n == 1 { "" } else { "s" }),
        };
        let seats_text = format!(
            " At {seats} seat{} (members and pending invitations).",
            if seats == 1 { "" } else { "s" }
        );
        let text = match change {
            0 => format!(
                "This month's invoice does not change: the {days_left} left cost the same on {plan} as on {}.",
                tenant.plan
            ),
            c if c > 0 => format!(
                "This month's invoice grows by {amount} (before tax): the {days_left} from {} on are billed at {plan}'s price instead of {}'s.",
                if first == today { "today" } else { "tomorrow" },
                tenant.plan
            ),
            _ => format!(
                "This month's invoice shrinks by {amount} (before tax): the {days_left} from tomorrow on are billed at {plan}'s price instead of {}'s (today is billed at the dearest plan held today).",
                tenant.plan
            ),
        };
        let text = format!("{text}{trial}{}", if to.price_seat > 0 { seats_text } else { String::new() });
        Ok(ChangePreview {
            from: tenant.plan.clone(),
            to: plan.to_owned(),
            days,
            change,
            currency: to.currency.clone(),
            text,
        })
    }

    /// An owner moves their tenant to another plan: only to a plan marked `self_service`
    /// (others are given by operators); otherwise as [`Subscriptions::change`].
    pub async fn choose(&self, tenant: &TenantRef, plan: &str, actor: &str) -> Result<Tenant> {
        let current = self.0.tenancy().tenant(tenant).await?;
        if current.plan == plan {
            // The plan it is on (an operator's, shown selected): nothing to change.
            return Ok(current);
        }
        self.self_service(plan)?;
        self.change(tenant, plan, actor).await
    }

    /// A plan an owner may choose themselves, or why not.
    fn self_service(&self, plan: &str) -> Result<&Plan> {
        let terms = self.0.plans.get(plan)?;
        if !terms.self_service {
            let open: Vec<&str> = self.0.plans.self_service().collect();
            return Err(Error::Forbidden(format!(
                "The {plan} plan is arranged with us, not chosen here (plans you can choose: {}).",
                open.join(", ")
            )));
        }
        Ok(terms)
    }

    /// Moves a tenant to another plan (which must exist); its storage limit applies at once,
    /// to the open handle too. Audited.
    pub async fn change(&self, tenant: &TenantRef, plan: &str, actor: &str) -> Result<Tenant> {
        self.0.plans.get(plan)?;
        let tenant = self.0.tenancy().tenant(tenant).await?;
        Ok(self.0.tenancy().tenants().set_plan(tenant.id, plan, actor).await?)
    }
}
