//! HKDF and HMAC over SHA-256.

use ring::{hkdf, hmac};

/// Output length for [`ring::hkdf::Prk::expand`].
struct OutLen(usize);

impl hkdf::KeyType for OutLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 (RFC 5869): extracts from `ikm` with `salt`, expands with `info` into `out`.
///
/// # Panics
/// If `out` is longer than HKDF-SHA256's maximum of 255 × 32 = 8160 bytes.
pub fn hkdf_sha256(ikm: &[u8], salt: &[u8], info: &[u8], out: &mut [u8]) {
    let info = [info];
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
        .extract(ikm)
        .expand(&info, OutLen(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("HKDF-SHA256 output longer than 8160 bytes");
}

/// HMAC-SHA256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Whether `tag` is the HMAC-SHA256 of `data` under `key`, compared in constant time.
pub fn hmac_sha256_verify(key: &[u8], data: &[u8], tag: &[u8]) -> bool {
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, key), data, tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::unhex;

    // RFC 5869, test case 1.
    #[test]
    fn hkdf_rfc5869_case_1() {
        let ikm = [0x0b; 22];
        let salt = unhex("000102030405060708090a0b0c");
        let info = unhex("f0f1f2f3f4f5f6f7f8f9");
        let mut okm = [0u8; 42];
        hkdf_sha256(&ikm, &salt, &info, &mut okm);
        assert_eq!(
            okm.to_vec(),
            unhex(
                "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf\
                 34007208d5b887185865"
            )
        );
    }

    #[test]
    #[should_panic(expected = "longer than 8160")]
    fn hkdf_rejects_overlong_output() {
        let mut out = vec![0u8; 255 * 32 + 1];
        hkdf_sha256(b"ikm", b"salt", b"info", &mut out);
    }

    // RFC 4231, test case 2.
    #[test]
    fn hmac_rfc4231_case_2() {
        let tag = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            tag.to_vec(),
            unhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        assert!(hmac_sha256_verify(
            b"Jefe",
            b"what do ya want for nothing?",
            &tag
        ));
    }

    #[test]
    fn hmac_verify_rejects_wrong_inputs() {
        let tag = hmac_sha256(b"key", b"data");
        assert!(!hmac_sha256_verify(b"key2", b"data", &tag));
        assert!(!hmac_sha256_verify(b"key", b"date", &tag));
        assert!(!hmac_sha256_verify(b"key", b"data", &tag[..31]));
        let mut flipped = tag;
        flipped[7] ^= 1;
        assert!(!hmac_sha256_verify(b"key", b"data", &flipped));
    }
}
