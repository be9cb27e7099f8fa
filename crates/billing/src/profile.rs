//! A tenant's billing contact (`billing_profiles`): who invoices are addressed to, where they
//! and the reminders go, and the country whose tax rate applies. Set by the workspace's owner
//! on its billing page, or by an operator (console, `silo billing contact`). An invoice copies
//! it when finalised, without the email (see `migrations/control/personal_data.toml`).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use silo_core::TenantId;
use silo_core::db;

use crate::Billing;

/// The billing contact.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
#[serde(default)]
pub struct BillingProfile {
    /// The company (or person) billed.
    pub name: String,
    /// Where invoices and reminders go (empty: the workspace's owners).
    pub email: String,
    /// Postal address.
    pub address: String,
    /// ISO 3166-1 alpha-2, upper case (picks the tax rate).
    pub country: String,
    /// VAT number.
    pub tax_id: String,
}

impl BillingProfile {
    /// Trimmed and checked: a clear message for each field that is wrong.
    pub fn validated(mut self) -> Result<Self> {
        for field in [&mut self.name, &mut self.email, &mut self.address, &mut self.country, &mut self.tax_id]
        {
            *field = field.trim().to_owned();
        }
        let typed = std::mem::take(&mut self.country);
        self.country = typed.to_ascii_uppercase();
        let too_long = |what: &'static str, max: usize| {
            Error::invalid(what, format!("the {what} has at most {max} characters"))
        };
        if self.name.chars().count() > 200 {
            return Err(too_long("billing name", 200));
        }
        if self.address.chars().count() > 1_000 {
            return Err(too_long("billing address", 1_000));
        }
        if self.tax_id.chars().count() > 40 {
            return Err(too_long("VAT number", 40));
        }
        if !self.email.is_empty() {
            // The accounts' rules and spelling (lowercased), so erasure and the outbox find it.
            self.email = silo_accounts::users::Email::parse(&self.email)?.as_str().to_owned();
        }
        if !self.country.is_empty() && crate::countries::name(&self.country).is_none() {
            let hint = match crate::countries::code_of(&typed) {
                Some(code) => {
                    format!(" (for {} choose {code})", crate::countries::name(code).unwrap_or(code))
                }
                None => String::new(),
            };
            return Err(Error::invalid(
                "country",
                format!(
                    "“{typed}” is not a country code{hint}: choose the country from the list (ISO 3166-1 codes such as DE, FR, US)"
                ),
            ));
        }
        Ok(self)
    }
}

/// Tenants' billing contacts (from [`Billing::profiles`]).
#[derive(Clone, Copy)]
pub struct Profiles<'a>(pub(crate) &'a Billing);

impl Billing {
    /// Tenants' billing contacts.
    pub fn profiles(&self) -> Profiles<'_> {
        Profiles(self)
    }
}

impl Profiles<'_> {
    /// A tenant's billing contact (blank when never set).
    pub async fn get(&self, tenant: TenantId) -> Result<BillingProfile> {
        Ok(db::query_as(
            "SELECT name, email, address, country, tax_id FROM billing_profiles WHERE tenant_id = ?1",
        )
        .bind(tenant.to_string())
        .fetch_optional(self.0.tenancy().control().reader())
        .await?
        .unwrap_or_default())
    }

    /// Sets a tenant's billing contact (validated); audited without the values.
    pub async fn set(
        &self,
        tenant: TenantId,
        profile: BillingProfile,
        actor: &str,
    ) -> Result<BillingProfile> {
        let profile = profile.validated()?;
        let now = self.0.now();
        let mut tx = self.0.tenancy().control().writer().begin().await?;
        db::query(
            "INSERT INTO billing_profiles (tenant_id, name, email, address, country, tax_id, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (tenant_id) DO UPDATE SET name = excluded.name, email = excluded.email,
                 address = excluded.address, country = excluded.country, tax_id = excluded.tax_id,
                 updated_at = excluded.updated_at",
        )
        .bind(tenant.to_string())
        .bind(&profile.name)
        .bind(&profile.email)
        .bind(&profile.address)
        .bind(&profile.country)
        .bind(&profile.tax_id)
        .bind(now.as_str())
        .execute(&mut *tx)
        .await?;
        // The country decides the tax; the rest is personal or company data the log need not copy.
        let detail = serde_json::json!({ "country": profile.country });
        silo_core::audit::record(&mut tx, &now, actor, "billing.contact", Some(tenant), &detail).await?;
        tx.commit().await?;
        Ok(profile)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_is_trimmed_and_each_bad_field_named() {
        let ok = BillingProfile { name: " Acme GmbH ".into(), country: "de".into(), ..Default::default() };
        let ok = ok.validated().unwrap();
        assert_eq!((ok.name.as_str(), ok.country.as_str()), ("Acme GmbH", "DE"));
        let bad = |p: BillingProfile| p.validated().unwrap_err().to_string();
        assert_eq!(
            bad(BillingProfile { country: "Germany".into(), ..Default::default() }),
            "“Germany” is not a country code (for Germany choose DE): choose the country from the list (ISO 3166-1 codes such as DE, FR, US)"
        );
        assert!(
            bad(BillingProfile { country: "ZZ".into(), ..Default::default() })
                .starts_with("“ZZ” is not a country code:")
        );
        assert!(
            bad(BillingProfile { email: "billing at acme".into(), ..Default::default() })
                .contains("not a valid email address")
        );
        assert!(bad(BillingProfile { name: "x".repeat(201), ..Default::default() }).contains("at most 200"));
    }
}
