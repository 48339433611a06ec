//! The gRPC server side: the `Raft` service of `proto/raft.proto` over a local openraft node.
//!
//! Raft's own RPCs are decoded and handed to openraft; the forwarded calls run on this node and
//! answer `NotLeader` (with the leader it knows) when it is not the leader. The deadline of each
//! call is the caller's `grpc-timeout`, which tonic's server enforces.

use std::collections::BTreeSet;

use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use crate::db;
use crate::network::SnapshotHeader;
use crate::pb;
use crate::types::{AppRequest, BasicNode, NodeId, Raft, Snapshot, TypeConfig};

/// Serves a node's Raft group to the other members and to forwarding followers.
#[derive(Clone)]
pub(crate) struct RaftService {
    raft: Raft,
}

impl RaftService {
    pub(crate) fn new(raft: Raft) -> Self {
        Self { raft }
    }
}

fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

fn reply<T: Serialize>(value: &T) -> Result<Response<pb::Payload>, Status> {
    let data = db::encode(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(pb::Payload { data }))
}

fn not_leader(f: &ForwardToLeader<NodeId, BasicNode>) -> pb::NotLeader {
    pb::NotLeader {
        leader_id: f.leader_id,
        leader_addr: f
            .leader_node
            .as_ref()
            .map(|n| n.addr.clone())
            .unwrap_or_default(),
    }
}

fn stopped(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("raft stopped: {e}"))
}

/// The answer of a membership change, shared by AddLearner and ChangeMembership.
fn membership_result(
    result: Result<
        openraft::raft::ClientWriteResponse<TypeConfig>,
        RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
    >,
) -> Result<Response<pb::MembershipReply>, Status> {
    use pb::membership_reply::Result as R;
    let result = match result {
        Ok(resp) => R::Index(resp.log_id.index),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            R::NotLeader(not_leader(&f))
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            return Err(Status::failed_precondition(e.to_string()))
        }
        Err(RaftError::Fatal(e)) => return Err(stopped(e)),
    };
    Ok(Response::new(pb::MembershipReply {
        result: Some(result),
    }))
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<pb::Payload>,
    ) -> Result<Response<pb::Payload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> =
            db::decode(&request.into_inner().data).map_err(invalid)?;
        reply(&self.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<pb::Payload>) -> Result<Response<pb::Payload>, Status> {
        let rpc: VoteRequest<NodeId> = db::decode(&request.into_inner().data).map_err(invalid)?;
        reply(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot_chunk(
        &self,
        request: Request<pb::Payload>,
    ) -> Result<Response<pb::Payload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> =
            db::decode(&request.into_inner().data).map_err(invalid)?;
        reply(&self.raft.install_snapshot(rpc).await)
    }

    async fn stream_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotFrame>>,
    ) -> Result<Response<pb::Payload>, Status> {
        use pb::snapshot_frame::Frame;
        let mut stream = request.into_inner();
        let header = match stream.message().await? {
            Some(pb::SnapshotFrame {
                frame: Some(Frame::Header(header)),
            }) => header,
            _ => return Err(invalid("a snapshot stream must start with its header")),
        };
        let SnapshotHeader { vote, meta, size } = db::decode(&header).map_err(invalid)?;
        let mut data = self
            .raft
            .begin_receiving_snapshot()
            .await
            .map_err(stopped)?;
        let mut received: u64 = 0;
        while let Some(frame) = stream.message().await? {
            let Some(Frame::Chunk(chunk)) = frame.frame else {
                return Err(invalid("a snapshot frame after the header is not a chunk"));
            };
            received += chunk.len() as u64;
            if received > size {
                return Err(invalid(format!("more than the announced {size} bytes")));
            }
            data.write_all(&chunk)
                .await
                .map_err(|e| Status::internal(format!("writing the snapshot: {e}")))?;
        }
        // A short stream is an interrupted transfer: install nothing.
        if received != size {
            return Err(invalid(format!("{received} of {size} snapshot bytes")));
        }
        data.flush()
            .await
            .map_err(|e| Status::internal(format!("writing the snapshot: {e}")))?;
        let snapshot = Snapshot {
            meta,
            snapshot: data,
        };
        reply(&self.raft.install_full_snapshot(vote, snapshot).await)
    }

    async fn client_write(
        &self,
        request: Request<pb::ClientWriteRequest>,
    ) -> Result<Response<pb::ClientWriteReply>, Status> {
        use pb::client_write_reply::Result as R;
        let command = request.into_inner().command;
        let result = match self.raft.client_write(AppRequest(command)).await {
            Ok(resp) => R::Ok(pb::ClientWriteOk {
                index: resp.log_id.index,
                response: resp.data.0,
            }),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                R::NotLeader(not_leader(&f))
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                return Err(Status::failed_precondition(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => return Err(stopped(e)),
        };
        Ok(Response::new(pb::ClientWriteReply {
            result: Some(result),
        }))
    }

    async fn read_index(
        &self,
        _request: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexReply>, Status> {
        use pb::read_index_reply::Result as R;
        let result = match self.raft.ensure_linearizable().await {
            Ok(read_log_id) => R::ReadIndex(read_log_id.map(|id| id.index).unwrap_or(0)),
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                R::NotLeader(not_leader(&f))
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                return Err(Status::unavailable(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => return Err(stopped(e)),
        };
        Ok(Response::new(pb::ReadIndexReply {
            result: Some(result),
        }))
    }

    async fn add_learner(
        &self,
        request: Request<pb::AddLearnerRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let req = request.into_inner();
        membership_result(
            self.raft
                .add_learner(req.node_id, BasicNode::new(req.addr), req.blocking)
                .await,
        )
    }

    async fn change_membership(
        &self,
        request: Request<pb::ChangeMembershipRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        let req = request.into_inner();
        let voters: BTreeSet<NodeId> = req.voters.into_iter().collect();
        membership_result(self.raft.change_membership(voters, req.retain).await)
    }
}
