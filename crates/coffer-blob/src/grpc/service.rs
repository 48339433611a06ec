//! The node side: a [`LocalBlobStore`] behind `proto/blob.proto`.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::pb::blob_server::{Blob as BlobRpc, BlobServer};
use super::pb::{self, write_frame::Frame};
use super::{blob_id, status_of, FRAME_BYTES, MAX_MESSAGE_BYTES};
use crate::local::LocalBlobStore;
use crate::{blob_name, BlobId, BlobStore, BlobWriter};

/// Serves a [`LocalBlobStore`] over gRPC.
#[derive(Clone)]
pub struct BlobService {
    store: LocalBlobStore,
    stats: Arc<Stats>,
}

struct Stats {
    started: Instant,
    writes_in_progress: AtomicU64,
    writes_committed: AtomicU64,
    deletes: AtomicU64,
}

/// Counts one open write stream while it lives.
struct InProgress(Arc<Stats>);

impl InProgress {
    fn new(stats: &Arc<Stats>) -> Self {
        stats.writes_in_progress.fetch_add(1, Ordering::Relaxed);
        InProgress(stats.clone())
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.writes_in_progress.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BlobService {
    /// Serves `store`.
    pub fn new(store: LocalBlobStore) -> Self {
        BlobService {
            store,
            stats: Arc::new(Stats {
                started: Instant::now(),
                writes_in_progress: AtomicU64::new(0),
                writes_committed: AtomicU64::new(0),
                deletes: AtomicU64::new(0),
            }),
        }
    }

    /// The tonic service with its message size limits, to add to a
    /// `tonic::transport::Server`.
    pub fn into_server(self) -> BlobServer<BlobService> {
        BlobServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Receives the frames after the header into `writer` and commits on the commit marker.
    /// The caller aborts the writer on any error.
    async fn receive(
        &self,
        id: &BlobId,
        frames: &mut Streaming<pb::WriteFrame>,
        writer: &mut Option<Box<dyn BlobWriter>>,
    ) -> Result<u64, Status> {
        let mut received = 0u64;
        loop {
            let frame = frames.message().await?.ok_or_else(|| {
                Status::aborted(format!(
                    "the write of blob {} ended without a commit marker; nothing was kept",
                    blob_name(id)
                ))
            })?;
            let w = writer.as_mut().expect("writer present until commit");
            match frame.frame {
                Some(Frame::Data(data)) => {
                    if data.len() > FRAME_BYTES {
                        return Err(Status::invalid_argument(format!(
                            "a data frame holds at most {FRAME_BYTES} bytes, got {}",
                            data.len()
                        )));
                    }
                    received += data.len() as u64;
                    w.append(data).await.map_err(status_of)?;
                }
                Some(Frame::Commit(commit)) => {
                    if commit.length != received {
                        return Err(Status::invalid_argument(format!(
                            "the commit of blob {} says {} bytes, {received} were received",
                            blob_name(id),
                            commit.length
                        )));
                    }
                    let w = writer.take().expect("writer present until commit");
                    return w.commit().await.map_err(status_of);
                }
                Some(Frame::Header(_)) | None => {
                    return Err(Status::invalid_argument(
                        "after the header, a write carries data frames and one commit frame",
                    ))
                }
            }
        }
    }
}

type FrameStream = Pin<Box<dyn Stream<Item = Result<pb::ReadFrame, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl BlobRpc for BlobService {
    async fn write(
        &self,
        request: Request<Streaming<pb::WriteFrame>>,
    ) -> Result<Response<pb::WriteReply>, Status> {
        let mut frames = request.into_inner();
        let id = match frames.message().await? {
            Some(pb::WriteFrame {
                frame: Some(Frame::Header(h)),
            }) => blob_id(&h.blob_id)?,
            Some(_) => {
                return Err(Status::invalid_argument(
                    "the first frame of a write must be its header",
                ))
            }
            None => return Err(Status::invalid_argument("empty write stream")),
        };
        let _open = InProgress::new(&self.stats);
        // If this future is dropped (the client reset the stream), the writer's Drop removes
        // its temp file.
        let mut writer = Some(self.store.create(&id).await.map_err(status_of)?);
        match self.receive(&id, &mut frames, &mut writer).await {
            Ok(length) => {
                self.stats.writes_committed.fetch_add(1, Ordering::Relaxed);
                Ok(Response::new(pb::WriteReply { length }))
            }
            Err(status) => {
                if let Some(w) = writer {
                    w.abort().await;
                }
                tracing::debug!(blob = %blob_name(&id), error = %status.message(), "write aborted");
                Err(status)
            }
        }
    }

    type ReadStream = FrameStream;

    async fn read(
        &self,
        request: Request<pb::ReadRequest>,
    ) -> Result<Response<FrameStream>, Status> {
        let r = request.into_inner();
        let id = blob_id(&r.blob_id)?;
        let size = self.store.len(&id).await.map_err(status_of)?;
        match r.offset.checked_add(r.length) {
            Some(end) if end <= size => {}
            _ => {
                return Err(Status::out_of_range(format!(
                    "range out of bounds for blob {}: {} bytes at {} of {size}",
                    blob_name(&id),
                    r.length,
                    r.offset
                )))
            }
        }
        // One frame read from disk per item the client pulls: HTTP/2 flow control bounds what
        // is buffered.
        let store = self.store.clone();
        let end = r.offset + r.length;
        let frames = futures::stream::try_unfold(r.offset, move |at| {
            let store = store.clone();
            async move {
                if at >= end {
                    return Ok(None);
                }
                let n = (end - at).min(FRAME_BYTES as u64);
                let data = store.read(&id, at, n).await.map_err(status_of)?;
                Ok(Some((pb::ReadFrame { data }, at + n)))
            }
        });
        Ok(Response::new(Box::pin(frames)))
    }

    async fn length(
        &self,
        request: Request<pb::BlobRef>,
    ) -> Result<Response<pb::LengthReply>, Status> {
        let id = blob_id(&request.into_inner().blob_id)?;
        let length = self.store.len(&id).await.map_err(status_of)?;
        Ok(Response::new(pb::LengthReply { length }))
    }

    async fn delete(&self, request: Request<pb::BlobRef>) -> Result<Response<pb::Empty>, Status> {
        let id = blob_id(&request.into_inner().blob_id)?;
        self.store.delete(&id).await.map_err(status_of)?;
        self.stats.deletes.fetch_add(1, Ordering::Relaxed);
        Ok(Response::new(pb::Empty {}))
    }

    async fn stat(&self, _request: Request<pb::Empty>) -> Result<Response<pb::StatReply>, Status> {
        let s = &self.stats;
        Ok(Response::new(pb::StatReply {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: s.started.elapsed().as_secs(),
            writes_in_progress: s.writes_in_progress.load(Ordering::Relaxed),
            writes_committed: s.writes_committed.load(Ordering::Relaxed),
            deletes: s.deletes.load(Ordering::Relaxed),
        }))
    }
}
