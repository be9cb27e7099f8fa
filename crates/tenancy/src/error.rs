//! The error type of `silo-tenancy`.

use std::path::PathBuf;
use std::sync::Arc;

use crate::ids::SlugError;

/// What can go wrong in the control plane, the lifecycle and the handle cache.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A slug or id that does not parse.
    #[error(transparent)]
    InvalidSlug(#[from] SlugError),
    /// No tenant with that slug or id.
    #[error("no tenant `{0}`")]
    NotFound(String),
    /// No account with that email.
    #[error("no account for `{0}`")]
    UnknownUser(String),
    /// The slug belongs to another tenant.
    #[error("the slug `{0}` is already taken")]
    SlugTaken(String),
    /// The tenant is suspended by an operator.
    #[error("tenant `{0}` is suspended")]
    Suspended(String),
    /// The tenant is held by a file operation (lease); retry shortly.
    #[error("tenant `{0}` is temporarily unavailable (a file operation holds it); retry shortly")]
    Unavailable(String),
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
    /// Too many attempts from this client or for this account; retry after the given time.
    #[error("too many attempts; retry in {} s", .0.as_secs().max(1))]
    Throttled(std::time::Duration),
    /// A malformed value given by the caller (other than a slug).
    #[error("{0}")]
    InvalidInput(String),
    /// A backup id that is not in the catalogue (for that tenant).
    #[error("no backup `{0}`")]
    UnknownBackup(String),
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
    /// A database error on a tenant connection.
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
    /// The error itself, seen through [`Error::Shared`].
    pub fn root(&self) -> &Error {
        match self {
            Error::Shared(inner) => inner.root(),
            other => other,
        }
    }

    /// Whether the error is the caller's doing (bad input, wrong state) rather than a fault.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self.root(),
            Error::InvalidSlug(_)
                | Error::NotFound(_)
                | Error::UnknownUser(_)
                | Error::SlugTaken(_)
                | Error::Suspended(_)
                | Error::Gone(_)
                | Error::InvalidTransition { .. }
                | Error::WriteRefused(_)
                | Error::InvalidInput(_)
                | Error::Busy(_)
                | Error::Throttled(_)
                | Error::Config(_)
                | Error::Storage(
                    silo_storage::Error::UnknownRegion(..) | silo_storage::Error::InvalidRegionName(_)
                )
        )
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
