//! The error type of `silo-accounts`: what people's accounts refuse (a value, with the field
//! it concerns; an action the role rules forbid; too many attempts), wrapping the layers
//! below (the tenant product, the fleet, the job queue, the control plane's database).

use silo_core::ErrorKind;

/// What can go wrong with accounts, sessions, tokens, memberships and invitations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value refused: the field it concerns and why, in words for the person who typed it.
    #[error("{message}")]
    Invalid {
        /// The field (`email`, `password`, `role`, `invitation`, …).
        field: &'static str,
        /// Why.
        message: String,
    },
    /// No account with that email (or id).
    #[error("no account for `{0}`")]
    UnknownUser(String),
    /// The role rules (or standing) do not allow this caller to do it.
    #[error("{0}")]
    Forbidden(String),
    /// Too many attempts from this client or for this account; retry after the given time.
    #[error("too many attempts; retry in {} s", (.0.as_secs() + u64::from(.0.subsec_nanos() > 0)).max(1))]
    Throttled(std::time::Duration),
    /// A limit of the tenant's plan (seats) is reached: nothing was created.
    #[error("{0}")]
    LimitReached(String),
    /// What was checked changed meanwhile (a concurrent change): look again and retry.
    #[error("{0}")]
    Busy(String),
    /// The workspace's state does not allow it (its last owner cannot go): the message says why.
    #[error("{0}")]
    Conflict(String),
    /// The machine is saturated (password hashing); retry shortly.
    #[error("{0}")]
    Overloaded(String),
    /// A settings or stored-data fault (SMTP settings, a corrupt row).
    #[error("configuration: {0}")]
    Config(String),
    /// From the tenant product (a member row in a tenant's file).
    #[error(transparent)]
    Workspace(#[from] silo_workspace::Error),
    /// From the fleet (tenants, their files, the control plane).
    #[error(transparent)]
    Tenancy(#[from] silo_tenancy::Error),
    /// From the job queue (exports, erasures).
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
            Self::Invalid { .. } | Self::UnknownUser(_) | Self::LimitReached(_) => ErrorKind::Invalid,
            Self::Forbidden(_) => ErrorKind::Forbidden,
            Self::Throttled(_) => ErrorKind::Throttled,
            Self::Busy(_) | Self::Conflict(_) => ErrorKind::Conflict,
            Self::Overloaded(_) => ErrorKind::Overloaded,
            Self::Config(_) => ErrorKind::Internal,
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

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Self::Tenancy(e.into())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_the_layer_that_said_it() {
        assert_eq!(Error::invalid("email", "bad").kind(), ErrorKind::Invalid);
        assert_eq!(Error::Forbidden("no".into()).kind(), ErrorKind::Forbidden);
        assert_eq!(Error::Busy("again".into()).kind(), ErrorKind::Conflict);
        assert_eq!(Error::from(silo_tenancy::Error::Suspended("acme".into())).kind(), ErrorKind::Locked);
        assert_eq!(Error::Config("smtp".into()).kind(), ErrorKind::Internal);
        let Error::Invalid { field, .. } = Error::invalid("role", "unknown role") else { unreachable!() };
        assert_eq!(field, "role");
    }
}
