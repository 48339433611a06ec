//! The blob role of Coffer (DESIGN.md §5): sealed chunks on disk. Blob nodes only ever see
//! ciphertext.
//!
//! # Layout
//! - [`BlobStore`] / [`BlobWriter`]: the interface gateways use.
//! - [`local`]: files under a data directory, fsynced before a write is acknowledged.
//! - [`grpc`]: a blob node serving a local store over gRPC (`proto/blob.proto`), and the
//!   client gateways use to reach it.
//! - [`replicated`]: each blob on R of a list of blob nodes, acknowledged after W copies.
//! - [`sums`]: per-block CRC32C of each stored blob, in a sidecar written with it.
//! - [`repair`]: a blob node's background work: scrub, re-replication, orphan collection.
#![warn(missing_docs)]

use async_trait::async_trait;
use bytes::Bytes;

pub mod grpc;
pub mod local;
pub mod repair;
pub mod replicated;
pub mod sums;

/// A blob's id: 16 random bytes, named in hex on disk.
pub type BlobId = [u8; 16];

/// An error of the blob role.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No blob with that id.
    #[error("blob not found: {0}")]
    NotFound(String),
    /// A read past the end of the blob.
    #[error("range out of bounds for blob {0}")]
    OutOfRange(String),
    /// I/O failure.
    #[error("blob I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The blob node could not be reached.
    #[error("blob store unavailable: {0}")]
    Unavailable(String),
}

/// Streams one blob to storage. Nothing is visible to readers until [`BlobWriter::commit`].
#[async_trait]
pub trait BlobWriter: Send {
    /// Appends bytes.
    async fn append(&mut self, data: Bytes) -> Result<(), BlobError>;
    /// Makes the blob durable (fsync of the file and its directory) and visible; returns its length.
    async fn commit(self: Box<Self>) -> Result<u64, BlobError>;
    /// Discards what was written.
    async fn abort(self: Box<Self>);
}

/// Stores blobs.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Starts writing a new blob.
    async fn create(&self, id: &BlobId) -> Result<Box<dyn BlobWriter>, BlobError>;
    /// Reads `len` bytes at `offset`.
    async fn read(&self, id: &BlobId, offset: u64, len: u64) -> Result<Bytes, BlobError>;
    /// The blob's length.
    async fn len(&self, id: &BlobId) -> Result<u64, BlobError>;
    /// Deletes a blob; deleting a missing blob is not an error.
    async fn delete(&self, id: &BlobId) -> Result<(), BlobError>;
}

/// Hex name of a blob id.
pub fn blob_name(id: &BlobId) -> String {
    hex::encode(id)
}
