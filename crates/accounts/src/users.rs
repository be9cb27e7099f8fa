//! Users in the control plane: accounts (argon2id passwords), their ids and addresses
//! ([`UserId`], [`Email`]), operators and password resets. Memberships are in
//! [`crate::memberships`], tokens in [`crate::tokens`].

use std::fmt;

use serde::Serialize;

use crate::outbox::About;
pub use crate::passwords::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS, hash_password, verify_password};
use crate::secrets::{new_secret, token_digest};
use crate::{Error, Result};
use silo_core::Timestamp;
use silo_core::db;
use std::time::Duration;

/// Text-backed identity types: read as `&str` (`Deref`), printed and compared as their text,
/// stored as TEXT (sqlx `transparent`; rusqlite `FromSql` for the inline reads), serialised as
/// a string.
macro_rules! text_type {
    ($name:ident) => {
        impl rusqlite::types::FromSql for $name {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                String::column_result(value).map(Self)
            }
        }

        impl $name {
            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self == &other.0
            }
        }

        impl silo_core::db::Param for &$name {
            fn value(self) -> silo_core::db::Value {
                self.0.as_str().value()
            }

            fn null() -> silo_core::db::Value {
                <&str>::null()
            }
        }
    };
}

/// An account's id (a UUID v7, as text).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct UserId(String);

text_type!(UserId);

impl UserId {
    /// A new id.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }
}

impl Default for UserId {
    fn default() -> Self {
        Self::new()
    }
}

/// A validated, lowercased email address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct Email(String);

text_type!(Email);

impl Email {
    /// Validates an address: one `@`, a non-empty local part, a dotted domain, no spaces,
    /// at most 254 characters. Stored lowercased so lookups ignore case.
    pub fn parse(input: &str) -> Result<Self> {
        let email = input.trim().to_lowercase();
        // Characters an address only holds quoted (RFC 5322 specials), which no sign-up form
        // needs and which markup or mail headers would take for their own.
        let special = |c: char| "<>()[]\\,;:\"".contains(c);
        let valid = email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control() || special(c))
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            });
        if valid {
            Ok(Self(email))
        } else {
            let shown: String = input.trim().chars().take(80).collect();
            let more = if input.trim().chars().count() > 80 { "…" } else { "" };
            Err(Error::invalid("email", format!("“{shown}{more}” is not a valid email address")))
        }
    }
}

/// A user account.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct User {
    /// Id (UUID v7).
    pub id: UserId,
    /// Email, lowercased.
    pub email: Email,
    /// Display name.
    pub display_name: String,
    /// Creation time (UTC).
    pub created_at: Timestamp,
}

/// Users, passwords and operators (from [`crate::Accounts::users`]).
#[derive(Clone)]
pub struct Users(pub(crate) crate::Accounts);

impl Users {
    /// Creates an account. Hashing runs on the blocking pool, bounded (see [`crate::passwords`]).
    pub async fn create(
        &self,
        email: &str,
        password: &str,
        display_name: Option<&str>,
        actor: &str,
    ) -> Result<User> {
        let email = Email::parse(email)?;
        let hash = self.0.hashing().hash(password).await?;
        self.insert(&email, &display_name_or_default(display_name, &email), &hash, actor).await
    }

    /// Inserts an account whose password is already hashed (a confirmed sign-up).
    pub(crate) async fn insert(&self, email: &Email, name: &str, hash: &str, actor: &str) -> Result<User> {
        let id = UserId::new();
        let now = self.0.now();
        let mut tx = self.0.control().writer().begin().await?;
        let inserted = db::query(
            "INSERT INTO users (id, email, display_name, password_hash, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )
        .bind(&id)
        .bind(email.as_str())
        .bind(name)
        .bind(hash)
        .bind(now.as_str())
        .execute(&mut *tx)
        .await;
        if let Err(sqlx::Error::Database(e)) = &inserted
            && e.is_unique_violation()
        {
            return Err(Error::invalid("email", format!("an account for {email} already exists")));
        }
        inserted?;
        silo_core::audit::record(
            &mut tx,
            &now,
            actor,
            "user.create",
            None,
            &serde_json::json!({ "user": id }),
        )
        .await?;
        tx.commit().await?;
        self.by_email(email.as_str()).await
    }

    /// An account by email.
    pub async fn by_email(&self, email: &str) -> Result<User> {
        let email = Email::parse(email)?;
        db::query_as(USER_SQL_BY_EMAIL)
            .bind(email.as_str())
            .fetch_optional(self.0.control().reader())
            .await?
            .ok_or_else(|| Error::UnknownUser(email.to_string()))
    }

    /// Checks an email and password. Unknown accounts cost a hash too, so timing does not tell
    /// them apart from wrong passwords.
    pub async fn authenticate(&self, email: &str, password: &str) -> Result<Option<User>> {
        let Ok(email) = Email::parse(email) else { return Ok(None) };
        let stored: Option<(String, String)> =
            db::query_as("SELECT id, password_hash FROM users WHERE email = ?")
                .bind(email.as_str())
                .fetch_optional(self.0.control().reader())
                .await?;
        let matches = self.0.hashing().verify(stored.map(|(_, hash)| hash), password).await?;
        if matches { self.by_email(email.as_str()).await.map(Some) } else { Ok(None) }
    }

    /// An account by id.
    pub async fn by_id(&self, id: &str) -> Result<User> {
        db::query_as(USER_SQL_BY_ID)
            .bind(id)
            .fetch_optional(self.0.control().reader())
            .await?
            .ok_or_else(|| Error::UnknownUser(id.to_owned()))
    }

    /// Changes an account's display name, here and in the member rows of its workspaces.
    pub async fn update_profile(&self, user_id: &str, display_name: &str) -> Result<User> {
        let name = silo_workspace::text("display_name", "a display name", display_name, 1, 100)?;
        db::query("UPDATE users SET display_name = ?, updated_at = ? WHERE id = ?")
            .bind(&name)
            .bind(self.0.now().as_str().to_owned())
            .bind(user_id)
            .execute(self.0.control().writer())
            .await?;
        // The sessions' cached answers carry the old name.
        self.0.directory().clear();
        let user = self.by_id(user_id).await?;
        for workspace in self.0.memberships().workspaces_of(user_id).await? {
            if workspace.status != "active" {
                continue;
            }
            let tenant = self
                .0
                .tenancy()
                .tenant(&silo_core::TenantRef::Slug(silo_core::TenantSlug::parse(&workspace.slug)?))
                .await?;
            let turn = self.0.tenancy().db(tenant.id).await?.turn().await;
            silo_workspace::members::update_profile(&turn, &user.id, &user.email, &user.display_name)?;
        }
        Ok(user)
    }

    /// Changes a password after checking the current one; every other session of the account
    /// ends (`keep_session` is the digest of the session making the change).
    pub async fn change_password(
        &self,
        user_id: &str,
        current: &str,
        new: &str,
        keep_session: Option<&str>,
    ) -> Result<()> {
        let user = self.by_id(user_id).await?;
        if self.authenticate(&user.email, current).await?.is_none() {
            return Err(Error::invalid("current_password", "the current password is not right"));
        }
        self.set_password(user_id, new).await?;
        db::query("DELETE FROM sessions WHERE user_id = ? AND id_sha256 IS DISTINCT FROM ?")
            .bind(user_id)
            .bind(keep_session)
            .execute(self.0.control().writer())
            .await?;
        self.0.directory().clear();
        Ok(())
    }

    async fn set_password(&self, user_id: &str, password: &str) -> Result<()> {
        let hash = self.0.hashing().hash(password).await?;
        self.store_password_hash(user_id, &hash).await
    }

    async fn store_password_hash(&self, user_id: &str, hash: &str) -> Result<()> {
        let now = self.0.now();
        let mut tx = self.0.control().writer().begin().await?;
        db::query("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?")
            .bind(hash)
            .bind(now.as_str())
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        silo_core::audit::record(
            &mut tx,
            &now,
            user_id,
            "user.password",
            None,
            &serde_json::json!({ "user": user_id }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Emails a password-reset link if the account exists; says nothing either way (no
    /// account enumeration).
    pub async fn request_password_reset(&self, email: &str, base_url: &str, ttl: Duration) -> Result<()> {
        let Ok(user) = self.by_email(email).await else { return Ok(()) };
        let secret = new_secret("rst_");
        let now = self.0.now();
        db::query(
            "INSERT INTO password_resets (token_sha256, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(token_digest(&secret))
        .bind(&user.id)
        .bind(now.as_str())
        .bind(now.plus(ttl).as_str().to_owned())
        .execute(self.0.control().writer())
        .await?;
        let link = crate::outbox::EmailLink {
            url: format!("{}/password/reset/{secret}", base_url.trim_end_matches('/')),
            valid_for: ttl,
        };
        let body = "Someone asked to reset the password of your Silo account.\n\nChoose a new password: {link}\n\nIf it was not you, ignore this email.\n";
        self.0
            .outbox()
            .queue_with_link(&user.email, "Reset your Silo password", body, &link, About::default())
            .await
    }

    /// Whether a reset link is valid (unused, unexpired).
    pub async fn password_reset_valid(&self, secret: &str) -> Result<bool> {
        let found: Option<bool> = db::query_scalar(
            "SELECT TRUE FROM password_resets WHERE token_sha256 = ? AND used_at IS NULL AND expires_at > ?",
        )
        .bind(token_digest(secret))
        .bind(self.0.now().as_str().to_owned())
        .fetch_optional(self.0.control().reader())
        .await?;
        Ok(found.is_some())
    }

    /// Sets a new password through a reset link (used once); every session of the account ends,
    /// and with `revoke_tokens` every API token too (a reset often means the account was
    /// compromised, and tokens survive a password change otherwise).
    pub async fn reset_password(&self, secret: &str, new: &str, revoke_tokens: bool) -> Result<User> {
        // Hashed before the link is used up, so a refused or overloaded hash leaves it valid.
        let hash = self.0.hashing().hash(new).await?;
        let user_id: Option<String> = db::query_scalar(
            "UPDATE password_resets SET used_at = ?2 WHERE token_sha256 = ?1 AND used_at IS NULL AND expires_at > ?2
             RETURNING user_id",
        )
        .bind(token_digest(secret))
        .bind(self.0.now().as_str().to_owned())
        .fetch_optional(self.0.control().writer())
        .await?;
        let user_id = user_id.ok_or_else(|| Error::invalid("link", "this reset link is no longer valid"))?;
        self.store_password_hash(&user_id, &hash).await?;
        self.0.sessions().revoke_all(&user_id).await?;
        if revoke_tokens {
            self.0.tokens().revoke_all(&user_id, &user_id).await?;
        }
        self.by_id(&user_id).await
    }

    /// Removes an account that has no workspace yet (undoing a failed sign-up). Its sessions,
    /// tokens and operator grant go with it.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let mut tx = self.0.control().writer().begin().await?;
        let memberships: i64 = db::query_scalar("SELECT count(*) FROM memberships WHERE user_id = ?")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        if memberships > 0 {
            return Err(Error::invalid("account", "the account still belongs to a workspace"));
        }
        db::query("DELETE FROM users WHERE id = ?").bind(id).execute(&mut *tx).await?;
        silo_core::audit::record(
            &mut tx,
            &self.0.now(),
            "system",
            "user.delete",
            None,
            &serde_json::json!({ "user": id }),
        )
        .await?;
        tx.commit().await?;
        self.0.directory().clear();
        Ok(())
    }

    /// Makes an existing account an operator.
    pub async fn grant_operator(&self, email: &str, actor: &str) -> Result<User> {
        let user = self.by_email(email).await?;
        let now = self.0.now();
        let mut tx = self.0.control().writer().begin().await?;
        db::query("INSERT INTO operators (user_id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING")
            .bind(&user.id)
            .bind(now.as_str())
            .execute(&mut *tx)
            .await?;
        silo_core::audit::record(
            &mut tx,
            &now,
            actor,
            "operator.grant",
            None,
            &serde_json::json!({ "user": user.id }),
        )
        .await?;
        tx.commit().await?;
        self.0.directory().clear();
        Ok(user)
    }

    /// Whether the account is an operator.
    pub async fn is_operator(&self, user_id: &str) -> Result<bool> {
        let control = self.0.control().clone();
        (self.0.directory().operators)
            .get_or_read(user_id.to_owned(), |user_id| async move {
                let found: Option<bool> = db::query_scalar("SELECT TRUE FROM operators WHERE user_id = ?")
                    .bind(user_id)
                    .fetch_optional(control.reader())
                    .await?;
                Ok(found.is_some())
            })
            .await
    }
}

/// The name to show: the one given, else the address's local part.
pub(crate) fn display_name_or_default(given: Option<&str>, email: &Email) -> String {
    given
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| email.as_str().split('@').next().unwrap_or_default())
        .to_owned()
}

const USER_SQL_BY_EMAIL: &str = "SELECT id, email, display_name, created_at FROM users WHERE email = ?";
const USER_SQL_BY_ID: &str = "SELECT id, email, display_name, created_at FROM users WHERE id = ?";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_validated_and_lowercased() {
        assert_eq!(Email::parse("  Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        assert_eq!(Email::parse("o'brien@example.com").unwrap().as_str(), "o'brien@example.com");
        for bad in ["<b>@x.com", "a,b@x.com", "a@x;y.com", "\"q\"@x.com", "a(b)@x.com"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        let long = Email::parse(&"x".repeat(10_000)).unwrap_err().to_string();
        assert!(long.len() < 200, "the message quotes a bounded part of the input: {long}");
        for bad in [
            "",
            "ada",
            "@example.com",
            "ada@",
            "ada@example",
            "ada@@example.com",
            "a da@example.com",
            "ada@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }
}
