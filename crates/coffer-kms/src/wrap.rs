//! AES-256-GCM sealing of small secrets (key material, data keys), `nonce ‖ ct ‖ tag`:
//! `coffer_crypto::wrap` with the KMS's error types.

use ring::aead::NONCE_LEN;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::KmsError;

/// Length of the nonce prefix of a sealed value.
pub(crate) const NONCE_BYTES: usize = NONCE_LEN;
/// Length of the GCM tag suffix of a sealed value.
pub(crate) const TAG_BYTES: usize = coffer_crypto::TAG_LEN;

/// Seals `pt` under `kek` with a random nonce, binding `aad`.
pub(crate) fn seal(kek: &[u8; 32], pt: &[u8], aad: &[u8]) -> Result<Vec<u8>, KmsError> {
    coffer_crypto::wrap::seal(kek, pt, aad)
        .map_err(|e| KmsError::Internal(format!("AES-GCM seal failed: {e}")))
}

/// Opens a value made by [`seal`]; any mismatch (key, AAD, truncation) is one opaque error.
pub(crate) fn open(
    kek: &[u8; 32],
    sealed: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    coffer_crypto::wrap::open(kek, sealed, aad).map_err(|_| OpenError)
}

/// A sealed value did not authenticate.
#[derive(Debug)]
pub(crate) struct OpenError;

/// `N` bytes from the system CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], KmsError> {
    let mut b = [0u8; N];
    fill_random(&mut b)?;
    Ok(b)
}

/// Fills `buf` from the system CSPRNG.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), KmsError> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| KmsError::Internal("system random generator failed".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let k = [7u8; 32];
        let s = seal(&k, b"secret", b"aad").unwrap();
        assert_eq!(s.len(), NONCE_BYTES + 6 + TAG_BYTES);
        assert_eq!(&open(&k, &s, b"aad").unwrap()[..], b"secret");
        assert!(open(&k, &s, b"aae").is_err());
        assert!(open(&[8u8; 32], &s, b"aad").is_err());
        let mut t = s.clone();
        t[NONCE_BYTES] ^= 1;
        assert!(open(&k, &t, b"aad").is_err());
        assert!(open(&k, &s[..s.len() - 1], b"aad").is_err());
        // Random nonces: two seals of the same input differ.
        assert_ne!(seal(&k, b"secret", b"aad").unwrap(), s);
    }
}
