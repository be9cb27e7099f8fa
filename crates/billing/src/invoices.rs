//! Stored invoices (`control.db`'s `invoices`): their states, their numbers, payment and void.
//!
//! An invoice is created as a **draft** by the billing run ([`crate::run`]); **finalising** it
//! gives it the next number, the billing contact as it stands, and a due date, and makes it
//! **open**; it ends **paid** (recorded through the payment provider or by an operator) or
//! **void**. Numbers come from one sequence for the whole installation and have no gaps: a
//! finalising transaction first bumps the sequence row, which takes `control.db`'s write lock,
//! so two runs (two processes even) number one after the other, and a transaction that fails
//! gives its numbers back with everything else. A void invoice keeps its number and is
//! cancelled by a **credit note** (negative lines, its own number from the same sequence).

use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use silo_core::db;
use silo_core::{TenantId, TenantRef};
use silo_tenancy::TenantStatus;

use crate::Billing;
use crate::invoice::{Line, Lines};
use crate::payment::Collection;

/// Where an invoice stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvoiceStatus {
    /// Computed, not yet numbered or sent.
    Draft,
    /// Numbered and due.
    Open,
    /// Settled.
    Paid,
    /// Cancelled (by a credit note).
    Void,
    /// A credit note (issued with its number).
    Issued,
}

impl InvoiceStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Open => "open",
            Self::Paid => "paid",
            Self::Void => "void",
            Self::Issued => "issued",
        }
    }
}

impl std::str::FromStr for InvoiceStatus {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Ok(match text {
            "draft" => Self::Draft,
            "open" => Self::Open,
            "paid" => Self::Paid,
            "void" => Self::Void,
            "issued" => Self::Issued,
            other => {
                return Err(Error::invalid(
                    "status",
                    format!("unknown invoice status `{other}` (draft, open, paid, void, issued)"),
                ));
            }
        })
    }
}

impl TryFrom<String> for InvoiceStatus {
    type Error = Error;

    fn try_from(stored: String) -> Result<Self> {
        stored.parse()
    }
}

impl std::fmt::Display for InvoiceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<db::JsonText> for BillTo {
    type Error = serde_json::Error;

    fn try_from(stored: db::JsonText) -> serde_json::Result<Self> {
        stored.parse()
    }
}

/// Who an invoice is addressed to, as it stood when the invoice was finalised.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BillTo {
    /// The billed company (or person).
    pub name: String,
    /// Postal address.
    pub address: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// VAT number.
    pub tax_id: String,
}

/// A stored invoice or credit note, with its tenant's slug.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Invoice {
    /// Id (UUID v7).
    pub id: String,
    /// `invoice` or `credit_note`.
    pub kind: String,
    /// The tenant billed.
    pub tenant_id: String,
    /// Its slug (filled in from the fleet's tenants: [`Invoices::with_slugs`]).
    #[sqlx(default)]
    pub slug: String,
    /// `YYYY-MM`.
    pub period: String,
    /// Where it stands.
    #[sqlx(try_from = "String")]
    pub status: InvoiceStatus,
    /// Given when finalised.
    pub number: Option<i64>,
    /// A credit note: the id of the invoice it cancels.
    pub credits: Option<String>,
    /// ISO 4217.
    pub currency: String,
    /// The lines, tax last.
    #[sqlx(try_from = "db::JsonText")]
    pub lines: Lines,
    /// Minor units.
    pub subtotal: i64,
    /// Minor units.
    pub tax: i64,
    /// Minor units.
    pub total: i64,
    /// Basis points.
    pub tax_rate_bp: i64,
    /// The contact when finalised.
    #[sqlx(try_from = "db::JsonText")]
    pub bill_to: BillTo,
    /// Drafted.
    pub created_at: String,
    /// Numbered.
    pub finalized_at: Option<String>,
    /// Due.
    pub due_at: Option<String>,
    /// Paid.
    pub paid_at: Option<String>,
    /// Voided.
    pub voided_at: Option<String>,
    /// Who collected it.
    pub payment_provider: Option<String>,
    /// The provider's (or the operator's) reference.
    pub payment_reference: Option<String>,
    /// Dunning reminders sent.
    pub reminders: i64,
    /// When dunning suspended the tenant over it.
    pub suspended_at: Option<String>,
    /// Who issued it, as it was when numbered (JSON of [`Issuer`]); `None` before that was kept.
    pub issued_by: Option<String>,
}

/// The seller on an issued invoice, kept with it (see [`Invoice::issuer`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issuer {
    /// Name and address.
    pub seller: String,
    /// VAT ID.
    pub tax_id: String,
    /// Country (ISO 3166-1 alpha-2).
    pub country: String,
}

impl Issuer {
    /// The seller as the settings say now.
    pub fn of(settings: &crate::BillingSettings) -> Self {
        Self {
            seller: settings.seller.clone(),
            tax_id: settings.seller_tax_id.clone(),
            country: settings.seller_country.clone(),
        }
    }

    /// Whether an invoice from this seller to `buyer`, charging no tax, is under the EU
    /// reverse charge (see [`crate::BillingSettings::reverse_charge`]).
    pub fn reverse_charge(&self, buyer: &BillTo) -> bool {
        crate::settings::reverse_charge(&self.country, &self.tax_id, &buyer.country, &buyer.tax_id)
    }
}

/// Money as people read it: `1234` EUR → `12.34 EUR`.
pub fn money(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    format!("{sign}{}.{:02} {currency}", minor.abs() / 100, minor.abs() % 100)
}

impl Invoice {
    /// Who issued it: as kept when it was numbered, else (an invoice from before that was
    /// kept, or a draft) as the settings say now.
    pub fn issuer(&self, settings: &crate::BillingSettings) -> Issuer {
        self.issued_by
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_else(|| Issuer::of(settings))
    }

    /// Its title: "Invoice 42", "Credit note 43", "Draft invoice".
    pub fn title(&self) -> String {
        let kind = if self.kind == "credit_note" { "Credit note" } else { "Invoice" };
        match self.number {
            Some(n) => format!("{kind} {n}"),
            None => format!("Draft {}", kind.to_lowercase()),
        }
    }

    /// Its total in words.
    pub fn total_text(&self) -> String {
        money(self.total, &self.currency)
    }

    /// Open past its due date at `now` (a timestamp).
    pub fn overdue(&self, now: &str) -> bool {
        self.status == InvoiceStatus::Open && self.due_at.as_deref().is_some_and(|due| due < now)
    }
}

/// Which invoices to list.
#[derive(Clone, Debug, Default)]
pub struct InvoiceFilter {
    /// One month.
    pub period: Option<String>,
    /// One tenant.
    pub tenant: Option<TenantId>,
    /// One state.
    pub status: Option<InvoiceStatus>,
    /// Leave out drafts (what a customer sees: documents issued to them).
    pub issued_only: bool,
    /// At most (0: no limit).
    pub limit: i64,
}

const SELECT: &str = "SELECT invoices.* FROM invoices";

/// The header of [`Invoices::csv`].
pub const CSV_HEADER: &str = "number,kind,status,tenant,period,currency,subtotal,tax,total,finalized_at,due_at,paid_at,voided_at,payment_reference";

fn csv_field(text: &str) -> String {
    // Quote every field that needs it; a leading formula character is defused for spreadsheets.
    let text = if text.starts_with(['=', '+', '-', '@']) && text.parse::<f64>().is_err() {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) { format!("\"{}\"", text.replace('"', "\"\"")) } else { text }
}

/// Invoices: the monthly run, numbers, payments, credit notes, CSV, the overview (from [`Billing::invoices`]).
#[derive(Clone, Copy)]
pub struct Invoices<'a>(pub(crate) &'a Billing);

impl Billing {
    /// Invoices: the monthly run, numbers, payments, credit notes, CSV, the overview.
    pub fn invoices(&self) -> Invoices<'_> {
        Invoices(self)
    }
}

impl Invoices<'_> {
    /// An invoice by id, or by number (all digits).
    pub async fn get(&self, key: &str) -> Result<Invoice> {
        let query = match key.parse::<i64>() {
            Ok(number) => {
                db::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE invoices.number = ?1"))).bind(number)
            }
            Err(_) => db::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE invoices.id = ?1"))).bind(key),
        };
        let invoice = query
            .fetch_optional(self.0.tenancy().control().reader())
            .await?
            .ok_or_else(|| Error::UnknownInvoice(key.to_owned()))?;
        Ok(self.with_slugs(vec![invoice]).await?.remove(0))
    }

    /// `invoices` with their tenants' slugs (`tenants` is the fleet's table, not joined here).
    async fn with_slugs(&self, mut invoices: Vec<Invoice>) -> Result<Vec<Invoice>> {
        let ids: Vec<String> = invoices.iter().map(|i| i.tenant_id.clone()).collect();
        let tenants = self.0.tenancy().control().tenants_by_ids(&ids).await?;
        for invoice in &mut invoices {
            if let Some(tenant) = tenants.get(&invoice.tenant_id) {
                invoice.slug = tenant.slug.to_string();
            }
        }
        Ok(invoices)
    }

    /// Invoices and credit notes, newest period first, then by number.
    pub async fn list(&self, filter: &InvoiceFilter) -> Result<Vec<Invoice>> {
        let sql = format!(
            "{SELECT} WHERE (?1 IS NULL OR invoices.period = ?1) AND (?2 IS NULL OR invoices.tenant_id = ?2)
               AND (?3 IS NULL OR invoices.status = ?3) AND (NOT ?5 OR invoices.status <> 'draft')
             ORDER BY invoices.period DESC, invoices.number IS NULL, invoices.number DESC, invoices.id
             LIMIT ?4"
        );
        let invoices = db::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&filter.period)
            .bind(filter.tenant.map(|t| t.to_string()))
            .bind(filter.status.map(InvoiceStatus::as_str))
            .bind(if filter.limit > 0 { filter.limit } else { i64::MAX })
            .bind(filter.issued_only)
            .fetch_all(self.0.tenancy().control().reader())
            .await?;
        self.with_slugs(invoices).await
    }

    /// The invoices as CSV (amounts in minor units), one line each after [`CSV_HEADER`].
    pub async fn csv(&self, filter: &InvoiceFilter) -> Result<String> {
        let mut out = String::from(CSV_HEADER);
        out.push('\n');
        for i in self.list(filter).await? {
            let number = i.number.map(|n| n.to_string()).unwrap_or_default();
            let fields = [
                number.as_str(),
                &i.kind,
                i.status.as_str(),
                &i.slug,
                &i.period,
                &i.currency,
                &i.subtotal.to_string(),
                &i.tax.to_string(),
                &i.total.to_string(),
                i.finalized_at.as_deref().unwrap_or(""),
                i.due_at.as_deref().unwrap_or(""),
                i.paid_at.as_deref().unwrap_or(""),
                i.voided_at.as_deref().unwrap_or(""),
                i.payment_reference.as_deref().unwrap_or(""),
            ];
            let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
            out.push_str(&line.join(","));
            out.push('\n');
        }
        Ok(out)
    }

    /// Finalises drafts: each gets the next number, the billing contact, a due date, and
    /// becomes open; then its provider is asked to collect it. Returns the invoices finalised
    /// (a draft another run finalised meanwhile is skipped).
    pub async fn finalise(&self, ids: &[String], actor: &str) -> Result<Vec<Invoice>> {
        let mut done = Vec::new();
        // Chunks keep the write lock short: a console request waits for one chunk, not a run.
        for chunk in ids.chunks(500) {
            let mut tx = self.0.tenancy().control().writer().begin().await?;
            // The first statement writes: the lock is taken before the sequence is read.
            let mut last: i64 =
                db::query_scalar("UPDATE invoice_sequence SET last = last WHERE id = 1 RETURNING last")
                    .fetch_one(&mut *tx)
                    .await?;
            let now = self.0.now();
            let due = now.plus(std::time::Duration::from_secs(
                86_400 * u64::from(self.0.settings().payment_terms_days),
            ));
            // Two statements per chunk: which are still drafts (in the order given), then
            // number them all at once from a JSON object id → position. `status || ''` keeps
            // the planner on the chunk's ids: through the status index it would walk every
            // draft of the run for each chunk. (An array's keys are numbers in SQLite and text
            // in PostgreSQL's `json_each`: cast, they sort as positions on both.)
            let found: Vec<(String, String)> = db::query_as(
                "SELECT invoices.id, invoices.tenant_id FROM json_each(?1) AS wanted JOIN invoices ON invoices.id = wanted.value
                 WHERE invoices.status || '' = 'draft' ORDER BY CAST(wanted.key AS BIGINT)",
            )
            .bind(serde_json::json!(chunk).to_string())
            .fetch_all(&mut *tx)
            .await?;
            let drafts: Vec<String> = found.iter().map(|(id, _)| id.clone()).collect();
            let positions: serde_json::Map<String, serde_json::Value> = drafts
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), serde_json::Value::from(i + 1)))
                .collect();
            // Each invoice's contact as it stands now, as a JSON object id → contact.
            let tenants: Vec<&String> = found.iter().map(|(_, tenant)| tenant).collect();
            let contacts: std::collections::HashMap<String, BillTo> =
                db::query_as::<(String, String, String, String, String)>(
                    "SELECT tenant_id, name, address, country, tax_id FROM billing_profiles
                 WHERE tenant_id IN (SELECT value FROM json_each(?1))",
                )
                .bind(serde_json::json!(tenants).to_string())
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|(tenant, name, address, country, tax_id)| {
                    (tenant, BillTo { name, address, country, tax_id })
                })
                .collect();
            let bill_to: serde_json::Map<String, serde_json::Value> = found
                .iter()
                .filter_map(|(id, tenant)| {
                    Some((id.clone(), serde_json::to_value(contacts.get(tenant)?).ok()?))
                })
                .collect();
            // `status || ''` keeps the status index out of it: the ids pick the rows.
            let numbered = db::query(
                "UPDATE invoices SET status = 'open', number = ?2 + CAST(?3 ->> ('$.\"' || id || '\"') AS BIGINT),
                     finalized_at = ?5, due_at = ?4, issued_by = ?6, bill_to = coalesce(?7 -> ('$.\"' || id || '\"'), '{}')
                 WHERE id IN (SELECT value FROM json_each(?1)) AND status || '' = 'draft'",
            )
            .bind(serde_json::json!(drafts).to_string())
            .bind(last)
            .bind(serde_json::Value::Object(positions).to_string())
            .bind(due.as_str())
            .bind(now.as_str())
            .bind(serde_json::to_string(&Issuer::of(self.0.settings())).unwrap_or_default())
            .bind(serde_json::Value::Object(bill_to).to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if numbered != drafts.len() as u64 {
                // Cannot happen under the write lock; if it did, numbers would skip: give them back.
                return Err(Error::Busy("invoices changed while being numbered; run again".into()));
            }
            last += drafts.len() as i64;
            done.extend(drafts);
            db::query("UPDATE invoice_sequence SET last = ?1 WHERE id = 1")
                .bind(last)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        let mut invoices = Vec::with_capacity(done.len());
        for chunk in done.chunks(500) {
            let ids = serde_json::json!(chunk).to_string();
            // Sorted here, not in SQL: an ORDER BY number could lead the planner to walk the
            // number index over every invoice instead of looking up the chunk's ids.
            let sql = format!("{SELECT} WHERE invoices.id IN (SELECT value FROM json_each(?1))");
            let finalised = db::query_as(sqlx::AssertSqlSafe(sql))
                .bind(ids)
                .fetch_all(self.0.tenancy().control().writer())
                .await?;
            let mut finalised = self.with_slugs(finalised).await?;
            finalised.sort_unstable_by_key(|i| i.number);
            for invoice in finalised {
                self.collect(&invoice, actor).await?;
                invoices.push(invoice);
            }
        }
        if !done.is_empty() {
            let mut tx = self.0.tenancy().control().writer().begin().await?;
            let numbers: Vec<i64> = invoices.iter().filter_map(|i| i.number).collect();
            let detail = serde_json::json!({
                "finalised": numbers.len(),
                "first": numbers.iter().min(),
                "last": numbers.iter().max(),
            });
            silo_core::audit::record(&mut tx, &self.0.now(), actor, "invoice.finalise", None, &detail)
                .await?;
            tx.commit().await?;
        }
        Ok(invoices)
    }

    /// Asks the payment provider to collect an open invoice; records what it says.
    async fn collect(&self, invoice: &Invoice, actor: &str) -> Result<()> {
        if invoice.total <= 0 {
            return Ok(());
        }
        match self.0.payments().collect(invoice).await? {
            Collection::Paid { reference } => {
                self.record_payment(&invoice.id, &reference, actor).await?;
            }
            Collection::Pending => {}
            Collection::Failed { reason } => {
                let mut tx = self.0.tenancy().control().writer().begin().await?;
                let detail = serde_json::json!({ "invoice": invoice.number, "reason": reason });
                let tenant = invoice.tenant_id.parse().ok();
                silo_core::audit::record(
                    &mut tx,
                    &self.0.now(),
                    actor,
                    "invoice.collect_failed",
                    tenant,
                    &detail,
                )
                .await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Records the payment of an open invoice (an operator after a bank transfer, or the
    /// provider). When dunning had suspended the tenant over it and no other unpaid invoice
    /// still holds it suspended, the tenant is resumed. Audited.
    pub async fn record_payment(&self, key: &str, reference: &str, actor: &str) -> Result<Invoice> {
        let invoice = self.get(key).await?;
        if invoice.status != InvoiceStatus::Open {
            return Err(Error::invalid(
                "invoice",
                format!("{} is {}: only an open invoice can be paid", invoice.title(), invoice.status),
            ));
        }
        let reference = reference.trim();
        if reference.chars().count() > 200 {
            return Err(Error::invalid("reference", "a payment reference has at most 200 characters"));
        }
        let now = self.0.now();
        let mut tx = self.0.tenancy().control().writer().begin().await?;
        let updated = db::query(
            "UPDATE invoices SET status = 'paid', paid_at = ?4, payment_provider = ?2, payment_reference = ?3
             WHERE id = ?1 AND status = 'open'",
        )
        .bind(&invoice.id)
        .bind(self.0.payments().name())
        .bind(reference)
        .bind(now.as_str())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(Error::Busy(format!("{} changed meanwhile; look again", invoice.title())));
        }
        let detail =
            serde_json::json!({ "invoice": invoice.number, "total": invoice.total, "reference": reference });
        silo_core::audit::record(
            &mut tx,
            &now,
            actor,
            "invoice.paid",
            invoice.tenant_id.parse().ok(),
            &detail,
        )
        .await?;
        tx.commit().await?;
        self.release_dunning(&invoice, actor).await?;
        self.get(&invoice.id).await
    }

    /// Voids an open or paid invoice: it keeps its number, and a credit note with the next
    /// number cancels it. A tenant dunning suspended over it is resumed. Audited.
    pub async fn void(&self, key: &str, actor: &str) -> Result<(Invoice, Invoice)> {
        let invoice = self.get(key).await?;
        if invoice.kind != "invoice" || !matches!(invoice.status, InvoiceStatus::Open | InvoiceStatus::Paid) {
            return Err(Error::invalid(
                "invoice",
                format!(
                    "{} is {}: only an open or paid invoice can be voided",
                    invoice.title(),
                    invoice.status
                ),
            ));
        }
        let credit_id = uuid::Uuid::now_v7().to_string();
        let lines: Vec<Line> = invoice
            .lines
            .iter()
            .map(|l| Line { description: l.description.clone(), amount: -l.amount })
            .collect();
        let now = self.0.now();
        let mut tx = self.0.tenancy().control().writer().begin().await?;
        let number: i64 =
            db::query_scalar("UPDATE invoice_sequence SET last = last + 1 WHERE id = 1 RETURNING last")
                .fetch_one(&mut *tx)
                .await?;
        let updated = db::query(
            "UPDATE invoices SET status = 'void', voided_at = ?2 WHERE id = ?1 AND status IN ('open', 'paid')",
        )
        .bind(&invoice.id)
        .bind(now.as_str())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            // Dropping the transaction gives the number back.
            return Err(Error::Busy(format!("{} changed meanwhile; look again", invoice.title())));
        }
        db::query(
            "INSERT INTO invoices (id, kind, tenant_id, period, status, number, credits, currency, lines, subtotal,
                 tax, total, tax_rate_bp, bill_to, created_at, finalized_at, issued_by)
             SELECT ?1, 'credit_note', tenant_id, period, 'issued', ?2, id, currency, ?3, -subtotal, -tax, -total,
                 tax_rate_bp, bill_to, ?5, ?5, issued_by
             FROM invoices WHERE id = ?4",
        )
        .bind(&credit_id)
        .bind(number)
        .bind(serde_json::json!(lines).to_string())
        .bind(&invoice.id)
        .bind(now.as_str())
        .execute(&mut *tx)
        .await?;
        let detail =
            serde_json::json!({ "invoice": invoice.number, "credit_note": number, "total": invoice.total });
        silo_core::audit::record(
            &mut tx,
            &now,
            actor,
            "invoice.void",
            invoice.tenant_id.parse().ok(),
            &detail,
        )
        .await?;
        tx.commit().await?;
        self.release_dunning(&invoice, actor).await?;
        Ok((self.get(&invoice.id).await?, self.get(&credit_id).await?))
    }

    /// Resumes a tenant dunning suspended over `invoice` once nothing else holds it.
    async fn release_dunning(&self, invoice: &Invoice, actor: &str) -> Result<()> {
        if invoice.suspended_at.is_none() {
            return Ok(());
        }
        let still: i64 = db::query_scalar(
            "SELECT count(*) FROM invoices WHERE tenant_id = ?1 AND status = 'open' AND suspended_at IS NOT NULL",
        )
        .bind(&invoice.tenant_id)
        .fetch_one(self.0.tenancy().control().writer())
        .await?;
        let id: TenantId =
            invoice.tenant_id.parse().map_err(|_| Error::UnknownInvoice(invoice.id.clone()))?;
        let tenant = self.0.tenancy().tenant(&TenantRef::Id(id)).await?;
        if still == 0 && tenant.status == TenantStatus::Suspended {
            self.0.tenancy().tenants().resume(&TenantRef::Id(id), actor).await?;
            let mut tx = self.0.tenancy().control().writer().begin().await?;
            let detail = serde_json::json!({ "invoice": invoice.number, "step": "resume" });
            silo_core::audit::record(&mut tx, &self.0.now(), actor, "billing.dunning", Some(id), &detail)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_and_csv_fields_read_right() {
        assert_eq!(money(123_456, "EUR"), "1234.56 EUR");
        assert_eq!(money(-5, "USD"), "-0.05 USD");
        assert_eq!(csv_field("acme"), "acme");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("-1200"), "-1200", "a negative amount stays a number");
        assert_eq!("paid".parse::<InvoiceStatus>().unwrap(), InvoiceStatus::Paid);
        assert!("sent".parse::<InvoiceStatus>().unwrap_err().to_string().contains("unknown invoice status"));
    }
}
