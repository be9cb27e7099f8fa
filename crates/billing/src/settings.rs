//! `[billing]` in `silo.toml` (or `SILO_BILLING__KEY=…`): who sends the invoices, when they
//! are due, the tax rate per billing country, and the dunning schedule.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The billing settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BillingSettings {
    /// Who issues the invoices (name and address, printed at the top of each).
    pub seller: String,
    /// Days between finalising an invoice and its due date.
    pub payment_terms_days: u32,
    /// How to pay, printed on every invoice (the manual provider's instructions: bank details).
    pub payment_instructions: String,
    /// Tax rate in basis points (1900 = 19.00 %) by billing country (ISO 3166-1 alpha-2, e.g.
    /// `DE = 1900`); a country not listed (or no country) is billed without tax.
    pub tax_rates: BTreeMap<String, u32>,
    /// `[billing.dunning]`.
    pub dunning: DunningSettings,
    /// Run the monthly billing run and the daily dunning pass as jobs (`silo serve`).
    pub schedule: bool,
    /// Count requests and active users per tenant (the usage graphs, active users); off, the
    /// request path skips the meter (`silo-bench billing` measures the difference).
    pub metering: bool,
}

impl Default for BillingSettings {
    fn default() -> Self {
        Self {
            seller: "Silo".to_owned(),
            payment_terms_days: 14,
            payment_instructions: "Please pay by bank transfer, quoting the invoice number.".to_owned(),
            tax_rates: BTreeMap::new(),
            dunning: DunningSettings::default(),
            schedule: true,
            metering: true,
        }
    }
}

impl BillingSettings {
    /// The tax rate (basis points) for a billing country.
    pub fn tax_rate(&self, country: &str) -> u32 {
        self.tax_rates.get(&country.to_ascii_uppercase()).copied().unwrap_or(0)
    }
}

/// What happens to an invoice left unpaid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DunningSettings {
    /// Days past the due date at which a reminder is sent (one per entry).
    pub reminder_days: Vec<u32>,
    /// Days past the due date at which the tenant is suspended (paying resumes it).
    pub suspend_after_days: u32,
}

impl Default for DunningSettings {
    fn default() -> Self {
        Self { reminder_days: vec![3, 10], suspend_after_days: 21 }
    }
}
