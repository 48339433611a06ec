//! The key-management role of Coffer (DESIGN.md §6).
//!
//! # Layout
//! - [`kms`]: the [`Kms`] trait, shaped like the AWS KMS API S3 needs, and its types.
//! - [`error`]: [`KmsError`], named after AWS KMS's exceptions.
//! - `backend/`: implementations chosen at start by [`backend::open`].
#![warn(missing_docs)]

pub mod error;
pub mod kms;

pub use error::KmsError;
pub use kms::*;
