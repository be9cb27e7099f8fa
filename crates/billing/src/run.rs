//! The billing run: one invoice per tenant for a month that has ended (`silo billing run
//! --period YYYY-MM`, and the monthly `billing.run` job).
//!
//! For every tenant that existed during the month and has no invoice for it yet, the month is
//! cut into segments from the plan history (`tenant_plans`, kept by triggers on `tenants`):
//! a run of days on one plan, with its trial days (the first `trial_days` after the tenant
//! first took that plan) and its seats (the metered seat count of each day; the current
//! member count when the month has no usage rows). **Each day is billed at the highest plan
//! held at any moment of it** (the one that costs most that day), so a plan held for an hour
//! is paid for that day. [`crate::invoice::compute`] prices the segments, with storage beyond
//! the plan's limit from the month's costliest peak (each day's usage row keeps the largest
//! size sampled that day) and the tax rate of the billing country. Invoices with nothing to pay are not created. Drafts are inserted `OR IGNORE`
//! against the one-invoice-per-tenant-and-month index, then every draft of the month is
//! finalised in slug order ([`crate::invoices::Invoices::finalise`]).
//!
//! **Idempotent**: a second run finds every tenant invoiced and creates nothing; a run killed
//! between drafting and finalising leaves drafts that the next run finalises. Everything is
//! read in a handful of queries over the month (no tenant file is opened), so a run over
//! 100,000 tenants is a matter of seconds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use crate::{Error, Result};
use serde::Serialize;

use crate::invoice::{self, Segment};
use silo_core::db;
use silo_core::time::day_number;

use crate::Plan;
use crate::period::{Period, day_of_timestamp};

/// What a run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSummary {
    /// The month.
    pub period: String,
    /// Tenants that existed during it.
    pub tenants: usize,
    /// Tenants invoiced by an earlier run.
    pub already_invoiced: usize,
    /// Tenants with nothing to pay (free plans, trials).
    pub nothing_to_bill: usize,
    /// Drafts this run created.
    pub created: usize,
    /// Invoices this run finalised (its drafts, and any an interrupted run left).
    pub finalised: usize,
    /// The numbers it gave, first and last.
    pub numbers: Option<(i64, i64)>,
    /// Totals finalised, by currency (minor units).
    pub totals: BTreeMap<String, i64>,
    /// Tenants left out, and why.
    pub skipped: Vec<String>,
    /// How long it took.
    pub seconds: f64,
}

/// A tenant as the run needs it.
struct Billed {
    id: String,
    slug: String,
    created_at: String,
    deleted_at: Option<String>,
}

impl From<silo_tenancy::Tenant> for Billed {
    fn from(tenant: silo_tenancy::Tenant) -> Self {
        Self {
            id: tenant.id.to_string(),
            slug: tenant.slug.to_string(),
            created_at: tenant.created_at.as_str().to_owned(),
            deleted_at: tenant.deleted_at.map(|at| at.as_str().to_owned()),
        }
    }
}

/// One day of metered usage.
struct Day {
    day: u32,
    seats: i64,
    storage: i64,
}

/// A draft to insert.
struct Draft {
    tenant: String,
    currency: String,
    amounts: invoice::Amounts,
    tax_bp: u32,
}

impl crate::invoices::Invoices<'_> {
    /// Invoices every tenant for `period` (which must have ended); see the module docs.
    pub async fn run(&self, period: Period, actor: &str) -> Result<RunSummary> {
        let started = Instant::now();
        let now = self.0.now();
        if period.end().as_str() > now.as_str() {
            return Err(Error::invalid(
                "period",
                format!(
                    "the month {period} has not ended yet (it ends on {}): only a month that has ended can be billed",
                    period.next().date(1)
                ),
            ));
        }
        let control = self.0.tenancy().control().reader();
        let (start, end) = (period.start(), period.end());
        let tenants: Vec<Billed> = self
            .0
            .tenancy()
            .control()
            .existing_during(&start, &end)
            .await?
            .into_iter()
            // A restore held for the operators is theirs, not a customer's workspace: not
            // billed (nor dunned) while it is held.
            .filter(|tenant| !tenant.held)
            .map(Billed::from)
            .collect();
        let invoiced: HashSet<String> =
            db::query_scalar("SELECT tenant_id FROM invoices WHERE kind = 'invoice' AND period = ?1")
                .bind(period.to_string())
                .fetch_all(control)
                .await?
                .into_iter()
                .collect();
        let mut history: HashMap<String, Vec<(String, String)>> = HashMap::new();
        let rows: Vec<(String, String, String)> =
            db::query_as("SELECT tenant_id, plan, since FROM tenant_plans WHERE since < ?1 ORDER BY seq")
                .bind(&end)
                .fetch_all(control)
                .await?;
        for (tenant, plan, since) in rows {
            history.entry(tenant).or_default().push((plan, since));
        }
        let mut usage: HashMap<String, Vec<Day>> = HashMap::new();
        let rows: Vec<(String, String, i64, i64)> = db::query_as(
            "SELECT tenant_id, day, seats, storage_bytes FROM usage_daily WHERE day >= ?1 AND day < ?2 ORDER BY day",
        )
        .bind(period.date(1))
        .bind(period.next().date(1))
        .fetch_all(control)
        .await?;
        for (tenant, day, seats, storage) in rows {
            usage.entry(tenant).or_default().push(Day { day: period.day_of(&day), seats, storage });
        }
        let members = self.0.accounts().memberships().counts().await?;
        let buyers: HashMap<String, (String, String)> = db::query_as::<(String, String, String)>(
            "SELECT tenant_id, country, tax_id FROM billing_profiles",
        )
        .fetch_all(control)
        .await?
        .into_iter()
        .map(|(tenant, country, tax_id)| (tenant, (country, tax_id)))
        .collect();

        let mut summary =
            RunSummary { period: period.to_string(), tenants: tenants.len(), ..RunSummary::default() };
        let mut drafts = Vec::new();
        for tenant in &tenants {
            if invoiced.contains(&tenant.id) {
                summary.already_invoiced += 1;
                continue;
            }
            let plans = history.get(&tenant.id).map(Vec::as_slice).unwrap_or_default();
            let days = usage.get(&tenant.id).map(Vec::as_slice).unwrap_or_default();
            let current_seats = members.get(&tenant.id).copied().unwrap_or(0);
            match self.draft(period, tenant, plans, days, current_seats) {
                Ok(Some((currency, segments, overage_gb, overage_price))) => {
                    let (country, tax_id) =
                        buyers.get(&tenant.id).map_or(("", ""), |(c, t)| (c.as_str(), t.as_str()));
                    let tax_bp = self.0.settings().tax_for(country, tax_id);
                    let amounts =
                        invoice::compute(period.days(), &segments, overage_gb, overage_price, tax_bp);
                    if amounts.total == 0 {
                        summary.nothing_to_bill += 1;
                    } else {
                        drafts.push(Draft { tenant: tenant.id.clone(), currency, amounts, tax_bp });
                    }
                }
                Ok(None) => summary.nothing_to_bill += 1,
                Err(reason) => summary.skipped.push(format!("{}: {reason}", tenant.slug)),
            }
        }
        summary.created = self.insert_drafts(period, &drafts).await?;
        let drafted: Vec<(String, String)> = db::query_as(
            "SELECT id, tenant_id FROM invoices WHERE period = ?1 AND kind = 'invoice' AND status = 'draft'",
        )
        .bind(period.to_string())
        .fetch_all(self.0.tenancy().control().writer())
        .await?;
        // Numbered in the order of the tenants' slugs (as the run lists them).
        let order: HashMap<&str, usize> =
            tenants.iter().enumerate().map(|(i, t)| (t.id.as_str(), i)).collect();
        let mut drafted: Vec<(usize, String)> = drafted
            .into_iter()
            .map(|(id, tenant)| (order.get(tenant.as_str()).copied().unwrap_or(usize::MAX), id))
            .collect();
        drafted.sort();
        let pending: Vec<String> = drafted.into_iter().map(|(_, id)| id).collect();
        let finalised = self.finalise(&pending, actor).await?;
        summary.finalised = finalised.len();
        for invoice in &finalised {
            *summary.totals.entry(invoice.currency.clone()).or_default() += invoice.total;
        }
        let numbers = finalised.iter().filter_map(|i| i.number);
        summary.numbers = numbers.clone().min().zip(numbers.max());
        summary.seconds = started.elapsed().as_secs_f64();
        let mut tx = self.0.tenancy().control().writer().begin().await?;
        let detail = serde_json::json!({
            "period": summary.period, "created": summary.created, "finalised": summary.finalised,
            "skipped": summary.skipped.len(),
        });
        silo_core::audit::record(&mut tx, &self.0.now(), actor, "billing.run", None, &detail).await?;
        tx.commit().await?;
        Ok(summary)
    }

    /// A tenant's segments for the month (plan, trial and seats per run of days), its currency,
    /// and its storage overage; `None` when it held no plan during the month.
    #[allow(clippy::type_complexity)]
    fn draft(
        &self,
        period: Period,
        tenant: &Billed,
        plans: &[(String, String)],
        usage: &[Day],
        current_seats: i64,
    ) -> std::result::Result<Option<(String, Vec<Segment>, u64, i64)>, String> {
        let first = period.day_of(&tenant.created_at).max(1);
        let last = match &tenant.deleted_at {
            Some(deleted) => period.day_of(deleted).min(period.days()),
            None => period.days(),
        };
        if plans.is_empty() || first > last {
            return Ok(None);
        }
        let terms =
            |name: &str| self.0.plans().get(name).map_err(|_| format!("its plan `{name}` is not configured"));
        // The day each plan was first taken: trials count from there.
        let mut first_taken: HashMap<&str, i64> = HashMap::new();
        for (plan, since) in plans {
            let day = day_of_timestamp(since).map_err(|e| e.to_string())?;
            first_taken.entry(plan.as_str()).or_insert(day);
        }
        let mut segments: Vec<Segment> = Vec::new();
        let mut seats = usage.first().map_or(current_seats, |d| d.seats);
        let mut currency: Option<String> = None;
        // The storage charge of the month: the day whose peak size costs most beyond the limit
        // of the plan billed that day (gigabytes, price per gigabyte).
        let mut overage: (u64, i64) = (0, 0);
        for day in first..=last {
            if let Some(metered) = usage.iter().find(|d| d.day == day) {
                seats = metered.seats;
            }
            // Every plan held during `day` (the one it started with and any taken that day);
            // the day is billed at the highest of them, so a plan held for an hour is paid.
            // (Timestamps are RFC 3339 in UTC with milliseconds: they compare as text.)
            let midnight = format!("{}T00:00:00.000Z", period.date(day));
            let mut held: Vec<&String> = plans
                .iter()
                .rev()
                .find(|(_, since)| since.as_str() <= midnight.as_str())
                .map(|(plan, _)| plan)
                .into_iter()
                .collect();
            held.extend(
                plans
                    .iter()
                    .filter(|(_, since)| since.as_str() > midnight.as_str() && period.day_of(since) == day)
                    .map(|(plan, _)| plan),
            );
            let mut highest: Option<(&String, &Plan)> = None;
            for plan in held {
                let plan_terms = terms(plan)?;
                if highest.is_none_or(|(_, best)| rank(plan_terms, seats) > rank(best, seats)) {
                    highest = Some((plan, plan_terms));
                }
            }
            let Some((plan, plan_terms)) = highest else { continue };
            match &currency {
                None => currency = Some(plan_terms.currency.clone()),
                Some(c) if *c != plan_terms.currency => {
                    return Err(format!(
                        "its plans are in different currencies ({c}, {})",
                        plan_terms.currency
                    ));
                }
                Some(_) => {}
            }
            if let Some(peak) = usage.iter().find(|d| d.day == day).map(|d| d.storage.max(0) as u64)
                && let Some(limit) = plan_terms.storage_bytes()
                && peak > limit
            {
                let gb = (peak - limit).div_ceil(1_000_000_000);
                let charge = |(gb, price): (u64, i64)| i128::from(gb) * i128::from(price);
                if charge((gb, plan_terms.price_storage_gb)) >= charge(overage) {
                    overage = (gb, plan_terms.price_storage_gb);
                }
            }
            let trial_end = first_taken.get(plan.as_str()).copied().unwrap_or(i64::MIN)
                + i64::from(plan_terms.trial_days);
            let trial = day_number(period.year, period.month, day) < trial_end;
            let seat_count = u32::try_from(seats.max(0)).unwrap_or(u32::MAX);
            match segments.last_mut() {
                Some(s)
                    if s.plan == *plan
                        && s.trial == trial
                        && s.seats == seat_count
                        && s.to_day + 1 == day =>
                {
                    s.to_day = day;
                }
                _ => segments.push(Segment {
                    plan: plan.clone(),
                    terms: plan_terms.clone(),
                    from_day: day,
                    to_day: day,
                    seats: seat_count,
                    trial,
                }),
            }
        }
        let (Some(currency), false) = (currency, segments.is_empty()) else { return Ok(None) };
        Ok(Some((currency, segments, overage.0, overage.1)))
    }

    /// Inserts the drafts (a tenant already invoiced for the month is skipped by the unique
    /// index: a concurrent run got there first); returns how many were new.
    async fn insert_drafts(&self, period: Period, drafts: &[Draft]) -> Result<usize> {
        let mut created = 0;
        // A thousand drafts per statement (as one JSON array): the run's cost is statements,
        // not rows.
        for chunk in drafts.chunks(1_000) {
            let rows: Vec<serde_json::Value> = chunk
                .iter()
                .map(|d| {
                    serde_json::json!({
                        "id": uuid::Uuid::now_v7().to_string(), "tenant": d.tenant, "currency": d.currency,
                        "lines": d.amounts.lines, "subtotal": d.amounts.subtotal, "tax": d.amounts.tax,
                        "total": d.amounts.total, "tax_bp": d.tax_bp,
                    })
                })
                .collect();
            let inserted = db::query(
                "INSERT INTO invoices (id, kind, tenant_id, period, status, currency, lines, subtotal, tax,
                     total, tax_rate_bp, created_at)
                 SELECT value ->> '$.id', 'invoice', value ->> '$.tenant', ?2, 'draft', value ->> '$.currency',
                     value -> '$.lines', CAST(value ->> '$.subtotal' AS BIGINT), CAST(value ->> '$.tax' AS BIGINT),
                     CAST(value ->> '$.total' AS BIGINT), CAST(value ->> '$.tax_bp' AS BIGINT), ?3
                 FROM json_each(?1) WHERE TRUE
                 ON CONFLICT DO NOTHING",
            )
            .bind(serde_json::Value::Array(rows).to_string())
            .bind(period.to_string())
            .bind(self.0.now().as_str().to_owned())
            .execute(self.0.tenancy().control().writer())
            .await?;
            created += inserted.rows_affected() as usize;
        }
        Ok(created)
    }
}

/// How high a plan ranks on a day with `seats` members: what the day costs on it, then its
/// storage limit (no limit ranks highest).
fn rank(plan: &Plan, seats: i64) -> (i128, u64) {
    let cost = i128::from(plan.price_month) + i128::from(plan.price_seat) * i128::from(seats.max(0));
    (cost, plan.storage_bytes().unwrap_or(u64::MAX))
}
