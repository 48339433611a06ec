//! The versioned ciphertext blob of the Coffer keystores.
//!
//! Version 1: `b"CKMS" ‖ 0x01 ‖ key ID (16 bytes) ‖ material version (u32 BE) ‖ nonce (12) ‖
//! ciphertext ‖ GCM tag (16)`. The 25-byte header is part of the AAD, followed by the canonical
//! encryption context ([`crate::context`]), so neither the key, the material version nor the
//! context can be swapped. A new format gets a new version byte and [`parse`] keeps reading v1.

use uuid::Uuid;

use crate::wrap::{NONCE_BYTES, TAG_BYTES};
use crate::KmsError;

/// The magic prefix.
pub const MAGIC: &[u8; 4] = b"CKMS";
/// The current format version.
pub const VERSION_1: u8 = 1;
/// Header length of a v1 blob.
pub const HEADER_V1_LEN: usize = 4 + 1 + 16 + 4;

/// What a blob header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobHeader {
    /// The key that encrypted.
    pub key_id: Uuid,
    /// Which key material version of it.
    pub material_version: u32,
}

impl BlobHeader {
    /// The v1 header bytes.
    pub fn encode(&self) -> [u8; HEADER_V1_LEN] {
        let mut h = [0u8; HEADER_V1_LEN];
        h[..4].copy_from_slice(MAGIC);
        h[4] = VERSION_1;
        h[5..21].copy_from_slice(self.key_id.as_bytes());
        h[21..25].copy_from_slice(&self.material_version.to_be_bytes());
        h
    }
}

/// Splits a blob into its header, the header bytes (AAD prefix) and the sealed part.
pub fn parse(blob: &[u8]) -> Result<(BlobHeader, &[u8], &[u8]), KmsError> {
    let invalid = || KmsError::InvalidCiphertext("The ciphertext is invalid or malformed".into());
    if blob.len() < HEADER_V1_LEN + NONCE_BYTES + TAG_BYTES || &blob[..4] != MAGIC {
        return Err(invalid());
    }
    match blob[4] {
        VERSION_1 => {
            let key_id = Uuid::from_slice(&blob[5..21]).map_err(|_| invalid())?;
            let material_version = u32::from_be_bytes(blob[21..25].try_into().expect("4 bytes"));
            let (header, sealed) = blob.split_at(HEADER_V1_LEN);
            Ok((
                BlobHeader {
                    key_id,
                    material_version,
                },
                header,
                sealed,
            ))
        }
        _ => Err(invalid()),
    }
}

/// The key and material version a Coffer keystore blob (local or transit backend) names;
/// `None` for blobs of other KMSs (AWS KMS blobs are opaque) and malformed ones. Reads the
/// header only: that the blob then decrypts is not checked.
pub fn material_of(blob: &[u8]) -> Option<BlobHeader> {
    parse(blob).ok().map(|(h, _, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = BlobHeader {
            key_id: Uuid::new_v4(),
            material_version: 0x01020304,
        };
        let mut blob = h.encode().to_vec();
        blob.extend_from_slice(&[9u8; NONCE_BYTES + 3 + TAG_BYTES]);
        let (p, hdr, sealed) = parse(&blob).unwrap();
        assert_eq!(p, h);
        assert_eq!(hdr, &h.encode()[..]);
        assert_eq!(sealed.len(), NONCE_BYTES + 3 + TAG_BYTES);
        assert_eq!(&hdr[21..25], &[1, 2, 3, 4]);
    }

    #[test]
    fn rejects_bad_magic_version_and_short() {
        let h = BlobHeader {
            key_id: Uuid::new_v4(),
            material_version: 1,
        };
        let mut blob = h.encode().to_vec();
        blob.extend_from_slice(&[0u8; NONCE_BYTES + TAG_BYTES]);
        assert!(parse(&blob).is_ok());
        assert!(matches!(
            parse(&blob[..blob.len() - 1]),
            Err(KmsError::InvalidCiphertext(_))
        ));
        let mut v = blob.clone();
        v[4] = 2;
        assert!(parse(&v).is_err());
        let mut m = blob.clone();
        m[0] = b'X';
        assert!(parse(&m).is_err());
    }

    #[test]
    fn material_of_reads_coffer_headers_only() {
        let h = BlobHeader {
            key_id: Uuid::new_v4(),
            material_version: 7,
        };
        let mut blob = h.encode().to_vec();
        blob.extend_from_slice(&[5u8; NONCE_BYTES + 32 + TAG_BYTES]);
        assert_eq!(material_of(&blob), Some(h));
        // An AWS KMS blob (opaque bytes without the magic), a truncated and an unknown-version blob.
        let aws = [0x01u8, 0x02, 0x03, 0x00, 0x78].repeat(40);
        assert_eq!(material_of(&aws), None);
        assert_eq!(material_of(&blob[..HEADER_V1_LEN + 4]), None);
        blob[4] = 9;
        assert_eq!(material_of(&blob), None);
        assert_eq!(material_of(&[]), None);
    }
}
