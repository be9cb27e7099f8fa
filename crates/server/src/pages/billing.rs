//! Billing pages. In a workspace (owners only): `/w/{slug}/billing` (plan and usage, the usage
//! graph, the plan change, the billing contact, the invoices), each invoice as a printable page
//! and the invoices as CSV. In the console: `/admin/invoices` (filters, CSV), an invoice with
//! "mark paid" and "void", and a tenant's billing contact. The rules live in `silo-billing`;
//! these handlers only read forms and render.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use silo_accounts::Role;
use silo_billing::{BillingProfile, Invoice, InvoiceFilter, InvoiceStatus};
use silo_core::{TenantId, TenantRef};

use super::workspace::{entered, home, page};
use super::{FormBack, Page, PageResult, flash_outcome_with, form_outcome};
use crate::csrf::CsrfForm;
use crate::error::{Failure, PageError};
use crate::redirects::see_other_with_flash;
use crate::request::state;
use crate::sessions::{Operator, SignedIn};
use crate::tenant::{Workspace, admit_to_billing};
use silo_tenancy::TenantStatus;

/// The workspace's billing pages (registered inside the `/w/{slug}` scope).
pub fn workspace_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(billing_page).service(invoices_csv).service(invoice_page).service(set_contact);
}

/// The console's billing pages.
pub fn admin_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(admin_invoices)
        .service(admin_invoices_csv)
        .service(admin_invoice)
        .service(admin_invoice_action)
        .service(admin_contact);
}

/// An invoice for a template: the stored one, with its amounts in words.
pub(super) fn shown(invoice: &Invoice, now: &str) -> serde_json::Value {
    let money = |minor: i64| silo_billing::invoices::money(minor, &invoice.currency);
    // The charges: the stored lines end with the tax line when there is tax, which the page
    // shows under the subtotal instead, not twice.
    let charges = match invoice.tax_rate_bp {
        0 => &invoice.lines[..],
        _ => &invoice.lines[..invoice.lines.len().saturating_sub(1)],
    };
    let lines: Vec<serde_json::Value> = charges
        .iter()
        .map(|l| serde_json::json!({ "description": l.description, "amount": money(l.amount) }))
        .collect();
    serde_json::json!({
        "invoice": invoice,
        "title": invoice.title(),
        "lines": lines,
        "subtotal": money(invoice.subtotal),
        "tax": money(invoice.tax),
        "total": money(invoice.total),
        "overdue": invoice.overdue(now),
        "due": invoice.due_at.as_deref().and_then(|d| d.get(..10)),
        "issued": invoice.finalized_at.as_deref().and_then(|d| d.get(..10)),
    })
}

fn csv(body: String, name: &str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")))
        .body(body)
}

/// The plans an owner can pick (the self-service ones) with their prices, the current plan
/// first when it is an operator's (so the select shows what the workspace is on).
/// The plans an owner may choose, and the one held (which may be an operator's): each with
/// its price and limits.
fn choosable(billing: &silo_billing::Billing, current: &str) -> Vec<serde_json::Value> {
    let mut names: Vec<&str> = billing.plans().self_service().collect();
    if !names.contains(&current) {
        names.push(current);
    }
    // Cheapest first, as a price list reads.
    names.sort_by_key(|name| {
        billing.plans().get(name).map_or((i64::MAX, i64::MAX), |p| (p.price_month, p.price_seat))
    });
    names
        .into_iter()
        .map(|name| {
            let terms = billing.plans().get(name).ok();
            let price = terms.map_or_else(|| "arranged with us".to_owned(), silo_billing::Plan::price_text);
            let limits = terms.map(silo_billing::Plan::limits_text);
            serde_json::json!({ "name": name, "price": price, "limits": limits, "current": name == current })
        })
        .collect()
}

/// The workspace's billing for its owner, open while the workspace is suspended (to pay).
async fn billing_of(req: &HttpRequest, me: &SignedIn) -> Result<Workspace, PageError> {
    let slug = req.match_info().get("slug").unwrap_or_default();
    let ws = admit_to_billing(state(req).accounts(), slug, &me.session.user_id).await?;
    ws.require(Role::Owner)?;
    Ok(ws)
}

#[get("/billing")]
async fn billing_page(req: HttpRequest, me: SignedIn) -> PageResult {
    let ws = billing_of(&req, &me).await?;
    // A suspended workspace's file stays closed: its projects are not counted meanwhile.
    let projects = match ws.tenant.status {
        TenantStatus::Active => {
            let entered = entered(&req, &me).await?;
            Some(silo_workspace::projects::count(entered.turn())?)
        }
        _ => None,
    };
    let billing = &state(&req).billing;
    let now = billing.now().as_str().to_owned();
    // Drafts are the billing run's working state, not documents the customer has received.
    let filter = InvoiceFilter { tenant: Some(ws.tenant.id), issued_only: true, ..Default::default() };
    let invoices: Vec<_> = billing.invoices().list(&filter).await?.iter().map(|i| shown(i, &now)).collect();
    page("workspace/billing.html", &ws, "billing")
        .with("usage", &billing.limits().usage(&ws.tenant, projects).await?)
        .with(
            "suspended_over",
            &billing.dunning().suspended_over(ws.tenant.id).await?.map(|i| shown(&i, &now)),
        )
        .with("suspended", &(ws.tenant.status == TenantStatus::Suspended))
        .with(
            "usage_chart",
            &super::charts::requests_per_day(&billing.metering().days(ws.tenant.id, 30).await?),
        )
        .with("plans", &choosable(billing, &ws.tenant.plan))
        .with("contact", &billing.profiles().get(ws.tenant.id).await?)
        .with("countries", &silo_billing::countries::by_name())
        .with("invoices", &invoices)
        .render(&req)
        .await
}

#[get("/billing/invoices.csv")]
async fn invoices_csv(req: HttpRequest, me: SignedIn) -> Result<HttpResponse, PageError> {
    let ws = billing_of(&req, &me).await?;
    let filter = InvoiceFilter { tenant: Some(ws.tenant.id), issued_only: true, ..Default::default() };
    let body = state(&req).billing.invoices().csv(&filter).await?;
    Ok(csv(body, &format!("{}-invoices.csv", ws.tenant.slug)))
}

/// The invoice `id` if it is this tenant's and not a draft; otherwise 404 (another tenant's
/// invoice does not exist from here).
async fn own_invoice(req: &HttpRequest, tenant: TenantId, id: &str) -> Result<Invoice, PageError> {
    match state(req).billing.invoices().get(id).await {
        Ok(i) if i.tenant_id == tenant.to_string() && i.status != InvoiceStatus::Draft => Ok(i),
        Ok(_) | Err(silo_billing::Error::UnknownInvoice(_)) => Err(Failure::not_found().into()),
        Err(e) => Err(e.into()),
    }
}

#[get("/billing/invoices/{id}")]
async fn invoice_page(req: HttpRequest, me: SignedIn, path: web::Path<(String, String)>) -> PageResult {
    let ws = billing_of(&req, &me).await?;
    let invoice = own_invoice(&req, ws.tenant.id, &path.1).await?;
    invoice_view(&req, &invoice, &format!("{}billing", home(&ws)), false).await
}

/// The printable invoice, for the customer (`back` to their billing page) or an operator.
async fn invoice_view(req: &HttpRequest, invoice: &Invoice, back: &str, operator: bool) -> PageResult {
    let billing = &state(req).billing;
    let settings = billing.settings();
    // A credit note names the invoice it cancels.
    let cancels = match &invoice.credits {
        Some(id) => Some(billing.invoices().get(id).await?.title()),
        None => None,
    };
    // The seller as it was when the invoice was issued: a later change of settings does not
    // rewrite it.
    let issuer = invoice.issuer(settings);
    let reverse_charge = invoice.tax_rate_bp == 0 && issuer.reverse_charge(&invoice.bill_to);
    Page::new("billing/invoice.html")
        .with("i", &shown(invoice, billing.now().as_str()))
        .with("cancels", &cancels)
        .with("reverse_charge", &reverse_charge)
        .with("seller", &issuer.seller)
        .with("seller_tax_id", &issuer.tax_id)
        .with("instructions", &billing.payments().instructions(invoice))
        .with("back", &back)
        .with("operator", &operator)
        .render(req)
        .await
}

#[derive(Deserialize, Clone)]
struct ContactForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    tax_id: String,
}

impl ContactForm {
    /// The fields a refusal is shown next to (the billing profile's names).
    const FIELDS: [&'static str; 5] = ["name", "email", "address", "country", "tax_id"];

    /// What was typed, to put back in a refused form.
    fn typed(&self) -> Vec<(&'static str, &str)> {
        let values = [&self.name, &self.email, &self.address, &self.country, &self.tax_id];
        Self::FIELDS.into_iter().zip(values.map(String::as_str)).collect()
    }
}

impl From<ContactForm> for BillingProfile {
    fn from(f: ContactForm) -> Self {
        Self { name: f.name, email: f.email, address: f.address, country: f.country, tax_id: f.tax_id }
    }
}

#[post("/billing/contact")]
async fn set_contact(req: HttpRequest, me: SignedIn, CsrfForm(form): CsrfForm<ContactForm>) -> PageResult {
    let ws = billing_of(&req, &me).await?;
    let back = format!("{}billing", home(&ws));
    let typed = form.typed();
    let saved = state(&req)
        .billing
        .profiles()
        .set(ws.tenant.id, form.clone().into(), me.session.email.as_str())
        .await;
    let form_back = FormBack { back: &back, fields: &ContactForm::FIELDS, typed };
    form_outcome(form_back, saved, |_| Ok(see_other_with_flash(&back, "ok", "Billing contact saved.")))
}

/// The console's invoice filters (left out of the template's context when not given, so its
/// `default` filters apply).
#[derive(Deserialize, serde::Serialize, Default)]
struct InvoiceQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    period: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<String>,
}

impl InvoiceQuery {
    async fn filter(&self, req: &HttpRequest) -> Result<InvoiceFilter, PageError> {
        let given =
            |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let period = given(&self.period);
        if let Some(p) = &period {
            p.parse::<silo_billing::Period>()?;
        }
        let status = given(&self.status).map(|s| s.parse::<InvoiceStatus>()).transpose()?;
        let tenant = match given(&self.tenant) {
            Some(t) => Some(
                state(req)
                    .tenancy()
                    .tenant(&t.parse::<TenantRef>().map_err(silo_tenancy::Error::from)?)
                    .await?
                    .id,
            ),
            None => None,
        };
        Ok(InvoiceFilter { period, tenant, status, issued_only: false, limit: 0 })
    }
}

#[get("/admin/invoices")]
async fn admin_invoices(req: HttpRequest, _op: Operator, query: web::Query<InvoiceQuery>) -> PageResult {
    let filter = query.filter(&req).await?;
    let billing = &state(&req).billing;
    let now = billing.now().as_str().to_owned();
    let invoices: Vec<_> = billing
        .invoices()
        .list(&InvoiceFilter { limit: 500, ..filter })
        .await?
        .iter()
        .map(|i| shown(i, &now))
        .collect();
    let csv_query = serde_urlencoded::to_string(&*query).unwrap_or_default();
    Page::new("admin/invoices.html")
        .with("invoices", &invoices)
        .with("csv_query", &csv_query)
        .with("query", &query.into_inner())
        .with("overview", &billing.invoices().overview().await?)
        .render(&req)
        .await
}

#[get("/admin/invoices.csv")]
async fn admin_invoices_csv(
    req: HttpRequest,
    _op: Operator,
    query: web::Query<InvoiceQuery>,
) -> Result<HttpResponse, PageError> {
    let filter = query.filter(&req).await?;
    let name =
        format!("invoices{}.csv", filter.period.as_deref().map(|p| format!("-{p}")).unwrap_or_default());
    Ok(csv(state(&req).billing.invoices().csv(&filter).await?, &name))
}

#[get("/admin/invoices/{id}")]
async fn admin_invoice(req: HttpRequest, _op: Operator, id: web::Path<String>) -> PageResult {
    let invoice = state(&req).billing.invoices().get(&id).await?;
    invoice_view(&req, &invoice, "/admin/invoices", true).await
}

#[derive(Deserialize)]
struct PayForm {
    #[serde(default)]
    reference: String,
}

#[post("/admin/invoices/{id}/{action}")]
async fn admin_invoice_action(
    req: HttpRequest,
    op: Operator,
    path: web::Path<(String, String)>,
    CsrfForm(form): CsrfForm<PayForm>,
) -> PageResult {
    let (id, action) = path.into_inner();
    let billing = &state(&req).billing;
    let back = format!("/admin/invoices/{id}");
    let actor = op.session.email.as_str();
    match action.as_str() {
        "pay" => {
            let paid = billing.invoices().record_payment(&id, &form.reference, actor).await;
            flash_outcome_with(&back, paid, |i| {
                Ok(see_other_with_flash(&back, "ok", &format!("{} is marked paid.", i.title())))
            })
        }
        "void" => {
            let voided = billing.invoices().void(&id, actor).await;
            flash_outcome_with(&back, voided, |(i, credit)| {
                let message = format!("{} is void; {} cancels it.", i.title(), credit.title());
                Ok(see_other_with_flash(&back, "ok", &message))
            })
        }
        _ => Err(Failure::not_found().into()),
    }
}

#[post("/admin/billing/{tenant}/contact")]
async fn admin_contact(
    req: HttpRequest,
    op: Operator,
    tenant: web::Path<String>,
    CsrfForm(form): CsrfForm<ContactForm>,
) -> PageResult {
    let id: TenantId = tenant.parse().map_err(|_| Failure::not_found())?;
    let tenant = state(&req).tenancy().tenants().by_id(id).await?;
    let back = format!("/admin/tenants/{}", tenant.id);
    let typed = form.typed();
    let saved =
        state(&req).billing.profiles().set(tenant.id, form.clone().into(), op.session.email.as_str()).await;
    let form_back = FormBack { back: &back, fields: &ContactForm::FIELDS, typed };
    form_outcome(form_back, saved, |_| Ok(see_other_with_flash(&back, "ok", "Billing contact saved.")))
}
