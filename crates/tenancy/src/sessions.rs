//! Server-side sessions and login throttling.
//!
//! A session is a random 256-bit secret (the cookie) whose SHA-256 is the row's key, so a copy
//! of `control.db` holds no usable session. Each session carries its own CSRF token. Logins are
//! throttled per account and per client address in memory (one server process per data
//! directory, see [`crate::DataDirLock`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::RngCore;
use serde::Serialize;

use crate::accounts::token_digest;
use crate::{Error, Result, Tenancy};

/// How stale a session's `last_seen_at` may get before a request refreshes it.
pub const LAST_SEEN_STEP: Duration = Duration::from_secs(300);

/// A live session as the web layer sees it.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct Session {
    /// Digest of the secret (safe to show and to use as an id in "sign out that session").
    #[sqlx(rename = "id_sha256")]
    pub id: String,
    /// The account.
    pub user_id: String,
    /// The token every state-changing form of this session must echo.
    pub csrf_token: String,
    /// Creation time (UTC).
    pub created_at: String,
    /// Last use (UTC).
    pub last_seen_at: String,
    /// Expiry (UTC).
    pub expires_at: String,
    /// Client's user agent at login.
    pub user_agent: String,
    /// Client's address at login.
    pub ip: String,
    /// The account's email.
    pub email: String,
    /// The account's display name.
    pub display_name: String,
}

impl Session {
    /// Whether the session has expired (times are UTC RFC 3339 with the same precision, so
    /// they compare as strings).
    pub fn expired(&self) -> bool {
        self.expires_at <= crate::control::utc_now()
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

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

impl Tenancy {
    /// Starts a session for an account (a new id at every login).
    pub async fn create_session(
        &self,
        user_id: &str,
        user_agent: &str,
        ip: &str,
        ttl: Duration,
    ) -> Result<NewSession> {
        let secret = random_hex(32);
        let id = token_digest(&secret);
        sqlx::query(concat!(
            "INSERT INTO sessions (id_sha256, user_id, csrf_token, created_at, last_seen_at, expires_at, user_agent, ip)
             VALUES (?, ?, ?, ",
            crate::now!(),
            ", ",
            crate::now!(),
            ", strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?), ?, ?)"
        ))
        .bind(&id)
        .bind(user_id)
        .bind(random_hex(32))
        .bind(format!("+{} seconds", ttl.as_secs()))
        .bind(user_agent.chars().take(300).collect::<String>())
        .bind(ip)
        .execute(self.control().writer())
        .await?;
        let session: Option<Session> = sqlx::query_as(
            "SELECT s.*, u.email, u.display_name FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_sha256 = ?",
        )
        .bind(&id)
        .fetch_optional(self.control().writer())
        .await?;
        let session = session.ok_or_else(|| Error::UnknownUser(user_id.to_owned()))?;
        Ok(NewSession { secret, session })
    }

    /// The live (unexpired) session of a cookie secret.
    pub async fn session(&self, secret: &str) -> Result<Option<Session>> {
        let digest = token_digest(secret);
        if let Some(found) = self.directory().sessions.get(&digest) {
            // A cached session may have expired since: expiry is checked on every use.
            return Ok(found.filter(|s| !s.expired()));
        }
        let session: Option<Session> = sqlx::query_as(concat!(
            "SELECT s.*, u.email, u.display_name FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id_sha256 = ? AND s.expires_at > ",
            crate::now!()
        ))
        .bind(&digest)
        .fetch_optional(self.control().reader())
        .await?;
        if let Some(session) = &session {
            self.touch_session(session);
        }
        self.directory().sessions.insert(digest, session.clone());
        Ok(session)
    }

    /// Records that a session is in use, at most every [`LAST_SEEN_STEP`] (a write per
    /// request would make every page view a control-plane write).
    fn touch_session(&self, session: &Session) {
        let stale = crate::control::utc_timestamp(std::time::SystemTime::now() - LAST_SEEN_STEP);
        if session.last_seen_at >= stale {
            return;
        }
        let writer = self.control().writer().clone();
        let id = session.id.clone();
        tokio::spawn(async move {
            let result = sqlx::query(concat!(
                "UPDATE sessions SET last_seen_at = ",
                crate::now!(),
                " WHERE id_sha256 = ?"
            ))
            .bind(&id)
            .execute(&writer)
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "recording a session's use failed");
            }
        });
    }

    /// The live sessions of an account, newest first.
    pub async fn sessions_of(&self, user_id: &str) -> Result<Vec<Session>> {
        let sessions = sqlx::query_as(concat!(
            "SELECT s.*, u.email, u.display_name FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.user_id = ? AND s.expires_at > ",
            crate::now!(),
            " ORDER BY s.created_at DESC"
        ))
        .bind(user_id)
        .fetch_all(self.control().reader())
        .await?;
        Ok(sessions)
    }

    /// Ends one session (logout). Returns whether it existed.
    pub async fn revoke_session(&self, secret: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE id_sha256 = ?")
            .bind(token_digest(secret))
            .execute(self.control().writer())
            .await?;
        self.directory().clear();
        Ok(done.rows_affected() > 0)
    }

    /// Ends one of an account's sessions by its id (the digest shown on the account page).
    pub async fn revoke_session_id(&self, user_id: &str, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE id_sha256 = ? AND user_id = ?")
            .bind(id)
            .bind(user_id)
            .execute(self.control().writer())
            .await?;
        self.directory().clear();
        Ok(done.rows_affected() > 0)
    }

    /// Ends every session of an account ("sign out everywhere"); returns how many.
    pub async fn revoke_all_sessions(&self, user_id: &str) -> Result<u64> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = ?")
            .bind(user_id)
            .execute(self.control().writer())
            .await?;
        self.directory().clear();
        Ok(done.rows_affected())
    }
}

/// Failed-login limits per key within a window.
#[derive(Clone, Copy, Debug)]
pub struct ThrottlePolicy {
    /// Failures allowed per account within the window.
    pub per_account: u32,
    /// Failures allowed per client address within the window.
    pub per_client: u32,
    /// The window.
    pub window: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self { per_account: 5, per_client: 20, window: Duration::from_secs(15 * 60) }
    }
}

/// In-memory login throttle: counts failures per account and per client address.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    policy: ThrottlePolicy,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginThrottle {
    /// A throttle with this policy.
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self { policy, failures: Mutex::default() }
    }

    /// `Err(retry_after)` when the account or the client has failed too often; checked before
    /// the password, so a throttled attempt costs no hash and reveals nothing.
    pub fn check(&self, email: &str, client: &str) -> std::result::Result<(), Duration> {
        let now = Instant::now();
        let failures = self.failures.lock();
        let blocked = |key: String, limit: u32| {
            failures.get(&key).and_then(|(count, since)| {
                let elapsed = now.duration_since(*since);
                (*count >= limit && elapsed < self.policy.window).then(|| self.policy.window - elapsed)
            })
        };
        match blocked(account_key(email), self.policy.per_account)
            .or(blocked(client_key(client), self.policy.per_client))
        {
            Some(retry_after) => Err(retry_after),
            None => Ok(()),
        }
    }

    /// Records a failed attempt.
    pub fn failed(&self, email: &str, client: &str) {
        let now = Instant::now();
        let mut failures = self.failures.lock();
        for key in [account_key(email), client_key(client)] {
            let entry = failures.entry(key).or_insert((0, now));
            if now.duration_since(entry.1) >= self.policy.window {
                *entry = (0, now);
            }
            entry.0 += 1;
        }
    }

    /// A successful login clears the account's count (not the client's).
    pub fn succeeded(&self, email: &str) {
        self.failures.lock().remove(&account_key(email));
    }
}

fn account_key(email: &str) -> String {
    format!("account:{}", email.trim().to_lowercase())
}

fn client_key(client: &str) -> String {
    format!("client:{client}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_per_account_and_per_client() {
        let throttle = LoginThrottle::new(ThrottlePolicy {
            per_account: 3,
            per_client: 5,
            window: Duration::from_secs(60),
        });
        for _ in 0..3 {
            assert!(throttle.check("ada@example.com", "10.0.0.1").is_ok());
            throttle.failed("Ada@Example.com", "10.0.0.1");
        }
        let retry = throttle.check("ada@example.com", "10.0.0.9").unwrap_err();
        assert!(retry <= Duration::from_secs(60) && retry > Duration::from_secs(50));
        assert!(
            throttle.check("bob@example.com", "10.0.0.1").is_ok(),
            "other accounts from that client still try"
        );
        throttle.failed("bob@example.com", "10.0.0.1");
        throttle.failed("carol@example.com", "10.0.0.1");
        assert!(throttle.check("dave@example.com", "10.0.0.1").is_err(), "the client hit its limit");
        assert!(throttle.check("dave@example.com", "10.0.0.2").is_ok());
        throttle.succeeded("bob@example.com");
    }

    #[test]
    fn the_window_expires() {
        let throttle = LoginThrottle::new(ThrottlePolicy {
            per_account: 1,
            per_client: 10,
            window: Duration::from_millis(30),
        });
        throttle.failed("ada@example.com", "c");
        assert!(throttle.check("ada@example.com", "c").is_err());
        std::thread::sleep(Duration::from_millis(40));
        assert!(throttle.check("ada@example.com", "c").is_ok());
    }
}
