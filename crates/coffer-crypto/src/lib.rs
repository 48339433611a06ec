//! Coffer's cryptography (DESIGN.md §2): data keys, the chunked AES-256-GCM object format and
//! key wrapping. Pure code: no I/O, no async runtime. Primitives come from `ring`; every key
//! buffer this crate owns is zeroized on drop.
//!
//! # Layout
//! - [`dek`]: [`DataKey`], the per-object-version 256-bit data key, and [`random_bytes`].
//! - [`chunk`]: the on-disk format: [`BlobCipher`] seals and opens the chunks of one blob,
//!   [`ChunkLayout`] maps plaintext offsets to sealed chunks, [`ChunkSealer`] chunks a stream.
//! - [`wrap`]: AES-256-GCM key wrapping under a key-encryption key (KMS keystore, Bucket Keys,
//!   SSE-C).
//! - [`kdf`]: HKDF-SHA256 and HMAC-SHA256 (with constant-time verification).
//! - [`error`]: the error type, [`CryptoError`].
#![warn(missing_docs)]

pub mod chunk;
pub mod dek;
pub mod error;
pub mod kdf;
pub mod wrap;

pub use chunk::{BlobCipher, ChunkLayout, ChunkSealer, LayeredCipher, DEFAULT_CHUNK_SIZE, TAG_LEN};
pub use dek::{random_bytes, DataKey, DEK_LEN};
pub use error::CryptoError;
pub use kdf::{hkdf_sha256, hmac_sha256, hmac_sha256_verify};

#[cfg(test)]
mod test_util {
    pub fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn unhex(s: &str) -> Vec<u8> {
        assert!(s.len().is_multiple_of(2), "odd hex length");
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
            .collect()
    }
}
