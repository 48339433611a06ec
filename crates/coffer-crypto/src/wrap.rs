//! Key wrapping: AES-256-GCM under a 32-byte key-encryption key (KEK).
//!
//! Used by the local KMS keystore, Bucket Keys and SSE-C to wrap data keys. The output is
//! `nonce (12) || ciphertext || tag (16)` with a random 96-bit nonce; `aad` is authenticated
//! but not stored, so the opener must supply the same bytes.
//!
//! Random nonces are safe here because a KEK wraps far fewer than 2^32 messages (NIST
//! SP 800-38D's limit for random 96-bit nonces); bulk data uses [`crate::BlobCipher`] instead.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use zeroize::Zeroizing;

use crate::{random_bytes, CryptoError, TAG_LEN};

/// Bytes a wrapped message adds to its plaintext: the nonce and the tag.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

fn key(kek: &[u8; 32]) -> Result<LessSafeKey, CryptoError> {
    let key = UnboundKey::new(&AES_256_GCM, kek).map_err(|_| CryptoError::InvalidKey)?;
    Ok(LessSafeKey::new(key))
}

/// Seals `plaintext` under `kek`, binding `aad`. Returns `nonce || ciphertext || tag`.
pub fn seal(kek: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let key = key(kek)?;
    let nonce = random_bytes::<NONCE_LEN>()?;
    // Sized up front so the plaintext is encrypted where it is copied and never reallocated.
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[NONCE_LEN..],
        )
        .map_err(|_| CryptoError::Seal)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// Opens what [`seal`] produced under the same `kek` and `aad`.
pub fn open(kek: &[u8; 32], sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < OVERHEAD {
        return Err(CryptoError::Open);
    }
    let key = key(kek)?;
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open)?;
    let mut buf = Zeroizing::new(body.to_vec());
    let plain_len = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| CryptoError::Open)?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEK: [u8; 32] = [7; 32];

    #[test]
    fn round_trip_and_layout() {
        let sealed = seal(&KEK, b"data key bytes", b"context").unwrap();
        assert_eq!(sealed.len(), OVERHEAD + 14);
        assert_ne!(&sealed[NONCE_LEN..NONCE_LEN + 14], b"data key bytes");
        let opened = open(&KEK, &sealed, b"context").unwrap();
        assert_eq!(&opened[..], b"data key bytes");
        let empty = seal(&KEK, b"", b"").unwrap();
        assert_eq!(empty.len(), OVERHEAD);
        assert!(open(&KEK, &empty, b"").unwrap().is_empty());
    }

    #[test]
    fn nonces_are_fresh() {
        let a = seal(&KEK, b"same", b"").unwrap();
        let b = seal(&KEK, b"same", b"").unwrap();
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_kek_or_aad_fails() {
        let sealed = seal(&KEK, b"secret", b"aad").unwrap();
        assert!(matches!(
            open(&[8; 32], &sealed, b"aad"),
            Err(CryptoError::Open)
        ));
        assert!(matches!(
            open(&KEK, &sealed, b"aae"),
            Err(CryptoError::Open)
        ));
        assert!(matches!(open(&KEK, &sealed, b""), Err(CryptoError::Open)));
    }

    #[test]
    fn any_bit_flip_fails() {
        let sealed = seal(&KEK, b"0123456789abcdef", b"aad").unwrap();
        for byte in 0..sealed.len() {
            for bit in 0..8 {
                let mut bad = sealed.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    open(&KEK, &bad, b"aad").is_err(),
                    "flip of bit {bit} in byte {byte} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn short_or_truncated_input_fails() {
        let sealed = seal(&KEK, b"secret", b"").unwrap();
        for len in 0..sealed.len() {
            assert!(matches!(
                open(&KEK, &sealed[..len], b""),
                Err(CryptoError::Open)
            ));
        }
    }
}
