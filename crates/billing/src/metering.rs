//! Usage metering: requests and the accounts making them, per tenant, counted in memory on the
//! request path (one short lock, no I/O) and flushed every minute into `control.db`'s
//! `usage_daily` (one row per tenant and UTC day: requests added up; the file's size and the
//! seats at their largest seen that day — the peak the billing run charges storage and seats
//! from; active users, the distinct accounts seen that day).
//! Counts that cannot be written are kept for the next flush; a killed process loses at most
//! the last minute's requests, and a restart starts the day's set of accounts afresh (the row
//! keeps the larger count, so it can only under-count the day).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::Result;
use serde::Serialize;
use silo_core::db;
use silo_core::{TenantId, TenantRef};

use crate::Billing;

/// What the request path counted.
#[derive(Default)]
pub(crate) struct Meter(parking_lot::Mutex<Counts>);

#[derive(Default)]
struct Counts {
    /// Requests since the last flush, by tenant.
    requests: HashMap<TenantId, u64>,
    /// The UTC day `active` is about.
    day: String,
    /// The accounts seen today, by tenant.
    active: HashMap<TenantId, HashSet<Box<str>>>,
}

/// One tenant's day.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct UsageDay {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// Requests that day.
    pub requests: i64,
    /// The file's size, the largest seen that day.
    pub storage_bytes: i64,
    /// Members plus pending invitations, the most seen that day.
    pub seats: i64,
    /// Distinct accounts with a request that day.
    pub active_users: i64,
}

/// Requests and active users per tenant and day (from [`Billing::metering`]).
#[derive(Clone, Copy)]
pub struct Metering<'a>(pub(crate) &'a Billing);

impl Billing {
    /// Requests and active users per tenant and day.
    pub fn metering(&self) -> Metering<'_> {
        Metering(self)
    }
}

impl Metering<'_> {
    /// Counts one request by account `user` for `tenant` (the request path: a lock, an add,
    /// and a set lookup that allocates only for the day's first request by that account).
    pub fn record(&self, tenant: TenantId, user: &str) {
        if !self.0.settings().metering {
            return;
        }
        let mut counts = self.0.meter.0.lock();
        *counts.requests.entry(tenant).or_default() += 1;
        let seen = counts.active.entry(tenant).or_default();
        if !seen.contains(user) {
            seen.insert(user.into());
        }
    }

    /// Writes the counts since the last flush into today's rows; returns how many tenants.
    pub async fn flush(&self) -> Result<usize> {
        let today = self.0.now().date().to_owned();
        let counts: HashMap<TenantId, (u64, i64)> = {
            let mut meter = self.0.meter.0.lock();
            if meter.day != today {
                // A new day counts its accounts afresh (those seen in the minute before this
                // flush are counted again at their next request).
                if !meter.day.is_empty() {
                    meter.active.clear();
                }
                meter.day = today;
            }
            let requests = std::mem::take(&mut meter.requests);
            requests
                .into_iter()
                .map(|(tenant, n)| (tenant, (n, meter.active.get(&tenant).map_or(0, |s| s.len() as i64))))
                .collect()
        };
        if counts.is_empty() {
            return Ok(0);
        }
        match self.write_usage(&counts).await {
            Ok(()) => Ok(counts.len()),
            Err(e) => {
                // Keep them for the next flush.
                let mut meter = self.0.meter.0.lock();
                for (tenant, (n, _)) in counts {
                    *meter.requests.entry(tenant).or_default() += n;
                }
                Err(e)
            }
        }
    }

    async fn write_usage(&self, counts: &HashMap<TenantId, (u64, i64)>) -> Result<()> {
        let mut rows = Vec::with_capacity(counts.len());
        for (&tenant, &(requests, active)) in counts {
            let Ok(row) = self.0.tenancy().tenant(&TenantRef::Id(tenant)).await else { continue };
            let storage = self
                .0
                .tenancy()
                .tenant_path(&row)
                .map(|p| silo_storage::sqlite::database_size(&p))
                .unwrap_or(0);
            let seats = self.0.accounts().memberships().count(tenant).await?
                + self.0.accounts().invitations().pending_count(tenant).await?;
            rows.push((tenant, requests as i64, storage as i64, seats, active));
        }
        let today = self.0.now().date().to_owned();
        let mut tx = self.0.tenancy().control().writer().begin().await?;
        for (tenant, requests, storage, seats, active) in rows {
            db::query(
                "INSERT INTO usage_daily (tenant_id, day, requests, storage_bytes, seats, active_users)
                 VALUES (?1, ?6, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant_id, day) DO UPDATE SET requests = usage_daily.requests + excluded.requests,
                     storage_bytes = max(usage_daily.storage_bytes, excluded.storage_bytes),
                     seats = max(usage_daily.seats, excluded.seats),
                     active_users = max(usage_daily.active_users, excluded.active_users)",
            )
            .bind(tenant.to_string())
            .bind(requests)
            .bind(storage)
            .bind(seats)
            .bind(active)
            .bind(&today)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A tenant's last `days` days of usage, oldest first.
    pub async fn days(&self, tenant: TenantId, days: i64) -> Result<Vec<UsageDay>> {
        let mut rows: Vec<UsageDay> = db::query_as(
            "SELECT day, requests, storage_bytes, seats, active_users FROM usage_daily WHERE tenant_id = ?1 ORDER BY day DESC LIMIT ?2",
        )
        .bind(tenant.to_string())
        .bind(days)
        .fetch_all(self.0.tenancy().control().reader())
        .await?;
        rows.reverse();
        Ok(rows)
    }

    /// Flushes every `every` until `stop`, then once more (the application's loop).
    pub async fn run(self, every: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                () = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.flush().await {
                tracing::warn!(error = %e, "usage flush failed; counts kept for the next one");
            }
        }
        if let Err(e) = self.flush().await {
            tracing::warn!(error = %e, "the last usage flush failed");
        }
        tracing::info!("usage meter stopped");
    }
}
