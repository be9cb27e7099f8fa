//! The accounts' settings: `[smtp]` (read with the rest of the settings by `apps/web`) and the
//! session lifetime the web layer configures under `[server]`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use silo_core::Secret;

/// What [`crate::Accounts`] needs to know.
#[derive(Clone, Debug)]
pub struct AccountsSettings {
    /// Outgoing email.
    pub smtp: SmtpSettings,
    /// A session unused this long ends.
    pub session_idle: Duration,
}

impl Default for AccountsSettings {
    fn default() -> Self {
        Self { smtp: SmtpSettings::default(), session_idle: Duration::from_secs(24 * 3600) }
    }
}

/// Outgoing email. Without a host, emails stay in the outbox (and the log).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpSettings {
    /// SMTP server; unset: no delivery.
    pub host: Option<String>,
    /// Port (587 for STARTTLS, 465 for TLS, 25 without).
    pub port: u16,
    /// `starttls`, `tls` or `none` (`none` only for a relay on a trusted network).
    pub tls: String,
    /// Login, if the server wants one.
    pub username: Option<String>,
    /// Password (redacted in logs and `Debug`).
    pub password: Option<Secret>,
    /// The sender, `Name <address>`.
    pub from: String,
    /// How often `silo serve` looks for emails to send, seconds.
    pub poll_seconds: u64,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: None,
            port: 587,
            tls: "starttls".into(),
            username: None,
            password: None,
            from: "Silo <silo@localhost>".into(),
            poll_seconds: 5,
        }
    }
}
