//! The S3 HTTP API of Coffer (DESIGN.md §7).
//!
//! # Layout
//! - [`error`]: S3 error codes and the XML error body; every domain error → S3 conversion.
//! - [`sigv4`]: request authentication (header, presigned, streaming chunk signatures).
//! - [`http`]: bodies (aws-chunked, trailers), checksums, ranges.
#![warn(missing_docs)]

pub mod error;
pub mod http;
pub mod sigv4;
