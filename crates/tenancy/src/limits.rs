//! File-descriptor and memory budgets of the handle cache.
//!
//! Each open SQLite connection in WAL mode holds three descriptors (the database, `-wal` and
//! `-shm`). At start the soft `RLIMIT_NOFILE` is raised as far as the hard limit allows, and a
//! cache capacity whose connections would not fit under it is clamped (with a warning) so the
//! process never runs out of descriptors for sockets and the control plane.

/// Threads of the runtime's blocking pool, where tenant files are opened and closed. Bounded so
/// an eviction storm queues its closes instead of growing to tokio's default of 512 threads
/// (measured in `silo-bench cache` zipf: 520 threads and 755 MiB RSS unbounded).
pub const MAX_BLOCKING_THREADS: usize = 64;

/// Descriptors per open tenant connection: db, -wal, -shm.
pub const FDS_PER_CONNECTION: u64 = 3;

/// Descriptors kept for everything else: the control plane, sockets, logs, temp files.
pub const RESERVED_FDS: u64 = 512;

/// Estimated resident memory of one idle connection besides its page cache (schema, prepared
/// statements, the driver's worker thread stack), in KiB; `silo-bench cache` measures it.
pub const CONNECTION_OVERHEAD_KIB: u64 = 256;

/// Raises the soft open-file limit to the hard limit; returns the limit now in force.
pub fn raise_nofile_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(1024)
        }
    }
}

/// The largest capacity whose connections fit under `fd_limit`, and a warning when `capacity`
/// had to be lowered to it.
pub fn clamp_capacity(capacity: u64, connections_per_tenant: u32, fd_limit: u64) -> (u64, Option<String>) {
    let per_tenant = FDS_PER_CONNECTION * u64::from(connections_per_tenant.max(1));
    let fit = fd_limit.saturating_sub(RESERVED_FDS) / per_tenant;
    if capacity <= fit {
        (capacity, None)
    } else {
        let warning = format!(
            "cache capacity {capacity} needs {} file descriptors ({per_tenant} per tenant) but the limit is {fd_limit} \
             ({RESERVED_FDS} kept for other uses); using capacity {fit}. Raise LimitNOFILE to keep {capacity}.",
            capacity * per_tenant
        );
        (fit.max(1), Some(warning))
    }
}

/// Worst-case resident memory of a full cache, in bytes.
pub fn worst_case_memory(capacity: u64, connections_per_tenant: u32, page_cache_kib: u32) -> u64 {
    capacity
        * u64::from(connections_per_tenant.max(1))
        * (u64::from(page_cache_kib) + CONNECTION_OVERHEAD_KIB)
        * 1024
}

/// Open descriptors of this process (0 where `/proc` is unavailable).
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map(|dir| dir.count() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_within_the_limit_is_kept() {
        assert_eq!(clamp_capacity(1024, 1, 20_000), (1024, None));
        assert_eq!(clamp_capacity(3000, 2, 20_000), (3000, None));
    }

    #[test]
    fn capacity_beyond_the_limit_is_clamped_with_a_warning() {
        let (capacity, warning) = clamp_capacity(10_000, 1, 20_000);
        assert_eq!(capacity, (20_000 - RESERVED_FDS) / 3);
        assert!(warning.unwrap().contains("LimitNOFILE"));
        assert_eq!(clamp_capacity(10, 1, 100).0, 1);
    }

    #[test]
    fn memory_estimate_scales_with_capacity() {
        assert_eq!(worst_case_memory(1024, 1, 512), 1024 * 768 * 1024);
        assert!(raise_nofile_limit() >= 1024);
        assert!(open_fds() > 0);
    }
}
