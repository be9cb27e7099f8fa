//! `silo billing …` over a real data directory: the billing run (idempotent, gapless numbers
//! when several run at once, proration from the plan history), payment, void and credit
//! notes, dunning (reminders, suspension, payment resumes), billing contacts, bad input.
//!
//! What must have happened at another time than now — tenants created and plans changed
//! months ago, storage measured on a past day, dunning passes weeks after an invoice fell due —
//! happens in this process on a test clock ([`billing_on`]); the `silo` commands under test
//! run on the real clock. Nothing waits, and no stored time is rewritten.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::{command, fails, json, ok};
use silo_billing::{Billing, Period};
use silo_core::{Clock, TestClock, Timestamp};
use silo_tenancy::CreateTenant;

/// Last month (the month a run can bill today).
fn last_period() -> Period {
    Period::of(silo_core::time::utc_now().as_str()).unwrap().previous()
}

/// Last month, as `YYYY-MM`.
fn last_month() -> String {
    last_period().to_string()
}

/// The start of `period`, as a moment.
fn start(period: Period) -> Timestamp {
    Timestamp::parse(&period.start()).unwrap()
}

/// The data directory's billing (its plans from `silo.toml`, when there is one) in this
/// process, on `clock`. Shut its fleet down ([`done`]) before the next `silo` command.
async fn billing_on(data: &Path, clock: &TestClock) -> Billing {
    let file = data.join("silo.toml");
    let mut settings = silo_web::settings::Settings::load(file.exists().then_some(file.as_path())).unwrap();
    settings.fleet.data_dir = data.to_owned();
    settings.fleet.control.url = common::control_url(data).map(silo_core::Secret::new);
    settings.fleet.clock = silo_core::ProcessClock::new(clock.shared());
    let tenancy = silo_web::schema::open(settings.fleet.clone()).await.unwrap();
    settings.billing(silo_accounts::Accounts::new(tenancy, settings.accounts()))
}

async fn done(billing: Billing) {
    billing.tenancy().shutdown().await;
}

/// Creates tenants (slug, plan) at the start of the month three months back: last month is
/// billed whole, trials long over.
async fn create_months_ago(billing: &Billing, clock: &TestClock, tenants: &[(&str, &str)]) {
    clock.set(&start(last_period().previous().previous()));
    for (slug, plan) in tenants {
        let request = CreateTenant { plan: Some((*plan).to_owned()), ..CreateTenant::with_slug(*slug) };
        billing.subscriptions().create_tenant(request, None, "test").await.unwrap();
    }
}

/// Changes `slug`'s plan at `at`.
async fn change_at(billing: &Billing, clock: &TestClock, at: &Timestamp, slug: &str, plan: &str) {
    clock.set(at);
    billing.subscriptions().change(&slug.parse().unwrap(), plan, "test").await.unwrap();
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
    let clock = TestClock::starting_now();
    let billing = billing_on(data, &clock).await;
    create_months_ago(&billing, &clock, &[("acme", "business"), ("beta", "business"), ("gamma", "free")])
        .await;
    // beta moved to team half-way through last month: prorated by days.
    let mid_month = Timestamp::from_unix_ms(start(last_period()).unix_ms() + 15 * 86_400_000);
    change_at(&billing, &clock, &mid_month, "beta", "team").await;
    done(billing).await;
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
    let clock = TestClock::starting_now();
    let billing = billing_on(data, &clock).await;
    create_months_ago(&billing, &clock, &[("flip", "business"), ("hoard", "metered")]).await;
    // flip: business three months ago (its trial long over), free since two months ago, and
    // business again from 09:00 to 17:00 on the 10th of last month.
    let last = start(last_period()).unix_ms();
    let hours = |h: i64| Timestamp::from_unix_ms(last + h * 3_600_000);
    change_at(&billing, &clock, &start(last_period().previous()), "flip", "free").await;
    change_at(&billing, &clock, &hours(9 * 24 + 9), "flip", "business").await;
    change_at(&billing, &clock, &hours(9 * 24 + 17), "flip", "free").await;
    // hoard: its file measured at 3.4 GB on the 5th (its peak), 0.5 GB on the month's last
    // day (the file is made that long, sparse, for the meter's look, then put back).
    let hoard = billing.tenancy().tenant(&"hoard".parse().unwrap()).await.unwrap();
    let file = billing.tenancy().tenant_path(&hoard).unwrap();
    let real = std::fs::metadata(&file).unwrap().len();
    let end_of_month = Timestamp::from_unix_ms(start(last_period().next()).unix_ms() - 3_600_000);
    for (day, bytes) in [(hours(4 * 24 + 12), 3_400_000_000), (end_of_month, 500_000_000)] {
        clock.set(&day);
        let sized = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        sized.set_len(bytes).unwrap();
        billing.metering().record(hoard.id, "someone");
        billing.metering().flush().await.unwrap();
        sized.set_len(real).unwrap();
    }
    done(billing).await;
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
    let clock = TestClock::starting_now();
    let billing = billing_on(data, &clock).await;
    let slugs: Vec<String> = (0..40).map(|i| format!("t{i:02}")).collect();
    let tenants: Vec<(&str, &str)> = slugs.iter().map(|slug| (slug.as_str(), "business")).collect();
    create_months_ago(&billing, &clock, &tenants).await;
    done(billing).await;
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
    let clock = TestClock::starting_now();
    let billing = billing_on(data, &clock).await;
    create_months_ago(&billing, &clock, &[("acme", "business"), ("beta", "business")]).await;
    done(billing).await;
    let contact =
        json(data, &["billing", "contact", "acme", "--email", "Billing@Acme.test", "--country", "de"]);
    assert_eq!(contact["country"], "DE");
    assert!(
        fails(data, &["billing", "contact", "acme", "--country", "Germany"]).contains("not a country code")
    );
    let period = last_month();
    ok(data, &["billing", "run", "--period", &period]);

    // Not yet due: nothing happens.
    let calm = json(data, &["billing", "dunning", "--json"]);
    assert_eq!((calm["overdue"].as_i64(), calm["reminders"].as_i64()), (Some(0), Some(0)));
    // beta pays at once.
    let invoice_of = |slug: &str| json(data, &["billing", "invoices", "--tenant", slug, "--json"])[0].clone();
    let beta = invoice_of("beta")["number"].as_i64().unwrap();
    ok(data, &["billing", "pay", &beta.to_string(), "--reference", "BANK-BETA"]);

    // Dunning passes on a clock days after acme's due date.
    let due = Timestamp::parse(invoice_of("acme")["due_at"].as_str().unwrap()).unwrap();
    let clock = TestClock::at(&due);
    let billing = billing_on(data, &clock).await;
    let pass_after = |days: u64| {
        clock.set(&due);
        clock.advance(Duration::from_secs(days * 86_400));
        let now = clock.now();
        let billing = billing.clone();
        async move { billing.dunning().run(now.as_str(), "test").await.unwrap() }
    };
    // 5 days late: the first reminder (day 3), no suspension (day 21).
    let pass = pass_after(5).await;
    assert_eq!((pass.overdue, pass.reminders, pass.suspended.len()), (1, 1, 0), "{pass:?}");
    assert_eq!(pass_after(5).await.reminders, 0, "one reminder per reminder day");

    // 30 days late: suspended; beta (paid) untouched.
    let pass = pass_after(30).await;
    assert_eq!(pass.suspended, ["acme"], "{pass:?}");
    assert_eq!(pass.reminders, 1, "the second reminder (day 10)");
    done(billing).await;
    let tenants = json(data, &["tenant", "list", "--json"]);
    let status = |slug: &str| {
        tenants.as_array().unwrap().iter().find(|t| t["slug"] == slug).unwrap()["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!((status("acme").as_str(), status("beta").as_str()), ("suspended", "active"));

    // The reminders went to the billing contact, through the outbox.
    let billing = billing_on(data, &TestClock::starting_now()).await;
    let mail = billing.accounts().outbox().list(Some("billing@acme.test"), 10).await.unwrap();
    assert_eq!(mail.len(), 2, "two reminders");
    assert!(
        mail.iter().all(|m| m.subject.contains("overdue")),
        "{:?}",
        mail.iter().map(|m| &m.subject).collect::<Vec<_>>()
    );
    let audited = billing.tenancy().audit_log(None, Some("billing.dunning"), 10).await.unwrap();
    let steps: Vec<&str> = audited.iter().rev().map(|e| e.detail["step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["reminder", "reminder", "suspend"]);
    done(billing).await;

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
    let clock = TestClock::starting_now();
    let billing = billing_on(data, &clock).await;
    create_months_ago(&billing, &clock, &[("acme", "business")]).await;
    clock.set(&silo_core::time::utc_now());
    let accounts = billing.accounts();
    accounts.users().create("ada@example.com", "correct horse battery staple", None, "test").await.unwrap();
    accounts.users().create("bob@example.com", "correct horse battery staple", None, "test").await.unwrap();
    for email in ["ada@example.com", "bob@example.com"] {
        let acme = "acme".parse().unwrap();
        accounts.memberships().add(&acme, email, silo_accounts::Role::Owner, "test").await.unwrap();
    }
    done(billing).await;
    json(data, &["billing", "contact", "acme", "--name", "Acme GmbH", "--email", "ada@example.com"]);
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
