//! The gRPC server side: the `Raft` service of `proto/raft.proto` over a local openraft node.
//!
//! Raft's own RPCs are decoded and handed to openraft; the forwarded calls run on this node and
//! answer `NotLeader` (with the leader it knows) when it is not the leader. The deadline of each
//! call is the caller's `grpc-timeout`, which tonic's server enforces.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{ChangeMembers, ServerState};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use crate::db;
use crate::network::SnapshotHeader;
use crate::pb;
use crate::types::{AppRequest, BasicNode, NodeId, Raft, RaftMetrics, Snapshot, TypeConfig};

/// How long a Status call waits for the Raft core to report its commit index.
const COMMITTED_WAIT: Duration = Duration::from_secs(1);

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

/// The name of a server state in `StatusReply.state`.
pub(crate) fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// A node's view of the group from its metrics (and the commit index, if known).
pub(crate) fn status_reply(m: &RaftMetrics, committed: Option<u64>) -> pb::StatusReply {
    let stored = &m.membership_config;
    let membership = stored.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let leader_addr = m
        .current_leader
        .and_then(|l| membership.get_node(&l))
        .map(|n| n.addr.clone())
        .unwrap_or_default();
    pb::StatusReply {
        id: m.id,
        state: state_name(m.state).to_owned(),
        current_term: m.current_term,
        leader_id: m.current_leader,
        leader_addr,
        last_log_index: m.last_log_index,
        last_applied_index: m.last_applied.map(|l| l.index),
        committed_index: committed,
        snapshot_index: m.snapshot.map(|l| l.index),
        purged_index: m.purged.map(|l| l.index),
        membership: Some(pb::MembershipStatus {
            log_index: stored.log_id().as_ref().map(|l| l.index),
            log_term: stored.log_id().as_ref().map(|l| l.leader_id.term),
            nodes: membership
                .nodes()
                .map(|(id, node)| pb::MemberNode {
                    id: *id,
                    addr: node.addr.clone(),
                    voter: voters.contains(id),
                })
                .collect(),
            configs: membership
                .get_joint_config()
                .iter()
                .map(|c| pb::VoterSet {
                    ids: c.iter().copied().collect(),
                })
                .collect(),
        }),
        replication: m
            .replication
            .iter()
            .flatten()
            .map(|(id, matched)| pb::Replication {
                id: *id,
                matched_index: matched.map(|l| l.index),
            })
            .collect(),
        millis_since_quorum_ack: m.millis_since_quorum_ack,
    }
}

/// The `NotLeader` answer of a node that is not the leader, from its metrics.
fn not_leader_of(m: &RaftMetrics) -> pb::NotLeader {
    pb::NotLeader {
        leader_id: m.current_leader,
        leader_addr: m
            .current_leader
            .and_then(|l| m.membership_config.membership().get_node(&l))
            .map(|n| n.addr.clone())
            .unwrap_or_default(),
    }
}

impl RaftService {
    /// Removes `id` from the voters (not kept as a learner) or from the learners.
    async fn remove_member(&self, id: NodeId) -> Result<Response<pb::MembershipReply>, Status> {
        let m = self.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return Ok(Response::new(pb::MembershipReply {
                result: Some(pb::membership_reply::Result::NotLeader(not_leader_of(&m))),
            }));
        }
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let change = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(Status::failed_precondition(format!(
                    "node {id} is the last voter: removing it would leave the group without voters"
                )));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if membership.get_node(&id).is_some() {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Err(Status::failed_precondition(format!(
                "node {id} is not a member of the group"
            )));
        };
        // A leader that lost its leadership meanwhile answers ForwardToLeader.
        membership_result(self.raft.change_membership(change, false).await)
    }
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

    async fn alter_membership(
        &self,
        request: Request<pb::AlterMembershipRequest>,
    ) -> Result<Response<pb::MembershipReply>, Status> {
        use pb::alter_membership_request::Change;
        match request.into_inner().change {
            None => Err(invalid("AlterMembership without a change")),
            Some(Change::Promote(id)) => membership_result(
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
                    .await,
            ),
            Some(Change::Remove(id)) => self.remove_member(id).await,
        }
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        let metrics = self.raft.metrics().borrow().clone();
        let committed = tokio::time::timeout(
            COMMITTED_WAIT,
            self.raft
                .with_raft_state(|st| st.committed.map(|l| l.index)),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .flatten();
        Ok(Response::new(status_reply(&metrics, committed)))
    }
}
