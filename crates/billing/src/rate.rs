//! API requests per minute per tenant (a plan's `api_rpm`): a token bucket per tenant that
//! holds `api_rpm` requests and refills `api_rpm` per minute, so a burst up to the plan's
//! minute is served and the rate beyond it is the plan's. Beyond it the API answers 429 with
//! `Retry-After` (the seconds until one request is allowed again).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::{Error, Result};
use silo_core::TenantId;
use silo_tenancy::Tenant;

/// Each tenant's bucket: tokens left and when they were counted.
#[derive(Default)]
pub(crate) struct Buckets(parking_lot::Mutex<HashMap<TenantId, (f64, Instant)>>);

impl Buckets {
    /// Takes one request from the tenant's bucket of `rpm`; how long to wait when it is empty.
    fn take(&self, tenant: TenantId, rpm: u32, now: Instant) -> std::result::Result<(), Duration> {
        let rpm = f64::from(rpm.max(1));
        let per_second = rpm / 60.0;
        let mut buckets = self.0.lock();
        let (tokens, at) = buckets.entry(tenant).or_insert((rpm, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * per_second).min(rpm);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_second))
        }
    }
}

impl crate::limits::Limits<'_> {
    /// Admits one API request for `tenant` under its plan's `api_rpm` (no limit: always);
    /// beyond it, `Error::Throttled` with the wait.
    pub fn admit_api_request(&self, tenant: &Tenant) -> Result<()> {
        let Some(rpm) = self.0.plans().0.get(&tenant.plan).and_then(|p| p.api_rpm) else { return Ok(()) };
        self.0
            .buckets
            .take(tenant.id, rpm, Instant::now())
            .map_err(|wait| Error::Throttled(wait.max(Duration::from_secs(1))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_serves_a_minutes_burst_then_the_rate() {
        let buckets = Buckets::default();
        let (tenant, start) = (TenantId::new(), Instant::now());
        for _ in 0..60 {
            assert!(buckets.take(tenant, 60, start).is_ok());
        }
        let wait = buckets.take(tenant, 60, start).unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
        assert!(buckets.take(tenant, 60, start + Duration::from_millis(1_000)).is_ok(), "refilled one");
        assert!(buckets.take(tenant, 60, start + Duration::from_millis(1_100)).is_err());
        assert!(buckets.take(TenantId::new(), 60, start).is_ok(), "another tenant has its own");
    }
}
