//! Data keys and randomness.

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::CryptoError;

/// Length of a data key in bytes (AES-256).
pub const DEK_LEN: usize = 32;

/// A 256-bit data key (DEK), zeroized on drop.
///
/// `Debug` prints `DataKey(..)`, never the key, and there is deliberately no `Clone`: every
/// copy of key material is one more buffer to zeroize.
pub struct DataKey(Zeroizing<[u8; DEK_LEN]>);

impl DataKey {
    /// Generates a fresh key from the system random number generator.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut key = Zeroizing::new([0u8; DEK_LEN]);
        SystemRandom::new()
            .fill(key.as_mut())
            .map_err(|_| CryptoError::Random)?;
        Ok(Self(key))
    }

    /// Copies a key from `b`, which must be exactly [`DEK_LEN`] bytes.
    pub fn from_slice(b: &[u8]) -> Result<Self, CryptoError> {
        if b.len() != DEK_LEN {
            return Err(CryptoError::InvalidKey);
        }
        let mut key = Zeroizing::new([0u8; DEK_LEN]);
        key.copy_from_slice(b);
        Ok(Self(key))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; DEK_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// `N` bytes from the system random number generator.
///
/// The caller owns the result: wrap it in [`zeroize::Zeroizing`] if it is key material.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| CryptoError::Random)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_slice_requires_exact_length() {
        assert!(matches!(
            DataKey::from_slice(&[0u8; 31]),
            Err(CryptoError::InvalidKey)
        ));
        assert!(matches!(
            DataKey::from_slice(&[0u8; 33]),
            Err(CryptoError::InvalidKey)
        ));
        let bytes: Vec<u8> = (0..32).collect();
        let key = DataKey::from_slice(&bytes).unwrap();
        assert_eq!(&key.as_bytes()[..], &bytes[..]);
    }

    #[test]
    fn debug_hides_the_key() {
        let key = DataKey::from_slice(&[0xab; DEK_LEN]).unwrap();
        let shown = format!("{key:?} {key:#?}");
        assert_eq!(shown, "DataKey(..) DataKey(..)");
    }

    #[test]
    fn generated_keys_differ() {
        let a = DataKey::generate().unwrap();
        let b = DataKey::generate().unwrap();
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_ne!(a.as_bytes(), &[0u8; DEK_LEN]);
        assert_ne!(random_bytes::<16>().unwrap(), random_bytes::<16>().unwrap());
    }
}
