//! Secrets at rest: XChaCha20-Poly1305 with a key from `PROVFLOW_SECRET_KEY` or
//! `.provflow/secret.key`. Without a key, secrets are not persisted at all.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::path::Path;

use crate::value::Secret;

/// The environment variable holding the key (64 hex digits or base64 of 32 bytes).
pub const KEY_ENV: &str = "PROVFLOW_SECRET_KEY";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{source_name} does not hold a 32-byte key (expected 64 hex digits or base64 of 32 bytes)")]
    Malformed { source_name: String },
    #[error("cannot read the key file `{path}`: {error}")]
    Unreadable { path: String, error: std::io::Error },
}

/// The key that seals secrets. Its bytes never leave this module.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(********)")
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }

    /// Parses 64 hex digits or standard/URL-safe base64 of 32 bytes.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let bytes = decode_hex(text).or_else(|| decode_base64(text));
        match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
            Some(k) => Ok(SecretKey(k)),
            None => Err(KeyError::Malformed { source_name: source_name.to_string() }),
        }
    }

    /// The key from the environment, else from `key_file` if it exists; `None` when neither.
    pub fn discover(key_file: &Path) -> Result<Option<Self>, KeyError> {
        if let Ok(text) = std::env::var(KEY_ENV) {
            if !text.trim().is_empty() {
                return SecretKey::parse(&text, KEY_ENV).map(Some);
            }
        }
        match std::fs::read_to_string(key_file) {
            Ok(text) => SecretKey::parse(&text, &key_file.display().to_string()).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(KeyError::Unreadable { path: key_file.display().to_string(), error }),
        }
    }

    /// Seals `secret`, bound to `context` (e.g. the account and field) so a sealed value cannot
    /// be moved to another field. Output: base64 of nonce ‖ ciphertext.
    pub fn seal(&self, secret: &Secret, context: &str) -> Option<String> {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).ok()?;
        let sealed = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: secret.expose().as_bytes(), aad: context.as_bytes() })
            .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Some(encode_base64(&out))
    }

    /// Opens what [`SecretKey::seal`] produced; `None` when the key or context is wrong.
    pub fn open(&self, sealed: &str, context: &str) -> Option<Secret> {
        let bytes = decode_base64(sealed)?;
        if bytes.len() < 24 {
            return None;
        }
        let (nonce, body) = bytes.split_at(24);
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let clear = cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad: context.as_bytes() }).ok()?;
        String::from_utf8(clear).ok().map(Secret::new)
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn encode_base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_bound_to_context() {
        let key = SecretKey::from_bytes([7; 32]);
        let sealed = key.seal(&Secret::new("s3cr3t pässword"), "account 1 password").unwrap();
        assert!(!sealed.contains("s3cr3t"));
        assert_eq!(key.open(&sealed, "account 1 password").unwrap().expose(), "s3cr3t pässword");
        assert!(key.open(&sealed, "account 2 password").is_none());
        assert!(SecretKey::from_bytes([8; 32]).open(&sealed, "account 1 password").is_none());
    }

    #[test]
    fn parses_hex_and_base64_keys() {
        let hex = "00".repeat(31) + "ff";
        assert!(SecretKey::parse(&hex, "k").is_ok());
        assert!(SecretKey::parse(&encode_base64(&[1; 32]), "k").is_ok());
        assert!(SecretKey::parse("abc", "k").is_err());
        assert!(SecretKey::parse(&"00".repeat(16), "k").is_err());
    }

    #[test]
    fn base64_round_trip() {
        for n in 0..10 {
            let bytes: Vec<u8> = (0..n).map(|i: u8| i.wrapping_mul(97)).collect();
            assert_eq!(decode_base64(&encode_base64(&bytes)).unwrap(), bytes);
        }
    }
}
