//! The HTML site end to end: a real server on port 0 over a temp data directory, driven by a
//! cookie-keeping HTTP client that fills in forms like a browser (token included).

use silo_e2e::{PASSWORD, TestServer, csrf_of};

fn between<'a>(body: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = body.find(start)? + start.len();
    let to = body[from..].find(end)? + from;
    Some(&body[from..to])
}

#[tokio::test]
async fn sign_up_project_task_comment_search() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();

    let dashboard = ada.get("/w/acme/").await.unwrap();
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.body.contains("No projects yet"), "empty state shown");

    let created = ada
        .submit("/w/acme/", "/w/acme/projects", &[("name", "Launch"), ("description", "Q4")])
        .await
        .unwrap();
    assert_eq!(created.status, 303);
    let project_path = created.location.unwrap();
    assert!(project_path.starts_with("/w/acme/projects/"), "{project_path}");
    let project = ada.get(&project_path).await.unwrap();
    assert!(project.body.contains("Project created."), "flash message shown once");
    assert!(!ada.get(&project_path).await.unwrap().body.contains("Project created."), "and only once");

    let task_action = format!("{project_path}/tasks");
    let made = ada
        .submit(
            &project_path,
            &task_action,
            &[
                ("title", "Write the migration guide"),
                ("body", "Cover rollback"),
                ("assignee_id", ""),
                ("due_date", "2026-12-01"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(made.status, 303);
    let board = ada.get(&project_path).await.unwrap();
    assert!(board.body.contains("Write the migration guide"));
    // The due date as people read it, the date itself in the markup.
    assert!(board.body.contains(r#"due <time datetime="2026-12-01">1 Dec 2026</time>"#), "{}", board.body);
    let task_path = format!("/w/acme/tasks/{}", between(&board.body, "href=\"/w/acme/tasks/", "\"").unwrap());

    // Edit: status, assignee (herself), due date cleared.
    let acme = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    let user = server.accounts.users().by_email("ada@example.com").await.unwrap();
    let db = server.tenancy.db(acme.id).await.unwrap();
    let member_id =
        silo_workspace::members::by_user(&db.turn().await, &user.id).unwrap().unwrap().id.to_string();
    drop(db);
    let saved = ada
        .submit(
            &task_path,
            &task_path,
            &[
                ("title", "Write the migration guide"),
                ("body", "Cover rollback and canaries"),
                ("status", "doing"),
                ("assignee_id", &member_id),
                ("due_date", ""),
            ],
        )
        .await
        .unwrap();
    assert_eq!(saved.status, 303, "{}", saved.body);
    let task_page = ada.get(&task_path).await.unwrap();
    assert!(
        task_page.body.contains("Task saved.") && task_page.body.contains("badge doing"),
        "{}",
        task_page.body
    );

    // A bad due date is refused with a message; nothing changes.
    let bad = ada
        .submit(
            &task_path,
            &task_path,
            &[("title", "x"), ("body", ""), ("status", "done"), ("due_date", "2026-13-45")],
        )
        .await
        .unwrap();
    assert_eq!(bad.status, 303);
    let after = ada.get(&task_path).await.unwrap();
    assert!(after.body.contains("not a date") && after.body.contains("badge doing"));

    let comment = ada
        .submit(
            &task_path,
            &format!("{task_path}/comments"),
            &[("body", "Remember the <b>quarantine</b> case")],
        )
        .await
        .unwrap();
    assert_eq!(comment.status, 303);
    let task_page = ada.get(&task_path).await.unwrap();
    assert!(
        task_page.body.contains("Remember the &lt;b&gt;quarantine&lt;&#x2F;b&gt; case"),
        "comments are escaped: {}",
        task_page.body
    );

    let search = ada.get("/w/acme/search?q=quarantine").await.unwrap();
    assert_eq!(search.status, 200);
    assert!(search.body.contains("<mark>quarantine</mark>"), "highlighted snippet: {}", search.body);
    assert!(!search.body.contains("<b>"), "snippet text is escaped");
    let stemmed = ada.get("/w/acme/search?q=migrations").await.unwrap();
    assert!(stemmed.body.contains("Write the migration guide"), "stemming finds the task");
    let none = ada.get("/w/acme/search?q=%22unbalanced").await.unwrap();
    assert_eq!(none.status, 200, "FTS syntax in user input is not an error");

    let dashboard = ada.get("/w/acme/").await.unwrap();
    // The activity feed in sentences, the comment quoted (escaped), the task linked.
    for sentence in [
        "created the task\n    <a href=\"/w/acme/tasks/",
        "commented on\n    <a href=\"/w/acme/tasks/",
        "<em>Write the migration guide</em></a>: “Remember the &lt;b&gt;quarantine&lt;&#x2F;b&gt; case”",
    ] {
        assert!(dashboard.body.contains(sentence), "{sentence} in {}", dashboard.body);
    }

    // Signed out, the workspace sends you to sign in and back.
    let out = ada.submit("/w/acme/", "/logout", &[]).await.unwrap();
    assert_eq!((out.status, out.location.as_deref()), (303, Some("/login")));
    let redirected = ada.get("/w/acme/search?q=x").await.unwrap();
    assert_eq!(redirected.status, 303);
    assert_eq!(redirected.location.as_deref(), Some("/login?next=%2Fw%2Facme%2Fsearch%3Fq%3Dx"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn sign_up_refuses_bad_input_and_leaves_nothing_behind() {
    let server = TestServer::start().await.unwrap();
    server.sign_up("ada@example.com", "acme").await.unwrap();
    let visitor = server.visitor();
    // Each refusal is shown next to its field, in words, with what was typed kept.
    for (email, password, slug, field, expect) in [
        ("bob@example.com", PASSWORD, "acme", "slug", "The address acme is taken: choose another."),
        (
            "bob@example.com",
            PASSWORD,
            "Bad Slug",
            "slug",
            "Use lower-case letters, digits and dashes, e.g. acme-corp.",
        ),
        ("bob@example.com", PASSWORD, "admin", "slug", "`admin` is kept for Silo itself"),
        ("bob@example.com", PASSWORD, "-bob-", "slug", "Start and end with a letter or digit"),
        ("bob@example.com", "short", "bobs", "password", "A password needs at least 10 characters."),
        ("not-an-email", PASSWORD, "bobs", "email", "is not a valid email address."),
    ] {
        let response = visitor
            .submit(
                "/signup",
                "/signup",
                &[("email", email), ("password", password), ("workspace", "W"), ("slug", slug)],
            )
            .await
            .unwrap();
        assert_eq!(response.status, 422, "{email} {slug}");
        let shown = between(&response.body, &format!("id=\"{field}-error\" role=\"alert\">"), "</p>")
            .unwrap_or_else(|| panic!("an error next to {field}: {}", response.body));
        let shown = shown.replace("&#96;", "`");
        assert!(shown.contains(expect), "{expect:?} next to {field}: {shown}");
        assert!(!response.body.contains("class=\"flash"), "not above the form too");
        assert!(response.body.contains(&format!("value=\"{}\"", email)), "the email is kept");
        assert!(!response.body.contains(password) || password == "short", "never the password");
    }
    assert!(server.accounts.users().by_email("bob@example.com").await.is_err(), "no half-made account");
    let (_, total) = server
        .tenancy
        .control()
        .search(&silo_tenancy::TenantQuery { limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(total, 1, "only acme exists");
    server.stop().await.unwrap();
}

/// A sign-up without an address gets one made from the workspace's name, shown on the
/// confirmation page to change; a signed-in account creates another workspace the same way.
#[tokio::test]
async fn the_workspace_address_is_suggested_and_another_workspace_can_be_made() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme-rockets").await.unwrap();
    let visitor = server.visitor();
    let started = visitor
        .submit(
            "/signup",
            "/signup",
            &[
                ("email", "bob@example.com"),
                ("password", PASSWORD),
                ("workspace", "Acme Rockets!"),
                ("slug", ""),
            ],
        )
        .await
        .unwrap();
    assert_eq!(started.status, 200, "{}", started.body);
    let link = server.link_in_last_email("bob@example.com", "/signup/confirm/").await.unwrap();
    let confirm = visitor.get(&link).await.unwrap().body;
    // acme-rockets is Ada's: the next free one is offered.
    assert!(confirm.contains("value=\"acme-rockets-2\""), "{confirm}");
    let confirmed = visitor
        .submit(&link, &link, &[("workspace", "Acme Rockets!"), ("slug", "acme-rockets-2")])
        .await
        .unwrap();
    assert_eq!((confirmed.status, confirmed.location.as_deref()), (303, Some("/w/acme-rockets-2/")));
    // The link opened again by the account it made: no "sign up again" for someone signed in.
    let reused = visitor.get(&link).await.unwrap().body;
    assert!(reused.contains("no longer valid") && reused.contains("You are signed in as"), "{reused}");
    assert!(!reused.contains("Sign up again"), "{reused}");

    // Ada, signed in, makes another workspace from its name alone.
    let home = ada.get("/").await.unwrap().body;
    assert!(home.contains("href=\"/workspaces/new\""));
    let made =
        ada.submit("/workspaces/new", "/workspaces", &[("name", "Café Zürich"), ("slug", "")]).await.unwrap();
    assert_eq!((made.status, made.location.as_deref()), (303, Some("/w/cafe-zurich/")));
    let page = ada.get("/w/cafe-zurich/").await.unwrap();
    assert!(page.status == 200 && page.body.contains("Café Zürich"));
    let role = server
        .accounts
        .memberships()
        .role_in(
            &"cafe-zurich".parse().unwrap(),
            &server.accounts.users().by_email("ada@example.com").await.unwrap().id,
        )
        .await
        .unwrap();
    assert_eq!(role, Some(silo_accounts::Role::Owner));
    // A refused one says why next to the field and keeps what was typed.
    let refused = ada
        .submit("/workspaces/new", "/workspaces", &[("name", "Second"), ("slug", "Not OK")])
        .await
        .unwrap();
    assert_eq!(refused.status, 422);
    assert!(refused.body.contains("id=\"slug-error\"") && refused.body.contains("value=\"Second\""));
    let nameless =
        ada.submit("/workspaces/new", "/workspaces", &[("name", " "), ("slug", "")]).await.unwrap();
    assert!(nameless.status == 422 && nameless.body.contains("id=\"name-error\""));
    // Not signed in: to the sign-in page.
    assert_eq!(server.visitor().get("/workspaces/new").await.unwrap().status, 303);
    server.stop().await.unwrap();
}

/// A refused workspace form comes back with the error next to its field and what was typed.
#[tokio::test]
async fn a_refused_task_keeps_what_was_typed() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    let board =
        ada.submit("/w/acme/", "/w/acme/projects", &[("name", "Launch")]).await.unwrap().location.unwrap();
    let refused = ada
        .submit(
            &board,
            &format!("{board}/tasks"),
            &[("title", "Ship the rocket"), ("body", "with care"), ("due_date", "2026-02-30")],
        )
        .await
        .unwrap();
    // Back to the error itself (a full board puts the form far down).
    assert_eq!((refused.status, refused.location.clone()), (303, Some(format!("{board}#due_date-error"))));
    let page = ada.get(&board).await.unwrap().body;
    assert!(page.contains("id=\"due_date-error\""), "{page}");
    assert!(
        page.contains("value=\"Ship the rocket\"") && page.contains(">with care</textarea>"),
        "kept: {page}"
    );
    assert!(!page.contains("class=\"flash"), "next to the field, not above");
    // Shown once: the next visit is a clean form.
    let again = ada.get(&board).await.unwrap().body;
    assert!(!again.contains("due_date-error") && !again.contains("Ship the rocket"));
    // An empty comment: refused next to the comment box, the task's own form untouched.
    ada.submit(&board, &format!("{board}/tasks"), &[("title", "Ship it")]).await.unwrap();
    let board_page = ada.get(&board).await.unwrap().body;
    let task =
        board_page.split("href=\"/w/acme/tasks/").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let path = format!("/w/acme/tasks/{task}");
    let refused = ada.submit(&path, &format!("{path}/comments"), &[("body", "   ")]).await.unwrap();
    assert_eq!(refused.location, Some(format!("{path}#comment-error")));
    let page = ada.get(&path).await.unwrap().body;
    assert!(page.contains("id=\"comment-error\"") && !page.contains("id=\"body-error\""), "{page}");
    // A project without a name, on the workspace's page.
    ada.submit("/w/acme/", "/w/acme/projects", &[("name", " "), ("description", "kept")]).await.unwrap();
    let home = ada.get("/w/acme/").await.unwrap().body;
    assert!(home.contains("id=\"name-error\"") && home.contains(">kept</textarea>"), "{home}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn forms_without_the_right_token_are_refused() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    for action in [
        "/w/acme/projects",
        "/logout",
        "/account/profile",
        "/account/sessions/revoke-all",
        "/w/acme/members/invite",
        "/w/acme/delete",
    ] {
        let missing = ada
            .post(
                action,
                &[
                    ("name", "x"),
                    ("display_name", "x"),
                    ("email", "x@example.com"),
                    ("role", "member"),
                    ("confirm", "acme"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(missing.status, 403, "{action} without a token");
        let wrong = ada.post(action, &[("csrf", &"0".repeat(64)), ("name", "x")]).await.unwrap();
        assert_eq!(wrong.status, 403, "{action} with a wrong token");
    }
    // A right token from another site (the browser says so) is refused too.
    let token = ada.csrf("/w/acme/").await.unwrap();
    let cross = ada
        .send(
            ada.request(reqwest::Method::POST, "/w/acme/projects")
                .header("Sec-Fetch-Site", "cross-site")
                .form(&[("csrf", token.as_str()), ("name", "x")]),
        )
        .await
        .unwrap();
    assert_eq!(cross.status, 403);
    // Signed-out forms use the cookie token: a login without it is refused.
    let stranger = server.visitor();
    let login =
        stranger.post("/login", &[("email", "ada@example.com"), ("password", PASSWORD)]).await.unwrap();
    assert_eq!(login.status, 403);
    // Nothing was created by the refused requests.
    let dashboard = ada.get("/w/acme/").await.unwrap();
    assert!(dashboard.body.contains("No projects yet"));
    assert!(
        server
            .accounts
            .memberships()
            .workspaces_of(&server.accounts.users().by_email("ada@example.com").await.unwrap().id)
            .await
            .unwrap()
            .len()
            == 1
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn logins_are_throttled_and_do_not_reveal_accounts() {
    let server = TestServer::start().await.unwrap();
    server.sign_up("ada@example.com", "acme").await.unwrap();
    let visitor = server.visitor();
    let unknown = visitor
        .submit("/login", "/login", &[("email", "nobody@example.com"), ("password", "wrong password")])
        .await
        .unwrap();
    let wrong = visitor
        .submit("/login", "/login", &[("email", "ada@example.com"), ("password", "wrong password")])
        .await
        .unwrap();
    assert_eq!((unknown.status, wrong.status), (401, 401));
    let strip = |body: &str, email: &str| {
        body.replace(email, "EMAIL").replace(&csrf_of(body).unwrap_or_default(), "TOKEN")
    };
    assert_eq!(
        strip(&unknown.body, "nobody@example.com"),
        strip(&wrong.body, "ada@example.com"),
        "same page for both"
    );

    for _ in 0..4 {
        let r = visitor
            .submit("/login", "/login", &[("email", "ada@example.com"), ("password", "wrong password")])
            .await
            .unwrap();
        assert_eq!(r.status, 401);
    }
    let throttled = visitor
        .submit("/login", "/login", &[("email", "ada@example.com"), ("password", PASSWORD)])
        .await
        .unwrap();
    assert_eq!(throttled.status, 429, "the right password is not even checked now");
    assert!(throttled.headers.get("retry-after").is_some());
    assert!(throttled.body.contains("Too many sign-in attempts"), "{}", throttled.body);

    // Password reset: same answer for known and unknown addresses; the link works once.
    let known = visitor
        .submit("/password/forgot", "/password/forgot", &[("email", "ada@example.com")])
        .await
        .unwrap();
    let unknown = visitor
        .submit("/password/forgot", "/password/forgot", &[("email", "nobody@example.com")])
        .await
        .unwrap();
    assert_eq!(known.status, 200);
    assert_eq!(strip(&known.body, ""), strip(&unknown.body, ""));
    let email = server.last_email("ada@example.com").await.unwrap();
    let link = email.split_whitespace().find(|w| w.contains("/password/reset/")).unwrap();
    let path = &link[link.find("/password/reset/").unwrap()..];
    let reset = visitor.submit(path, path, &[("password", "a brand new password")]).await.unwrap();
    assert_eq!((reset.status, reset.location.as_deref()), (303, Some("/login")));
    let again = visitor.get(path).await.unwrap();
    assert!(again.body.contains("no longer valid"));
    let signed_in = visitor
        .submit("/login", "/login", &[("email", "ada@example.com"), ("password", "a brand new password")])
        .await
        .unwrap();
    assert_eq!(signed_in.status, 303, "a reset clears the account's throttle");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn sessions_are_revocable_and_renewed_at_login() {
    let server = TestServer::start().await.unwrap();
    let laptop = server.sign_up("ada@example.com", "acme").await.unwrap();
    let phone = server.sign_in("ada@example.com").await.unwrap();
    assert_eq!(phone.get("/w/acme/").await.unwrap().status, 200);

    let account = laptop.get("/account").await.unwrap();
    assert_eq!(account.body.matches("<td>127.0.0.1</td>").count(), 2, "both sessions listed");

    // Logout ends the session server-side: the old cookie value no longer works.
    let raw = server.visitor();
    let login = raw
        .submit("/login", "/login", &[("email", "ada@example.com"), ("password", PASSWORD)])
        .await
        .unwrap();
    let cookie = login.headers.get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("silo_session=") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax")
    );
    assert!(!cookie.contains("Secure"), "plain HTTP without a proxy: no Secure flag");
    let value = cookie.split(';').next().unwrap().to_owned();
    raw.submit("/w/acme/", "/logout", &[]).await.unwrap();
    let replay = server.visitor();
    let replayed =
        replay.send(replay.request(reqwest::Method::GET, "/w/acme/").header("Cookie", value)).await.unwrap();
    assert_eq!(replayed.status, 303, "a logged-out session id is dead");

    let everywhere = laptop.submit("/account", "/account/sessions/revoke-all", &[]).await.unwrap();
    assert_eq!(everywhere.status, 303);
    assert_eq!(phone.get("/w/acme/").await.unwrap().status, 303, "the phone was signed out too");
    assert_eq!(laptop.get("/account").await.unwrap().status, 303);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn cookies_are_secure_behind_a_tls_proxy() {
    let server = TestServer::start_with(|s| s.server.trust_proxy = true).await.unwrap();
    server.accounts.users().create("ada@example.com", PASSWORD, None, "test").await.unwrap();
    let visitor = server.visitor();
    let token = visitor.csrf("/login").await.unwrap();
    let response = visitor
        .send(visitor.request(reqwest::Method::POST, "/login").header("X-Forwarded-Proto", "https").form(&[
            ("csrf", token.as_str()),
            ("email", "ada@example.com"),
            ("password", PASSWORD),
        ]))
        .await
        .unwrap();
    assert_eq!(response.status, 303);
    let cookie = response.headers.get("set-cookie").unwrap().to_str().unwrap();
    assert!(cookie.starts_with("__Host-silo_session="), "{cookie}");
    for flag in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{flag} in {cookie}");
    }
    // A flash message's cookie is Secure over HTTPS too (here: a password reset's).
    let stranger = server.visitor();
    stranger.submit("/password/forgot", "/password/forgot", &[("email", "ada@example.com")]).await.unwrap();
    let link = server.link_in_last_email("ada@example.com", "/password/reset/").await.unwrap();
    let token = stranger.csrf(&link).await.unwrap();
    let reset = stranger
        .send(
            stranger
                .request(reqwest::Method::POST, &link)
                .header("X-Forwarded-Proto", "https")
                .form(&[("csrf", token.as_str()), ("password", "another long password")]),
        )
        .await
        .unwrap();
    let cookies: Vec<&str> =
        reset.headers.get_all("set-cookie").iter().map(|c| c.to_str().unwrap()).collect();
    let flash =
        cookies.iter().find(|c| c.starts_with("silo_flash=")).unwrap_or_else(|| panic!("{cookies:?}"));
    assert!(flash.contains("; Secure") && flash.contains("HttpOnly"), "{flash}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn every_page_carries_the_security_headers() {
    let server = TestServer::start().await.unwrap();
    let visitor = server.visitor();
    for path in ["/", "/login", "/nope", "/w/nope/", "/static/silo.css", "/api/v1/openapi.json"] {
        let response = visitor.get(path).await.unwrap();
        let csp = response.headers.get("content-security-policy").unwrap().to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'")
                && !csp.contains("unsafe-inline")
                && !csp.contains("script-src"),
            "{csp}"
        );
        assert_eq!(response.headers.get("x-content-type-options").unwrap(), "nosniff");
        assert_eq!(response.headers.get("referrer-policy").unwrap(), "same-origin");
    }
    let missing = visitor.get("/nope").await.unwrap();
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("Not found") && missing.body.contains("silo.css"), "styled 404 page");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn invitations_for_new_and_existing_accounts_and_roles() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();

    // Invite a newcomer: the link arrives by email (outbox); they create an account and land in.
    let sent = ada
        .submit(
            "/w/acme/members",
            "/w/acme/members/invite",
            &[("email", "Bob@Example.com"), ("role", "member")],
        )
        .await
        .unwrap();
    assert_eq!(sent.status, 303);
    let members = ada.get("/w/acme/members").await.unwrap();
    assert!(
        members.body.contains("Invitation emailed to bob@example.com")
            && members.body.contains("Pending invitations")
    );
    let email = server.last_email("bob@example.com").await.unwrap();
    let link = email.split_whitespace().find(|w| w.contains("/invitations/")).unwrap();
    let path = link[link.find("/invitations/").unwrap()..].to_owned();
    let bob = server.visitor();
    let page = bob.get(&path).await.unwrap();
    assert!(page.body.contains("Join acme") && page.body.contains("as <strong>member</strong>"));
    // A short password: said next to the field, the name kept; the form's address opened
    // again leads back to the invitation.
    let short = bob
        .submit(&path, &format!("{path}/signup"), &[("name", "Bob O'Brien"), ("password", "short")])
        .await
        .unwrap();
    assert_eq!(short.status, 422);
    assert!(
        short.body.contains("id=\"password-error\" role=\"alert\">A password needs at least 10 characters.")
            && short.body.contains("value=\"Bob O&#x27;Brien\""),
        "{}",
        short.body
    );
    let again = bob.get(&format!("{path}/signup")).await.unwrap();
    assert_eq!((again.status, again.location.as_deref()), (303, Some(path.as_str())));
    let joined = bob
        .submit(&path, &format!("{path}/signup"), &[("name", "Bob"), ("password", PASSWORD)])
        .await
        .unwrap();
    assert_eq!((joined.status, joined.location.as_deref()), (303, Some("/w/acme/")));
    assert_eq!(bob.get("/w/acme/").await.unwrap().status, 200);
    assert!(bob.get(&path).await.unwrap().body.contains("no longer valid"), "an invitation works once");

    // A member cannot invite or change roles (403), and cannot touch owners.
    let refused = bob
        .submit(
            "/w/acme/members",
            "/w/acme/members/invite",
            &[("email", "eve@example.com"), ("role", "member")],
        )
        .await
        .unwrap();
    assert_eq!(refused.status, 403);
    let ada_id = server.accounts.users().by_email("ada@example.com").await.unwrap().id;
    let bob_id = server.accounts.users().by_email("bob@example.com").await.unwrap().id;
    let demote = bob
        .submit("/w/acme/members", &format!("/w/acme/members/{ada_id}/role"), &[("role", "member")])
        .await
        .unwrap();
    assert_eq!(demote.status, 403);
    assert!(!bob.get("/w/acme/settings").await.unwrap().body.contains("Danger zone"));

    // An existing account accepts after signing in; the wrong account cannot.
    server.sign_up("carol@example.com", "carols").await.unwrap();
    ada.submit(
        "/w/acme/members",
        "/w/acme/members/invite",
        &[("email", "carol@example.com"), ("role", "admin")],
    )
    .await
    .unwrap();
    let email = server.last_email("carol@example.com").await.unwrap();
    let link = email.split_whitespace().find(|w| w.contains("/invitations/")).unwrap();
    let path = link[link.find("/invitations/").unwrap()..].to_owned();
    let wrong = bob.submit(&path, &format!("{path}/accept"), &[]).await.unwrap();
    assert_eq!(wrong.status, 422);
    assert!(wrong.body.contains("this invitation is for carol@example.com"));
    let carol = server.sign_in("carol@example.com").await.unwrap();
    let accepted = carol.submit(&path, &format!("{path}/accept"), &[]).await.unwrap();
    assert_eq!((accepted.status, accepted.location.as_deref()), (303, Some("/w/acme/")));

    // Carol (admin) can promote Bob to admin but not to owner; Ada (owner) can.
    let promote = carol
        .submit("/w/acme/members", &format!("/w/acme/members/{bob_id}/role"), &[("role", "admin")])
        .await
        .unwrap();
    assert_eq!(promote.status, 303);
    let owner = carol
        .submit("/w/acme/members", &format!("/w/acme/members/{bob_id}/role"), &[("role", "owner")])
        .await
        .unwrap();
    assert_eq!(owner.status, 403);
    // The last owner cannot step down.
    let last = ada
        .submit("/w/acme/members", &format!("/w/acme/members/{ada_id}/role"), &[("role", "member")])
        .await
        .unwrap();
    assert_eq!(last.status, 303);
    assert!(ada.get("/w/acme/members").await.unwrap().body.contains("at least one owner"));
    // Removing Bob takes his access at once.
    let removed =
        ada.submit("/w/acme/members", &format!("/w/acme/members/{bob_id}/remove"), &[]).await.unwrap();
    assert_eq!(removed.status, 303);
    assert_eq!(bob.get("/w/acme/").await.unwrap().status, 404);
    server.stop().await.unwrap();
}

/// Every workspace route, with the other tenant's slug and object ids, answers 404 and shows
/// none of its data — for reads and for (correctly signed) writes.
#[tokio::test]
async fn a_user_of_one_tenant_never_reaches_another() {
    let server = TestServer::start().await.unwrap();
    let alice = server.sign_up("alice@example.com", "alpha").await.unwrap();
    let bob = server.sign_up("bob@example.com", "bravo").await.unwrap();
    let made = bob.submit("/w/bravo/", "/w/bravo/projects", &[("name", "SECRET-PROJECT")]).await.unwrap();
    let project = made.location.unwrap().rsplit('/').next().unwrap().to_owned();
    bob.submit(
        &format!("/w/bravo/projects/{project}"),
        &format!("/w/bravo/projects/{project}/tasks"),
        &[("title", "SECRET-TASK")],
    )
    .await
    .unwrap();
    let board = bob.get(&format!("/w/bravo/projects/{project}")).await.unwrap();
    let task = between(&board.body, "href=\"/w/bravo/tasks/", "\"").unwrap().to_owned();
    let bob_id = server.accounts.users().by_email("bob@example.com").await.unwrap().id;

    let reads = [
        "/w/bravo/".to_owned(),
        format!("/w/bravo/projects/{project}"),
        format!("/w/bravo/tasks/{task}"),
        "/w/bravo/search?q=SECRET".to_owned(),
        "/w/bravo/members".to_owned(),
        "/w/bravo/settings".to_owned(),
        "/w/bravo/unknown-page".to_owned(),
    ];
    for path in reads.iter().chain([&"/no-such-page".to_owned()]) {
        let response = alice.get(path).await.unwrap();
        assert_eq!(response.status, 404, "{path}");
        assert!(!response.body.contains("SECRET") && !response.body.contains("bob@example.com"), "{path}");
        // The error page still shows who is signed in, and lets them sign out.
        assert!(response.body.contains("href=\"/account\"") && response.body.contains("Sign out"), "{path}");
    }
    let stranger = server.visitor().get("/no-such-page").await.unwrap();
    assert_eq!(stranger.status, 404);
    assert!(stranger.body.contains("Sign in") && !stranger.body.contains("Sign out"));
    let writes = [
        "/w/bravo/projects".to_owned(),
        format!("/w/bravo/projects/{project}/tasks"),
        format!("/w/bravo/tasks/{task}"),
        format!("/w/bravo/tasks/{task}/comments"),
        format!("/w/bravo/tasks/{task}/delete"),
        "/w/bravo/members/invite".to_owned(),
        format!("/w/bravo/members/{bob_id}/role"),
        format!("/w/bravo/members/{bob_id}/remove"),
        "/w/bravo/invitations/x/revoke".to_owned(),
        "/w/bravo/settings".to_owned(),
        "/w/bravo/delete".to_owned(),
    ];
    for path in &writes {
        let fields = [
            ("name", "pwned"),
            ("title", "pwned"),
            ("body", "pwned"),
            ("email", "alice@example.com"),
            ("role", "owner"),
            ("confirm", "bravo"),
        ];
        let response = alice.submit("/w/alpha/", path, &fields).await.unwrap();
        assert_eq!(response.status, 404, "{path}");
    }
    // Alice's own workspace with Bob's ids finds only her own (empty) data.
    assert_eq!(alice.get(&format!("/w/alpha/projects/{project}")).await.unwrap().status, 404);
    assert_eq!(alice.get(&format!("/w/alpha/tasks/{task}")).await.unwrap().status, 404);
    // Bravo is untouched.
    let board = bob.get(&format!("/w/bravo/projects/{project}")).await.unwrap();
    assert!(board.body.contains("SECRET-TASK") && !board.body.contains("pwned"));
    assert_eq!(
        server
            .accounts
            .memberships()
            .role(
                server.tenancy.tenant(&"bravo".parse().unwrap()).await.unwrap().id,
                &server.accounts.users().by_email("alice@example.com").await.unwrap().id
            )
            .await
            .unwrap(),
        None
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn suspended_and_deleted_workspaces() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    let eve = server.sign_up("eve@example.com", "evil").await.unwrap();
    let acme = "acme".parse().unwrap();
    server.tenancy.tenants().suspend(&acme, "test").await.unwrap();
    let suspended = ada.get("/w/acme/").await.unwrap();
    assert_eq!(suspended.status, 423);
    // Its owner is told who suspended it and keeps billing.
    assert!(
        suspended.body.contains("was suspended by the operators of this Silo. Ask them why")
            && suspended.body.contains("href=\"/w/acme/billing\""),
        "{}",
        suspended.body
    );
    let billing = ada.get("/w/acme/billing").await.unwrap();
    assert!(billing.status == 200 && billing.body.contains("suspended by the operators"), "{}", billing.body);
    let moved =
        ada.submit("/w/acme/billing", "/w/acme/plan", &[("plan", "team"), ("confirm", "yes")]).await.unwrap();
    assert_eq!(moved.status, 423, "no plan change while suspended");
    assert_eq!(eve.get("/w/acme/").await.unwrap().status, 404, "outsiders cannot tell");
    server.tenancy.tenants().resume(&acme, "test").await.unwrap();
    assert_eq!(ada.get("/w/acme/").await.unwrap().status, 200);
    // A change to the plan it is on is not offered as one (a form sent by hand).
    let plan = server.tenancy.tenant(&acme).await.unwrap().plan;
    let same = ada.submit("/w/acme/billing", "/w/acme/plan", &[("plan", plan.as_str())]).await.unwrap();
    assert_eq!(same.status, 303, "{}", same.body);
    let back = ada.get("/w/acme/billing").await.unwrap().body;
    assert!(back.contains(&format!("This workspace is on the {plan} plan already.")), "{back}");

    // The owner deletes it from the danger zone (typing the slug).
    let unconfirmed = ada.submit("/w/acme/settings", "/w/acme/delete", &[("confirm", "acm")]).await.unwrap();
    assert_eq!(unconfirmed.status, 303);
    assert_eq!(ada.get("/w/acme/").await.unwrap().status, 200, "not deleted without the confirmation");
    let deleted = ada.submit("/w/acme/settings", "/w/acme/delete", &[("confirm", "acme")]).await.unwrap();
    assert_eq!((deleted.status, deleted.location.as_deref()), (303, Some("/")));
    let gone = ada.get("/w/acme/").await.unwrap();
    assert_eq!(gone.status, 410);
    assert!(gone.body.contains("deleted"));
    server.tenancy.tenants().purge(&acme, "test").await.unwrap();
    // The purge took the slug with it: the address names nothing now.
    assert_eq!(ada.get("/w/acme/tasks/1").await.unwrap().status, 404);
    assert_eq!(eve.get("/w/acme/").await.unwrap().status, 404);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn account_page_profile_password_and_tokens() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    let other = server.sign_in("ada@example.com").await.unwrap();
    // Sessions name the browser in words (this client sends no User-Agent).
    let account = ada.get("/account").await.unwrap().body;
    assert!(account.contains("<td title=\"\">an unknown browser</td>"), "{account}");
    let saved = ada.submit("/account", "/account/profile", &[("display_name", "Ada L.")]).await.unwrap();
    assert_eq!(saved.status, 303);
    assert!(
        ada.get("/w/acme/members").await.unwrap().body.contains("Ada L."),
        "the workspace's member row follows"
    );

    let wrong = ada
        .submit(
            "/account",
            "/account/password",
            &[("current", "not it at all"), ("new", "another long password")],
        )
        .await
        .unwrap();
    assert_eq!(wrong.status, 303);
    let page = ada.get("/account").await.unwrap().body;
    assert!(
        page.contains("id=\"current_password-error\" role=\"alert\">The current password is not right."),
        "{page}"
    );
    assert!(!page.contains("not it at all"), "a password is never put back");
    let long_name = "n".repeat(101);
    ada.submit("/account", "/account/profile", &[("display_name", long_name.as_str())]).await.unwrap();
    let page = ada.get("/account").await.unwrap().body;
    assert!(
        page.contains("id=\"display_name-error\"") && page.contains(&long_name),
        "kept, next to the field"
    );
    let changed = ada
        .submit("/account", "/account/password", &[("current", PASSWORD), ("new", "another long password")])
        .await
        .unwrap();
    assert_eq!(changed.status, 303);
    assert_eq!(ada.get("/account").await.unwrap().status, 200, "this session stays");
    assert_eq!(other.get("/account").await.unwrap().status, 303, "the other session ended");

    // A token is named on the page (what it is for); without a name it is refused there.
    let nameless =
        ada.submit("/account", "/account/tokens", &[("name", "  "), ("workspace", "acme")]).await.unwrap();
    assert_eq!(nameless.location.as_deref(), Some("/account#token-name-error"));
    assert!(ada.get("/account").await.unwrap().body.contains("Give the token a name"));
    assert_eq!(ada.get("/account/tokens").await.unwrap().location.as_deref(), Some("/account"), "a reload");
    let created =
        ada.submit("/account", "/account/tokens", &[("name", "CI"), ("workspace", "acme")]).await.unwrap();
    assert_eq!(created.status, 200);
    let token = between(&created.body, "id=\"new-token\">", "<").unwrap().to_owned();
    assert!(token.starts_with("silo_"));
    let listed = ada.get("/account").await.unwrap();
    assert!(!listed.body.contains(&token), "shown once");
    let refused = ada.submit("/account", "/account/tokens", &[("workspace", "someone-elses")]).await.unwrap();
    assert_eq!(refused.status, 303);

    // A named, read-only token: listed by its name and access; it reads and changes nothing.
    let made = ada
        .submit(
            "/account",
            "/account/tokens",
            &[
                ("name", "Dashboard reader"),
                ("access", "read_only"),
                ("workspace", "acme"),
                ("expires_days", ""),
            ],
        )
        .await
        .unwrap();
    let reader = between(&made.body, "id=\"new-token\">", "<").unwrap().to_owned();
    let listed = ada.get("/account").await.unwrap().body;
    assert!(
        listed.contains("<td>Dashboard reader</td>") && listed.contains("<td>read only</td>"),
        "{listed}"
    );
    assert!(listed.contains("<td>CI</td>"), "{listed}");
    // One made without a name (the CLI's default) is listed as unnamed.
    let scope = silo_accounts::TokenScope::Personal("acme".parse().unwrap());
    server.accounts.tokens().issue("ada@example.com", scope, "test").await.unwrap();
    let listed = ada.get("/account").await.unwrap().body;
    assert!(listed.contains("<span class=\"muted\">unnamed</span>"), "{listed}");
    let api = silo_e2e::ApiClient::new(server.addr, Some(&reader));
    let (status, _) = api.call("GET", "/w/acme/projects", None).await.unwrap();
    assert_eq!(status, 200);
    let (status, body) =
        api.call("POST", "/w/acme/projects", Some(serde_json::json!({ "name": "Nope" }))).await.unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("read-only"), "{body}");
    let writer = silo_e2e::ApiClient::new(server.addr, Some(&token));
    let (status, _) =
        writer.call("POST", "/w/acme/projects", Some(serde_json::json!({ "name": "Yes" }))).await.unwrap();
    assert_eq!(status, 201, "a read-and-write token writes");
    // A name over 100 characters is refused next to the field, what was typed kept.
    let long = "n".repeat(101);
    ada.submit(
        "/account",
        "/account/tokens",
        &[("name", &long), ("access", "read_only"), ("workspace", "acme")],
    )
    .await
    .unwrap();
    let page = ada.get("/account").await.unwrap().body;
    assert!(
        page.contains("id=\"token-name-error\"") && page.contains("<option value=\"read_only\" selected>")
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_admin_console_runs_the_fleet() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    assert_eq!(ada.get("/admin").await.unwrap().status, 404, "not for tenant users");
    server.operator_token("ops@example.com").await.unwrap();
    let ops = server.sign_in("ops@example.com").await.unwrap();
    for i in 0..60 {
        server
            .tenancy
            .tenants()
            .create(
                silo_tenancy::CreateTenant {
                    slug: format!("fleet-{i:02}"),
                    plan: Some(if i % 2 == 0 { "pro".into() } else { "free".into() }),
                    ..Default::default()
                },
                "test",
            )
            .await
            .unwrap();
    }
    let list = ops.get("/admin").await.unwrap();
    assert!(
        list.body.contains("Tenants <span class=\"muted\">(61)</span>") && list.body.contains("Page 1 of 2"),
        "{}",
        list.body
    );
    let page2 = ops.get("/admin?sort=slug&page=2").await.unwrap();
    assert!(page2.body.contains("fleet-59") && !page2.body.contains("fleet-00"));
    let filtered = ops.get("/admin?q=fleet-1&plan=pro").await.unwrap();
    assert!(filtered.body.contains("(5)"), "fleet-10,12,14,16,18");
    assert!(
        filtered.body.contains(r#"<option value="pro" selected>pro</option>"#),
        "the plan filter is a list"
    );

    let provisioned = ops
        .submit(
            "/admin",
            "/admin/tenants",
            &[
                ("slug", "newco"),
                ("name", "NewCo"),
                ("region", "local"),
                ("plan", "team"),
                ("owner", "ada@example.com"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(provisioned.status, 303);
    let detail_path = provisioned.location.unwrap();
    let detail = ops.get(&detail_path).await.unwrap();
    assert!(
        detail.body.contains("NewCo") && detail.body.contains("tenant.create") && detail.body.contains("MiB")
    );
    assert_eq!(ada.get("/w/newco/").await.unwrap().status, 200, "the owner was added");
    let by_name = ops.get("/admin?q=NEWC").await.unwrap();
    assert!(by_name.body.contains("(1)") && by_name.body.contains(">newco</a>"), "name prefix, any case");
    let inside = ops.get("/admin?q=ewC").await.unwrap();
    assert!(inside.body.contains("(1)") && inside.body.contains(">newco</a>"), "any part of the name");

    // An owner without an account is invited to own it; the link makes the account.
    let invited = ops
        .submit(
            "/admin",
            "/admin/tenants",
            &[("slug", "fresh-co"), ("plan", "team"), ("owner", "new@example.com")],
        )
        .await
        .unwrap();
    assert_eq!(invited.status, 303, "{}", invited.body);
    let fresh = ops.get(invited.location.as_deref().unwrap()).await.unwrap().body;
    assert!(
        fresh.contains("new@example.com has no account yet: an invitation to own it was emailed"),
        "{fresh}"
    );
    let link = server.link_in_last_email("new@example.com", "/invitations/").await.unwrap();
    let newcomer = server.visitor();
    let joined = newcomer
        .submit(&link, &format!("{link}/signup"), &[("name", "Nina"), ("password", PASSWORD)])
        .await
        .unwrap();
    assert_eq!((joined.status, joined.location.as_deref()), (303, Some("/w/fresh-co/")), "{}", joined.body);
    let nina = server.accounts.users().by_email("new@example.com").await.unwrap();
    let role = server.accounts.memberships().role_in(&"fresh-co".parse().unwrap(), &nina.id).await.unwrap();
    assert_eq!(role, Some(silo_accounts::Role::Owner));
    // Such an invitation is only for a workspace without members: it cannot hand one over.
    let fresh_co = server.tenancy.tenant(&"fresh-co".parse().unwrap()).await.unwrap();
    let operator = server.accounts.users().by_email("ops@example.com").await.unwrap();
    let again = server
        .accounts
        .invitations()
        .invite_first_owner(&fresh_co, "eve@example.com", &operator, "http://x")
        .await;
    assert!(matches!(again, Err(silo_accounts::Error::Conflict(_))), "{again:?}");
    // A refused provisioning says why next to the field and keeps what was typed.
    for (slug, owner, field) in
        [("Bad Slug", "", "slug"), ("newco", "", "slug"), ("other-co", "not-an-email", "owner")]
    {
        let refused = ops
            .submit("/admin", "/admin/tenants", &[("slug", slug), ("name", "Typed Name"), ("owner", owner)])
            .await
            .unwrap();
        assert_eq!((refused.status, refused.location.clone()), (303, Some(format!("/admin#{field}-error"))));
        let page = ops.get("/admin").await.unwrap().body;
        assert!(page.contains(&format!("id=\"{field}-error\"")), "{slug} {owner}: {page}");
        assert!(page.contains("value=\"Typed Name\""), "kept");
    }
    assert!(server.tenancy.tenant(&"other-co".parse().unwrap()).await.is_err(), "nothing made");

    for action in ["suspend", "resume", "migrate", "delete"] {
        let done = ops.submit(&detail_path, &format!("{detail_path}/{action}"), &[]).await.unwrap();
        assert_eq!(done.status, 303, "{action}");
        let page = ops.get(&detail_path).await.unwrap();
        assert!(page.body.contains("class=\"flash ok\""), "{action}: {}", page.body);
    }
    let unconfirmed =
        ops.submit(&detail_path, &format!("{detail_path}/purge"), &[("confirm", "nope")]).await.unwrap();
    assert_eq!(unconfirmed.status, 303);
    assert!(ops.get(&detail_path).await.unwrap().body.contains("id=\"tenant-status\">deleting"));
    ops.submit(&detail_path, &format!("{detail_path}/purge"), &[("confirm", "newco")]).await.unwrap();
    assert!(ops.get(&detail_path).await.unwrap().body.contains("id=\"tenant-status\">deleted"));

    let fleet = ops.get("/admin/fleet").await.unwrap();
    assert!(
        fleet.body.contains("Handle cache")
            && fleet.body.contains(&format!(
                "v{}: 62 tenant(s)",
                silo_tenancy::schema::latest_version(silo_workspace::migrations())
            )),
        "{}",
        fleet.body
    );
    // The server itself is listed among the control plane's servers, live.
    let node = server.tenancy.settings().cluster.node_name();
    let servers = fleet.body.split("id=\"nodes\"").nth(1).unwrap().split("</table>").next().unwrap();
    assert!(
        servers.contains(&format!("<td>{node}</td><td>http:&#x2F;&#x2F;{}</td>", server.addr))
            && !servers.contains("silent"),
        "{servers}"
    );
    let engine = if silo_e2e::on_postgres() { "(PostgreSQL)" } else { "(control.db)" };
    assert!(fleet.body.contains(engine), "{}", fleet.body);
    // An entry about a person names them by email.
    let members = ops.get("/admin/audit?action=member.").await.unwrap().body;
    assert!(members.contains("<td>ada@example.com</td>"), "{members}");
    let audit = ops.get("/admin/audit?action=tenant.purge").await.unwrap();
    assert!(audit.body.contains("tenant.purge") && !audit.body.contains("tenant.suspend"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn workspaces_are_served_on_their_own_host() {
    let server = TestServer::start_with(|s| s.server.base_domain = Some("silo.test".into())).await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    ada.submit("/w/acme/", "/w/acme/projects", &[("name", "Hosted")]).await.unwrap();
    let on_host =
        ada.send(ada.request(reqwest::Method::GET, "/").header("Host", "acme.silo.test")).await.unwrap();
    assert_eq!(on_host.status, 200);
    assert!(
        on_host.body.contains("Hosted") && on_host.body.contains("/w/acme/projects/"),
        "{}",
        on_host.body
    );
    let search = ada
        .send(ada.request(reqwest::Method::GET, "/search?q=x").header("Host", "acme.silo.test:8080"))
        .await
        .unwrap();
    assert_eq!(search.status, 200);
    let stranger = server.sign_up("eve@example.com", "evil").await.unwrap();
    let refused = stranger
        .send(stranger.request(reqwest::Method::GET, "/").header("Host", "acme.silo.test"))
        .await
        .unwrap();
    assert_eq!(refused.status, 404, "the host route checks membership like the path route");
    let unknown =
        ada.send(ada.request(reqwest::Method::GET, "/").header("Host", "nobody.silo.test")).await.unwrap();
    assert_eq!(unknown.status, 404);
    let bare = ada.send(ada.request(reqwest::Method::GET, "/").header("Host", "silo.test")).await.unwrap();
    assert!(
        bare.status == 200 && bare.body.contains("Your workspaces"),
        "the base domain itself is the site"
    );
    // The sign-in hand-off to a workspace's host: none to a held restore, which is nothing to
    // its members (as for a workspace that does not exist).
    use silo_backups::BackupsExt;
    let acme: silo_core::TenantRef = "acme".parse().unwrap();
    let backup =
        server.tenancy.backups().create(&acme, silo_backups::BackupKind::Manual, "ops").await.unwrap();
    server.tenancy.backups().restore(&acme, Some(&backup.id), Some("acme-copy"), "ops").await.unwrap();
    let state = "s".repeat(43);
    let handoff = |to: &str| format!("/handoff?to={to}&state={state}");
    assert_eq!(ada.get(&handoff("acme")).await.unwrap().status, 303, "a member goes to the host");
    assert_eq!(ada.get(&handoff("acme-copy")).await.unwrap().status, 404);
    assert_eq!(ada.get(&handoff("no-such-ws")).await.unwrap().status, 404);
    server.stop().await.unwrap();
}

/// An owner deletes a workspace (closed at once, 410) and brings it back from the home page
/// within the grace period; nobody else can.
#[tokio::test]
async fn an_owner_deletes_a_workspace_and_brings_it_back() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    let settings = ada.get("/w/acme/settings").await.unwrap();
    assert!(settings.body.contains("Delete workspace (undo within 30 days)"), "{}", settings.body);
    let deleted = ada.submit("/w/acme/settings", "/w/acme/delete", &[("confirm", "acme")]).await.unwrap();
    assert_eq!(deleted.status, 303);
    assert_eq!(ada.get("/w/acme/").await.unwrap().status, 410);
    let acme = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    assert!(server.tenancy.tenants().purge_due(acme.id).await.unwrap().is_some(), "a purge is scheduled");
    let home = ada.get("/").await.unwrap();
    assert!(home.body.contains("Undo deletion"), "{}", home.body);

    // Someone who is not its owner finds nothing to undo.
    let bob = server.sign_up("bob@example.com", "bobs").await.unwrap();
    assert_eq!(bob.submit("/", "/workspaces/acme/undelete", &[]).await.unwrap().status, 404);
    assert_eq!(bob.submit("/", "/workspaces/nothing-here/undelete", &[]).await.unwrap().status, 404);

    let back = ada.submit("/", "/workspaces/acme/undelete", &[]).await.unwrap();
    assert_eq!(back.status, 303);
    assert_eq!(ada.get("/w/acme/").await.unwrap().status, 200);
    assert_eq!(server.tenancy.tenants().purge_due(acme.id).await.unwrap(), None, "the purge is cancelled");
    // Undoing twice is a named refusal, not an error page.
    let again = ada.submit("/", "/workspaces/acme/undelete", &[]).await.unwrap();
    assert_eq!(again.status, 303);
    server.stop().await.unwrap();
}

/// An owner exports the workspace from its settings page: a job, then a download link there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_exports_the_workspace_from_its_settings() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    let started = ada.submit("/w/acme/settings", "/w/acme/export", &[]).await.unwrap();
    assert_eq!(started.status, 303);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let link = loop {
        // Tera escapes the link's slashes as HTML entities, which a browser decodes.
        let page = ada.get("/w/acme/settings").await.unwrap().body.replace("&#x2F;", "/");
        if let Some(at) = page.find("href=\"/api/v1/exports/") {
            let rest = &page[at + "href=\"".len()..];
            break rest[..rest.find('"').unwrap()].replace("&amp;", "&");
        }
        assert!(tokio::time::Instant::now() < deadline, "no download link: {page}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let zip = ada.get(&link).await.unwrap();
    assert_eq!(zip.status, 200);
    // A member who is not an owner can neither start one nor see the links.
    let bob = server.sign_up("bob@example.com", "bobs").await.unwrap();
    server
        .accounts
        .memberships()
        .add(&"acme".parse().unwrap(), "bob@example.com", silo_accounts::Role::Member, "test")
        .await
        .unwrap();
    assert_eq!(bob.submit("/w/acme/settings", "/w/acme/export", &[]).await.unwrap().status, 403);
    assert!(
        !bob.get("/w/acme/settings").await.unwrap().body.replace("&#x2F;", "/").contains("/api/v1/exports/")
    );
    server.stop().await.unwrap();
}

/// Bounds on what a request can ask: a form over 64 KiB is refused with 413 before it is
/// parsed (nothing saved), and a huge `?page=` is an empty page, not an overflow.
#[tokio::test]
async fn oversized_forms_and_huge_page_numbers_are_answered() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    let token = ada.csrf("/w/acme/").await.unwrap();
    let huge = "x".repeat(100 * 1024);
    let refused = ada
        .post("/w/acme/projects", &[("csrf", token.as_str()), ("name", "big"), ("description", &huge)])
        .await
        .unwrap();
    assert_eq!(refused.status, 413, "{}", refused.body);
    assert!(refused.body.contains("too large"), "{}", refused.body);
    let tenant = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    let db = server.tenancy.db(tenant.id).await.unwrap();
    assert_eq!(silo_workspace::projects::count(&db.turn().await).unwrap(), 0, "nothing was saved");
    drop(db);

    server.accounts.users().create("ops@example.com", PASSWORD, None, "test").await.unwrap();
    server.accounts.users().grant_operator("ops@example.com", "test").await.unwrap();
    // An operator signing in without a destination lands on the console; with one, there.
    let landing = server.visitor();
    let signed_in = landing
        .submit("/login", "/login", &[("email", "ops@example.com"), ("password", PASSWORD)])
        .await
        .unwrap();
    assert_eq!((signed_in.status, signed_in.location.as_deref()), (303, Some("/admin")));
    let elsewhere = server.visitor();
    let signed_in = elsewhere
        .submit(
            "/login?next=/account",
            "/login",
            &[("email", "ops@example.com"), ("password", PASSWORD), ("next", "/account")],
        )
        .await
        .unwrap();
    assert_eq!(signed_in.location.as_deref(), Some("/account"));
    let ops = server.sign_in("ops@example.com").await.unwrap();
    let page = ops.get(&format!("/admin?page={}", i64::MAX)).await.unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    let page = ops.get("/admin?page=-5").await.unwrap();
    assert_eq!(page.status, 200);
    server.stop().await.unwrap();
}

/// Long or odd input is refused with a message the person sees: a 10,000-character name at
/// sign-up, a 10,000-character or markup-laden address in an invitation (the flash message
/// quotes a bounded part of it, so the browser keeps the cookie); a renamed person sees the
/// new name on the next page.
#[tokio::test]
async fn long_and_odd_input_gets_a_message_and_a_rename_shows_at_once() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    let long = "n".repeat(10_000);
    let visitor = server.visitor();
    let fields = [
        ("email", "bob@example.com"),
        ("name", long.as_str()),
        ("password", PASSWORD),
        ("workspace", "B"),
        ("slug", "bobs"),
    ];
    let refused = visitor.submit("/signup", "/signup", &fields).await.unwrap();
    assert_eq!(refused.status, 422);
    assert!(refused.body.contains("A display name is at most 100 characters."), "{}", refused.body);

    for email in ["x".repeat(10_000), "<b>@x.com".to_owned()] {
        let sent = ada
            .submit(
                "/w/acme/members",
                "/w/acme/members/invite",
                &[("email", email.as_str()), ("role", "member")],
            )
            .await
            .unwrap();
        assert_eq!(sent.status, 303);
        let page = ada.get("/w/acme/members").await.unwrap().body;
        assert!(
            page.contains("is not a valid email address") && page.contains("id=\"email-error\""),
            "a message next to the field for {}: {page}",
            &email[..email.len().min(20)]
        );
        // What was typed is put back in the field, escaped, however long.
        let shown = email.replace('<', "&lt;").replace('>', "&gt;");
        assert!(page.contains(&format!("value=\"{shown}\"")), "{}", &page[..page.len().min(2000)]);
    }
    let tenant = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    assert!(server.accounts.invitations().pending(tenant.id).await.unwrap().is_empty());

    ada.submit("/account", "/account/profile", &[("display_name", "Ada Lovelace")]).await.unwrap();
    let page = ada.get("/account").await.unwrap().body;
    assert!(page.contains("Ada Lovelace"), "the new name at once: {page}");
    server.stop().await.unwrap();
}

/// Workspace pages built from the tenant's file carry a validator; a client whose copy is
/// current gets 304 without the file being opened. The validator is the session's own (its
/// form token is on the page), a write or a waiting flash message renders the page again,
/// pages that read the control plane are never stored, and signing out clears the browser's
/// copies.
#[tokio::test]
async fn workspace_pages_are_validated_and_a_current_copy_costs_no_open() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    ada.get("/w/acme/").await.unwrap(); // shows (and clears) any flash of the sign-up
    let first = ada.get("/w/acme/").await.unwrap();
    assert_eq!(first.status, 200);
    // Never kept by a browser (its Back after a sign-out would show it); the validator still
    // answers a client that sends it.
    assert_eq!(first.headers["cache-control"], "private, no-cache, no-store");
    let etag = first.headers["etag"].to_str().unwrap().to_owned();
    let conditional = |visitor: &silo_e2e::Visitor, path: &str, etag: &str| {
        visitor.request(reqwest::Method::GET, path).header("If-None-Match", etag.to_owned())
    };

    server.tenancy.cache().clear().await;
    assert!(server.tenancy.cache().wait_all_closed(std::time::Duration::from_secs(10)).await);
    let opens = server.tenancy.cache().stats().opens;
    let again = ada.send(conditional(&ada, "/w/acme/", &etag)).await.unwrap();
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());
    assert_eq!(again.headers["etag"].to_str().unwrap(), etag);
    assert_eq!(server.tenancy.cache().stats().opens, opens, "a 304 opens nothing");

    // Another session of the same account has another form token: its own validator.
    let other = server.sign_in("ada@example.com").await.unwrap();
    other.get("/w/acme/").await.unwrap();
    assert_eq!(other.send(conditional(&other, "/w/acme/", &etag)).await.unwrap().status, 200);

    // A write renders it again, with its flash message, which is not kept.
    let created = ada.submit("/w/acme/", "/w/acme/projects", &[("name", "Launch")]).await.unwrap();
    assert_eq!(created.status, 303);
    let with_flash = ada.send(conditional(&ada, "/w/acme/", &etag)).await.unwrap();
    assert_eq!(with_flash.status, 200);
    assert!(with_flash.body.contains("Project created."));
    assert_eq!(with_flash.headers["cache-control"], "no-store");
    assert!(with_flash.headers.get("etag").is_none());
    let changed = ada.send(conditional(&ada, "/w/acme/", &etag)).await.unwrap();
    assert_eq!(changed.status, 200, "the commit moved the version");
    let project_path = created.location.unwrap();
    for path in [project_path.as_str(), "/w/acme/search?q=launch"] {
        let page = ada.get(path).await.unwrap();
        let tag = page.headers["etag"].to_str().unwrap().to_owned();
        assert_eq!(ada.send(conditional(&ada, path, &tag)).await.unwrap().status, 304, "{path}");
    }

    // The members and settings pages read the control plane (invitations, exports): never
    // stored, never 304.
    for path in ["/w/acme/members", "/w/acme/settings"] {
        let page = ada.send(conditional(&ada, path, "*")).await.unwrap();
        assert_eq!(
            (page.status, page.headers["cache-control"].to_str().unwrap()),
            (200, "no-store"),
            "{path}"
        );
    }

    let token = ada.csrf("/w/acme/").await.unwrap();
    let out = ada.post("/logout", &[("csrf", &token)]).await.unwrap();
    assert_eq!(out.status, 303);
    assert_eq!(out.headers["clear-site-data"], "\"cache\"");
    let signed_out = ada.send(conditional(&ada, "/w/acme/", &etag)).await.unwrap();
    assert_ne!(signed_out.status, 304, "a signed-out browser is not told its copy is current");
    server.stop().await.unwrap();
}

/// The board: a card's status changes from the board itself; a task due before today and not
/// done is marked overdue; "My tasks" filters to the signed-in member; filters can be cleared.
#[tokio::test]
async fn the_board_moves_cards_and_marks_what_is_overdue() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    let created =
        ada.submit("/w/acme/", "/w/acme/projects", &[("name", "Launch"), ("description", "")]).await.unwrap();
    let board = created.location.unwrap();
    let me = between(&ada.get(&board).await.unwrap().body, "<a href=\"?assignee=", "\"")
        .expect("a My tasks link")
        .to_owned();
    for (title, due, assignee) in [("Late report", "2020-01-02", me.as_str()), ("Someday", "", "")] {
        let made = ada
            .submit(
                &board,
                &format!("{board}/tasks"),
                &[("title", title), ("body", ""), ("assignee_id", assignee), ("due_date", due)],
            )
            .await
            .unwrap();
        assert_eq!(made.status, 303);
    }
    let page = ada.get(&board).await.unwrap().body;
    let late = page.split("Late report").next().unwrap().rsplit("<div class=\"task").next().unwrap();
    assert!(late.starts_with(" overdue"), "the late task is marked: {page}");
    assert!(page.contains("<span class=\"badge overdue\">overdue</span>"));
    assert_eq!(page.matches("badge overdue").count(), 1, "a task without a due date is not overdue");
    // Move the late task to done from the board: back on the board, no longer overdue.
    let id = between(
        page.split("Late report").next().unwrap().rsplit("href=\"/w/acme/tasks/").next().unwrap(),
        "",
        "\"",
    )
    .unwrap()
    .to_owned();
    let moved =
        ada.submit(&board, &format!("/w/acme/tasks/{id}/status"), &[("status", "done")]).await.unwrap();
    assert_eq!((moved.status, moved.location.clone()), (303, Some(format!("{board}#task-{id}"))));
    let page = ada.get(&board).await.unwrap().body;
    assert!(page.contains("is done now") && !page.contains("badge overdue"), "{page}");
    let refused =
        ada.submit(&board, &format!("/w/acme/tasks/{id}/status"), &[("status", "someday")]).await.unwrap();
    assert_eq!(refused.status, 303);
    assert!(ada.get(&board).await.unwrap().body.contains("status must be one of"), "a bad status is flashed");
    // My tasks, then clear the filter.
    let mine = ada.get(&format!("{board}?assignee={me}")).await.unwrap().body;
    assert!(
        mine.contains("Late report")
            && !mine.contains("Someday")
            && mine.contains("<a href=\"?\">Clear filters</a>")
    );
    assert!(!ada.get(&board).await.unwrap().body.contains("Clear filters"), "nothing to clear");

    // Sorting: by due date (soonest first, undated last), by last change (the moved task
    // first), newest first by default.
    ada.submit(&board, &format!("{board}/tasks"), &[("title", "Soon"), ("due_date", "2031-05-01")])
        .await
        .unwrap();
    let order = |body: &str| {
        let mut found: Vec<(usize, &str)> = ["Late report", "Someday", "Soon"]
            .into_iter()
            .map(|t| (body.find(&format!("<strong>{t}</strong>")).unwrap(), t))
            .collect();
        found.sort();
        found.into_iter().map(|(_, t)| t).collect::<Vec<_>>()
    };
    let all = |sort: &str| format!("{board}?status=&sort={sort}");
    // One column at a time, so the page's order is the list's order.
    let column = |sort: &str, status: &str| format!("{board}?status={status}&sort={sort}");
    let todo_due = ada.get(&column("due", "todo")).await.unwrap().body;
    assert!(
        todo_due.find("<strong>Soon</strong>").unwrap() < todo_due.find("<strong>Someday</strong>").unwrap()
    );
    let newest = ada.get(&column("newest", "todo")).await.unwrap().body;
    assert!(newest.find("<strong>Soon</strong>").unwrap() < newest.find("<strong>Someday</strong>").unwrap());
    ada.submit(&board, &format!("/w/acme/tasks/{id}/status"), &[("status", "todo")]).await.unwrap();
    assert_eq!(
        order(&ada.get(&column("due", "todo")).await.unwrap().body),
        ["Late report", "Soon", "Someday"]
    );
    assert_eq!(
        order(&ada.get(&column("updated", "todo")).await.unwrap().body),
        ["Late report", "Soon", "Someday"]
    );
    assert_eq!(
        order(&ada.get(&column("newest", "todo")).await.unwrap().body),
        ["Soon", "Someday", "Late report"]
    );
    let sorted = ada.get(&all("due")).await.unwrap().body;
    assert!(sorted.contains("<option value=\"due\" selected>") && sorted.contains("Clear filters"));
    assert_eq!(ada.get(&all("nonsense")).await.unwrap().status, 200, "an unknown order is the default");
    // A card moved on a filtered, sorted board returns to that board; unknown values dropped.
    let filtered = ada.get(&format!("{board}?assignee={me}&sort=due&status=todo")).await.unwrap().body;
    assert!(
        filtered.contains(&format!("name=\"view\" value=\"status=todo&amp;assignee={me}&amp;sort=due\"")),
        "{filtered}"
    );
    let view = format!("status=todo&assignee={me}&sort=due&evil=%22x");
    let moved = ada
        .submit(&board, &format!("/w/acme/tasks/{id}/status"), &[("status", "doing"), ("view", &view)])
        .await
        .unwrap();
    assert_eq!(moved.location, Some(format!("{board}?status=todo&assignee={me}&sort=due#task-{id}")));
    server.stop().await.unwrap();
}

/// A project is deleted with its tasks and comments by an admin or owner, asked first on its
/// page; a member is not offered it and is refused; search and activity follow.
#[tokio::test]
async fn a_project_is_deleted_with_its_tasks_after_asking() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    server.accounts.users().create("mia@example.com", PASSWORD, Some("Mia"), "test").await.unwrap();
    let acme: silo_core::TenantRef = "acme".parse().unwrap();
    server
        .accounts
        .memberships()
        .add(&acme, "mia@example.com", silo_accounts::Role::Member, "test")
        .await
        .unwrap();
    let board =
        ada.submit("/w/acme/", "/w/acme/projects", &[("name", "Doomed")]).await.unwrap().location.unwrap();
    ada.submit(&board, &format!("{board}/tasks"), &[("title", "Zebraword task")]).await.unwrap();
    let page = ada.get(&board).await.unwrap().body;
    assert!(
        page.contains("<summary>Delete project</summary>") && page.contains("its 1 task and their comments"),
        "{page}"
    );
    let mia = server.sign_in("mia@example.com").await.unwrap();
    assert!(!mia.get(&board).await.unwrap().body.contains("Delete project"), "not offered to a member");
    let refused = mia.submit(&board, &format!("{board}/delete"), &[]).await.unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(ada.get(&board).await.unwrap().status, 200, "still there");

    let deleted = ada.submit(&board, &format!("{board}/delete"), &[]).await.unwrap();
    assert_eq!((deleted.status, deleted.location.as_deref()), (303, Some("/w/acme/")));
    let home = ada.get("/w/acme/").await.unwrap().body;
    assert!(home.contains("Deleted the project Doomed and its 1 task."), "{home}");
    assert!(home.contains("deleted the project") && home.contains("Doomed"), "in the activity: {home}");
    assert_eq!(ada.get(&board).await.unwrap().status, 404);
    assert!(
        !ada.get("/w/acme/search?q=Zebraword").await.unwrap().body.contains("Zebraword task"),
        "out of the search"
    );
    let again = ada.submit("/w/acme/", &format!("{board}/delete"), &[]).await.unwrap();
    assert_eq!(again.status, 404);
    server.stop().await.unwrap();
}

/// What a form shows is what was stored or typed, escaped once: saving a form unchanged
/// changes nothing, however many times (an apostrophe, markup, an ampersand).
#[tokio::test]
async fn forms_show_text_escaped_once_and_saving_again_changes_nothing() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    let board =
        ada.submit("/w/acme/", "/w/acme/projects", &[("name", "Launch")]).await.unwrap().location.unwrap();
    let title = "Don't <b>forget</b> R&D / fins";
    ada.submit(&board, &format!("{board}/tasks"), &[("title", title), ("body", "<i>x</i> & y")])
        .await
        .unwrap();
    let page = ada.get(&board).await.unwrap().body;
    let task = page.split("href=\"/w/acme/tasks/").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let path = format!("/w/acme/tasks/{task}");
    for _ in 0..3 {
        let form = ada.get(&path).await.unwrap().body;
        assert!(!form.contains("&amp;#x27;") && !form.contains("&amp;lt;"), "escaped twice: {form}");
        // What a browser sends back from the form unchanged: the text itself.
        let saved =
            ada.submit(&path, &path, &[("title", title), ("body", "<i>x</i> & y"), ("status", "todo")]).await;
        assert_eq!(saved.unwrap().status, 303);
    }
    let stored =
        server.tenancy.db(server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap().id).await.unwrap();
    let task = silo_workspace::tasks::get(&stored.turn().await, task.parse().unwrap()).unwrap().unwrap();
    assert_eq!((task.title.as_str(), task.body.as_str()), (title, "<i>x</i> & y"));
    // A refused sign-up puts back a name with an apostrophe as it was typed.
    let visitor = server.visitor();
    let refused = visitor
        .submit(
            "/signup",
            "/signup",
            &[
                ("email", "bob@example.com"),
                ("password", PASSWORD),
                ("workspace", "Bob's R&D"),
                ("slug", "Bad Slug"),
            ],
        )
        .await
        .unwrap();
    assert!(refused.body.contains("value=\"Bob&#x27;s R&amp;D\""), "{}", refused.body);
    // The display name on the account page.
    ada.submit("/account", "/account/profile", &[("display_name", "Ada O'Brien & Co")]).await.unwrap();
    assert!(ada.get("/account").await.unwrap().body.contains("value=\"Ada O&#x27;Brien &amp; Co\""));
    server.stop().await.unwrap();
}

/// Bringing a workspace back returns it to the status it had: a suspended one (or a held
/// restore) comes back suspended, so an owner's undelete never lifts an operator's suspension;
/// a held restore is nothing its members can bring back. A purge job of an earlier deletion,
/// run again by hand, keeps a later deletion's grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undelete_keeps_a_suspension_and_a_stale_purge_keeps_the_grace_period() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    let acme: silo_core::TenantRef = "acme".parse().unwrap();
    let tenants = server.tenancy.tenants();
    // The operators suspend and delete: the owner cannot bring it back (theirs to decide);
    // the operators can, and it comes back suspended.
    tenants.suspend(&acme, "ops").await.unwrap();
    tenants.delete(&acme, "ops").await.unwrap();
    let refused = ada.submit("/", "/workspaces/acme/undelete", &[]).await.unwrap();
    assert_eq!(refused.status, 303);
    assert!(ada.get("/").await.unwrap().body.contains("only they can bring it back"));
    assert_eq!(server.tenancy.tenant(&acme).await.unwrap().status, silo_tenancy::TenantStatus::Deleting);
    tenants.undelete(&acme, "ops").await.unwrap();
    let now = server.tenancy.tenant(&acme).await.unwrap();
    assert_eq!(now.status, silo_tenancy::TenantStatus::Suspended, "still suspended");
    assert_eq!(ada.get("/w/acme/").await.unwrap().status, 423);
    // An owner's own delete of a suspended workspace: they bring it back, still suspended.
    tenants.delete_by_owner(&acme, "ada@example.com").await.unwrap();
    assert_eq!(ada.submit("/", "/workspaces/acme/undelete", &[]).await.unwrap().status, 303);
    assert_eq!(server.tenancy.tenant(&acme).await.unwrap().status, silo_tenancy::TenantStatus::Suspended);

    // A held restore deleted by the operators: its owner cannot bring it back; they can, held.
    tenants.resume(&acme, "ops").await.unwrap();
    use silo_backups::BackupsExt;
    let backup =
        server.tenancy.backups().create(&acme, silo_backups::BackupKind::Manual, "ops").await.unwrap();
    let copy =
        server.tenancy.backups().restore(&acme, Some(&backup.id), Some("acme-copy"), "ops").await.unwrap();
    let copy_ref = silo_core::TenantRef::Id(copy.tenant.id);
    tenants.delete(&copy_ref, "ops").await.unwrap();
    assert_eq!(ada.submit("/", "/workspaces/acme-copy/undelete", &[]).await.unwrap().status, 404);
    let undone = tenants.undelete(&copy_ref, "ops").await.unwrap();
    assert!(undone.held && undone.status == silo_tenancy::TenantStatus::Suspended, "{undone:?}");
    assert_eq!(ada.get("/w/acme-copy/").await.unwrap().status, 404);

    // Delete, bring back (the purge job is cancelled), delete again: retrying the first job
    // by hand keeps the tenant for the second deletion's grace period.
    tenants.delete(&acme, "ops").await.unwrap();
    let first =
        server.tenancy.jobs().queued_for(silo_tenancy::jobs::TENANT_PURGE, now.id).await.unwrap().remove(0);
    tenants.undelete(&acme, "ops").await.unwrap();
    tenants.delete(&acme, "ops").await.unwrap();
    server.tenancy.jobs().retry(&first.id, "ops").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let job = loop {
        let job = server.tenancy.jobs().get(&first.id).await.unwrap();
        if job.status == silo_jobs::JobStatus::Done {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "the retried job did not run: {job:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(job.result.as_ref().unwrap()["grace_period_until"].is_string(), "{job:?}");
    assert_eq!(
        server.tenancy.tenant(&acme).await.unwrap().status,
        silo_tenancy::TenantStatus::Deleting,
        "not purged"
    );
    // The console's jobs name their tenant; running a purge again asks first.
    server.operator_token("ops@example.com").await.unwrap();
    let ops = server.sign_in("ops@example.com").await.unwrap();
    let jobs = ops.get("/admin/jobs").await.unwrap().body;
    assert!(jobs.contains(&format!("<a href=\"/admin/tenants/{}\">acme</a>", now.id)), "{jobs}");
    assert!(jobs.contains("<summary>Retry</summary><p>The purge runs again"), "{jobs}");
    server.stop().await.unwrap();
}

/// One account owns at most 20 workspaces it founded, however many foundings arrive at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_foundings_do_not_pass_the_limit() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    let token = ada.csrf("/workspaces/new").await.unwrap();
    let forms: Vec<[(&str, String); 2]> =
        (0..30).map(|i| [("csrf", token.clone()), ("name", format!("Race {i}"))]).collect();
    let ada = &ada;
    let posts = forms.iter().map(|form| {
        let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        async move { ada.post("/workspaces", &fields).await }
    });
    let answers = futures::future::join_all(posts).await;
    let made = answers.iter().filter(|a| a.as_ref().unwrap().status == 303).count();
    let refused = answers.iter().filter(|a| a.as_ref().unwrap().status == 422).count();
    assert_eq!((made, refused), (19, 11), "acme and 19 more");
    let ada_id = server.accounts.users().by_email("ada@example.com").await.unwrap().id;
    assert_eq!(server.accounts.memberships().workspaces_of(&ada_id).await.unwrap().len(), 20);
    server.stop().await.unwrap();
}

/// Addresses that cannot be read get the site's pages, never a parser's words; error pages are
/// never stored; a token's access is one the form offers; an account's live tokens are
/// bounded; a held restore gets no token.
#[tokio::test]
async fn odd_addresses_get_pages_and_tokens_are_bounded() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    for path in ["/w/acme/tasks/abc", "/w/acme/projects/99999999999999999999"] {
        let page = ada.get(path).await.unwrap();
        assert_eq!(page.status, 404, "{path}");
        assert!(
            page.body.contains("<h1>Not found</h1>") && page.body.contains("Sign out"),
            "{path}: {}",
            page.body
        );
        assert!(!page.body.contains("parse"), "{path}");
        assert_eq!(page.headers["cache-control"], "no-store", "{path}");
    }
    let board =
        ada.submit("/w/acme/", "/w/acme/projects", &[("name", "Launch")]).await.unwrap().location.unwrap();
    let odd = ada.get(&format!("{board}?before=abc")).await.unwrap();
    assert_eq!(odd.status, 400);
    assert!(
        odd.body.contains("a parameter Silo cannot read") && !odd.body.contains("invalid digit"),
        "{}",
        odd.body
    );

    let user = server.accounts.users().by_email("ada@example.com").await.unwrap();
    let count = || async { server.accounts.tokens().of_user(&user.id).await.unwrap().len() };
    ada.submit(
        "/account",
        "/account/tokens",
        &[("name", "typo"), ("access", "readonly"), ("workspace", "acme")],
    )
    .await
    .unwrap();
    assert_eq!(count().await, 0, "an access the form does not offer makes no token");
    assert!(ada.get("/account").await.unwrap().body.contains("Choose read only, or read and write."));
    let scope = || silo_accounts::TokenScope::Personal("acme".parse().unwrap());
    for _ in 0..silo_accounts::tokens::TOKENS_PER_ACCOUNT {
        server.accounts.tokens().issue("ada@example.com", scope(), "test").await.unwrap();
    }
    let over = server.accounts.tokens().issue("ada@example.com", scope(), "test").await;
    assert!(matches!(over, Err(silo_accounts::Error::LimitReached(_))), "{over:?}");
    ada.submit(
        "/account",
        "/account/tokens",
        &[("name", "one more"), ("access", "read_write"), ("workspace", "acme")],
    )
    .await
    .unwrap();
    assert!(ada.get("/account").await.unwrap().body.contains("at most 50 live tokens"));

    use silo_backups::BackupsExt;
    let acme: silo_core::TenantRef = "acme".parse().unwrap();
    let backup =
        server.tenancy.backups().create(&acme, silo_backups::BackupKind::Manual, "ops").await.unwrap();
    server.tenancy.backups().restore(&acme, Some(&backup.id), Some("acme-copy"), "ops").await.unwrap();
    let held = silo_accounts::TokenScope::Personal("acme-copy".parse().unwrap());
    server.accounts.tokens().revoke_all(&user.id, "test").await.unwrap();
    assert!(
        server.accounts.tokens().issue("ada@example.com", held, "test").await.is_err(),
        "no token for a held restore"
    );

    server.stop().await.unwrap();
}

/// A refused form brings back all that was typed, however long (it waits on the server under
/// a key in the browser's cookie, never in a header).
#[tokio::test]
async fn a_refused_form_brings_back_long_text_whole() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    let board =
        ada.submit("/w/acme/", "/w/acme/projects", &[("name", "Launch")]).await.unwrap().location.unwrap();
    let details = "日本語の説明と長い本文。".repeat(400);
    let refused = ada
        .submit(
            &board,
            &format!("{board}/tasks"),
            &[("title", "Long one"), ("body", &details), ("due_date", "2026-02-30")],
        )
        .await
        .unwrap();
    let cookies: usize = refused.headers.get_all("set-cookie").iter().map(|c| c.len()).sum();
    assert!(cookies < 1_500, "the typed text is not in a header: {cookies} bytes");
    let page = ada.get(&board).await.unwrap().body;
    assert!(page.contains(&format!(">{details}</textarea>")), "the whole text is back");
    assert!(!ada.get(&board).await.unwrap().body.contains(&details), "shown once");
    server.stop().await.unwrap();
}
