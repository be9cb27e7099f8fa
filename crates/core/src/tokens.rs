//! Hex, random secrets and the digest stored for them: session ids, API tokens, form tokens,
//! links sent by mail. A copy of a database holds only digests, never a usable secret.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    text
}

/// The bytes `text` spells in hex (either case); `None` unless it is whole pairs of hex digits.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    // Digits only: `from_str_radix` alone would take a sign ("+1").
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

/// `bytes` random bytes from the operating system's generator, as hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex(&buf)
}

/// A random 256-bit secret, hex, after `prefix` (`silo_` for API tokens, empty for links).
pub fn random_secret(prefix: &str) -> String {
    format!("{prefix}{}", random_hex(32))
}

/// Lowercase hex SHA-256 of `bytes`: the stored form of a secret, and content digests.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
        assert_eq!(from_hex("000fA5ff"), Some(vec![0x00, 0x0f, 0xa5, 0xff]));
        for bad in ["0", "0g", "+1", "é0"] {
            assert_eq!(from_hex(bad), None, "{bad}");
        }
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn secrets_are_random_and_prefixed() {
        let (a, b) = (random_secret("silo_"), random_secret("silo_"));
        assert_ne!(a, b);
        assert!(a.starts_with("silo_") && a.len() == 5 + 64, "{a}");
        assert!(a[5..].bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(random_hex(16).len(), 32);
    }
}
