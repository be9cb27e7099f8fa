//! Who belongs to which workspace, with which role.
//!
//! A membership lives in two places: the control plane's `memberships` (who may enter which
//! tenant, checked on every request through the [`silo_tenancy::directory`]) and the tenant file's
//! own `members` table (who tasks and comments point at, so a tenant's file is complete on its
//! own). A change is one operation that happens in both or in neither:
//! 1. checks first (the role rules, whether the account is a member);
//! 2. the control-plane transaction writes and re-checks what depends on other rows (the last
//!    owner, under the write lock, so two concurrent changes cannot both pass);
//! 3. the tenant file is written last, inside that transaction's lifetime: if it fails, the
//!    transaction rolls back; if the commit then fails, the member row is put back exactly as
//!    it was ([`silo_workspace::members::restore`]).
//!
//! Leaving or being removed never deletes the member row: it is marked as gone, so what the
//! person wrote keeps its author ("Dave (left)") and a later erasure finds it. The control
//! plane's `membership_history` (kept by triggers) remembers every workspace an account ever
//! belonged to.
//!
//! Rules that hold on every path (web, API, CLI, invitations):
//! - a workspace keeps at least one owner (no demotion or removal of the last one);
//! - when an address joins or leaves a workspace (or its role changes), its pending invitations
//!   there are revoked, so an old link can neither re-admit a removed member nor change a
//!   member's role;
//! - when a member loses the right to invite (removed, or demoted to member), the invitations
//!   they sent that are still pending are revoked.

use futures::future::BoxFuture;
use rusqlite::OptionalExtension;
use serde::Serialize;

use crate::roles::{self, By, Change, Role};
use crate::users::User;
use crate::{Error, Result};
use silo_core::Timestamp;
use silo_core::db;
use silo_core::ids::{TenantId, TenantRef, TenantSlug};
use silo_tenancy::Tenant;
use silo_tenancy::control::TenantStatus;
use silo_workspace::members;

/// A workspace an account belongs to.
#[derive(Clone, Debug, Serialize)]
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

/// How many workspaces one account may own by founding them (see [`Memberships::found`]).
pub const FOUNDED_LIMIT: i64 = 20;

/// Memberships and the role rules (from [`crate::Accounts::memberships`]).
#[derive(Clone)]
pub struct Memberships(pub(crate) crate::Accounts);

impl Memberships {
    /// Adds an account to a tenant (or changes its role): the control-plane membership and the
    /// tenant file's `members` row.
    pub async fn add(&self, tenant: &TenantRef, email: &str, role: Role, actor: &str) -> Result<()> {
        let tenant = self.0.tenancy().tenant(tenant).await?;
        let user = self.0.users().by_email(email).await?;
        self.put(&tenant, &user, role, actor, Joining::OrChangeRole).await
    }

    /// Adds an account that is not yet a member (accepting an invitation); refused for members.
    pub(crate) async fn join(&self, tenant: &Tenant, user: &User, role: Role, actor: &str) -> Result<()> {
        self.put(tenant, user, role, actor, Joining::NewOnly).await
    }

    async fn put(
        &self,
        tenant: &Tenant,
        user: &User,
        role: Role,
        actor: &str,
        joining: Joining,
    ) -> Result<()> {
        if tenant.status != TenantStatus::Active {
            let status = tenant.status.to_string();
            return Err(silo_tenancy::Error::InvalidTransition {
                tenant: tenant.slug.to_string(),
                action: "add a member to",
                status,
            }
            .into());
        }
        // Opened, and the turn at the file taken, before the control plane's write lock: the
        // lock is held only for the writes, and turns are always taken before that lock (never
        // the other way round), so two operations cannot wait on each other. The turn is held
        // to the commit: the file's and the control plane's halves of one change.
        let db = self.0.tenancy().db(tenant.id).await?.turn().await;
        let mut tx = self.0.control().writer().begin().await?;
        let before = read_role(&mut *tx, tenant.id, &user.id).await?;
        match joining {
            Joining::NewOnly if before.is_some() => {
                return Err(Error::invalid(
                    "email",
                    format!("{} is already a member of this workspace", user.email),
                ));
            }
            // The role rules were checked against `from`; a change meanwhile means they must
            // be checked again.
            Joining::ChangeFrom(from) if before != Some(from) => {
                return Err(Error::Busy("that membership changed meanwhile; try again".into()));
            }
            _ => {}
        }
        let now = self.0.now();
        db::query(
            "INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (user_id, tenant_id) DO UPDATE SET role = excluded.role",
        )
        .bind(&user.id)
        .bind(tenant.id.to_string())
        .bind(role.as_str())
        .bind(now.as_str())
        .execute(&mut *tx)
        .await?;
        // Checked after the write, inside the transaction: the write lock is held, so of two
        // concurrent demotions of the last two owners, the second sees none left.
        if before == Some(Role::Owner) && role != Role::Owner {
            keep_an_owner(&mut tx, tenant.id).await?;
        }
        let lost_inviting = (role == Role::Member).then_some(user.id.as_str());
        revoke_pending(&mut tx, &now, tenant.id, &user.email, lost_inviting).await?;
        let detail = serde_json::json!({ "user": user.id, "role": role });
        silo_core::audit::record(&mut tx, &now, actor, "member.add", Some(tenant.id), &detail).await?;
        let row = members::Joining {
            user_id: &user.id,
            email: &user.email,
            display_name: &user.display_name,
            role: role.as_str(),
        };
        let previous = members::join(&db, row)?;
        commit_or_restore(tx, &db, &user.id, previous).await?;
        self.0.directory().clear();
        Ok(())
    }

    /// `user` as the first member of a tenant being created, with `role`, joining `at`: what
    /// `silo_tenancy::Tenants::create_with` writes with the tenant, as one operation. (A new
    /// tenant's id is in no directory answer yet, so nothing needs clearing.)
    pub fn founder(user: &User, role: Role, at: &Timestamp) -> silo_tenancy::Founder {
        let (user_id, email, name) = (user.id.to_string(), user.email.to_string(), user.display_name.clone());
        let at = at.as_str().to_owned();
        silo_tenancy::Founder {
            user_id: user_id.clone(),
            role: role.as_str().to_owned(),
            seed: Box::new(move |conn| {
                let row = members::Joining {
                    user_id: &user_id,
                    email: &email,
                    display_name: &name,
                    role: role.as_str(),
                };
                members::seed(conn, row, &at)
            }),
        }
    }

    /// A free workspace address suggested from its name (see `TenantSlug::suggest`): the
    /// suggestion itself, else with `-2` … `-9` added.
    pub async fn free_address_for(&self, name: &str) -> Result<TenantSlug> {
        let Some(suggested) = TenantSlug::suggest(name) else {
            return Err(Error::invalid("slug", "Choose an address for the workspace, e.g. acme-corp."));
        };
        let tries = std::iter::once(suggested.to_string()).chain(
            (2..=9).map(|n| format!("{}-{n}", suggested.as_str().get(..60).unwrap_or(suggested.as_str()))),
        );
        for candidate in tries {
            let Ok(slug) = TenantSlug::parse(candidate.trim_end_matches('-')) else { continue };
            if !self.0.control().slug_taken(&slug).await? {
                return Ok(slug);
            }
        }
        Err(silo_tenancy::Error::SlugTaken(suggested.to_string()).into())
    }

    /// A signed-in account founds another workspace, as its owner: named `name`, at `slug`
    /// (suggested from the name when empty). An account owns at most [`FOUNDED_LIMIT`]
    /// workspaces this way, so one account cannot fill the disk with files; foundings run one
    /// at a time in this process (which owns the data directory), so concurrent ones cannot
    /// pass the limit.
    pub async fn found(&self, user: &User, name: &str, slug: &str) -> Result<silo_tenancy::Tenant> {
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::invalid("name", "Give the workspace a name."));
        }
        if name.chars().count() > 200 {
            return Err(Error::invalid("name", "A workspace name is at most 200 characters."));
        }
        let slug = match slug.trim() {
            "" => self.free_address_for(name).await?,
            typed => TenantSlug::parse(typed)?,
        };
        // Foundings are rare: one at a time keeps the count and the creation one step.
        let _one_at_a_time = self.0.founding().await;
        let owned: i64 =
            db::query_scalar("SELECT count(*) FROM memberships WHERE user_id = ? AND role = 'owner'")
                .bind(user.id.to_string())
                .fetch_one(self.0.control().reader())
                .await?;
        if owned >= FOUNDED_LIMIT {
            return Err(Error::LimitReached(format!(
                "You own {owned} workspaces, the most one account may; delete one first."
            )));
        }
        let request = silo_tenancy::CreateTenant {
            slug: slug.to_string(),
            name: Some(name.to_owned()),
            ..silo_tenancy::CreateTenant::default()
        };
        let founder = Self::founder(user, Role::Owner, &self.0.now());
        Ok(self.0.tenancy().tenants().create_with(request, Some(founder), &user.email).await?)
    }

    /// The account's role in a tenant, if it is a member.
    pub async fn role_in(&self, tenant: &TenantRef, user_id: &str) -> Result<Option<Role>> {
        let tenant = self.0.tenancy().tenant(tenant).await?;
        self.role(tenant.id, user_id).await
    }

    /// The role stored in the control plane right now (no directory; read on the writer, so
    /// it sees this process's last write).
    async fn stored_role(&self, tenant: TenantId, user_id: &str) -> Result<Option<Role>> {
        read_role(self.0.control().writer(), tenant, user_id).await
    }

    /// The account's role in a tenant (answered from the directory when it can).
    pub async fn role(&self, tenant: TenantId, user_id: &str) -> Result<Option<Role>> {
        let control = self.0.control().clone();
        (self.0.directory().roles)
            .get_or_read((user_id.to_owned(), tenant), |(user_id, tenant)| async move {
                let inline = control.read_inline(|conn| {
                    conn.prepare_cached(ROLE)?
                        .query_row((user_id.as_str(), tenant.to_string()), |row| row.get(0))
                        .optional()
                });
                let role: Option<String> = match inline {
                    Some(read) => read?,
                    None => return read_role(control.reader(), tenant, &user_id).await,
                };
                role.map(|r| r.parse()).transpose()
            })
            .await
    }

    /// How many members each tenant has, by tenant id (tenants without members are left out).
    pub async fn counts(&self) -> Result<std::collections::HashMap<String, i64>> {
        let counts: Vec<(String, i64)> =
            db::query_as("SELECT tenant_id, count(*) FROM memberships GROUP BY tenant_id")
                .fetch_all(self.0.control().reader())
                .await?;
        Ok(counts.into_iter().collect())
    }

    /// The workspaces an account belongs to, by name: live ones, and deleted ones still in
    /// their grace period (status `deleting`: an owner can bring them back).
    pub async fn workspaces_of(&self, user_id: &str) -> Result<Vec<WorkspaceSummary>> {
        let roles: Vec<(String, String)> =
            db::query_as("SELECT tenant_id, role FROM memberships WHERE user_id = ?")
                .bind(user_id)
                .fetch_all(self.0.control().reader())
                .await?;
        let ids: Vec<String> = roles.iter().map(|(id, _)| id.clone()).collect();
        let tenants = self.0.control().tenants_by_ids(&ids).await?;
        let mut workspaces: Vec<WorkspaceSummary> = roles
            .into_iter()
            .filter_map(|(id, role)| {
                let tenant = tenants.get(&id)?;
                // A held restore is shown to its members once an operator releases it.
                let live = matches!(
                    tenant.status,
                    TenantStatus::Active | TenantStatus::Suspended | TenantStatus::Deleting
                ) && !tenant.held;
                live.then(|| WorkspaceSummary {
                    slug: tenant.slug.to_string(),
                    name: tenant.name.clone(),
                    status: tenant.status.as_str().to_owned(),
                    role,
                })
            })
            .collect();
        workspaces.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(workspaces)
    }

    /// Changes a member's role, by the [role rules](crate::roles) for `by`. A workspace keeps at
    /// least one owner.
    pub async fn change_role(&self, tenant: &Tenant, user_id: &str, role: Role, by: By<'_>) -> Result<()> {
        let Some(current) = self.stored_role(tenant.id, user_id).await? else {
            return Err(Error::invalid("member", "that account is not a member of this workspace"));
        };
        self.check(tenant, by, Some(current), Change::Role(role), user_id).await?;
        let user = self.0.users().by_id(user_id).await?;
        self.put(tenant, &user, role, by.label(), Joining::ChangeFrom(current)).await
    }

    /// Applies the role rules to a member acting in `tenant` (operators are not bound by them).
    pub(crate) async fn check(
        &self,
        tenant: &Tenant,
        by: By<'_>,
        target: Option<Role>,
        change: Change,
        target_user: &str,
    ) -> Result<()> {
        let By::Member { user_id, .. } = by else {
            return Ok(());
        };
        let Some(acting) = self.stored_role(tenant.id, user_id).await? else {
            return Err(Error::Forbidden("Only a member of this workspace can do that.".into()));
        };
        roles::check(acting, target, change, user_id == target_user)
    }

    /// Removes a member (control plane and tenant file), by the [role rules](crate::roles) for
    /// `by` (anyone may leave). A workspace keeps at least one owner.
    pub async fn remove(&self, tenant: &Tenant, user_id: &str, by: By<'_>) -> Result<()> {
        let Some(before) = self.stored_role(tenant.id, user_id).await? else {
            return Err(Error::invalid("member", "that account is not a member of this workspace"));
        };
        self.check(tenant, by, Some(before), Change::Removal, user_id).await?;
        let actor = by.label();
        let user = self.0.users().by_id(user_id).await?;
        // The turn before the write lock, held to the commit (see `put`).
        let db = self.0.tenancy().db(tenant.id).await?.turn().await;
        let mut tx = self.0.control().writer().begin().await?;
        let removed: Option<String> =
            db::query_scalar("DELETE FROM memberships WHERE user_id = ? AND tenant_id = ? RETURNING role")
                .bind(user_id)
                .bind(tenant.id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        // The role rules were checked against `before`; a change meanwhile means they must be
        // checked again.
        if removed.as_deref() != Some(before.as_str()) {
            return Err(Error::Busy("that membership changed meanwhile; try again".into()));
        }
        if before == Role::Owner {
            keep_an_owner(&mut tx, tenant.id).await?;
        }
        let now = self.0.now();
        revoke_pending(&mut tx, &now, tenant.id, &user.email, Some(user_id)).await?;
        silo_core::audit::record(
            &mut tx,
            &now,
            actor,
            "member.remove",
            Some(tenant.id),
            &serde_json::json!({ "user": user_id }),
        )
        .await?;
        let previous = members::leave(&db, user_id)?;
        commit_or_restore(tx, &db, user_id, previous).await?;
        self.0.directory().clear();
        Ok(())
    }

    /// Number of members of a tenant (control plane).
    pub async fn count(&self, tenant: TenantId) -> Result<i64> {
        let count = db::query_scalar("SELECT count(*) FROM memberships WHERE tenant_id = ?")
            .bind(tenant.to_string())
            .fetch_one(self.0.control().reader())
            .await?;
        Ok(count)
    }

    /// The addresses of a tenant's owners (whom billing writes to when no billing contact is set).
    pub async fn owner_emails(&self, tenant: TenantId) -> Result<Vec<String>> {
        Ok(db::query_scalar(
            "SELECT users.email FROM memberships JOIN users ON users.id = memberships.user_id
             WHERE memberships.tenant_id = ? AND memberships.role = 'owner' ORDER BY users.email",
        )
        .bind(tenant.to_string())
        .fetch_all(self.0.control().reader())
        .await?)
    }
}

/// An account's role in a tenant.
const ROLE: &str = "SELECT role FROM memberships WHERE user_id = ? AND tenant_id = ?";

async fn read_role<'e>(on: impl Into<db::On<'e>>, tenant: TenantId, user_id: &str) -> Result<Option<Role>> {
    let role: Option<String> =
        db::query_scalar(ROLE).bind(user_id).bind(tenant.to_string()).fetch_optional(on).await?;
    role.map(|r| r.parse()).transpose()
}

/// Whether a change may add a new member only, or also change an existing member's role.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Joining {
    /// A new member only (accepting an invitation).
    NewOnly,
    /// A new member, or a role change (operators).
    OrChangeRole,
    /// A role change of a member whose role was `from` when the role rules were checked.
    ChangeFrom(Role),
}

/// Fails when the workspace has no owner left (run after the change, in its transaction).
async fn keep_an_owner(tx: &mut db::Tx, tenant: TenantId) -> Result<()> {
    let owners: i64 =
        db::query_scalar("SELECT count(*) FROM memberships WHERE tenant_id = ? AND role = 'owner'")
            .bind(tenant.to_string())
            .fetch_one(&mut **tx)
            .await?;
    if owners == 0 {
        return Err(Error::Conflict("a workspace needs at least one owner".into()));
    }
    Ok(())
}

/// Commits the control-plane half of a membership change whose tenant-file half is written;
/// if the commit fails, the member row is put back exactly as it was (`before`).
async fn commit_or_restore(
    tx: db::Tx,
    db: &silo_tenancy::Turn,
    user_id: &str,
    before: Option<members::Member>,
) -> Result<()> {
    let Err(e) = tx.commit().await else { return Ok(()) };
    if let Err(undo) = members::restore(db, user_id, before.as_ref()) {
        tracing::error!(user = user_id, error = %undo, "putting a member row back after a failed commit failed");
    }
    Err(e.into())
}

/// Revokes the pending invitations in `tenant` that are addressed to `to` (an email) or were
/// sent by `from` (a user id).
async fn revoke_pending(
    tx: &mut db::Tx,
    now: &Timestamp,
    tenant: TenantId,
    to: &str,
    from: Option<&str>,
) -> Result<()> {
    db::query(
        "UPDATE invitations SET revoked_at = ?4
         WHERE tenant_id = ?1 AND accepted_at IS NULL AND revoked_at IS NULL AND (email = ?2 OR invited_by = ?3)",
    )
    .bind(tenant.to_string())
    .bind(to)
    .bind(from)
    .bind(now.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The owner of memberships as the fleet sees it ([`silo_tenancy::Members`]): a new tenant's
/// first member, a clone's members, a restored file's current members — this crate's SQL over
/// its own tables, run in the fleet's transaction.
pub(crate) struct FleetMembers(pub(crate) silo_tenancy::ControlPlane);

impl silo_tenancy::Members for FleetMembers {
    fn current(
        &self,
        tenant: TenantId,
    ) -> BoxFuture<'static, silo_tenancy::Result<Vec<silo_tenancy::CurrentMember>>> {
        let control = self.0.clone();
        Box::pin(async move {
            let rows: Vec<(String, String, String, String)> = db::query_as(
                "SELECT m.user_id, u.email, u.display_name, m.role FROM memberships m JOIN users u ON u.id = m.user_id
                 WHERE m.tenant_id = ?1 ORDER BY m.user_id",
            )
            .bind(tenant.to_string())
            .fetch_all(control.writer())
            .await?;
            Ok(rows
                .into_iter()
                .map(|(user_id, email, display_name, role)| silo_tenancy::CurrentMember {
                    user_id,
                    email,
                    display_name,
                    role,
                })
                .collect())
        })
    }

    fn add_founder<'a>(
        &'a self,
        conn: &'a mut db::Conn,
        now: &'a Timestamp,
        tenant: TenantId,
        user_id: &'a str,
        role: &'a str,
    ) -> BoxFuture<'a, silo_tenancy::Result<()>> {
        Box::pin(async move {
            db::query("INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES (?, ?, ?, ?)")
                .bind(user_id)
                .bind(tenant.to_string())
                .bind(role)
                .bind(now.as_str())
                .execute(&mut *conn)
                .await?;
            Ok(())
        })
    }

    fn copy<'a>(
        &'a self,
        conn: &'a mut db::Conn,
        source: TenantId,
        clone: TenantId,
    ) -> BoxFuture<'a, silo_tenancy::Result<()>> {
        Box::pin(async move {
            db::query(
                "INSERT INTO memberships (user_id, tenant_id, role, created_at)
                 SELECT user_id, ?, role, created_at FROM memberships WHERE tenant_id = ?",
            )
            .bind(clone.to_string())
            .bind(source.to_string())
            .execute(&mut *conn)
            .await?;
            db::query(
                "INSERT INTO membership_history (user_id, tenant_id, joined_at, left_at)
                 SELECT user_id, ?, joined_at, left_at FROM membership_history WHERE tenant_id = ? AND left_at IS NOT NULL
                 ON CONFLICT (user_id, tenant_id) DO NOTHING",
            )
            .bind(clone.to_string())
            .bind(source.to_string())
            .execute(&mut *conn)
            .await?;
            Ok(())
        })
    }
}
