//! Random secrets (API tokens, session ids, invitation, reset and sign-up links) and the
//! digests stored for them: a copy of the control plane holds no usable secret.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A random 256-bit secret, hex, after `prefix` (tokens, invitation and reset links).
pub(crate) fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex(&bytes))
}

/// A new random API token and the digest stored for it.
pub(crate) fn new_token() -> (String, String) {
    let token = new_secret("silo_");
    let digest = token_digest(&token);
    (token, digest)
}

/// The stored form of a token: its SHA-256, hex.
pub fn token_digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_stored_as_digests() {
        let (a, digest) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with("silo_") && a.len() == 5 + 64);
        assert_eq!(digest, token_digest(&a));
        assert_eq!(digest.len(), 64);
    }
}
