//! Authenticating API tokens, listing and revoking them. Issuing lives in [`crate::accounts`].

use serde::Serialize;
use sqlx::Row;

use crate::accounts::token_digest;
use crate::control::audit;
use crate::ids::TenantId;
use crate::{Error, Result, Tenancy};

/// How stale a token's `last_used_at` may get before a request refreshes it (a write per
/// request, or per directory refresh, would load the control plane for no one's benefit).
pub const LAST_USED_STEP: std::time::Duration = std::time::Duration::from_secs(300);

/// What a valid bearer token acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPrincipal {
    /// The token's id.
    pub token_id: String,
    /// The account it acts for.
    pub user_id: String,
    /// That account's email.
    pub email: String,
    /// `None` for an operator token; the one tenant of a personal token.
    pub tenant: Option<TenantId>,
    /// When the token stops working (UTC), if it expires.
    pub expires_at: Option<String>,
}

impl TokenPrincipal {
    fn expired(&self) -> bool {
        self.expires_at.as_ref().is_some_and(|at| *at <= crate::control::utc_now())
    }
}

/// A token as its owner sees it (never the secret).
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct TokenInfo {
    /// Id.
    pub id: String,
    /// `operator` or `personal`.
    pub kind: String,
    /// The workspace slug of a personal token.
    pub tenant_slug: Option<String>,
    /// Creation time (UTC).
    pub created_at: String,
    /// Last use (UTC, to within five minutes).
    pub last_used_at: Option<String>,
    /// When it stops working (UTC); `None`: never.
    pub expires_at: Option<String>,
}

impl Tenancy {
    /// The principal of a bearer token, if it is valid, unrevoked, unexpired and its holder
    /// still has the standing it was issued for (operator, or member of its tenant).
    pub async fn authenticate_token(&self, secret: &str) -> Result<Option<TokenPrincipal>> {
        let digest = token_digest(secret);
        let principal = self.look_up(
            |d| &d.tokens,
            digest,
            |tenancy, digest| async move { tenancy.read_token(&digest).await },
        );
        // A remembered token may have expired since: expiry is checked on every use.
        Ok(principal.await?.filter(|p| !p.expired()))
    }

    /// Reads a token's principal from the control plane (see [`Tenancy::authenticate_token`]).
    async fn read_token(&self, digest: &str) -> Result<Option<TokenPrincipal>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT t.id, t.user_id, u.email, t.tenant_id, t.kind, t.last_used_at, t.expires_at,
                    (t.kind = 'operator' AND EXISTS (SELECT 1 FROM operators o WHERE o.user_id = t.user_id))
                    OR (t.kind = 'personal' AND EXISTS (SELECT 1 FROM memberships m
                        WHERE m.user_id = t.user_id AND m.tenant_id = t.tenant_id)) AS standing
             FROM api_tokens t JOIN users u ON u.id = t.user_id
             WHERE t.token_sha256 = ? AND t.revoked_at IS NULL
               AND (t.expires_at IS NULL OR t.expires_at > {})",
            crate::now!()
        )))
        .bind(digest)
        .fetch_optional(self.control().reader())
        .await?;
        let principal = match row {
            Some(row) if row.try_get::<bool, _>("standing")? => {
                let tenant: Option<String> = row.try_get("tenant_id")?;
                let tenant = tenant
                    .map(|t| {
                        t.parse().map_err(|_| Error::Config(format!("corrupt tenant id `{t}` in api_tokens")))
                    })
                    .transpose()?;
                let principal = TokenPrincipal {
                    token_id: row.try_get("id")?,
                    user_id: row.try_get("user_id")?,
                    email: row.try_get("email")?,
                    tenant,
                    expires_at: row.try_get("expires_at")?,
                };
                let last_used: Option<String> = row.try_get("last_used_at")?;
                let stale = crate::control::utc_timestamp(std::time::SystemTime::now() - LAST_USED_STEP);
                if last_used.is_none_or(|at| at < stale) {
                    self.touch_token(&principal.token_id);
                }
                Some(principal)
            }
            _ => None,
        };
        Ok(principal)
    }

    /// Records a token's use without delaying the request.
    fn touch_token(&self, id: &str) {
        let writer = self.control().writer().clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let result =
                sqlx::query(concat!("UPDATE api_tokens SET last_used_at = ", crate::now!(), " WHERE id = ?"))
                    .bind(&id)
                    .execute(&writer)
                    .await;
            if let Err(e) = result {
                tracing::warn!(token = %id, error = %e, "recording a token's use failed");
            }
        });
    }

    /// An account's unrevoked tokens, newest first.
    pub async fn tokens_of(&self, user_id: &str) -> Result<Vec<TokenInfo>> {
        let tokens = sqlx::query_as(
            "SELECT t.id, t.kind, n.slug AS tenant_slug, t.created_at, t.last_used_at, t.expires_at
             FROM api_tokens t LEFT JOIN tenants n ON n.id = t.tenant_id
             WHERE t.user_id = ? AND t.revoked_at IS NULL ORDER BY t.created_at DESC",
        )
        .bind(user_id)
        .fetch_all(self.control().reader())
        .await?;
        Ok(tokens)
    }

    /// Revokes every token of an account (e.g. with a password reset); returns how many.
    pub async fn revoke_all_tokens(&self, user_id: &str, actor: &str) -> Result<u64> {
        let mut tx = self.control().writer().begin().await?;
        let done = sqlx::query(concat!(
            "UPDATE api_tokens SET revoked_at = ",
            crate::now!(),
            " WHERE user_id = ? AND revoked_at IS NULL"
        ))
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        let detail = serde_json::json!({ "user": user_id, "tokens": done.rows_affected() });
        audit(&mut tx, actor, "token.revoke_all", None, &detail).await?;
        tx.commit().await?;
        self.directory().clear();
        Ok(done.rows_affected())
    }

    /// Revokes one of an account's tokens; returns whether it was live.
    pub async fn revoke_token(&self, user_id: &str, token_id: &str, actor: &str) -> Result<bool> {
        let mut tx = self.control().writer().begin().await?;
        let done = sqlx::query(concat!(
            "UPDATE api_tokens SET revoked_at = ",
            crate::now!(),
            " WHERE id = ? AND user_id = ? AND revoked_at IS NULL"
        ))
        .bind(token_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() > 0 {
            audit(&mut tx, actor, "token.revoke", None, &serde_json::json!({ "token": token_id })).await?;
        }
        tx.commit().await?;
        self.directory().clear();
        Ok(done.rows_affected() > 0)
    }
}
