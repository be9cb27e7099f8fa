//! File-descriptor and memory budgets of the handle cache.
//!
//! A cached tenant is one SQLite connection holding two descriptors (the database and its
//! `-wal`; the WAL index is in heap memory and the lock-free VFS keeps no descriptor after a
//! close: see `silo_storage::sqlite::open_sync`). At start the soft `RLIMIT_NOFILE` is raised as far as the hard limit allows, and a
//! cache capacity whose connections would not fit under it is clamped (with a warning) so the
//! process never runs out of descriptors for sockets and the control plane.
//!
//! The default capacity (`cache.capacity = 0`) follows from both budgets ([`auto_capacity`]):
//! as many tenants as fit under the descriptor limit and whose worst-case memory fits in half
//! of what the process may use (its cgroup's `memory.max`, i.e. systemd's `MemoryMax=`, else
//! the machine's RAM).

/// Threads of the runtime's blocking pool, where tenant files are opened and closed. Bounded so
/// an eviction storm queues its closes instead of growing to tokio's default of 512 threads
/// (measured in `silo-bench cache` zipf: 520 threads and 755 MiB RSS unbounded).
pub const MAX_BLOCKING_THREADS: usize = 64;

/// Descriptors per cached tenant: its one connection's database file and `-wal`.
pub const FDS_PER_TENANT: u64 = 2;

/// Descriptors kept for everything else: the control plane, sockets, logs, temp files.
pub const RESERVED_FDS: u64 = 512;

/// Estimated resident memory of one idle connection besides its page cache (schema, prepared
/// statements, the heap WAL index of 32 KiB), in KiB; `silo-bench cache` measures it.
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
pub fn clamp_capacity(capacity: u64, fd_limit: u64) -> (u64, Option<String>) {
    let per_tenant = FDS_PER_TENANT;
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

/// Share of the process's memory a full cache may take at worst when the capacity is automatic.
pub const AUTO_MEMORY_DIVISOR: u64 = 2;

/// The automatic capacity: the smaller of what fits under `fd_limit` and what fits in half of
/// `memory` (bytes; `None`: unknown, descriptors decide), at least 1. Also returns both fits
/// for the start-up log.
pub fn auto_capacity(page_cache_kib: u32, fd_limit: u64, memory: Option<u64>) -> (u64, u64, Option<u64>) {
    let fd_fit = (fd_limit.saturating_sub(RESERVED_FDS) / FDS_PER_TENANT).max(1);
    let per_tenant = worst_case_memory(1, page_cache_kib).max(1);
    let memory_fit = memory.map(|bytes| bytes / AUTO_MEMORY_DIVISOR / per_tenant);
    (fd_fit.min(memory_fit.unwrap_or(u64::MAX)).max(1), fd_fit, memory_fit)
}

/// The memory this process may use: its cgroup's `memory.max` when one is set (cgroup v2),
/// else the machine's `MemTotal`; `None` where neither can be read.
pub fn memory_limit() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|info| {
        info.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    });
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|groups| {
        let path = groups.lines().find_map(|l| l.strip_prefix("0::"))?.trim().to_owned();
        let max = std::fs::read_to_string(format!("/sys/fs/cgroup{path}/memory.max")).ok()?;
        max.trim().parse::<u64>().ok() // `max` (no limit) does not parse
    });
    match (cgroup, total) {
        (Some(limit), Some(total)) => Some(limit.min(total)),
        (limit, total) => limit.or(total),
    }
}

/// SQLite's memory budget per cache slot when `[cache] memory_mib` is 0, KiB. An open tenant
/// file needs ~80–120 KiB besides its pages (schema ~25 KiB, a heap WAL index of 32 KiB,
/// statements, 8 KiB of lookaside), so a full cache at this default keeps few pages and reads
/// them from the OS's file cache: measured with `silo-bench http` at 10,000 tenants (9,744
/// cached), a budget below that floor served the same req/s as 128 KiB per slot (and as no
/// budget at all for uniform reads) with ~100 MiB less RSS. A cache that is not full leaves the
/// pool to the tenants that are open.
pub const MEMORY_PER_SLOT_KIB: u64 = 112;

/// The automatic budget's floor: the budget is the whole process's (the control plane's page
/// cache too), and a budget below what is open makes every SQLite allocation first try to free
/// pages — a small cache (`capacity = 64`: 7 MiB) must not starve the control plane.
pub const MIN_AUTO_BUDGET_MIB: u64 = 64;

/// SQLite's memory budget in bytes: `memory_mib` when set, else [`MEMORY_PER_SLOT_KIB`] per
/// slot of a cache of `capacity`, at least [`MIN_AUTO_BUDGET_MIB`].
pub fn memory_budget(memory_mib: u64, capacity: u64) -> u64 {
    if memory_mib > 0 {
        memory_mib * 1024 * 1024
    } else {
        (capacity * MEMORY_PER_SLOT_KIB * 1024).max(MIN_AUTO_BUDGET_MIB * 1024 * 1024)
    }
}

/// Worst-case resident memory of a full cache, in bytes.
pub fn worst_case_memory(capacity: u64, page_cache_kib: u32) -> u64 {
    capacity * (u64::from(page_cache_kib) + CONNECTION_OVERHEAD_KIB) * 1024
}

/// `Some((open, limit))` when this process has (nearly) no file descriptor left under its
/// current soft limit. Listing `/proc/self/fd` itself needs one, so a listing that fails
/// where `/proc` exists counts as exhausted.
pub fn descriptors_exhausted() -> Option<(u64, u64)> {
    let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?.0;
    match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => {
            let open = dir.count() as u64;
            (open + 16 >= limit).then_some((open, limit))
        }
        Err(_) if std::path::Path::new("/proc/self").exists() => Some((limit, limit)),
        Err(_) => None,
    }
}

/// Open descriptors of this process on tenant files (`…/tenants/<xx>/<uuid>.db` and its
/// `-wal`), by the path each descriptor of `/proc/self/fd` points to.
pub fn tenant_fds() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return 0 };
    dir.filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| {
            let text = target.to_string_lossy();
            text.contains("/tenants/") && (text.ends_with(".db") || text.ends_with(".db-wal"))
        })
        .count() as u64
}

/// Open descriptors of this process (0 where `/proc` is unavailable).
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map(|dir| dir.count() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_budget_is_the_setting_or_a_share_per_slot() {
        assert_eq!(memory_budget(512, 10_000), 512 * 1024 * 1024);
        assert_eq!(memory_budget(0, 10_000), 10_000 * MEMORY_PER_SLOT_KIB * 1024);
        assert_eq!(memory_budget(0, 64), MIN_AUTO_BUDGET_MIB * 1024 * 1024, "a small cache keeps a floor");
    }

    #[test]
    fn capacity_within_the_limit_is_kept() {
        assert_eq!(clamp_capacity(1024, 20_000), (1024, None));
        assert_eq!(clamp_capacity(9_744, 20_000), (9_744, None));
    }

    #[test]
    fn capacity_beyond_the_limit_is_clamped_with_a_warning() {
        let (capacity, warning) = clamp_capacity(10_000, 20_000);
        assert_eq!(capacity, (20_000 - RESERVED_FDS) / 2);
        assert!(warning.unwrap().contains("LimitNOFILE"));
        assert_eq!(clamp_capacity(10, 100).0, 1);
    }

    #[test]
    fn automatic_capacity_takes_the_tighter_budget() {
        let gib = 1024 * 1024 * 1024;
        // 20,000 descriptors fit 9,744 tenants (2 each); 4 GiB (half: 2 GiB at 768 KiB each) 2,730.
        assert_eq!(auto_capacity(512, 20_000, Some(4 * gib)), (2_730, 9_744, Some(2_730)));
        // Plenty of memory: the descriptors decide; unknown memory too.
        assert_eq!(auto_capacity(512, 20_000, Some(64 * gib)).0, 9_744);
        assert_eq!(auto_capacity(512, 20_000, None), (9_744, 9_744, None));
        assert_eq!(auto_capacity(512, 100, Some(1)).0, 1);
        assert!(memory_limit().is_some_and(|bytes| bytes > 64 * 1024 * 1024));
    }

    #[test]
    fn memory_estimate_scales_with_capacity() {
        assert_eq!(worst_case_memory(1024, 512), 1024 * 768 * 1024);
        assert!(raise_nofile_limit() >= 1024);
        assert!(open_fds() > 0);
    }
}
