//! Hand-offs: how a session on the main host reaches a workspace on its own host
//! (`{slug}.{base_domain}`) without a cookie shared between hosts.
//!
//! Session cookies are host-only (no `Domain=`), so a tenant's host can never read or set
//! another host's session. Instead:
//! 1. the workspace host, seeing no session, sets a random `state` cookie on itself and sends
//!    the browser to the main host;
//! 2. the main host (signed in, a member of that workspace) issues a hand-off: a random token,
//!    stored as its digest with the session, the tenant, the digest of `state` and the path to
//!    return to, valid for [`HANDOFF_SECONDS`] and usable once;
//! 3. the workspace host redeems it ([`Handoffs::redeem`]) only with the same tenant and
//!    the browser's own `state` cookie, and starts a host-only session there — a child of the
//!    main-host session (signing out of either ends both).
//!
//! `state` stops a planted hand-off (someone else's token sent to a victim) from signing the
//! victim in as someone else.

use std::time::Duration;

use crate::secrets::{new_secret, token_digest};
use crate::sessions::{NewSession, Session};
use crate::{Error, Result};
use silo_core::db;
use silo_core::ids::TenantId;

/// How long a hand-off token works.
pub const HANDOFF_SECONDS: u64 = 60;

/// Where a redeemed hand-off leads.
#[derive(Debug)]
pub struct Redeemed {
    /// The new session on the workspace host.
    pub session: NewSession,
    /// The path (on the workspace host) to continue to.
    pub next: String,
}

/// Session hand-offs (from [`crate::Accounts::handoffs`]).
#[derive(Clone)]
pub struct Handoffs(pub(crate) crate::Accounts);

impl Handoffs {
    /// Issues a hand-off of `session` into `tenant` (the caller checked membership); returns
    /// the token for the workspace host.
    pub async fn issue(
        &self,
        session: &Session,
        tenant: TenantId,
        state: &str,
        next: &str,
    ) -> Result<String> {
        if state.len() < 32 {
            return Err(Error::invalid("state", "a hand-off needs the workspace host's state"));
        }
        let token = new_secret("hof_");
        let now = self.0.now();
        // The family's root: a hand-off from a child session hangs off its parent.
        db::query(
            "INSERT INTO handoffs (token_sha256, session_id, tenant_id, state_sha256, next_path, created_at, expires_at)
             SELECT ?1, coalesce(parent_id, id_sha256), ?2, ?3, ?4, ?7, ?5 FROM sessions WHERE id_sha256 = ?6",
        )
        .bind(token_digest(&token))
        .bind(tenant.to_string())
        .bind(token_digest(state))
        .bind(next)
        .bind(now.plus(Duration::from_secs(HANDOFF_SECONDS)).as_str().to_owned())
        .bind(&session.id)
        .bind(now.as_str())
        .execute(self.0.control().writer())
        .await?;
        // Used and expired hand-offs are of no use to anyone: keep the table small.
        db::query("DELETE FROM handoffs WHERE used_at IS NOT NULL OR expires_at <= ?")
            .bind(now.as_str())
            .execute(self.0.control().writer())
            .await?;
        Ok(token)
    }

    /// Redeems a hand-off on the host of `tenant` with the browser's `state`: once, in time,
    /// for that tenant only, while the issuing session lives and its account is still a
    /// member. Anything else is `None`.
    pub async fn redeem(
        &self,
        token: &str,
        tenant: TenantId,
        state: &str,
        user_agent: &str,
        ip: &str,
        ttl: Duration,
    ) -> Result<Option<Redeemed>> {
        let now = self.0.now();
        let claimed: Option<(String, String, String, String)> = db::query_as(
            "UPDATE handoffs SET used_at = ?2 WHERE token_sha256 = ?1 AND used_at IS NULL AND expires_at > ?2
             RETURNING session_id, tenant_id, state_sha256, next_path",
        )
        .bind(token_digest(token))
        .bind(now.as_str())
        .fetch_optional(self.0.control().writer())
        .await?;
        let Some((session_id, for_tenant, state_digest, next)) = claimed else { return Ok(None) };
        if for_tenant != tenant.to_string()
            || !silo_core::secret::constant_time_eq(&state_digest, &token_digest(state))
        {
            return Ok(None);
        }
        let parent: Option<(String,)> = db::query_as(
            "SELECT s.user_id FROM sessions s JOIN memberships m ON m.user_id = s.user_id AND m.tenant_id = ?
             WHERE s.id_sha256 = ? AND s.expires_at > ?",
        )
        .bind(tenant.to_string())
        .bind(&session_id)
        .bind(now.as_str())
        .fetch_optional(self.0.control().writer())
        .await?;
        let Some((user_id,)) = parent else { return Ok(None) };
        let mut session = self.0.sessions().create(&user_id, user_agent, ip, ttl, Some(&session_id)).await?;
        // A child never outlives its parent's absolute expiry.
        let expires_at: silo_core::Timestamp = db::query_scalar(
            "UPDATE sessions SET expires_at = min(expires_at, (SELECT expires_at FROM sessions WHERE id_sha256 = ?1))
             WHERE id_sha256 = ?2 RETURNING expires_at",
        )
        .bind(&session_id)
        .bind(&session.session.id)
        .fetch_one(self.0.control().writer())
        .await?;
        session.session.expires_at = expires_at;
        Ok(Some(Redeemed { session, next }))
    }
}
