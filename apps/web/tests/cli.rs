//! The real `silo` binary against a temp data directory: every CLI command, its JSON output,
//! its errors and exit codes.

mod common;

use std::path::Path;
use std::process::Command;

use common::{fails, json, ok, silo};
use serde_json::Value;

#[test]
fn tenant_commands_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let created = json(d, &["tenant", "create", "acme", "--name", "Acme Inc", "--plan", "team", "--json"]);
    assert_eq!(created["slug"], "acme");
    assert_eq!(created["status"], "active");
    assert_eq!(created["plan"], "team");
    ok(d, &["tenant", "create", "globex"]);

    let list = json(d, &["tenant", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let table = ok(d, &["tenant", "list"]);
    assert!(table.starts_with("SLUG"), "{table}");
    assert!(table.contains("acme") && table.contains("globex"));

    let shown = json(d, &["tenant", "show", "acme", "--json"]);
    assert_eq!(shown["name"], "Acme Inc");
    assert_eq!(shown["schema_version"], silo_tenancy::schema::latest_version(silo_workspace::migrations()));
    assert!(shown["file_size"].as_u64().unwrap() > 0);
    let by_id = json(d, &["tenant", "show", created["id"].as_str().unwrap(), "--json"]);
    assert_eq!(by_id["slug"], "acme");

    let rows = json(d, &["tenant", "sql", "acme", "SELECT count(*) AS n FROM tasks", "--json"]);
    assert_eq!(rows["rows"][0]["n"], 0);
    let refused = fails(d, &["tenant", "sql", "acme", "DELETE FROM tasks"]);
    assert!(refused.contains("read-only"), "{refused}");

    ok(d, &["tenant", "suspend", "acme"]);
    assert_eq!(json(d, &["tenant", "list", "--status", "suspended", "--json"]).as_array().unwrap().len(), 1);
    assert!(fails(d, &["tenant", "suspend", "acme"]).contains("it is suspended"));
    ok(d, &["tenant", "resume", "acme"]);

    let path = shown["path"].as_str().unwrap().to_owned();
    ok(d, &["tenant", "delete", "globex"]);
    assert_eq!(json(d, &["tenant", "show", "globex", "--json"])["status"], "deleting");
    ok(d, &["tenant", "delete", "acme", "--purge"]);
    // The purge takes the slug and name with it: the tenant is found by its id, as deleted.
    let purged = json(d, &["tenant", "show", created["id"].as_str().unwrap(), "--json"]);
    assert_eq!(purged["status"], "deleted");
    assert_eq!(purged["slug"], format!("purged-{}", created["id"].as_str().unwrap().replace('-', "")));
    assert!(!d.join(&path).exists() && !Path::new(&path).exists());
    assert!(fails(d, &["tenant", "show", "acme"]).contains("no tenant `acme`"));
    assert!(
        fails(d, &["tenant", "sql", created["id"].as_str().unwrap(), "SELECT 1"])
            .contains("has been deleted")
    );
}

#[test]
fn bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (slug, expect) in [
        ("..", "3 to 63"),
        ("a/b", "lowercase"),
        ("UPPER", "lowercase"),
        ("admin", "reserved"),
        ("ünïcode", "lowercase"),
    ] {
        assert!(fails(d, &["tenant", "create", slug]).contains(expect), "{slug}");
    }
    let long = "x".repeat(64);
    assert!(fails(d, &["tenant", "create", &long]).contains("3 to 63"));
    ok(d, &["tenant", "create", "dup"]);
    assert!(fails(d, &["tenant", "create", "dup"]).contains("already taken"));
    assert!(fails(d, &["tenant", "create", "far", "--region", "mars"]).contains("unknown region `mars`"));
    assert!(fails(d, &["tenant", "show", "nobody"]).contains("no tenant `nobody`"));
    assert!(fails(d, &["tenant", "list", "--status", "bogus"]).contains("unknown status"));
    let missing_config = fails(d, &["--config", "/nonexistent.toml", "tenant", "list"]);
    assert!(missing_config.contains("does not exist"), "{missing_config}");
}

#[test]
fn regions_come_from_config_and_env() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let eu = d.join("eu-root");
    std::fs::write(d.join("silo.toml"), format!("[regions.eu]\nroot = {:?}\n", eu.display().to_string()))
        .unwrap();
    let created = json(d, &["tenant", "create", "eurocorp", "--region", "eu", "--json"]);
    let id = created["id"].as_str().unwrap();
    assert!(eu.join("tenants").join(&id[..2]).join(format!("{id}.db")).exists());

    let us = d.join("us-root");
    let out = Command::new(env!("CARGO_BIN_EXE_silo"))
        .args(["tenant", "create", "yankee", "--region", "us", "--json"])
        .env("SILO_DATA_DIR", d)
        .envs(common::control_env(d))
        .env("SILO_REGIONS__US__ROOT", &us)
        .current_dir(d)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(us.join("tenants").exists());
}

#[test]
fn migrate_continues_past_a_failing_tenant_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for slug in ["m-one", "m-two", "m-three"] {
        ok(d, &["tenant", "create", slug]);
    }
    let summary = json(d, &["migrate", "--json"]);
    assert_eq!((summary["already_current"].as_u64(), summary["failed"].as_u64()), (Some(3), Some(0)));

    // Make one tenant look one migration behind while its schema is in fact present: the
    // migrator re-applies migration 1, which fails (tables exist). The others are current.
    let broken = json(d, &["tenant", "show", "m-two", "--json"]);
    let path = broken["path"].as_str().unwrap();
    let path = if Path::new(path).is_absolute() { Path::new(path).to_owned() } else { d.join(path) };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut conn =
            silo_storage::sqlite::open(&path, Default::default(), silo_storage::sqlite::OpenMode::Existing)
                .await
                .unwrap();
        sqlx::query("DELETE FROM _sqlx_migrations").execute(&mut conn).await.unwrap();
        sqlx::query("PRAGMA user_version = 0").execute(&mut conn).await.unwrap();
        sqlx::Connection::close(conn).await.unwrap();
    });

    let out = silo(d, &["migrate", "--json", "--concurrency", "2"]);
    assert_eq!(out.status.code(), Some(1), "exit 1 when a tenant failed");
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((summary["already_current"].as_u64(), summary["failed"].as_u64()), (Some(2), Some(1)));
    assert_eq!(summary["failures"][0]["slug"], "m-two");
    let recorded = json(d, &["tenant", "show", "m-two", "--json"]);
    assert!(recorded["migration_error"].as_str().unwrap().contains("already exists"), "{recorded}");

    let human = silo(d, &["migrate", "--tenant", "m-one"]);
    assert!(human.status.success());
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("1 tenants: 0 migrated, 1 already current, 0 failed")
    );
}
