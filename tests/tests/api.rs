//! The JSON API end to end: operator and personal tokens against a real server, every error
//! shape, and the OpenAPI document checked against the live routes.

use serde_json::json;
use silo_accounts::{By, Role, TokenScope};
use silo_core::TenantRef;
use silo_e2e::{ApiClient, TestServer};

fn code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error document: {body}"))
}

#[tokio::test]
async fn operators_manage_tenants() {
    let server = TestServer::start().await.unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));

    let (status, body) = ops
        .call("POST", "/tenants", Some(json!({ "slug": "acme", "name": "Acme", "plan": "team" })))
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        (body["slug"].as_str(), body["status"].as_str(), body["plan"].as_str()),
        (Some("acme"), Some("active"), Some("team"))
    );
    let id = body["id"].as_str().unwrap().to_owned();

    let (status, body) = ops.call("POST", "/tenants", Some(json!({ "slug": "acme" }))).await.unwrap();
    assert_eq!((status, code(&body)), (409, "conflict"));
    let (status, body) = ops.call("POST", "/tenants", Some(json!({ "slug": "../etc" }))).await.unwrap();
    assert_eq!((status, code(&body)), (422, "invalid"));
    assert!(body["error"]["message"].as_str().unwrap().contains("slug"), "{body}");
    let (status, body) =
        ops.call("POST", "/tenants", Some(json!({ "slug": "ok-slug", "region": "mars" }))).await.unwrap();
    assert_eq!((status, code(&body)), (422, "invalid"));
    let (status, body) = ops.call("POST", "/tenants", Some(json!({ "name": "no slug" }))).await.unwrap();
    assert_eq!((status, code(&body), body["error"]["field"].as_str()), (422, "invalid", Some("slug")));
    let (status, body) = ops
        .call("POST", "/tenants", Some(json!({ "slug": "owned", "owner_email": "nobody@example.com" })))
        .await
        .unwrap();
    assert_eq!((status, code(&body)), (422, "invalid"));

    for i in 0..25 {
        ops.call("POST", "/tenants", Some(json!({ "slug": format!("t-{i:02}") }))).await.unwrap();
    }
    let (status, page) = ops.call("GET", "/tenants?limit=10&q=t-", None).await.unwrap();
    assert_eq!(
        (status, page["total"].as_i64(), page["items"].as_array().unwrap().len()),
        (200, Some(25), 10)
    );
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, second) =
        ops.call("GET", &format!("/tenants?limit=10&q=t-&cursor={cursor}"), None).await.unwrap();
    assert_eq!(second["items"][0]["slug"], "t-10");
    let (_, last) = ops.call("GET", "/tenants?limit=10&q=t-&cursor=20", None).await.unwrap();
    assert_eq!((last["items"].as_array().unwrap().len(), last["next_cursor"].is_null()), (5, true));
    let (status, body) = ops.call("GET", "/tenants?cursor=abc", None).await.unwrap();
    assert_eq!((status, code(&body), body["error"]["field"].as_str()), (422, "invalid", Some("cursor")));
    let (status, body) = ops.call("GET", "/tenants?status=sleeping", None).await.unwrap();
    assert_eq!((status, code(&body), body["error"]["field"].as_str()), (422, "invalid", Some("status")));

    let (status, body) = ops
        .call("PATCH", &format!("/tenants/{id}"), Some(json!({ "name": "Acme Inc", "status": "suspended" })))
        .await
        .unwrap();
    assert_eq!(
        (status, body["name"].as_str(), body["status"].as_str()),
        (200, Some("Acme Inc"), Some("suspended"))
    );
    let (status, body) =
        ops.call("PATCH", "/tenants/acme", Some(json!({ "status": "deleted" }))).await.unwrap();
    assert_eq!((status, code(&body)), (422, "invalid"));
    let (status, body) = ops.call("GET", "/tenants/acme", None).await.unwrap();
    assert_eq!((status, body["id"].as_str()), (200, Some(id.as_str())));
    let (status, body) = ops.call("DELETE", "/tenants/acme", None).await.unwrap();
    assert_eq!((status, body["status"].as_str()), (200, Some("deleting")));
    let (status, body) = ops.call("DELETE", "/tenants/acme?purge=true", None).await.unwrap();
    assert_eq!((status, body["status"].as_str()), (200, Some("deleted")));
    let (status, body) =
        ops.call("PATCH", &format!("/tenants/{id}"), Some(json!({ "name": "back" }))).await.unwrap();
    assert_eq!((status, code(&body)), (410, "gone"));
    let (status, body) = ops.call("GET", "/tenants/no-such-tenant", None).await.unwrap();
    assert_eq!((status, code(&body)), (404, "not_found"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn tokens_are_required_and_scoped() {
    let server = TestServer::start().await.unwrap();
    let anonymous = ApiClient::new(server.addr, None);
    let (status, body) = anonymous.call("GET", "/tenants", None).await.unwrap();
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    let forged = ApiClient::new(server.addr, Some("silo_0000"));
    assert_eq!(forged.call("GET", "/tenants", None).await.unwrap().0, 401);

    server.sign_up("ada@example.com", "acme").await.unwrap();
    let personal = server
        .accounts
        .tokens()
        .issue("ada@example.com", TokenScope::Personal("acme".parse().unwrap()), "test")
        .await
        .unwrap();
    let ada = ApiClient::new(server.addr, Some(&personal));
    let (status, body) = ada.call("GET", "/tenants", None).await.unwrap();
    assert_eq!((status, code(&body)), (403, "forbidden"), "personal tokens are not operator tokens");

    // Removing the member revokes what the token can do.
    server.sign_up("bob@example.com", "bobs").await.unwrap();
    let bob_token = server.member_token("bob@example.com", "acme", Role::Member).await.unwrap();
    let bob = ApiClient::new(server.addr, Some(&bob_token));
    assert_eq!(bob.call("GET", "/w/acme/projects", None).await.unwrap().0, 200);
    let acme = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    let bob_id = server.accounts.users().by_email("bob@example.com").await.unwrap().id;
    server.accounts.memberships().remove(&acme, &bob_id, By::Operator("test")).await.unwrap();
    assert_eq!(bob.call("GET", "/w/acme/projects", None).await.unwrap().0, 401);

    // Invalid tokens from one client are throttled (429) after a while.
    let mut last = 0;
    for _ in 0..60 {
        last = forged.call("GET", "/w/acme/projects", None).await.unwrap().0;
    }
    assert_eq!(last, 429);
    // A valid token from the same address is still served: the throttle shuts out no one else.
    assert_eq!(ada.call("GET", "/w/acme/projects", None).await.unwrap().0, 200);
    // A request without a token guesses nothing: 401 however many, from the same client too.
    for _ in 0..5 {
        let (status, body) = anonymous.call("GET", "/w/acme/projects", None).await.unwrap();
        assert_eq!((status, code(&body)), (401, "unauthorized"));
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn members_work_through_the_workspace_api() {
    let server = TestServer::start().await.unwrap();
    server.sign_up("ada@example.com", "acme").await.unwrap();
    server.sign_up("eve@example.com", "evil").await.unwrap();
    let token = server.personal_token("ada@example.com", "acme").await.unwrap();
    let eve_token = server
        .accounts
        .tokens()
        .issue("eve@example.com", TokenScope::Personal("evil".parse().unwrap()), "test")
        .await
        .unwrap();
    let ada = ApiClient::new(server.addr, Some(&token));
    let eve = ApiClient::new(server.addr, Some(&eve_token));

    let (status, project) =
        ada.call("POST", "/w/acme/projects", Some(json!({ "name": "API" }))).await.unwrap();
    assert_eq!(status, 201, "{project}");
    let project_id = project["id"].as_i64().unwrap();
    for i in 0..30 {
        let status = if i % 3 == 0 { "done" } else { "todo" };
        let (code, _) = ada
            .call(
                "POST",
                "/w/acme/tasks",
                Some(json!({ "project_id": project_id, "title": format!("task {i}"), "status": status })),
            )
            .await
            .unwrap();
        assert_eq!(code, 201);
    }
    let (status, page) =
        ada.call("GET", &format!("/w/acme/tasks?project={project_id}&limit=20"), None).await.unwrap();
    assert_eq!((status, page["items"].as_array().unwrap().len()), (200, 20));
    assert_eq!(page["items"][0]["title"], "task 29", "newest first");
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = ada
        .call("GET", &format!("/w/acme/tasks?project={project_id}&limit=20&cursor={cursor}"), None)
        .await
        .unwrap();
    assert_eq!((rest["items"].as_array().unwrap().len(), rest["next_cursor"].is_null()), (10, true));
    let (_, done) = ada.call("GET", "/w/acme/tasks?status=done&limit=100", None).await.unwrap();
    assert_eq!(done["items"].as_array().unwrap().len(), 10);

    let task_id = page["items"][0]["id"].as_i64().unwrap();
    let (status, task) = ada
        .call(
            "PATCH",
            &format!("/w/acme/tasks/{task_id}"),
            Some(json!({ "status": "doing", "due_date": "2026-12-24", "body": "with a migration plan" })),
        )
        .await
        .unwrap();
    assert_eq!(
        (status, task["status"].as_str(), task["due_date"].as_str()),
        (200, Some("doing"), Some("2026-12-24"))
    );
    let (_, task) = ada
        .call("PATCH", &format!("/w/acme/tasks/{task_id}"), Some(json!({ "due_date": null })))
        .await
        .unwrap();
    assert!(task["due_date"].is_null() && task["status"] == "doing", "null clears, absent keeps");
    let (status, body) = ada
        .call("PATCH", &format!("/w/acme/tasks/{task_id}"), Some(json!({ "status": "finished" })))
        .await
        .unwrap();
    assert_eq!((status, code(&body)), (422, "invalid"));
    let (status, body) = ada
        .call("POST", "/w/acme/tasks", Some(json!({ "project_id": 999, "title": "orphan" })))
        .await
        .unwrap();
    assert_eq!((status, code(&body)), (422, "invalid"), "{body}");
    let (status, body) = ada
        .call("POST", "/w/acme/tasks", Some(json!({ "project_id": project_id, "title": "" })))
        .await
        .unwrap();
    assert_eq!((status, code(&body)), (422, "invalid"));

    let (status, hits) = ada.call("GET", "/w/acme/search?q=migration", None).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(hits["items"][0]["task_id"].as_i64(), Some(task_id));
    assert!(hits["items"][0]["snippet"].as_str().unwrap().contains("[migration]"));

    // Eve's token reaches nothing of Acme, whatever the path.
    for (method, path, body) in [
        ("GET", "/w/acme/projects".to_owned(), None),
        ("GET", "/w/acme/tasks".to_owned(), None),
        ("GET", format!("/w/acme/tasks/{task_id}"), None),
        ("PATCH", format!("/w/acme/tasks/{task_id}"), Some(json!({ "status": "done" }))),
        ("DELETE", format!("/w/acme/tasks/{task_id}"), None),
        ("GET", "/w/acme/search?q=migration".to_owned(), None),
        ("POST", "/w/acme/projects".to_owned(), Some(json!({ "name": "x" }))),
    ] {
        let (status, body) = eve.call(method, &path, body).await.unwrap();
        assert_eq!((status, code(&body)), (404, "not_found"), "{method} {path}");
    }
    // Ada's token on Eve's workspace: also 404, even though the ids exist in both.
    assert_eq!(ada.call("GET", "/w/evil/tasks", None).await.unwrap().0, 404);
    let (_, eve_view) = eve.call("GET", &format!("/w/evil/tasks/{task_id}"), None).await.unwrap();
    assert_eq!(code(&eve_view), "not_found");

    let (status, _) = ada.call("DELETE", &format!("/w/acme/tasks/{task_id}"), None).await.unwrap();
    assert_eq!(status, 204);
    assert_eq!(ada.call("GET", &format!("/w/acme/tasks/{task_id}"), None).await.unwrap().0, 404);

    server.tenancy.tenants().suspend(&TenantRef::Slug("acme".parse().unwrap()), "test").await.unwrap();
    let (status, body) = ada.call("GET", "/w/acme/tasks", None).await.unwrap();
    assert_eq!((status, code(&body)), (423, "suspended"));
    server.tenancy.tenants().delete(&TenantRef::Slug("acme".parse().unwrap()), "test").await.unwrap();
    let (status, body) = ada.call("GET", "/w/acme/tasks", None).await.unwrap();
    assert_eq!((status, code(&body)), (410, "gone"));
    server.stop().await.unwrap();
}

/// The document lists exactly the issues' routes, and each documented route answers at its
/// path and method (401 without a token — 422 for the signed export link without its parameters —, never 404/405).
#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let server = TestServer::start().await.unwrap();
    let anonymous = ApiClient::new(server.addr, None);
    let (status, doc) = anonymous.call("GET", "/openapi.json", None).await.unwrap();
    assert_eq!(status, 200);
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            // A parameter said to be in the path is one of the path's; the rest are queries.
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().unwrap();
                let in_path = path.contains(&format!("{{{name}}}"));
                assert_eq!(
                    parameter["in"],
                    if in_path { "path" } else { "query" },
                    "{method} {path}: {name}"
                );
            }
            // Every body is closed to fields it does not name (the API refuses them), and every
            // operation documents the refusals any operation may answer.
            if let Some(body) =
                operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str()
            {
                let name = body.rsplit('/').next().unwrap();
                assert_eq!(doc["components"]["schemas"][name]["additionalProperties"], false, "{name}");
                for code in ["400", "413", "415"] {
                    assert!(operation["responses"].get(code).is_some(), "{method} {path}: {code}");
                }
            }
            for code in ["422", "429", "503"] {
                assert!(operation["responses"].get(code).is_some(), "{method} {path}: {code}");
            }
        }
    }
    // What the code cannot state, the served document does: this installation's plans, the
    // reserved slugs, and "a moment or a backup, not both".
    let schemas = &doc["components"]["schemas"];
    assert!(
        schemas["NewTenantRequest"]["properties"]["plan"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("free"))
    );
    assert!(
        schemas["NewTenantRequest"]["properties"]["slug"]["not"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("admin"))
    );
    assert!(
        schemas["RestoreRequest"]["properties"]["as_slug"]["not"]["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("api"))
    );
    assert_eq!(schemas["RestoreRequest"]["not"]["required"], json!(["at", "backup"]));
    documented.sort();
    let mut expected: Vec<String> = [
        "GET /api/v1/tenants",
        "POST /api/v1/tenants",
        "GET /api/v1/tenants/{id}",
        "PATCH /api/v1/tenants/{id}",
        "DELETE /api/v1/tenants/{id}",
        "POST /api/v1/tenants/{id}/export",
        "GET /api/v1/tenants/{id}/restorable",
        "POST /api/v1/tenants/{id}/restore",
        "POST /api/v1/tenants/{id}/move",
        "POST /api/v1/subjects/export",
        "POST /api/v1/subjects/erase",
        "GET /api/v1/jobs",
        "GET /api/v1/jobs/{id}",
        "GET /api/v1/privacy/manifest",
        "GET /api/v1/exports/{id}",
        "GET /api/v1/w/{slug}/projects",
        "POST /api/v1/w/{slug}/projects",
        "GET /api/v1/w/{slug}/tasks",
        "POST /api/v1/w/{slug}/tasks",
        "GET /api/v1/w/{slug}/tasks/{id}",
        "PATCH /api/v1/w/{slug}/tasks/{id}",
        "DELETE /api/v1/w/{slug}/tasks/{id}",
        "GET /api/v1/w/{slug}/search",
        "GET /api/v1/w/{slug}/tasks/{id}/comments",
        "POST /api/v1/w/{slug}/tasks/{id}/comments",
        "GET /api/v1/w/{slug}/members",
        "PATCH /api/v1/w/{slug}/members/{user_id}",
        "DELETE /api/v1/w/{slug}/members/{user_id}",
    ]
    .map(String::from)
    .to_vec();
    expected.sort();
    assert_eq!(documented, expected);
    for route in &documented {
        let (method, path) = route.split_once(' ').unwrap();
        let concrete = path
            .trim_start_matches("/api/v1")
            .replace("{id}", "1")
            .replace("{slug}", "acme")
            .replace("{user_id}", "someone");
        let (status, body) = anonymous.call(method, &concrete, Some(json!({}))).await.unwrap();
        if route == "GET /api/v1/exports/{id}" {
            // The one route whose credential is the signed link itself: without it, refused
            // naming what is missing.
            assert_eq!(
                (status, code(&body), body["error"]["field"].as_str()),
                (422, "invalid", Some("expires")),
                "{route}"
            );
            continue;
        }
        assert_eq!((status, code(&body)), (401, "unauthorized"), "{route}");
    }
    assert!(
        doc["components"]["schemas"]["Task"].is_object()
            && doc["components"]["securitySchemes"]["bearer"].is_object()
    );
    let (status, body) = anonymous.call("GET", "/no-such-route", None).await.unwrap();
    assert_eq!((status, code(&body)), (404, "not_found"));
    server.stop().await.unwrap();
}

/// Reads of the workspace API carry an `ETag` built from the tenant's data version and the
/// caller; `If-None-Match` with it is answered 304 without opening the tenant's file, until a
/// write (or a file operation) changes the version. Another member's validator never matches.
#[tokio::test]
async fn reads_are_validated_and_a_current_copy_costs_no_open() {
    let server = TestServer::start().await.unwrap();
    server.sign_up("ada@example.com", "acme").await.unwrap();
    let token = server.personal_token("ada@example.com", "acme").await.unwrap();
    server.accounts.users().create("bob@example.com", silo_e2e::PASSWORD, None, "test").await.unwrap();
    let bob = server.member_token("bob@example.com", "acme", silo_accounts::Role::Member).await.unwrap();
    let client = reqwest::Client::new();
    let get = |token: &str, etag: Option<&str>| {
        let mut request = client.get(server.url("/api/v1/w/acme/tasks?limit=20")).bearer_auth(token);
        if let Some(etag) = etag {
            request = request.header("If-None-Match", etag);
        }
        request.send()
    };
    let first = get(&token, None).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["cache-control"], "private, no-cache");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();

    // Unchanged: 304, no body, and the tenant's file is not opened for it.
    let tenant = server.tenancy.tenant(&"acme".parse().unwrap()).await.unwrap();
    drop(server.tenancy.cache().lease(tenant.id).await.unwrap()); // closes the file (and moves the version)
    let after_lease = get(&token, None).await.unwrap().headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(after_lease, etag, "a lease may have changed the file: a new validator");
    drop(server.tenancy.cache().lease(tenant.id).await.unwrap());
    let current = get(&token, None).await.unwrap().headers()["etag"].to_str().unwrap().to_owned();
    server.tenancy.cache().clear().await;
    assert!(server.tenancy.cache().wait_all_closed(std::time::Duration::from_secs(10)).await);
    let opens = server.tenancy.cache().stats().opens;
    let again = get(&token, Some(&current)).await.unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), current);
    assert!(again.text().await.unwrap().is_empty());
    assert_eq!(server.tenancy.cache().stats().opens, opens, "a 304 opens nothing");
    assert_eq!(get(&token, Some(&format!("W/{current}, \"other\""))).await.unwrap().status(), 304);

    // Another member, same data: another validator.
    let bobs = get(&bob, Some(&current)).await.unwrap();
    assert_eq!(bobs.status(), 200, "a validator is the caller's own");

    // A write changes it.
    let project = client
        .post(server.url("/api/v1/w/acme/projects"))
        .bearer_auth(&token)
        .json(&json!({ "name": "new" }))
        .send()
        .await
        .unwrap();
    assert_eq!(project.status(), 201);
    let changed = get(&token, Some(&current)).await.unwrap();
    assert_eq!(changed.status(), 200, "a commit moved the version");
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), current);
    // Writes never answer 304, whatever they send.
    let write = client
        .post(server.url("/api/v1/w/acme/projects"))
        .bearer_auth(&token)
        .header("If-None-Match", "*")
        .json(&json!({ "name": "another" }))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 201);
    server.stop().await.unwrap();
}

/// The API answers in its own terms whatever is sent: JSON for unknown routes and methods
/// (405 with `Allow`), 413 and 415 for bodies it will not read, 422 naming the field for a
/// body or query that is not what the endpoint takes — and never the parser's internals.
#[tokio::test]
async fn the_api_names_what_is_wrong() {
    let server = TestServer::start().await.unwrap();
    server.sign_up("ada@example.com", "acme").await.unwrap();
    let token = server.personal_token("ada@example.com", "acme").await.unwrap();
    let ada = ApiClient::new(server.addr, Some(&token));
    let base = format!("http://{}/api/v1", server.addr);
    let raw = |method: &str, path: &str, content_type: Option<&str>, body: Vec<u8>| {
        let client = reqwest::Client::new();
        let mut request =
            client.request(method.parse().unwrap(), format!("{base}{path}")).bearer_auth(&token);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        async move {
            let response = request.body(body).send().await.unwrap();
            let allow = response.headers().get("allow").map(|v| v.to_str().unwrap().to_owned());
            let kind = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
            (status, allow, kind, json)
        }
    };

    // Unknown routes and wrong methods: JSON, never the HTML page.
    let (status, allow, kind, body) = raw("GET", "/nothing/here", None, Vec::new()).await;
    assert_eq!((status, allow, code(&body)), (404, None, "not_found"));
    assert_eq!(kind.as_deref(), Some("application/json"));
    let (status, allow, _, body) = raw("DELETE", "/w/acme/tasks", None, Vec::new()).await;
    assert_eq!((status, allow.as_deref(), code(&body)), (405, Some("GET, POST"), "method_not_allowed"));
    let (status, allow, _, _) = raw("PUT", "/w/acme/tasks/7", None, Vec::new()).await;
    assert_eq!((status, allow.as_deref()), (405, Some("DELETE, GET, PATCH")));

    // Bodies the API will not read.
    let (status, _, _, body) =
        raw("POST", "/w/acme/projects", Some("text/plain"), b"{\"name\":\"x\"}".to_vec()).await;
    assert_eq!((status, code(&body)), (415, "unsupported_media_type"));
    assert!(body["error"]["message"].as_str().unwrap().contains("application/json"), "{body}");
    let (status, _, _, body) = raw("POST", "/w/acme/projects", None, b"{\"name\":\"x\"}".to_vec()).await;
    assert_eq!((status, code(&body)), (415, "unsupported_media_type"), "no Content-Type");
    let huge = format!("{{\"name\":\"{}\"}}", "x".repeat(300 * 1024)).into_bytes();
    let (status, _, _, body) = raw("POST", "/w/acme/projects", Some("application/json"), huge).await;
    assert_eq!((status, code(&body)), (413, "too_large"));
    let (status, _, _, body) =
        raw("POST", "/w/acme/projects", Some("application/json"), b"{\"name\": ".to_vec()).await;
    assert_eq!((status, code(&body)), (400, "bad_request"));
    assert_eq!(body["error"]["message"], "The body is not valid JSON.");

    // Bodies and queries that are not what the endpoint takes: 422 naming the field.
    let (_, project) = ada.call("POST", "/w/acme/projects", Some(json!({ "name": "Launch" }))).await.unwrap();
    let project_id = project["id"].as_i64().unwrap();
    let refused = |body: serde_json::Value| (body["error"]["code"].clone(), body["error"]["field"].clone());
    for (request, field) in [
        (json!({ "project_id": project_id, "title": "x", "colour": "red" }), "colour"),
        (json!({ "title": "no project" }), "project_id"),
        (json!({ "project_id": "seven", "title": "x" }), "project_id"),
        (json!({ "project_id": project_id, "title": "" }), "title"),
        (json!({ "project_id": project_id, "title": "x", "due_date": "2026-02-30x" }), "due_date"),
        (json!({ "project_id": project_id, "title": "x", "status": "someday" }), "status"),
        (json!({ "project_id": 999_999, "title": "x" }), "project_id"),
        (json!({ "project_id": project_id, "title": "x", "assignee_id": 999_999 }), "assignee_id"),
    ] {
        let (status, body) = ada.call("POST", "/w/acme/tasks", Some(request.clone())).await.unwrap();
        assert_eq!(
            (status, refused(body.clone())),
            (422, (json!("invalid"), json!(field))),
            "{request} → {body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        for internal in ["line 1", "column", "deserialize", "i64", "invalid type", "FOREIGN KEY"] {
            assert!(!message.contains(internal), "{request} → {message}");
        }
    }
    let (status, body) = ada.call("POST", "/w/acme/tasks", Some(json!([project_id, "x"]))).await.unwrap();
    assert_eq!((status, code(&body)), (422, "invalid"), "an array is not an object: {body}");
    // Whatever a search is asked, it answers (a NUL once broke FTS5's parse: a 500).
    for q in ["a%00b", "%22open", "NEAR(x)%20OR%20*", "%C2%85"] {
        let (status, body) = ada.call("GET", &format!("/w/acme/search?q={q}"), None).await.unwrap();
        assert_eq!(status, 200, "{q}: {body}");
    }
    let (status, body) = ada.call("GET", "/w/acme/tasks?limit=lots", None).await.unwrap();
    assert_eq!((status, refused(body)), (422, (json!("invalid"), json!("limit"))));
    let (status, body) =
        ada.call("POST", "/w/acme/projects?dry_run=1", Some(json!({ "name": "x" }))).await.unwrap();
    assert_eq!((status, refused(body)), (422, (json!("invalid"), json!("dry_run"))));
}

/// Comments and members through the API, with the pages' rules: members comment and leave;
/// admins change roles and remove members; only owners make owners; the last owner stays; a
/// removed member's token stops working; another workspace's people are not found.
#[tokio::test]
async fn comments_and_members_follow_the_workspace_rules() {
    let server = TestServer::start().await.unwrap();
    server.sign_up("ada@example.com", "acme").await.unwrap();
    server.sign_up("eve@example.com", "evil").await.unwrap();
    for email in ["bob@example.com", "cy@example.com"] {
        server.accounts.users().create(email, silo_e2e::PASSWORD, None, "test").await.unwrap();
    }
    let acme: silo_core::TenantRef = "acme".parse().unwrap();
    let ada_token =
        server.accounts.tokens().issue("ada@example.com", TokenScope::Personal(acme), "test").await.unwrap();
    let ada = ApiClient::new(server.addr, Some(&ada_token));
    let bob = ApiClient::new(
        server.addr,
        Some(&server.member_token("bob@example.com", "acme", Role::Member).await.unwrap()),
    );
    let cy = ApiClient::new(
        server.addr,
        Some(&server.member_token("cy@example.com", "acme", Role::Admin).await.unwrap()),
    );
    let mut ids = Vec::new();
    for email in ["ada@example.com", "bob@example.com", "cy@example.com"] {
        ids.push(server.accounts.users().by_email(email).await.unwrap().id.to_string());
    }
    let (ada_id, bob_id, cy_id) = (ids[0].clone(), ids[1].clone(), ids[2].clone());

    // Comments: anyone who belongs; oldest first, paged; a missing task is 404.
    let (_, project) = ada.call("POST", "/w/acme/projects", Some(json!({ "name": "Launch" }))).await.unwrap();
    let (_, task) = ada
        .call("POST", "/w/acme/tasks", Some(json!({ "project_id": project["id"], "title": "Plan" })))
        .await
        .unwrap();
    let comments = format!("/w/acme/tasks/{}/comments", task["id"]);
    for (who, text) in [(&bob, "first"), (&ada, "second"), (&bob, "third")] {
        let (status, comment) = who.call("POST", &comments, Some(json!({ "body": text }))).await.unwrap();
        assert_eq!((status, comment["body"].as_str()), (201, Some(text)), "{comment}");
    }
    let (status, page) = bob.call("GET", &format!("{comments}?limit=2"), None).await.unwrap();
    assert_eq!(status, 200);
    let bodies: Vec<&str> =
        page["items"].as_array().unwrap().iter().map(|c| c["body"].as_str().unwrap()).collect();
    assert_eq!(bodies, ["first", "second"]);
    let (_, rest) = bob
        .call("GET", &format!("{comments}?cursor={}", page["next_cursor"].as_str().unwrap()), None)
        .await
        .unwrap();
    assert_eq!(rest["items"][0]["body"], "third");
    let (status, body) = bob.call("POST", &comments, Some(json!({ "body": "   " }))).await.unwrap();
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("body")), "{body}");
    assert_eq!(
        bob.call("POST", "/w/acme/tasks/999/comments", Some(json!({ "body": "x" }))).await.unwrap().0,
        404
    );
    assert_eq!(bob.call("GET", "/w/acme/tasks/999/comments", None).await.unwrap().0, 404);

    // Members: listed to every member.
    let (status, page) = bob.call("GET", "/w/acme/members", None).await.unwrap();
    let mut roles: Vec<(String, String)> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["email"].as_str().unwrap().to_owned(), m["role"].as_str().unwrap().to_owned()))
        .collect();
    roles.sort();
    assert_eq!(status, 200);
    assert_eq!(
        roles,
        [("ada@example.com", "owner"), ("bob@example.com", "member"), ("cy@example.com", "admin")]
            .map(|(e, r)| (e.to_owned(), r.to_owned()))
    );
    // A member changes no role; an admin does, but makes no owner; an owner does.
    let role = |id: &str| format!("/w/acme/members/{id}");
    assert_eq!(bob.call("PATCH", &role(&cy_id), Some(json!({ "role": "member" }))).await.unwrap().0, 403);
    let (status, changed) = cy.call("PATCH", &role(&bob_id), Some(json!({ "role": "admin" }))).await.unwrap();
    assert_eq!((status, changed["role"].as_str()), (200, Some("admin")), "{changed}");
    assert_eq!(cy.call("PATCH", &role(&bob_id), Some(json!({ "role": "owner" }))).await.unwrap().0, 403);
    let (status, body) = cy.call("PATCH", &role(&bob_id), Some(json!({ "role": "king" }))).await.unwrap();
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("role")), "{body}");
    assert_eq!(cy.call("PATCH", &role("nobody"), Some(json!({ "role": "member" }))).await.unwrap().0, 404);
    // The last owner stays: demoting or removing her is refused, by herself too.
    for (method, body) in [("PATCH", Some(json!({ "role": "admin" }))), ("DELETE", None)] {
        let (status, refused) = ada.call(method, &role(&ada_id), body).await.unwrap();
        assert_eq!(status, 409, "{method}: {refused}");
        assert!(refused["error"]["message"].as_str().unwrap().contains("at least one owner"), "{refused}");
    }
    // An admin removes a member; the member's token stops working; anyone may leave.
    assert_eq!(bob.call("DELETE", &role(&cy_id), None).await.unwrap().0, 204, "bob is an admin now");
    assert_eq!(cy.call("GET", "/w/acme/members", None).await.unwrap().0, 401, "a removed member's token");
    assert_eq!(bob.call("DELETE", &role(&bob_id), None).await.unwrap().0, 204, "bob leaves");
    // Another workspace's people are not found.
    let eve = ApiClient::new(
        server.addr,
        Some(
            &server
                .accounts
                .tokens()
                .issue("eve@example.com", TokenScope::Personal("evil".parse().unwrap()), "test")
                .await
                .unwrap(),
        ),
    );
    assert_eq!(eve.call("GET", "/w/acme/members", None).await.unwrap().0, 404);
    assert_eq!(eve.call("GET", &comments, None).await.unwrap().0, 404);
    server.stop().await.unwrap();
}

/// A task id is reused after the newest task is deleted: the activity feed names what a comment
/// was about then, and links only to the same task.
#[tokio::test]
async fn activity_names_what_was_commented_on_even_after_its_id_is_reused() {
    let server = TestServer::start().await.unwrap();
    let web = server.sign_up("ada@example.com", "acme").await.unwrap();
    let acme: silo_core::TenantRef = "acme".parse().unwrap();
    let token =
        server.accounts.tokens().issue("ada@example.com", TokenScope::Personal(acme), "test").await.unwrap();
    let ada = ApiClient::new(server.addr, Some(&token));
    let (_, project) = ada.call("POST", "/w/acme/projects", Some(json!({ "name": "Launch" }))).await.unwrap();
    let task = |title: &str| json!({ "project_id": project["id"], "title": title });
    let (_, old) = ada.call("POST", "/w/acme/tasks", Some(task("Old plan"))).await.unwrap();
    let old_id = old["id"].as_i64().unwrap();
    ada.call(
        "POST",
        &format!("/w/acme/tasks/{old_id}/comments"),
        Some(json!({ "body": "about the old one" })),
    )
    .await
    .unwrap();
    assert_eq!(ada.call("DELETE", &format!("/w/acme/tasks/{old_id}"), None).await.unwrap().0, 204);
    let (_, new) = ada.call("POST", "/w/acme/tasks", Some(task("New plan"))).await.unwrap();
    assert_eq!(new["id"].as_i64(), Some(old_id), "SQLite reuses the newest deleted id");
    let dashboard = web.get("/w/acme/").await.unwrap().body;
    assert!(dashboard.contains("<em>Old plan</em>: “about the old one”"), "{dashboard}");
    assert!(
        !dashboard.contains(&format!("tasks/{old_id}\"><em>Old plan")),
        "no link to the task that took its id"
    );
    assert!(dashboard.contains(&format!("tasks/{old_id}\"><em>New plan")), "the new task's own entry links");
    server.stop().await.unwrap();
}
