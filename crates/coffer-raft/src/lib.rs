//! Raft replication for Coffer's metadata (DESIGN.md §4): openraft 0.9 over RocksDB, with a gRPC
//! transport, generic over the replicated application.
//!
//! The application implements [`StateMachineApp`]: it names its column families and applies
//! committed commands (opaque bytes) by adding writes to a RocksDB `WriteBatch`. coffer-raft owns
//! the one database of a node and commits the app's writes together with the last-applied log id
//! and membership in one synced write, so state and applied index never disagree after a crash.
//! [`RaftNode`] runs a member: it bootstraps or joins a group, writes commands (forwarded to the
//! leader from a follower), serves linearizable reads by read index, and changes membership.
//!
//! # Layout
//! - [`types`]: the openraft type configuration, [`AppRequest`] and [`AppResponse`].
//! - [`app`]: [`StateMachineApp`], the application boundary.
//! - [`db`]: the database and its column families ([`LOGS_CF`], [`RAFT_META_CF`], the app's).
//! - [`log_store`]: [`LogStore`], the log and vote (`flush_wal(true)` before an append is
//!   reported done).
//! - [`state_machine`]: [`StateMachineStore`], applying through the app in one synced batch.
//! - [`snapshot`]: the snapshot file (a dump of the app's column families from one RocksDB
//!   snapshot), its install in one batch.
//! - [`network`] and `service`: the gRPC client and server of `proto/raft.proto`; openraft's
//!   messages travel as MessagePack inside `bytes` fields, snapshots as one client stream.
//! - [`node`]: [`RaftNode`]; [`config`]: [`RaftConfig`]; [`error`]: [`Error`].
//! - [`admin`]: [`RaftAdminClient`], administration from outside the group: each member's own
//!   status (`Status`), membership changes sent to the leader.
//!
//! # Durability
//! A log append is acknowledged to openraft after `flush_wal(true)`; the vote, truncations and
//! purges are synced writes. Applying commits the app's writes, the last-applied log id and the
//! membership in one synced `WriteBatch`, and answers the writers only after it. A write
//! acknowledged by [`RaftNode::client_write`] is thus on a quorum's disks and applied.
#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub mod config;
pub mod db;
pub mod error;
pub mod log_store;
pub mod network;
pub mod node;
mod service;
pub mod snapshot;
pub mod state_machine;
pub mod types;

/// The code generated from `proto/raft.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("coffer.raft.v1");
}

pub use admin::{AdminConfig, RaftAdminClient};
pub use app::{ApplyError, LogCommand, StateMachineApp};
pub use config::RaftConfig;
pub use db::{open_db, LOGS_CF, RAFT_META_CF};
pub use error::Error;
pub use log_store::LogStore;
pub use node::{RaftNode, Written};
pub use state_machine::StateMachineStore;
pub use types::{AppRequest, AppResponse, BasicNode, NodeId, Raft, RaftMetrics, TypeConfig};
