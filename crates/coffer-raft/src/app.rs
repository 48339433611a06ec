//! [`StateMachineApp`], the boundary between Raft and the application it replicates.

use rocksdb::{WriteBatch, DB};

/// One committed application command, handed to [`StateMachineApp::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCommand {
    /// The log index of the command.
    pub index: u64,
    /// The command bytes, as given to [`crate::RaftNode::client_write`].
    pub data: Vec<u8>,
}

/// A failure to apply committed commands. It is fatal: Raft stops the node rather than skip a
/// command, since every replica must apply the same log to the same state.
#[derive(Debug, Clone, thiserror::Error)]
#[error("apply: {0}")]
pub struct ApplyError(pub String);

impl From<rocksdb::Error> for ApplyError {
    fn from(e: rocksdb::Error) -> Self {
        ApplyError(e.to_string())
    }
}

/// The application whose state Raft replicates: a deterministic state machine kept in RocksDB
/// column families of the database coffer-raft opens.
///
/// # Contract
/// - The state lives only in [`Self::COLUMN_FAMILIES`]. coffer-raft creates them, dumps them
///   into snapshots, and replaces their whole content when a snapshot is installed.
/// - [`Self::apply`] must be deterministic: the result may depend only on the state and the
///   commands (times, ids and randomness travel inside the commands). A command the application
///   rejects (a failed precondition, a validation error) is still applied: its answer encodes the
///   rejection and it leaves the state unchanged.
/// - [`Self::apply`] must not write to the database itself: it adds its writes to `batch`, which
///   coffer-raft commits together with the new last-applied log id and membership in one synced
///   RocksDB write. A crash thus leaves either all or none of a batch of commands applied, and
///   the answers are returned to the writers only after that write is durable.
pub trait StateMachineApp: Send + Sync + 'static {
    /// The column families holding the application's state. They must not be `"default"`,
    /// [`crate::LOGS_CF`] or [`crate::RAFT_META_CF`].
    const COLUMN_FAMILIES: &'static [&'static str];

    /// Applies `commands` (consecutive in log order, though blank and membership entries of the
    /// log may fall between them) on top of the state in `db`, adding the writes to `batch`.
    /// Returns one answer per command, in order. A command must see the effects of the commands
    /// before it in the same call, which are only in `batch` and not yet in `db`: keep an overlay
    /// of the pending writes.
    fn apply(
        &self,
        db: &DB,
        batch: &mut WriteBatch,
        commands: &[LogCommand],
    ) -> Result<Vec<Vec<u8>>, ApplyError>;

    /// Called after a snapshot replaced the content of [`Self::COLUMN_FAMILIES`], e.g. to drop
    /// caches of the state. The default does nothing.
    fn snapshot_installed(&self, _db: &DB) -> Result<(), ApplyError> {
        Ok(())
    }
}
