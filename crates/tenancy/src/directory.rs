//! The directory: short-lived in-memory answers to the questions every request asks the
//! control plane — which tenant is this slug, what role has this user there, whose token or
//! session is this, is this user an operator.
//!
//! Each answer would otherwise cost a control-plane query (~100 µs through sqlx's worker
//! thread, see `cache/handle.rs`). Every write this process makes to tenants, memberships,
//! tokens, sessions or operators clears the directory, so within the process answers are
//! never stale; changes made by another process (the CLI) are seen within [`TTL`].

use std::time::Duration;

use moka::sync::Cache;

use crate::Tenant;
use crate::accounts::Role;
use crate::ids::TenantId;
use crate::sessions::Session;
use crate::tokens::TokenPrincipal;

/// How long an answer may be reused.
pub const TTL: Duration = Duration::from_secs(5);
const CAPACITY: u64 = 100_000;

pub(crate) struct Directory {
    pub(crate) tenants: Cache<String, Tenant>,
    pub(crate) roles: Cache<(String, TenantId), Option<Role>>,
    pub(crate) tokens: Cache<String, Option<TokenPrincipal>>,
    pub(crate) sessions: Cache<String, Option<Session>>,
    pub(crate) operators: Cache<String, bool>,
}

fn cache<K, V>() -> Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder().max_capacity(CAPACITY).time_to_live(TTL).build()
}

impl Directory {
    pub(crate) fn new() -> Self {
        Self { tenants: cache(), roles: cache(), tokens: cache(), sessions: cache(), operators: cache() }
    }

    /// Forgets everything (after any write that may change an answer).
    pub(crate) fn clear(&self) {
        self.tenants.invalidate_all();
        self.roles.invalidate_all();
        self.tokens.invalidate_all();
        self.sessions.invalidate_all();
        self.operators.invalidate_all();
    }
}
