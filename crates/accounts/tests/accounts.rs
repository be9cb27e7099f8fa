//! Accounts in a real control plane: creation, authentication, operators, memberships, tokens.

mod common;

use common::fixture;
use silo_accounts::secrets::token_digest;
use silo_accounts::{Role, TokenScope};
use silo_workspace::members;

use silo_accounts::Error;
use silo_core::TenantRef;
use silo_core::db;

const PASSWORD: &str = "correct horse battery staple";

#[tokio::test]
async fn accounts_authenticate_without_telling_unknown_from_wrong() {
    let f = fixture().await;
    let user = f.accounts.users().create("Ada@Example.com", PASSWORD, Some("Ada"), "test").await.unwrap();
    assert_eq!((user.email.as_str(), user.display_name.as_str()), ("ada@example.com", "Ada"));

    let ok = f.accounts.users().authenticate("ADA@example.com", PASSWORD).await.unwrap();
    assert_eq!(ok.unwrap().id, user.id);
    assert!(f.accounts.users().authenticate("ada@example.com", "wrong password!").await.unwrap().is_none());
    assert!(f.accounts.users().authenticate("nobody@example.com", PASSWORD).await.unwrap().is_none());
    assert!(f.accounts.users().authenticate("not an email", PASSWORD).await.unwrap().is_none());

    let dup = f.accounts.users().create("ada@example.com", PASSWORD, None, "test").await.unwrap_err();
    assert!(dup.to_string().contains("already exists"), "{dup}");
    let short = f.accounts.users().create("bob@example.com", "short", None, "test").await.unwrap_err();
    assert!(short.to_string().contains("at least"), "{short}");
    let bad = f.accounts.users().create("bob@", PASSWORD, None, "test").await.unwrap_err();
    assert!(bad.to_string().contains("not a valid email"), "{bad}");
    assert!(matches!(
        f.accounts.users().by_email("carol@example.com").await.unwrap_err(),
        Error::UnknownUser(_)
    ));
}

#[tokio::test]
async fn members_land_in_the_control_plane_and_the_tenant_file() {
    let f = fixture().await;
    let acme = f.create("acme").await;
    let other = f.create("other").await;
    let user = f.accounts.users().create("ada@example.com", PASSWORD, None, "test").await.unwrap();
    let acme_ref = TenantRef::Id(acme.id);

    f.accounts.memberships().add(&acme_ref, "ada@example.com", Role::Admin, "test").await.unwrap();
    f.accounts.memberships().add(&acme_ref, "ada@example.com", Role::Owner, "test").await.unwrap();
    assert_eq!(f.accounts.memberships().role_in(&acme_ref, &user.id).await.unwrap(), Some(Role::Owner));
    assert_eq!(f.accounts.memberships().role_in(&TenantRef::Id(other.id), &user.id).await.unwrap(), None);
    let db = f.tenancy.db(acme.id).await.unwrap();
    assert_eq!(members::count(&db.turn().await).unwrap(), 1, "the role change updated the tenant's row");
    let other_db = f.tenancy.db(other.id).await.unwrap();
    assert_eq!(members::count(&other_db.turn().await).unwrap(), 0);

    let unknown = f
        .accounts
        .memberships()
        .add(&acme_ref, "nobody@example.com", Role::Member, "test")
        .await
        .unwrap_err();
    assert!(matches!(unknown, Error::UnknownUser(_)), "{unknown}");
    f.tenancy.tenants().suspend(&acme_ref, "test").await.unwrap();
    let suspended =
        f.accounts.memberships().add(&acme_ref, "ada@example.com", Role::Member, "test").await.unwrap_err();
    assert!(
        matches!(suspended, Error::Tenancy(silo_tenancy::Error::InvalidTransition { .. })),
        "{suspended}"
    );
}

#[tokio::test]
async fn tokens_need_the_right_standing_and_are_stored_hashed() {
    let f = fixture().await;
    let acme = f.create("acme").await;
    f.accounts.users().create("op@example.com", PASSWORD, None, "test").await.unwrap();
    f.accounts.users().create("ada@example.com", PASSWORD, None, "test").await.unwrap();

    let refused =
        f.accounts.tokens().issue("op@example.com", TokenScope::Operator, "test").await.unwrap_err();
    assert!(refused.to_string().contains("not an operator"), "{refused}");
    f.accounts.users().grant_operator("op@example.com", "test").await.unwrap();
    let token = f.accounts.tokens().issue("op@example.com", TokenScope::Operator, "test").await.unwrap();
    assert!(token.starts_with("silo_"));

    let acme_ref = TenantRef::Id(acme.id);
    let refused =
        f.accounts.tokens().issue("ada@example.com", TokenScope::Personal(acme_ref.clone()), "test").await;
    assert!(refused.unwrap_err().to_string().contains("not a member"));
    f.accounts.memberships().add(&acme_ref, "ada@example.com", Role::Member, "test").await.unwrap();
    let personal =
        f.accounts.tokens().issue("ada@example.com", TokenScope::Personal(acme_ref), "test").await.unwrap();
    assert_ne!(personal, token);

    // Only digests are stored: neither token appears in the control database (the file and its
    // WAL; on PostgreSQL every row of every table).
    let control = db::testing::stored_bytes(f.tenancy.control().reader(), f.dir.path()).await;
    for secret in [&token, &personal] {
        let needle = secret.as_bytes();
        assert!(!control.windows(needle.len()).any(|w| w == needle));
        let digest = token_digest(secret);
        assert!(control.windows(digest.len()).any(|w| w == digest.as_bytes()));
    }
}

#[tokio::test]
async fn sessions_are_server_side_revocable_and_expire() {
    let f = fixture().await;
    let user = f.accounts.users().create("ada@example.com", PASSWORD, None, "test").await.unwrap();
    let day = std::time::Duration::from_secs(86_400);
    let first = f.accounts.sessions().create(&user.id, "Firefox", "127.0.0.1", day, None).await.unwrap();
    let second = f.accounts.sessions().create(&user.id, "Chromium", "127.0.0.2", day, None).await.unwrap();
    assert_ne!(first.secret, second.secret, "a new id at every login");
    assert_ne!(first.session.csrf_token, second.session.csrf_token);
    assert_eq!(first.session.id, token_digest(&first.secret), "only the digest is stored");

    let found = f.accounts.sessions().find(&first.secret).await.unwrap().unwrap();
    assert_eq!((found.user_id.as_str(), found.user_agent.as_str()), (user.id.as_str(), "Firefox"));
    assert!(f.accounts.sessions().find("forged").await.unwrap().is_none());
    assert_eq!(f.accounts.sessions().of_user(&user.id).await.unwrap().len(), 2);

    assert!(f.accounts.sessions().revoke(&first.secret).await.unwrap());
    assert!(f.accounts.sessions().find(&first.secret).await.unwrap().is_none(), "logout ends it server-side");
    assert!(!f.accounts.sessions().revoke(&first.secret).await.unwrap());
    assert_eq!(f.accounts.sessions().revoke_all(&user.id).await.unwrap(), 1);
    assert!(f.accounts.sessions().find(&second.secret).await.unwrap().is_none());

    // A session past its expiry never authenticates.
    let expired =
        f.accounts.sessions().create(&user.id, "", "", std::time::Duration::ZERO, None).await.unwrap();
    assert!(f.accounts.sessions().find(&expired.secret).await.unwrap().is_none());
    assert!(f.accounts.sessions().of_user(&user.id).await.unwrap().is_empty());
}

/// A revocation counts at once in the process that made it (the directory's memo is cleared
/// by the write; no other process writes the control plane while a server runs, and the
/// background re-read is tested in `silo_tenancy::directory`).
#[tokio::test]
async fn a_revoked_token_is_refused_at_once() {
    let f = fixture().await;
    let acme = f.create("acme").await;
    let user = f.accounts.users().create("ada@example.com", PASSWORD, None, "test").await.unwrap();
    let acme_ref = TenantRef::Id(acme.id);
    f.accounts.memberships().add(&acme_ref, "ada@example.com", Role::Member, "test").await.unwrap();
    let scope = TokenScope::Personal(acme_ref);
    let kept = f.accounts.tokens().issue("ada@example.com", scope.clone(), "test").await.unwrap();
    let revoked = f.accounts.tokens().issue("ada@example.com", scope, "test").await.unwrap();

    let principal = f.accounts.tokens().authenticate(&revoked).await.unwrap().expect("a valid token");
    assert!(f.accounts.tokens().authenticate(&revoked).await.unwrap().is_some(), "remembered");
    assert!(f.accounts.tokens().authenticate(&kept).await.unwrap().is_some());
    assert!(f.accounts.tokens().revoke(&user.id, &principal.token_id, "test").await.unwrap());
    assert!(f.accounts.tokens().authenticate(&revoked).await.unwrap().is_none());
    assert!(f.accounts.tokens().authenticate(&kept).await.unwrap().is_some(), "only that token");
}

/// The role rules hold in the accounts crate itself, for any caller: a member acting is judged
/// by the role stored for them now; operators are not bound by the rules, but nobody removes the
/// last owner.
#[tokio::test]
async fn role_rules_are_enforced_for_every_caller() {
    use silo_accounts::By;
    let f = fixture().await;
    let acme = f.create("acme").await;
    let acme_ref = TenantRef::Id(acme.id);
    let memberships = f.accounts.memberships();
    let mut ids = Vec::new();
    for (email, role) in
        [("ada@example.com", Role::Owner), ("bob@example.com", Role::Admin), ("cy@example.com", Role::Member)]
    {
        let user = f.accounts.users().create(email, PASSWORD, None, "test").await.unwrap();
        memberships.add(&acme_ref, email, role, "test").await.unwrap();
        ids.push(user);
    }
    let [ada, bob, cy] = [&ids[0], &ids[1], &ids[2]];
    fn by(u: &silo_accounts::User) -> By<'_> {
        By::Member { user_id: &u.id, label: &u.email }
    }
    let forbidden = |r: Result<(), Error>| matches!(r, Err(Error::Forbidden(_)));

    // An admin manages members but never owners.
    assert!(forbidden(memberships.change_role(&acme, &cy.id, Role::Owner, by(bob)).await));
    assert!(forbidden(memberships.change_role(&acme, &ada.id, Role::Member, by(bob)).await));
    assert!(forbidden(memberships.remove(&acme, &ada.id, by(bob)).await));
    memberships.change_role(&acme, &cy.id, Role::Admin, by(bob)).await.unwrap();
    memberships.change_role(&acme, &cy.id, Role::Member, by(bob)).await.unwrap();
    // A member may only leave; invitations need an admin.
    assert!(forbidden(memberships.remove(&acme, &bob.id, by(cy)).await));
    assert!(forbidden(memberships.change_role(&acme, &cy.id, Role::Admin, by(cy)).await));
    let invited =
        f.accounts.invitations().create(&acme, "dee@example.com", Role::Member, cy, "http://x", None).await;
    assert!(matches!(invited, Err(Error::Forbidden(_))), "{invited:?}");
    // Someone outside the workspace is refused too, whatever they claim.
    let eve = f.accounts.users().create("eve@example.com", PASSWORD, None, "test").await.unwrap();
    assert!(forbidden(memberships.remove(&acme, &cy.id, by(&eve)).await));
    // An owner may do it all, except leave the workspace without an owner.
    memberships.change_role(&acme, &bob.id, Role::Owner, by(ada)).await.unwrap();
    memberships.remove(&acme, &bob.id, by(ada)).await.unwrap();
    let last = memberships.remove(&acme, &ada.id, by(ada)).await.unwrap_err();
    assert!(last.to_string().contains("at least one owner"), "{last}");
    let last = memberships.remove(&acme, &ada.id, By::Operator("cli:test")).await.unwrap_err();
    assert!(last.to_string().contains("at least one owner"), "operators keep the rule too: {last}");
    memberships.remove(&acme, &cy.id, by(cy)).await.unwrap();
    assert_eq!(memberships.role(acme.id, &cy.id).await.unwrap(), None, "a member left");
}

/// Sign-up is one operation: when its last step (the owner membership) fails, the workspace is
/// purged and the account removed, and the confirmation link works again. The failure is real:
/// a trigger on `control.db` refuses the membership row.
#[tokio::test]
async fn a_sign_up_that_fails_midway_leaves_nothing_behind() {
    use silo_accounts::signups::SignupRequest;
    let f = fixture().await;
    let request = SignupRequest {
        email: "ada@example.com".into(),
        name: "Ada".into(),
        password: PASSWORD.into(),
        workspace_name: "Acme".into(),
        slug: "acme".into(),
    };
    f.accounts.signups().start(&request, "http://silo.test").await.unwrap();
    let email = f.accounts.outbox().list(Some("ada@example.com"), 1).await.unwrap().remove(0);
    let body = f.accounts.outbox().render(&email).await.unwrap();
    let secret = body.split("/signup/confirm/").nth(1).unwrap().split_whitespace().next().unwrap().to_owned();

    let writer = f.tenancy.control().writer();
    db::testing::refuse_inserts(writer, "memberships").await;
    let failed = f.accounts.signups().confirm(&secret, "Acme", "acme").await.unwrap_err();
    assert!(failed.to_string().contains("injected"), "{failed}");
    // Nothing is left: no account, no tenant (not even a deleted row), no tenant file.
    assert!(matches!(f.accounts.users().by_email("ada@example.com").await, Err(Error::UnknownUser(_))));
    let acme = "acme".parse().unwrap();
    let tenant = f.tenancy.tenant(&acme).await;
    assert!(
        matches!(&tenant, Err(silo_tenancy::Error::NotFound(_)))
            || tenant.as_ref().is_ok_and(|t| t.status.to_string() == "deleted"),
        "the workspace is purged: {tenant:?}"
    );
    let files = std::fs::read_dir(f.dir.path().join("regions/local/tenants"))
        .map(|shards| shards.flatten().flat_map(|s| std::fs::read_dir(s.path()).unwrap().flatten()).count())
        .unwrap_or(0);
    assert_eq!(files, 0, "no tenant file stays behind");

    // The link works again once the failure is gone.
    db::testing::allow_inserts(writer, "memberships").await;
    let (user, tenant) = f.accounts.signups().confirm(&secret, "Acme", "acme").await.unwrap();
    assert_eq!(f.accounts.memberships().role(tenant.id, &user.id).await.unwrap(), Some(Role::Owner));
}

/// An erasure ends by replacing the control plane's copies in the backup store: a worker in a
/// process without the backups (a tool that opened the fleet alone) gives the job back before
/// changing anything, for a worker that has them.
#[tokio::test]
async fn an_erasure_without_the_backups_changes_nothing_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let tenancy =
        silo_tenancy::Tenancy::open(silo_tenancy::Settings::for_data_dir(dir.path()), common::schema())
            .await
            .unwrap();
    let accounts = silo_accounts::Accounts::new(tenancy.clone(), Default::default());
    accounts.users().create("ada@example.com", PASSWORD, Some("Ada"), "test").await.unwrap();
    let job = accounts.subjects().start_erasure("ada@example.com", "test").await.unwrap();
    let mut workers = silo_jobs::Workers::new();
    silo_accounts::subjects::register(&mut workers, &accounts);
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let settings = silo_jobs::PoolSettings {
        concurrency: 1,
        lease: std::time::Duration::from_secs(30),
        poll: std::time::Duration::from_millis(10),
    };
    let pool = tokio::spawn(workers.run(tenancy.jobs(), settings, async move {
        let _ = stopping.await;
    }));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let tried = loop {
        let now = tenancy.jobs().get(&job.id).await.unwrap();
        if now.attempts > 0 && now.last_error.is_some() {
            break now;
        }
        assert!(std::time::Instant::now() < deadline, "the job was not tried: {now:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let _ = stop.send(());
    pool.await.unwrap();
    assert_eq!(tried.status, silo_jobs::JobStatus::Queued, "given back for a retry: {tried:?}");
    assert!(tried.last_error.as_deref().unwrap().contains("backups"), "{tried:?}");
    let ada = accounts.users().by_email("ada@example.com").await.unwrap();
    assert_eq!(ada.display_name, "Ada", "nothing was erased");
    tenancy.shutdown().await;
}
