//! Passwords: argon2id hashing and verification, bounded process-wide.
//!
//! One argon2id hash takes 19 MiB and tens of milliseconds of one core. Unbounded, a burst of
//! 200 sign-in attempts ran 200 hashes at once (3.9 GB resident, `silo-bench login`) and
//! starved every other request. [`PasswordHashing`] runs hashes on its own threads, one per
//! core; further requests wait up to [`QUEUE_WAIT`] for a turn and are then refused with
//! [`Error::Overloaded`] (HTTP 503 with `Retry-After`).
//!
//! Memory: each hashing thread keeps its 19 MiB of argon2 working memory and reuses it for
//! every hash. Allocating it per hash (what `argon2`'s `PasswordHasher` does) left 1.2 GB
//! resident after a burst even with two hashes at a time: glibc raises its mmap threshold after
//! the first large free, so later 19 MiB blocks come from per-thread arenas and stay there.
//! With reuse the process holds `cores × 19 MiB` for hashing, whatever arrives.

use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use std::cell::RefCell;

use argon2::password_hash::{Output, ParamsString, Salt, SaltString};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Block, Params, PasswordHash, Version};
use rand::RngCore;
use tokio::sync::Semaphore;

use crate::{Error, Result};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password accepted (argon2 cost does not depend on it, but requests should be bounded).
pub const MAX_PASSWORD_CHARS: usize = 1024;
/// How long a request waits for a hashing slot before it is refused.
pub const QUEUE_WAIT: Duration = Duration::from_secs(5);

/// The argon2id parameters: OWASP's m=19456 KiB, t=2, p=1.
fn params() -> Params {
    Params::new(19_456, 2, 1, None).expect("valid argon2 params")
}

thread_local! {
    /// This thread's argon2 working memory, kept between hashes (see the module docs).
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// The argon2 output for `password` and `salt` (the PHC salt string, decoded as the `argon2`
/// crate does), computed in this thread's reused memory.
fn argon2_output(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    password: &[u8],
    salt: &Salt<'_>,
) -> argon2::password_hash::Result<Output> {
    let mut salt_buffer = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buffer)?;
    let length = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        Output::init_with(length, |out| {
            Ok(argon2.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])?)
        })
    })
}

/// Checks a new password's length (before any hashing is spent on it).
pub fn check_new_password(password: &str) -> Result<()> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(Error::invalid(
            "password",
            format!("a password needs at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(Error::invalid(
            "password",
            format!("a password has at most {MAX_PASSWORD_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Hashes a password with argon2id and a random salt (PHC string). Blocking and unbounded:
/// request paths go through [`PasswordHashing`].
pub fn hash_password(password: &str) -> Result<String> {
    check_new_password(password)?;
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Config(format!("salt: {e}")))?;
    let argon2_error = |e: argon2::password_hash::Error| Error::Config(format!("argon2: {e}"));
    let output =
        argon2_output(Algorithm::Argon2id, Version::V0x13, params(), password.as_bytes(), &salt.as_salt())
            .map_err(argon2_error)?;
    let hash = PasswordHash {
        algorithm: ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params()).map_err(argon2_error)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches a stored PHC hash (its own algorithm, version and parameters;
/// the outputs compare in constant time).
pub fn verify_password(stored: &str, password: &str) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else { return false };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(hash.algorithm), Params::try_from(&hash)) else {
        return false;
    };
    let Ok(version) = hash.version.map_or(Ok(Version::V0x13), Version::try_from) else { return false };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else { return false };
    argon2_output(algorithm, version, params, password.as_bytes(), &salt)
        .is_ok_and(|output| output == expected)
}

/// argon2id (same parameters) of a random, discarded password: verified against when the email
/// is unknown so both paths cost one hash.
pub(crate) static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    hash_password(&silo_core::tokens::random_hex(24)).expect("hashing a random password")
});

type Job = Box<dyn FnOnce() + Send>;

/// Hashing and verification on `concurrency` threads of their own; a request waits for one.
#[derive(Clone, Debug)]
pub struct PasswordHashing {
    slots: Arc<Semaphore>,
    wait: Duration,
    jobs: mpsc::SyncSender<Job>,
}

impl PasswordHashing {
    /// At most `concurrency` hashes at once (0: one per core); a request waits up to `wait`.
    /// The threads end when the last clone is dropped.
    pub fn new(concurrency: usize, wait: Duration) -> Self {
        let concurrency = match concurrency {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (jobs, queue) = mpsc::sync_channel::<Job>(concurrency);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..concurrency {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("silo-argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = queue.lock().map_err(drop).and_then(|q| q.recv().map_err(drop));
                        match job {
                            Ok(job) => job(),
                            Err(()) => return,
                        }
                    }
                })
                .expect("a password hashing thread starts");
        }
        Self { slots: Arc::new(Semaphore::new(concurrency)), wait, jobs }
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let slot = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Error::Overloaded("too many password checks at once; retry in a moment".into()))?
            .map_err(|_| Error::Overloaded("password hashing is shut down".into()))?;
        let (done, result) = tokio::sync::oneshot::channel();
        // A slot is held, so a thread is free: the send does not wait.
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(work());
            }))
            .map_err(|_| Error::Overloaded("password hashing is shut down".into()))?;
        let out = result.await.map_err(|_| Error::Overloaded("password hashing failed".into()));
        drop(slot);
        out
    }

    /// Hashes a new password (its length is checked first, without taking a slot).
    pub async fn hash(&self, password: &str) -> Result<String> {
        check_new_password(password)?;
        let password = password.to_owned();
        self.run(move || hash_password(&password)).await?
    }

    /// Verifies `password` against `stored`, or against a dummy hash when there is none (an
    /// unknown account costs the same as a wrong password).
    pub async fn verify(&self, stored: Option<String>, password: &str) -> Result<bool> {
        let password = password.to_owned();
        self.run(move || match stored {
            Some(hash) => verify_password(&hash, &password),
            None => {
                // Same work, never a match.
                let _ = verify_password(&DUMMY_HASH, &password);
                false
            }
        })
        .await
    }

    /// Hashing slots free right now (metrics, tests).
    pub fn available(&self) -> usize {
        self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse batterY"));
        assert!(!verify_password("not a hash", "x"));
        assert!(hash_password("short").is_err());
        assert_ne!(hash, hash_password("correct horse battery").unwrap(), "salted");
    }

    #[test]
    fn hashes_agree_with_the_argon2_crate_both_ways() {
        use argon2::{PasswordHasher, PasswordVerifier};
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        let ours = hash_password("correct horse battery").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(reference.verify_password(b"correct horse battery", &parsed).is_ok());
        assert!(reference.verify_password(b"correct horse batterY", &parsed).is_err());
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        let theirs = reference.hash_password(b"correct horse battery", &salt).unwrap().to_string();
        assert!(verify_password(&theirs, "correct horse battery"));
        assert!(!verify_password(&theirs, "correct horse batter"));
        // Other parameters (an older hash) verify with their own memory size.
        let small = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(4096, 1, 1, None).unwrap());
        let older = small.hash_password(b"correct horse battery", &salt).unwrap().to_string();
        assert!(verify_password(&older, "correct horse battery") && !verify_password(&older, "x"));
    }

    #[test]
    fn the_dummy_hash_is_well_formed_and_never_matches() {
        let parsed = PasswordHash::new(&DUMMY_HASH).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        assert!(!verify_password(&DUMMY_HASH, ""));
        assert!(!verify_password(&DUMMY_HASH, "password123"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashing_is_bounded_and_a_long_queue_is_refused() {
        let hashing = PasswordHashing::new(1, Duration::from_millis(1));
        let stored = hash_password("correct horse battery").unwrap();
        // One slot: of 8 verifications started together, the ones that cannot get the slot
        // within 1 ms are refused instead of running (and allocating 19 MiB) in parallel.
        let attempts = (0..8).map(|_| {
            let hashing = hashing.clone();
            let stored = stored.clone();
            tokio::spawn(async move { hashing.verify(Some(stored), "correct horse battery").await })
        });
        let results = futures::future::join_all(attempts).await;
        let refused =
            results.iter().filter(|r| matches!(r.as_ref().unwrap(), Err(Error::Overloaded(_)))).count();
        let verified = results.iter().filter(|r| matches!(r.as_ref().unwrap(), Ok(true))).count();
        assert!(
            verified >= 1 && refused >= 1 && verified + refused == 8,
            "{verified} verified, {refused} refused"
        );
        assert_eq!(hashing.available(), 1, "every slot is returned");
        assert!(!hashing.verify(None, "anything at all").await.unwrap(), "no account never matches");
        assert!(matches!(hashing.hash("short").await, Err(Error::Invalid { .. })));
    }
}
