//! The machine's state, end to end: a data directory on a small tmpfs. A workspace at its plan's
//! storage quota gets 507 (theirs to change), a full disk gets 503 `disk_full` (the machine's),
//! and neither loses an acknowledged write; once space is freed, writes work again. Exports are
//! refused while the disk is nearly full.
//!
//! Mounting a tmpfs needs root (CI runs as root); elsewhere the test says it is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use silo_accounts::Role;
use silo_billing::Plan;
use silo_e2e::{ApiClient, TestServer};

/// A tmpfs of `megabytes` mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(megabytes: u32) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .ok()?;
        if !mounted.status.success() {
            eprintln!(
                "SKIPPED disk test: cannot mount a tmpfs ({})",
                String::from_utf8_lossy(&mounted.stderr).trim()
            );
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Fills the file system holding `dir` with a ballast file, leaving about `leave` bytes free.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let space = silo_storage::sqlite::disk_space(dir).unwrap();
    let ballast = dir.join("ballast");
    let size = space.available.saturating_sub(leave);
    let file = std::fs::File::create(&ballast).unwrap();
    // Written, not sparse: tmpfs charges pages only when they are written.
    use std::io::Write;
    let mut writer = std::io::BufWriter::new(file);
    let chunk = vec![0x5a_u8; 1 << 20];
    let mut written = 0;
    while written < size {
        let n = (size - written).min(chunk.len() as u64) as usize;
        if writer.write_all(&chunk[..n]).is_err() {
            break;
        }
        written += n as u64;
    }
    let _ = writer.flush();
    ballast
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quota_is_507_a_full_disk_is_503_and_neither_loses_a_write() {
    let Some(tmpfs) = Tmpfs::mount(48) else { return };
    let data = tmpfs.path().join("data");
    let server = TestServer::start_with(|s| {
        s.fleet.data_dir = data.clone();
        s.plans.0.insert("tiny".into(), Plan { storage_mb: Some(1), ..Plan::default() });
    })
    .await
    .unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    for (slug, plan) in [("small", "tiny"), ("roomy", "business")] {
        let (status, body) =
            ops.call("POST", "/tenants", Some(json!({ "slug": slug, "plan": plan }))).await.unwrap();
        assert_eq!(status, 201, "{body}");
    }
    server.accounts.users().create("ada@example.com", silo_e2e::PASSWORD, None, "test").await.unwrap();
    let mut clients = Vec::new();
    for slug in ["small", "roomy"] {
        let token = server.member_token("ada@example.com", slug, Role::Owner).await.unwrap();
        let client = ApiClient::new(server.addr, Some(&token));
        let (_, project) =
            client.call("POST", &format!("/w/{slug}/projects"), Some(json!({ "name": "P" }))).await.unwrap();
        clients.push((slug, client, project["id"].clone()));
    }
    // Big tasks, so one write needs many pages: the quota refuses it well below 90 % full.
    let body: String = (0..20_000).map(|i| char::from(b'a' + (i * 7 % 26) as u8)).collect();
    let write = |i: usize| {
        let (slug, client, project) = &clients[i % 2];
        let task = json!({ "project_id": project, "title": format!("t{i}"), "body": body });
        async move { (i % 2, client.call("POST", &format!("/w/{slug}/tasks"), Some(task)).await.unwrap()) }
    };
    let mut acknowledged = [0_i64; 2];
    let mut small_refusal = None;
    for i in 0..200 {
        if i % 2 == 0 && small_refusal.is_some() {
            continue;
        }
        let (which, (status, answer)) = write(i).await;
        match status {
            201 => acknowledged[which] += 1,
            507 if which == 0 => small_refusal = Some(answer),
            other => panic!("task {i} on {}: {other} {answer}", clients[which].0),
        }
    }
    let refusal = small_refusal.expect("the 1 MB plan refused a write");
    assert_eq!(refusal["error"]["code"], "storage_quota_exceeded", "{refusal}");

    // Now the disk itself fills up: the roomy workspace's next writes are the machine's state.
    let ballast = fill(tmpfs.path(), 16 * 1024);
    let mut full = None;
    for i in 0..200 {
        let (_, (status, answer)) = write(2 * i + 1).await;
        match status {
            201 => acknowledged[1] += 1,
            503 => {
                full = Some(answer);
                break;
            }
            other => panic!("{other} {answer}"),
        }
    }
    let full = full.expect("a full disk refused a write");
    assert_eq!(full["error"]["code"], "disk_full", "not the quota: {full}");
    let (status, refused) = ops.call("POST", "/tenants/roomy/export", None).await.unwrap();
    assert_eq!((status, refused["error"]["code"].as_str()), (503, Some("disk_low")), "{refused}");

    // Space freed: writes work again, and every acknowledged write is there.
    std::fs::remove_file(&ballast).unwrap();
    let (status, answer) = write(1).await.1;
    assert_eq!(status, 201, "{answer}");
    acknowledged[1] += 1;
    for (i, slug) in ["small", "roomy"].iter().enumerate() {
        let (count, integrity) = silo_e2e::tasks_and_integrity(&server.tenancy, slug).await.unwrap();
        assert_eq!((count, integrity.as_str()), (acknowledged[i], "ok"), "{slug}");
    }
    server.stop().await.unwrap();
}

/// Control-plane writes refused by a full disk leave no half-open transaction behind: once
/// space is freed, every write is stored (and seen by another connection), and an erasure
/// asked for on the full disk either is refused or runs to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_full_disk_the_control_plane_stores_every_write_again() {
    let Some(tmpfs) = Tmpfs::mount(48) else { return };
    let data = tmpfs.path().join("data");
    let server = TestServer::start_with(|s| s.fleet.data_dir = data.clone()).await.unwrap();
    let token = server.operator_token("ops@example.com").await.unwrap();
    let ops = ApiClient::new(server.addr, Some(&token));
    ops.call("POST", "/tenants", Some(json!({ "slug": "acme" }))).await.unwrap();
    server.accounts.users().create("dave@example.com", silo_e2e::PASSWORD, None, "test").await.unwrap();
    server.member_token("dave@example.com", "acme", Role::Member).await.unwrap();

    let ballast = fill(tmpfs.path(), 0);
    let mut refused = Vec::new();
    for _ in 0..5 {
        let (status, body) =
            ops.call("POST", "/subjects/erase", Some(json!({ "email": "dave@example.com" }))).await.unwrap();
        refused.push((status, body["error"]["code"].clone()));
        let (status, body) =
            ops.call("PATCH", "/tenants/acme", Some(json!({ "name": "On a full disk" }))).await.unwrap();
        refused.push((status, body["error"]["code"].clone()));
    }
    assert!(refused.iter().all(|(status, _)| *status != 500), "{refused:?}");
    let (status, body) =
        ops.call("POST", "/tenants", Some(json!({ "slug": "on-a-full-disk" }))).await.unwrap();
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("disk_full")), "{body}");
    std::fs::remove_file(&ballast).unwrap();

    for name in ["Freed A", "Freed B"] {
        let (status, tenant) =
            ops.call("PATCH", "/tenants/acme", Some(json!({ "name": name }))).await.unwrap();
        assert_eq!((status, tenant["name"].as_str()), (200, Some(name)), "{tenant}");
        let (_, read) = ops.call("GET", "/tenants/acme", None).await.unwrap();
        assert_eq!(read["name"], name, "the write is visible to readers");
        let control = rusqlite::Connection::open(data.join("control.db")).unwrap();
        let stored: String =
            control.query_row("SELECT name FROM tenants WHERE slug = 'acme'", [], |r| r.get(0)).unwrap();
        assert_eq!(stored, name, "the write is stored, not held in an open transaction");
    }
    let (status, created) = ops.call("POST", "/tenants", Some(json!({ "slug": "after" }))).await.unwrap();
    assert_eq!(status, 201, "{created}");
    let (status, _) = ops.call("GET", "/tenants/after", None).await.unwrap();
    assert_eq!(status, 200);
    server.stop().await.unwrap();
}
