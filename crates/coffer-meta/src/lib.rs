//! The metadata role of Coffer (DESIGN.md §4): buckets, object versions and their envelopes,
//! multipart uploads, as a deterministic state machine over RocksDB.
//!
//! # Layout
//! - [`types`]: persisted, versioned records and the [`Command`]s that change them.
//! - [`client`]: the [`MetaClient`] trait gateways use.
//! - [`error`]: [`MetaError`].
//! - [`keys`]: the whole keyspace of the state column family.
//! - [`codec`]: how values are encoded (a format byte, then named MessagePack).
//! - [`state_machine`]: [`StateMachine`], applying commands durably in log order; the command
//!   semantics live in `ops/` (bucket, object, multipart).
//! - [`read`] and [`list`]: consistent reads and S3 listings over a snapshot ([`Reader`]).
//! - [`job`]: background job records (bulk re-encryption), claimed under a lease and
//!   advanced by compare-and-set checkpoints.
//! - [`local`]: [`LocalMeta`], the in-process `MetaClient` (no Raft).
//! - [`raft`]: the state machine replicated by coffer-raft ([`raft::MetaApp`]), a member
//!   ([`raft::MetaNode`]) serving `proto/meta.proto`, and the `MetaClient`s over it
//!   ([`raft::RaftMeta`] in process, [`raft::GrpcMetaClient`] for gateways).
#![warn(missing_docs)]

pub mod client;
pub mod codec;
pub mod error;
pub mod job;
pub mod keys;
pub mod list;
pub mod local;
mod ops;
pub mod raft;
pub mod read;
pub mod state_machine;
pub mod types;

pub use client::{MetaClient, MAX_BLOB_REFERENCE_IDS};
pub use error::MetaError;
pub use job::*;
pub use local::LocalMeta;
pub use raft::{GrpcMetaClient, GrpcMetaConfig, MetaNode, RaftMeta};
pub use read::Reader;
pub use state_machine::StateMachine;
pub use types::*;
