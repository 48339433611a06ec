//! [`GrpcBlobStore`]: the [`BlobStore`] of gateways, against a blob node.
//!
//! One lazily connected channel is shared by every call (HTTP/2 multiplexing), so a gateway
//! starts before its blob node, and the channel reconnects by itself after the node restarts.
//!
//! Deadlines: a read, length, delete or stat is bounded as a whole by
//! [`GrpcBlobConfig::call_timeout`] (sent as `grpc-timeout` too), and retried within it, at
//! most [`GrpcBlobConfig::retries`] times, when the node could not be reached (they change
//! nothing or are idempotent). A write has no overall deadline (its length is the client's
//! business), but each frame must be taken by the node, and the commit acknowledged, within
//! [`GrpcBlobConfig::write_timeout`]; HTTP/2 keepalives notice a node that went away silently.
//! Writes are never retried: the caller sees the failure and starts a new blob.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use super::pb::blob_client::BlobClient;
use super::pb::{self, write_frame::Frame};
use super::{error_of, FRAME_BYTES, MAX_MESSAGE_BYTES};
use crate::{blob_name, BlobError, BlobId, BlobStore, BlobWriter};

/// Frames queued between a writer and its stream: with [`FRAME_BYTES`] each, at most this many
/// MiB of a blob wait in memory before `append` waits for the node (back-pressure).
const WRITE_QUEUE_FRAMES: usize = 4;

/// Settings of a [`GrpcBlobStore`].
#[derive(Debug, Clone)]
pub struct GrpcBlobConfig {
    /// The node's endpoint, e.g. `http://127.0.0.1:9300`.
    pub endpoint: String,
    /// TCP connect timeout (default 1 s).
    pub connect_timeout: Duration,
    /// Deadline of a read, length, delete or stat, retries included (default 10 s).
    pub call_timeout: Duration,
    /// How long a write waits for the node to take one frame, or to acknowledge the commit
    /// (fsync included) (default 30 s).
    pub write_timeout: Duration,
    /// Retries of a read, length, delete or stat whose node could not be reached (default 2).
    pub retries: u32,
    /// First backoff between attempts, doubled each retry (default 50 ms).
    pub backoff: Duration,
}

impl Default for GrpcBlobConfig {
    fn default() -> Self {
        GrpcBlobConfig {
            endpoint: "http://127.0.0.1:9300".into(),
            connect_timeout: Duration::from_secs(1),
            call_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            retries: 2,
            backoff: Duration::from_millis(50),
        }
    }
}

/// A [`BlobStore`] on a remote blob node. Cheap to clone; clones share the channel.
#[derive(Clone)]
pub struct GrpcBlobStore {
    client: BlobClient<Channel>,
    cfg: GrpcBlobConfig,
}

impl std::fmt::Debug for GrpcBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcBlobStore")
            .field("endpoint", &self.cfg.endpoint)
            .finish()
    }
}

impl GrpcBlobStore {
    /// Creates the client without connecting; the first call connects. Fails only on a
    /// malformed endpoint.
    pub fn connect_lazy(cfg: GrpcBlobConfig) -> Result<Self, BlobError> {
        let endpoint = Endpoint::from_shared(cfg.endpoint.clone())
            .map_err(|e| {
                BlobError::Io(std::io::Error::other(format!(
                    "invalid blob node endpoint '{}': {e}",
                    cfg.endpoint
                )))
            })?
            .connect_timeout(cfg.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let client = BlobClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        Ok(GrpcBlobStore { client, cfg })
    }

    /// The node's health and counters.
    pub async fn stat(&self) -> Result<pb::StatReply, BlobError> {
        self.call(|mut c, timeout| async move {
            Ok(c.stat(with_timeout(pb::Empty {}, timeout))
                .await?
                .into_inner())
        })
        .await
    }

    /// Runs one idempotent rpc with the deadline and retry policy of the module doc.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, BlobError>
    where
        F: Fn(BlobClient<Channel>, Duration) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + self.cfg.call_timeout;
        let mut backoff = self.cfg.backoff;
        let mut attempt = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let res = match tokio::time::timeout(remaining, f(self.client.clone(), remaining)).await
            {
                Ok(res) => res.map_err(|s| error_of(&s)),
                Err(_) => Err(BlobError::Unavailable(format!(
                    "blob node {}: no answer within {:?}",
                    self.cfg.endpoint, self.cfg.call_timeout
                ))),
            };
            match res {
                Err(BlobError::Unavailable(m))
                    if attempt < self.cfg.retries && Instant::now() + backoff < deadline =>
                {
                    tracing::debug!(endpoint = %self.cfg.endpoint, error = %m, attempt, "blob node unavailable; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

fn with_timeout<T>(message: T, timeout: Duration) -> Request<T> {
    let mut r = Request::new(message);
    r.set_timeout(timeout);
    r
}

#[async_trait]
impl BlobStore for GrpcBlobStore {
    async fn create(&self, id: &BlobId) -> Result<Box<dyn BlobWriter>, BlobError> {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_FRAMES);
        let header = pb::WriteFrame {
            frame: Some(Frame::Header(pb::WriteHeader {
                blob_id: Bytes::copy_from_slice(id),
            })),
        };
        tx.try_send(header).expect("a new channel has room");
        let mut client = self.client.clone();
        let call = tokio::spawn(async move {
            client
                .write(ReceiverStream::new(rx))
                .await
                .map(|r| r.into_inner().length)
        });
        Ok(Box::new(GrpcBlobWriter {
            id: *id,
            tx: Some(tx),
            call: Some(call),
            sent: 0,
            write_timeout: self.cfg.write_timeout,
        }))
    }

    async fn read(&self, id: &BlobId, offset: u64, len: u64) -> Result<Bytes, BlobError> {
        let name = blob_name(id);
        let want = usize::try_from(len).map_err(|_| BlobError::OutOfRange(name.clone()))?;
        self.call(|mut c, timeout| {
            let req = pb::ReadRequest {
                blob_id: Bytes::copy_from_slice(id),
                offset,
                length: len,
            };
            let name = name.clone();
            async move {
                let mut frames = c.read(with_timeout(req, timeout)).await?.into_inner();
                let first = frames.message().await?.map(|f| f.data).unwrap_or_default();
                if first.len() == want {
                    // The common case of a chunk read: one frame, no copy.
                    if frames.message().await?.is_some() {
                        return Err(Status::internal(format!(
                            "blob {name}: more data than asked"
                        )));
                    }
                    return Ok(first);
                }
                let mut buf = BytesMut::with_capacity(want);
                buf.extend_from_slice(&first);
                while let Some(f) = frames.message().await? {
                    if buf.len() + f.data.len() > want {
                        return Err(Status::internal(format!(
                            "blob {name}: more data than asked"
                        )));
                    }
                    buf.extend_from_slice(&f.data);
                }
                if buf.len() != want {
                    return Err(Status::internal(format!(
                        "blob {name}: the read ended after {} of {want} bytes",
                        buf.len()
                    )));
                }
                Ok(buf.freeze())
            }
        })
        .await
    }

    async fn len(&self, id: &BlobId) -> Result<u64, BlobError> {
        self.call(|mut c, timeout| {
            let req = pb::BlobRef {
                blob_id: Bytes::copy_from_slice(id),
            };
            async move {
                Ok(c.length(with_timeout(req, timeout))
                    .await?
                    .into_inner()
                    .length)
            }
        })
        .await
    }

    async fn delete(&self, id: &BlobId) -> Result<(), BlobError> {
        self.call(|mut c, timeout| {
            let req = pb::BlobRef {
                blob_id: Bytes::copy_from_slice(id),
            };
            async move {
                c.delete(with_timeout(req, timeout)).await?;
                Ok(())
            }
        })
        .await
    }
}

/// A blob streamed to the node. The rpc runs in its own task, fed through a bounded channel.
struct GrpcBlobWriter {
    id: BlobId,
    /// `None` once the commit marker is sent.
    tx: Option<mpsc::Sender<pb::WriteFrame>>,
    /// The write rpc: the committed length, or why it failed. `None` once awaited or aborted.
    call: Option<JoinHandle<Result<u64, Status>>>,
    sent: u64,
    write_timeout: Duration,
}

impl GrpcBlobWriter {
    fn unavailable(&self, what: &str) -> BlobError {
        BlobError::Unavailable(format!(
            "blob node: {what} for blob {} within {:?}",
            blob_name(&self.id),
            self.write_timeout
        ))
    }

    /// Waits (bounded) for the rpc to end and reports how.
    async fn outcome(&mut self) -> Result<u64, BlobError> {
        let Some(call) = self.call.as_mut() else {
            return Err(BlobError::Io(std::io::Error::other(format!(
                "the write of blob {} already ended",
                blob_name(&self.id)
            ))));
        };
        let joined = match tokio::time::timeout(self.write_timeout, call).await {
            Ok(joined) => joined,
            Err(_) => return Err(self.unavailable("no acknowledgement")),
        };
        self.call = None;
        match joined {
            Ok(Ok(length)) => Ok(length),
            Ok(Err(status)) => Err(error_of(&status)),
            Err(e) => Err(BlobError::Io(std::io::Error::other(e))),
        }
    }

    async fn send(&mut self, frame: Frame) -> Result<(), BlobError> {
        let Some(tx) = self.tx.as_ref() else {
            return Err(BlobError::Io(std::io::Error::other(
                "write already committed",
            )));
        };
        let frame = pb::WriteFrame { frame: Some(frame) };
        match tokio::time::timeout(self.write_timeout, tx.send(frame)).await {
            Ok(Ok(())) => Ok(()),
            // The rpc ended before its commit: say why.
            Ok(Err(_)) => Err(match self.outcome().await {
                Err(e) => e,
                Ok(_) => BlobError::Io(std::io::Error::other("the node answered before commit")),
            }),
            Err(_) => Err(self.unavailable("data not taken")),
        }
    }

    fn cancel(&mut self) {
        // Dropping the rpc resets its stream; the node sees the break and keeps nothing.
        if let Some(call) = self.call.take() {
            call.abort();
        }
        self.tx = None;
    }
}

#[async_trait]
impl BlobWriter for GrpcBlobWriter {
    async fn append(&mut self, mut data: Bytes) -> Result<(), BlobError> {
        while !data.is_empty() {
            let frame = data.split_to(data.len().min(FRAME_BYTES));
            let n = frame.len() as u64;
            self.send(Frame::Data(frame)).await?;
            self.sent += n;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, BlobError> {
        let sent = self.sent;
        self.send(Frame::Commit(pb::WriteCommit { length: sent }))
            .await?;
        // End the stream, then wait for the durable acknowledgement.
        self.tx = None;
        let result = self.outcome().await;
        if result.is_err() {
            self.cancel();
        }
        result
    }

    async fn abort(mut self: Box<Self>) {
        self.cancel();
    }
}

impl Drop for GrpcBlobWriter {
    fn drop(&mut self) {
        // A cancelled request drops its writer without abort().
        self.cancel();
    }
}
