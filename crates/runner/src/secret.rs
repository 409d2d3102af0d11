//! Secrets at rest: XChaCha20-Poly1305 with a key from `PROVFLOW_SECRET_KEY` or
//! `.provflow/secret.key`. Without a key, secrets are not persisted at all.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::path::Path;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::value::Secret;

/// The environment variable holding the key (64 hex digits or base64 of 32 bytes).
pub const KEY_ENV: &str = "PROVFLOW_SECRET_KEY";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{source_name} does not hold a 32-byte key (expected 64 hex digits or base64 of 32 bytes)")]
    Malformed { source_name: String },
    #[error("cannot read the key file `{path}`: {error}")]
    Unreadable { path: String, error: std::io::Error },
    #[error(
        "the key file `{path}` can be read by others (mode {mode:03o}): a key anyone can read protects nothing, so it is not used; make it private with `chmod 600 {path}` (and check who read it)"
    )]
    TooOpen { path: String, mode: u32 },
    #[error("a key file is already at `{path}`: replacing it would make every secret sealed under it unreadable; to change keys, generate the new one elsewhere (`provflow key generate --out FILE`) and run `provflow key rotate --new-key FILE`")]
    Exists { path: String },
    #[error("cannot write the key file `{path}`: {error}")]
    Unwritable { path: String, error: std::io::Error },
}

/// The key that seals secrets. Its bytes never leave this module and are wiped when it is
/// dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
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
        let mut key = SecretKey([0; 32]);
        match bytes {
            Some(b) if b.len() == key.0.len() => {
                key.0.copy_from_slice(&b);
                Ok(key)
            }
            _ => Err(KeyError::Malformed { source_name: source_name.to_string() }),
        }
    }

    /// The key from the environment, else from `key_file` if it exists; `None` when neither.
    pub fn discover(key_file: &Path) -> Result<Option<Self>, KeyError> {
        if let Ok(text) = std::env::var(KEY_ENV).map(Zeroizing::new) {
            if !text.trim().is_empty() {
                return SecretKey::parse(&text, KEY_ENV).map(Some);
            }
        }
        match Self::read_file(key_file) {
            Ok(key) => Ok(Some(key)),
            Err(KeyError::Unreadable { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The key in `path`, which must be readable by its owner only.
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|error| KeyError::Unreadable { path: shown.clone(), error })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file
                .metadata()
                .map_err(|error| KeyError::Unreadable { path: shown.clone(), error })?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(KeyError::TooOpen { path: shown, mode: mode & 0o777 });
            }
        }
        let mut text = Zeroizing::new(String::new());
        std::io::Read::read_to_string(&mut &file, &mut text)
            .map_err(|error| KeyError::Unreadable { path: shown.clone(), error })?;
        SecretKey::parse(&text, &shown)
    }

    /// A new random key.
    pub fn generate() -> Result<Self, KeyError> {
        let mut key = SecretKey([0; 32]);
        getrandom::fill(&mut key.0).map_err(|e| KeyError::Unwritable {
            path: "(random source)".into(),
            error: std::io::Error::other(e.to_string()),
        })?;
        Ok(key)
    }

    /// Writes the key to a new file `path` (64 hex digits), readable by its owner only; an
    /// existing file is never replaced.
    pub fn write_new_file(&self, path: &Path) -> Result<(), KeyError> {
        let shown = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::sqlite_conn::private_dir(parent)
                .map_err(|error| KeyError::Unwritable { path: shown.clone(), error })?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|error| match error.kind() {
            std::io::ErrorKind::AlreadyExists => KeyError::Exists { path: shown.clone() },
            _ => KeyError::Unwritable { path: shown.clone(), error },
        })?;
        let mut text = Zeroizing::new(String::with_capacity(65));
        for b in self.0 {
            // Written straight into the wiped buffer: no other copy of the key's text.
            let _ = std::fmt::Write::write_fmt(&mut *text, format_args!("{b:02x}"));
        }
        text.push('\n');
        std::io::Write::write_all(&mut file, text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|error| KeyError::Unwritable { path: shown, error })
    }

    /// Whether two keys are the same (without showing either).
    pub fn same_as(&self, other: &SecretKey) -> bool {
        self.0 == other.0
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
        Some(STANDARD.encode(&out))
    }

    /// Opens what [`SecretKey::seal`] produced; `None` when the key or context is wrong.
    pub fn open(&self, sealed: &str, context: &str) -> Option<Secret> {
        let bytes = STANDARD.decode(sealed).ok()?;
        let (nonce, body) = bytes.split_at_checked(24)?;
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let clear = cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad: context.as_bytes() }).ok()?;
        // On success the buffer becomes the secret itself (wiped when it drops); a plaintext
        // that is not UTF-8 is wiped here.
        match String::from_utf8(clear) {
            Ok(text) => Some(Secret::new(text)),
            Err(e) => {
                e.into_bytes().zeroize();
                None
            }
        }
    }
}

/// Key bytes from hex; the buffer is wiped when dropped.
fn decode_hex(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect();
    bytes.map(Zeroizing::new)
}

/// Key bytes from standard or URL-safe base64, padded or not; the buffer is wiped when dropped.
fn decode_base64(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
        .map(Zeroizing::new)
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
        for engine in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
            // 0xfb… encodes to `+` / `-` and `/` / `_`: each alphabet is really exercised.
            assert!(SecretKey::parse(&engine.encode([0xfb; 32]), "k").is_ok());
        }
        assert!(SecretKey::parse("abc", "k").is_err());
        assert!(SecretKey::parse(&"00".repeat(16), "k").is_err());
    }

    #[test]
    fn sealed_values_are_standard_padded_base64() {
        // The format stores already hold: standard alphabet, padded.
        let key = SecretKey::from_bytes([7; 32]);
        let sealed = key.seal(&Secret::new("x"), "c").unwrap();
        assert!(STANDARD.decode(&sealed).is_ok(), "{sealed}");
        assert!(key.open("not base64!", "c").is_none());
        assert!(key.open(&STANDARD.encode([0u8; 10]), "c").is_none(), "shorter than a nonce");
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_private_and_never_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/secret.key");
        let key = SecretKey::generate().unwrap();
        key.write_new_file(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&path), mode(path.parent().unwrap())), (0o600, 0o700));
        assert!(SecretKey::read_file(&path).unwrap().same_as(&key));
        let again = SecretKey::generate().unwrap().write_new_file(&path).unwrap_err();
        assert!(matches!(again, KeyError::Exists { .. }), "{again}");
        assert!(SecretKey::read_file(&path).unwrap().same_as(&key), "the first key is still there");
        // Readable by the group or others: refused, with the command that fixes it.
        for loose in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).unwrap();
            let refused = SecretKey::read_file(&path).err().unwrap().to_string();
            assert!(refused.contains(&format!("chmod 600 {}", path.display())), "{refused}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(SecretKey::read_file(&path).is_ok());
        assert!(!SecretKey::generate().unwrap().same_as(&key), "two keys differ");
    }
}
