//! `MetaError`.

/// An error of the metadata role. It travels to gateways inside command results and read
/// answers (MessagePack, see [`crate::raft`]), hence the serde derives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum MetaError {
    /// The bucket does not exist.
    #[error("no such bucket: {0}")]
    NoSuchBucket(String),
    /// A bucket of that name exists (owned by the caller: the gateway maps to BucketAlreadyOwnedByYou).
    #[error("bucket already exists: {0}")]
    BucketAlreadyExists(String),
    /// DeleteBucket on a bucket with versions, markers or uploads.
    #[error("bucket not empty: {0}")]
    BucketNotEmpty(String),
    /// No current version (or it is a delete marker).
    #[error("no such key: {0}")]
    NoSuchKey(String),
    /// No such version ID.
    #[error("no such version: {0}")]
    NoSuchVersion(String),
    /// No such multipart upload.
    #[error("no such upload: {0}")]
    NoSuchUpload(String),
    /// A write condition did not hold.
    #[error("precondition failed")]
    PreconditionFailed,
    /// UpdateEnvelope found another generation.
    #[error("envelope generation changed: expected {expected}, found {found}")]
    GenerationMismatch {
        /// Expected generation.
        expected: u64,
        /// Found generation.
        found: u64,
    },
    /// A checkpoint's envelope compare-and-set `index` failed (the whole checkpoint was not
    /// applied).
    #[error("rewrap {index} of the checkpoint conflicts: {reason}")]
    RewrapConflict {
        /// Index of the failing rewrap in `JobProgress::rewraps`.
        index: u32,
        /// The failure (the Display of UpdateEnvelope's error).
        reason: String,
    },
    /// Object Lock forbids the change.
    #[error("object locked: {0}")]
    ObjectLocked(String),
    /// A request the state machine rejects as invalid (e.g. shortening COMPLIANCE retention).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Metadata unavailable (no quorum, leader unknown): the gateway answers 503.
    #[error("metadata unavailable: {0}")]
    Unavailable(String),
    /// Storage or encoding failure.
    #[error("metadata storage error: {0}")]
    Storage(String),
}

impl MetaError {
    /// Whether the command may have been applied although the call failed: the group could not
    /// answer in time ([`MetaError::Unavailable`], e.g. its retries ran out while a leader
    /// changed) or storage failed mid-way. Every other error is the state machine's decision
    /// not to apply it.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, MetaError::Unavailable(_) | MetaError::Storage(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_and_storage_leave_the_outcome_unknown() {
        assert!(MetaError::Unavailable("no leader".into()).outcome_unknown());
        assert!(MetaError::Storage("io".into()).outcome_unknown());
        assert!(!MetaError::PreconditionFailed.outcome_unknown());
        assert!(!MetaError::NoSuchBucket("b".into()).outcome_unknown());
        assert!(!MetaError::ObjectLocked("k".into()).outcome_unknown());
        assert!(!MetaError::RewrapConflict {
            index: 0,
            reason: "r".into()
        }
        .outcome_unknown());
    }
}
