//! `[server]`: the HTTP server's settings (read with the rest of the settings by `apps/web`).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use silo_core::Secret;

/// The HTTP server.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    /// Address to listen on.
    pub bind: String,
    /// HTTP worker threads (each a single-threaded event loop); default: one per core.
    pub workers: Option<usize>,
    /// Serve workspaces on `{slug}.{base_domain}` as well as under `/w/{slug}/`.
    pub base_domain: Option<String>,
    /// The public URL (`https://silo.example.com`): every link Silo builds (emails, workspace
    /// hosts) starts from it, never from request headers. When unset, a loopback bind uses
    /// `http://<bind address>`; any other bind refuses to start.
    pub public_url: Option<String>,
    /// The reverse proxies in front of Silo whose `X-Forwarded-For` / `X-Forwarded-Proto` are
    /// believed: a count of hops (`1` for one nginx) or a list of CIDRs
    /// (`["10.0.0.0/8", "127.0.0.1/32"]`). Default: none.
    pub trusted_proxies: TrustedProxies,
    /// Older spelling of `trusted_proxies = 1` (used when `trusted_proxies` is not set).
    pub trust_proxy: bool,
    /// Session lifetime, hours.
    pub session_hours: u64,
    /// A session unused for this many minutes ends (at least 10: use is recorded every 5).
    pub session_idle_minutes: u64,
    /// New sign-ups (including invitation sign-ups) per client address per hour.
    pub signups_per_client_hour: u32,
    /// A bearer token that `/metrics` requires (redacted in logs). Without it (and without
    /// `metrics_bind`), `/metrics` answers only direct requests from loopback.
    pub metrics_token: Option<Secret>,
    /// Serve `/metrics` on this address instead (e.g. `127.0.0.1:9090`, or an internal
    /// interface), and not on `bind`.
    pub metrics_bind: Option<String>,
    /// Wrong passwords one client may try on one account within the throttle window (then
    /// that client is refused for it); also how many, from everywhere, before the account's
    /// delay for unknown devices starts.
    pub login_failures_per_account: u32,
    /// Wrong passwords one client address may try, on any accounts, within the window.
    pub login_failures_per_client: u32,
    /// The login throttle window, seconds.
    pub login_window_seconds: u64,
    /// The most an account under attack makes a sign-in from an unknown device wait (the delay
    /// doubles from one second with each failure); a browser that signed in to the account
    /// before is not delayed.
    pub login_account_delay_max_seconds: u64,
    /// Invitation emails one workspace may send an hour (and 3 an hour to one address).
    pub invitations_per_workspace_hour: u32,
}

impl ServerSettings {
    /// How long a session may go unused.
    pub fn session_idle(&self) -> Duration {
        Duration::from_secs(self.session_idle_minutes.max(10) * 60)
    }

    /// The proxies to trust (`trust_proxy = true` means one hop when `trusted_proxies` is unset).
    pub fn proxies(&self) -> TrustedProxies {
        match &self.trusted_proxies {
            TrustedProxies::Hops(0) if self.trust_proxy => TrustedProxies::Hops(1),
            other => other.clone(),
        }
    }
}

/// Which proxies' forwarding headers to believe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TrustedProxies {
    /// This many proxies stand in front of Silo, each appending to `X-Forwarded-For`: the
    /// client is the address the outermost one saw.
    Hops(u8),
    /// Peers in these networks are proxies: walking `X-Forwarded-For` from the right, the
    /// client is the first address outside them.
    Networks(Vec<String>),
}

impl Default for TrustedProxies {
    fn default() -> Self {
        Self::Hops(0)
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".to_owned(),
            workers: None,
            base_domain: None,
            public_url: None,
            trusted_proxies: TrustedProxies::default(),
            trust_proxy: false,
            session_hours: 24 * 14,
            session_idle_minutes: 24 * 60,
            signups_per_client_hour: 10,
            metrics_token: None,
            metrics_bind: None,
            login_failures_per_account: 5,
            login_failures_per_client: 20,
            login_window_seconds: 15 * 60,
            login_account_delay_max_seconds: 60,
            invitations_per_workspace_hour: 20,
        }
    }
}
