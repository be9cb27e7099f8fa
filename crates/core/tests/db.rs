//! The control plane's statements, written once, mean the same on SQLite and PostgreSQL:
//! placeholders, typed nulls, rows, transactions that run one at a time, and the SQLite
//! functions the PostgreSQL schema provides (`migrations/control-postgres`, first file).

use std::time::Duration;

use silo_core::Timestamp;
use silo_core::db::{self, Db, Engine};

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/control");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/control-postgres");

/// A migrated control plane on each engine there is (PostgreSQL when it can be had).
async fn engines(dir: &tempfile::TempDir) -> Vec<Db> {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("control.db"))
        .create_if_missing(true)
        .foreign_keys(true);
    let sqlite = Db::Sqlite(sqlx::SqlitePool::connect_with(options).await.unwrap());
    sqlite.migrate(&SQLITE).await.unwrap();
    let mut all = vec![sqlite];
    if let Some(url) = db::testing::postgres_database().await {
        let postgres = Db::postgres(&url, 4).await.unwrap();
        postgres.migrate(&POSTGRES).await.unwrap();
        all.push(postgres);
    }
    all
}

#[tokio::test]
async fn sqlites_functions_give_the_same_answers_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    // (expression, expected text): each is run on both engines, its value cast to text.
    let cases: &[(&str, Option<&str>)] = &[
        ("json_extract('{\"user\":\"u1\",\"n\":5}', '$.user')", Some("u1")),
        ("json_extract('{\"user\":\"u1\",\"n\":5}', '$.n')", Some("5")),
        ("json_extract('{\"a\":{\"b-c\":[1,\"x\"]}}', '$.a.\"b-c\"[1]')", Some("x")),
        ("json_extract('{\"a\":1}', '$.missing')", None),
        ("'{\"id\":\"x\",\"n\":2}' ->> '$.id'", Some("x")),
        ("CAST('{\"id\":\"x\",\"n\":2}' ->> '$.n' AS BIGINT) + 1", Some("3")),
        ("json_type('{\"slug\":\"a\"}', '$.slug')", Some("text")),
        ("json_type('{\"n\":1.5}', '$.n')", Some("real")),
        ("json_type('{\"slug\":\"a\"}', '$.name')", None),
        ("json_extract(json_set('{\"user\":\"u1\"}', '$.user', 'subject:x'), '$.user')", Some("subject:x")),
        ("json_extract(json_set('{}', '$.t', json('{\"a\":7}')), '$.t.a')", Some("7")),
        (
            "json_type(json_remove('{\"slug\":\"a\",\"name\":\"b\",\"c\":1}', '$.slug', '$.name'), '$.slug')",
            None,
        ),
        ("json_extract(json_remove('{\"slug\":\"a\",\"c\":1}', '$.slug'), '$.c')", Some("1")),
        (
            "json_extract(json_patch('{\"a\":1,\"b\":{\"c\":2}}', '{\"b\":{\"d\":3},\"a\":null}'), '$.b.c')",
            Some("2"),
        ),
        ("json_type(json_patch('{\"a\":1}', '{\"a\":null}'), '$.a')", None),
        ("(SELECT count(*) FROM json_each('[\"a\",\"b\"]') WHERE value IN ('a', 'b'))", Some("2")),
        ("(SELECT count(*) FROM json_each('[]'))", Some("0")),
        ("instr(lower('Hello'), 'll')", Some("3")),
        ("instr('Hello', 'z')", Some("0")),
        ("max(3, 5)", Some("5")),
        ("min(CAST('b' AS TEXT), 'a')", Some("a")),
        ("max(CAST(3 AS BIGINT), 7)", Some("7")),
        ("CASE WHEN json_valid('{\"a\":1}') THEN 'yes' ELSE 'no' END", Some("yes")),
        ("CASE WHEN json_valid('{x') THEN 'yes' ELSE 'no' END", Some("no")),
    ];
    for db in engines(&dir).await {
        for (expression, expected) in cases {
            let sql = format!("SELECT CAST({expression} AS TEXT)");
            let got: Option<String> =
                db::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&db).await.unwrap_or_else(|e| {
                    panic!("{:?}: {expression}: {e}", db.engine());
                });
            assert_eq!(got.as_deref(), *expected, "{:?}: {expression}", db.engine());
        }
        // NOCASE ignores the case of ASCII letters when sorting.
        let sorted: Vec<String> = db::query_scalar(
            "SELECT x FROM (SELECT 'b' AS x UNION ALL SELECT 'A' UNION ALL SELECT 'c') AS t ORDER BY x COLLATE NOCASE",
        )
        .fetch_all(&db)
        .await
        .unwrap();
        assert_eq!(sorted, ["A", "b", "c"], "{:?}", db.engine());
    }
}

#[derive(Debug, sqlx::FromRow, PartialEq)]
struct Entry {
    id: i64,
    at: Timestamp,
    actor: String,
    tenant_id: Option<String>,
}

#[tokio::test]
async fn statements_bind_typed_nulls_and_rows_decode_on_both_engines() {
    let dir = tempfile::tempdir().unwrap();
    let at = Timestamp::parse("2026-12-07T10:00:00.000Z").unwrap();
    for db in engines(&dir).await {
        for actor in ["ann", "bob", "cy"] {
            let done =
                db::query("INSERT INTO audit_log (at, actor, action, detail) VALUES (?, ?, 'test', ?)")
                    .bind(&at)
                    .bind(actor)
                    .bind(serde_json::json!({ "who": actor }).to_string())
                    .execute(&db)
                    .await
                    .unwrap();
            assert_eq!(done.rows_affected(), 1);
        }
        // A null sent as a number compares with numbers: `?1 IS NULL OR id < ?1`.
        let page = |before: Option<i64>| {
            db::query_as::<Entry>(
                "SELECT id, at, actor, tenant_id FROM audit_log WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT ?2",
            )
            .bind(before)
            .bind(2i64)
        };
        let first = page(None).fetch_all(&db).await.unwrap();
        assert_eq!(
            first.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>(),
            ["cy", "bob"],
            "{:?}",
            db.engine()
        );
        assert_eq!(first[0].at, at);
        assert_eq!(first[0].tenant_id, None);
        let rest = page(Some(first[1].id)).fetch_all(&db).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].actor, "ann");
        // Numbered placeholders, used out of order and twice.
        let found: Option<String> = db::query_scalar(
            "SELECT actor FROM audit_log WHERE json_extract(detail, '$.who') = ?2 AND actor = ?2 AND id > ?1 AND action = ?3",
        )
        .bind(0i64)
        .bind("bob")
        .bind("test")
        .fetch_optional(&db)
        .await
        .unwrap();
        assert_eq!(found.as_deref(), Some("bob"), "{:?}", db.engine());
        let row = db::query("SELECT count(*) AS n, TRUE AS yes FROM audit_log").fetch_one(&db).await.unwrap();
        assert_eq!(row.try_get::<i64, _>("n").unwrap(), 3);
        assert!(row.try_get::<bool, _>("yes").unwrap());
    }
}

#[tokio::test]
async fn a_transaction_commits_or_rolls_back_and_writers_take_turns() {
    let dir = tempfile::tempdir().unwrap();
    for db in engines(&dir).await {
        let insert = |actor: &'static str| {
            db::query(
                "INSERT INTO audit_log (at, actor, action) VALUES ('2026-12-07T10:00:00.000Z', ?, 'test')",
            )
            .bind(actor)
        };
        let mut tx = db.begin().await.unwrap();
        insert("kept").execute(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        insert("dropped").execute(&mut tx).await.unwrap();
        drop(tx);
        let mut tx = db.begin().await.unwrap();
        insert("rolled back").execute(&mut tx).await.unwrap();
        tx.rollback().await.unwrap();
        let actors: Vec<String> =
            db::query_scalar("SELECT actor FROM audit_log").fetch_all(&db).await.unwrap();
        assert_eq!(actors, ["kept"], "{:?}", db.engine());

        // A second transaction waits for the first: on SQLite the file has one writer (the
        // control plane writes through a pool of one connection); on PostgreSQL the advisory
        // lock makes it so.
        if db.engine() == Engine::Postgres {
            let mut first = db.begin().await.unwrap();
            insert("first").execute(&mut first).await.unwrap();
            let other = db.clone();
            let second = tokio::spawn(async move {
                let mut tx = other.begin().await.unwrap();
                let seen: i64 = db::query_scalar("SELECT count(*) FROM audit_log WHERE actor = 'first'")
                    .fetch_one(&mut tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                seen
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!second.is_finished(), "the second transaction began while the first was open");
            first.commit().await.unwrap();
            assert_eq!(second.await.unwrap(), 1, "the second transaction sees the first's write");
        }
    }
}

/// Tables, columns (name, type, nullability) and named indexes and triggers as each engine
/// reports them, in one comparable form.
async fn schema(db: &Db) -> Vec<String> {
    let (columns, indexes) = match db.engine() {
        Engine::Sqlite => (
            "SELECT m.name || '.' || p.name || ' ' || lower(p.type) || CASE WHEN p.\"notnull\" = 1 OR p.pk = 1 THEN ' not null' ELSE '' END
             FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '_sqlx_migrations'",
            "SELECT type || ' ' || name FROM sqlite_master
             WHERE type IN ('index', 'trigger') AND name NOT LIKE 'sqlite_autoindex_%'",
        ),
        Engine::Postgres => (
            "SELECT table_name || '.' || column_name || ' ' ||
                    CASE data_type WHEN 'bigint' THEN 'integer' WHEN 'bytea' THEN 'blob' ELSE data_type END ||
                    CASE WHEN is_nullable = 'NO' THEN ' not null' ELSE '' END
             FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'
               AND (table_name, column_name) <> ('tenants', 'rowid')",
            "SELECT 'index ' || indexname FROM pg_indexes
             WHERE schemaname = current_schema() AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key'
             UNION ALL
             SELECT DISTINCT 'trigger ' || trigger_name FROM information_schema.triggers
             WHERE trigger_schema = current_schema()",
        ),
    };
    let mut all: Vec<String> = db::query_scalar(columns).fetch_all(db).await.unwrap();
    all.extend(db::query_scalar::<String>(indexes).fetch_all(db).await.unwrap());
    // SQLite's 0/1 columns are PostgreSQL booleans.
    for boolean in ["tenants.held", "tenants.deleted_by_owner"] {
        for line in all.iter_mut().filter(|l| l.starts_with(&format!("{boolean} "))) {
            *line = line.replace(" integer", " boolean");
        }
    }
    all.sort();
    all
}

#[tokio::test]
async fn both_engines_migrate_to_the_same_tables_columns_and_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let engines = engines(&dir).await;
    let sqlite = schema(&engines[0]).await;
    assert!(sqlite.iter().any(|l| l == "tenants.slug text not null"), "{sqlite:#?}");
    assert!(sqlite.iter().any(|l| l == "trigger memberships_history_delete"), "{sqlite:#?}");
    assert_eq!(SQLITE.iter().count(), POSTGRES.iter().count(), "one PostgreSQL migration per SQLite one");
    for (lite, pg) in SQLITE.iter().zip(POSTGRES.iter()) {
        assert_eq!((lite.version, &lite.description), (pg.version, &pg.description));
    }
    if let Some(postgres) = engines.get(1) {
        let postgres = schema(postgres).await;
        let only =
            |a: &[String], b: &[String]| a.iter().filter(|l| !b.contains(l)).cloned().collect::<Vec<_>>();
        assert_eq!(
            (only(&sqlite, &postgres), only(&postgres, &sqlite)),
            (vec![], vec![]),
            "(only on SQLite, only on PostgreSQL)"
        );
    }
}
