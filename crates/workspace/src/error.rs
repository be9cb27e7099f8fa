//! The error type of `silo-workspace`: a value the product refuses (which field, and why), or
//! what the fleet below said (the tenant's file: its quota, a full disk, a busy file).

use silo_core::ErrorKind;

/// What can go wrong in a tenant's product data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value the product refuses: the field it concerns and why, in words for the person
    /// who typed it.
    #[error("{message}")]
    Invalid {
        /// The field (`a title`, `status`, `due date`, …).
        field: &'static str,
        /// Why.
        message: String,
    },
    /// From the fleet: the tenant's file and its connection.
    #[error(transparent)]
    Tenancy(#[from] silo_tenancy::Error),
}

impl Error {
    /// A refused value of `field`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }

    /// What kind of failure this is (see [`silo_core::ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid { .. } => ErrorKind::Invalid,
            Self::Tenancy(e) => e.kind(),
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Self::Tenancy(e.into())
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
