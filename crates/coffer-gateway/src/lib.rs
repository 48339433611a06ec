//! The S3 HTTP API of Coffer (DESIGN.md §7).
//!
//! # Layout
//! - [`server`]: the S3 and admin listeners; routing → authentication → dispatch.
//! - [`router`]: method + host + path + query → a typed [`router::Endpoint`].
//! - [`sigv4`]: request authentication (header, presigned, streaming chunk signatures).
//! - [`http`]: bodies (aws-chunked, trailers), checksums, ranges.
//! - [`s3`]: the handlers, one module per operation family.
//! - [`sse`]: server-side encryption: envelopes of new versions, unwrapping data keys.
//! - [`jobs`], [`jobs_api`], [`key_usage`]: the background job runner (bulk re-encryption, key
//!   rotation), its admin HTTP API, and the report of a KMS key's material versions in use.
//! - [`error`]: S3 error codes and the XML error body; every domain error → S3 conversion.
//! - [`xml`], [`metrics`], [`state`]: response XML, Prometheus metrics, shared state.
#![warn(missing_docs)]

pub mod bucket_keys;
pub mod directory;
pub mod error;
pub mod http;
pub mod job_plan;
pub mod jobs;
pub mod jobs_api;
pub mod key_usage;
pub mod kms_api;
pub mod metered_kms;
pub mod metrics;
pub mod router;
pub mod s3;
pub mod server;
pub mod sigv4;
pub mod sse;
pub mod state;
#[cfg(test)]
mod test_support;
pub mod xml;

pub use server::serve;
pub use state::{AppState, GatewayConfig, ReqCtx, StaticCredentials};
