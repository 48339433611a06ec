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
