//! [`MetaService`]: the server side of `proto/meta.proto`, over the local Raft node.
//!
//! Only the leader proposes and reads: another node answers `NotLeader` with the leader it
//! knows of, so that a [`super::GrpcMetaClient`] learns where to go. A proposal is answered once
//! it is committed on a quorum and applied here; a read first confirms the leadership with a
//! quorum and waits for the state to reach the commit index (read index), then reads the local
//! state. Raft waits are bounded by the node's request timeout (and the caller's
//! `grpc-timeout`, which tonic's server enforces).

use std::sync::Arc;
use std::time::Duration;

use coffer_raft::{AppRequest, BasicNode, NodeId, Raft};
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use rocksdb::DB;
use tonic::{Request, Response, Status};

use super::pb;
use super::wire::{self, Proposal, ReadAnswer, ReadRequest};
use crate::error::MetaError;

/// Serves the metadata API of one node.
#[derive(Clone)]
pub(crate) struct MetaService {
    raft: Raft,
    db: Arc<DB>,
    timeout: Duration,
}

impl MetaService {
    pub(crate) fn new(raft: Raft, db: Arc<DB>, timeout: Duration) -> Self {
        Self { raft, db, timeout }
    }

    /// Whether Raft is stopped (shut down, or after a fatal error): nothing can be proposed.
    fn stopped(&self) -> bool {
        self.raft.metrics().borrow().running_state.is_err()
    }
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

fn unavailable(message: impl std::fmt::Display, maybe_applied: bool) -> pb::Unavailable {
    pb::Unavailable {
        message: message.to_string(),
        maybe_applied,
    }
}

fn internal(e: MetaError) -> Status {
    Status::internal(e.to_string())
}

/// Reads `request` from the node's current state, on a blocking thread.
pub(crate) async fn read_local(db: Arc<DB>, request: ReadRequest) -> Result<ReadAnswer, MetaError> {
    tokio::task::spawn_blocking(move || {
        let reader = crate::read::Reader::new(&db, crate::state_machine::state_cf(&db)?);
        request.execute(&reader)
    })
    .await
    .map_err(|e| MetaError::Storage(format!("metadata read task failed: {e}")))?
}

#[tonic::async_trait]
impl pb::meta_server::Meta for MetaService {
    async fn apply(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyReply>, Status> {
        use pb::apply_reply::Result as R;
        let proposal = request.into_inner().proposal;
        // A proposal that does not decode never reaches the log.
        let mut proposal = wire::decode::<Proposal>(&proposal)
            .map_err(|e| Status::invalid_argument(format!("proposal: {e}")))?;
        // The time its request id is remembered from (super::dedup).
        proposal.stamp();
        let proposal = wire::encode(&proposal).map_err(internal)?;
        let result = if self.stopped() {
            R::Unavailable(unavailable("the meta node is stopping", false))
        } else {
            match tokio::time::timeout(self.timeout, self.raft.client_write(AppRequest(proposal)))
                .await
            {
                Ok(Ok(resp)) => R::Results(resp.data.0),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                    R::NotLeader(not_leader(&f))
                }
                Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                    return Err(Status::internal(e.to_string()))
                }
                // Raft stopped while the entry may have been in the log.
                Ok(Err(RaftError::Fatal(e))) => {
                    R::Unavailable(unavailable(format_args!("raft stopped: {e}"), true))
                }
                Err(_) => R::Unavailable(unavailable(
                    format_args!("not committed within {:?} (no quorum?)", self.timeout),
                    true,
                )),
            }
        };
        Ok(Response::new(pb::ApplyReply {
            result: Some(result),
        }))
    }

    async fn read(
        &self,
        request: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadReply>, Status> {
        use pb::read_reply::Result as R;
        let pb::ReadRequest { request, local } = request.into_inner();
        let request: ReadRequest = wire::decode(&request)
            .map_err(|e| Status::invalid_argument(format!("read request: {e}")))?;
        if !local {
            let confirmed =
                tokio::time::timeout(self.timeout, self.raft.ensure_linearizable()).await;
            let refused = match confirmed {
                Ok(Ok(_)) => None,
                Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                    Some(R::NotLeader(not_leader(&f)))
                }
                Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))) => {
                    Some(R::Unavailable(unavailable(e, false)))
                }
                Ok(Err(RaftError::Fatal(e))) => Some(R::Unavailable(unavailable(
                    format_args!("raft stopped: {e}"),
                    false,
                ))),
                Err(_) => Some(R::Unavailable(unavailable(
                    format_args!("leadership not confirmed within {:?}", self.timeout),
                    false,
                ))),
            };
            if let Some(result) = refused {
                return Ok(Response::new(pb::ReadReply {
                    result: Some(result),
                }));
            }
        }
        let answer = read_local(self.db.clone(), request).await;
        let answer = wire::encode(&answer).map_err(internal)?;
        Ok(Response::new(pb::ReadReply {
            result: Some(R::Answer(answer)),
        }))
    }
}
