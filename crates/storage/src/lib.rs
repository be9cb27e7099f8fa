//! `silo-storage`: a SQLite database *as a file*.
//!
//! This crate knows where a database file lives ([`placement`]), how to open it with
//! production settings and how to create, copy and remove it safely ([`sqlite`]). It knows
//! nothing about tenants, their lifecycle or the control plane (of Silo it uses only
//! `silo-core`'s helpers): callers pass a UUID and a
//! region name, and get paths and connections back. For backups it has envelope encryption
//! ([`crypto`]), the sealed object format ([`backup`]) and object stores ([`objects`]: a local
//! directory or S3).
//!
//! # Layout
//! - [`placement`]: regions and paths (`<root>/tenants/<xx>/<uuid>.db`), [`RegionName`].
//! - [`sqlite`]: opening, creating, copying, snapshotting and removing a database file.
//! - [`crypto`]: the master key and per-tenant data keys (AES-256-GCM envelope encryption).
//! - [`backup`]: the sealed, compressed backup object format.
//! - [`objects`]: object stores — a local directory or S3.
//! - [`memory`]: SQLite's memory budget, the process's memory figures, freed memory returned.
//! - [`wal`]: committed transactions read out of a write-ahead log, and replayed into a file.
//! - [`segment`]: the continuous-backup segment (timed commits) as stored.

pub mod backup;
pub mod crypto;
pub mod memory;
pub mod objects;
pub mod placement;
pub mod segment;
pub mod sqlite;
pub mod wal;

pub use placement::{Placement, RegionName};
pub use sqlite::{MIN_SQLITE_VERSION, SqliteTuning};

use std::path::PathBuf;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A region name that is not configured.
    #[error("unknown region `{0}` (configured regions: {1})")]
    UnknownRegion(String, String),
    /// A region name that is not of the form `[a-z0-9-]{1,32}`.
    #[error("invalid region name `{0}`: use 1 to 32 characters of a-z, 0-9 and `-`")]
    InvalidRegionName(String),
    /// A database file that should exist does not.
    #[error("database file {0} does not exist")]
    FileMissing(PathBuf),
    /// A database file that should not exist yet does.
    #[error("database file {0} already exists")]
    FileExists(PathBuf),
    /// A database file another connection of this process has open (one owner per file).
    #[error("database file {0} is already open in this process (one connection owns a file)")]
    AlreadyOpen(PathBuf),
    /// The linked SQLite library is too old to be safe.
    #[error(
        "SQLite {found} is older than {required}, which carries the WAL-reset fix; rebuild with the bundled SQLite"
    )]
    SqliteTooOld {
        /// Version found at run time.
        found: String,
        /// Minimum version accepted.
        required: String,
    },
    /// An I/O error on a path.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A database that fails `PRAGMA integrity_check`.
    #[error("{path} fails its integrity check: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// SQLite's first complaint.
        detail: String,
    },
    /// Encryption or decryption failed (wrong key, altered or truncated data, bad key file).
    #[error("{0}")]
    Crypto(String),
    /// No object under that key.
    #[error("no object `{0}` in the store")]
    ObjectMissing(String),
    /// An object store that cannot be reached, refuses a request or answers nonsense.
    #[error("{0}")]
    ObjectStore(String),
    /// An object whose bytes are not what the catalogue recorded (truncated or altered).
    #[error("{0}")]
    Checksum(String),
    /// An object key that is not of the form `[a-z0-9._-]` segments separated by `/`.
    #[error("invalid object key `{0}`")]
    InvalidObjectKey(String),
    /// A statement refused on a read-only, `main`-only connection (see
    /// [`sqlite::guard_reader`]).
    #[error("{0}")]
    NotReadOnly(String),
    /// An error from SQLite (through sqlx).
    #[error(transparent)]
    Sqlite(#[from] sqlx::Error),
    /// An error from SQLite (through rusqlite, the inline driver of tenant handles).
    #[error(transparent)]
    Rusqlite(#[from] rusqlite::Error),
}

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { action, path: path.into(), source }
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
