//! Settings: defaults in code, then `silo.toml`, then `SILO_…` environment variables (`__`
//! separates nesting levels, e.g. `SILO_CACHE__CAPACITY=2048`, `SILO_REGIONS__EU__ROOT=/mnt/eu`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
pub use silo_core::Secret;
use silo_storage::{Placement, RegionName, SqliteTuning};

use crate::{Error, Result};

/// The name of the region that always exists unless configured otherwise.
pub const DEFAULT_REGION: &str = "local";

/// The fleet's settings: where data lives, the regions, the handle cache and backups. The
/// process's top-level settings (the web server's and the accounts' beside these) live in
/// `apps/web`; all are read from the same file and environment by [`load`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Where `control.db`, the default region and the local object store live.
    pub data_dir: PathBuf,
    /// Region new tenants go to when none is named.
    pub default_region: String,
    /// Named storage roots. `local` defaults to `<data_dir>/regions/local`.
    pub regions: BTreeMap<String, RegionSettings>,
    /// The tenant handle cache.
    pub cache: CacheSettings,
    /// `[backup]`: where backups go, how often, how long they are kept.
    pub backup: BackupSettings,
    /// `[jobs]`: the durable job workers of `silo serve`.
    pub jobs: JobSettings,
    /// `[tenants]`: the tenant lifecycle.
    pub tenants: TenantSettings,
    /// `[exports]`: what tenant and data-subject exports may cost.
    pub exports: ExportSettings,
    /// `[control]`: where the control plane lives (`control.db` unless a PostgreSQL URL).
    pub control: ControlSettings,
    /// `[cluster]`: this server's name and address among the servers of the control plane.
    pub cluster: ClusterSettings,
    /// What time it is for this process: the system's clock, or a test's (never read from a
    /// file). Every "now" the control plane stores or compares comes from here.
    #[serde(skip)]
    pub clock: silo_core::ProcessClock,
}

/// `[control]`: the control plane's database.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlSettings {
    /// `postgres://user:password@host:port/database`: the control plane on PostgreSQL (for a
    /// cluster of nodes; `SILO_CONTROL__URL`). Unset: `control.db` in the data directory.
    pub url: Option<Secret>,
    /// Connections to PostgreSQL this process keeps at most.
    pub max_connections: Option<u32>,
}

/// `[cluster]`: this server among the servers of its control plane ([`crate::nodes`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterSettings {
    /// This server's name, unique among the control plane's servers (default: the host's
    /// name).
    pub node: Option<String>,
    /// Where the other servers reach it, an `http://` address on their private network, e.g.
    /// `http://10.0.0.5:8080` (default in a cluster: the address it listens on, which must
    /// then not be 0.0.0.0; outside a cluster: `server.public_url`, else that address).
    pub advertise: Option<String>,
    /// Seconds between heartbeats; a server silent for three is gone, and its lease (three
    /// heartbeats) lets other servers take its tenants over.
    pub heartbeat_seconds: u64,
    /// Shared by every server of a cluster: authenticates the requests one forwards to
    /// another. Set, several servers may share a PostgreSQL control plane (each serving the
    /// tenants it owns); unset, a control plane has one server.
    pub secret: Option<Secret>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self { node: None, advertise: None, heartbeat_seconds: 5, secret: None }
    }
}

impl ClusterSettings {
    /// This server's name: `node`, else the host's name.
    pub fn node_name(&self) -> String {
        self.node.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "silo".to_owned())
        })
    }

    /// The time between heartbeats.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_seconds.max(1))
    }

    /// A server's lease on its tenants: three heartbeats.
    pub fn lease(&self) -> Duration {
        self.heartbeat() * 3
    }

    /// The cluster's shared secret, when set (an empty one is none).
    pub fn secret(&self) -> Option<&Secret> {
        self.secret.as_ref().filter(|s| !s.expose().trim().is_empty())
    }
}

/// `[exports]`: the bounds on exports (each writes a zip as large as a workspace) and their
/// downloads (a link works without signing in).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportSettings {
    /// Exports started per workspace, and per person, within 24 hours.
    pub per_day: u32,
    /// Bytes of export zips written per workspace, and per person, within 24 hours: once
    /// reached, the next export is refused until the day has passed (one export is always
    /// allowed, however large).
    pub bytes_per_day: u64,
    /// An export is refused when the data directory's disk would keep less free space than
    /// this (MB, 10⁶ bytes) after writing it.
    pub min_free_mb: u64,
    /// Downloads of one export link at once.
    pub downloads_per_link: u32,
    /// Downloads at once from one client address.
    pub downloads_per_client: u32,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            per_day: 5,
            bytes_per_day: 5_000_000_000,
            min_free_mb: 1_000,
            downloads_per_link: 2,
            downloads_per_client: 4,
        }
    }
}

/// `[tenants]`: the tenant lifecycle.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct TenantSettings {
    /// A deleted tenant can be brought back (by an owner or an operator) for this many days;
    /// then a job purges it (files, backups, data key). 0: purged as soon as a worker runs.
    pub deletion_grace_days: u64,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self { deletion_grace_days: 30 }
    }
}

/// `[jobs]`: the durable job workers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSettings {
    /// Jobs run at once by one `silo serve` in the main lane (erasure, purge, billing,
    /// backups, moves: everything but exports).
    pub workers: usize,
    /// Exports run at once, in a lane of their own: however many are waiting, they never hold
    /// up an erasure, a purge or the billing run.
    pub export_workers: usize,
    /// A job's lease, seconds: a job whose worker stopped renewing it (a killed process) is
    /// taken up again this long after its last heartbeat.
    pub lease_seconds: u64,
    /// Finished jobs (done, failed, cancelled) are deleted this many days after they finished
    /// (checked hourly); at least the life of an export link.
    pub keep_finished_days: u64,
}

impl Default for JobSettings {
    fn default() -> Self {
        Self { workers: 2, export_workers: 1, lease_seconds: 30, keep_finished_days: 30 }
    }
}

impl JobSettings {
    /// The main lane's worker pool.
    pub fn pool(&self) -> silo_jobs::PoolSettings {
        self.lane(self.workers)
    }

    /// The export lane's worker pool.
    pub fn export_pool(&self) -> silo_jobs::PoolSettings {
        self.lane(self.export_workers)
    }

    fn lane(&self, workers: usize) -> silo_jobs::PoolSettings {
        silo_jobs::PoolSettings {
            concurrency: workers.max(1),
            lease: Duration::from_secs(self.lease_seconds.max(3)),
            poll: Duration::from_millis(500),
        }
    }

    /// How long finished jobs are kept (never less than an export link lives).
    pub fn keep_finished(&self) -> Duration {
        Duration::from_secs(self.keep_finished_days.max(crate::jobs::EXPORT_DAYS) * 86_400)
    }
}

/// Where backups are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupStoreKind {
    /// A local directory (`backup.local_dir`, default `<data_dir>/objects`).
    #[default]
    Local,
    /// An S3 bucket (`[backup.s3]`).
    S3,
}

/// `[backup]`: encrypted per-tenant backups.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct BackupSettings {
    /// `local` or `s3`.
    pub store: BackupStoreKind,
    /// The local store's directory; `<data_dir>/objects` when absent.
    pub local_dir: Option<PathBuf>,
    /// `[backup.s3]`: bucket, prefix, region, endpoint, path style, credentials.
    pub s3: silo_storage::objects::S3Settings,
    /// The master key file (64 hex characters, created with mode 0600 on first use);
    /// `<data_dir>/master.key` when absent. `master_key` overrides it.
    pub master_key_file: Option<PathBuf>,
    /// The master key itself (64 hex characters), from `SILO_MASTER_KEY` (see [`load`]);
    /// redacted in logs.
    pub master_key: Option<Secret>,
    /// Whether `silo serve` runs the backup scheduler.
    pub schedule: bool,
    /// How often the scheduler backs up changed tenants: `90s`, `15m`, `1h` (default `15m`).
    pub interval: String,
    /// Continuous backup: a tenant's commits reach the store within this (default `1s`); `0`
    /// turns it off (then only the scheduler's snapshots are taken).
    pub continuous_interval: String,
    /// Every backup younger than this many hours is kept.
    pub keep_all_hours: u64,
    /// Beyond that, the newest backup of each day is kept for this many days.
    pub keep_daily_days: u64,
    /// How many backups the daily verification restores and checks.
    pub verify_sample: usize,
    /// Tenants backed up at once (0: two per core, so one backup's fsync overlaps another's
    /// compression; each holds its snapshot and object in memory meanwhile).
    pub concurrency: usize,
}

impl Default for BackupSettings {
    fn default() -> Self {
        Self {
            store: BackupStoreKind::Local,
            local_dir: None,
            s3: Default::default(),
            master_key_file: None,
            master_key: None,
            schedule: true,
            interval: "15m".to_owned(),
            continuous_interval: "1s".to_owned(),
            keep_all_hours: 24,
            keep_daily_days: 30,
            verify_sample: 5,
            concurrency: 0,
        }
    }
}

impl BackupSettings {
    /// The scheduler's interval, parsed from `interval`.
    pub fn interval(&self) -> Result<Duration> {
        parse_duration(&self.interval).ok_or_else(|| {
            Error::Config(format!("backup.interval `{}`: use e.g. 90s, 15m or 1h", self.interval))
        })
    }

    /// Continuous backup's interval, parsed from `continuous_interval` (`None`: off).
    pub fn continuous_interval(&self) -> Result<Option<Duration>> {
        if matches!(self.continuous_interval.trim(), "0" | "0s" | "off") {
            return Ok(None);
        }
        parse_duration(&self.continuous_interval).map(Some).ok_or_else(|| {
            Error::Config(format!(
                "backup.continuous_interval `{}`: use e.g. 1s or 5s, or 0 to turn it off",
                self.continuous_interval
            ))
        })
    }

    /// Tenants backed up at once.
    pub fn concurrency(&self) -> usize {
        match self.concurrency {
            // Measured on 2 cores, 1,000 tenants: 4 at once moved 174 MiB/s against 130 for 2.
            0 => 2 * std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// `90s`, `15m`, `2h`, `1d` or a bare number of seconds; at least one second.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let number: u64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "m" => number.checked_mul(60)?,
        "h" => number.checked_mul(3600)?,
        "d" => number.checked_mul(86_400)?,
        _ => return None,
    };
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// One region's storage root.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegionSettings {
    /// Directory under which `tenants/<xx>/<uuid>.db` files live.
    pub root: PathBuf,
}

/// The LRU handle cache.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheSettings {
    /// Open tenant handles kept at most; 0 (the default): as many as the open-file limit and
    /// half the process's memory allow (see [`crate::limits::auto_capacity`]).
    pub capacity: u64,
    /// A handle unused for this many seconds is closed.
    pub idle_seconds: u64,
    /// Page cache per connection, KiB (at most; see `memory_mib`).
    pub page_cache_kib: u32,
    /// SQLite's memory for the whole process, MiB: past it, a page read reuses the least
    /// recently used cached page of any tenant instead of adding one (SQLite's soft heap
    /// limit; nothing fails). 0 (the default): [`crate::limits::MEMORY_PER_SLOT_KIB`] per
    /// cache slot, at least [`crate::limits::MIN_AUTO_BUDGET_MIB`].
    pub memory_mib: u64,
    /// How long a connection waits for a lock, ms.
    pub busy_timeout_ms: u64,
    /// How long a lease waits for a tenant's connections to close, ms.
    pub lease_timeout_ms: u64,
    /// Tenant files opened at once at most (0: one per core).
    pub open_concurrency: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            default_region: DEFAULT_REGION.to_owned(),
            regions: BTreeMap::new(),
            cache: CacheSettings::default(),
            backup: BackupSettings::default(),
            jobs: JobSettings::default(),
            tenants: TenantSettings::default(),
            exports: ExportSettings::default(),
            control: ControlSettings::default(),
            cluster: ClusterSettings::default(),
            clock: silo_core::ProcessClock::default(),
        }
    }
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            capacity: 0,
            idle_seconds: 600,
            page_cache_kib: 512,
            memory_mib: 0,
            busy_timeout_ms: 5000,
            lease_timeout_ms: 30_000,
            open_concurrency: 0,
        }
    }
}

/// Loads settings of type `T` (the fleet's, or the process's which include them) with the one
/// loader, [`silo_core::settings::load`].
pub fn load<T: Serialize + DeserializeOwned + Default>(config_file: Option<&Path>) -> Result<T> {
    silo_core::settings::load(config_file).map_err(|e| Error::Config(e.0))
}

impl Settings {
    /// Loads the fleet's settings alone (benchmarks): see [`load`].
    pub fn load(config_file: Option<&Path>) -> Result<Self> {
        load(config_file)
    }

    /// The path of the control-plane database.
    pub fn control_db_path(&self) -> PathBuf {
        self.data_dir.join("control.db")
    }

    /// The configured regions, with `local` under the data directory unless overridden.
    pub fn placement(&self) -> Result<Placement> {
        let mut roots =
            vec![(RegionName::parse(DEFAULT_REGION)?, self.data_dir.join("regions").join(DEFAULT_REGION))];
        for (name, region) in &self.regions {
            let name = RegionName::parse(name)?;
            roots.retain(|(existing, _)| existing != &name);
            roots.push((name, region.root.clone()));
        }
        let placement = Placement::new(roots);
        placement.root(&self.default_region)?;
        Ok(placement)
    }

    /// Per-connection SQLite settings of tenant databases.
    pub fn tenant_tuning(&self) -> SqliteTuning {
        SqliteTuning {
            busy_timeout: Duration::from_millis(self.cache.busy_timeout_ms),
            page_cache_kib: self.cache.page_cache_kib,
        }
    }

    /// Where the local object store keeps backups.
    pub fn local_objects_dir(&self) -> PathBuf {
        self.backup.local_dir.clone().unwrap_or_else(|| self.data_dir.join("objects"))
    }

    /// The master key file.
    pub fn master_key_path(&self) -> PathBuf {
        self.backup.master_key_file.clone().unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    /// Settings rooted in `data_dir` with everything else at its default (tests, benches).
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        Self { data_dir: data_dir.into(), ..Self::default() }
    }
}

/// Loads the master key: `backup.master_key` (from `SILO_MASTER_KEY`), else the key file
/// (created on first use).
pub fn load_master_key(settings: &Settings) -> Result<silo_storage::crypto::MasterKey> {
    match &settings.backup.master_key {
        Some(hex) => silo_storage::crypto::MasterKey::from_hex(hex.expose())
            .map_err(|e| Error::Config(format!("SILO_MASTER_KEY: {e}"))),
        None => {
            let path = settings.master_key_path();
            let (key, created) = silo_storage::crypto::MasterKey::load_or_create(&path)?;
            if created {
                tracing::warn!(
                    path = %path.display(),
                    "generated a new master key; keep a copy of it apart from the backups (without it no backup can be restored)"
                );
            }
            Ok(key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_intervals_parse() {
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        for bad in ["", "0m", "m", "15 minutes", "-1m", "1.5h"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn defaults_have_one_local_region_under_the_data_dir() {
        let settings = Settings::for_data_dir("/srv/data");
        let placement = settings.placement().unwrap();
        assert_eq!(placement.names(), vec!["local"]);
        assert_eq!(placement.root("local").unwrap(), Path::new("/srv/data/regions/local"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's test jail fixes the closure's error type
    fn file_then_env_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "custom.toml",
                "data_dir = \"/var/lib/silo\"\n[cache]\ncapacity = 64\n[regions.eu]\nroot = \"/mnt/eu\"\n",
            )?;
            jail.set_env("SILO_CACHE__CAPACITY", "128");
            jail.set_env("SILO_REGIONS__US__ROOT", "/mnt/us");
            let settings = Settings::load(Some(Path::new("custom.toml"))).unwrap();
            assert_eq!(settings.cache.capacity, 128);
            assert_eq!(settings.data_dir, PathBuf::from("/var/lib/silo"));
            let placement = settings.placement().unwrap();
            assert_eq!(placement.names(), vec!["eu", "local", "us"]);
            assert_eq!(placement.root("us").unwrap(), Path::new("/mnt/us"));
            Ok(())
        });
    }

    #[test]
    fn missing_config_file_and_bad_region_are_clear_errors() {
        let err = Settings::load(Some(Path::new("/nonexistent/silo.toml"))).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        let mut settings = Settings::for_data_dir("/d");
        settings.default_region = "mars".into();
        assert!(settings.placement().unwrap_err().to_string().contains("unknown region `mars`"));
    }
}
