//! The main user journey and the operator journey in headless Chromium, with screenshots in
//! `target/e2e/`. Skipped (with a message) where Chromium is not installed; `.ci/run` installs
//! it and requires it.

use silo_e2e::browser::Browser;
use silo_e2e::{PASSWORD, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_journey_in_a_browser() {
    let Some(browser) = Browser::launch("user_journey_in_a_browser").await.unwrap() else { return };
    let server = TestServer::start().await.unwrap();
    let result = user_journey(&browser, &server).await;
    if result.is_err() {
        let _ = browser.screenshot("user-journey-failure").await;
    }
    browser.quit().await;
    server.stop().await.unwrap();
    result.unwrap();
}

async fn user_journey(b: &Browser, server: &TestServer) -> anyhow::Result<()> {
    b.open(&server.url("/")).await?;
    b.click("a.button[href='/signup']").await?;
    b.fill("#email", "ada@example.com").await?;
    b.fill("#name", "Ada").await?;
    b.fill("#password", PASSWORD).await?;
    b.fill("#workspace", "Acme Rockets").await?;
    // A bad address is refused next to its field, in words, with what was typed kept.
    b.fill("#slug", "Acme Rockets").await?;
    b.click("form[action='/signup'] button[type=submit]").await?;
    let refused = b.text().await?;
    anyhow::ensure!(
        refused.contains("Use lower-case letters, digits and dashes, e.g. acme-corp."),
        "{refused}"
    );
    b.screenshot("01-signup-error-next-to-the-field").await?;
    b.fill("#password", PASSWORD).await?;
    b.fill("#slug", "acme").await?;
    b.screenshot("01-signup").await?;
    b.click("form[action='/signup'] button[type=submit]").await?;
    // The address is confirmed through the emailed link; with no mail server the page says the
    // link is in the server's log.
    let sent = b.text().await?;
    anyhow::ensure!(sent.contains("Check your email") && sent.contains("output of silo serve"), "{sent}");
    b.screenshot("01a-check-your-email").await?;
    let email = server.last_email("ada@example.com").await?;
    let link = email.split_whitespace().find(|w| w.contains("/signup/confirm/")).unwrap_or_default();
    b.open(link).await?;
    b.screenshot("01b-confirm").await?;
    b.click("form[action^='/signup/confirm/'] button[type=submit]").await?;
    anyhow::ensure!(b.path().await? == "/w/acme/", "landed on {}", b.path().await?);
    anyhow::ensure!(b.text().await?.contains("No projects yet"));
    b.screenshot("02-empty-workspace").await?;

    b.fill("#project-name", "Launch").await?;
    b.fill("#project-description", "Everything for the launch").await?;
    b.click("form[action='/w/acme/projects'] button").await?;
    anyhow::ensure!(b.text().await?.contains("Project created."));
    for (title, due) in [("Write the press release", "2026-12-01"), ("Book the venue", "")] {
        b.fill("#task-title", title).await?;
        b.fill("#task-body", "Details about the launch quarantine plan").await?;
        if !due.is_empty() {
            // Chromium's date input takes the digits in the locale's order (en-US: mm dd yyyy).
            b.fill("#task-due", "12012026").await?;
        }
        b.click("form[action$='/tasks'] button").await?;
        anyhow::ensure!(b.text().await?.contains("Task created."), "{}", b.text().await?);
    }
    let board = b.text().await?;
    anyhow::ensure!(board.contains("Write the press release") && board.contains("due 1 Dec 2026"), "{board}");
    b.screenshot("03-project-board").await?;

    b.click(".task > a").await?;
    b.select("#status", "doing").await?;
    b.click("form[action^='/w/acme/tasks/'] button[type=submit]").await?;
    anyhow::ensure!(b.text().await?.contains("Task saved."));
    b.fill("#comment", "Venue confirmed for the quarantine-free date").await?;
    b.click("form[action$='/comments'] button").await?;
    let task = b.text().await?;
    anyhow::ensure!(task.contains("Comment added.") && task.contains("Venue confirmed"), "{task}");
    b.screenshot("04-task-with-comment").await?;

    b.click("nav.tabs a[href='/w/acme/search']").await?;
    b.fill("#q", "quarantine").await?;
    b.click("form[role=search] button").await?;
    let html = b.html().await?;
    anyhow::ensure!(html.contains("<mark>quarantine</mark>"), "highlighted search results");
    b.screenshot("05-search").await?;

    // The owner's billing page: plan and usage, and the billing contact.
    b.click("nav.tabs a[href='/w/acme/billing']").await?;
    anyhow::ensure!(b.text().await?.contains("Plan and usage"));
    b.fill("#b-name", "Acme Rockets Ltd").await?;
    b.fill("#b-address", "1 Launch Pad\nCape Town").await?;
    b.select("#b-country", "ZA").await?;
    b.click("form[action='/w/acme/billing/contact'] button").await?;
    let billing = b.text().await?;
    anyhow::ensure!(
        billing.contains("Billing contact saved.") && billing.contains("No invoices yet"),
        "{billing}"
    );
    b.screenshot("05a-billing").await?;
    // A plan change shows its cost this month first.
    b.click("form[action='/w/acme/plan']:has(input[value='team']) button").await?;
    let asked = b.text().await?;
    anyhow::ensure!(asked.contains("Move to team?") && asked.contains("This month's invoice"), "{asked}");
    b.screenshot("05b-plan-change-asks-first").await?;
    b.click("form[action='/w/acme/plan'] button").await?;
    anyhow::ensure!(b.text().await?.contains("now on the team plan"), "{}", b.text().await?);
    // Usage in the plan table's units: "… MB of 10 GB", not "of 10000 MB".
    let usage = b.text().await?;
    anyhow::ensure!(usage.contains(" MB of 10 GB") && !usage.contains("10000 MB"), "{usage}");
    // On a phone the billing page, its chart and tables included, fits the window, and every
    // plan's button is on screen (not beyond a sideways scroll inside its table).
    b.client.set_window_size(390, 844).await?;
    b.open(&server.url("/w/acme/billing")).await?;
    fits_the_window(b, "the billing page").await?;
    let cut = b
        .client
        .execute(
            "const box = document.querySelector('#plans').closest('.table-wrap').getBoundingClientRect();
             return [...document.querySelectorAll('#plans button')]
               .filter(x => x.getBoundingClientRect().right > Math.min(box.right, window.innerWidth))
               .map(x => x.textContent);",
            vec![],
        )
        .await?;
    anyhow::ensure!(cut.as_array().is_some_and(Vec::is_empty), "plan buttons cut at 390 px: {cut}");
    b.client.execute("document.querySelector('#plans').scrollIntoView();", vec![]).await?;
    b.screenshot("05f-plans-on-a-phone").await?;
    b.screenshot("05e-billing-on-a-phone").await?;
    b.client.set_window_size(1280, 900).await?;

    // The account: sessions in words, a named read-only token, another workspace.
    b.open(&server.url("/account")).await?;
    b.fill("#token-name", "Dashboard").await?;
    b.select("#token-access", "read_only").await?;
    b.click("form[action='/account/tokens'] button").await?;
    let account = b.text().await?;
    anyhow::ensure!(account.contains("Your new API token") && account.contains("read only"), "{account}");
    b.screenshot("05c-account").await?;
    b.open(&server.url("/workspaces/new")).await?;
    b.fill("#name", "Acme Labs").await?;
    b.click("form[action='/workspaces'] button").await?;
    anyhow::ensure!(b.path().await? == "/w/acme-labs/", "landed on {}", b.path().await?);
    b.open(&server.url("/")).await?;
    anyhow::ensure!(b.text().await?.contains("Acme Labs") && b.text().await?.contains("Acme Rockets"));
    b.screenshot("05d-two-workspaces").await?;

    // Invite a teammate; they accept through the emailed link in a fresh session.
    b.open(&server.url("/w/acme/members")).await?;
    b.fill("#invite-email", "bob@example.com").await?;
    b.click("form[action='/w/acme/members/invite'] button").await?;
    anyhow::ensure!(b.text().await?.contains("Invitation emailed to bob@example.com"));
    b.screenshot("06-members-invited").await?;
    // Back after signing out does not show the workspace again (a shared computer's next
    // user): not even a page the browser could keep and revalidate.
    b.open(&server.url("/w/acme/")).await?;
    anyhow::ensure!(b.text().await?.contains("Launch"));
    b.click("header form[action='/logout'] button").await?;
    anyhow::ensure!(b.path().await? == "/login");
    b.client.back().await?;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    b.screenshot("06b-back-after-sign-out").await?;
    let shown = b.html().await?;
    anyhow::ensure!(
        !shown.contains("Launch") && !shown.contains("action=\"/logout\""),
        "back after sign-out shows {}: the page of a signed-in member",
        b.path().await?
    );

    let email = server.last_email("bob@example.com").await?;
    let link = email.split_whitespace().find(|w| w.contains("/invitations/")).unwrap_or_default();
    b.open(link).await?;
    b.screenshot("07-invitation").await?;
    b.fill("#name", "Bob").await?;
    b.fill("#password", PASSWORD).await?;
    b.click("form[action$='/signup'] button").await?;
    anyhow::ensure!(b.path().await? == "/w/acme/", "bob landed on {}", b.path().await?);
    anyhow::ensure!(b.text().await?.contains("Launch"));

    // A phone-sized window still reads well.
    b.client.set_window_size(390, 844).await?;
    b.open(&server.url("/w/acme/members")).await?;
    anyhow::ensure!(
        b.text().await?.contains("bob@example.com") && b.text().await?.contains("ada@example.com")
    );
    b.screenshot("08-members-on-a-phone").await?;

    // The board holds at 390 px, even with a 200-character unbroken title, on the board and on
    // the task's own page.
    b.open(&server.url("/w/acme/")).await?;
    b.click("a[href^='/w/acme/projects/']").await?;
    let long = "Unbroken".repeat(25);
    b.fill("#task-title", &long).await?;
    b.click("form[action$='/tasks'] button").await?;
    anyhow::ensure!(b.text().await?.contains("Task created."));
    fits_the_window(b, "the board").await?;
    b.screenshot("09-board-on-a-phone").await?;
    // The newest card comes first.
    b.click(".task > a").await?;
    anyhow::ensure!(b.text().await?.contains(&long));
    fits_the_window(b, "a task").await?;
    Ok(())
}

/// Fails unless the page is no wider than the window (nothing to scroll sideways).
async fn fits_the_window(b: &Browser, what: &str) -> anyhow::Result<()> {
    let widths =
        b.client.execute("return [document.documentElement.scrollWidth, window.innerWidth];", vec![]).await?;
    let (page, window) = (widths[0].as_i64().unwrap_or(i64::MAX), widths[1].as_i64().unwrap_or(0));
    anyhow::ensure!(page <= window, "{what} is {page} px wide in a {window} px window");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_journey_in_a_browser() {
    let Some(browser) = Browser::launch("operator_journey_in_a_browser").await.unwrap() else { return };
    // The customers are created three months back on the clock (last month is billed whole);
    // the operator then works in the present.
    let (clock, present) = silo_e2e::clock_months_back(3);
    let shared = silo_core::ProcessClock::new(clock.shared());
    let server = TestServer::start_with(move |settings| {
        let eu = settings.fleet.data_dir.join("regions/eu");
        settings.fleet.regions.insert("eu".into(), silo_tenancy::config::RegionSettings { root: eu });
        settings.fleet.clock = shared;
    })
    .await
    .unwrap();
    let to_the_present = || clock.set(&present);
    let last_month = silo_billing::Period::of(present.as_str()).unwrap().previous();
    let result = operator_journey(&browser, &server, to_the_present, last_month).await;
    if result.is_err() {
        let _ = browser.screenshot("operator-journey-failure").await;
    }
    browser.quit().await;
    server.stop().await.unwrap();
    result.unwrap();
}

async fn operator_journey(
    b: &Browser,
    server: &TestServer,
    to_the_present: impl FnOnce(),
    last_month: silo_billing::Period,
) -> anyhow::Result<()> {
    server.operator_token("ops@example.com").await?;
    for i in 0..30 {
        // Three customers on business.
        let plan = (i < 3).then(|| "business".to_owned());
        let request =
            silo_tenancy::CreateTenant { slug: format!("customer-{i:02}"), plan, ..Default::default() };
        server.tenancy.tenants().create(request, "test").await?;
    }
    to_the_present();
    b.open(&server.url("/login")).await?;
    b.fill("#email", "ops@example.com").await?;
    b.fill("#password", PASSWORD).await?;
    b.click("form[action='/login'] button").await?;
    b.click("header a[href='/admin']").await?;
    anyhow::ensure!(b.text().await?.contains("Tenants (30)"), "{}", b.text().await?);
    b.screenshot("10-admin-tenants").await?;

    b.fill("#q", "customer-1").await?;
    b.click("form[role=search] button").await?;
    anyhow::ensure!(b.text().await?.contains("Tenants (10)"));

    b.fill("#new-slug", "bigco").await?;
    b.fill("#new-name", "BigCo").await?;
    b.select("#new-plan", "business").await?;
    b.click("form[action='/admin/tenants'] button").await?;
    anyhow::ensure!(b.text().await?.contains("Tenant provisioned."));
    b.click("#backup-now").await?;
    anyhow::ensure!(b.text().await?.contains("Backed up: backup"), "{}", b.text().await?);
    b.fill("#restore-confirm", "bigco").await?;
    b.click("#restore-form button").await?;
    anyhow::ensure!(b.text().await?.contains("Restored from backup"), "{}", b.text().await?);
    b.select("#region", "eu").await?;
    b.click("#move-form button").await?;
    anyhow::ensure!(b.text().await?.contains("Moved from local to eu"), "{}", b.text().await?);
    b.screenshot("11a-admin-tenant-backups").await?;
    // Suspending asks first: the disclosure says what happens, its button acts.
    b.open_details("details.confirm:has(form[action$='/suspend']) summary").await?;
    anyhow::ensure!(
        b.text().await?.contains("Its members are refused until it is resumed"),
        "{}",
        b.text().await?
    );
    b.screenshot("11b-admin-suspend-asks-first").await?;
    b.click("form[action$='/suspend'] button").await?;
    anyhow::ensure!(b.text().await?.contains("Tenant suspended."));
    b.screenshot("11-admin-tenant-suspended").await?;
    b.click("form[action$='/resume'] button").await?;
    // A delete can be undone until the purge: bring it back, then delete it again.
    b.open_details("details.confirm:has(form[action$='/delete']) summary").await?;
    b.click("form[action$='/delete'] button").await?;
    b.click("form[action$='/undelete'] button").await?;
    anyhow::ensure!(b.text().await?.contains("Tenant brought back"), "{}", b.text().await?);
    b.open_details("details.confirm:has(form[action$='/delete']) summary").await?;
    b.click("form[action$='/delete'] button").await?;
    b.fill("#confirm", "bigco").await?;
    b.click("form[action$='/purge'] button").await?;
    let detail = b.text().await?;
    anyhow::ensure!(detail.contains("Tenant purged") && detail.contains("tenant.purge"), "{detail}");
    b.screenshot("12-admin-tenant-purged").await?;

    b.click("nav.tabs a[href='/admin/fleet']").await?;
    let latest = silo_tenancy::schema::latest_version(silo_workspace::migrations());
    anyhow::ensure!(b.text().await?.contains(&format!("v{latest}: 30 tenant(s)")));
    b.screenshot("13-admin-fleet").await?;
    b.click("nav.tabs a[href='/admin/audit']").await?;
    anyhow::ensure!(b.text().await?.contains("tenant.purge"));
    b.screenshot("14-admin-audit").await?;

    // Invoices: three customers on business since three months ago, last month billed.
    anyhow::ensure!(server.billing.invoices().run(last_month, "test").await?.finalised == 3);
    b.click("nav.tabs a[href='/admin/invoices']").await?;
    anyhow::ensure!(b.text().await?.contains("customer-02"), "{}", b.text().await?);
    b.screenshot("15-admin-invoices").await?;
    b.click("#invoice-list a[href^='/admin/invoices/']").await?;
    b.fill("#reference", "SEPA 2026-0042").await?;
    b.click("form[action$='/pay'] button").await?;
    let invoice = b.text().await?;
    anyhow::ensure!(invoice.contains("is marked paid") && invoice.contains("Status: paid"), "{invoice}");
    b.screenshot("16-admin-invoice-paid").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_host_journey_in_a_browser() {
    // `silo.test` and every `*.silo.test` resolve to loopback inside this browser only.
    let rules = "--host-resolver-rules=MAP silo.test 127.0.0.1, MAP *.silo.test 127.0.0.1".to_owned();
    let Some(browser) = Browser::launch_with("workspace_host_journey_in_a_browser", &[rules]).await.unwrap()
    else {
        return;
    };
    let server = TestServer::start_listening(|settings, addr| {
        settings.server.base_domain = Some("silo.test".into());
        settings.server.public_url = Some(format!("http://silo.test:{}", addr.port()));
    })
    .await
    .unwrap();
    let result = workspace_host_journey(&browser, &server).await;
    if result.is_err() {
        let _ = browser.screenshot("workspace-host-failure").await;
    }
    browser.quit().await;
    server.stop().await.unwrap();
    result.unwrap();
}

async fn workspace_host_journey(b: &Browser, server: &TestServer) -> anyhow::Result<()> {
    let t = &server.tenancy;
    let a = &server.accounts;
    a.users().create("ada@example.com", PASSWORD, Some("Ada"), "test").await?;
    t.tenants()
        .create(
            silo_tenancy::CreateTenant {
                slug: "acme".into(),
                name: Some("Acme".into()),
                ..Default::default()
            },
            "test",
        )
        .await?;
    a.memberships().add(&"acme".parse()?, "ada@example.com", silo_accounts::Role::Owner, "test").await?;
    let port = server.addr.port();
    let workspace = format!("http://acme.silo.test:{port}/");

    // The workspace host sends a signed-out visitor to the main host's sign-in…
    b.open(&workspace).await?;
    let url = b.url().await?;
    anyhow::ensure!(url.starts_with(&format!("http://silo.test:{port}/login?next=")), "at {url}");
    b.screenshot("20-workspace-host-sign-in").await?;
    b.fill("#email", "ada@example.com").await?;
    b.fill("#password", PASSWORD).await?;
    b.click("form[action='/login'] button").await?;
    // …and the signed-in session is handed back to the workspace host.
    let url = b.url().await?;
    anyhow::ensure!(url == format!("http://acme.silo.test:{port}/w/acme/"), "landed on {url}");
    anyhow::ensure!(b.text().await?.contains("No projects yet"), "{}", b.text().await?);

    // Forms and links work on the workspace host.
    b.fill("#project-name", "Launch").await?;
    b.fill("#project-description", "On its own host").await?;
    b.click("form[action='/w/acme/projects'] button").await?;
    anyhow::ensure!(b.text().await?.contains("Project created."), "{}", b.text().await?);
    anyhow::ensure!(b.url().await?.starts_with(&format!("http://acme.silo.test:{port}/w/acme/projects/")));
    b.click("nav.tabs a[href='/w/acme/members']").await?;
    anyhow::ensure!(b.text().await?.contains("ada@example.com"));
    anyhow::ensure!(b.url().await? == format!("http://acme.silo.test:{port}/w/acme/members"));
    b.screenshot("21-workspace-host-members").await?;

    // Signing out there signs out the main host too.
    b.click("header form[action='/logout'] button").await?;
    anyhow::ensure!(
        b.url().await?.starts_with(&format!("http://silo.test:{port}/login")),
        "{}",
        b.url().await?
    );
    b.open(&format!("http://silo.test:{port}/account")).await?;
    anyhow::ensure!(b.path().await?.starts_with("/login"), "still signed in: {}", b.path().await?);
    Ok(())
}
