//! The error type of `silo-jobs`.

use silo_core::ErrorKind;

/// What can go wrong with the queue.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A job id that is not in the queue.
    #[error("no job `{0}`")]
    UnknownJob(String),
    /// A stored or given status that is not one of [`crate::JobStatus`]'s.
    #[error("unknown job status `{0}` (queued, running, done, failed or cancelled)")]
    UnknownStatus(String),
    /// The key used its day ([`crate::Bound`]): the next may start at `next`.
    #[error("{message}")]
    AllowanceUsed {
        /// What was used up, and when the next may start.
        message: String,
        /// When the next may start.
        next: silo_core::Timestamp,
    },
    /// Cancel or retry of a job whose status does not allow it.
    #[error("cannot {action} job `{job}`: it is {status}")]
    InvalidTransition {
        /// The job.
        job: String,
        /// What was asked (`cancel`, `retry`).
        action: &'static str,
        /// Its current status.
        status: String,
    },
    /// The job changed between reading and writing it.
    #[error("job {0} changed meanwhile; try again")]
    Changed(String),
    /// A database error.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::UnknownJob(_) => ErrorKind::NotFound,
            Error::UnknownStatus(_) => ErrorKind::Invalid,
            Error::AllowanceUsed { .. } => ErrorKind::Throttled,
            Error::InvalidTransition { .. } | Error::Changed(_) => ErrorKind::Conflict,
            Error::Database(e) => silo_core::error::sqlx_kind(e),
        }
    }
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
