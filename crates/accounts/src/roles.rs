//! Roles in a workspace and the rules for changing them, enforced here for every caller (the
//! workspace pages, the API, the CLI): only owners make or unmake owners, only admins and owners
//! manage members, anyone may leave, and a workspace always keeps an owner (checked inside the
//! write's transaction by [`crate::Memberships`], so two concurrent demotions cannot both win).

use std::str::FromStr;

use crate::{Error, Result};
use serde::Serialize;

/// A member's role in a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including deleting the workspace.
    Owner,
    /// Manages members and settings.
    Admin,
    /// Works in the workspace.
    Member,
}

impl Role {
    /// Whether this role includes everything `needed` may do (owner > admin > member).
    pub fn includes(self, needed: Role) -> bool {
        self.rank() >= needed.rank()
    }

    fn rank(self) -> u8 {
        match self {
            Self::Member => 0,
            Self::Admin => 1,
            Self::Owner => 2,
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "owner" => Ok(Self::Owner),
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            other => Err(Error::invalid(
                "role",
                format!("unknown role `{other}` (expected owner, admin or member)"),
            )),
        }
    }
}

impl TryFrom<String> for Role {
    type Error = Error;

    fn try_from(stored: String) -> Result<Self> {
        stored.parse()
    }
}

/// Who asks for a membership change.
#[derive(Clone, Copy, Debug)]
pub enum By<'a> {
    /// A member acting in their workspace: the role rules apply, from the role stored for them
    /// now (never from what a caller says it is).
    Member {
        /// Their user id.
        user_id: &'a str,
        /// What the audit log names (their email).
        label: &'a str,
    },
    /// An operator (CLI, admin console, operator API) or Silo itself (sign-up): trusted to
    /// manage any workspace. Only the last-owner rule applies.
    Operator(&'a str),
}

impl By<'_> {
    /// What the audit log names.
    pub fn label(&self) -> &str {
        match self {
            By::Member { label, .. } => label,
            By::Operator(label) => label,
        }
    }
}

/// A change to one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Give them this role.
    Role(Role),
    /// Remove them from the workspace.
    Removal,
    /// Invite someone new with this role.
    Invitation(Role),
}

/// Whether a member with role `acting` may make `change` to a member whose role is `target`
/// (`None` for an invitation); `is_self` when they change themselves.
pub fn check(acting: Role, target: Option<Role>, change: Change, is_self: bool) -> Result<()> {
    if change == Change::Removal && is_self {
        return Ok(()); // anyone may leave (the last owner is kept by the transaction)
    }
    if !acting.includes(Role::Admin) {
        return Err(Error::Forbidden("Only a workspace admin can do that.".into()));
    }
    let touches_owner = target == Some(Role::Owner)
        || matches!(change, Change::Role(Role::Owner) | Change::Invitation(Role::Owner));
    if touches_owner && acting != Role::Owner {
        let message = match change {
            Change::Removal => "Only an owner can remove an owner.",
            _ => "Only an owner can grant or take the owner role.",
        };
        return Err(Error::Forbidden(message.into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::{Admin, Member, Owner};

    fn allowed(acting: Role, target: Option<Role>, change: Change, is_self: bool) -> bool {
        match check(acting, target, change, is_self) {
            Ok(()) => true,
            Err(Error::Forbidden(_)) => false,
            Err(other) => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn owners_may_do_everything() {
        for target in [Owner, Admin, Member] {
            for change in [Change::Role(Owner), Change::Role(Admin), Change::Role(Member), Change::Removal] {
                assert!(allowed(Owner, Some(target), change, false), "{target:?} {change:?}");
            }
        }
        assert!(allowed(Owner, None, Change::Invitation(Admin), false));
    }

    #[test]
    fn admins_manage_members_and_admins_but_never_owners() {
        for target in [Admin, Member] {
            for role in [Admin, Member] {
                assert!(allowed(Admin, Some(target), Change::Role(role), false));
            }
            assert!(allowed(Admin, Some(target), Change::Removal, false));
            assert!(!allowed(Admin, Some(target), Change::Role(Owner), false), "no granting owner");
        }
        assert!(!allowed(Admin, Some(Owner), Change::Role(Member), false), "no demoting an owner");
        assert!(!allowed(Admin, Some(Owner), Change::Removal, false), "no removing an owner");
        assert!(allowed(Admin, None, Change::Invitation(Member), false));
        assert!(!allowed(Admin, None, Change::Invitation(Owner), false));
        let message = check(Admin, Some(Owner), Change::Removal, false).unwrap_err().to_string();
        assert_eq!(message, "Only an owner can remove an owner.");
    }

    #[test]
    fn members_may_only_leave() {
        assert!(allowed(Member, Some(Member), Change::Removal, true));
        assert!(allowed(Owner, Some(Owner), Change::Removal, true), "the transaction keeps the last owner");
        assert!(!allowed(Member, Some(Member), Change::Removal, false));
        assert!(!allowed(Member, Some(Member), Change::Role(Admin), true), "no self-promotion");
        assert!(!allowed(Member, None, Change::Invitation(Member), false));
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Owner.includes(Admin) && Owner.includes(Member) && Admin.includes(Member));
        assert!(!Member.includes(Admin) && !Admin.includes(Owner));
        assert_eq!("admin".parse::<Role>().unwrap(), Admin);
        assert!("root".parse::<Role>().is_err());
    }
}
