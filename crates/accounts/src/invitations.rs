//! Invitations: an owner or admin invites an email address to a workspace; the link carries a
//! random secret (only its digest is stored) and goes out through the [`crate::outbox`]. The
//! invitee accepts with an existing account (signed in with that email) or creates one.

use crate::users::Email;
use serde::Serialize;
use silo_core::Timestamp;
use silo_core::db;

use crate::roles::{By, Change, Role};
use crate::secrets::{new_secret, token_digest};
use crate::users::User;
use crate::{Error, Result};
use silo_core::ids::TenantId;
use silo_tenancy::{Tenant, TenantStatus};

/// How long an invitation link stays valid.
pub const INVITATION_DAYS: u32 = 7;

/// A pending (or just accepted) invitation.
#[derive(Clone, Debug, Serialize)]
pub struct Invitation {
    /// Id.
    pub id: String,
    /// Workspace slug.
    pub tenant_slug: String,
    /// Workspace name.
    pub tenant_name: String,
    /// Who is invited.
    pub email: Email,
    /// The role they will get.
    pub role: Role,
    /// Sent (UTC).
    pub created_at: Timestamp,
    /// Valid until (UTC).
    pub expires_at: Timestamp,
}

const SELECT: &str =
    "SELECT i.id, i.tenant_id, i.email, i.role, i.created_at, i.expires_at FROM invitations i";

/// An invitation as stored: its workspace by id.
type Row = (String, String, Email, String, Timestamp, Timestamp);

impl Invitations {
    /// The invitations of `rows` with their workspace's slug and name (`active_only`: only
    /// those whose workspace is active, as a link is valid only then).
    async fn named(&self, rows: Vec<Row>, active_only: bool) -> Result<Vec<Invitation>> {
        let ids: Vec<String> = rows.iter().map(|row| row.1.clone()).collect();
        let tenants = self.0.control().tenants_by_ids(&ids).await?;
        let mut invitations = Vec::new();
        for (id, tenant, email, role, created_at, expires_at) in rows {
            let Some(tenant) =
                tenants.get(&tenant).filter(|t| !active_only || t.status == TenantStatus::Active)
            else {
                continue;
            };
            invitations.push(Invitation {
                id,
                tenant_slug: tenant.slug.to_string(),
                tenant_name: tenant.name.clone(),
                email,
                role: role.parse()?,
                created_at,
                expires_at,
            });
        }
        Ok(invitations)
    }
}

/// Invitations to a tenant (from [`crate::Accounts::invitations`]).
#[derive(Clone)]
pub struct Invitations(pub(crate) crate::Accounts);

impl Invitations {
    /// Invites `email` to `tenant` with `role` (admin or member); returns the invitation and the
    /// secret of its link (also emailed). The inviter must be an admin or owner there. With
    /// `seats`, the invitation is made only while members and pending invitations number fewer
    /// (counted in the inserting statement, so concurrent invitations cannot pass it);
    /// otherwise [`Error::LimitReached`].
    pub async fn create(
        &self,
        tenant: &Tenant,
        email: &str,
        role: Role,
        inviter: &User,
        base_url: &str,
        seats: Option<i64>,
    ) -> Result<(Invitation, String)> {
        let email = crate::users::Email::parse(email)?;
        if role == Role::Owner {
            return Err(Error::invalid(
                "role",
                "invite as admin or member; promote to owner once they joined",
            ));
        }
        let by = By::Member { user_id: &inviter.id, label: &inviter.email };
        self.0.memberships().check(tenant, by, None, Change::Invitation(role), "").await?;
        let already: Option<bool> = db::query_scalar(
            "SELECT TRUE FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.tenant_id = ? AND u.email = ?",
        )
        .bind(tenant.id.to_string())
        .bind(email.as_str())
        .fetch_optional(self.0.control().reader())
        .await?;
        if already.is_some() {
            return Err(Error::invalid("email", format!("{email} is already a member of this workspace")));
        }
        self.issue(tenant, &email, role, inviter, base_url, seats).await
    }

    /// Invites the first owner of a workspace an operator provisioned for an address without
    /// an account: the link makes the account (or takes the one made meanwhile) and joins it
    /// as owner. Only while the workspace has no member at all, so it cannot hand an existing
    /// workspace to someone.
    pub async fn invite_first_owner(
        &self,
        tenant: &Tenant,
        email: &str,
        operator: &User,
        base_url: &str,
    ) -> Result<(Invitation, String)> {
        let email = crate::users::Email::parse(email)?;
        if !self.0.users().is_operator(&operator.id).await? {
            return Err(Error::Forbidden("only operators provision workspaces".into()));
        }
        let members: i64 = db::query_scalar("SELECT count(*) FROM memberships WHERE tenant_id = ?")
            .bind(tenant.id.to_string())
            .fetch_one(self.0.control().reader())
            .await?;
        if members > 0 {
            return Err(Error::Conflict(format!(
                "{} has members already: its owners invite people",
                tenant.slug
            )));
        }
        self.issue(tenant, &email, Role::Owner, operator, base_url, None).await
    }

    /// Records an invitation, audits it and emails its link.
    async fn issue(
        &self,
        tenant: &Tenant,
        email: &crate::users::Email,
        role: Role,
        inviter: &User,
        base_url: &str,
        seats: Option<i64>,
    ) -> Result<(Invitation, String)> {
        let secret = new_secret("inv_");
        let id = uuid::Uuid::now_v7().to_string();
        let now = self.0.now();
        let mut tx = self.0.control().writer().begin().await?;
        // A new invitation to an address replaces the one pending there (its link stops
        // working): one pending invitation, and one seat, per address.
        db::query(
            "UPDATE invitations SET revoked_at = ?3
             WHERE tenant_id = ?1 AND email = ?2 AND accepted_at IS NULL AND revoked_at IS NULL",
        )
        .bind(tenant.id.to_string())
        .bind(email.as_str())
        .bind(now.as_str())
        .execute(&mut *tx)
        .await?;
        let inserted = db::query(
            "INSERT INTO invitations (id, token_sha256, tenant_id, email, role, invited_by, created_at, expires_at)
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?9, ?7
             WHERE ?8 IS NULL OR (SELECT count(*) FROM memberships WHERE tenant_id = ?3)
                 + (SELECT count(*) FROM invitations WHERE tenant_id = ?3 AND accepted_at IS NULL
                    AND revoked_at IS NULL AND expires_at > ?9) < ?8",
        )
        .bind(&id)
        .bind(token_digest(&secret))
        .bind(tenant.id.to_string())
        .bind(email.as_str())
        .bind(role.as_str())
        .bind(&inviter.id)
        .bind(now.plus(std::time::Duration::from_secs(u64::from(INVITATION_DAYS) * 86_400)).as_str().to_owned())
        .bind(seats)
        .bind(now.as_str())
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(Error::LimitReached(format!("all {} seats are taken", seats.unwrap_or_default())));
        }
        let detail = serde_json::json!({ "invitation": id, "role": role });
        silo_core::audit::record(
            &mut tx,
            &now,
            &inviter.email,
            "invitation.create",
            Some(tenant.id),
            &detail,
        )
        .await?;
        tx.commit().await?;
        let link = crate::outbox::EmailLink {
            url: format!("{}/invitations/{secret}", base_url.trim_end_matches('/')),
            valid_for: std::time::Duration::from_secs(u64::from(INVITATION_DAYS) * 86_400),
        };
        let body = format!(
            "{} invited you to the workspace \"{}\" on Silo as {}.\n\nAccept the invitation: {}\n\nThe link is valid for {INVITATION_DAYS} days.\n",
            inviter.display_name,
            tenant.name,
            role.as_str(),
            crate::outbox::LINK_PLACEHOLDER,
        );
        self.0
            .outbox()
            .queue_with_link(
                email.as_str(),
                &format!("Join {} on Silo", tenant.name),
                &body,
                &link,
                crate::outbox::About { user: Some(&inviter.id), tenant: Some(tenant.id) },
            )
            .await?;
        let row = db::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE i.id = ?")))
            .bind(&id)
            .fetch_one(self.0.control().reader())
            .await?;
        let invitation = self
            .named(vec![row], false)
            .await?
            .pop()
            .ok_or_else(|| Error::from(silo_tenancy::Error::NotFound(tenant.slug.to_string())))?;
        Ok((invitation, secret))
    }

    /// The pending, unexpired invitation of a link secret.
    pub async fn find(&self, secret: &str) -> Result<Option<Invitation>> {
        let row: Option<Row> = db::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE i.token_sha256 = ? AND i.accepted_at IS NULL AND i.revoked_at IS NULL
             AND i.expires_at > ?"
        )))
        .bind(token_digest(secret))
        .bind(self.0.now().as_str().to_owned())
        .fetch_optional(self.0.control().reader())
        .await?;
        Ok(self.named(row.into_iter().collect(), true).await?.pop())
    }

    /// Accepts an invitation as `user` (whose email must be the invited one); returns the
    /// workspace slug.
    pub async fn accept(&self, secret: &str, user: &User) -> Result<String> {
        let invitation = self
            .find(secret)
            .await?
            .ok_or_else(|| Error::invalid("invitation", "this invitation is no longer valid"))?;
        if !invitation.email.eq_ignore_ascii_case(&user.email) {
            return Err(Error::invalid(
                "email",
                format!(
                    "this invitation is for {}; sign in with that address to accept it",
                    invitation.email
                ),
            ));
        }
        let role = invitation.role;
        let slug = silo_core::TenantSlug::parse(&invitation.tenant_slug)?;
        let tenant = self.0.tenancy().tenant(&silo_core::TenantRef::Slug(slug)).await?;
        // Marked first, so a link is used once even when two accepts race.
        let claimed =
            db::query("UPDATE invitations SET accepted_at = ? WHERE id = ? AND accepted_at IS NULL AND revoked_at IS NULL")
        .bind(self.0.now().as_str().to_owned())
        .bind(&invitation.id)
        .execute(self.0.control().writer())
        .await?;
        if claimed.rows_affected() == 0 {
            return Err(Error::invalid("invitation", "this invitation is no longer valid"));
        }
        if let Err(e) = self.0.memberships().join(&tenant, user, role, &user.email).await {
            // Not joined (e.g. already a member): the claim is undone.
            db::query("UPDATE invitations SET accepted_at = NULL WHERE id = ?")
                .bind(&invitation.id)
                .execute(self.0.control().writer())
                .await?;
            return Err(e);
        }
        Ok(invitation.tenant_slug)
    }

    /// Pending invitations of a workspace, newest first.
    pub async fn pending(&self, tenant: TenantId) -> Result<Vec<Invitation>> {
        let rows = db::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE i.tenant_id = ? AND i.accepted_at IS NULL AND i.revoked_at IS NULL
             AND i.expires_at > ? ORDER BY i.created_at DESC LIMIT 100"
        )))
        .bind(tenant.to_string())
        .bind(self.0.now().as_str().to_owned())
        .fetch_all(self.0.control().reader())
        .await?;
        self.named(rows, false).await
    }

    /// How many invitations of a workspace are pending (they hold seats): one count, for the
    /// meter and the plan's limits, which need no names.
    pub async fn pending_count(&self, tenant: TenantId) -> Result<i64> {
        Ok(db::query_scalar(
            "SELECT count(*) FROM invitations
             WHERE tenant_id = ? AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ?",
        )
        .bind(tenant.to_string())
        .bind(self.0.now().as_str().to_owned())
        .fetch_one(self.0.control().reader())
        .await?)
    }

    /// Withdraws a pending invitation of this workspace; returns whether there was one.
    pub async fn revoke(&self, tenant: TenantId, id: &str) -> Result<bool> {
        let done = db::query(
            "UPDATE invitations SET revoked_at = ? WHERE id = ? AND tenant_id = ? AND accepted_at IS NULL AND revoked_at IS NULL",
        )
        .bind(self.0.now().as_str().to_owned())
        .bind(id)
        .bind(tenant.to_string())
        .execute(self.0.control().writer())
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
