//! Who belongs to which workspace, with which role.
//!
//! A membership lives in two places: the control plane's `memberships` (who may enter which
//! tenant, checked on every request through the [`crate::directory`]) and the tenant file's
//! own `members` table (who tasks and comments point at, so a tenant's file is complete on its
//! own). Every change here writes both, tenant file first: a failure after it leaves a member
//! row without access, never access without a member row.

use serde::Serialize;

use crate::accounts::{Role, User};
use crate::control::{TenantStatus, audit};
use crate::ids::{TenantId, TenantRef};
use crate::{Error, Result, Tenancy, Tenant, workspace};

/// A workspace an account belongs to.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct WorkspaceSummary {
    /// Slug.
    pub slug: String,
    /// Name.
    pub name: String,
    /// Tenant status.
    pub status: String,
    /// The account's role.
    pub role: String,
}

impl Tenancy {
    /// Adds an account to a tenant (or changes its role): the control-plane membership and the
    /// tenant file's `members` row.
    pub async fn add_member(&self, tenant: &TenantRef, email: &str, role: Role, actor: &str) -> Result<()> {
        let tenant = self.tenant(tenant).await?;
        let user = self.user(email).await?;
        self.put_member(&tenant, &user, role, actor).await
    }

    async fn put_member(&self, tenant: &Tenant, user: &User, role: Role, actor: &str) -> Result<()> {
        if tenant.status != TenantStatus::Active {
            let status = tenant.status.to_string();
            return Err(Error::InvalidTransition {
                tenant: tenant.slug.clone(),
                action: "add a member to",
                status,
            });
        }
        let db = self.db(tenant.id).await?;
        workspace::members::upsert(&db, &user.id, &user.email, &user.display_name, role.as_str())?;
        let mut tx = self.control().writer().begin().await?;
        sqlx::query(concat!(
            "INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES (?, ?, ?, ",
            crate::now!(),
            ") ON CONFLICT (user_id, tenant_id) DO UPDATE SET role = excluded.role"
        ))
        .bind(&user.id)
        .bind(tenant.id.to_string())
        .bind(role.as_str())
        .execute(&mut *tx)
        .await?;
        let detail = serde_json::json!({ "user": user.id, "role": role });
        audit(&mut tx, actor, "member.add", Some(tenant.id), &detail).await?;
        tx.commit().await?;
        self.directory().clear();
        Ok(())
    }

    /// The account's role in a tenant, if it is a member.
    pub async fn membership(&self, tenant: &TenantRef, user_id: &str) -> Result<Option<Role>> {
        let tenant = self.tenant(tenant).await?;
        self.role(tenant.id, user_id).await
    }

    /// The account's role in a tenant (answered from the directory when it can).
    pub async fn role(&self, tenant: TenantId, user_id: &str) -> Result<Option<Role>> {
        let key = (user_id.to_owned(), tenant);
        if let Some(role) = self.directory().roles.get(&key) {
            return Ok(role);
        }
        let role: Option<String> =
            sqlx::query_scalar("SELECT role FROM memberships WHERE user_id = ? AND tenant_id = ?")
                .bind(user_id)
                .bind(tenant.to_string())
                .fetch_optional(self.control().reader())
                .await?;
        let role = role.map(|r| r.parse()).transpose()?;
        self.directory().roles.insert(key, role);
        Ok(role)
    }

    /// The live workspaces an account belongs to, by name.
    pub async fn workspaces_of(&self, user_id: &str) -> Result<Vec<WorkspaceSummary>> {
        let workspaces = sqlx::query_as(
            "SELECT t.slug, t.name, t.status, m.role FROM memberships m JOIN tenants t ON t.id = m.tenant_id
             WHERE m.user_id = ? AND t.status IN ('active', 'suspended') ORDER BY t.name",
        )
        .bind(user_id)
        .fetch_all(self.control().reader())
        .await?;
        Ok(workspaces)
    }

    /// Changes a member's role. A workspace keeps at least one owner.
    pub async fn change_role(&self, tenant: &Tenant, user_id: &str, role: Role, actor: &str) -> Result<()> {
        let current = self.role(tenant.id, user_id).await?;
        let Some(current) = current else {
            return Err(Error::InvalidInput("that account is not a member of this workspace".into()));
        };
        if current == Role::Owner && role != Role::Owner {
            self.keep_an_owner(tenant.id).await?;
        }
        let user = self.user_by_id(user_id).await?;
        self.put_member(tenant, &user, role, actor).await
    }

    /// Removes a member (control plane and tenant file). A workspace keeps at least one owner.
    pub async fn remove_member(&self, tenant: &Tenant, user_id: &str, actor: &str) -> Result<()> {
        match self.role(tenant.id, user_id).await? {
            None => return Err(Error::InvalidInput("that account is not a member of this workspace".into())),
            Some(Role::Owner) => self.keep_an_owner(tenant.id).await?,
            Some(_) => {}
        }
        let db = self.db(tenant.id).await?;
        workspace::members::remove(&db, user_id)?;
        let mut tx = self.control().writer().begin().await?;
        sqlx::query("DELETE FROM memberships WHERE user_id = ? AND tenant_id = ?")
            .bind(user_id)
            .bind(tenant.id.to_string())
            .execute(&mut *tx)
            .await?;
        audit(&mut tx, actor, "member.remove", Some(tenant.id), &serde_json::json!({ "user": user_id }))
            .await?;
        tx.commit().await?;
        self.directory().clear();
        Ok(())
    }

    async fn keep_an_owner(&self, tenant: TenantId) -> Result<()> {
        let owners: i64 =
            sqlx::query_scalar("SELECT count(*) FROM memberships WHERE tenant_id = ? AND role = 'owner'")
                .bind(tenant.to_string())
                .fetch_one(self.control().reader())
                .await?;
        if owners <= 1 {
            return Err(Error::InvalidInput("a workspace needs at least one owner".into()));
        }
        Ok(())
    }

    /// Number of members of a tenant (control plane).
    pub async fn member_count(&self, tenant: TenantId) -> Result<i64> {
        let count = sqlx::query_scalar("SELECT count(*) FROM memberships WHERE tenant_id = ?")
            .bind(tenant.to_string())
            .fetch_one(self.control().reader())
            .await?;
        Ok(count)
    }
}
