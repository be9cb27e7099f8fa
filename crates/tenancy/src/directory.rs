//! The directory: short-lived in-memory answers to the questions every request asks the
//! control plane. A [`Memo`] holds the answers to one question; tenancy keeps "which tenant is
//! this slug" ([`crate::Tenancy::resolve`]), `silo-accounts` keeps the identity half (whose
//! token or session is this, what role has this user there, is this user an operator).
//!
//! Each answer would otherwise cost a control-plane query (~100 µs through sqlx's worker
//! thread, see `cache/handle.rs`). Every write this process makes to what a memo answers
//! clears that memo, so within the process answers are never stale; changes made by another
//! process (the CLI) are seen within [`TTL`].
//!
//! An answer is used for at most [`TTL`]. Once it is [`REFRESH_AFTER`] old, the next use still
//! takes it but also re-reads it in the background, so a tenant, token or session in steady use
//! never waits for the control plane: without this, the answers read together (a server's
//! first seconds) expired together every [`TTL`], and the burst of re-reads queued on the
//! control plane's few read connections was the worst 1 % of request latency (p99 39–61 ms
//! against 7 ms without it, `silo-bench http --wrk`, all tenants cached).
//!
//! A lookup that read the control plane *before* a revocation must not put its stale answer
//! back *after* the clear. Every lookup takes a ticket (the memo's generation) before
//! it queries, and [`Memo`]'s put inserts only if no clear happened since — checked again
//! after the insert, since a clear can fall between the check and the insert.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::sync::Cache;

/// How long an answer may be reused.
pub const TTL: Duration = Duration::from_secs(5);
/// After this a used answer is re-read in the background. Late in the TTL, so an answer in
/// steady use costs one re-read per 4 s (the expiry alone cost one per 5 s) and the re-read
/// still has a second to land.
pub const REFRESH_AFTER: Duration = Duration::from_secs(4);
const CAPACITY: u64 = 100_000;

/// Remembered answers to one question (`K` → `V`), each for at most [`TTL`]. Cloning is cheap
/// and shares the answers.
pub struct Memo<K, V> {
    answers: Cache<K, Answer<V>>,
    /// Bumped by every [`Memo::clear`].
    generation: Arc<AtomicU64>,
}

impl<K, V> Clone for Memo<K, V> {
    fn clone(&self) -> Self {
        Self { answers: self.answers.clone(), generation: self.generation.clone() }
    }
}

/// One remembered answer.
#[derive(Clone)]
struct Answer<V> {
    value: V,
    read_at: Instant,
    /// Set while a background re-read of this answer runs (one at a time).
    refreshing: Arc<AtomicBool>,
}

/// The memo's generation when a lookup started (see [`Memo::put`]).
#[derive(Clone, Copy, Debug)]
#[must_use = "a ticket is for putting the answer in the memo"]
struct Ticket(u64);

impl<K, V> Default for Memo<K, V>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self {
            answers: Cache::builder().max_capacity(CAPACITY).time_to_live(TTL).build(),
            generation: Arc::default(),
        }
    }
}

impl<K, V> Memo<K, V>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// An empty memo.
    pub fn new() -> Self {
        Self::default()
    }

    /// The answer for `key`: remembered, or read by `read` (and remembered). A remembered
    /// answer older than [`REFRESH_AFTER`] is returned and re-read in the background; errors
    /// are never remembered.
    pub async fn get_or_read<E, F, Fut>(&self, key: K, read: F) -> Result<V, E>
    where
        E: std::fmt::Display,
        F: FnOnce(K) -> Fut + Send + 'static,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        if let Some(answer) = self.answers.get(&key) {
            if answer.read_at.elapsed() >= REFRESH_AFTER && !answer.refreshing.swap(true, Ordering::SeqCst) {
                let memo = self.clone();
                let refreshing = answer.refreshing.clone();
                tokio::spawn(async move {
                    let ticket = memo.ticket();
                    match read(key.clone()).await {
                        Ok(value) => memo.put(ticket, key, value),
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
        let ticket = self.ticket();
        let value = read(key.clone()).await?;
        self.put(ticket, key, value.clone());
        Ok(value)
    }

    /// Taken before a lookup reads the control plane.
    fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::SeqCst))
    }

    /// Remembers an answer read under `ticket`, unless the memo was cleared since.
    fn put(&self, ticket: Ticket, key: K, value: V) {
        if self.generation.load(Ordering::SeqCst) != ticket.0 {
            return;
        }
        let answer = Answer { value, read_at: Instant::now(), refreshing: Arc::default() };
        self.answers.insert(key.clone(), answer);
        // A clear between the check and the insert may have run its `invalidate_all` before
        // the insert: take the answer back out.
        if self.generation.load(Ordering::SeqCst) != ticket.0 {
            self.answers.invalidate(&key);
        }
    }

    /// Forgets everything (after any write that may change an answer; call it after the write
    /// committed).
    pub fn clear(&self) {
        // The generation first: a lookup that has not inserted yet will not.
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.answers.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_read_before_a_clear_is_not_kept() {
        let memo: Memo<String, bool> = Memo::new();
        let stale = memo.ticket();
        memo.clear();
        memo.put(stale, "u1".to_owned(), true);
        assert!(memo.answers.get("u1").is_none(), "read before the clear: dropped");
        let fresh = memo.ticket();
        memo.put(fresh, "u1".to_owned(), false);
        assert_eq!(memo.answers.get("u1").map(|a| a.value), Some(false));
    }
}
