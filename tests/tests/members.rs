//! Membership changes end to end: a change happens in the control plane and the tenant file
//! together or in neither (a refused "Leave", a tenant-file write that fails, a control-plane
//! commit that fails), and someone who leaves keeps their name on what they wrote.

use serde_json::json;
use silo_accounts::Role;
use silo_core::db;
use silo_e2e::{ApiClient, TestServer, Visitor};
use silo_tenancy::Tenant;

/// Ada's workspace `acme` with a project, a task assigned to her and a comment by her; returns
/// her visitor, the tenant and the task's page.
async fn ada_with_work(server: &TestServer) -> (Visitor, Tenant, String) {
    let ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    let created =
        ada.submit("/w/acme/", "/w/acme/projects", &[("name", "Launch"), ("description", "")]).await.unwrap();
    let project = created.location.unwrap();
    let tenant = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    let me = member_row(server, &tenant, "ada@example.com").await.unwrap();
    let made = ada
        .submit(
            &project,
            &format!("{project}/tasks"),
            &[("title", "Ship it"), ("body", ""), ("assignee_id", &me.id.to_string()), ("due_date", "")],
        )
        .await
        .unwrap();
    assert_eq!(made.status, 303);
    let board = ada.get(&project).await.unwrap();
    let id = board.body.split("href=\"/w/acme/tasks/").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let task = format!("/w/acme/tasks/{id}");
    let commented =
        ada.submit(&task, &format!("{task}/comments"), &[("body", "Ada was here")]).await.unwrap();
    assert_eq!(commented.status, 303);
    (ada, tenant, task)
}

async fn member_row(
    server: &TestServer,
    tenant: &Tenant,
    email: &str,
) -> Option<silo_workspace::members::Member> {
    let user = server.accounts.users().by_email(email).await.unwrap();
    let db = server.tenancy.db(tenant.id).await.unwrap();
    silo_workspace::members::by_user(&db.turn().await, &user.id).unwrap()
}

/// Who the task's creator, assignee, comment author and activity actor are in the file.
async fn attribution(
    server: &TestServer,
    tenant: &Tenant,
) -> (Option<i64>, Option<i64>, Option<i64>, Option<i64>) {
    // Through the file's owner: one connection owns a tenant file.
    let db = server.tenancy.db(tenant.id).await.unwrap();
    db.turn().await.call(|conn| {
        conn.query_row(
            "SELECT (SELECT created_by FROM tasks), (SELECT assignee_id FROM tasks), (SELECT author_id FROM comments),
                    (SELECT actor_id FROM activity ORDER BY id LIMIT 1)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
    })
    .unwrap()
}

#[tokio::test]
async fn a_refused_leave_keeps_every_attribution() {
    let server = TestServer::start().await.unwrap();
    let (ada, tenant, task) = ada_with_work(&server).await;
    let before = attribution(&server, &tenant).await;
    let me = member_row(&server, &tenant, "ada@example.com").await.unwrap();
    assert_eq!(before, (Some(me.id), Some(me.id), Some(me.id), Some(me.id)));

    // The only owner leaves: refused, and nothing changed anywhere.
    let user = server.accounts.users().by_email("ada@example.com").await.unwrap();
    let left =
        ada.submit("/w/acme/members", &format!("/w/acme/members/{}/remove", user.id), &[]).await.unwrap();
    assert_eq!(left.status, 303);
    let page = ada.get("/w/acme/members").await.unwrap();
    assert!(page.body.contains("a workspace needs at least one owner"), "{}", page.body);
    assert_eq!(attribution(&server, &tenant).await, before, "the refusal touched no row");
    assert_eq!(
        member_row(&server, &tenant, "ada@example.com").await,
        Some(me),
        "the member row is as it was"
    );
    let page = ada.get(&task).await.unwrap();
    assert!(page.body.contains("ada") && !page.body.contains("former member"), "{}", page.body);
    assert!(!page.body.contains("(left)"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_member_who_leaves_keeps_their_name_on_their_work_and_can_come_back() {
    let server = TestServer::start().await.unwrap();
    let (ada, tenant, _) = ada_with_work(&server).await;
    server
        .accounts
        .users()
        .create("dave@example.com", silo_e2e::PASSWORD, Some("Dave"), "test")
        .await
        .unwrap();
    let token = server.member_token("dave@example.com", "acme", Role::Member).await.unwrap();
    let dave = ApiClient::new(server.addr, Some(&token));
    let (_, projects) = dave.call("GET", "/w/acme/projects", None).await.unwrap();
    let project = projects["items"][0]["id"].clone();
    let dave_row = member_row(&server, &tenant, "dave@example.com").await.unwrap();
    let new = json!({ "project_id": project, "title": "Dave's task", "assignee_id": dave_row.id });
    let (status, made) = dave.call("POST", "/w/acme/tasks", Some(new)).await.unwrap();
    assert_eq!(status, 201, "{made}");
    let task = format!("/w/acme/tasks/{}", made["id"]);

    // Dave leaves (through the pages, as he would).
    let visitor = server.sign_in("dave@example.com").await.unwrap();
    let user = server.accounts.users().by_email("dave@example.com").await.unwrap();
    let left =
        visitor.submit("/w/acme/members", &format!("/w/acme/members/{}/remove", user.id), &[]).await.unwrap();
    assert_eq!(left.status, 303);
    assert_eq!(visitor.get("/w/acme/").await.unwrap().status, 404, "no longer a member");
    let gone = member_row(&server, &tenant, "dave@example.com").await.unwrap();
    assert_eq!(gone.id, dave_row.id, "the row is kept");
    assert!(gone.left_at.is_some(), "and marked as gone");
    let page = ada.get(&task).await.unwrap();
    assert!(page.body.contains("Dave (left)"), "{}", page.body);
    let members = ada.get("/w/acme/members").await.unwrap();
    assert!(
        members.body.contains("Former members") && members.body.contains("Dave (left)"),
        "{}",
        members.body
    );

    // Work is not handed to someone who left.
    let ada_token = server
        .accounts
        .tokens()
        .issue("ada@example.com", silo_accounts::TokenScope::Personal("acme".parse().unwrap()), "test")
        .await
        .unwrap();
    let api = ApiClient::new(server.addr, Some(&ada_token));
    let (status, body) = api
        .call(
            "POST",
            "/w/acme/tasks",
            Some(json!({ "project_id": project, "title": "x", "assignee_id": dave_row.id })),
        )
        .await
        .unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("has left"), "{body}");

    // Coming back clears the mark; the old work is theirs again.
    server
        .accounts
        .memberships()
        .add(&"acme".parse().unwrap(), "dave@example.com", Role::Member, "test")
        .await
        .unwrap();
    let back = member_row(&server, &tenant, "dave@example.com").await.unwrap();
    assert_eq!((back.id, back.left_at), (dave_row.id, None));
    let page = ada.get(&task).await.unwrap();
    assert!(page.body.contains("Dave") && !page.body.contains("(left)"), "{}", page.body);
    server.stop().await.unwrap();
}

/// Dave, an admin of acme; his member row as it is.
async fn admin_dave(server: &TestServer, tenant: &Tenant) -> silo_workspace::members::Member {
    let users = server.accounts.users();
    users.create("dave@example.com", silo_e2e::PASSWORD, Some("Dave"), "test").await.unwrap();
    server.member_token("dave@example.com", "acme", Role::Admin).await.unwrap();
    member_row(server, tenant, "dave@example.com").await.unwrap()
}

/// Removing Dave and demoting him both fail, and leave his membership and member row as they
/// were (`before`).
async fn changes_to_dave_fail_and_change_nothing(
    server: &TestServer,
    tenant: &Tenant,
    before: &silo_workspace::members::Member,
) {
    let dave = server.accounts.users().by_email("dave@example.com").await.unwrap();
    let memberships = server.accounts.memberships();
    let removed = memberships.remove(tenant, &dave.id, silo_accounts::By::Operator("ops")).await;
    assert!(removed.is_err(), "{removed:?}");
    assert_eq!(
        member_row(server, tenant, "dave@example.com").await.as_ref(),
        Some(before),
        "put back exactly"
    );
    let demoted = memberships.add(&"acme".parse().unwrap(), "dave@example.com", Role::Member, "ops").await;
    assert!(demoted.is_err(), "{demoted:?}");
    assert_eq!(member_row(server, tenant, "dave@example.com").await.as_ref(), Some(before));
    assert_eq!(
        memberships.role(tenant.id, &dave.id).await.unwrap(),
        Some(Role::Admin),
        "the control plane kept it"
    );
}

#[tokio::test]
async fn a_tenant_file_that_refuses_the_change_leaves_the_control_plane_as_it_was() {
    let server = TestServer::start().await.unwrap();
    let (_ada, tenant, _) = ada_with_work(&server).await;
    let before = admin_dave(&server, &tenant).await;
    // The file refuses any change to a member row (as a full or failing disk would).
    let db = server.tenancy.db(tenant.id).await.unwrap();
    db.turn().await.call(|conn| {
        conn.execute_batch(
            "CREATE TRIGGER refuse BEFORE UPDATE ON members BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
    })
    .unwrap();
    changes_to_dave_fail_and_change_nothing(&server, &tenant, &before).await;
    db.turn().await.call(|conn| conn.execute_batch("DROP TRIGGER refuse")).unwrap();
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_control_plane_commit_that_fails_puts_the_member_row_back_exactly() {
    let server = TestServer::start().await.unwrap();
    let (_ada, tenant, _) = ada_with_work(&server).await;
    let before = admin_dave(&server, &tenant).await;
    // A deferred foreign key fails only at COMMIT: the control plane's half fails after the
    // tenant file's half was written.
    let control = server.tenancy.control().writer();
    let (trap, untrap) = match control.engine() {
        db::Engine::Sqlite => (
            vec![
                "CREATE TABLE trap (x TEXT REFERENCES nowhere_at_all (id) DEFERRABLE INITIALLY DEFERRED)",
                "CREATE TABLE nowhere_at_all (id TEXT PRIMARY KEY)",
                "CREATE TRIGGER trap_member_changes AFTER INSERT ON audit_log WHEN new.action LIKE 'member.%'
                 BEGIN INSERT INTO trap VALUES ('dangling'); END",
            ],
            "DROP TRIGGER trap_member_changes",
        ),
        db::Engine::Postgres => (
            vec![
                "CREATE TABLE nowhere_at_all (id TEXT PRIMARY KEY)",
                "CREATE TABLE trap (x TEXT REFERENCES nowhere_at_all (id) DEFERRABLE INITIALLY DEFERRED)",
                "CREATE FUNCTION trap_member_change() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN INSERT INTO trap VALUES ('dangling'); RETURN NULL; END $$",
                "CREATE TRIGGER trap_member_changes AFTER INSERT ON audit_log
                 FOR EACH ROW WHEN (NEW.action LIKE 'member.%') EXECUTE FUNCTION trap_member_change()",
            ],
            "DROP TRIGGER trap_member_changes ON audit_log",
        ),
    };
    for statement in trap {
        db::query(statement).execute(control).await.unwrap();
    }
    changes_to_dave_fail_and_change_nothing(&server, &tenant, &before).await;
    let memberships = server.accounts.memberships();
    // A new member whose commit fails leaves no row behind.
    server.accounts.users().create("erin@example.com", silo_e2e::PASSWORD, None, "test").await.unwrap();
    let joined = memberships.add(&"acme".parse().unwrap(), "erin@example.com", Role::Member, "ops").await;
    assert!(joined.is_err());
    assert_eq!(member_row(&server, &tenant, "erin@example.com").await, None);
    db::query(untrap).execute(control).await.unwrap();
    server.stop().await.unwrap();
}

/// Nobody is shown a control they may not use, and removing or leaving asks first: an admin
/// sees no role control or "Remove" on an owner's row and cannot pick "owner" for anyone; the
/// owner sees both; "Leave" and "Remove" open a confirmation that names what happens.
#[tokio::test]
async fn members_see_only_the_controls_they_may_use_and_are_asked_first() {
    let server = TestServer::start().await.unwrap();
    let _ada = server.sign_up("ada@example.com", "acme").await.unwrap();
    for (email, role) in [("cy@example.com", Role::Admin), ("bob@example.com", Role::Member)] {
        server
            .accounts
            .users()
            .create(email, silo_e2e::PASSWORD, Some(email.split('@').next().unwrap()), "test")
            .await
            .unwrap();
        server.accounts.memberships().add(&"acme".parse().unwrap(), email, role, "test").await.unwrap();
    }
    let cy = server.sign_in("cy@example.com").await.unwrap();
    let page = cy.get("/w/acme/members").await.unwrap().body;
    assert!(!page.contains("aria-label=\"Role of ada\""), "no role control on the owner's row: {page}");
    assert!(!page.contains("Remove ada"), "an admin cannot remove the owner");
    assert!(page.contains("aria-label=\"Role of bob\""), "an admin manages a member");
    let bob_row = page.split("aria-label=\"Role of bob\"").nth(1).unwrap().split("</select>").next().unwrap();
    assert!(!bob_row.contains("value=\"owner\""), "an admin gives no owner role: {bob_row}");
    assert!(page.contains("<details class=\"confirm\"><summary>Remove</summary>"), "asked first");
    assert!(page.contains("bob will lose access to"), "the confirmation says what happens");
    assert!(page.contains("<summary>Leave</summary>") && page.contains("You will lose access to"));
    let ada = server.sign_in("ada@example.com").await.unwrap();
    let page = ada.get("/w/acme/members").await.unwrap().body;
    assert!(
        page.contains("aria-label=\"Role of cy\"") && page.contains("Remove cy"),
        "the owner manages admins"
    );
    let cy_row = page.split("aria-label=\"Role of cy\"").nth(1).unwrap().split("</select>").next().unwrap();
    assert!(!cy_row.contains("value=\"owner\""), "making an owner is not a quiet choice in a list");
    assert!(
        page.contains("<summary>Make owner</summary>") && page.contains("Make cy an owner"),
        "an owner may make an owner, asked first: {page}"
    );
    // The only owner is not offered Leave (it would be refused), and is told why.
    assert!(!page.contains("<summary>Leave</summary>"), "{page}");
    assert!(page.contains("You are its only owner: make someone else an owner to leave."));
    server.stop().await.unwrap();
}
