//! The metadata state machine replicated by Raft (DESIGN.md §4), and its gRPC API.
//!
//! # How commands and reads travel
//! - A write is a [`Proposal`] (one or more [`crate::Command`]s) encoded into one Raft entry.
//!   [`MetaApp`] applies it on every member with the same code as [`crate::StateMachine`]
//!   (into the batch coffer-raft commits with the applied index, in one synced write), and the
//!   leader's answer (one result per command) is returned once the entry is committed on a
//!   quorum and applied. A proposal carries a request id, the same in every attempt of it: the
//!   state records the ids it applied with their answers ([`dedup`]), so a client may retry a
//!   write whose outcome it does not know without applying it twice.
//! - A read asks the leader to confirm its leadership with a quorum (read index), waits until
//!   the state has applied the commit index, then reads the state ([`ReadRequest`]).
//!
//! # Who uses what
//! - [`MetaNode`] runs a member: Raft (`proto/raft.proto`) and the metadata API
//!   (`proto/meta.proto`, served by `MetaService`) on one address.
//! - [`RaftMeta`] is the `MetaClient` of a process that runs a member itself (`coffer dev`): it
//!   proposes through the member, which forwards to the leader.
//! - [`GrpcMetaClient`] is the `MetaClient` of gateways: it finds the leader (a member that is
//!   not the leader names it), follows leader changes, and bounds every call.
//!
//! Everything that means "the group cannot answer now" (no leader, no quorum, deadline passed)
//! is [`crate::MetaError::Unavailable`], which gateways answer with 503.

mod app;
mod client;
pub mod dedup;
mod node;
mod service;
pub mod wire;

/// The code generated from `proto/meta.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("coffer.meta.v1");
}

pub use app::MetaApp;
pub use client::{GrpcMetaClient, GrpcMetaConfig};
pub use node::{MetaNode, RaftMeta};
pub use wire::{Proposal, ReadAnswer, ReadRequest, Remote, RequestId};
