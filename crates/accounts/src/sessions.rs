//! Server-side sessions and login throttling.
//!
//! A session is a random 256-bit secret (the cookie) whose SHA-256 is the row's key, so a copy
//! of `control.db` holds no usable session. Each session carries its own CSRF token. A session
//! ends at its absolute expiry (`server.session_hours`) or after `server.session_idle_minutes`
//! without use, whichever comes first. A session started on a workspace host from a main-host
//! session (see [`crate::handoffs`]) is its child: ending either ends the family.
//!
//! Sign-in attempts are throttled by [`crate::throttle`].

use crate::users::{Email, UserId};
use silo_core::Timestamp;
use silo_core::db;
use std::time::Duration;

use serde::Serialize;
use silo_core::tokens::random_hex;

use crate::secrets::token_digest;
use crate::{Error, Result};

/// How stale a session's `last_seen_at` may get before a request refreshes it.
pub const LAST_SEEN_STEP: Duration = Duration::from_secs(300);

/// A live session as the web layer sees it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Session {
    /// Digest of the secret (safe to show and to use as an id in "sign out that session").
    #[sqlx(rename = "id_sha256")]
    pub id: String,
    /// The account.
    pub user_id: UserId,
    /// The token every state-changing form of this session must echo.
    pub csrf_token: String,
    /// Creation time (UTC).
    pub created_at: Timestamp,
    /// Last use (UTC).
    pub last_seen_at: Timestamp,
    /// Expiry (UTC).
    pub expires_at: Timestamp,
    /// Client's user agent at login.
    pub user_agent: String,
    /// Client's address at login.
    pub ip: String,
    /// The account's email.
    pub email: Email,
    /// The account's display name.
    pub display_name: String,
}

impl Session {
    /// Whether, at `now`, the session has expired or been idle longer than `idle`.
    pub fn expired(&self, idle: Duration, now: &Timestamp) -> bool {
        self.expires_at <= *now || self.last_seen_at <= now.minus(idle)
    }
}

/// A freshly created session: the secret goes into the cookie, once.
#[derive(Debug)]
pub struct NewSession {
    /// The cookie value.
    pub secret: String,
    /// The session.
    pub session: Session,
}

/// Browser sessions (from [`crate::Accounts::sessions`]).
#[derive(Clone)]
pub struct Sessions(pub(crate) crate::Accounts);

impl Sessions {
    /// Starts a session for an account (a new id at every login); `parent` makes it a child
    /// of that session (a workspace host's session).
    pub async fn create(
        &self,
        user_id: &str,
        user_agent: &str,
        ip: &str,
        ttl: Duration,
        parent: Option<&str>,
    ) -> Result<NewSession> {
        let secret = random_hex(32);
        let id = token_digest(&secret);
        let now = self.0.now();
        db::query(
            "INSERT INTO sessions (id_sha256, user_id, csrf_token, created_at, last_seen_at, expires_at, user_agent, ip, parent_id)
             VALUES (?1, ?2, ?3, ?8, ?8, ?4, ?5, ?6, ?7)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(random_hex(32))
        .bind(now.plus(ttl).as_str().to_owned())
        .bind(user_agent.chars().take(300).collect::<String>())
        .bind(ip)
        .bind(parent)
        .bind(now.as_str())
        .execute(self.0.control().writer())
        .await?;
        let session: Option<Session> = db::query_as(
            "SELECT s.*, u.email, u.display_name FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_sha256 = ?",
        )
        .bind(&id)
        .fetch_optional(self.0.control().writer())
        .await?;
        let session = session.ok_or_else(|| Error::UnknownUser(user_id.to_owned()))?;
        Ok(NewSession { secret, session })
    }

    /// The live session of a cookie secret: unexpired and used within the idle timeout.
    pub async fn find(&self, secret: &str) -> Result<Option<Session>> {
        let digest = token_digest(secret);
        let idle = self.0.settings().session_idle;
        let sessions = self.clone();
        let session = (self.0.directory().sessions)
            .get_or_read(digest, move |digest| async move { sessions.read(&digest, idle).await });
        // A remembered session may have expired since: expiry is checked on every use.
        let now = self.0.now();
        Ok(session.await?.filter(|s| !s.expired(idle, &now)))
    }

    /// Reads a live session from the control plane (see [`Sessions::find`]).
    async fn read(&self, digest: &str, idle: std::time::Duration) -> Result<Option<Session>> {
        let now = self.0.now();
        let session: Option<Session> = db::query_as(
            "SELECT s.*, u.email, u.display_name FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id_sha256 = ? AND s.expires_at > ? AND s.last_seen_at > ?",
        )
        .bind(digest)
        .bind(now.as_str())
        .bind(now.minus(idle).as_str().to_owned())
        .fetch_optional(self.0.control().reader())
        .await?;
        if let Some(session) = &session {
            self.touch(session);
        }
        Ok(session)
    }

    /// Records that a session is in use, at most every [`LAST_SEEN_STEP`] (a write per
    /// request would make every page view a control-plane write).
    fn touch(&self, session: &Session) {
        let now = self.0.now();
        if session.last_seen_at >= now.minus(LAST_SEEN_STEP) {
            return;
        }
        let writer = self.0.control().writer().clone();
        let id = session.id.clone();
        tokio::spawn(async move {
            let result = db::query("UPDATE sessions SET last_seen_at = ? WHERE id_sha256 = ?")
                .bind(now.as_str())
                .bind(&id)
                .execute(&writer)
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "recording a session's use failed");
            }
        });
    }

    /// The live sessions of an account, newest first.
    pub async fn of_user(&self, user_id: &str) -> Result<Vec<Session>> {
        let sessions = db::query_as(
            "SELECT s.*, u.email, u.display_name FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.user_id = ? AND s.expires_at > ? ORDER BY s.created_at DESC",
        )
        .bind(user_id)
        .bind(self.0.now().as_str().to_owned())
        .fetch_all(self.0.control().reader())
        .await?;
        Ok(sessions)
    }

    /// Ends one session (logout) and its family (the main-host session it came from and the
    /// workspace-host sessions started from it). Returns whether it existed.
    pub async fn revoke(&self, secret: &str) -> Result<bool> {
        // Deleting the family's root removes its children (ON DELETE CASCADE).
        let done = db::query(
            "DELETE FROM sessions WHERE id_sha256 IN
                 (SELECT coalesce(parent_id, id_sha256) FROM sessions WHERE id_sha256 = ?1)",
        )
        .bind(token_digest(secret))
        .execute(self.0.control().writer())
        .await?;
        self.0.directory().clear();
        Ok(done.rows_affected() > 0)
    }

    /// Ends one of an account's sessions by its id (the digest shown on the account page), with
    /// the workspace-host sessions started from it.
    pub async fn revoke_id(&self, user_id: &str, id: &str) -> Result<bool> {
        let done = db::query("DELETE FROM sessions WHERE id_sha256 = ? AND user_id = ?")
            .bind(id)
            .bind(user_id)
            .execute(self.0.control().writer())
            .await?;
        self.0.directory().clear();
        Ok(done.rows_affected() > 0)
    }

    /// Ends every session of an account ("sign out everywhere"); returns how many.
    pub async fn revoke_all(&self, user_id: &str) -> Result<u64> {
        let done = db::query("DELETE FROM sessions WHERE user_id = ?")
            .bind(user_id)
            .execute(self.0.control().writer())
            .await?;
        self.0.directory().clear();
        Ok(done.rows_affected())
    }
}
