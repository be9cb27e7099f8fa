//! The error type of `silo-billing`: what billing refuses (a value, with the field it
//! concerns; a plan's limit; an invoice that does not exist or changed meanwhile), wrapping the
//! layers below (the accounts, the tenant product, the fleet, the job queue, the database).

use silo_core::ErrorKind;

/// What can go wrong with plans, limits, metering, invoices and dunning.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value refused: the field it concerns and why, in words for the person who typed it.
    #[error("{message}")]
    Invalid {
        /// The field (`plan`, `period`, `country`, `reference`, …).
        field: &'static str,
        /// Why.
        message: String,
    },
    /// A limit of the tenant's plan is reached: nothing was created.
    #[error("{0}")]
    LimitReached(String),
    /// The caller may not do this (a plan that is not self-service).
    #[error("{0}")]
    Forbidden(String),
    /// Too many API requests for the tenant's plan; retry after the given time.
    #[error("too many requests; retry in {} s", (.0.as_secs() + u64::from(.0.subsec_nanos() > 0)).max(1))]
    Throttled(std::time::Duration),
    /// No invoice with that number or id.
    #[error("no invoice `{0}`")]
    UnknownInvoice(String),
    /// An invoice changed meanwhile (paid, voided, numbered by another run): look again.
    #[error("{0}")]
    Busy(String),
    /// From the accounts (members, owners' addresses, the outbox).
    #[error(transparent)]
    Accounts(#[from] silo_accounts::Error),
    /// From the tenant product (counting a tenant's projects, creating one).
    #[error(transparent)]
    Workspace(#[from] silo_workspace::Error),
    /// From the fleet (tenants, suspension, resumption).
    #[error(transparent)]
    Tenancy(#[from] silo_tenancy::Error),
    /// From the job queue (the billing run and dunning as jobs).
    #[error(transparent)]
    Jobs(#[from] silo_jobs::Error),
    /// The control plane's database.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl Error {
    /// A refused value of `field`.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }

    /// What kind of failure this is (see [`silo_core::ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid { .. } | Self::LimitReached(_) => ErrorKind::Invalid,
            Self::Forbidden(_) => ErrorKind::Forbidden,
            Self::Throttled(_) => ErrorKind::Throttled,
            Self::UnknownInvoice(_) => ErrorKind::NotFound,
            Self::Busy(_) => ErrorKind::Conflict,
            Self::Accounts(e) => e.kind(),
            Self::Workspace(e) => e.kind(),
            Self::Tenancy(e) => e.kind(),
            Self::Jobs(e) => e.kind(),
            Self::Database(e) => silo_core::error::sqlx_kind(e),
        }
    }

    /// Whether the error is the caller's doing (bad input, wrong state).
    pub fn is_user_error(&self) -> bool {
        self.kind().is_users()
    }
}

impl From<silo_core::SlugError> for Error {
    fn from(e: silo_core::SlugError) -> Self {
        Self::Tenancy(e.into())
    }
}

impl From<Error> for silo_jobs::JobError {
    fn from(e: Error) -> Self {
        Self::of_kind(e.kind(), e)
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
