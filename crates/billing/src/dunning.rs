//! Dunning: what happens to an open invoice past its due date (`silo billing dunning`, and
//! the daily `billing.dunning` job). For each reminder day of `[billing.dunning]` that has
//! passed, a reminder goes to the outbox (to the billing contact, else to the tenant's
//! owners); once `suspend_after_days` have passed, the tenant is suspended (its users see a
//! page saying so; its data is untouched). Paying or voiding the invoice resumes it
//! ([`crate::invoices::Invoices::record_payment`]). Every step is in the audit log (`billing.dunning`). Each
//! pass is idempotent: an invoice records how many reminders it got and whether it suspended
//! its tenant.

use crate::Result;
use serde::Serialize;
use silo_core::db;
use silo_core::{TenantId, TenantRef};
use silo_tenancy::TenantStatus;

use crate::Billing;
use crate::invoices::{Invoice, InvoiceFilter, InvoiceStatus};
use crate::period::day_of_timestamp;

/// What a dunning pass did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DunningSummary {
    /// Open invoices past their due date.
    pub overdue: usize,
    /// Reminders queued.
    pub reminders: usize,
    /// Tenants suspended.
    pub suspended: Vec<String>,
}

/// Reminders and suspension over overdue invoices (from [`Billing::dunning`]).
#[derive(Clone, Copy)]
pub struct Dunning<'a>(pub(crate) &'a Billing);

impl Billing {
    /// Reminders and suspension over overdue invoices.
    pub fn dunning(&self) -> Dunning<'_> {
        Dunning(self)
    }
}

impl Dunning<'_> {
    /// The unpaid invoice a tenant is suspended over, if dunning suspended it (else it was
    /// suspended by an operator, or is not suspended).
    pub async fn suspended_over(&self, tenant: TenantId) -> Result<Option<Invoice>> {
        let filter = InvoiceFilter {
            tenant: Some(tenant),
            status: Some(InvoiceStatus::Open),
            issued_only: true,
            ..InvoiceFilter::default()
        };
        Ok(self.0.invoices().list(&filter).await?.into_iter().find(|invoice| invoice.suspended_at.is_some()))
    }

    /// One dunning pass over the open invoices at `now` (a timestamp; the job passes the
    /// current time).
    pub async fn run(&self, now: &str, actor: &str) -> Result<DunningSummary> {
        let open = self
            .0
            .invoices()
            .list(&InvoiceFilter { status: Some(InvoiceStatus::Open), ..Default::default() })
            .await?;
        let today = day_of_timestamp(now)?;
        let settings = &self.0.settings().dunning;
        let mut summary = DunningSummary::default();
        for invoice in open.iter().filter(|i| i.overdue(now)) {
            summary.overdue += 1;
            let Some(due) = invoice.due_at.as_deref() else { continue };
            let late = today - day_of_timestamp(due)?;
            let owed = settings.reminder_days.iter().filter(|d| i64::from(**d) <= late).count() as i64;
            if owed > invoice.reminders {
                self.remind(invoice, late, owed, actor).await?;
                summary.reminders += 1;
            }
            if late >= i64::from(settings.suspend_after_days)
                && invoice.suspended_at.is_none()
                && self.suspend_for(invoice, late, actor).await?
            {
                summary.suspended.push(invoice.slug.clone());
            }
        }
        Ok(summary)
    }

    /// Queues a reminder and records it.
    async fn remind(&self, invoice: &Invoice, late: i64, owed: i64, actor: &str) -> Result<()> {
        let tenant: TenantId =
            invoice.tenant_id.parse().map_err(|_| silo_tenancy::Error::NotFound(invoice.slug.clone()))?;
        let mut recipients = Vec::new();
        let contact = self.0.profiles().get(tenant).await?.email;
        if contact.is_empty() {
            recipients = self.0.accounts().memberships().owner_emails(tenant).await?;
        } else {
            recipients.push(contact);
        }
        let number = invoice.number.unwrap_or_default();
        let subject = format!("Reminder: invoice {number} is {late} days overdue");
        let body = format!(
            "Invoice {number} for the workspace {} ({}) of {} was due on {} and is still unpaid.\n\n{}\n\n\
             If it stays unpaid {} days after its due date, the workspace will be suspended until it is paid.\n",
            invoice.slug,
            invoice.period,
            invoice.total_text(),
            invoice.due_at.as_deref().unwrap_or("").get(..10).unwrap_or(""),
            self.0.payments().instructions(invoice),
            self.0.settings().dunning.suspend_after_days,
        );
        for recipient in &recipients {
            let about = silo_accounts::outbox::About { user: None, tenant: Some(invoice.tenant_id.parse()?) };
            self.0.accounts().outbox().queue(recipient, &subject, &body, about).await?;
        }
        let mut tx = self.0.tenancy().control().writer().begin().await?;
        db::query("UPDATE invoices SET reminders = ?2 WHERE id = ?1")
            .bind(&invoice.id)
            .bind(owed)
            .execute(&mut *tx)
            .await?;
        let detail = serde_json::json!({
            "invoice": number, "step": "reminder", "reminder": owed, "days_late": late, "recipients": recipients.len(),
        });
        silo_core::audit::record(&mut tx, &self.0.now(), actor, "billing.dunning", Some(tenant), &detail)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Suspends an active tenant over an invoice; false when it was not active (an operator's
    /// suspension, a deletion: dunning does not take those over).
    async fn suspend_for(&self, invoice: &Invoice, late: i64, actor: &str) -> Result<bool> {
        let tenant: TenantId =
            invoice.tenant_id.parse().map_err(|_| silo_tenancy::Error::NotFound(invoice.slug.clone()))?;
        if self.0.tenancy().tenant(&TenantRef::Id(tenant)).await?.status != TenantStatus::Active {
            return Ok(false);
        }
        self.0.tenancy().tenants().suspend(&TenantRef::Id(tenant), actor).await?;
        let mut tx = self.0.tenancy().control().writer().begin().await?;
        let now = self.0.now();
        db::query("UPDATE invoices SET suspended_at = ?2 WHERE id = ?1")
            .bind(&invoice.id)
            .bind(now.as_str())
            .execute(&mut *tx)
            .await?;
        let detail = serde_json::json!({ "invoice": invoice.number, "step": "suspend", "days_late": late });
        silo_core::audit::record(&mut tx, &now, actor, "billing.dunning", Some(tenant), &detail).await?;
        tx.commit().await?;
        Ok(true)
    }
}
