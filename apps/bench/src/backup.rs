//! `silo-bench backup`: a fleet of tenants of about `--size-kib` each backed up to the local
//! store, side by side with `cp -r` of the same files; an incremental pass after writes to 10
//! tenants (PUTs counted by a wrapper around the store); restore throughput beside plain reads
//! of the same files; and how long a `--big-mib` tenant is unavailable during `tenant move`.

use silo_backups::BackupsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Args;
use futures::StreamExt;
use rand::Rng;
use silo_backups::BackupStore;
use silo_core::TenantRef;
use silo_storage::crypto::MasterKey;
use silo_storage::objects::{LocalStore, ObjectStore, StoreFuture};
use silo_storage::sqlite::{self, OpenMode};
use silo_tenancy::config::RegionSettings;
use silo_tenancy::{Settings, Tenancy, Tenant};
use silo_workspace::tasks;

use crate::measure::{cores, create_tenants};

/// `silo-bench backup` options.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Tenants in the fleet.
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    /// Approximate size of each tenant's file, KiB.
    #[arg(long, default_value_t = 1024)]
    size_kib: u64,
    /// Tenants restored for the throughput figure.
    #[arg(long, default_value_t = 100)]
    restores: usize,
    /// Size of the tenant moved between regions, MiB (0: skip).
    #[arg(long, default_value_t = 100)]
    big_mib: u64,
}

/// Counts the store's requests (and the bytes PUT) around a real store.
pub(crate) struct CountingStore {
    pub(crate) inner: LocalStore,
    pub(crate) puts: AtomicU64,
    pub(crate) put_bytes: AtomicU64,
    /// GETs, LISTs and DELETEs.
    pub(crate) others: AtomicU64,
}

impl CountingStore {
    pub(crate) fn new(inner: LocalStore) -> Self {
        Self { inner, puts: AtomicU64::new(0), put_bytes: AtomicU64::new(0), others: AtomicU64::new(0) }
    }
}

impl ObjectStore for CountingStore {
    fn put<'a>(&'a self, key: &'a str, bytes: Vec<u8>) -> StoreFuture<'a, ()> {
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.put_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.inner.put(key, bytes)
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Vec<u8>> {
        self.others.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key)
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, bool> {
        self.others.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(key)
    }

    fn list<'a>(&'a self, prefix: &'a str) -> StoreFuture<'a, Vec<String>> {
        self.others.fetch_add(1, Ordering::Relaxed);
        self.inner.list(prefix)
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// A vocabulary of 4,096 made-up words of 2–9 letters (fixed seed): text with about the
/// entropy of prose, so compression figures are not flattered by a tiny vocabulary.
fn vocabulary() -> Vec<String> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    (0..4096)
        .map(|_| {
            let len = rng.random_range(2..10);
            (0..len).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect()
        })
        .collect()
}

/// Fills a closed tenant file with tasks of prose-like text until it is about `bytes` large.
fn fill(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let mut conn = sqlite::open_sync(path, Default::default(), OpenMode::Existing)?;
    let mut rng = rand::rng();
    let words = vocabulary();
    conn.execute("INSERT INTO projects (name) VALUES ('Bench')", [])?;
    let project = conn.last_insert_rowid();
    let mut task = 0;
    loop {
        let size: i64 = conn.query_row(
            "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
            [],
            |r| r.get(0),
        )?;
        if size as u64 >= bytes {
            break;
        }
        let tx = conn.transaction()?;
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO tasks (project_id, title, body) VALUES (?, ?, ?)")?;
            for _ in 0..50 {
                task += 1;
                let body: Vec<&str> =
                    (0..300).map(|_| words[rng.random_range(0..words.len())].as_str()).collect();
                insert.execute(rusqlite::params![project, format!("task {task}"), body.join(" ")])?;
            }
        }
        tx.commit()?;
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    Ok(())
}

async fn fill_all(tenancy: &Tenancy, tenants: &[Tenant], bytes: u64) -> anyhow::Result<()> {
    let paths: Vec<PathBuf> = tenants.iter().map(|t| tenancy.tenant_path(t)).collect::<Result<_, _>>()?;
    let mut filled = futures::stream::iter(paths)
        .map(|path| async move { tokio::task::spawn_blocking(move || fill(&path, bytes)).await? })
        .buffer_unordered(cores());
    while let Some(result) = filled.next().await {
        result?;
    }
    Ok(())
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(entry.path()),
                Ok(_) => total += entry.metadata().map_or(0, |m| m.len()),
                Err(_) => {}
            }
        }
    }
    total
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Where a backup's time goes: the pipeline's steps timed one by one over `tenants`, one
/// thread, files warm in the page cache.
async fn breakdown(tenancy: &Tenancy, tenants: &[Tenant], dir: &Path) -> anyhow::Result<()> {
    let paths: Vec<PathBuf> = tenants.iter().map(|t| tenancy.tenant_path(t)).collect::<Result<_, _>>()?;
    let scratch = LocalStore::new(dir.join("breakdown"));
    let key = silo_storage::crypto::DataKey::generate();
    let mut times = [0f64; 6];
    let mut bytes = 0u64;
    for (i, path) in paths.iter().enumerate() {
        let t = Instant::now();
        let mut owner = sqlite::open_sync(path, Default::default(), sqlite::OpenMode::Existing)?;
        let plain = sqlite::snapshot_bytes(&mut owner)?;
        drop(owner);
        times[0] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let compressed = zstd::bulk::compress(&plain, silo_storage::backup::ZSTD_LEVEL)?;
        times[1] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let sealed = key.seal(&compressed, b"bench");
        times[2] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let digest = silo_core::tokens::sha256_hex(&sealed);
        times[3] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        scratch.put(&format!("b/{i}-{}", &digest[..8]), sealed).await?;
        times[4] += t.elapsed().as_secs_f64();
        let t = Instant::now();
        std::fs::read(path)?;
        times[5] += t.elapsed().as_secs_f64();
        bytes += plain.len() as u64;
    }

    let per =
        |s: f64| format!("{:.2} ms/tenant, {:.0} MiB/s", s * 1000.0 / paths.len() as f64, mib(bytes) / s);
    println!("  breakdown over {} tenants, one thread:", paths.len());
    println!("    snapshot (pages via serialize):  {}", per(times[0]));
    println!("    zstd level 1:                    {}", per(times[1]));
    println!("    AES-256-GCM seal:                {}", per(times[2]));
    println!("    SHA-256 of the object:           {}", per(times[3]));
    println!("    store put (write, fsync, rename): {}", per(times[4]));
    println!("    (plain read of the file:         {})", per(times[5]));
    std::fs::remove_dir_all(dir.join("breakdown"))?;
    Ok(())
}

/// Runs the benchmark.
pub async fn run(dir: &Path, args: BackupArgs) -> anyhow::Result<()> {
    let mut settings = Settings::load(None)?;
    settings.data_dir = dir.to_owned();
    settings.cache.capacity = 1024;
    settings.regions.insert("moved".into(), RegionSettings { root: dir.join("regions/moved") });
    let tenancy = silo_web::schema::open(settings).await?;
    let store = Arc::new(CountingStore::new(LocalStore::new(dir.join("objects"))));
    tenancy.backups().install_store(BackupStore::with_store(store.clone(), MasterKey::generate()))?;

    let started = Instant::now();
    let fleet = create_tenants(&tenancy, "b", args.tenants, 4).await?;
    fill_all(&tenancy, &fleet, args.size_kib * 1024).await?;
    tenancy.cache().clear().await;
    tenancy.cache().wait_all_closed(std::time::Duration::from_secs(30)).await;
    let region = dir.join("regions/local");
    let fleet_bytes = dir_size(&region);
    println!(
        "backup: {} tenants, {:.0} MiB of tenant files ({:.2} MiB each), built in {:.1} s, backup concurrency {}",
        args.tenants,
        mib(fleet_bytes),
        mib(fleet_bytes) / args.tenants as f64,
        started.elapsed().as_secs_f64(),
        tenancy.settings().backup.concurrency()
    );

    // `cp -r` of the same files, then the full backup (snapshot, zstd, AES-GCM, store, row).
    let copy = dir.join("cp-copy");
    let started = Instant::now();
    let status = std::process::Command::new("cp").arg("-r").arg(&region).arg(&copy).status()?;
    anyhow::ensure!(status.success(), "cp -r failed");
    let cp_s = started.elapsed().as_secs_f64();
    std::fs::remove_dir_all(&copy)?;
    let full = tenancy.backups().scheduled_pass(false).await?;
    anyhow::ensure!(full.failed.is_empty(), "backups failed: {:?}", full.failed);
    let full_s = full.elapsed_ms as f64 / 1000.0;
    let puts_full = store.puts.swap(0, Ordering::Relaxed);
    let stored = store.put_bytes.swap(0, Ordering::Relaxed);
    println!("  cp -r of the region:           {cp_s:.2} s ({:.0} MiB/s)", mib(fleet_bytes) / cp_s);
    println!(
        "  full fleet backup:             {full_s:.2} s ({:.0} MiB/s), {puts_full} PUTs, {:.0} MiB stored ({:.0} % of the files)",
        mib(fleet_bytes) / full_s,
        mib(stored),
        stored as f64 * 100.0 / fleet_bytes as f64
    );
    println!("  ratio full backup / cp -r:     {:.2} (target <= 3)", full_s / cp_s);

    breakdown(&tenancy, &fleet[..fleet.len().min(100)], dir).await?;

    // Incremental: write to 10 tenants, then a pass; and a pass with nothing changed.
    let idle = tenancy.backups().scheduled_pass(false).await?;
    let puts_idle = store.puts.swap(0, Ordering::Relaxed);
    for tenant in fleet.iter().step_by((args.tenants / 10).max(1)).take(10) {
        let db = tenancy.db(tenant.id).await?;
        let new = tasks::NewTask { project_id: 1, title: "changed".into(), ..Default::default() };
        tasks::create(&db.turn().await, &new, None)?;
    }
    let incremental = tenancy.backups().scheduled_pass(false).await?;
    let puts_incremental = store.puts.swap(0, Ordering::Relaxed);
    println!(
        "  pass with nothing changed:     {:.3} s, {puts_idle} PUTs, {} unchanged",
        idle.elapsed_ms as f64 / 1000.0,
        idle.unchanged
    );
    println!(
        "  incremental after 10 writes:   {:.3} s, {puts_incremental} PUTs, {} backed up, {} unchanged (ratio to full {:.3})",
        incremental.elapsed_ms as f64 / 1000.0,
        incremental.backed_up,
        incremental.unchanged,
        incremental.elapsed_ms as f64 / full.elapsed_ms.max(1) as f64
    );

    // Restore throughput (in place: fetch, verify, decrypt, decompress, integrity check,
    // switch) beside reading the same files.
    let sample: Vec<Tenant> = fleet.iter().take(args.restores).cloned().collect();
    tenancy.cache().clear().await;
    let paths: Vec<PathBuf> = sample.iter().map(|t| tenancy.tenant_path(t)).collect::<Result<_, _>>()?;
    let started = Instant::now();
    let mut read_bytes = 0u64;
    for path in &paths {
        read_bytes += std::fs::read(path)?.len() as u64;
    }
    let read_s = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let ids: Vec<silo_core::TenantId> = sample.iter().map(|t| t.id).collect();
    let mut restores = futures::stream::iter(ids)
        .map(|id| {
            let tenancy = tenancy.clone();
            async move { tenancy.backups().restore(&TenantRef::Id(id), None, None, "bench").await }
        })
        .buffer_unordered(cores());
    let mut restored_bytes = 0u64;
    while let Some(restored) = restores.next().await {
        restored_bytes += restored?.size;
    }
    drop(restores);
    let restore_s = started.elapsed().as_secs_f64();
    let (restore_rate, read_rate) = (mib(restored_bytes) / restore_s, mib(read_bytes) / read_s);
    println!("  read {} files:                {read_s:.2} s ({read_rate:.0} MiB/s)", paths.len());
    println!(
        "  restore {} tenants in place:   {restore_s:.2} s ({restore_rate:.0} MiB/s), ratio to reading {:.2}",
        sample.len(),
        restore_rate / read_rate
    );

    if args.big_mib > 0 {
        let big = create_tenants(&tenancy, "big", 1, 1).await?;
        let started = Instant::now();
        fill_all(&tenancy, &big, args.big_mib * 1024 * 1024).await?;
        let path = tenancy.tenant_path(&big[0])?;
        println!(
            "  big tenant: {:.0} MiB built in {:.1} s",
            mib(std::fs::metadata(&path)?.len()),
            started.elapsed().as_secs_f64()
        );
        let db = tenancy.db(big[0].id).await?;
        drop(db);
        let started = Instant::now();
        let moved =
            tenancy.backups().relocations().relocate(&TenantRef::Id(big[0].id), "moved", "bench").await?;
        println!(
            "  tenant move of {:.0} MiB:        unavailable {:.0} ms (target < 1000), {:.2} s in all with the pre-move backup",
            mib(moved.bytes),
            moved.unavailable_ms,
            started.elapsed().as_secs_f64()
        );
    }
    tenancy.shutdown().await;
    Ok(())
}
