//! API tokens: issuing (shown once, stored as digests), authenticating, listing, revoking.

use crate::users::{Email, UserId};
use rusqlite::OptionalExtension;
use serde::Serialize;
use silo_core::Timestamp;
use silo_core::db;

use std::time::Duration;

use crate::secrets::{new_token, token_digest};
use crate::{Error, Result};
use silo_core::TenantRef;
use silo_core::ids::TenantId;

/// A token's principal: who holds it, for which tenant, until when, whether read-only, and
/// whether its holder still has the standing it was issued for (`?1` digest, `?2` now).
const PRINCIPAL: &str = "SELECT t.id, t.user_id, u.email, t.tenant_id, t.last_used_at, t.expires_at,
        (t.kind = 'operator' AND EXISTS (SELECT 1 FROM operators o WHERE o.user_id = t.user_id))
        OR (t.kind = 'personal' AND EXISTS (SELECT 1 FROM memberships m
            WHERE m.user_id = t.user_id AND m.tenant_id = t.tenant_id)),
        t.access = 'read_only'
 FROM api_tokens t JOIN users u ON u.id = t.user_id
 WHERE t.token_sha256 = ?1 AND t.revoked_at IS NULL
   AND (t.expires_at IS NULL OR t.expires_at > ?2)";

/// How stale a token's `last_used_at` may get before a request refreshes it (a write per
/// request, or per directory refresh, would load the control plane for no one's benefit).
pub const LAST_USED_STEP: std::time::Duration = std::time::Duration::from_secs(300);

/// What a valid bearer token acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPrincipal {
    /// The token's id.
    pub token_id: String,
    /// The account it acts for.
    pub user_id: UserId,
    /// That account's email.
    pub email: Email,
    /// `None` for an operator token; the one tenant of a personal token.
    pub tenant: Option<TenantId>,
    /// When the token stops working (UTC), if it expires.
    pub expires_at: Option<Timestamp>,
    /// It may only read (GET and HEAD).
    pub read_only: bool,
}

impl TokenPrincipal {
    fn expired(&self, now: &Timestamp) -> bool {
        self.expires_at.as_ref().is_some_and(|at| at <= now)
    }
}

/// A token as its owner sees it (never the secret).
#[derive(Clone, Debug, Serialize)]
pub struct TokenInfo {
    /// Id.
    pub id: String,
    /// What its owner named it for ("" for tokens made before names).
    pub name: String,
    /// It may only read.
    pub read_only: bool,
    /// `operator` or `personal`.
    pub kind: String,
    /// The workspace slug of a personal token.
    pub tenant_slug: Option<String>,
    /// Creation time (UTC).
    pub created_at: Timestamp,
    /// Last use (UTC, to within five minutes).
    pub last_used_at: Option<Timestamp>,
    /// When it stops working (UTC); `None`: never.
    pub expires_at: Option<Timestamp>,
}

/// What a new token is called, how long it works and whether it may only read.
#[derive(Clone, Debug, Default)]
pub struct TokenSpec {
    /// What it is for ("deploy script"); at most [`TOKEN_NAME_CHARS`] characters.
    pub name: String,
    /// Working for this long, or until revoked.
    pub lifetime: Option<Duration>,
    /// Only reads (GET and HEAD); anything else is refused.
    pub read_only: bool,
}

/// The most live (unrevoked, unexpired) tokens one account holds.
pub const TOKENS_PER_ACCOUNT: i64 = 50;

/// The longest token name.
pub const TOKEN_NAME_CHARS: usize = 100;

/// Which kind of API token to issue.
#[derive(Clone, Debug)]
pub enum TokenScope {
    /// An operator's token for the operator API.
    Operator,
    /// A user's personal token for one tenant.
    Personal(TenantRef),
}

/// API tokens (from [`crate::Accounts::tokens`]).
#[derive(Clone)]
pub struct Tokens(pub(crate) crate::Accounts);

impl Tokens {
    /// Issues a new API token for an account that never expires; see
    /// [`Tokens::issue_expiring`].
    pub async fn issue(&self, email: &str, scope: TokenScope, actor: &str) -> Result<String> {
        self.issue_expiring(email, scope, actor, None).await
    }

    /// Issues a new API token for an account, working for `lifetime` (or until revoked); the
    /// token is returned once and only its digest is stored. Operator tokens need an operator;
    /// personal tokens need a membership.
    pub async fn issue_expiring(
        &self,
        email: &str,
        scope: TokenScope,
        actor: &str,
        lifetime: Option<Duration>,
    ) -> Result<String> {
        self.issue_with(email, scope, actor, &TokenSpec { lifetime, ..TokenSpec::default() }).await
    }

    /// Issues a new API token as `spec` says: named, working for a time or until revoked,
    /// read-only or not (see [`Tokens::issue_expiring`]).
    pub async fn issue_with(
        &self,
        email: &str,
        scope: TokenScope,
        actor: &str,
        spec: &TokenSpec,
    ) -> Result<String> {
        let name = silo_core::text::trim(&spec.name);
        if name.chars().count() > TOKEN_NAME_CHARS {
            return Err(Error::invalid(
                "name",
                format!("A token's name is at most {TOKEN_NAME_CHARS} characters."),
            ));
        }
        let lifetime = spec.lifetime;
        let user = self.0.users().by_email(email).await?;
        let (kind, tenant_id) = match &scope {
            TokenScope::Operator => {
                if !self.0.users().is_operator(&user.id).await? {
                    return Err(Error::invalid("scope", format!("{} is not an operator", user.email)));
                }
                ("operator", None)
            }
            TokenScope::Personal(tenant) => {
                let found = self.0.tenancy().tenant(tenant).await?;
                // A held restore is nothing its members can act in until it is released.
                if found.held || self.0.memberships().role_in(tenant, &user.id).await?.is_none() {
                    return Err(Error::invalid(
                        "scope",
                        format!("{} is not a member of {}", user.email, found.slug),
                    ));
                }
                ("personal", Some(found.id))
            }
        };
        let (token, digest) = new_token();
        let now = self.0.now();
        let mut tx = self.0.control().writer().begin().await?;
        // Counted in the inserting statement, so concurrent issues cannot pass the limit.
        let inserted = db::query(
            "INSERT INTO api_tokens (id, user_id, tenant_id, kind, token_sha256, created_at, expires_at, name, access)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9
             WHERE (SELECT count(*) FROM api_tokens WHERE user_id = ?2 AND revoked_at IS NULL
                    AND (expires_at IS NULL OR expires_at > ?6)) < ?10",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&user.id)
        .bind(tenant_id.map(|t| t.to_string()))
        .bind(kind)
        .bind(&digest)
        .bind(now.as_str())
        .bind(lifetime.map(|l| now.plus(l).as_str().to_owned()))
        .bind(name)
        .bind(if spec.read_only { "read_only" } else { "read_write" })
        .bind(TOKENS_PER_ACCOUNT)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(Error::LimitReached(format!(
                "An account has at most {TOKENS_PER_ACCOUNT} live tokens: revoke one you no longer use first."
            )));
        }
        silo_core::audit::record(
            &mut tx,
            &now,
            actor,
            "token.issue",
            tenant_id,
            &serde_json::json!({
                "user": user.id, "kind": kind, "name": name, "read_only": spec.read_only,
                "lifetime_s": lifetime.map(|l| l.as_secs()),
            }),
        )
        .await?;
        tx.commit().await?;
        self.0.directory().clear();
        Ok(token)
    }

    /// The principal of a bearer token, if it is valid, unrevoked, unexpired and its holder
    /// still has the standing it was issued for (operator, or member of its tenant).
    pub async fn authenticate(&self, secret: &str) -> Result<Option<TokenPrincipal>> {
        let digest = token_digest(secret);
        let tokens = self.clone();
        let principal = (self.0.directory().tokens)
            .get_or_read(digest, |digest| async move { tokens.read(&digest).await });
        // A remembered token may have expired since: expiry is checked on every use.
        let now = self.0.now();
        Ok(principal.await?.filter(|p| !p.expired(&now)))
    }

    /// Reads a token's principal from the control plane (see [`Tokens::authenticate`]), inline
    /// on `control.db`: a request waits for it.
    async fn read(&self, digest: &str) -> Result<Option<TokenPrincipal>> {
        let now = self.0.now();
        let inline = self.0.control().read_inline(|conn| {
            conn.prepare_cached(PRINCIPAL)?
                .query_row([digest, now.as_str()], |row| {
                    let standing: bool = row.get(6)?;
                    let last_used: Option<Timestamp> = row.get(4)?;
                    let principal = (
                        row.get(0)?,
                        row.get(1)?,
                        row.get(2)?,
                        row.get::<_, Option<String>>(3)?,
                        row.get(5)?,
                        row.get(7)?,
                    );
                    Ok(standing.then_some((principal, last_used)))
                })
                .optional()
        });
        let row = match inline {
            Some(read) => read?,
            None => {
                let row = db::query(PRINCIPAL)
                    .bind(digest)
                    .bind(now.as_str())
                    .fetch_optional(self.0.control().reader())
                    .await?;
                row.map(|row| -> sqlx::Result<_> {
                    let standing: bool = row.try_get(6)?;
                    let principal = (
                        row.try_get(0)?,
                        row.try_get(1)?,
                        row.try_get(2)?,
                        row.try_get::<Option<String>, _>(3)?,
                        row.try_get(5)?,
                        row.try_get(7)?,
                    );
                    Ok(standing.then_some((principal, row.try_get::<Option<Timestamp>, _>(4)?)))
                })
                .transpose()?
            }
        };
        let Some(((token_id, user_id, email, tenant, expires_at, read_only), last_used)) = row.flatten()
        else {
            return Ok(None);
        };
        let tenant = tenant
            .map(|t: String| {
                t.parse().map_err(|_| Error::Config(format!("corrupt tenant id `{t}` in api_tokens")))
            })
            .transpose()?;
        let principal = TokenPrincipal { token_id, user_id, email, tenant, expires_at, read_only };
        if last_used.is_none_or(|at| at < now.minus(LAST_USED_STEP)) {
            self.touch(&principal.token_id, &now);
        }
        Ok(Some(principal))
    }

    /// Records a token's use without delaying the request.
    fn touch(&self, id: &str, now: &Timestamp) {
        let writer = self.0.control().writer().clone();
        let (id, now) = (id.to_owned(), now.clone());
        tokio::spawn(async move {
            let result = db::query("UPDATE api_tokens SET last_used_at = ? WHERE id = ?")
                .bind(now.as_str())
                .bind(&id)
                .execute(&writer)
                .await;
            if let Err(e) = result {
                tracing::warn!(token = %id, error = %e, "recording a token's use failed");
            }
        });
    }

    /// An account's unrevoked tokens, newest first.
    pub async fn of_user(&self, user_id: &str) -> Result<Vec<TokenInfo>> {
        type Row =
            (String, String, Option<String>, Timestamp, Option<Timestamp>, Option<Timestamp>, String, bool);
        let rows: Vec<Row> = db::query_as(
            "SELECT id, kind, tenant_id, created_at, last_used_at, expires_at, name, access = 'read_only'
             FROM api_tokens
             WHERE user_id = ? AND revoked_at IS NULL ORDER BY created_at DESC",
        )
        .bind(user_id)
        .fetch_all(self.0.control().reader())
        .await?;
        let ids: Vec<String> = rows.iter().filter_map(|row| row.2.clone()).collect();
        let tenants = self.0.control().tenants_by_ids(&ids).await?;
        Ok(rows
            .into_iter()
            .map(|(id, kind, tenant, created_at, last_used_at, expires_at, name, read_only)| TokenInfo {
                id,
                name,
                read_only,
                kind,
                tenant_slug: tenant.and_then(|t| tenants.get(&t)).map(|t| t.slug.to_string()),
                created_at,
                last_used_at,
                expires_at,
            })
            .collect())
    }

    /// Revokes every token of an account (e.g. with a password reset); returns how many.
    pub async fn revoke_all(&self, user_id: &str, actor: &str) -> Result<u64> {
        let now = self.0.now();
        let mut tx = self.0.control().writer().begin().await?;
        let done = db::query("UPDATE api_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL")
            .bind(now.as_str())
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let detail = serde_json::json!({ "user": user_id, "tokens": done.rows_affected() });
        silo_core::audit::record(&mut tx, &now, actor, "token.revoke_all", None, &detail).await?;
        tx.commit().await?;
        self.0.directory().clear();
        Ok(done.rows_affected())
    }

    /// Revokes one of an account's tokens; returns whether it was live.
    pub async fn revoke(&self, user_id: &str, token_id: &str, actor: &str) -> Result<bool> {
        let now = self.0.now();
        let mut tx = self.0.control().writer().begin().await?;
        let done = db::query(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
        )
        .bind(now.as_str())
        .bind(token_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() > 0 {
            silo_core::audit::record(
                &mut tx,
                &now,
                actor,
                "token.revoke",
                None,
                &serde_json::json!({ "token": token_id }),
            )
            .await?;
        }
        tx.commit().await?;
        self.0.directory().clear();
        Ok(done.rows_affected() > 0)
    }
}
