//! [`ErrorKind`]: what kind of failure an error is. Every layer's error type has a `kind()`;
//! the web layer and the CLI decide status codes and exit messages from it.

/// The kinds of failure, as the caller sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed or unacceptable input (422).
    Invalid,
    /// Nothing by that name, or nothing the caller may see (404).
    NotFound,
    /// Seen, but not the caller's to do (403).
    Forbidden,
    /// The current state does not allow it: a taken slug, a wrong lifecycle step (409).
    Conflict,
    /// The tenant is suspended (423).
    Locked,
    /// Deleted for good (410).
    Gone,
    /// Too many attempts; retry later (429).
    Throttled,
    /// A file operation holds the tenant for a moment (503, retry).
    Unavailable,
    /// Another server of the cluster serves the tenant (503, retry; a job is left for that
    /// server to run).
    Elsewhere,
    /// The machine is saturated: hashing slots, file descriptors (503, retry).
    Overloaded,
    /// The disk is full (503: the machine's state, not the caller's input).
    DiskFull,
    /// The tenant's plan allows no more data (507): theirs to change (delete, upgrade).
    QuotaExceeded,
    /// The tenant's file cannot be served until an operator acts (503, logged as an error).
    Broken,
    /// A fault on our side (500, logged).
    Internal,
}

impl ErrorKind {
    /// The caller's doing: input or state they can change.
    pub fn is_users(self) -> bool {
        matches!(
            self,
            ErrorKind::Invalid
                | ErrorKind::NotFound
                | ErrorKind::Forbidden
                | ErrorKind::Conflict
                | ErrorKind::Locked
                | ErrorKind::Gone
                | ErrorKind::Throttled
                | ErrorKind::QuotaExceeded
        )
    }
}

/// Whether SQLite said, through sqlx, that the disk (or the file-size limit) is full: the
/// machine's state ([`ErrorKind::DiskFull`]), not a fault of ours.
pub fn sqlx_disk_full(error: &sqlx::Error) -> bool {
    // SQLITE_FULL = 13 (the primary result code: extended codes keep it in the low byte).
    matches!(error, sqlx::Error::Database(db) if db.code().and_then(|c| c.parse::<i32>().ok()).is_some_and(|c| c & 0xff == 13))
}

/// Whether sqlx could not reach its database: a control plane on PostgreSQL that is down,
/// restarting, refusing connections or out of them, or a pool whose wait ran out. The
/// machine's state ([`ErrorKind::Unavailable`]: retry), not a fault of ours.
pub fn sqlx_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => true,
        // A connection that broke mid-conversation (a middlebox that accepts and drops, a
        // server gone during the TLS handshake) reads as a protocol error.
        sqlx::Error::Protocol(_) => true,
        // SQLSTATE class 08 (connection exception), 57P01–57P03 (shutting down, crashed,
        // starting up), 53300 (too many connections). SQLite's codes are numbers.
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// The kind of a database error from sqlx: a full disk, an unreachable or busy database,
/// text the database cannot hold, or a fault of ours.
pub fn sqlx_kind(error: &sqlx::Error) -> ErrorKind {
    // PostgreSQL's SQLSTATEs (SQLite's codes are numbers, none of these).
    let state = match error {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    };
    match state.as_deref() {
        // Disk full.
        Some("53100") => ErrorKind::DiskFull,
        // A deadlock, a lock not available, a statement cancelled: try again.
        Some("40P01" | "55P03" | "57014") => ErrorKind::Unavailable,
        // Text PostgreSQL cannot store (a NUL character): the caller's input.
        Some("22021" | "22P05") => ErrorKind::Invalid,
        _ if sqlx_disk_full(error) => ErrorKind::DiskFull,
        _ if sqlx_unreachable(error) => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

/// Whether SQLite said, through rusqlite, that the disk (or the file-size limit) is full.
pub fn rusqlite_disk_full(error: &rusqlite::Error) -> bool {
    matches!(error, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_recognised_from_rusqlite() {
        let full = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(13), None);
        assert!(rusqlite_disk_full(&full));
        let busy = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(5), None);
        assert!(!rusqlite_disk_full(&busy));
        assert!(!sqlx_disk_full(&sqlx::Error::RowNotFound));
    }

    #[test]
    fn an_unreachable_database_is_the_machines_state() {
        assert_eq!(sqlx_kind(&sqlx::Error::PoolTimedOut), ErrorKind::Unavailable);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(sqlx_kind(&sqlx::Error::Io(refused)), ErrorKind::Unavailable);
        let dropped = sqlx::Error::Protocol("unexpected response from SSLRequest: 0x00".into());
        assert_eq!(sqlx_kind(&dropped), ErrorKind::Unavailable);
        assert_eq!(sqlx_kind(&sqlx::Error::RowNotFound), ErrorKind::Internal);
        assert!(!ErrorKind::Unavailable.is_users());
    }

    #[test]
    fn the_callers_kinds_are_the_ones_they_can_change() {
        assert!(ErrorKind::Invalid.is_users());
        assert!(ErrorKind::QuotaExceeded.is_users());
        for ours in [ErrorKind::DiskFull, ErrorKind::Overloaded, ErrorKind::Broken, ErrorKind::Internal] {
            assert!(!ours.is_users(), "{ours:?}");
        }
    }
}
