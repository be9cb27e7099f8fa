//! Plans: what a tenant pays and what it may use. Read from the settings (`[plans.NAME]` in
//! `silo.toml`, or `SILO_PLANS__NAME__KEY=…`); `free`, `team` and `business` exist unless the
//! settings change them (they set storage limits only: seats, projects and request rates are
//! off until configured). Prices are integer minor units (cents) of `currency`: no floating
//! point anywhere near money. A limit left out is no limit.

use std::collections::BTreeMap;

use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// One plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Base price per month, minor units.
    #[serde(default)]
    pub price_month: i64,
    /// Price per seat (member) per month, minor units.
    #[serde(default)]
    pub price_seat: i64,
    /// Price per started GB of storage beyond `storage_mb` at the month's peak, minor units (a
    /// tenant can be over its limit after moving to a smaller plan).
    #[serde(default)]
    pub price_storage_gb: i64,
    /// ISO 4217 code.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Days free at the start.
    #[serde(default)]
    pub trial_days: u32,
    /// Members at most.
    pub seats: Option<u32>,
    /// Size of the tenant's file at most, MB (10⁶ bytes): enforced at the file.
    pub storage_mb: Option<u64>,
    /// Projects at most.
    pub projects: Option<u32>,
    /// API requests per minute at most.
    pub api_rpm: Option<u32>,
    /// Whether a workspace's owner may move to it themselves (from the billing page); other
    /// plans are given by operators (console, API, CLI). Off unless the plan says so.
    #[serde(default)]
    pub self_service: bool,
}

fn default_currency() -> String {
    "EUR".to_owned()
}

impl Default for Plan {
    /// Free of charge, in euros, without limits.
    fn default() -> Self {
        Self {
            price_month: 0,
            price_seat: 0,
            price_storage_gb: 0,
            currency: default_currency(),
            trial_days: 0,
            seats: None,
            storage_mb: None,
            projects: None,
            api_rpm: None,
            self_service: false,
        }
    }
}

impl Plan {
    /// Its prices in words: "50.00 EUR a month + 15.00 EUR a seat".
    pub fn price_text(&self) -> String {
        let money = |minor: i64| format!("{}.{:02} {}", minor / 100, (minor % 100).abs(), self.currency);
        match (self.price_month, self.price_seat) {
            (0, 0) => "free of charge".to_owned(),
            (month, 0) => format!("{} a month", money(month)),
            (0, seat) => format!("{} a seat a month", money(seat)),
            (month, seat) => format!("{} a month + {} a seat", money(month), money(seat)),
        }
    }

    /// Its limits in words: "5 seats · 3 projects · 10 GB of storage · 14 days' trial".
    pub fn limits_text(&self) -> String {
        let count = |n: Option<u32>, one: &str| match n {
            Some(1) => format!("1 {one}"),
            Some(n) => format!("{n} {one}s"),
            None => format!("any number of {one}s"),
        };
        let storage = match self.storage_mb {
            None => "storage without limit".to_owned(),
            Some(mb) => format!("{} of storage", megabytes_text(mb)),
        };
        let mut parts = vec![count(self.seats, "seat"), count(self.projects, "project"), storage];
        if self.trial_days > 0 {
            parts.push(format!("{} days' trial", self.trial_days));
        }
        parts.join(" · ")
    }

    /// The largest file the plan allows, in bytes.
    pub fn storage_bytes(&self) -> Option<u64> {
        self.storage_mb.map(|mb| mb.saturating_mul(1_000_000))
    }
}

/// A plan's storage in words: whole gigabytes as GB ("10 GB"), anything else in MB ("500 MB").
pub fn megabytes_text(mb: u64) -> String {
    if mb >= 1000 && mb.is_multiple_of(1000) { format!("{} GB", mb / 1000) } else { format!("{mb} MB") }
}

/// The plans by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Plans(pub BTreeMap<String, Plan>);

impl Default for Plans {
    /// `free`, `team` and `business`.
    fn default() -> Self {
        let plan = |price_month, price_seat, trial_days, seats, storage_mb, projects, api_rpm| Plan {
            price_month,
            price_seat,
            price_storage_gb: 0,
            currency: default_currency(),
            trial_days,
            seats,
            storage_mb,
            projects,
            api_rpm,
            self_service: true,
        };
        // Storage limits only: seats, projects and request rates are off until an operator
        // sets them (a default that throttled a running installation after an upgrade would
        // be a surprise, not a plan). Owners may pick any of the three themselves.
        Self(BTreeMap::from([
            ("free".to_owned(), plan(0, 0, 0, None, Some(1_000), None, None)),
            ("team".to_owned(), plan(0, 800, 14, None, Some(10_000), None, None)),
            ("business".to_owned(), plan(5_000, 1_500, 14, None, Some(100_000), None, None)),
        ]))
    }
}

impl Plans {
    /// A plan by name; an unknown name is the caller's mistake, with the names that exist.
    pub fn get(&self, name: &str) -> Result<&Plan> {
        self.0.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.0.keys().map(String::as_str).collect();
            Error::invalid("plan", format!("there is no plan `{name}` (plans: {})", known.join(", ")))
        })
    }

    /// The plans' names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The names of the plans owners may pick themselves, sorted.
    pub fn self_service(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter(|(_, p)| p.self_service).map(|(name, _)| name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_exist_and_an_unknown_plan_is_named() {
        let plans = Plans::default();
        assert_eq!(plans.names().collect::<Vec<_>>(), ["business", "free", "team"]);
        assert_eq!(plans.get("free").unwrap().storage_bytes(), Some(1_000_000_000));
        assert!(plans.0.values().all(|p| p.seats.is_none() && p.api_rpm.is_none()), "off by default");
        assert_eq!(plans.get("free").unwrap().price_text(), "free of charge");
        assert_eq!(plans.get("business").unwrap().price_text(), "50.00 EUR a month + 15.00 EUR a seat");
        assert_eq!(plans.get("team").unwrap().price_text(), "8.00 EUR a seat a month");
        let unknown = plans.get("gold").unwrap_err().to_string();
        assert!(unknown.contains("no plan `gold`") && unknown.contains("business, free, team"), "{unknown}");
    }

    #[test]
    fn a_plan_reads_from_toml_with_defaults_for_what_it_leaves_out() {
        let plan: Plan = toml::from_str("storage_mb = 1\nprice_seat = 250").unwrap();
        assert_eq!(
            (plan.storage_bytes(), plan.price_seat, plan.currency.as_str()),
            (Some(1_000_000), 250, "EUR")
        );
        assert_eq!(plan.seats, None, "no limit");
        assert!(!plan.self_service, "a configured plan is the operators' unless it says otherwise");
        assert!(Plans::default().0.values().all(|p| p.self_service));
        assert!(toml::from_str::<Plan>("storage_gb = 1").is_err(), "a misspelt key is an error");
    }
}
