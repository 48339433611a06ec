//! The key-management role of Coffer (DESIGN.md §6).
//!
//! # Layout
//! - [`kms`]: the [`Kms`] trait, shaped like the AWS KMS API S3 needs, and its types.
//! - [`error`]: [`KmsError`], named after AWS KMS's exceptions.
//! - [`arn`]: the four ways to name a key (key ID, key ARN, alias, alias ARN).
//! - [`context`]: the canonical encoding of an encryption context, bound as AAD.
//! - [`ciphertext`]: the versioned ciphertext blob of Coffer's own keystores.
//! - [`secrets`]: loading the local keystore's root key (file with a permission check, or env).
//! - [`clock`]: injectable time for deletion windows and rotation periods.
//! - [`validate`]: AWS's parameter bounds, shared by every backend.
//! - [`backend`]: implementations chosen at start by [`backend::open`] from a
//!   [`backend::KmsBackendConfig`].
//! - [`grpc`]: the gRPC service over any `Kms` and the gRPC client implementing `Kms`.
//! - [`json_api`]: the AWS KMS JSON 1.1 API (`X-Amz-Target: TrentService.*`) over any `Kms`.
//! - `testing` (feature `testing`): the conformance suite every backend passes.
//! - `test_servers` (feature `testing`): moto and OpenBao servers for tests and benchmarks.
#![warn(missing_docs)]

pub mod arn;
pub mod backend;
pub mod ciphertext;
pub mod clock;
pub mod context;
pub mod error;
pub mod grpc;
pub mod json_api;
pub mod kms;
pub mod secrets;
pub mod validate;
mod wrap;

pub use error::KmsError;
pub use kms::*;

#[cfg(any(test, feature = "testing"))]
pub mod test_servers;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
