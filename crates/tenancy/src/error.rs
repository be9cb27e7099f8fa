//! The error type of `silo-tenancy`.

use std::path::PathBuf;
use std::sync::Arc;

use silo_core::{ErrorKind, SlugError};

/// What can go wrong in the control plane, the lifecycle and the handle cache. (The layers
/// above have their own errors, wrapping this one: `silo_workspace::Error`,
/// `silo_accounts::Error`, `silo_billing::Error`.)
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A slug or id that does not parse.
    #[error(transparent)]
    InvalidSlug(#[from] SlugError),
    /// No tenant with that slug or id.
    #[error("no tenant `{0}`")]
    NotFound(String),
    /// The slug belongs to another tenant.
    #[error("the slug `{0}` is already taken")]
    SlugTaken(String),
    /// The tenant is suspended by an operator.
    #[error("tenant `{0}` is suspended")]
    Suspended(String),
    /// The tenant is held by a file operation (lease); retry shortly.
    #[error("tenant `{0}` is temporarily unavailable (a file operation holds it); retry shortly")]
    Unavailable(String),
    /// Another server of the cluster owns the tenant (and its lease is current).
    #[error("tenant `{tenant}` is served by another server of the cluster (node `{node}`)")]
    Elsewhere {
        /// The tenant's slug.
        tenant: String,
        /// The server that owns it.
        node: String,
        /// Where that server is reached.
        advertise: String,
    },

    /// This server may not serve the tenant now (its lease with the control plane lapsed, or
    /// the tenant has no server yet): 503, retry.
    #[error("{0}")]
    NotServing(String),
    /// The tenant was deleted.
    #[error("tenant `{0}` has been deleted")]
    Gone(String),
    /// The tenant's file could not be opened or migrated; it stays closed until fixed.
    #[error("tenant `{tenant}` is quarantined: {reason}")]
    Quarantined {
        /// Tenant id.
        tenant: String,
        /// The recorded failure.
        reason: String,
    },
    /// The tenant's file is missing (removed outside Silo); it is never re-created.
    #[error("tenant `{tenant}` has no database file at {path} (was it removed outside Silo?)")]
    FileMissing {
        /// Tenant id.
        tenant: String,
        /// The expected path.
        path: PathBuf,
    },
    /// A lifecycle action that the tenant's status does not allow.
    #[error("cannot {action} tenant `{tenant}`: it is {status}")]
    InvalidTransition {
        /// Tenant slug.
        tenant: String,
        /// What was asked.
        action: &'static str,
        /// Its current status.
        status: String,
    },
    /// A statement that would write, given to a read-only query.
    #[error("read-only query refused: {0}")]
    WriteRefused(String),
    /// Another process holds what this one needs (the data-directory lock).
    #[error("{0}")]
    Busy(String),
    /// The machine is saturated (e.g. password hashing); retry shortly.
    #[error("{0}")]
    Overloaded(String),
    /// A daily allowance (exports) is used up: nothing was started; the next may start at `next`.
    #[error("{message}")]
    AllowanceUsed {
        /// What was used up, and when the next may start.
        message: String,
        /// How long until the next may start (on the process's clock).
        wait: std::time::Duration,
    },
    /// A link that worked once and no longer does (an expired export link, an export of a
    /// deleted workspace): the message says which, for the person holding the link.
    #[error("{0}")]
    LinkGone(String),
    /// Too little free disk space to start something that writes a lot (an export); the
    /// message says how much is free and needed.
    #[error("{0}")]
    DiskLow(String),
    /// A value the caller gave that is refused (other than a slug): the field it concerns
    /// and why.
    #[error("{message}")]
    Invalid {
        /// The field (`name`, `plan`, `region`, `at`, …).
        field: &'static str,
        /// Why, in words for the caller.
        message: String,
    },
    /// The tenant's file reached its plan's storage limit: the write was refused and rolled
    /// back; reads work, and deleting data or a larger plan makes room.
    #[error(
        "storage quota exceeded: this workspace's plan allows no more data (delete some, or choose a larger plan)"
    )]
    QuotaExceeded(String),
    /// From the job queue.
    #[error(transparent)]
    Jobs(#[from] silo_jobs::Error),
    /// A backup id that is not in the catalogue (for that tenant).
    #[error("no backup `{0}`")]
    UnknownBackup(String),
    /// A restore of a tenant that has no backup yet (of its newest, or to a moment).
    #[error("tenant `{0}` has no backup yet: back it up first")]
    NoBackup(String),
    /// The tenant's data key was destroyed by a purge: no backup of it can be read again.
    #[error("tenant `{0}` was purged: its data key is destroyed, so none of its backups can be decrypted")]
    KeyDestroyed(String),
    /// A settings problem.
    #[error("configuration: {0}")]
    Config(String),
    /// A file-level error.
    #[error(transparent)]
    Storage(#[from] silo_storage::Error),
    /// A database error.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A database error on a rusqlite connection: a tenant's, or one of the control plane's
    /// inline readers.
    #[error(transparent)]
    TenantSql(#[from] rusqlite::Error),
    /// A tenant schema problem (an edited or half-applied migration).
    #[error("{0}")]
    Schema(String),
    /// A migration error.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// An error shared by every caller of one single-flight open.
    #[error(transparent)]
    Shared(Arc<Error>),
}

impl Error {
    /// A refused value of `field`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }

    /// The error itself, seen through [`Error::Shared`].
    pub fn root(&self) -> &Error {
        match self {
            Error::Shared(inner) => inner.root(),
            other => other,
        }
    }

    /// What kind of failure this is: the one classification the HTML pages, the JSON API and
    /// the CLI all map from.
    pub fn kind(&self) -> ErrorKind {
        use silo_storage::Error as S;
        match self.root() {
            // A slug that does not parse names nothing that could exist.
            Error::InvalidSlug(_) | Error::NotFound(_) | Error::UnknownBackup(_) => ErrorKind::NotFound,
            Error::Invalid { .. }
            | Error::WriteRefused(_)
            | Error::Storage(S::UnknownRegion(..) | S::InvalidRegionName(_)) => ErrorKind::Invalid,
            Error::SlugTaken(_) | Error::InvalidTransition { .. } | Error::Busy(_) | Error::NoBackup(_) => {
                ErrorKind::Conflict
            }
            Error::Suspended(_) => ErrorKind::Locked,
            Error::Gone(_) | Error::KeyDestroyed(_) | Error::LinkGone(_) => ErrorKind::Gone,
            Error::DiskLow(_) => ErrorKind::DiskFull,
            Error::QuotaExceeded(_) => ErrorKind::QuotaExceeded,
            Error::Unavailable(_) | Error::NotServing(_) => ErrorKind::Unavailable,
            Error::Elsewhere { .. } => ErrorKind::Elsewhere,
            Error::Overloaded(_) => ErrorKind::Overloaded,
            Error::AllowanceUsed { .. } => ErrorKind::Throttled,
            Error::Quarantined { .. } | Error::FileMissing { .. } => ErrorKind::Broken,
            Error::Jobs(e) => e.kind(),
            e if e.is_disk_full() => ErrorKind::DiskFull,
            Error::Database(e) => silo_core::error::sqlx_kind(e),
            _ => ErrorKind::Internal,
        }
    }

    /// Whether the error is the caller's doing (bad input, wrong state) rather than a fault or
    /// the machine's state.
    pub fn is_user_error(&self) -> bool {
        self.kind().is_users()
    }

    /// SQLite or a file write said the disk (or the file-size limit) is full.
    fn is_disk_full(&self) -> bool {
        use silo_core::error::{rusqlite_disk_full as rusqlite_full, sqlx_disk_full as sqlx_full};
        match self {
            Error::Storage(silo_storage::Error::Io { source, .. }) => {
                source.kind() == std::io::ErrorKind::StorageFull
            }
            Error::TenantSql(e) | Error::Storage(silo_storage::Error::Rusqlite(e)) => rusqlite_full(e),
            Error::Database(e) | Error::Storage(silo_storage::Error::Sqlite(e)) => sqlx_full(e),
            _ => false,
        }
    }
}

impl From<Error> for silo_jobs::JobError {
    fn from(e: Error) -> Self {
        Self::of_kind(e.kind(), e)
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_see_through_shared_errors_and_name_the_machine_state() {
        let shared = Error::Shared(Arc::new(Error::Suspended("acme".into())));
        assert_eq!(shared.kind(), ErrorKind::Locked);
        assert!(shared.is_user_error());
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(13),
            Some("database or disk is full".into()),
        );
        assert_eq!(Error::TenantSql(full).kind(), ErrorKind::DiskFull);
        assert!(!Error::Overloaded("busy".into()).is_user_error());
        assert_eq!(Error::Config("bad".into()).kind(), ErrorKind::Internal, "a settings fault is ours");
        assert_eq!(Error::UnknownBackup("b".into()).kind(), ErrorKind::NotFound);
        assert_eq!(Error::invalid("name", "x").kind(), ErrorKind::Invalid);
    }
}
