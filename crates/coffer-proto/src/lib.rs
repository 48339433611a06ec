//! Generated gRPC code of `proto/*.proto` (tonic + prost).
//!
//! # Layout
//! - [`kms`]: `proto/kms.proto`, package `coffer.kms.v1` — the KMS role's service
//!   (`kms_server::KmsServer`, `kms_client::KmsClient`) and messages.
//!
//! Conversions between these messages and the domain types live with the domain crate that owns
//! the types (e.g. `coffer_kms::grpc::convert`), since this crate sits below them.

/// `proto/kms.proto`.
#[allow(missing_docs, clippy::all)]
pub mod kms {
    tonic::include_proto!("coffer.kms.v1");
}
