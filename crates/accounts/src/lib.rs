//! `silo-accounts`: people — users and operators, sessions, API tokens, memberships,
//! invitations, sign-ups, the outbox and its SMTP delivery, login throttling, and the identity
//! half of the directory (whose token or session is this, what role does this user hold).
//!
//! The accounts live in the control plane (`control.db`, opened by `silo-tenancy`); a
//! membership is also mirrored into the tenant file's `members` table (through
//! `silo-workspace`), so a tenant's data names its people without reaching outside the file.
//!
//! # Layout
//! [`Accounts`] is built once per process over a [`Tenancy`] and hands out one small service
//! per concern; each lives in its own module:
//! - [`Users`] (`users`): accounts, passwords (argon2id through [`passwords`]), operators,
//!   password reset.
//! - [`Sessions`] (`sessions`): server-side browser sessions.
//! - [`throttle`]: guesses and mail-sending actions bounded per client, per account and
//!   client, and per account (a delay that never locks the owner out).
//! - [`Tokens`] (`tokens`): API tokens, shown once and stored as digests ([`secrets`]).
//! - [`Memberships`] (`memberships`): who belongs to which tenant with which role, and the role
//!   rules (only owners grant or remove owner; the last owner stays).
//! - [`Invitations`] (`invitations`), [`Signups`] (`signups`, all-or-nothing: user, tenant and
//!   owner, or nothing), [`Handoffs`] (`handoffs`, a session carried to a tenant's own host).
//! - [`Outbox`] (`outbox`): mail queued in the control plane, delivered over SMTP by
//!   [`Outbox::run_mailer`].
//! - [`subjects::Subjects`] (`subjects`): data-subject requests — exports and erasures (durable
//!   jobs); [`erasure`]: the erasure job, across every tenant file and the control plane.

pub mod erasure;
mod error;
pub mod handoffs;
pub mod invitations;
pub mod memberships;
pub mod outbox;
pub mod passwords;
pub mod roles;
pub mod secrets;
pub mod sessions;
pub mod settings;
pub mod signups;
pub mod subjects;
pub mod throttle;
pub mod tokens;
pub mod users;

use std::sync::Arc;

use silo_core::TenantId;
use silo_tenancy::directory::Memo;
use silo_tenancy::{ControlPlane, Tenancy};

pub use error::{Error, Result};
pub use handoffs::Handoffs;
pub use invitations::Invitations;
pub use memberships::Memberships;
pub use outbox::Outbox;
pub use roles::{By, Role};
pub use sessions::Sessions;
pub use settings::{AccountsSettings, SmtpSettings};
pub use signups::Signups;
pub use tokens::{TokenScope, TokenSpec, Tokens};
pub use users::{Email, User, UserId, Users};

/// The people of one Silo process. Cheap to clone.
#[derive(Clone)]
pub struct Accounts {
    inner: Arc<Inner>,
}

struct Inner {
    tenancy: Tenancy,
    settings: AccountsSettings,
    directory: Directory,
    /// argon2id, bounded process-wide.
    hashing: passwords::PasswordHashing,
    /// What erasing a person does to the tables of the crates above (their
    /// [`Accounts::add_erasure_steps`]).
    erasure_steps: parking_lot::RwLock<Vec<silo_core::erasure::ErasureStep>>,
    /// One founding of a workspace at a time (see [`Memberships::found`]): its count of the
    /// workspaces owned and its creation are one step, so concurrent ones cannot pass the limit.
    founding: tokio::sync::Mutex<()>,
}

/// The identity half of the directory (see [`silo_tenancy::directory`]): answers every request
/// needs, remembered for a few seconds. Every write this crate makes to what they answer clears
/// all four.
pub(crate) struct Directory {
    pub(crate) roles: Memo<(String, TenantId), Option<Role>>,
    pub(crate) tokens: Memo<String, Option<tokens::TokenPrincipal>>,
    pub(crate) sessions: Memo<String, Option<sessions::Session>>,
    pub(crate) operators: Memo<String, bool>,
}

impl Directory {
    /// Empty memos sharing the process's `link` (see [`silo_tenancy::directory`]).
    fn linked(link: &Arc<silo_tenancy::directory::Link>) -> Self {
        Self {
            roles: Memo::linked(link.clone()),
            tokens: Memo::linked(link.clone()),
            sessions: Memo::linked(link.clone()),
            operators: Memo::linked(link.clone()),
        }
    }

    /// Forgets every remembered answer (after a write committed).
    pub(crate) fn clear(&self) {
        self.roles.clear();
        self.tokens.clear();
        self.sessions.clear();
        self.operators.clear();
    }
}

impl Accounts {
    /// Held while a workspace is founded (see [`Memberships::found`]).
    pub(crate) async fn founding(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.founding.lock().await
    }

    /// The accounts over `tenancy`'s control plane.
    pub fn new(tenancy: Tenancy, settings: AccountsSettings) -> Self {
        // The fleet inserts a new tenant's first member and a clone's members through this
        // crate, and a restore brings the restored file's member rows to its members.
        tenancy.set_members(Arc::new(memberships::FleetMembers(tenancy.control().clone())));
        // A purged workspace leaves nothing here: no members, invitations, tokens for it, or
        // mail that names it.
        tenancy.add_purge_statements(&[
            "DELETE FROM invitations WHERE tenant_id = ?1",
            "DELETE FROM outbox WHERE about_tenant_id = ?1",
            "DELETE FROM api_tokens WHERE tenant_id = ?1",
            "DELETE FROM memberships WHERE tenant_id = ?1",
        ]);
        let directory = Directory::linked(&tenancy.directory_link());
        let inner = Inner {
            tenancy,
            settings,
            directory,
            hashing: passwords::PasswordHashing::new(0, passwords::QUEUE_WAIT),
            erasure_steps: parking_lot::RwLock::default(),
            founding: tokio::sync::Mutex::new(()),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Adds what erasing a person does to a table of a crate above this one (its SQL stays in
    /// the crate that owns the table): run in the erasure's transaction, before the account
    /// row goes.
    pub fn add_erasure_steps(&self, steps: &[silo_core::erasure::ErasureStep]) {
        let mut registered = self.inner.erasure_steps.write();
        for step in steps {
            // A crate built twice over the same accounts registers once.
            if !registered.iter().any(|r| r.table == step.table && r.rows == step.rows) {
                registered.push(*step);
            }
        }
    }

    /// The table of each step of erasing a person, in order (a test checks every table that
    /// names a person is among them).
    pub fn erasure_tables(&self) -> Vec<&'static str> {
        crate::erasure::steps(self).into_iter().map(|step| step.table).collect()
    }

    /// The steps [`Accounts::add_erasure_steps`] registered.
    pub(crate) fn registered_erasure_steps(&self) -> Vec<silo_core::erasure::ErasureStep> {
        self.inner.erasure_steps.read().clone()
    }

    /// Now, on the process's clock (the control plane's): lifetimes of sessions, tokens,
    /// invitations, sign-ups and resets start and end here.
    pub fn now(&self) -> silo_core::Timestamp {
        self.inner.tenancy.control().now()
    }

    /// The fleet these accounts belong to.
    pub fn tenancy(&self) -> &Tenancy {
        &self.inner.tenancy
    }

    /// The settings in force.
    pub fn settings(&self) -> &AccountsSettings {
        &self.inner.settings
    }

    /// Password hashing (bounded to one hash per core).
    pub fn hashing(&self) -> &passwords::PasswordHashing {
        &self.inner.hashing
    }

    /// Users, passwords and operators.
    pub fn users(&self) -> Users {
        Users(self.clone())
    }

    /// Browser sessions.
    pub fn sessions(&self) -> Sessions {
        Sessions(self.clone())
    }

    /// API tokens.
    pub fn tokens(&self) -> Tokens {
        Tokens(self.clone())
    }

    /// Who belongs to which tenant, and the role rules.
    pub fn memberships(&self) -> Memberships {
        Memberships(self.clone())
    }

    /// Invitations to a tenant.
    pub fn invitations(&self) -> Invitations {
        Invitations(self.clone())
    }

    /// Sign-ups (account + workspace).
    pub fn signups(&self) -> Signups {
        Signups(self.clone())
    }

    /// Session hand-offs to a tenant's host.
    pub fn handoffs(&self) -> Handoffs {
        Handoffs(self.clone())
    }

    /// Data-subject requests.
    pub fn subjects(&self) -> subjects::Subjects {
        subjects::Subjects(self.clone())
    }

    /// Outgoing mail.
    pub fn outbox(&self) -> Outbox {
        Outbox(self.clone())
    }

    pub(crate) fn control(&self) -> &ControlPlane {
        self.inner.tenancy.control()
    }

    pub(crate) fn directory(&self) -> &Directory {
        &self.inner.directory
    }
}
