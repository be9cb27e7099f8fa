//! The directory: short-lived in-memory answers to the questions every request asks the
//! control plane — which tenant is this slug, what role has this user there, whose token or
//! session is this, is this user an operator.
//!
//! Each answer would otherwise cost a control-plane query (~100 µs through sqlx's worker
//! thread, see `cache/handle.rs`). Every write this process makes to tenants, memberships,
//! tokens, sessions or operators clears the directory, so within the process answers are
//! never stale; changes made by another process (the CLI) are seen within [`TTL`].
//!
//! An answer is used for at most [`TTL`]. Once it is [`REFRESH_AFTER`] old, the next use still
//! takes it but also re-reads it in the background, so a tenant, token or session in steady use
//! never waits for the control plane: without this, the answers read together (a server's
//! first seconds) expired together every [`TTL`], and the burst of re-reads queued on the
//! control plane's few read connections was the worst 1 % of request latency (p99 39–61 ms
//! against 7 ms without it, `silo-bench http --wrk`, all tenants cached).
//!
//! A lookup that read the control plane *before* a revocation must not put its stale answer
//! back *after* the clear. Every lookup takes a [`Ticket`] (the directory's generation) before
//! it queries, and [`Directory::put`] inserts only if no clear happened since — checked again
//! after the insert, since a clear can fall between the check and the insert.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::sync::Cache;

use crate::Tenant;
use crate::accounts::Role;
use crate::ids::{TenantId, TenantSlug};
use crate::sessions::Session;
use crate::tokens::TokenPrincipal;

/// How long an answer may be reused.
pub const TTL: Duration = Duration::from_secs(5);
/// After this a used answer is re-read in the background. Late in the TTL, so an answer in
/// steady use costs one re-read per 4 s (the expiry alone cost one per 5 s) and the re-read
/// still has a second to land.
pub const REFRESH_AFTER: Duration = Duration::from_secs(4);
const CAPACITY: u64 = 100_000;

pub(crate) struct Directory {
    pub(crate) tenants: Cache<TenantSlug, Answer<Tenant>>,
    pub(crate) roles: Cache<(String, TenantId), Answer<Option<Role>>>,
    pub(crate) tokens: Cache<String, Answer<Option<TokenPrincipal>>>,
    pub(crate) sessions: Cache<String, Answer<Option<Session>>>,
    pub(crate) operators: Cache<String, Answer<bool>>,
    /// Bumped by every [`Directory::clear`].
    generation: AtomicU64,
}

/// One remembered answer.
#[derive(Clone)]
pub(crate) struct Answer<V> {
    value: V,
    read_at: Instant,
    /// Set while a background re-read of this answer runs (one at a time).
    refreshing: Arc<AtomicBool>,
}

/// Which of the directory's maps a lookup uses.
pub(crate) type Map<K, V> = fn(&Directory) -> &Cache<K, Answer<V>>;

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
    pub(crate) fn put<K, V>(&self, cache: &Cache<K, Answer<V>>, ticket: Ticket, key: K, value: V)
    where
        K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        if self.generation.load(Ordering::SeqCst) != ticket.0 {
            return;
        }
        let answer = Answer { value, read_at: Instant::now(), refreshing: Arc::default() };
        cache.insert(key.clone(), answer);
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

impl crate::Tenancy {
    /// The answer for `key` in `map`: remembered, or read by `read` (and remembered). A
    /// remembered answer older than [`REFRESH_AFTER`] is returned and re-read in the
    /// background; errors are never remembered.
    pub(crate) async fn look_up<K, V, F, Fut>(&self, map: Map<K, V>, key: K, read: F) -> crate::Result<V>
    where
        K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
        F: FnOnce(crate::Tenancy, K) -> Fut + Send + 'static,
        Fut: Future<Output = crate::Result<V>> + Send + 'static,
    {
        let directory = self.directory();
        if let Some(answer) = map(directory).get(&key) {
            if answer.read_at.elapsed() >= REFRESH_AFTER && !answer.refreshing.swap(true, Ordering::SeqCst) {
                let tenancy = self.clone();
                let refreshing = answer.refreshing.clone();
                tokio::spawn(async move {
                    let directory = tenancy.directory();
                    let ticket = directory.ticket();
                    match read(tenancy.clone(), key.clone()).await {
                        Ok(value) => directory.put(map(directory), ticket, key, value),
                        Err(e) => {
                            // The answer expires at its TTL as before; the next use tries again.
                            refreshing.store(false, Ordering::SeqCst);
                            tracing::debug!(error = %e, "re-reading a directory answer failed");
                        }
                    }
                });
            }
            return Ok(answer.value);
        }
        let ticket = directory.ticket();
        let value = read(self.clone(), key.clone()).await?;
        directory.put(map(directory), ticket, key, value.clone());
        Ok(value)
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
        assert!(directory.operators.get("u1").is_none(), "read before the clear: dropped");
        let fresh = directory.ticket();
        directory.put(&directory.operators, fresh, "u1".to_owned(), false);
        assert_eq!(directory.operators.get("u1").map(|a| a.value), Some(false));
    }
}
