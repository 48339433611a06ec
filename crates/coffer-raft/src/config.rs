//! [`RaftConfig`]: the timing and snapshot settings of a Raft node.

use std::time::Duration;

use crate::error::Error;

/// Settings of a Raft node. Every member of a group should use the same values.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// How often the leader sends heartbeats; also the deadline of one AppendEntries RPC.
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader for a random time in `[min, max)` starts an election.
    pub election_timeout_min: Duration,
    /// See [`RaftConfig::election_timeout_min`].
    pub election_timeout_max: Duration,
    /// Build a snapshot once this many entries were applied since the last one; the log before
    /// the snapshot is then purged (down to [`RaftConfig::max_in_snapshot_log_to_keep`]).
    pub snapshot_logs_since_last: u64,
    /// How many entries to keep in the log before the last snapshot, so that a follower slightly
    /// behind catches up from the log rather than by snapshot.
    pub max_in_snapshot_log_to_keep: u64,
    /// Size of the chunks a snapshot is streamed in.
    pub snapshot_chunk_size: usize,
    /// Deadline for sending one snapshot chunk (the whole stream gets one per chunk).
    pub install_snapshot_timeout: Duration,
    /// Deadline for opening a connection to another node.
    pub connect_timeout: Duration,
    /// Deadline of [`crate::RaftNode::client_write`], [`crate::RaftNode::linearizable_read`]
    /// and membership changes, forwarding and retries included.
    pub request_timeout: Duration,
    /// How many times a forwarded call is tried (leader changes, leader unreachable) before
    /// giving up with [`Error::NoLeader`].
    pub max_forward_attempts: u32,
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(150),
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
            snapshot_logs_since_last: 10_000,
            max_in_snapshot_log_to_keep: 1_000,
            snapshot_chunk_size: 1 << 20,
            install_snapshot_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            max_forward_attempts: 8,
        }
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

impl RaftConfig {
    /// The openraft configuration, validated.
    pub fn to_openraft(&self) -> Result<openraft::Config, Error> {
        if self.max_forward_attempts == 0 {
            return Err(Error::Config(
                "max_forward_attempts must be at least 1".into(),
            ));
        }
        let config = openraft::Config {
            cluster_name: "coffer".into(),
            heartbeat_interval: millis(self.heartbeat_interval),
            election_timeout_min: millis(self.election_timeout_min),
            election_timeout_max: millis(self.election_timeout_max),
            install_snapshot_timeout: millis(self.install_snapshot_timeout),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
            snapshot_max_chunk_size: self.snapshot_chunk_size as u64,
            ..Default::default()
        };
        config.validate().map_err(|e| Error::Config(e.to_string()))
    }
}
