//! Scratch files: the plaintext copies a process makes of a tenant while it works — an export's
//! snapshot, a backup being verified (`<data_dir>/tmp`), a restore being staged beside the
//! tenant's file. Each is named with the owning process's id, so the copies a killed process
//! left behind are recognised (no process with that id runs any more) and deleted: at start,
//! hourly, and by every purge and erasure, which must reach every copy of the data.

use std::path::{Path, PathBuf};

/// A scratch file name for `kind` (`export`, `verify`) owned by this process.
pub fn name(kind: &str, id: &str) -> String {
    format!("{}-{kind}-{id}.db", std::process::id())
}

/// The staging path of a restore into `dest`: beside it (same file system, so the final rename
/// is atomic), hidden, and owned by this process.
pub fn restore_staging(dest: &Path) -> PathBuf {
    let file = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{file}.restore-{}-{}", std::process::id(), uuid::Uuid::now_v7()))
}

/// Whether the process that owns a scratch file (the number its name starts with, after
/// `prefix`) is gone; a name without an owner is `unowned` (left behind, or not scratch).
fn orphaned(rest: &str, unowned: bool) -> bool {
    let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else { return unowned };
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes, in `dir`, the files whose name starts with `prefix` and whose owner is gone
/// (their `-wal`, `-shm` and `-journal` with them; `unowned`: also those naming no owner);
/// returns how many files went.
fn sweep(dir: &Path, prefix: &str, unowned: bool) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix(prefix)
            && orphaned(rest, unowned)
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Deletes the scratch copies in `<data_dir>/tmp` whose process is gone.
pub(crate) fn sweep_tmp(data_dir: &Path) -> usize {
    let tmp = data_dir.join("tmp");
    let owned = sweep(&tmp, "", false);
    // Copies named before owners were recorded: `export-<uuid>.db`, `verify-<uuid>.db`.
    let legacy = ["export-", "verify-"].iter().map(|p| sweep_legacy(&tmp, p)).sum::<usize>();
    owned + legacy
}

fn sweep_legacy(dir: &Path, prefix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// Deletes the restore staging files beside a tenant's file `path` whose process is gone.
pub(crate) fn sweep_restores(path: &Path) -> usize {
    let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.parent().map_or(0, |dir| sweep(dir, &format!(".{file}.restore-"), true))
}

/// Deletes the restore staging files whose process is gone beside every tenant file under
/// `root` (a region's storage root): those a killed process left mid-restore or prepared for
/// a move that never came.
pub(crate) fn sweep_restores_under(root: &Path) -> usize {
    let Ok(shards) = std::fs::read_dir(root.join("tenants")) else { return 0 };
    let mut removed = 0;
    for shard in shards.flatten() {
        let Ok(entries) = std::fs::read_dir(shard.path()) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((_, rest)) = name.strip_prefix('.').and_then(|n| n.split_once(".restore-"))
                && orphaned(rest, true)
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_staging_of_processes_that_are_gone_is_swept_in_every_shard() {
        let root = tempfile::tempdir().unwrap();
        let shard = root.path().join("tenants").join("01");
        std::fs::create_dir_all(&shard).unwrap();
        let tenant = shard.join("01aa.db");
        let mine = restore_staging(&tenant);
        let gone = shard.join(".01aa.db.restore-4194999-01bb");
        let gone_shm = shard.join(".01aa.db.restore-4194999-01bb-shm");
        for file in [&tenant, &mine, &gone, &gone_shm] {
            std::fs::write(file, b"x").unwrap();
        }
        assert_eq!(sweep_restores_under(root.path()), 2);
        assert!(tenant.exists() && mine.exists(), "the tenant and this process's staging stay");
        assert!(!gone.exists() && !gone_shm.exists());
        assert_eq!(sweep_restores_under(&root.path().join("none")), 0);
    }

    #[test]
    fn only_the_copies_of_processes_that_are_gone_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let mine = tmp.join(name("export", "a"));
        // No process has this id (ids stay below 2^22 on Linux).
        let gone = tmp.join("4194999-export-b.db");
        let gone_wal = tmp.join("4194999-export-b.db-wal");
        let legacy = tmp.join("export-c.db");
        let template = tmp.join("tenant-template-123.db");
        for file in [&mine, &gone, &gone_wal, &legacy, &template] {
            std::fs::write(file, b"x").unwrap();
        }
        assert_eq!(sweep_tmp(dir.path()), 3);
        assert!(mine.exists() && template.exists(), "this process's copy and the template stay");
        assert!(!gone.exists() && !gone_wal.exists() && !legacy.exists());

        let tenant = dir.path().join("t.db");
        let staging = restore_staging(&tenant);
        let left = dir.path().join(".t.db.restore-4194999-x");
        std::fs::write(&staging, b"x").unwrap();
        std::fs::write(&left, b"x").unwrap();
        assert_eq!(sweep_restores(&tenant), 1);
        assert!(staging.exists() && !left.exists());
    }
}
