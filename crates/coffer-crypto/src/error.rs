//! The crate's error type.

/// A failure of a cryptographic operation.
///
/// The variants say what failed, never why in detail: an authentication failure looks the
/// same whether a byte was flipped, a chunk moved or the wrong key used.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Authentication failed: the input was tampered with, truncated, moved, or opened with
    /// the wrong key or associated data.
    #[error("authentication failed")]
    Open,
    /// Key material of the wrong length.
    #[error("invalid key length")]
    InvalidKey,
    /// The system random number generator failed.
    #[error("system random number generator failed")]
    Random,
    /// Sealing failed: the input exceeds AES-GCM's per-message limit.
    #[error("sealing failed: input too long")]
    Seal,
}
