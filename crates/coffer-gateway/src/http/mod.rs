//! Wire-level helpers: request bodies, aws-chunked, checksums, ranges.
//!
//! # Layout
//! - [`body`]: [`body::BodyReader`], the one way handlers read a request body: it de-chunks,
//!   enforces lengths, and verifies Content-MD5, `x-amz-checksum-*` and the signed payload hash.
//! - `aws_chunked`: the streaming decoder of `aws-chunked` bodies and their chunk signatures.
//! - [`checksum`]: CRC32, CRC32C, CRC64NVME, SHA1, SHA256; composite and combined checksums.
//! - [`range`]: the `Range` header.

mod aws_chunked;
pub mod body;
pub mod checksum;
pub mod range;

use crate::error::S3Error;
use crate::s3_error;

/// An aws-chunked body that ends early, breaks its framing, or disagrees with
/// `x-amz-decoded-content-length`.
fn chunked_body_incomplete() -> S3Error {
    s3_error!(IncompleteBody, "The request body terminated unexpectedly")
}

/// A body longer than the handler allows.
fn too_large(max_len: u64) -> S3Error {
    s3_error!(
        EntityTooLarge,
        "Your proposed upload exceeds the maximum allowed size"
    )
    .with_detail("MaxSizeAllowed", max_len.to_string())
}

/// A trailer that is missing, undeclared or not `name:value`.
fn malformed_trailer() -> S3Error {
    s3_error!(
        MalformedTrailerError,
        "The request contained trailing data that was not well-formed or did not conform to our \
         published schema."
    )
}
