//! The root key of the local keystore: read from a permission-checked file or from an
//! environment variable, as base64 of 32 bytes. Never logged, zeroized on drop.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use zeroize::Zeroizing;

use crate::KmsError;

/// A 32-byte root key; zeroized on drop.
pub type RootKey = Zeroizing<[u8; 32]>;

/// Decodes a root key: base64 of exactly 32 bytes (surrounding whitespace ignored).
pub fn decode_root_key(text: &[u8]) -> Result<RootKey, KmsError> {
    let trimmed = text.trim_ascii();
    let bytes = Zeroizing::new(
        B64.decode(trimmed)
            .map_err(|_| KmsError::Validation("the root key is not valid base64".into()))?,
    );
    if bytes.len() != 32 {
        return Err(KmsError::Validation(format!(
            "the root key must be 32 bytes, got {}",
            bytes.len()
        )));
    }
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// Reads a root key file; refuses a file that group or others can read or write.
pub fn read_root_key_file(path: &Path) -> Result<RootKey, KmsError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| KmsError::Validation(format!("root key file {}: {e}", path.display())))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(KmsError::Validation(format!(
            "root key file {} has mode {:o}: it must not be accessible by group or others (chmod 600)",
            path.display(),
            mode & 0o777
        )));
    }
    let text = Zeroizing::new(
        std::fs::read(path)
            .map_err(|e| KmsError::Validation(format!("root key file {}: {e}", path.display())))?,
    );
    decode_root_key(&text)
}

/// Reads a root key from the environment variable `var`.
pub fn read_root_key_env(var: &str) -> Result<RootKey, KmsError> {
    let val = Zeroizing::new(
        std::env::var(var)
            .map_err(|_| KmsError::Validation(format!("environment variable {var} is not set")))?,
    );
    decode_root_key(val.as_bytes())
}

/// Loads the root key from exactly one of a file or an environment variable.
pub fn load_root_key(file: Option<&Path>, env: Option<&str>) -> Result<RootKey, KmsError> {
    match (file, env) {
        (Some(f), None) => read_root_key_file(f),
        (None, Some(v)) => read_root_key_env(v),
        _ => Err(KmsError::Validation(
            "exactly one of root_key_file and root_key_env must be set".into(),
        )),
    }
}

/// Creates a new root key file (mode 0600, fails if it exists) holding a random key, for
/// `coffer dev`'s first start. Returns the key.
pub fn create_root_key_file(path: &Path) -> Result<RootKey, KmsError> {
    let key: RootKey = Zeroizing::new(crate::wrap::random_bytes::<32>()?);
    let text = Zeroizing::new(B64.encode(&key[..]));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            KmsError::Internal(format!("creating root key file {}: {e}", path.display()))
        })?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| {
            KmsError::Internal(format!("writing root key file {}: {e}", path.display()))
        })?;
    Ok(key)
}

/// A secret written in a config file (e.g. a KMS secret access key): `Debug` never shows it,
/// and it is zeroized on drop. (De)serializes as a plain string.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, zeroize::ZeroizeOnDrop)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        SecretString(secret.into())
    }

    /// The secret itself, for handing to the library that needs it; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretString(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_permissions_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("root.key");
        let key = create_root_key_file(&p).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(*read_root_key_file(&p).unwrap(), *key);
        assert!(create_root_key_file(&p).is_err(), "must not overwrite");
        for mode in [0o640, 0o604, 0o660] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = read_root_key_file(&p).unwrap_err();
            assert!(err.message().contains("chmod 600"), "{mode:o}: {err}");
        }
    }

    #[test]
    fn decode_checks_length() {
        assert!(decode_root_key(B64.encode([1u8; 31]).as_bytes()).is_err());
        assert!(decode_root_key(b"not base64!").is_err());
        let k = decode_root_key(format!("  {}\n", B64.encode([3u8; 32])).as_bytes()).unwrap();
        assert_eq!(*k, [3u8; 32]);
    }

    #[test]
    fn env_and_exactly_one_source() {
        std::env::set_var("COFFER_TEST_ROOT_KEY_SECRETS", B64.encode([5u8; 32]));
        assert_eq!(
            *load_root_key(None, Some("COFFER_TEST_ROOT_KEY_SECRETS")).unwrap(),
            [5u8; 32]
        );
        assert!(load_root_key(None, Some("COFFER_TEST_ROOT_KEY_UNSET_VAR")).is_err());
        assert!(load_root_key(None, None).is_err());
        assert!(load_root_key(Some(Path::new("/x")), Some("Y")).is_err());
    }

    #[test]
    fn secret_string_is_not_debug_printed() {
        let s: SecretString = serde_json::from_str("\"wJalrXUtnFEMI\"").unwrap();
        assert_eq!(s.expose(), "wJalrXUtnFEMI");
        assert!(!format!("{s:?}").contains("wJalr"), "{s:?}");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"wJalrXUtnFEMI\"");
    }
}
