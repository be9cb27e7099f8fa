//! The process's settings: one file (`silo.toml`) and one set of `SILO_…` variables, read
//! once ([`Settings::load`]) and handed out by section — the fleet's to `silo-tenancy`, the
//! accounts' (`[smtp]`, the session lifetime) to `silo-accounts`, `[server]` to the web layer.
//! Secrets are [`Secret`]s: their `Debug` (and so any log of the settings) is redacted.

use std::path::Path;

use serde::{Deserialize, Serialize};
use silo_accounts::{AccountsSettings, SmtpSettings};
pub use silo_core::Secret;
pub use silo_server::{ServerSettings, TrustedProxies};

/// All of Silo's settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The fleet: `data_dir`, `default_region`, `[regions.*]`, `[cache]`, `[backup]`.
    #[serde(flatten)]
    pub fleet: silo_tenancy::Settings,
    /// `[server]`: the HTTP server.
    pub server: ServerSettings,
    /// `[smtp]`: outgoing email.
    pub smtp: SmtpSettings,
    /// `[plans.NAME]`: the plans (`free`, `team`, `business` unless changed here).
    pub plans: silo_billing::Plans,
    /// `[billing]`: invoices, tax rates, dunning.
    pub billing: silo_billing::BillingSettings,
}

impl Settings {
    /// Loads the settings: defaults, then the TOML file (when given and present, or `silo.toml`
    /// in the working directory when present), then `SILO_…` environment variables
    /// (`SILO_MASTER_KEY` is `backup.master_key`).
    pub fn load(config_file: Option<&Path>) -> anyhow::Result<Self> {
        Ok(silo_tenancy::config::load(config_file)?)
    }

    /// Defaults over `data_dir` (tests and tools).
    pub fn for_data_dir(data_dir: impl Into<std::path::PathBuf>) -> Self {
        Self { fleet: silo_tenancy::Settings::for_data_dir(data_dir), ..Self::default() }
    }

    /// Billing over `accounts` with these plans and `[billing]`.
    pub fn billing(&self, accounts: silo_accounts::Accounts) -> silo_billing::Billing {
        silo_billing::Billing::new(accounts, self.plans.clone(), self.billing.clone())
    }

    /// What the accounts need.
    pub fn accounts(&self) -> AccountsSettings {
        AccountsSettings { smtp: self.smtp.clone(), session_idle: self.server.session_idle() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    #[allow(clippy::result_large_err)] // figment's test jail fixes the closure's error type
    fn one_file_and_one_environment_feed_every_section() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "silo.toml",
                "data_dir = \"/var/lib/silo\"\n[cache]\ncapacity = 64\n[server]\nbind = \"127.0.0.1:9000\"\n\
                 [smtp]\nhost = \"mail.example.com\"\npassword = \"hunter2\"\n",
            )?;
            jail.set_env("SILO_SERVER__SESSION_IDLE_MINUTES", "30");
            jail.set_env("SILO_CACHE__CAPACITY", "128");
            jail.set_env("SILO_MASTER_KEY", "ab".repeat(32));
            let settings = Settings::load(None).unwrap();
            assert_eq!(settings.fleet.data_dir, std::path::PathBuf::from("/var/lib/silo"));
            assert_eq!(settings.fleet.cache.capacity, 128, "the environment wins over the file");
            assert_eq!(settings.server.bind, "127.0.0.1:9000");
            assert_eq!(settings.accounts().session_idle, Duration::from_secs(30 * 60));
            assert_eq!(settings.smtp.host.as_deref(), Some("mail.example.com"));
            assert_eq!(
                settings.fleet.backup.master_key.as_ref().map(Secret::expose),
                Some("ab".repeat(32).as_str())
            );
            // Secrets never reach a log of the settings.
            let logged = format!("{settings:?}");
            assert!(!logged.contains("hunter2") && !logged.contains(&"ab".repeat(32)), "{logged}");
            assert!(logged.contains("<redacted>"), "{logged}");
            Ok(())
        });
    }
}
