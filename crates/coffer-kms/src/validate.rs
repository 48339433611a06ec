//! Parameter limits shared by every backend, with AWS's bounds and messages.

use crate::KmsError;

/// `Limit` of the list calls: 1–1000, default 100.
pub fn limit(limit: Option<u32>) -> Result<usize, KmsError> {
    match limit {
        None => Ok(100),
        Some(l @ 1..=1000) => Ok(l as usize),
        Some(l) => Err(KmsError::Validation(format!(
            "1 validation error detected: Value '{l}' at 'limit' failed to satisfy constraint: \
             Member must have value between 1 and 1000"
        ))),
    }
}

/// `RotationPeriodInDays`: 90–2560, default 365.
pub fn rotation_period(days: Option<u32>) -> Result<u32, KmsError> {
    match days {
        None => Ok(365),
        Some(d @ 90..=2560) => Ok(d),
        Some(d) => Err(KmsError::Validation(format!(
            "1 validation error detected: Value '{d}' at 'rotationPeriodInDays' failed to satisfy \
             constraint: Member must have value between 90 and 2560"
        ))),
    }
}

/// `PendingWindowInDays`: 7–30, default 30.
pub fn pending_window(days: Option<u32>) -> Result<u32, KmsError> {
    match days {
        None => Ok(30),
        Some(d @ 7..=30) => Ok(d),
        Some(d) => Err(KmsError::Validation(format!(
            "1 validation error detected: Value '{d}' at 'pendingWindowInDays' failed to satisfy \
             constraint: Member must have value between 7 and 30"
        ))),
    }
}

/// `NumberOfBytes` of GenerateDataKey: 1–1024.
pub fn data_key_bytes(n: usize) -> Result<(), KmsError> {
    bytes_in_range(n, "numberOfBytes")
}

/// `NumberOfBytes` of GenerateRandom: 1–1024.
pub fn random_bytes(n: usize) -> Result<(), KmsError> {
    bytes_in_range(n, "numberOfBytes")
}

fn bytes_in_range(n: usize, field: &str) -> Result<(), KmsError> {
    if (1..=1024).contains(&n) {
        return Ok(());
    }
    Err(KmsError::Validation(format!(
        "1 validation error detected: Value '{n}' at '{field}' failed to satisfy constraint: \
         Member must have value between 1 and 1024"
    )))
}

/// `Plaintext` of Encrypt: 1–4096 bytes.
pub fn plaintext(pt: &[u8]) -> Result<(), KmsError> {
    if (1..=4096).contains(&pt.len()) {
        return Ok(());
    }
    Err(KmsError::Validation(
        "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: \
         Member must have length between 1 and 4096"
            .into(),
    ))
}

/// `CiphertextBlob`: 1–6144 bytes.
pub fn ciphertext(blob: &[u8]) -> Result<(), KmsError> {
    if (1..=6144).contains(&blob.len()) {
        return Ok(());
    }
    Err(KmsError::Validation(
        "1 validation error detected: Value at 'ciphertextBlob' failed to satisfy constraint: \
         Member must have length between 1 and 6144"
            .into(),
    ))
}

/// The number of items of a ReEncrypt batch: at most [`crate::MAX_REENCRYPT_BATCH`].
pub fn re_encrypt_batch(n: usize) -> Result<(), KmsError> {
    if n <= crate::MAX_REENCRYPT_BATCH {
        return Ok(());
    }
    Err(KmsError::Validation(format!(
        "A ReEncrypt batch has {n} items; at most {} are allowed",
        crate::MAX_REENCRYPT_BATCH
    )))
}
