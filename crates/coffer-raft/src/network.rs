//! The gRPC client side: openraft's `RaftNetwork` to the other members, and the calls a follower
//! forwards to the leader.
//!
//! Every call carries a deadline, both as the gRPC `grpc-timeout` and as a local timeout.
//! Snapshots are sent as one client stream of the snapshot file (`StreamSnapshot`), not as
//! openraft's request-per-chunk; the chunked RPC is served too (`InstallSnapshotChunk`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use futures::StreamExt;
use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, ReplicationClosed,
    StreamingError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{RPCTypes, StorageIOError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tonic::transport::{Channel, Endpoint};

use crate::db;
use crate::error::Error;
use crate::pb;
use crate::pb::raft_client::RaftClient;
use crate::types::{BasicNode, NodeId, Snapshot, SnapshotMeta, TypeConfig, Vote};

/// The largest gRPC message accepted or sent (an AppendEntries batch, a snapshot chunk).
pub(crate) const MAX_MESSAGE_SIZE: usize = 64 << 20;
const DEFAULT_SNAPSHOT_CHUNK: usize = 1 << 20;

/// A gRPC client of the Raft service of one node.
pub(crate) type Client = RaftClient<Channel>;

/// A client of the node at `addr` ("host:port"); connects on first use and reconnects after a
/// failure.
pub(crate) fn client(addr: &str, connect_timeout: Duration) -> Result<Client, Error> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Error::Config(format!("bad node address {addr:?}: {e}")))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true);
    Ok(RaftClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE))
}

/// Whether a failed call certainly never reached the server: the connection could not be made.
pub fn not_delivered(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(status);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        source = e.source();
    }
    // The generated client's readiness check fails before anything is sent.
    status.message().starts_with("Service was not ready")
}

/// The first frame of a snapshot stream.
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotHeader {
    pub(crate) vote: Vote,
    pub(crate) meta: SnapshotMeta,
    /// Length of the snapshot file in bytes.
    pub(crate) size: u64,
}

/// Creates the connections openraft uses to replicate to the other members.
#[derive(Debug, Clone)]
pub struct NetworkFactory {
    id: NodeId,
    connect_timeout: Duration,
}

impl NetworkFactory {
    /// Connections from node `id`, giving up on a connection attempt after `connect_timeout`.
    pub fn new(id: NodeId, connect_timeout: Duration) -> Self {
        Self {
            id,
            connect_timeout,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection {
            id: self.id,
            target,
            addr: node.addr.clone(),
            connect_timeout: self.connect_timeout,
            client: None,
        }
    }
}

/// openraft's connection to one member.
#[derive(Debug)]
pub struct Connection {
    id: NodeId,
    target: NodeId,
    addr: String,
    connect_timeout: Duration,
    client: Option<Client>,
}

#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshotChunk,
}

impl Rpc {
    fn kind(self) -> RPCTypes {
        match self {
            Rpc::AppendEntries => RPCTypes::AppendEntries,
            Rpc::Vote => RPCTypes::Vote,
            Rpc::InstallSnapshotChunk => RPCTypes::InstallSnapshot,
        }
    }
}

fn status_to_rpc_error<E: std::error::Error>(
    status: tonic::Status,
) -> RPCError<NodeId, BasicNode, E> {
    if status.code() == tonic::Code::Unavailable || not_delivered(&status) {
        RPCError::Unreachable(Unreachable::new(&status))
    } else {
        RPCError::Network(NetworkError::new(&status))
    }
}

impl Connection {
    fn client(&mut self) -> Result<Client, Unreachable> {
        if self.client.is_none() {
            let client = client(&self.addr, self.connect_timeout).map_err(|e| {
                // A bad address cannot get better: report it as unreachable so openraft backs off.
                Unreachable::new(&e)
            })?;
            self.client = Some(client);
        }
        Ok(self.client.clone().expect("set above"))
    }

    fn timeout(&self, rpc: Rpc, ttl: Duration) -> Timeout<NodeId> {
        Timeout {
            action: rpc.kind(),
            id: self.id,
            target: self.target,
            timeout: ttl,
        }
    }

    async fn unary<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let data = db::encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut client = self.client()?;
        let mut request = tonic::Request::new(pb::Payload { data });
        request.set_timeout(ttl);
        let call = async move {
            match rpc {
                Rpc::AppendEntries => client.append_entries(request).await,
                Rpc::Vote => client.vote(request).await,
                Rpc::InstallSnapshotChunk => client.install_snapshot_chunk(request).await,
            }
        };
        let reply = match tokio::time::timeout(ttl, call).await {
            Err(_) => return Err(RPCError::Timeout(self.timeout(rpc, ttl))),
            Ok(Err(status)) => return Err(status_to_rpc_error(status)),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            db::decode(&reply.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.unary(Rpc::AppendEntries, &rpc, option.hard_ttl())
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.unary(Rpc::InstallSnapshotChunk, &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.unary(Rpc::Vote, &rpc, option.hard_ttl()).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let read_err = |e: std::io::Error| -> StreamingError<TypeConfig, Fatal<NodeId>> {
            StreamingError::StorageError(StorageIOError::read_snapshot(None, &e).into())
        };
        let Snapshot { meta, snapshot } = snapshot;
        let mut file = *snapshot;
        let size = file.metadata().await.map_err(read_err)?.len();
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(read_err)?;
        let chunk_size = option
            .snapshot_chunk_size()
            .unwrap_or(DEFAULT_SNAPSHOT_CHUNK)
            .max(4096);
        // openraft's snapshot timeout bounds one chunk; the stream gets one per chunk.
        let chunks = size.div_ceil(chunk_size as u64);
        let ttl = option.hard_ttl() * u32::try_from(chunks + 2).unwrap_or(u32::MAX);
        tracing::info!(target = self.target, snapshot = ?meta.last_log_id, size, "sending a snapshot");

        let header = db::encode(&SnapshotHeader { vote, meta, size })
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let first = pb::SnapshotFrame {
            frame: Some(pb::snapshot_frame::Frame::Header(header)),
        };
        let body = futures::stream::unfold(Some(file), move |file| async move {
            let mut file = file?;
            let mut buf = vec![0u8; chunk_size];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    let frame = pb::SnapshotFrame {
                        frame: Some(pb::snapshot_frame::Frame::Chunk(buf)),
                    };
                    Some((frame, Some(file)))
                }
                Err(e) => {
                    // Ending the stream early: the receiver sees fewer bytes than announced and
                    // installs nothing.
                    tracing::warn!(error = %e, "reading the snapshot to send");
                    None
                }
            }
        });
        let stream = futures::stream::iter([first]).chain(body);
        let mut client = self.client()?;
        let mut request = tonic::Request::new(stream);
        request.set_timeout(ttl);
        let call = client.stream_snapshot(request);
        let reply = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            reply = tokio::time::timeout(ttl, call) => reply,
        };
        let reply = match reply {
            Err(_) => {
                return Err(StreamingError::Timeout(
                    self.timeout(Rpc::InstallSnapshotChunk, ttl),
                ))
            }
            Ok(Err(status)) => {
                return Err(match status_to_rpc_error::<Fatal<NodeId>>(status) {
                    RPCError::Unreachable(e) => StreamingError::Unreachable(e),
                    RPCError::Network(e) => StreamingError::Network(e),
                    other => StreamingError::Network(NetworkError::new(&other)),
                })
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
        let result: Result<SnapshotResponse<NodeId>, Fatal<NodeId>> =
            db::decode(&reply.data).map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| StreamingError::RemoteError(RemoteError::new(self.target, e)))
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}

/// What a forwarded call got back: the answer, or the node's hint that it is not the leader.
pub(crate) enum Forwarded<T> {
    Done(T),
    NotLeader(pb::NotLeader),
}

/// Clients of the other nodes' Raft services for forwarded calls, one per address.
#[derive(Debug)]
pub(crate) struct Forwarder {
    connect_timeout: Duration,
    clients: Mutex<HashMap<String, Client>>,
}

impl Forwarder {
    pub(crate) fn new(connect_timeout: Duration) -> Self {
        Self {
            connect_timeout,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client of `addr`, made on first use and kept.
    pub(crate) fn client(&self, addr: &str) -> Result<Client, Error> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let c = client(addr, self.connect_timeout)?;
        clients.insert(addr.to_owned(), c.clone());
        Ok(c)
    }

    /// Runs `call` against `addr` with deadline `ttl`. A failure is `Err((delivered, error))`,
    /// where `delivered == false` means the request certainly never reached the node.
    async fn call<T, F, Fut>(&self, addr: &str, ttl: Duration, call: F) -> Result<T, (bool, Error)>
    where
        F: FnOnce(Client, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client(addr).map_err(|e| (false, e))?;
        match tokio::time::timeout(ttl, call(client, ttl)).await {
            Err(_) => Err((true, Error::Timeout(ttl))),
            Ok(Ok(reply)) => Ok(reply.into_inner()),
            Ok(Err(status)) => {
                let delivered = !not_delivered(&status);
                let error = match status.code() {
                    tonic::Code::FailedPrecondition => Error::Membership(status.message().into()),
                    tonic::Code::DeadlineExceeded => Error::Timeout(ttl),
                    code => Error::Rpc {
                        addr: addr.to_owned(),
                        message: format!("{code:?}: {}", status.message()),
                    },
                };
                Err((delivered, error))
            }
        }
    }

    pub(crate) async fn client_write(
        &self,
        addr: &str,
        command: Vec<u8>,
        ttl: Duration,
    ) -> Result<Forwarded<(u64, Vec<u8>)>, (bool, Error)> {
        let reply = self
            .call(addr, ttl, |mut c, ttl| async move {
                let mut req = tonic::Request::new(pb::ClientWriteRequest { command });
                req.set_timeout(ttl);
                c.client_write(req).await
            })
            .await?;
        match reply.result {
            Some(pb::client_write_reply::Result::Ok(ok)) => {
                Ok(Forwarded::Done((ok.index, ok.response)))
            }
            Some(pb::client_write_reply::Result::NotLeader(nl)) => Ok(Forwarded::NotLeader(nl)),
            None => Err((true, empty_reply(addr))),
        }
    }

    pub(crate) async fn read_index(
        &self,
        addr: &str,
        ttl: Duration,
    ) -> Result<Forwarded<u64>, (bool, Error)> {
        let reply = self
            .call(addr, ttl, |mut c, ttl| async move {
                let mut req = tonic::Request::new(pb::ReadIndexRequest {});
                req.set_timeout(ttl);
                c.read_index(req).await
            })
            .await?;
        match reply.result {
            Some(pb::read_index_reply::Result::ReadIndex(index)) => Ok(Forwarded::Done(index)),
            Some(pb::read_index_reply::Result::NotLeader(nl)) => Ok(Forwarded::NotLeader(nl)),
            None => Err((true, empty_reply(addr))),
        }
    }

    pub(crate) async fn add_learner(
        &self,
        addr: &str,
        req: pb::AddLearnerRequest,
        ttl: Duration,
    ) -> Result<Forwarded<u64>, (bool, Error)> {
        let reply = self
            .call(addr, ttl, |mut c, ttl| async move {
                let mut req = tonic::Request::new(req);
                req.set_timeout(ttl);
                c.add_learner(req).await
            })
            .await?;
        membership_reply(addr, reply)
    }

    pub(crate) async fn change_membership(
        &self,
        addr: &str,
        req: pb::ChangeMembershipRequest,
        ttl: Duration,
    ) -> Result<Forwarded<u64>, (bool, Error)> {
        let reply = self
            .call(addr, ttl, |mut c, ttl| async move {
                let mut req = tonic::Request::new(req);
                req.set_timeout(ttl);
                c.change_membership(req).await
            })
            .await?;
        membership_reply(addr, reply)
    }
}

fn empty_reply(addr: &str) -> Error {
    Error::Rpc {
        addr: addr.to_owned(),
        message: "empty reply".to_owned(),
    }
}

fn membership_reply(
    addr: &str,
    reply: pb::MembershipReply,
) -> Result<Forwarded<u64>, (bool, Error)> {
    match reply.result {
        Some(pb::membership_reply::Result::Index(index)) => Ok(Forwarded::Done(index)),
        Some(pb::membership_reply::Result::NotLeader(nl)) => Ok(Forwarded::NotLeader(nl)),
        None => Err((true, empty_reply(addr))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_not_delivered() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mut c = client(&addr.to_string(), Duration::from_secs(1)).unwrap();
        let status = c.read_index(pb::ReadIndexRequest {}).await.unwrap_err();
        assert!(not_delivered(&status), "{status:?}");
    }

    #[tokio::test]
    async fn a_connection_dropped_after_accept_may_have_been_delivered() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            // Accept, read the request, then hang up without answering.
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
            drop(socket);
        });
        let mut c = client(&addr.to_string(), Duration::from_secs(1)).unwrap();
        let status = c.read_index(pb::ReadIndexRequest {}).await.unwrap_err();
        assert!(!not_delivered(&status), "{status:?}");
        server.await.unwrap();
    }
}
