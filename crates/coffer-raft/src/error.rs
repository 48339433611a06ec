//! [`Error`], the error of every coffer-raft operation.

use std::time::Duration;

use crate::app::ApplyError;

/// What went wrong in a coffer-raft operation.
///
/// For [`crate::RaftNode::client_write`], the variants say whether the command may have been
/// applied: [`Error::NoLeader`] and [`Error::Stopped`] are returned only when the command was
/// certainly not proposed; after [`Error::Timeout`] and [`Error::Rpc`] its outcome is unknown
/// (it may still commit), so a retry must be idempotent or conditional.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// RocksDB failed.
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// A file operation failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A persisted record or an RPC payload could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),
    /// A snapshot file is malformed or does not match its metadata.
    #[error("corrupt snapshot: {0}")]
    CorruptSnapshot(String),
    /// The configuration, or the application's column families, are invalid.
    #[error("invalid config: {0}")]
    Config(String),
    /// No leader could be found or reached before the deadline; nothing was proposed.
    #[error("no leader: {0}")]
    NoLeader(String),
    /// The deadline passed before an answer; a write may or may not have been applied.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A call forwarded to the leader failed after it was sent; a write may or may not have been
    /// applied.
    #[error("rpc to {addr}: {message}")]
    Rpc {
        /// The address called.
        addr: String,
        /// The gRPC status or transport error.
        message: String,
    },
    /// The leader confirmed it is leader but could not reach a quorum.
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// Raft refused a membership change (another change in progress, unknown learner, ...).
    #[error("membership change refused: {0}")]
    Membership(String),
    /// The cluster cannot be initialized (already has a log, this node is not a member).
    #[error("initialize: {0}")]
    Initialize(String),
    /// The application failed to apply committed commands (fatal for the node).
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The Raft node is shut down, or stopped after a fatal storage error.
    #[error("raft stopped: {0}")]
    Stopped(String),
}

impl Error {
    pub(crate) fn codec(e: impl std::fmt::Display) -> Self {
        Error::Codec(e.to_string())
    }
}
