//! The directory: short-lived in-memory answers to the questions every request asks the
//! control plane — which tenant is this slug, what role has this user there, whose token or
//! session is this, is this user an operator.
//!
//! Each answer would otherwise cost a control-plane query (~100 µs through sqlx's worker
//! thread, see `cache/handle.rs`). Every write this process makes to tenants, memberships,
//! tokens, sessions or operators clears the directory, so within the process answers are
//! never stale; changes made by another process (the CLI) are seen within [`TTL`].
//!
//! A lookup that read the control plane *before* a revocation must not put its stale answer
//! back *after* the clear. Every lookup takes a [`Ticket`] (the directory's generation) before
//! it queries, and [`Directory::put`] inserts only if no clear happened since — checked again
//! after the insert, since a clear can fall between the check and the insert.

use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Bumped by every [`Directory::clear`].
    generation: AtomicU64,
}

/// The directory's generation when a lookup started (see [`Directory::put`]).
#[derive(Clone, Copy, Debug)]
#[must_use = "a ticket is for putting the answer in the directory"]
pub(crate) struct Ticket(u64);

fn cache<K, V>() -> Cache<K, V>
where
    K: std::hash::Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder().max_capacity(CAPACITY).time_to_live(TTL).build()
}

impl Directory {
    pub(crate) fn new() -> Self {
        Self {
            tenants: cache(),
            roles: cache(),
            tokens: cache(),
            sessions: cache(),
            operators: cache(),
            generation: AtomicU64::new(0),
        }
    }

    /// Taken before a lookup reads the control plane.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::SeqCst))
    }

    /// Remembers an answer read under `ticket`, unless the directory was cleared since.
    pub(crate) fn put<K, V>(&self, cache: &Cache<K, V>, ticket: Ticket, key: K, value: V)
    where
        K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        if self.generation.load(Ordering::SeqCst) != ticket.0 {
            return;
        }
        cache.insert(key.clone(), value);
        // A clear between the check and the insert may have run its `invalidate_all` before
        // the insert: take the answer back out.
        if self.generation.load(Ordering::SeqCst) != ticket.0 {
            cache.invalidate(&key);
        }
    }

    /// Forgets everything (after any write that may change an answer; call it after the write
    /// committed).
    pub(crate) fn clear(&self) {
        // The generation first: a lookup that has not inserted yet will not.
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.tenants.invalidate_all();
        self.roles.invalidate_all();
        self.tokens.invalidate_all();
        self.sessions.invalidate_all();
        self.operators.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_read_before_a_clear_is_not_kept() {
        let directory = Directory::new();
        let stale = directory.ticket();
        directory.clear();
        directory.put(&directory.operators, stale, "u1".to_owned(), true);
        assert_eq!(directory.operators.get("u1"), None, "read before the clear: dropped");
        let fresh = directory.ticket();
        directory.put(&directory.operators, fresh, "u1".to_owned(), false);
        assert_eq!(directory.operators.get("u1"), Some(false));
    }
}
