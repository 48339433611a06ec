//! Blobs over gRPC (`proto/blob.proto`): [`BlobService`] serves a [`LocalBlobStore`] on a blob
//! node (`coffer blob`), and [`GrpcBlobStore`] is the [`crate::BlobStore`] of gateways against
//! such a node, so a gateway uses a remote node exactly like the local store.
//!
//! Data moves in frames of at most [`FRAME_BYTES`], both ways; both sides set their message
//! size limits to [`MAX_MESSAGE_BYTES`], a little more than a frame.
//!
//! Errors cross the wire as gRPC status codes: NOT_FOUND and OUT_OF_RANGE map back to
//! [`BlobError::NotFound`] / [`BlobError::OutOfRange`]; a node that cannot be reached, a call
//! past its deadline or a broken connection is [`BlobError::Unavailable`] (a gateway answers
//! 503); anything else is [`BlobError::Io`].

mod client;
mod service;

use std::future::Future;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Status};

pub use client::{GrpcBlobConfig, GrpcBlobStore};
pub use service::BlobService;

use crate::local::LocalBlobStore;
use crate::{BlobError, BlobId};

/// The code generated from `proto/blob.proto`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("coffer.blob.v1");
}

/// The largest data frame sent either way.
pub const FRAME_BYTES: usize = 1 << 20;

/// The message size limit of both sides: a frame plus room for its envelope.
pub const MAX_MESSAGE_BYTES: usize = FRAME_BYTES + (64 << 10);

/// Serves `store` on `listener` until `shutdown` completes; streams still open then are
/// drained first (the caller bounds how long it waits).
pub async fn serve(
    store: LocalBlobStore,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(BlobService::new(store).into_server())
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
}

/// A blob id from the wire, or INVALID_ARGUMENT.
fn blob_id(raw: &[u8]) -> Result<BlobId, Status> {
    raw.try_into().map_err(|_| {
        Status::invalid_argument(format!("a blob id is 16 bytes, got {} bytes", raw.len()))
    })
}

/// The status a node answers for a store error.
fn status_of(e: BlobError) -> Status {
    match e {
        BlobError::NotFound(m) => Status::not_found(m),
        BlobError::OutOfRange(m) => Status::out_of_range(m),
        BlobError::Unavailable(m) => Status::unavailable(m),
        BlobError::Io(e) => Status::internal(format!("blob I/O error: {e}")),
    }
}

/// The store error a client reports for a status.
fn error_of(s: &Status) -> BlobError {
    let msg = s.message().to_owned();
    match s.code() {
        Code::NotFound => BlobError::NotFound(msg),
        Code::OutOfRange => BlobError::OutOfRange(msg),
        // What a refused connection, a dead node, a reset stream or a passed deadline look
        // like (a node never answers UNKNOWN itself).
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            BlobError::Unavailable(format!("blob node: {msg}"))
        }
        code => BlobError::Io(std::io::Error::other(format!("blob node: {code:?}: {msg}"))),
    }
}
