//! The retention policy: every backup younger than `keep_all`, then the newest backup of each
//! UTC day for `keep_daily_days`, and always a tenant's newest backup whatever its age.

use std::time::{Duration, SystemTime};

use super::catalogue::Backup;
use silo_tenancy::control::utc_timestamp;

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

/// The ids among the control plane's copies `(id, time)` that their policy lets go: the
/// newest [`KEEP_NEWEST`](super::control_copies::KEEP_NEWEST) stay, then the newest of each
/// hour younger than `keep_all`, then the newest of each UTC day for `keep_daily_days`. (A
/// copy is taken every second `control.db` changes: keeping all of a day's would be 86,400.)
pub fn expired_copies(
    copies: &[(String, SystemTime)],
    now: SystemTime,
    keep_all: Duration,
    keep_daily_days: u64,
) -> Vec<String> {
    let mut sorted: Vec<&(String, SystemTime)> = copies.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
    let hourly_since = now.checked_sub(keep_all).unwrap_or(SystemTime::UNIX_EPOCH);
    let daily_since = now
        .checked_sub(Duration::from_secs(keep_daily_days.saturating_mul(86_400)))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let since_epoch = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    let (mut hours, mut days) = (std::collections::HashSet::new(), std::collections::HashSet::new());
    let mut expired = Vec::new();
    for (index, (id, at)) in sorted.into_iter().enumerate() {
        // Every copy claims its hour and day, kept for another reason or not: only the newest
        // of each is the one a period keeps.
        let first_of_hour = hours.insert(since_epoch(*at) / 3600);
        let first_of_day = days.insert(since_epoch(*at) / 86_400);
        let keep = index < super::control_copies::KEEP_NEWEST
            || (*at >= hourly_since && first_of_hour)
            || (*at >= daily_since && first_of_day);
        if !keep {
            expired.push(id.clone());
        }
    }
    expired
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackupKind;

    fn backup(id: &str, created_at: &str) -> Backup {
        Backup {
            id: id.into(),
            tenant_id: "t".into(),
            created_at: silo_core::Timestamp::parse(created_at).unwrap(),
            kind: BackupKind::Scheduled,
            size: 1,
            db_size: 1,
            sha256: String::new(),
            schema_version: 1,
            object_key: format!("tenants/t/backups/{id}"),
            verified_at: None,
            verify_error: None,
            chain_until: None,
        }
    }

    #[test]
    fn control_copies_keep_the_newest_then_one_an_hour_then_one_a_day() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_348_800); // 12:00 UTC
        let at = |seconds_ago: u64| now - Duration::from_secs(seconds_ago);
        // 100 copies a second apart in the last minutes, two in each of the 3 hours before,
        // two on each of 2 days before, one 40 days ago.
        let mut copies: Vec<(String, SystemTime)> =
            (0..100).map(|i| (format!("recent-{i:03}"), at(i))).collect();
        for hour in 1..=3 {
            copies.push((format!("hour-{hour}-late"), at(hour * 3600 + 60)));
            copies.push((format!("hour-{hour}-early"), at(hour * 3600 + 1800)));
        }
        for day in 2..=3 {
            copies.push((format!("day-{day}-late"), at(day * 86_400 - 3600)));
            copies.push((format!("day-{day}-early"), at(day * 86_400)));
        }
        copies.push(("old".into(), at(40 * 86_400)));
        let mut gone = expired_copies(&copies, now, Duration::from_secs(24 * 3600), 30);
        gone.sort();
        let mut expected: Vec<String> = (60..100).map(|i| format!("recent-{i:03}")).collect();
        expected.extend(
            ["day-2-early", "day-3-early", "hour-1-early", "hour-2-early", "hour-3-early", "old"]
                .map(String::from),
        );
        expected.sort();
        assert_eq!(gone, expected);
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
