//! What every handler shares: the tenancy layer, the login throttle and the web settings.

use std::time::Duration;

use silo_tenancy::Tenancy;
use silo_tenancy::config::ServerSettings;
use silo_tenancy::sessions::{LoginThrottle, ThrottlePolicy};

/// Application state (one per server, shared by every worker).
pub struct AppState {
    /// Control plane, tenants, accounts.
    pub tenancy: Tenancy,
    /// Failed-login counters.
    pub throttle: LoginThrottle,
    /// Invalid bearer tokens per client address (the API's 429).
    pub api_throttle: LoginThrottle,
    /// Password-reset emails per account and per client (they send mail; separate from failed
    /// sign-ins so a locked-out person can still reset).
    pub reset_throttle: LoginThrottle,
    /// `[server]` settings.
    pub web: ServerSettings,
}

impl AppState {
    /// State over a tenancy layer, configured from its settings.
    pub fn new(tenancy: Tenancy) -> Self {
        let web = tenancy.settings().server.clone();
        let throttle = LoginThrottle::new(ThrottlePolicy {
            per_account: web.login_failures_per_account,
            per_client: web.login_failures_per_client,
            window: Duration::from_secs(web.login_window_seconds),
        });
        let api_throttle = LoginThrottle::new(ThrottlePolicy {
            per_account: u32::MAX,
            per_client: 50,
            window: Duration::from_secs(60),
        });
        let reset_throttle = LoginThrottle::new(ThrottlePolicy {
            per_account: 3,
            per_client: 20,
            window: Duration::from_secs(3600),
        });
        Self { tenancy, throttle, api_throttle, reset_throttle, web }
    }

    /// How long a new session lives.
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.web.session_hours.max(1) * 3600)
    }
}
