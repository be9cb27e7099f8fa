//! What every handler shares: the domain (billing, over the accounts and the fleet), the
//! throttles, the links and the web settings.

use std::time::Duration;

use crate::ServerSettings;
use silo_accounts::Accounts;
use silo_accounts::throttle::{AccountGuard, Throttle, ThrottlePolicy};
use silo_billing::Billing;
use silo_tenancy::Tenancy;

use super::client::Proxies;
use super::links::Links;

/// Application state (one per server, shared by every worker).
pub struct AppState {
    /// Money — and through it the people ([`AppState::accounts`]) and the fleet
    /// ([`AppState::tenancy`]): held once.
    pub billing: Billing,
    /// Password checks (sign-in, and the password asked again to change it or to delete the
    /// account): per client, per account and client, and a delay per account that a known
    /// device is not subject to.
    pub throttle: Throttle,
    /// Invalid bearer tokens per client address (the API's 429).
    pub api_throttle: Throttle,
    /// Password-reset emails per account and per client (they send mail; separate from failed
    /// sign-ins so a locked-out person can still reset).
    pub reset_throttle: Throttle,
    /// Invitation emails per invited address and per workspace.
    pub invite_throttle: Throttle,
    /// Sign-ups (each hashes a password and sends an email) per address and per client.
    pub signup_throttle: Throttle,
    /// Export downloads in progress (bounded per link and per client).
    pub downloads: super::downloads::Downloads,
    /// Where links point (from `server.public_url`, never from request headers).
    pub links: Links,
    /// The proxies whose forwarding headers are believed.
    pub proxies: Proxies,
    /// Where `/metrics` is served instead of the main listener (`server.metrics_bind`).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// `[server]` settings.
    pub web: ServerSettings,
}

impl AppState {
    /// State over billing (and through it the accounts and their fleet), configured from its
    /// settings; `links` say where the server is reached.
    pub fn new(
        billing: Billing,
        web: ServerSettings,
        links: Links,
        metrics_addr: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<Self> {
        let throttle = Throttle::new(ThrottlePolicy {
            per_account: web.login_failures_per_account,
            per_client: web.login_failures_per_client,
            window: Duration::from_secs(web.login_window_seconds),
            guard: AccountGuard::Delay(Duration::from_secs(web.login_account_delay_max_seconds.max(1))),
        });
        let api_throttle = Throttle::new(ThrottlePolicy {
            per_account: u32::MAX,
            per_client: 50,
            window: Duration::from_secs(60),
            guard: AccountGuard::Limit,
        });
        let reset_throttle = Throttle::new(ThrottlePolicy {
            per_account: 3,
            per_client: 20,
            window: Duration::from_secs(3600),
            guard: AccountGuard::Limit,
        });
        let invite_throttle = Throttle::new(ThrottlePolicy {
            per_account: 3,
            per_client: web.invitations_per_workspace_hour,
            window: Duration::from_secs(3600),
            guard: AccountGuard::Limit,
        });
        let signup_throttle = Throttle::new(ThrottlePolicy {
            per_account: 3,
            per_client: web.signups_per_client_hour,
            window: Duration::from_secs(3600),
            guard: AccountGuard::Limit,
        });
        let proxies = Proxies::from_settings(&web.proxies())?;
        let limits = &billing.tenancy().settings().exports;
        let downloads =
            super::downloads::Downloads::new(limits.downloads_per_link, limits.downloads_per_client);
        Ok(Self {
            billing,
            throttle,
            api_throttle,
            reset_throttle,
            signup_throttle,
            invite_throttle,
            downloads,
            links,
            proxies,
            metrics_addr,
            web,
        })
    }

    /// The fleet: control plane, tenants, handles (its backups: `silo_backups::BackupsExt`).
    pub fn tenancy(&self) -> &Tenancy {
        self.billing.tenancy()
    }

    /// The people: users, sessions, tokens, memberships, the outbox.
    pub fn accounts(&self) -> &Accounts {
        self.billing.accounts()
    }

    /// How long a new session lives.
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.web.session_hours.max(1) * 3600)
    }
}
