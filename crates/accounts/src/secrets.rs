//! Random secrets (API tokens, session ids, invitation, reset and sign-up links) and the
//! digests stored for them: a copy of the control plane holds no usable secret.

pub(crate) use silo_core::tokens::random_secret as new_secret;

/// A new random API token and the digest stored for it.
pub(crate) fn new_token() -> (String, String) {
    let token = new_secret("silo_");
    let digest = token_digest(&token);
    (token, digest)
}

/// The stored form of a token: its SHA-256, hex.
pub fn token_digest(token: &str) -> String {
    silo_core::tokens::sha256_hex(token.as_bytes())
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
