//! The real `silo` binary's backup commands: `silo backup create|list|verify|prune`,
//! `silo restore`, `silo export`, `silo tenant move`, `silo migrate --rollback`, and what
//! happens when the process is killed mid-backup or the disk fills during a restore.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{command, fails, json, ok, program_in};

/// Creates a tenant and fills it with `tasks` tasks of `body_bytes` of text each.
fn tenant_with_data(data: &Path, slug: &str, tasks: usize, body_bytes: usize) -> PathBuf {
    let created = json(data, &["tenant", "create", slug, "--json"]);
    let shown = json(data, &["tenant", "show", created["id"].as_str().unwrap(), "--json"]);
    let path = PathBuf::from(shown["path"].as_str().unwrap());
    let path = if path.is_absolute() { path } else { data.join(path) };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use silo_storage::sqlite::{OpenMode, open};
        let mut conn = open(&path, Default::default(), OpenMode::Existing).await.unwrap();
        sqlx::query("INSERT INTO projects (name) VALUES ('Roadmap')").execute(&mut conn).await.unwrap();
        // Words from a pseudo-random sequence: text that compresses like prose, not like zeros.
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
             INSERT INTO tasks (project_id, title, body)
             SELECT 1, 'task ' || i, substr(replace(hex(randomblob(?2)), '0', ' '), 1, ?2) FROM n",
        )
        .bind(tasks as i64)
        .bind(body_bytes as i64)
        .execute(&mut conn)
        .await
        .unwrap();
        sqlx::Connection::close(conn).await.unwrap();
    });
    path
}

fn sha256_of(path: &Path) -> String {
    silo_core::tokens::sha256_hex(&std::fs::read(path).unwrap())
}

#[test]
fn backup_restore_export_move_and_purge_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A second region for the move (silo.toml in the working directory).
    let eu = d.join("regions/eu").display().to_string();
    std::fs::write(d.join("silo.toml"), format!("[regions.eu]\nroot = {eu:?}\n")).unwrap();
    tenant_with_data(d, "acme", 50, 200);
    tenant_with_data(d, "globex", 5, 100);

    let backup = json(d, &["backup", "create", "acme", "--json"]);
    let id = backup["id"].as_str().unwrap().to_owned();
    assert_eq!(backup["kind"], "manual");
    // The master key was generated on first use, readable by its owner only.
    let key = d.join("master.key");
    assert_eq!(std::fs::read_to_string(&key).unwrap().trim().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let listed = json(d, &["backup", "list", "acme", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(ok(d, &["backup", "list", "acme"]).contains(&id));
    assert!(ok(d, &["backup", "verify", "acme"]).contains("is good"));
    assert!(fails(d, &["backup", "verify", "acme", "--backup", "nope"]).contains("no backup `nope`"));
    assert!(fails(d, &["backup", "create", "nobody"]).contains("no tenant `nobody`"));
    assert!(fails(d, &["restore", "acme", "--as", "Bad Slug"]).contains("slug"));
    assert!(fails(d, &["migrate", "--rollback", "acme"]).contains("no pre-migration backup"));

    let all = json(d, &["backup", "create", "--all", "--json"]);
    assert_eq!((all["backed_up"].as_u64(), all["failed"].as_array().map(Vec::len)), (Some(2), Some(0)));

    let zip = d.join("acme.zip");
    assert!(ok(d, &["export", "acme", "--out", zip.to_str().unwrap()]).contains("rows"));
    assert!(std::fs::metadata(&zip).unwrap().len() > 1000);

    let clone = json(d, &["restore", "acme", "--backup", &id, "--as", "acme-copy", "--json"]);
    assert_eq!(clone["tenant"]["slug"], "acme-copy");
    let copied = json(d, &["tenant", "sql", "acme-copy", "SELECT count(*) AS n FROM tasks", "--json"]);
    assert_eq!(copied["rows"][0]["n"], 50);
    assert!(ok(d, &["restore", "acme"]).contains("restored acme"));

    let moved = json(d, &["tenant", "move", "acme", "--region", "eu", "--json"]);
    assert_eq!((moved["from"].as_str(), moved["tenant"]["region"].as_str()), (Some("local"), Some("eu")));
    assert!(fails(d, &["tenant", "move", "acme", "--region", "mars"]).contains("unknown region"));
    let after_move = json(d, &["tenant", "sql", "acme", "SELECT count(*) AS n FROM tasks", "--json"]);
    assert_eq!(after_move["rows"][0]["n"], 50);
    assert!(ok(d, &["backup", "prune"]).contains("pruned 0 expired backups"));

    let acme_id = json(d, &["tenant", "show", "acme", "--json"])["id"].as_str().unwrap().to_owned();
    let objects = d.join("objects/tenants").join(&acme_id);
    assert!(objects.exists());
    ok(d, &["tenant", "delete", "acme", "--purge"]);
    assert!(
        !objects.join("backups").exists() || std::fs::read_dir(objects.join("backups")).unwrap().count() == 0
    );
    assert!(fails(d, &["restore", acme_id.as_str(), "--backup", &id]).contains("data key is destroyed"));
}

#[test]
fn a_backup_killed_mid_way_leaves_no_half_row_and_the_next_run_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for i in 0..40 {
        tenant_with_data(d, &format!("tenant-{i:02}"), 200, 400);
    }
    let mut child = command(d).args(["backup", "create", "--all"]).spawn().unwrap();
    // Kill it (SIGKILL) as soon as the first object is stored, while others are in flight.
    let objects = d.join("objects/tenants");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let stored = std::fs::read_dir(&objects).map(|dirs| dirs.count()).unwrap_or(0);
        if stored > 0 || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the backup was killed before it finished");

    // Every catalogued backup is complete and restores.
    let tenants = json(d, &["tenant", "list", "--json"]);
    let mut catalogued = 0;
    for tenant in tenants.as_array().unwrap() {
        let slug = tenant["slug"].as_str().unwrap();
        for backup in json(d, &["backup", "list", slug, "--json"]).as_array().unwrap() {
            ok(d, &["backup", "verify", slug, "--backup", backup["id"].as_str().unwrap()]);
            catalogued += 1;
        }
    }
    assert!(catalogued < 40, "the kill came before the end ({catalogued} backups)");
    let run = json(d, &["backup", "create", "--all", "--json"]);
    assert_eq!((run["backed_up"].as_u64(), run["failed"].as_array().map(Vec::len)), (Some(40), Some(0)));
}

#[test]
fn a_full_disk_during_restore_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = tenant_with_data(d, "acme", 1500, 2000);
    ok(d, &["backup", "create", "acme"]);
    let db_size = std::fs::metadata(&path).unwrap().len();
    assert!(db_size > 3 << 20, "the tenant is larger than the limit below ({db_size} bytes)");
    let before = sha256_of(&path);
    let files_before: Vec<_> =
        std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();

    // A file-size limit of 2 MiB makes the restore's writes fail (EFBIG) part-way, as a full
    // disk would (ENOSPC); SIGXFSZ is ignored so the write returns the error.
    let silo = env!("CARGO_BIN_EXE_silo");
    let out = program_in("bash", d)
        .args(["-c", &format!("trap '' XFSZ; ulimit -f 2048; exec '{silo}' restore acme")])
        .output()
        .unwrap();
    assert!(!out.status.success(), "the restore must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("File too large") || stderr.contains("No space"), "{stderr}");

    assert_eq!(sha256_of(&path), before, "the tenant's file is unchanged");
    let files_after: Vec<_> =
        std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files_after, files_before, "no staging file is left behind");
    let count = json(d, &["tenant", "sql", "acme", "SELECT count(*) AS n FROM tasks", "--json"]);
    assert_eq!(count["rows"][0]["n"], 1500);
    // Without the limit the same restore succeeds.
    assert!(ok(d, &["restore", "acme"]).contains("restored acme"));
}
