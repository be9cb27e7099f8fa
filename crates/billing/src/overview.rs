//! The operator's view of the money (`/admin`): monthly recurring revenue, open and overdue
//! invoices, tenants by plan.

use std::collections::{BTreeMap, HashMap};

use crate::Result;
use serde::Serialize;
use silo_core::db;
use silo_tenancy::TenantStatus;

use crate::invoices::money;
use crate::period::day_of_timestamp;

/// Amounts in one currency.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Money {
    /// How many.
    pub count: i64,
    /// Their sum, minor units.
    pub amount: i64,
    /// The sum in words.
    pub text: String,
}

/// The overview.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Overview {
    /// What the active tenants pay a month at their current plan and seats (trials excluded),
    /// by currency; `count` is the paying tenants.
    pub mrr: BTreeMap<String, Money>,
    /// Open invoices by currency.
    pub open: BTreeMap<String, Money>,
    /// Open invoices past their due date, by currency.
    pub overdue: BTreeMap<String, Money>,
    /// Live (active or suspended) tenants by plan.
    pub tenants_by_plan: BTreeMap<String, i64>,
}

impl crate::invoices::Invoices<'_> {
    /// The overview at this moment.
    pub async fn overview(&self) -> Result<Overview> {
        let control = self.0.tenancy().control().reader();
        let now = self.0.now();
        let today = day_of_timestamp(now.as_str())?;
        let mut overview = Overview::default();
        let members = self.0.accounts().memberships().counts().await?;
        // When each tenant first took each plan (a trial counts from there).
        let first_taken: HashMap<(String, String), String> =
            db::query_as("SELECT tenant_id, plan, min(since) FROM tenant_plans GROUP BY tenant_id, plan")
                .fetch_all(control)
                .await?
                .into_iter()
                .map(|(tenant, plan, since)| ((tenant, plan), since))
                .collect();
        for tenant in self.0.tenancy().control().live().await? {
            let plan = tenant.plan;
            *overview.tenants_by_plan.entry(plan.clone()).or_default() += 1;
            let Ok(terms) = self.0.plans().get(&plan) else { continue };
            let id = tenant.id.to_string();
            let seats = members.get(&id).copied().unwrap_or(0);
            let since = first_taken.get(&(id, plan));
            let trial_until = since.and_then(|s| day_of_timestamp(s).ok()).unwrap_or(i64::MIN)
                + i64::from(terms.trial_days);
            let monthly = terms.price_month + terms.price_seat * seats;
            if tenant.status == TenantStatus::Active && monthly > 0 && today >= trial_until {
                let entry = overview.mrr.entry(terms.currency.clone()).or_default();
                entry.count += 1;
                entry.amount += monthly;
            }
        }
        let rows: Vec<(String, i64, i64, i64, i64)> = db::query_as(
            "SELECT currency, count(*), CAST(sum(total) AS BIGINT), count(*) FILTER (WHERE due_at < ?1),
                    CAST(coalesce(sum(total) FILTER (WHERE due_at < ?1), 0) AS BIGINT)
             FROM invoices WHERE status = 'open' GROUP BY currency",
        )
        .bind(now.as_str())
        .fetch_all(control)
        .await?;
        for (currency, count, amount, late, late_amount) in rows {
            overview.open.insert(currency.clone(), Money { count, amount, text: String::new() });
            if late > 0 {
                overview
                    .overdue
                    .insert(currency, Money { count: late, amount: late_amount, text: String::new() });
            }
        }
        for map in [&mut overview.mrr, &mut overview.open, &mut overview.overdue] {
            for (currency, m) in map.iter_mut() {
                m.text = money(m.amount, currency);
            }
        }
        Ok(overview)
    }
}
