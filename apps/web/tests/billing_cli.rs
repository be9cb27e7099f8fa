//! `silo billing …` over a real data directory: the billing run (idempotent, gapless numbers
//! when several run at once, proration from the plan history), payment, void and credit
//! notes, dunning (reminders, suspension, payment resumes), billing contacts, bad input.
//!
//! Time is moved by rewriting the stored timestamps (tenants created and plans taken months
//! ago, a due date in the past), never by waiting.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{command, fails, json, ok};
use silo_tenancy::Settings;

/// Last month, as `YYYY-MM` (the month a run can bill today).
fn last_month() -> String {
    let now = silo_core::time::utc_now();
    silo_billing::Period::of(now.as_str()).unwrap().previous().to_string()
}

/// Runs `sql` statements on the data directory's control plane.
async fn control_sql(data: &Path, statements: &[&str]) {
    let tenancy = silo_web::schema::open(Settings::for_data_dir(data)).await.unwrap();
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(*sql)).execute(tenancy.control().writer()).await.unwrap();
    }
    tenancy.shutdown().await;
}

/// Every tenant was created (and took its plan) three months ago: last month is billed whole,
/// trials long over.
const BACKDATE: [&str; 2] = [
    "UPDATE tenants SET created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', 'start of month', '-3 months')",
    "UPDATE tenant_plans SET since = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', 'start of month', '-3 months')",
];

/// Moves the due date of `slug`'s invoices `days` into the past.
async fn due_days_ago(data: &Path, slug: &str, days: u32) {
    let sql = format!(
        "UPDATE invoices SET due_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-{days} days')
         WHERE tenant_id = (SELECT id FROM tenants WHERE slug = '{slug}')"
    );
    control_sql(data, &[&sql]).await;
}

fn numbers(invoices: &serde_json::Value) -> Vec<i64> {
    let mut numbers: Vec<i64> =
        invoices.as_array().unwrap().iter().filter_map(|i| i["number"].as_i64()).collect();
    numbers.sort_unstable();
    numbers
}

#[tokio::test]
async fn a_run_invoices_each_tenant_once_and_a_second_run_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    for (slug, plan) in [("acme", "business"), ("beta", "business"), ("gamma", "free")] {
        ok(data, &["tenant", "create", slug, "--plan", plan]);
    }
    control_sql(data, &BACKDATE).await;
    // beta moved to team half-way through last month: prorated by days.
    control_sql(
        data,
        &[
            "UPDATE tenants SET plan = 'team' WHERE slug = 'beta'",
            "UPDATE tenant_plans SET since = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', 'start of month', '-1 month', '+15 days')
             WHERE seq = (SELECT max(seq) FROM tenant_plans)",
        ],
    )
    .await;
    let period = last_month();
    let first = json(data, &["billing", "run", "--period", &period, "--json"]);
    assert_eq!(
        (first["tenants"].as_i64(), first["created"].as_i64(), first["finalised"].as_i64()),
        (Some(3), Some(2), Some(2))
    );
    assert_eq!(first["nothing_to_bill"], 1, "the free tenant pays nothing: {first}");

    let invoices = json(data, &["billing", "invoices", "--period", &period, "--json"]);
    assert_eq!(numbers(&invoices), [1, 2], "numbered in slug order from 1: {invoices}");
    let acme = invoices.as_array().unwrap().iter().find(|i| i["slug"] == "acme").unwrap();
    assert_eq!((acme["total"].as_i64(), acme["status"].as_str()), (Some(5_000), Some("open")));
    let beta = invoices.as_array().unwrap().iter().find(|i| i["slug"] == "beta").unwrap();
    let lines: Vec<&str> =
        beta["lines"].as_array().unwrap().iter().map(|l| l["description"].as_str().unwrap()).collect();
    assert!(lines[0].starts_with("business plan, days 1–15"), "{lines:?}");
    let beta_total = beta["total"].as_i64().unwrap();
    assert!(beta_total > 0 && beta_total < 5_000, "half a month of business, and team without seats: {beta}");

    // Idempotent: nothing new, the same numbers.
    let second = json(data, &["billing", "run", "--period", &period, "--json"]);
    assert_eq!((second["created"].as_i64(), second["finalised"].as_i64()), (Some(0), Some(0)), "{second}");
    assert_eq!(second["already_invoiced"], 2);
    assert_eq!(numbers(&json(data, &["billing", "invoices", "--json"])), [1, 2]);

    // The CSV and the printed list carry the same invoices.
    let csv = ok(data, &["billing", "invoices", "--csv"]);
    assert!(csv.starts_with(silo_billing::invoices::CSV_HEADER), "{csv}");
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.contains(&format!("1,invoice,open,acme,{period},EUR,5000,0,5000")), "{csv}");
    assert!(ok(data, &["billing", "show", "1"]).contains("business plan, the month"));

    // Bad input is named.
    assert!(fails(data, &["billing", "run", "--period", "2026-13"]).contains("is not a month"));
    let this_month = silo_billing::Period::of(silo_core::time::utc_now().as_str()).unwrap().to_string();
    assert!(fails(data, &["billing", "run", "--period", &this_month]).contains("has not ended"));
    assert!(fails(data, &["billing", "show", "99"]).contains("no invoice `99`"));
    assert!(fails(data, &["billing", "invoices", "--status", "sent"]).contains("unknown invoice status"));
}

/// A plan held for part of a day is billed for that day (each day at the highest plan held in
/// it), and storage beyond the plan is charged from the month's peak, not its last day.
#[tokio::test]
async fn a_plan_held_for_hours_and_a_peak_of_storage_are_billed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    std::fs::write(
        data.join("silo.toml"),
        "[plans.metered]\nstorage_mb = 1000\nprice_storage_gb = 200\nself_service = true\n",
    )
    .unwrap();
    ok(data, &["tenant", "create", "flip", "--plan", "business"]);
    ok(data, &["tenant", "create", "hoard", "--plan", "metered"]);
    control_sql(data, &BACKDATE).await;
    // flip: business three months ago (its trial long over), free since two months ago, and
    // business again from 09:00 to 17:00 on the 10th of last month.
    let latest = "WHERE seq = (SELECT max(seq) FROM tenant_plans)";
    control_sql(
        data,
        &[
            "UPDATE tenants SET plan = 'free' WHERE slug = 'flip'",
            &format!("UPDATE tenant_plans SET since = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', 'start of month', '-2 months') {latest}"),
            "UPDATE tenants SET plan = 'business' WHERE slug = 'flip'",
            &format!("UPDATE tenant_plans SET since = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', 'start of month', '-1 month', '+9 days', '+9 hours') {latest}"),
            "UPDATE tenants SET plan = 'free' WHERE slug = 'flip'",
            &format!("UPDATE tenant_plans SET since = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', 'start of month', '-1 month', '+9 days', '+17 hours') {latest}"),
            // hoard: 3.4 GB on the 5th (its peak), 0.5 GB at the month's end.
            "INSERT INTO usage_daily (tenant_id, day, requests, storage_bytes, seats, active_users)
             SELECT id, strftime('%Y-%m-%d', 'now', 'start of month', '-1 month', '+4 days'), 1, 3400000000, 1, 1
             FROM tenants WHERE slug = 'hoard'",
            "INSERT INTO usage_daily (tenant_id, day, requests, storage_bytes, seats, active_users)
             SELECT id, strftime('%Y-%m-%d', 'now', 'start of month', '-1 day'), 1, 500000000, 1, 1
             FROM tenants WHERE slug = 'hoard'",
        ],
    )
    .await;
    let period = last_month();
    let run = json(data, &["billing", "run", "--period", &period, "--json"]);
    assert_eq!(run["created"], 2, "{run}");
    let invoices = json(data, &["billing", "invoices", "--period", &period, "--json"]);
    let of = |slug: &str| invoices.as_array().unwrap().iter().find(|i| i["slug"] == slug).unwrap().clone();
    let flip = of("flip");
    let lines: Vec<&str> =
        flip["lines"].as_array().unwrap().iter().map(|l| l["description"].as_str().unwrap()).collect();
    assert_eq!(lines, ["business plan, days 10–10"], "{flip}");
    let days = i64::from(silo_billing::Period::of(&format!("{period}-01T00:00:00.000Z")).unwrap().days());
    assert_eq!(flip["total"].as_i64(), Some((5_000 * 10 + days / 2) / days - (5_000 * 9 + days / 2) / days));
    let hoard = of("hoard");
    let storage = hoard["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["description"].as_str().unwrap().starts_with("storage"))
        .unwrap();
    assert_eq!(storage["description"], "storage beyond the plan: 3 GB at the month's peak", "{hoard}");
    assert_eq!(storage["amount"], 600);
}

#[tokio::test]
async fn concurrent_runs_number_every_invoice_once_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let tenancy = silo_web::schema::open(Settings::for_data_dir(data)).await.unwrap();
    for i in 0..40 {
        let request = silo_tenancy::CreateTenant {
            slug: format!("t{i:02}"),
            name: None,
            region: None,
            plan: Some("business".into()),
        };
        tenancy.tenants().create(request, "test").await.unwrap();
    }
    tenancy.shutdown().await;
    control_sql(data, &BACKDATE).await;
    let period = last_month();
    // Four processes bill the same month at once.
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let mut run = command(data);
            run.args(["billing", "run", "--period", &period, "--json"]).stdout(std::process::Stdio::piped());
            run.spawn().unwrap()
        })
        .collect();
    let mut created = 0;
    for run in runs {
        let out = run.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        created += summary["created"].as_i64().unwrap();
    }
    assert_eq!(created, 40, "each invoice created by exactly one of the runs");
    let invoices = json(data, &["billing", "invoices", "--json"]);
    let all = invoices.as_array().unwrap();
    assert_eq!(all.len(), 40, "one invoice per tenant: {invoices}");
    let tenants: BTreeSet<&str> = all.iter().map(|i| i["slug"].as_str().unwrap()).collect();
    assert_eq!(tenants.len(), 40);
    assert_eq!(numbers(&invoices), (1..=40).collect::<Vec<_>>(), "gapless, no duplicates");
    assert!(all.iter().all(|i| i["status"] == "open"));
    // A void takes the next number for its credit note.
    assert!(ok(data, &["billing", "void", "7"]).contains("Credit note 41"));
    assert!(fails(data, &["billing", "void", "7"]).contains("only an open or paid invoice"));
    let again = json(data, &["billing", "run", "--period", &period, "--json"]);
    assert_eq!(again["created"], 0, "a void invoice still counts as invoiced: {again}");
}

#[tokio::test]
async fn dunning_reminds_then_suspends_and_payment_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    ok(data, &["tenant", "create", "acme", "--plan", "business"]);
    ok(data, &["tenant", "create", "beta", "--plan", "business"]);
    let contact =
        json(data, &["billing", "contact", "acme", "--email", "Billing@Acme.test", "--country", "de"]);
    assert_eq!(contact["country"], "DE");
    assert!(
        fails(data, &["billing", "contact", "acme", "--country", "Germany"]).contains("not a country code")
    );
    control_sql(data, &BACKDATE).await;
    let period = last_month();
    ok(data, &["billing", "run", "--period", &period]);

    // Not yet due: nothing happens.
    let calm = json(data, &["billing", "dunning", "--json"]);
    assert_eq!((calm["overdue"].as_i64(), calm["reminders"].as_i64()), (Some(0), Some(0)));

    // acme's invoice is 5 days late: the first reminder (day 3), no suspension (day 21).
    due_days_ago(data, "acme", 5).await;
    let pass = json(data, &["billing", "dunning", "--json"]);
    assert_eq!((pass["overdue"].as_i64(), pass["reminders"].as_i64()), (Some(1), Some(1)), "{pass}");
    assert_eq!(pass["suspended"].as_array().unwrap().len(), 0);
    assert_eq!(
        json(data, &["billing", "dunning", "--json"])["reminders"],
        0,
        "one reminder per reminder day"
    );

    // 30 days late: suspended; beta (not late) untouched.
    due_days_ago(data, "acme", 30).await;
    let pass = json(data, &["billing", "dunning", "--json"]);
    assert_eq!(pass["suspended"], serde_json::json!(["acme"]), "{pass}");
    assert_eq!(pass["reminders"], 1, "the second reminder (day 10)");
    let tenants = json(data, &["tenant", "list", "--json"]);
    let status = |slug: &str| {
        tenants.as_array().unwrap().iter().find(|t| t["slug"] == slug).unwrap()["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!((status("acme").as_str(), status("beta").as_str()), ("suspended", "active"));

    // The reminders went to the billing contact, through the outbox.
    let tenancy = silo_web::schema::open(Settings::for_data_dir(data)).await.unwrap();
    let accounts = silo_accounts::Accounts::new(tenancy.clone(), Default::default());
    let mail = accounts.outbox().list(Some("billing@acme.test"), 10).await.unwrap();
    assert_eq!(mail.len(), 2, "two reminders");
    assert!(
        mail.iter().all(|m| m.subject.contains("overdue")),
        "{:?}",
        mail.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    let steps: Vec<String> = sqlx::query_scalar(
        "SELECT json_extract(detail, '$.step') FROM audit_log WHERE action = 'billing.dunning' ORDER BY id",
    )
    .fetch_all(tenancy.control().reader())
    .await
    .unwrap();
    assert_eq!(steps, ["reminder", "reminder", "suspend"]);
    tenancy.shutdown().await;

    // Paying resumes the tenant, audited.
    let number =
        json(data, &["billing", "invoices", "--tenant", "acme", "--json"])[0]["number"].as_i64().unwrap();
    assert!(
        ok(data, &["billing", "pay", &number.to_string(), "--reference", "BANK-2026-11"]).contains("paid")
    );
    let tenants = json(data, &["tenant", "list", "--json"]);
    assert_eq!(tenants.as_array().unwrap().iter().find(|t| t["slug"] == "acme").unwrap()["status"], "active");
    assert!(
        fails(data, &["billing", "pay", &number.to_string()]).contains("only an open invoice can be paid")
    );
    assert_eq!(json(data, &["billing", "dunning", "--json"])["overdue"], 0);
}

#[tokio::test]
async fn erasing_the_person_who_is_the_billing_contact_blanks_the_address_and_keeps_the_invoices() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    ok(data, &["tenant", "create", "acme", "--plan", "business"]);
    let tenancy = silo_web::schema::open(Settings::for_data_dir(data)).await.unwrap();
    let accounts = silo_accounts::Accounts::new(tenancy.clone(), Default::default());
    accounts.users().create("ada@example.com", "correct horse battery staple", None, "test").await.unwrap();
    accounts.users().create("bob@example.com", "correct horse battery staple", None, "test").await.unwrap();
    for email in ["ada@example.com", "bob@example.com"] {
        let acme = "acme".parse().unwrap();
        accounts.memberships().add(&acme, email, silo_accounts::Role::Owner, "test").await.unwrap();
    }
    tenancy.shutdown().await;
    json(data, &["billing", "contact", "acme", "--name", "Acme GmbH", "--email", "ada@example.com"]);
    control_sql(data, &BACKDATE).await;
    ok(data, &["billing", "run", "--period", &last_month()]);

    ok(data, &["gdpr", "erase-subject", "ada@example.com"]);
    let contact = json(data, &["billing", "contact", "acme"]);
    assert_eq!(
        (contact["email"].as_str(), contact["name"].as_str()),
        (Some(""), Some("Acme GmbH")),
        "{contact}"
    );
    let invoices = json(data, &["billing", "invoices", "--json"]);
    assert_eq!(invoices.as_array().unwrap().len(), 1, "invoices are kept (Art. 17(3)(b))");
    assert!(!invoices.to_string().contains("ada@example.com"), "{invoices}");
}
