//! Measuring helpers: latency percentiles, process samples (fds, threads, RSS), fixtures.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use silo_server::ServerSettings;
use silo_tenancy::{CreateTenant, Settings, Tenancy, Tenant};

/// Cores available to this process.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Sorted latency samples, in nanoseconds.
pub struct Latencies(Vec<u64>);

impl Latencies {
    pub fn new(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        Self(samples)
    }

    /// The `p`-th percentile (0–100), in microseconds.
    pub fn percentile_us(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        self.0[rank] as f64 / 1000.0
    }

    pub fn summary(&self) -> String {
        format!(
            "p50 {:.1} µs  p99 {:.1} µs  (n={})",
            self.percentile_us(50.0),
            self.percentile_us(99.0),
            self.0.len()
        )
    }
}

/// Times one future, in nanoseconds.
pub async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, u64) {
    let started = Instant::now();
    let out = f.await;
    (out, started.elapsed().as_nanos() as u64)
}

/// A line of `/proc/self/status` such as `VmRSS` or `Threads`, as a number (kB for sizes).
pub fn proc_status(field: &str) -> u64 {
    process_status("self", field)
}

/// The C heap as glibc sees it (`mallinfo2`): bytes in use (mapped blocks included) and bytes
/// free but still held, in MiB.
#[allow(unsafe_code)]
pub fn heap_mib() -> (f64, f64) {
    // SAFETY: only reads the allocator's counters.
    let heap = unsafe { libc::mallinfo2() };
    let mib = |bytes: usize| bytes as f64 / (1024.0 * 1024.0);
    (mib(heap.uordblks + heap.hblkhd), mib(heap.fordblks))
}

/// A line of `/proc/<pid>/status` (`self` for this process), as a number (kB for sizes).
pub fn process_status(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// This process's CPU time (user + system), from `/proc/self/stat` (10 ms resolution).
pub fn cpu_time() -> Duration {
    process_cpu_time("self")
}

/// CPU time (user + system) of process `pid` (`self` for this one) so far.
pub fn process_cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 (1-based), i.e. 11 and 12 after the name; 100 Hz.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Samples fds, threads and RSS every 20 ms until stopped; keeps the peaks.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    pub peak_fds: Arc<AtomicU64>,
    pub peak_threads: Arc<AtomicU64>,
    pub peak_rss_kib: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (fds, threads, rss) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let task = {
            let (stop, fds, threads, rss) = (stop.clone(), fds.clone(), threads.clone(), rss.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    fds.fetch_max(silo_tenancy::limits::open_fds(), Ordering::Relaxed);
                    threads.fetch_max(proc_status("Threads:"), Ordering::Relaxed);
                    rss.fetch_max(proc_status("VmRSS:"), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Self { stop, peak_fds: fds, peak_threads: threads, peak_rss_kib: rss, task }
    }

    pub async fn finish(self) -> (u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        (
            self.peak_fds.load(Ordering::Relaxed),
            self.peak_threads.load(Ordering::Relaxed),
            self.peak_rss_kib.load(Ordering::Relaxed),
        )
    }
}

/// The `silo` binary a bench runs: `given`, else the one beside this binary (a release build).
pub fn silo_binary(given: Option<std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    let binary = match given {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("silo"),
    };
    anyhow::ensure!(
        binary.exists(),
        "{} not found: build it (cargo build --release) or pass --silo",
        binary.display()
    );
    Ok(binary)
}

/// Serves Silo's HTTP application in this process on a loopback port: its address, and the
/// handle that stops it.
pub fn serve_in_process(
    billing: silo_billing::Billing,
    settings: ServerSettings,
) -> anyhow::Result<(std::net::SocketAddr, actix_web::dev::ServerHandle)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = silo_server::start(billing, settings, listener)?;
    let handle = server.handle();
    tokio::spawn(server);
    Ok((addr, handle))
}

/// Starts `silo … serve` (`command` names the binary and its data directory) on a free
/// loopback port and waits until `/healthz` answers: the child, and the server's base URL.
pub async fn spawn_serve(
    mut command: std::process::Command,
) -> anyhow::Result<(std::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = command.args(["serve", "--bind", &format!("127.0.0.1:{port}")]).spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        if started.elapsed() > Duration::from_secs(30) || child.try_wait()?.is_some() {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("silo serve did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((child, base))
}

/// Opens a tenancy over `dir` with the given cache capacity.
pub async fn tenancy(dir: &Path, capacity: u64) -> anyhow::Result<Tenancy> {
    // SILO_… variables still apply (to compare settings side by side); the data directory,
    // capacity and idle time are the benchmark's.
    let mut settings = Settings::load(None)?;
    settings.data_dir = dir.to_owned();
    settings.cache.capacity = capacity;
    settings.cache.idle_seconds = 3600;
    Ok(silo_web::schema::open(settings).await?)
}

/// The accounts over a benchmark's fleet, and the web server's settings (`SILO_…` variables
/// still apply, as for [`tenancy`]).
pub fn accounts_and_server(tenancy: &Tenancy) -> anyhow::Result<(silo_accounts::Accounts, ServerSettings)> {
    let settings = silo_web::settings::Settings::load(None)?;
    Ok((silo_accounts::Accounts::new(tenancy.clone(), settings.accounts()), settings.server))
}

/// Creates `count` tenants named `{prefix}-{i}`, `concurrency` at a time; prints progress for
/// large fleets.
pub async fn create_tenants(
    tenancy: &Tenancy,
    prefix: &str,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Tenant>> {
    let started = Instant::now();
    let mut last = started;
    let mut tenants = Vec::with_capacity(count);
    let mut created = futures::stream::iter(0..count)
        .map(|i| {
            let request = CreateTenant { slug: format!("{prefix}-{i}"), ..Default::default() };
            async move { tenancy.tenants().create(request, "bench").await }
        })
        .buffer_unordered(concurrency);
    while let Some(tenant) = created.next().await {
        tenants.push(tenant?);
        if count >= 20_000 && tenants.len().is_multiple_of(10_000) {
            eprintln!(
                "  created {} tenants ({:.0}/s, the last 10,000 at {:.0}/s)",
                tenants.len(),
                tenants.len() as f64 / started.elapsed().as_secs_f64(),
                10_000.0 / last.elapsed().as_secs_f64()
            );
            last = Instant::now();
        }
    }
    tenants.sort_by_key(|t| t.slug.clone());
    Ok(tenants)
}
