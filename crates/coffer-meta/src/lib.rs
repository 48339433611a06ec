//! The metadata role of Coffer (DESIGN.md §4): buckets, object versions and their envelopes,
//! multipart uploads, as a deterministic state machine over RocksDB.
//!
//! # Layout
//! - [`types`]: persisted, versioned records and the [`Command`]s that change them.
//! - [`client`]: the [`MetaClient`] trait gateways use.
//! - [`error`]: [`MetaError`].
#![warn(missing_docs)]

pub mod client;
pub mod error;
pub mod types;

pub use client::MetaClient;
pub use error::MetaError;
pub use types::*;
