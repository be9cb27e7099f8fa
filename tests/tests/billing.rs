//! Billing end to end: the storage quota holds at the file. A tenant on a 1 MB plan is filled
//! through the API until the quota answers 507; every acknowledged write is there, the file is
//! intact, reads work; a larger plan lifts the limit on the open handle at once.

use serde_json::json;
use silo_accounts::Role;
use silo_billing::Plan;
use silo_core::db;
use silo_e2e::{ApiClient, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_fills_its_plan_to_the_quota_and_an_upgrade_lifts_it_on_the_open_handle() {
    let server = TestServer::start_with(|s| {
        s.plans.0.insert("tiny".into(), Plan { storage_mb: Some(1), ..Plan::default() });
    })
    .await
    .unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    ops.call("POST", "/tenants", Some(json!({ "slug": "acme" }))).await.unwrap();
    let (status, body) = ops.call("PATCH", "/tenants/acme", Some(json!({ "plan": "gold" }))).await.unwrap();
    assert_eq!(status, 422, "an unknown plan: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("no plan `gold`"), "{body}");
    let (status, tenant) = ops.call("PATCH", "/tenants/acme", Some(json!({ "plan": "tiny" }))).await.unwrap();
    assert_eq!((status, tenant["plan"].as_str()), (200, Some("tiny")), "{tenant}");

    server.accounts.users().create("ada@example.com", silo_e2e::PASSWORD, None, "test").await.unwrap();
    let ada = ApiClient::new(
        server.addr,
        Some(&server.member_token("ada@example.com", "acme", Role::Owner).await.unwrap()),
    );
    let (_, project) = ada.call("POST", "/w/acme/projects", Some(json!({ "name": "P" }))).await.unwrap();
    let body = "quota ".repeat(700);
    let mut acknowledged = Vec::new();
    let refusal = loop {
        let task =
            json!({ "project_id": project["id"], "title": format!("t{}", acknowledged.len()), "body": body });
        let (status, answer) = ada.call("POST", "/w/acme/tasks", Some(task)).await.unwrap();
        match status {
            201 => acknowledged.push(answer["id"].as_i64().unwrap()),
            _ => break (status, answer),
        }
        assert!(acknowledged.len() < 2_000, "a 1 MB plan stopped nothing");
    };
    assert_eq!(refusal.0, 507, "{}", refusal.1);
    assert_eq!(refusal.1["error"]["code"], "storage_quota_exceeded", "{}", refusal.1);
    assert!(acknowledged.len() > 20, "the plan's megabyte was usable: {}", acknowledged.len());

    // Nothing acknowledged is lost, the file is intact, reads work.
    let tenant = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    let (count, integrity) = silo_e2e::tasks_and_integrity(&server.tenancy, "acme").await.unwrap();
    assert_eq!((count, integrity.as_str()), (acknowledged.len() as i64, "ok"));
    let size = std::fs::metadata(server.tenancy.tenant_path(&tenant).unwrap()).unwrap().len();
    assert!(size <= 1_000_000, "the file stayed within the plan: {size} bytes");
    let (status, first) = ada.call("GET", &format!("/w/acme/tasks/{}", acknowledged[0]), None).await.unwrap();
    assert_eq!(status, 200, "{first}");

    // A larger plan lifts the limit on the handle already open (no reopen).
    let opens = server.tenancy.cache().stats().opens;
    let (status, _) = ops.call("PATCH", "/tenants/acme", Some(json!({ "plan": "team" }))).await.unwrap();
    assert_eq!(status, 200);
    let task = json!({ "project_id": project["id"], "title": "after the upgrade", "body": body });
    let (status, answer) = ada.call("POST", "/w/acme/tasks", Some(task)).await.unwrap();
    assert_eq!(status, 201, "{answer}");
    assert_eq!(server.tenancy.cache().stats().opens, opens, "the same open handle");
    server.stop().await.unwrap();
}

/// Ada's workspace `acme`, moved by an operator to `pair`: 2 seats, 1 project, not
/// self-service.
async fn acme_on_the_pair_plan() -> (TestServer, silo_e2e::Visitor) {
    let server = TestServer::start_with(|s| {
        s.plans.0.insert("pair".into(), Plan { seats: Some(2), projects: Some(1), ..Plan::default() });
    })
    .await
    .unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    let (status, _) = ops.call("PATCH", "/tenants/acme", Some(json!({ "plan": "pair" }))).await.unwrap();
    assert_eq!(status, 200);
    (server, ada)
}

/// A plan's seats count members and pending invitations: the invitation past them is refused
/// with a clear message; a plan's project limit refuses the extra project (API and pages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plans_seats_and_projects_refuse_the_one_too_many() {
    let (server, ada) = acme_on_the_pair_plan().await;

    let invite = |email: &'static str| {
        let ada = &ada;
        async move {
            ada.submit("/w/acme/members", "/w/acme/members/invite", &[("email", email), ("role", "member")])
                .await
                .unwrap()
        }
    };
    assert_eq!(invite("bob@example.com").await.status, 303);
    let page = ada.get("/w/acme/members").await.unwrap().body;
    assert!(page.contains("Invitation emailed to bob@example.com"), "{page}");
    assert_eq!(invite("carol@example.com").await.status, 303);
    let page = ada.get("/w/acme/members").await.unwrap().body;
    assert!(page.contains("The pair plan has 2 seats and all are taken"), "{page}");
    let tenant = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    assert_eq!(
        server.accounts.invitations().pending(tenant.id).await.unwrap().len(),
        1,
        "carol was not invited"
    );

    let member = ApiClient::new(
        server.addr,
        Some(&server.member_token("ada@example.com", "acme", Role::Owner).await.unwrap()),
    );
    let (status, _) = member.call("POST", "/w/acme/projects", Some(json!({ "name": "one" }))).await.unwrap();
    assert_eq!(status, 201);
    let (status, body) =
        member.call("POST", "/w/acme/projects", Some(json!({ "name": "two" }))).await.unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("allows 1 projects"), "{body}");

    // The owner sees the plan's use on the billing page and moves to a larger plan there.
    assert!(
        ada.get("/w/acme/settings").await.unwrap().body.contains("/w/acme/billing"),
        "linked from settings"
    );
    let billing = ada.get("/w/acme/billing").await.unwrap().body;
    assert!(billing.contains("Plan and usage") && billing.contains("2 of 2"), "{billing}");
    let bad = ada.submit("/w/acme/billing", "/w/acme/plan", &[("plan", "gold")]).await.unwrap();
    assert_eq!(bad.status, 303);
    assert!(ada.get("/w/acme/billing").await.unwrap().body.contains("there is no plan `gold`"));
    // Each plan with its price and limits; choosing one first shows what it costs this month.
    assert!(
        billing.contains("<td class=\"nowrap\"><strong>team</strong></td><td>8.00 EUR a seat a month</td>")
            && billing.contains(
                "any number of seats · any number of projects · 10 GB of storage · 14 days&#x27; trial"
            ),
        "{billing}"
    );
    let asked = ada.submit("/w/acme/billing", "/w/acme/plan", &[("plan", "team")]).await.unwrap();
    assert_eq!(asked.status, 200, "{}", asked.body);
    let proration = asked.body.split("id=\"proration\">").nth(1).unwrap().split("</p>").next().unwrap();
    assert!(
        // Its figures depend on the day of the month: `a_plan_change_shows_its_prorated_cost_first`
        // checks them on a fixed clock.
        proration.starts_with("This month&#x27;s invoice ") && proration.contains("team"),
        "{proration}"
    );
    assert_eq!(
        server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap().plan,
        "pair",
        "not before it is confirmed"
    );
    let moved =
        ada.submit("/w/acme/billing", "/w/acme/plan", &[("plan", "team"), ("confirm", "yes")]).await.unwrap();
    assert_eq!(moved.status, 303);
    assert_eq!(server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap().plan, "team");
    // `pair` is an operator's plan (not self-service): the owner cannot pick it.
    let page = ada.get("/w/acme/billing").await.unwrap().body;
    assert!(!page.contains("value=\"pair\""), "only self-service plans are offered: {page}");
    let back = ada.submit("/w/acme/billing", "/w/acme/plan", &[("plan", "pair")]).await.unwrap();
    assert_eq!(back.status, 403, "{}", back.body);
    assert!(back.body.contains("arranged with us"), "{}", back.body);
    assert_eq!(server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap().plan, "team");
    assert_eq!(invite("carol@example.com").await.status, 303);
    assert_eq!(
        server.accounts.invitations().pending(tenant.id).await.unwrap().len(),
        2,
        "a seat is free now"
    );

    // Operators change it from the console.
    let console = server.sign_in("ops@example.com").await.unwrap();
    let page = format!("/admin/tenants/{}", tenant.id);
    let changed = console.submit(&page, &format!("{page}/plan"), &[("plan", "business")]).await.unwrap();
    assert_eq!(changed.status, 303);
    assert_eq!(server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap().plan, "business");
    server.stop().await.unwrap();
}

/// A plan's API requests per minute: a minute's burst is served, the next request is 429 with
/// `Retry-After`, and after that wait requests are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_rate_of_a_plan_answers_429_then_recovers() {
    let server = TestServer::start_with(|s| {
        s.plans.0.insert("slow".into(), Plan { api_rpm: Some(60), ..Plan::default() });
    })
    .await
    .unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    ops.call("POST", "/tenants", Some(json!({ "slug": "acme", "plan": "slow" }))).await.unwrap();
    let (_, tenant) = ops.call("PATCH", "/tenants/acme", Some(json!({ "plan": "slow" }))).await.unwrap();
    assert_eq!(tenant["plan"], "slow");
    server.accounts.users().create("ada@example.com", silo_e2e::PASSWORD, None, "test").await.unwrap();
    let token = server.member_token("ada@example.com", "acme", Role::Owner).await.unwrap();
    let client = reqwest::Client::new();
    let get = || client.get(server.url("/api/v1/w/acme/projects")).bearer_auth(&token).send();
    let mut served = 0;
    let refused = loop {
        let response = get().await.unwrap();
        if response.status() != 200 {
            break response;
        }
        served += 1;
        assert!(served < 1_000, "the plan's rate never applied");
    };
    assert_eq!(refused.status(), 429);
    assert!(served >= 60, "a minute's burst is served first: {served}");
    let wait: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    assert_eq!(get().await.unwrap().status(), 200, "served again after Retry-After");
    // Another tenant's requests are not counted against this one.
    ops.call("POST", "/tenants", Some(json!({ "slug": "other" }))).await.unwrap();
    let other = server.member_token("ada@example.com", "other", Role::Owner).await.unwrap();
    let response =
        client.get(server.url("/api/v1/w/other/projects")).bearer_auth(&other).send().await.unwrap();
    assert_eq!(response.status(), 200);
    server.stop().await.unwrap();
}

/// Requests are metered per tenant in memory and flushed into one row per tenant and day,
/// with the file's size and the seats; a flush with nothing new writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_metered_per_tenant_and_day() {
    let server = TestServer::start().await.unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    server.accounts.users().create("ada@example.com", silo_e2e::PASSWORD, None, "test").await.unwrap();
    let mut clients = Vec::new();
    for slug in ["acme", "beta"] {
        ops.call("POST", "/tenants", Some(json!({ "slug": slug }))).await.unwrap();
        let token = server.member_token("ada@example.com", slug, Role::Owner).await.unwrap();
        clients.push(ApiClient::new(server.addr, Some(&token)));
    }
    for _ in 0..7 {
        assert_eq!(clients[0].call("GET", "/w/acme/projects", None).await.unwrap().0, 200);
    }
    assert_eq!(clients[1].call("GET", "/w/beta/projects", None).await.unwrap().0, 200);
    assert_eq!(server.billing.metering().flush().await.unwrap(), 2);
    assert_eq!(server.billing.metering().flush().await.unwrap(), 0, "nothing new");
    for _ in 0..2 {
        clients[0].call("GET", "/w/acme/projects", None).await.unwrap();
    }
    // A second person uses acme: two active users that day (ada is counted once).
    server.accounts.users().create("bob@example.com", silo_e2e::PASSWORD, None, "test").await.unwrap();
    let bob = ApiClient::new(
        server.addr,
        Some(&server.member_token("bob@example.com", "acme", Role::Member).await.unwrap()),
    );
    assert_eq!(bob.call("GET", "/w/acme/projects", None).await.unwrap().0, 200);
    server.billing.metering().flush().await.unwrap();
    let acme = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    let days = server.billing.metering().days(acme.id, 30).await.unwrap();
    assert_eq!(days.len(), 1, "{days:?}");
    assert_eq!((days[0].requests, days[0].seats, days[0].active_users), (10, 2, 2), "{days:?}");
    assert!(days[0].storage_bytes > 0);
    let beta = server.tenancy.tenant(&"beta".parse().unwrap()).await.unwrap();
    assert_eq!(server.billing.metering().days(beta.id, 30).await.unwrap()[0].requests, 1);
    // The console's tenant page draws them.
    let console = server.sign_in("ops@example.com").await.unwrap();
    let page = console.get(&format!("/admin/tenants/{}", acme.id)).await.unwrap().body;
    assert!(page.contains("<svg") && page.contains(&format!("{}: 10 requests", days[0].day)), "{page}");
    // A plan that does not exist cannot be given at creation either.
    let (status, body) =
        ops.call("POST", "/tenants", Some(json!({ "slug": "gamma", "plan": "gold" }))).await.unwrap();
    assert_eq!(status, 422, "{body}");
    server.stop().await.unwrap();
}

/// Invoices from end to end over HTTP: the owner's billing page (contact, invoices, the
/// printable invoice, CSV), nobody else's view of them, and the console's (MRR and open
/// invoices on `/admin`, the invoice list and CSV, marking paid, voiding with a credit note).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoices_on_the_workspace_billing_page_and_in_the_console() {
    // The workspaces are created three months back (on the clock: no row is back-dated), so
    // last month is billed whole, trials long over; then the clock returns to the present.
    let (clock, present) = silo_e2e::clock_months_back(3);
    let shared = silo_core::ProcessClock::new(clock.shared());
    let server = TestServer::start_with(move |s| {
        s.billing.tax_rates.insert("DE".into(), 1_900);
        s.billing.tax_rates.insert("FR".into(), 2_000);
        s.billing.seller = "Silo GmbH\nMusterweg 1\n10115 Berlin".into();
        s.billing.seller_tax_id = "DE 123 456 789".into();
        s.billing.seller_country = "DE".into();
        s.fleet.clock = shared;
    })
    .await
    .unwrap();
    let billing = &server.billing;
    for (slug, owner) in [("acme", "ada@example.com"), ("beta", "bob@example.com")] {
        let request = silo_tenancy::CreateTenant {
            slug: slug.into(),
            name: None,
            region: None,
            plan: Some("business".into()),
        };
        billing.subscriptions().create_tenant(request, None, "test").await.unwrap();
        server.accounts.users().create(owner, silo_e2e::PASSWORD, None, "test").await.unwrap();
        server.accounts.memberships().add(&slug.parse().unwrap(), owner, Role::Owner, "test").await.unwrap();
    }
    server.accounts.users().create("mia@example.com", silo_e2e::PASSWORD, None, "test").await.unwrap();
    server
        .accounts
        .memberships()
        .add(&"acme".parse().unwrap(), "mia@example.com", Role::Member, "test")
        .await
        .unwrap();
    clock.set(&present);

    // The owner fills in the billing contact; a bad country is named and changes nothing.
    let ada = server.sign_in("ada@example.com").await.unwrap();
    let page = ada.get("/w/acme/billing").await.unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Billing contact") && page.body.contains("No invoices yet"), "{}", page.body);
    let contact = [("name", "Acme GmbH"), ("address", "Hauptstr. 1\nBerlin"), ("country", "Germany")];
    assert_eq!(ada.submit("/w/acme/billing", "/w/acme/billing/contact", &contact).await.unwrap().status, 303);
    let page = ada.get("/w/acme/billing").await.unwrap().body;
    assert!(page.contains("is not a country code (for Germany choose DE)"), "{page}");
    // Next to the field, with what was typed kept.
    assert!(page.contains("id=\"country-error\"") && page.contains("value=\"Acme GmbH\""), "{page}");
    assert_eq!(
        billing
            .profiles()
            .get(server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap().id)
            .await
            .unwrap()
            .country,
        "",
        "nothing saved"
    );
    for (code, name) in [("GE", "Georgia"), ("DE", "Germany")] {
        assert!(
            page.contains(&format!("<option value=\"{code}\" >{name} ({code})</option>")),
            "a select with names: {page}"
        );
    }
    let contact = [("name", "Acme GmbH"), ("address", "Hauptstr. 1\nBerlin"), ("country", "ZZ")];
    ada.submit("/w/acme/billing", "/w/acme/billing/contact", &contact).await.unwrap();
    assert!(ada.get("/w/acme/billing").await.unwrap().body.contains("“ZZ” is not a country code"));
    let contact =
        [("name", "Acme GmbH"), ("address", "Hauptstr. 1\nBerlin"), ("country", "de"), ("email", "")];
    assert_eq!(ada.submit("/w/acme/billing", "/w/acme/billing/contact", &contact).await.unwrap().status, 303);
    let tenant = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    assert_eq!(billing.profiles().get(tenant.id).await.unwrap().country, "DE");
    // A member is not shown billing.
    let mia = server.sign_in("mia@example.com").await.unwrap();
    assert_eq!(mia.get("/w/acme/billing").await.unwrap().status, 403);

    // Beta is a French company with a VAT number: billed from Germany under the reverse charge.
    let beta_id = server.tenancy.tenant(&"beta".parse().unwrap()).await.unwrap().id;
    let french = silo_billing::BillingProfile {
        name: "Beta SAS".into(),
        country: "FR".into(),
        tax_id: "FR 40 303 265 045".into(),
        ..Default::default()
    };
    billing.profiles().set(beta_id, french, "test").await.unwrap();

    // Last month, billed: both tenants held business all month (created three months ago).
    let period = silo_billing::Period::of(present.as_str()).unwrap().previous();
    let summary = billing.invoices().run(period, "test").await.unwrap();
    assert_eq!(summary.finalised, 2, "{summary:?}");
    let acme_invoice = billing
        .invoices()
        .list(&silo_billing::InvoiceFilter { tenant: Some(tenant.id), ..Default::default() })
        .await
        .unwrap()
        .remove(0);
    // business: 50.00 + 2 seats × 15.00 = 80.00, and 19 % German tax.
    assert_eq!((acme_invoice.subtotal, acme_invoice.tax, acme_invoice.total), (8_000, 1_520, 9_520));

    // A draft (a run interrupted before finalising) is not a document the customer has.
    db::query(
        "INSERT INTO invoices (id, kind, tenant_id, period, status, currency, lines, subtotal, tax, total,
             tax_rate_bp, created_at)
         VALUES ('draft-1', 'invoice', ?1, '2020-01', 'draft', 'EUR', '[]', 100, 0, 100, 0, '2020-02-01T00:00:00.000Z')",
    )
    .bind(tenant.id.to_string())
    .execute(server.tenancy.control().writer())
    .await
    .unwrap();
    let page = ada.get("/w/acme/billing").await.unwrap().body;
    assert!(page.contains(&acme_invoice.title()) && page.contains("95.20 EUR"), "{page}");
    assert!(!page.contains("Draft invoice") && !page.contains("2020-01"), "{page}");
    assert_eq!(ada.get("/w/acme/billing/invoices/draft-1").await.unwrap().status, 404);
    let printable = ada.get(&format!("/w/acme/billing/invoices/{}", acme_invoice.id)).await.unwrap();
    assert_eq!(printable.status, 200);
    for expected in [
        "Acme GmbH",
        "Hauptstr. 1",
        "business plan, the month",
        "2 seats × business plan",
        "15.20 EUR",
        "95.20 EUR",
        "bank transfer",
        "Silo GmbH\nMusterweg 1\n10115 Berlin",
        "VAT ID DE 123 456 789",
        "How to pay",
    ] {
        assert!(printable.body.contains(expected), "{expected} in {}", printable.body);
    }
    assert!(!printable.body.contains("Reverse charge"), "a German buyer pays German VAT");
    assert_eq!(printable.body.matches("15.20 EUR").count(), 1, "the tax once, under the subtotal");
    // The seller is kept with the invoice as it was when it was numbered: other settings later
    // do not rewrite it.
    let issuer = acme_invoice.issuer(&silo_billing::BillingSettings::default());
    assert_eq!(
        (issuer.seller.as_str(), issuer.tax_id.as_str()),
        ("Silo GmbH\nMusterweg 1\n10115 Berlin", "DE 123 456 789")
    );
    assert!(!printable.body.contains("tax 19.00 %"), "not also as a line above the subtotal");
    let beta_invoice = billing
        .invoices()
        .list(&silo_billing::InvoiceFilter { tenant: Some(beta_id), ..Default::default() })
        .await
        .unwrap()
        .remove(0);
    assert_eq!((beta_invoice.tax, beta_invoice.tax_rate_bp), (0, 0), "no VAT under the reverse charge");
    assert!(
        beta_invoice.lines.iter().any(|l| l.description == "1 seat × business plan, the month"),
        "{:?}",
        beta_invoice.lines
    );
    let bob_page = server.sign_in("bob@example.com").await.unwrap();
    let beta_printable =
        bob_page.get(&format!("/w/beta/billing/invoices/{}", beta_invoice.id)).await.unwrap().body;
    assert!(
        beta_printable.contains("VAT (reverse charge)")
            && beta_printable.contains("the recipient, VAT ID FR 40 303 265 045, accounts for it"),
        "{beta_printable}"
    );
    // Unpaid weeks past its due date, dunning suspends acme: its owner is told why and shown
    // the invoice to pay; its member gets the explanation; billing stays open to the owner.
    let due = silo_core::Timestamp::parse(acme_invoice.due_at.as_deref().unwrap()).unwrap();
    let weeks_late = due.plus(std::time::Duration::from_secs(40 * 86_400));
    let dunned = billing.dunning().run(weeks_late.as_str(), "test").await.unwrap();
    assert!(dunned.suspended.contains(&"acme".to_owned()), "{dunned:?}");
    let told = ada.get("/w/acme/").await.unwrap();
    assert_eq!(told.status, 423);
    assert!(
        told.body.contains(&format!(
            "is suspended because invoice {} (95.20 EUR) is unpaid",
            acme_invoice.number.unwrap()
        )) && told.body.contains(&format!("href=\"/w/acme/billing/invoices/{}\"", acme_invoice.id))
            && told.body.contains("Sign out"),
        "{}",
        told.body
    );
    let mia_told = server.sign_in("mia@example.com").await.unwrap().get("/w/acme/").await.unwrap();
    assert_eq!(mia_told.status, 423);
    assert!(
        mia_told.body.contains("because an invoice is unpaid. Its owners have been told"),
        "{}",
        mia_told.body
    );
    assert!(!mia_told.body.contains("/billing/invoices/"), "a member is not shown the invoice");
    let open_billing = ada.get("/w/acme/billing").await.unwrap();
    assert_eq!(open_billing.status, 200, "billing stays open to pay");
    assert!(open_billing.body.contains("id=\"suspended\""), "{}", open_billing.body);
    assert_eq!(ada.get(&format!("/w/acme/billing/invoices/{}", acme_invoice.id)).await.unwrap().status, 200);
    assert_eq!(
        server.sign_in("mia@example.com").await.unwrap().get("/w/acme/billing").await.unwrap().status,
        403
    );
    // The operators let both (beta's invoice was as late) go on, for what follows.
    for slug in ["acme", "beta"] {
        server.tenancy.tenants().resume(&slug.parse().unwrap(), "test").await.unwrap();
    }

    let csv = ada.get("/w/acme/billing/invoices.csv").await.unwrap();
    assert!(csv.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert_eq!(csv.body.lines().count(), 2, "the header and the open invoice, no draft: {}", csv.body);
    assert!(csv.body.contains(",invoice,open,acme,"), "{}", csv.body);
    // Another tenant's owner cannot see it, even by its id.
    let bob = server.sign_in("bob@example.com").await.unwrap();
    assert_eq!(bob.get(&format!("/w/beta/billing/invoices/{}", acme_invoice.id)).await.unwrap().status, 404);
    assert!(!bob.get("/w/beta/billing/invoices.csv").await.unwrap().body.contains("acme"));

    // The console: MRR and open invoices, the list, payment, void.
    server.operator_token("ops@example.com").await.unwrap();
    let console = server.sign_in("ops@example.com").await.unwrap();
    let admin = console.get("/admin").await.unwrap().body;
    // MRR without tax: acme 50.00 + 2 × 15.00, beta 50.00 + 15.00.
    assert!(
        admin.contains("145.00 EUR from 2 paying tenants") && admin.contains("business</a>: 2"),
        "{admin}"
    );
    assert!(
        admin.contains("2 (160.20 EUR)"),
        "open: 95.20 EUR, and 65.00 EUR untaxed (beta, reverse charge): {admin}"
    );
    // The operator sets beta's billing contact on its tenant page.
    let beta = server.tenancy.tenant(&"beta".parse().unwrap()).await.unwrap();
    let page = format!("/admin/tenants/{}", beta.id);
    let contact = [("name", "Beta SARL"), ("country", "fr"), ("email", "compta@beta.test")];
    let saved =
        console.submit(&page, &format!("/admin/billing/{}/contact", beta.id), &contact).await.unwrap();
    assert_eq!(saved.status, 303);
    let shown = console.get(&page).await.unwrap().body;
    assert!(shown.contains("Billing contact saved") && shown.contains("Beta SARL"), "{shown}");
    assert_eq!(billing.profiles().get(beta.id).await.unwrap().country, "FR");
    let list = console.get(&format!("/admin/invoices?period={period}")).await.unwrap().body;
    assert!(list.contains("acme") && list.contains("beta"), "{list}");
    let csv = console.get(&format!("/admin/invoices.csv?period={period}")).await.unwrap().body;
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert_eq!(console.get("/admin/invoices?period=2026-13").await.unwrap().status, 422);
    let page = format!("/admin/invoices/{}", acme_invoice.id);
    let paid = console.submit(&page, &format!("{page}/pay"), &[("reference", "SEPA-4711")]).await.unwrap();
    assert_eq!(paid.status, 303);
    let shown = console.get(&page).await.unwrap().body;
    assert!(shown.contains("is marked paid") && shown.contains("paid"), "{shown}");
    assert_eq!(
        billing.invoices().get(&acme_invoice.id).await.unwrap().payment_reference.as_deref(),
        Some("SEPA-4711")
    );
    let voided = console.submit(&page, &format!("{page}/void"), &[]).await.unwrap();
    assert_eq!(voided.status, 303);
    let shown = console.get(&page).await.unwrap().body;
    assert!(shown.contains("is void; Credit note 3 cancels it"), "{shown}");
    let billing_page = ada.get("/w/acme/billing").await.unwrap().body;
    let credit_id = between_quotes(&billing_page, "Credit note 3");
    let credit = ada.get(&format!("/w/acme/billing/invoices/{credit_id}")).await.unwrap().body;
    assert!(credit.contains(&format!("Cancels {}", acme_invoice.title())), "names the invoice: {credit}");
    // Paying it again is refused with a message, not an error page.
    let again = console.submit(&page, &format!("{page}/pay"), &[("reference", "x")]).await.unwrap();
    assert_eq!(again.status, 303);
    assert!(console.get(&page).await.unwrap().body.contains("only an open invoice can be paid"));
    server.stop().await.unwrap();
}

/// `silo serve` enqueues last month's billing run and today's dunning pass once, and its
/// workers run them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_schedules_last_months_run_and_todays_dunning_pass_once() {
    let server = TestServer::start_with(|s| s.billing.schedule = true).await.unwrap();
    let now = silo_core::time::utc_now();
    let last_month = silo_billing::Period::of(now.as_str()).unwrap().previous().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (run, dunning) = loop {
        let jobs = server.tenancy.jobs().list(Some(silo_jobs::JobStatus::Done), 50).await.unwrap();
        let find = |kind: &str| jobs.iter().find(|j| j.kind == kind).cloned();
        if let (Some(run), Some(dunning)) = (find("billing.run"), find("billing.dunning")) {
            break (run, dunning);
        }
        assert!(std::time::Instant::now() < deadline, "the scheduled jobs did not run: {jobs:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(run.payload["period"], last_month.as_str());
    assert_eq!(run.result.as_ref().unwrap()["period"], last_month.as_str(), "{:?}", run.result);
    assert_eq!(dunning.payload["day"], now.date());
    assert!(server.billing.schedule().due().await.unwrap().is_empty(), "each is enqueued once");
    server.stop().await.unwrap();
}

/// Seats and projects are counted in the statement that spends them: of many invitations or
/// project creations sent at once, exactly as many pass as the plan has room for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_invitations_and_projects_cannot_pass_a_limit() {
    let (server, ada) = acme_on_the_pair_plan().await;

    let csrf = ada.csrf("/w/acme/members").await.unwrap();
    let emails: Vec<String> = (0..8).map(|i| format!("guest{i}@example.com")).collect();
    let forms: Vec<[(&str, &str); 3]> = emails
        .iter()
        .map(|email| [("csrf", csrf.as_str()), ("email", email.as_str()), ("role", "member")])
        .collect();
    let invitations = forms.iter().map(|form| ada.post("/w/acme/members/invite", form));
    for sent in futures::future::join_all(invitations).await {
        assert_eq!(sent.unwrap().status, 303);
    }
    let tenant = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    let pending = server.accounts.invitations().pending(tenant.id).await.unwrap();
    assert_eq!(pending.len(), 1, "one seat was left for eight invitations: {pending:?}");

    let owner = ApiClient::new(
        server.addr,
        Some(&server.member_token("ada@example.com", "acme", Role::Owner).await.unwrap()),
    );
    let creations =
        (0..8).map(|i| owner.call("POST", "/w/acme/projects", Some(json!({ "name": format!("p{i}") }))));
    let statuses: Vec<u16> =
        futures::future::join_all(creations).await.into_iter().map(|r| r.unwrap().0).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 201 || *s == 422), "{statuses:?}");
    let db = server.tenancy.db(tenant.id).await.unwrap();
    assert_eq!(silo_workspace::projects::count(&db.turn().await).unwrap(), 1);
    server.stop().await.unwrap();
}

/// A tenant provisioned with an owner is one operation: when the owner cannot be added, no
/// tenant, file or membership is left behind.
#[tokio::test]
async fn a_tenant_and_its_owner_are_created_together_or_not_at_all() {
    let server = TestServer::start().await.unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    server.accounts.users().create("ada@example.com", silo_e2e::PASSWORD, None, "test").await.unwrap();
    // The control plane refuses the owner's membership (as a failing disk would, mid-way).
    db::testing::refuse_inserts(server.tenancy.control().writer(), "memberships").await;
    let new = json!({ "slug": "acme", "owner_email": "ada@example.com" });
    let (status, body) = ops.call("POST", "/tenants", Some(new.clone())).await.unwrap();
    assert_eq!(status, 500, "{body}");
    let (status, _) = ops.call("GET", "/tenants/acme", None).await.unwrap();
    assert_eq!(status, 404, "no ownerless tenant is left behind");
    let tenants_dir = server.tenancy.settings().data_dir.join("regions");
    let files: Vec<_> =
        walk(&tenants_dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "db")).collect();
    assert!(files.is_empty(), "no tenant file is left behind: {files:?}");

    db::testing::allow_inserts(server.tenancy.control().writer(), "memberships").await;
    let (status, tenant) = ops.call("POST", "/tenants", Some(new)).await.unwrap();
    assert_eq!(status, 201, "{tenant}");
    let ada = server.accounts.users().by_email("ada@example.com").await.unwrap();
    let id: silo_core::TenantId = tenant["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(server.accounts.memberships().role(id, &ada.id).await.unwrap(), Some(Role::Owner));
    let db = server.tenancy.db(id).await.unwrap();
    let row = silo_workspace::members::by_user(&db.turn().await, &ada.id).unwrap().unwrap();
    assert_eq!((row.role.as_str(), row.left_at), ("owner", None));
    server.stop().await.unwrap();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

/// The billing run, due dates and dunning follow the process's clock, moved by hand (no row
/// back-dated): a workspace on `business` since June is billed for August on 15 September,
/// its invoice falls due after the payment terms, a reminder goes out 3 days late, the
/// workspace is suspended 21 days late, and paying resumes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_due_dates_and_dunning_follow_the_clock() {
    use silo_core::{Clock, ProcessClock, TestClock, Timestamp};
    let at = |text: &str| Timestamp::parse(text).unwrap();
    let clock = TestClock::at(&at("2026-06-01T09:00:00.000Z"));
    let shared = ProcessClock::new(clock.shared());
    let server = TestServer::start_with(move |s| s.fleet.clock = shared).await.unwrap();
    server.sign_up("ada@example.com", "acme").await.unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    let (status, tenant) =
        ops.call("PATCH", "/tenants/acme", Some(json!({ "plan": "business" }))).await.unwrap();
    assert_eq!(status, 200, "{tenant}");
    assert!(tenant["created_at"].as_str().unwrap().starts_with("2026-06-01T09:00:00"), "{tenant}");
    let billing = &server.billing;

    clock.set(&at("2026-09-15T09:00:00.000Z"));
    let summary = billing.invoices().run("2026-08".parse().unwrap(), "test").await.unwrap();
    assert_eq!((summary.tenants, summary.finalised), (1, 1), "{summary:?}");
    let invoice = billing.invoices().list(&silo_billing::InvoiceFilter::default()).await.unwrap().remove(0);
    assert_eq!(invoice.finalized_at.as_deref(), Some("2026-09-15T09:00:00.000Z"));
    assert_eq!(invoice.due_at.as_deref(), Some("2026-09-29T09:00:00.000Z"), "14 days' terms");
    // A whole month of business with one seat (the trial ended in June).
    assert_eq!(invoice.subtotal, 6_500);

    let pass = |day: &str| {
        clock.set(&at(day));
        let now = clock.now();
        async move { billing.dunning().run(now.as_str(), "test").await.unwrap() }
    };
    let on_time = pass("2026-09-29T10:00:00.000Z").await;
    assert_eq!((on_time.overdue, on_time.reminders), (1, 0), "overdue, but no reminder on day 0");
    let late = pass("2026-10-02T10:00:00.000Z").await;
    assert_eq!((late.reminders, late.suspended.len()), (1, 0), "3 days late: a reminder");
    assert!(server.last_email("ada@example.com").await.unwrap().contains("was due on 2026-09-29"));
    let again = pass("2026-10-03T10:00:00.000Z").await;
    assert_eq!(again.reminders, 0, "one reminder per step");
    let suspended = pass("2026-10-20T10:00:00.000Z").await;
    assert_eq!(suspended.suspended, ["acme"], "21 days late: suspended");
    let acme = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    assert_eq!(acme.status, silo_tenancy::TenantStatus::Suspended);
    assert_eq!(acme.updated_at.as_str(), "2026-10-20T10:00:00.000Z");

    let number = invoice.number.unwrap().to_string();
    let paid = billing.invoices().record_payment(&number, "bank 1", "test").await.unwrap();
    assert_eq!(paid.paid_at.as_deref(), Some("2026-10-20T10:00:00.000Z"));
    let acme = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    assert_eq!(acme.status, silo_tenancy::TenantStatus::Active, "paying resumes it");
    server.stop().await.unwrap();
}

/// The invoice id of the link whose text is `title` on a billing page.
fn between_quotes(page: &str, title: &str) -> String {
    let before = page.split(&format!("\">{title}</a>")).next().unwrap();
    before.rsplit("/billing/invoices/").next().unwrap().to_owned()
}

/// A plan change shows its cost for the rest of the month before it is made: on 21 November
/// (a 30-day month), free → pro (50.00 a month + 15.00 a seat, one seat, no trial) bills days
/// 21–30, a third of the month: 16.67 + 5.00 = 21.67 EUR; a plan with a trial never held
/// before costs nothing during it, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_change_shows_its_prorated_cost_first() {
    let clock = silo_core::TestClock::at(&silo_core::Timestamp::parse("2026-11-21T12:00:00.000Z").unwrap());
    let shared = silo_core::ProcessClock::new(clock.shared());
    let server = TestServer::start_with(move |s| {
        s.fleet.clock = shared;
        let pro = Plan { price_month: 5_000, price_seat: 1_500, self_service: true, ..Plan::default() };
        s.plans.0.insert("pro".into(), pro);
    })
    .await
    .unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    assert_eq!(server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap().plan, "free");
    let asked = ada.submit("/w/acme/billing", "/w/acme/plan", &[("plan", "pro")]).await.unwrap();
    assert_eq!(asked.status, 200);
    assert!(
        asked.body.contains("grows by 21.67 EUR (before tax): the 10 days from today on are billed at pro")
            && asked.body.contains("At 1 seat (members and pending invitations)."),
        "{}",
        asked.body
    );
    // Business has a 14-day trial acme never had: the rest of the month is free.
    let trial = ada.submit("/w/acme/billing", "/w/acme/plan", &[("plan", "business")]).await.unwrap();
    assert!(
        trial.body.contains("does not change")
            && trial.body.contains("The first 9 days on business are its free trial."),
        "{}",
        trial.body
    );
    // Back down from pro (confirmed) to free: today stays on pro, 9 days less.
    ada.submit("/w/acme/billing", "/w/acme/plan", &[("plan", "pro"), ("confirm", "yes")]).await.unwrap();
    let down = ada.submit("/w/acme/billing", "/w/acme/plan", &[("plan", "free")]).await.unwrap();
    assert!(
        down.body.contains("shrinks by 19.50 EUR (before tax): the 9 days from tomorrow on"),
        "15.00 + 4.50: {}",
        down.body
    );
    // Down (confirmed), then up again the same day: today is already billed at pro, so only
    // the 9 days after it are added back.
    ada.submit("/w/acme/billing", "/w/acme/plan", &[("plan", "free"), ("confirm", "yes")]).await.unwrap();
    let again = ada.submit("/w/acme/billing", "/w/acme/plan", &[("plan", "pro")]).await.unwrap();
    assert!(
        again.body.contains("grows by 19.50 EUR (before tax): the 9 days from tomorrow on are billed at pro"),
        "{}",
        again.body
    );
    // A pending invitation is a seat the month is billed for: the preview counts it.
    ada.submit(
        "/w/acme/members",
        "/w/acme/members/invite",
        &[("email", "bob@example.com"), ("role", "member")],
    )
    .await
    .unwrap();
    let two = ada.submit("/w/acme/billing", "/w/acme/plan", &[("plan", "pro")]).await.unwrap();
    assert!(
        two.body.contains("grows by 24.00 EUR") && two.body.contains("At 2 seats"),
        "15.00 + 2 × 4.50: {}",
        two.body
    );
    server.stop().await.unwrap();
}

/// A restore held for the operators is not a customer's workspace: the month's run bills its
/// source and not it (nor does dunning remind anyone of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_restore_is_not_billed() {
    use silo_backups::BackupsExt;
    let (clock, present) = silo_e2e::clock_months_back(1);
    let shared = silo_core::ProcessClock::new(clock.shared());
    let server = TestServer::start_with(move |s| s.fleet.clock = shared).await.unwrap();
    let billing = &server.billing;
    let request = silo_tenancy::CreateTenant {
        slug: "acme".into(),
        plan: Some("business".into()),
        ..Default::default()
    };
    billing.subscriptions().create_tenant(request, None, "test").await.unwrap();
    let acme: silo_core::TenantRef = "acme".parse().unwrap();
    let backup =
        server.tenancy.backups().create(&acme, silo_backups::BackupKind::Manual, "ops").await.unwrap();
    let copy =
        server.tenancy.backups().restore(&acme, Some(&backup.id), Some("acme-copy"), "ops").await.unwrap();
    assert!(copy.tenant.held);
    clock.set(&present);
    let period = silo_billing::Period::of(present.as_str()).unwrap().previous();
    billing.invoices().run(period, "test").await.unwrap();
    let billed = |tenant| silo_billing::InvoiceFilter { tenant: Some(tenant), ..Default::default() };
    let source = server.tenancy.tenant(&acme).await.unwrap().id;
    assert_eq!(billing.invoices().list(&billed(source)).await.unwrap().len(), 1, "the source is billed");
    assert!(
        billing.invoices().list(&billed(copy.tenant.id)).await.unwrap().is_empty(),
        "the held copy is not"
    );
    server.stop().await.unwrap();
}
