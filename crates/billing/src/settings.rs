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
    /// The seller's VAT number, printed on each invoice (empty: none printed).
    pub seller_tax_id: String,
    /// The seller's country (ISO 3166-1 alpha-2): a buyer in another EU country with a VAT
    /// number is billed without tax, under the reverse charge (empty: never).
    pub seller_country: String,
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
            seller_tax_id: String::new(),
            seller_country: String::new(),
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

    /// Whether a buyer in `country` with VAT number `tax_id` is billed under the EU reverse
    /// charge: both seller and buyer in the EU, in different countries, the buyer with a VAT
    /// number. The buyer then accounts for the VAT, and the invoice charges none.
    pub fn reverse_charge(&self, country: &str, tax_id: &str) -> bool {
        reverse_charge(&self.seller_country, &self.seller_tax_id, country, tax_id)
    }

    /// The tax rate (basis points) an invoice to this buyer charges: its country's, or none
    /// under the reverse charge.
    pub fn tax_for(&self, country: &str, tax_id: &str) -> u32 {
        if self.reverse_charge(country, tax_id) { 0 } else { self.tax_rate(country) }
    }
}

/// The EU reverse charge between a seller and a buyer: both in the EU, in different countries,
/// both with a VAT number (the invoice must show both).
pub fn reverse_charge(
    seller_country: &str,
    seller_tax_id: &str,
    buyer_country: &str,
    buyer_tax_id: &str,
) -> bool {
    let (seller, buyer) =
        (seller_country.trim().to_ascii_uppercase(), buyer_country.trim().to_ascii_uppercase());
    crate::countries::in_eu(&seller)
        && crate::countries::in_eu(&buyer)
        && seller != buyer
        && !seller_tax_id.trim().is_empty()
        && !buyer_tax_id.trim().is_empty()
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

#[cfg(test)]
mod reverse_charge_tests {
    use super::*;

    #[test]
    fn the_reverse_charge_is_for_eu_buyers_elsewhere_with_a_vat_number() {
        let mut settings = BillingSettings::default();
        settings.tax_rates.insert("DE".into(), 1_900);
        settings.tax_rates.insert("FR".into(), 2_000);
        assert_eq!(settings.tax_for("FR", "FR123"), 2_000, "no seller country: never");
        settings.seller_country = "de".into();
        assert_eq!(settings.tax_for("FR", "FR123"), 2_000, "no seller VAT ID: never");
        settings.seller_tax_id = "DE 123".into();
        assert_eq!(settings.tax_for("FR", "FR123"), 0, "another EU country, a VAT number");
        assert_eq!(settings.tax_for("fr", " "), 2_000, "no VAT number: the buyer's country's rate");
        assert_eq!(settings.tax_for("DE", "DE123"), 1_900, "the seller's own country");
        assert_eq!(settings.tax_for("US", "US123"), 0, "outside the EU: its own (unset) rate");
        assert!(!settings.reverse_charge("US", "US123"), "and no reverse-charge wording");
        settings.seller_country = "CH".into();
        assert!(!settings.reverse_charge("FR", "FR123"), "a seller outside the EU");
    }
}
