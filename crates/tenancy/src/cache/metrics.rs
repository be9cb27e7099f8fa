//! Counters of the handle cache, rendered in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (µs) of the open-latency histogram buckets.
const OPEN_BUCKETS_US: [u64; 10] = [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, 250_000, 1_000_000];

/// Counters updated by the cache.
#[derive(Default, Debug)]
pub struct CacheMetrics {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) opens: AtomicU64,
    pub(crate) open_failures: AtomicU64,
    pub(crate) evictions: AtomicU64,
    open_latency_sum_us: AtomicU64,
    open_latency_buckets: [AtomicU64; OPEN_BUCKETS_US.len()],
}

/// A point-in-time copy of the counters.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CacheStats {
    /// `get`s answered from the cache.
    pub hits: u64,
    /// `get`s that had to open (or wait for an open).
    pub misses: u64,
    /// Successful opens.
    pub opens: u64,
    /// Failed opens.
    pub open_failures: u64,
    /// Handles evicted for size or idleness.
    pub evictions: u64,
    /// Sum of open latencies, µs.
    pub open_latency_sum_us: u64,
    /// Cumulative open-latency histogram: (upper bound µs, count).
    pub open_latency_buckets: Vec<(u64, u64)>,
    /// Handles in the cache.
    pub cached_handles: u64,
    /// Handles opening, open or closing (cached or held by requests).
    pub open_handles: u64,
    /// File descriptors of the process.
    pub process_fds: u64,
    /// Of them, descriptors of tenant files (a database or its `-wal`).
    pub tenant_fds: u64,
    /// Tenant files open (one connection each).
    pub open_files: u64,
    /// The process's soft open-file limit.
    pub fd_limit: u64,
    /// Cache capacity.
    pub capacity: u64,
    /// Bytes SQLite holds (every connection of the process).
    pub sqlite_memory: u64,
    /// SQLite's memory budget in bytes (`[cache] memory_mib`).
    pub sqlite_memory_budget: u64,
    /// The process's resident memory in bytes.
    pub resident_memory: u64,
}

impl CacheMetrics {
    pub(crate) fn record_open(&self, latency: Duration) {
        let us = latency.as_micros() as u64;
        self.opens.fetch_add(1, Ordering::Relaxed);
        self.open_latency_sum_us.fetch_add(us, Ordering::Relaxed);
        for (bound, bucket) in OPEN_BUCKETS_US.iter().zip(&self.open_latency_buckets) {
            if us <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            hits: load(&self.hits),
            misses: load(&self.misses),
            opens: load(&self.opens),
            open_failures: load(&self.open_failures),
            evictions: load(&self.evictions),
            open_latency_sum_us: load(&self.open_latency_sum_us),
            open_latency_buckets: OPEN_BUCKETS_US
                .iter()
                .copied()
                .zip(self.open_latency_buckets.iter().map(load))
                .collect(),
            ..CacheStats::default()
        }
    }
}

impl CacheStats {
    /// The counters in the Prometheus text exposition format.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, kind: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        counter("silo_cache_hits_total", "Tenant handle cache hits.", "counter", self.hits);
        counter("silo_cache_misses_total", "Tenant handle cache misses.", "counter", self.misses);
        counter("silo_cache_opens_total", "Tenant databases opened.", "counter", self.opens);
        counter("silo_cache_open_failures_total", "Tenant opens that failed.", "counter", self.open_failures);
        counter(
            "silo_cache_evictions_total",
            "Handles evicted for size or idleness.",
            "counter",
            self.evictions,
        );
        counter("silo_cache_cached_handles", "Handles in the cache.", "gauge", self.cached_handles);
        counter("silo_cache_open_handles", "Handles opening, open or closing.", "gauge", self.open_handles);
        counter("silo_cache_capacity", "Handle cache capacity.", "gauge", self.capacity);
        counter("silo_process_open_fds", "Open file descriptors of the process.", "gauge", self.process_fds);
        counter("silo_process_max_fds", "Soft open-file limit of the process.", "gauge", self.fd_limit);
        counter(
            "silo_cache_open_files",
            "Tenant files open (one connection each).",
            "gauge",
            self.open_files,
        );
        counter(
            "silo_cache_tenant_fds",
            "Descriptors of tenant files (database and -wal).",
            "gauge",
            self.tenant_fds,
        );
        counter(
            "silo_sqlite_memory_bytes",
            "Bytes SQLite holds (all connections).",
            "gauge",
            self.sqlite_memory,
        );
        counter(
            "silo_sqlite_memory_budget_bytes",
            "SQLite's soft heap limit: past it cached pages are recycled.",
            "gauge",
            self.sqlite_memory_budget,
        );
        counter(
            "silo_process_resident_bytes",
            "Resident memory of the process.",
            "gauge",
            self.resident_memory,
        );
        counter(
            "silo_cache_sqlite_bytes_per_open_tenant",
            "SQLite's memory (the control plane's included) per open tenant file.",
            "gauge",
            self.sqlite_memory / self.open_files.max(1),
        );
        let name = "silo_cache_fds_per_open_tenant";
        let per_tenant = self.tenant_fds as f64 / self.open_files.max(1) as f64;
        let _ = writeln!(
            out,
            "# HELP {name} Descriptors per open tenant file (2: the database and its -wal).\n# TYPE {name} gauge\n{name} {per_tenant:.3}"
        );
        let name = "silo_cache_open_latency_seconds";
        let _ = writeln!(out, "# HELP {name} Latency of opening a tenant (open + migration check).");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (bound, count) in &self.open_latency_buckets {
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {count}", *bound as f64 / 1e6);
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.opens);
        let _ = writeln!(out, "{name}_sum {}", self.open_latency_sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {}", self.opens);
        out
    }
}
