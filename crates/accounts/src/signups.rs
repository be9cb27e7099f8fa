//! Sign-up with a confirmed address.
//!
//! Sign-up must not tell a visitor whether an address has an account. [`Signups::start`]
//! answers the same way for both, after the same work (one argon2id hash, one email):
//! - a new address gets a pending sign-up (`signups`: the password already hashed, the
//!   workspace asked for) and an email with a one-time confirmation link, valid for
//!   [`SIGNUP_HOURS`];
//! - a known address gets an email telling its owner about the attempt (sign in, or reset the
//!   password), and nothing is created.
//!
//! The account and its workspace are created only when the link is used
//! ([`Signups::confirm`]): account, workspace and owner membership together, or none of
//! them. Errors about the input itself (a malformed address, a short password, a workspace
//! address that is taken or invalid) are the same for known and new addresses.

use std::time::Duration;

use serde::Serialize;

use crate::outbox::{About, EmailLink, LINK_PLACEHOLDER};
use crate::roles::Role;
use crate::secrets::{new_secret, token_digest};
use crate::users::{Email, User, display_name_or_default};
use crate::{Error, Result};
use silo_core::db;
use silo_core::ids::TenantSlug;
use silo_tenancy::{CreateTenant, Tenant};

/// How long a confirmation link works.
pub const SIGNUP_HOURS: u64 = 24;

/// What a visitor asks for on the sign-up form.
#[derive(Clone, Debug)]
pub struct SignupRequest {
    /// Their email address.
    pub email: String,
    /// Their name (the address's local part when empty).
    pub name: String,
    /// The password they chose.
    pub password: String,
    /// The workspace's name.
    pub workspace_name: String,
    /// The workspace's address.
    pub slug: String,
}

impl SignupRequest {
    fn workspace_name(&self, slug: &TenantSlug) -> String {
        let name = self.workspace_name.trim();
        if name.is_empty() { slug.to_string() } else { name.to_owned() }
    }
}

/// A sign-up waiting for its confirmation link (what the confirmation page shows).
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct PendingSignup {
    /// The address being confirmed.
    pub email: String,
    /// The workspace's name.
    pub workspace_name: String,
    /// The workspace's address.
    pub slug: String,
}

/// Sign-ups (from [`crate::Accounts::signups`]).
#[derive(Clone)]
pub struct Signups(pub(crate) crate::Accounts);

impl Signups {
    /// Starts a sign-up: checks the input, hashes the password, and emails either a
    /// confirmation link (new address) or a notice (known address). The caller cannot tell
    /// which happened.
    pub async fn start(&self, request: &SignupRequest, base_url: &str) -> Result<()> {
        let email = Email::parse(&request.email)?;
        if request.name.trim().chars().count() > 100 {
            return Err(Error::invalid("name", "a display name is at most 100 characters"));
        }
        let slug = match request.slug.trim() {
            "" => self.0.memberships().free_address_for(&request.workspace_name).await?,
            typed => TenantSlug::parse(typed)?,
        };
        let workspace_name = request.workspace_name(&slug);
        if workspace_name.chars().count() > 200 {
            return Err(Error::invalid("workspace_name", "a workspace name is at most 200 characters"));
        }
        if self.0.control().slug_taken(&slug).await? {
            return Err(silo_tenancy::Error::SlugTaken(slug.to_string()).into());
        }
        // Both branches below pay for this hash, so their timing matches too.
        let hash = self.0.hashing().hash(&request.password).await?;
        let base = base_url.trim_end_matches('/');
        match self.0.users().by_email(email.as_str()).await {
            Ok(user) => {
                let body = format!(
                    "Someone (perhaps you) tried to sign up for Silo with this address, which already has an account.\n\n\
                     To sign in: {base}/login\nForgot your password? {base}/password/forgot\n\n\
                     If it was not you, you can ignore this email: nothing was changed.\n"
                );
                self.0
                    .outbox()
                    .queue(&user.email, "Sign-up attempt with your Silo address", &body, About::default())
                    .await
            }
            Err(Error::UnknownUser(_)) => {
                // Expired and long-used sign-ups hold password hashes no one can use: drop them
                // (a sign-up used just now may still be handed back by a failed confirmation).
                let now = self.0.now();
                db::query("DELETE FROM signups WHERE expires_at <= ?1 OR used_at <= ?2")
                    .bind(now.as_str())
                    .bind(now.minus(Duration::from_secs(3600)).as_str().to_owned())
                    .execute(self.0.control().writer())
                    .await?;
                let secret = new_secret("sgn_");
                db::query(
                    "INSERT INTO signups (token_sha256, email, display_name, password_hash, workspace_name, slug, created_at, expires_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(token_digest(&secret))
                .bind(email.as_str())
                .bind(display_name_or_default(Some(&request.name), &email))
                .bind(&hash)
                .bind(&workspace_name)
                .bind(slug.as_str())
                .bind(now.as_str())
                .bind(now.plus(Duration::from_secs(SIGNUP_HOURS * 3600)).as_str().to_owned())
                .execute(self.0.control().writer())
                .await?;
                let link = EmailLink {
                    url: format!("{base}/signup/confirm/{secret}"),
                    valid_for: Duration::from_secs(SIGNUP_HOURS * 3600),
                };
                let body = format!(
                    "Welcome to Silo. Confirm your address to create your account and the workspace \"{workspace_name}\":\n\n\
                     {LINK_PLACEHOLDER}\n\nThe link works once, for {SIGNUP_HOURS} hours. If you did not sign up, ignore this email.\n"
                );
                self.0
                    .outbox()
                    .queue_with_link(
                        email.as_str(),
                        "Confirm your Silo sign-up",
                        &body,
                        &link,
                        About::default(),
                    )
                    .await
            }
            Err(e) => Err(e),
        }
    }

    /// The pending sign-up of a confirmation link, if it is unused and unexpired.
    pub async fn pending(&self, secret: &str) -> Result<Option<PendingSignup>> {
        let pending = db::query_as(
            "SELECT email, workspace_name, slug FROM signups
             WHERE token_sha256 = ? AND used_at IS NULL AND expires_at > ?",
        )
        .bind(token_digest(secret))
        .bind(self.0.now().as_str().to_owned())
        .fetch_optional(self.0.control().reader())
        .await?;
        Ok(pending)
    }

    /// Completes a sign-up through its link: creates the account, the workspace (with the name
    /// and address given now, which may differ from the form's if that address was taken
    /// meanwhile) and the owner membership, all or nothing. The link works once.
    pub async fn confirm(&self, secret: &str, workspace_name: &str, slug: &str) -> Result<(User, Tenant)> {
        let slug = TenantSlug::parse(slug.trim())?;
        if self.0.control().slug_taken(&slug).await? {
            return Err(silo_tenancy::Error::SlugTaken(slug.to_string()).into());
        }
        let claimed: Option<(String, String, String)> = db::query_as(
            "UPDATE signups SET used_at = ?2 WHERE token_sha256 = ?1 AND used_at IS NULL AND expires_at > ?2
             RETURNING email, display_name, password_hash",
        )
        .bind(token_digest(secret))
        .bind(self.0.now().as_str().to_owned())
        .fetch_optional(self.0.control().writer())
        .await?;
        let Some((email, name, hash)) = claimed else {
            return Err(Error::invalid("link", "this confirmation link is no longer valid; sign up again"));
        };
        let created =
            self.create_signed_up(&Email::parse(&email)?, &name, &hash, workspace_name, &slug).await;
        if created.is_err() {
            // Nothing was created: the link works again (e.g. with another workspace address).
            db::query("UPDATE signups SET used_at = NULL WHERE token_sha256 = ?")
                .bind(token_digest(secret))
                .execute(self.0.control().writer())
                .await?;
        }
        created
    }

    /// Account, then workspace with its owner (one operation); when the workspace cannot be
    /// made, the account is removed again.
    async fn create_signed_up(
        &self,
        email: &Email,
        name: &str,
        hash: &str,
        workspace_name: &str,
        slug: &TenantSlug,
    ) -> Result<(User, Tenant)> {
        let user = match self.0.users().insert(email, name, hash, "signup").await {
            Ok(user) => user,
            Err(Error::Invalid { .. }) => {
                return Err(Error::invalid(
                    "email",
                    format!("an account for {email} exists already: sign in instead"),
                ));
            }
            Err(e) => return Err(e),
        };
        let request = CreateTenant {
            slug: slug.to_string(),
            name: Some(workspace_name.to_owned()),
            ..CreateTenant::default()
        };
        let founder = crate::Memberships::founder(&user, Role::Owner, &self.0.now());
        match self.0.tenancy().tenants().create_with(request, Some(founder), &user.email).await {
            Ok(tenant) => Ok((user, tenant)),
            Err(e) => {
                self.undo_user(&user).await;
                Err(e.into())
            }
        }
    }

    async fn undo_user(&self, user: &User) {
        if let Err(cleanup) = self.0.users().delete(&user.id).await {
            tracing::error!(user = %user.id, error = %cleanup, "removing the account of a failed sign-up failed");
        }
    }
}
