//! Passwords: argon2id hashing and verification, bounded process-wide.
//!
//! One argon2id hash takes 19 MiB and tens of milliseconds of one core. Unbounded, a burst of
//! 200 sign-in attempts ran 200 hashes at once (860 MB resident) and starved every other
//! request. [`PasswordHashing`] runs at most one hash per core; further requests wait up to
//! [`QUEUE_WAIT`] for a turn and are then refused with [`Error::Overloaded`] (HTTP 503 with
//! `Retry-After`), so memory stays at `cores × 19 MiB` whatever arrives.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::SaltString;
use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
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
fn argon2() -> Argon2<'static> {
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(19_456, 2, 1, None).expect("valid argon2 params"),
    )
}

/// Checks a new password's length (before any hashing is spent on it).
pub fn check_new_password(password: &str) -> Result<()> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(Error::InvalidInput(format!(
            "a password needs at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(Error::InvalidInput(format!("a password has at most {MAX_PASSWORD_CHARS} characters")));
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
    let hash = argon2()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| Error::Config(format!("argon2: {e}")))?;
    Ok(hash.to_string())
}

/// Whether `password` matches a stored PHC hash (constant-time compare inside argon2).
pub fn verify_password(stored: &str, password: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| argon2().verify_password(password.as_bytes(), &hash).is_ok())
}

/// argon2id (same parameters) of a random, discarded password: verified against when the email
/// is unknown so both paths cost one hash.
pub(crate) static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut password = [0u8; 24];
    rand::rng().fill_bytes(&mut password);
    let text: String = password.iter().map(|b| format!("{b:02x}")).collect();
    hash_password(&text).expect("hashing a random password")
});

/// Hashing and verification on the blocking pool, at most `concurrency` at a time.
#[derive(Clone, Debug)]
pub struct PasswordHashing {
    slots: Arc<Semaphore>,
    wait: Duration,
}

impl PasswordHashing {
    /// At most `concurrency` hashes at once (0: one per core); a request waits up to `wait`.
    pub fn new(concurrency: usize, wait: Duration) -> Self {
        let concurrency = match concurrency {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        Self { slots: Arc::new(Semaphore::new(concurrency)), wait }
    }

    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let slot = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Error::Overloaded("too many password checks at once; retry in a moment".into()))?
            .map_err(|_| Error::Overloaded("password hashing is shut down".into()))?;
        let done = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        })
        .await
        .expect("password hashing panicked");
        Ok(done)
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
        assert!(matches!(hashing.hash("short").await, Err(Error::InvalidInput(_))));
    }
}
