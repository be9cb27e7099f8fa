//! The retention policy: every backup younger than `keep_all`, then the newest backup of each
//! UTC day for `keep_daily_days`, and always a tenant's newest backup whatever its age.

use std::time::{Duration, SystemTime};

use super::catalogue::Backup;
use crate::control::utc_timestamp;

/// The ids among one tenant's backups (any order) that the policy lets go.
pub fn expired(backups: &[Backup], now: SystemTime, keep_all: Duration, keep_daily_days: u64) -> Vec<String> {
    let mut sorted: Vec<&Backup> = backups.iter().collect();
    sorted.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
    let keep_all_since = utc_timestamp(now.checked_sub(keep_all).unwrap_or(SystemTime::UNIX_EPOCH));
    let daily_since = utc_timestamp(
        now.checked_sub(Duration::from_secs(keep_daily_days.saturating_mul(86_400)))
            .unwrap_or(SystemTime::UNIX_EPOCH),
    );
    let mut days_kept = std::collections::HashSet::new();
    let mut expired = Vec::new();
    for (index, backup) in sorted.into_iter().enumerate() {
        let day = backup.created_at.date();
        let keep = index == 0
            || backup.created_at >= keep_all_since
            || (day >= daily_since.date() && days_kept.insert(day.to_owned()));
        if !keep {
            expired.push(backup.id.clone());
        }
    }
    expired
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::BackupKind;

    fn backup(id: &str, created_at: &str) -> Backup {
        Backup {
            id: id.into(),
            tenant_id: "t".into(),
            created_at: crate::Timestamp::parse(created_at).unwrap(),
            kind: BackupKind::Scheduled,
            size: 1,
            db_size: 1,
            sha256: String::new(),
            schema_version: 1,
            object_key: format!("tenants/t/backups/{id}"),
            verified_at: None,
            verify_error: None,
        }
    }

    #[test]
    fn keeps_recent_then_one_per_day_then_nothing_but_the_newest() {
        // now = 2026-11-22T12:00:00Z
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_348_800);
        assert_eq!(utc_timestamp(now).as_str(), "2026-11-22T12:00:00.000Z");
        let backups = [
            backup("recent-1", "2026-11-22T11:45:00.000Z"),
            backup("recent-2", "2026-11-21T13:00:00.000Z"),
            backup("day21-late", "2026-11-21T11:00:00.000Z"),
            backup("day21-early", "2026-11-21T01:00:00.000Z"),
            backup("day20-late", "2026-11-20T23:00:00.000Z"),
            backup("day20-early", "2026-11-20T02:00:00.000Z"),
            backup("old", "2026-09-01T10:00:00.000Z"),
        ];
        let mut gone = expired(&backups, now, Duration::from_secs(24 * 3600), 30);
        gone.sort();
        assert_eq!(gone, ["day20-early", "day21-early", "old"]);

        let only_old =
            [backup("old-1", "2025-01-01T00:00:00.000Z"), backup("old-2", "2025-01-02T00:00:00.000Z")];
        assert_eq!(
            expired(&only_old, now, Duration::from_secs(3600), 30),
            ["old-1"],
            "the newest always stays"
        );
    }
}
