//! `silo billing …`: the billing run, invoices (list, CSV, show, pay, void), the dunning pass
//! and billing contacts, from the command line. `run` and `dunning` do the same work as the
//! monthly and daily jobs `silo serve` schedules, and are as idempotent.

use clap::Subcommand;
use silo_billing::invoices::money;
use silo_billing::{Billing, BillingProfile, InvoiceFilter, Period};
use silo_core::TenantRef;

use super::actor;
use crate::output::{print_json, table};

/// Billing commands.
#[derive(Debug, Subcommand)]
pub enum BillingCommand {
    /// Invoice every tenant for a month that has ended (a second run creates nothing).
    Run {
        /// The month, YYYY-MM.
        #[arg(long, value_name = "YYYY-MM")]
        period: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List invoices and credit notes.
    Invoices {
        /// Only this month (YYYY-MM).
        #[arg(long, value_name = "YYYY-MM")]
        period: Option<String>,
        /// Only this tenant (slug or id).
        #[arg(long)]
        tenant: Option<String>,
        /// Only this state: draft, open, paid, void, issued.
        #[arg(long)]
        status: Option<String>,
        /// Print CSV (amounts in minor units).
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one invoice (by number or id).
    Show {
        /// Invoice number or id.
        invoice: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record the payment of an open invoice (e.g. a bank transfer); resumes a tenant dunning
    /// suspended over it.
    Pay {
        /// Invoice number or id.
        invoice: String,
        /// The bank's (or processor's) reference.
        #[arg(long, default_value = "")]
        reference: String,
    },
    /// Void an open or paid invoice: it keeps its number and a credit note cancels it.
    Void {
        /// Invoice number or id.
        invoice: String,
    },
    /// Run a dunning pass now: reminders, then suspension, for overdue invoices.
    Dunning {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show or set a tenant's billing contact (only the options given change).
    Contact {
        /// Tenant slug or id.
        tenant: String,
        /// Company (or person) billed.
        #[arg(long)]
        name: Option<String>,
        /// Where invoices and reminders go.
        #[arg(long)]
        email: Option<String>,
        /// Postal address.
        #[arg(long)]
        address: Option<String>,
        /// Billing country (ISO 3166-1 alpha-2): picks the tax rate.
        #[arg(long)]
        country: Option<String>,
        /// VAT number.
        #[arg(long)]
        tax_id: Option<String>,
    },
}

impl BillingCommand {
    /// Runs the command.
    pub async fn run(self, billing: &Billing) -> anyhow::Result<()> {
        match self {
            Self::Run { period, json } => {
                let period: Period = period.parse()?;
                let summary = billing.invoices().run(period, &actor()).await?;
                if json {
                    return print_json(&summary);
                }
                let numbers = summary.numbers.map(|(a, b)| format!(" (numbers {a}–{b})")).unwrap_or_default();
                crate::say!(
                    "{}: {} tenants; {} invoices created, {} finalised{numbers}; {} already invoiced, {} with nothing to pay",
                    summary.period,
                    summary.tenants,
                    summary.created,
                    summary.finalised,
                    summary.already_invoiced,
                    summary.nothing_to_bill
                );
                for (currency, total) in &summary.totals {
                    crate::say!("  invoiced {}", money(*total, currency));
                }
                for skipped in &summary.skipped {
                    crate::say!("  skipped {skipped}");
                }
            }
            Self::Invoices { period, tenant, status, csv, json } => {
                let tenant = match tenant {
                    Some(t) => Some(billing.tenancy().tenant(&t.parse::<TenantRef>()?).await?.id),
                    None => None,
                };
                if let Some(p) = &period {
                    p.parse::<Period>()?;
                }
                let status = status.map(|s| s.parse()).transpose()?;
                let filter = InvoiceFilter { period, tenant, status, issued_only: false, limit: 0 };
                if csv {
                    crate::output::out(&billing.invoices().csv(&filter).await?);
                    return Ok(());
                }
                let invoices = billing.invoices().list(&filter).await?;
                if json {
                    return print_json(&invoices);
                }
                let rows: Vec<Vec<String>> = invoices
                    .iter()
                    .map(|i| {
                        vec![
                            i.number.map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
                            i.kind.clone(),
                            i.status.to_string(),
                            i.slug.clone(),
                            i.period.clone(),
                            i.total_text(),
                            i.due_at.as_deref().and_then(|d| d.get(..10)).unwrap_or("").to_owned(),
                        ]
                    })
                    .collect();
                crate::say!(
                    "{}",
                    table(&["NUMBER", "KIND", "STATUS", "TENANT", "PERIOD", "TOTAL", "DUE"], &rows)
                );
            }
            Self::Show { invoice, json } => {
                let invoice = billing.invoices().get(&invoice).await?;
                if json {
                    return print_json(&invoice);
                }
                crate::say!(
                    "{} — {} — {} ({})",
                    invoice.title(),
                    invoice.slug,
                    invoice.period,
                    invoice.status
                );
                for line in &invoice.lines {
                    crate::say!("  {:<50} {:>16}", line.description, money(line.amount, &invoice.currency));
                }
                crate::say!("  {:<50} {:>16}", "total", invoice.total_text());
            }
            Self::Pay { invoice, reference } => {
                let paid = billing.invoices().record_payment(&invoice, &reference, &actor()).await?;
                crate::say!("{} paid ({}) by {}", paid.title(), paid.total_text(), paid.slug);
            }
            Self::Void { invoice } => {
                let (void, credit) = billing.invoices().void(&invoice, &actor()).await?;
                crate::say!(
                    "{} is void; {} cancels it ({})",
                    void.title(),
                    credit.title(),
                    credit.total_text()
                );
            }
            Self::Dunning { json } => {
                let now = billing.now();
                let summary = billing.dunning().run(now.as_str(), &actor()).await?;
                if json {
                    return print_json(&summary);
                }
                crate::say!(
                    "{} overdue invoices; {} reminders queued; suspended: {}",
                    summary.overdue,
                    summary.reminders,
                    if summary.suspended.is_empty() {
                        "none".to_owned()
                    } else {
                        summary.suspended.join(", ")
                    }
                );
            }
            Self::Contact { tenant, name, email, address, country, tax_id } => {
                let tenant = billing.tenancy().tenant(&tenant.parse::<TenantRef>()?).await?;
                let mut profile = billing.profiles().get(tenant.id).await?;
                let changes = [
                    (&mut profile.name, name),
                    (&mut profile.email, email),
                    (&mut profile.address, address),
                    (&mut profile.country, country),
                    (&mut profile.tax_id, tax_id),
                ];
                let mut changed = false;
                for (field, value) in changes {
                    if let Some(value) = value {
                        *field = value;
                        changed = true;
                    }
                }
                let profile: BillingProfile = if changed {
                    billing.profiles().set(tenant.id, profile, &actor()).await?
                } else {
                    profile
                };
                print_json(&profile)?;
            }
        }
        Ok(())
    }
}
