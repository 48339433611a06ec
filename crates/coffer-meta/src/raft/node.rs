//! [`MetaNode`], a member of the metadata Raft group, and [`RaftMeta`], the in-process
//! [`crate::MetaClient`] over it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use coffer_raft::{NodeId, RaftConfig, RaftNode};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tonic::service::Routes;

use super::app::MetaApp;
use super::pb;
use super::service::{read_local, MetaService};
use super::wire::{
    self, CommandResults, Proposal, ProposalAnswer, ReadAnswer, ReadRequest, Remote,
};
use crate::error::MetaError;
use crate::state_machine::Applier;
use crate::types::{Command, StateDigest};

/// Maps a coffer-raft error to the metadata error a gateway sees: everything that means "the
/// group cannot answer now" is [`MetaError::Unavailable`] (503).
pub(crate) fn raft_error(e: coffer_raft::Error) -> MetaError {
    use coffer_raft::Error as E;
    match e {
        E::NoLeader(_) | E::Timeout(_) | E::Rpc { .. } | E::NoQuorum(_) | E::Stopped(_) => {
            MetaError::Unavailable(e.to_string())
        }
        E::Membership(_) | E::Initialize(_) | E::Config(_) => MetaError::Invalid(e.to_string()),
        E::Rocks(_) | E::Io(_) | E::Codec(_) | E::CorruptSnapshot(_) | E::Apply(_) => {
            MetaError::Storage(e.to_string())
        }
    }
}

/// One member of the metadata group: a [`RaftNode`] replicating [`MetaApp`], serving both
/// `proto/raft.proto` and `proto/meta.proto` on one listener (the address the group knows the
/// member by is thus also where gateways reach it).
///
/// Stop it with [`MetaNode::shutdown`].
pub struct MetaNode {
    node: Arc<RaftNode<MetaApp>>,
    request_timeout: Duration,
}

impl std::fmt::Debug for MetaNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaNode")
            .field("id", &self.node.id())
            .field("local_addr", &self.node.local_addr())
            .finish()
    }
}

impl MetaNode {
    /// Opens the member's storage in `dir` (creating it) and serves Raft and the metadata API
    /// on `listener`. A new member joins a group through [`MetaNode::initialize`] (bootstrap)
    /// or by being added by the leader (`add_learner`, then `change_membership`, on
    /// [`MetaNode::raft_node`]).
    pub async fn start(
        id: NodeId,
        dir: &Path,
        listener: TcpListener,
        config: RaftConfig,
    ) -> Result<Self, MetaError> {
        let request_timeout = config.request_timeout;
        let node = RaftNode::start_with_services(
            id,
            dir,
            listener,
            Arc::new(MetaApp),
            config,
            |raft, db| {
                Routes::new(pb::meta_server::MetaServer::new(MetaService::new(
                    raft.clone(),
                    db.clone(),
                    request_timeout,
                )))
            },
        )
        .await
        .map_err(raft_error)?;
        // Refuse a state of a keyspace layout this build does not know before serving it.
        let db = node.db().clone();
        let layout = tokio::task::spawn_blocking(move || Applier::new(&db).map(drop))
            .await
            .map_err(|e| MetaError::Storage(format!("layout check failed: {e}")))?;
        if let Err(e) = layout {
            if let Err(stop) = node.shutdown().await {
                tracing::warn!(id, error = %stop, "stopping the refused meta node failed");
            }
            return Err(e);
        }
        Ok(Self {
            node: Arc::new(node),
            request_timeout,
        })
    }

    /// This member's id.
    pub fn id(&self) -> NodeId {
        self.node.id()
    }

    /// The address the member listens on (Raft and the metadata API).
    pub fn local_addr(&self) -> SocketAddr {
        self.node.local_addr()
    }

    /// The Raft node: metrics, membership changes.
    pub fn raft_node(&self) -> &RaftNode<MetaApp> {
        &self.node
    }

    /// Bootstraps a new group whose voters are `members` (id to address, this member
    /// included). Does nothing if this member already belongs to a group, so a restarted
    /// bootstrap member may call it again.
    pub async fn initialize(&self, members: BTreeMap<NodeId, String>) -> Result<(), MetaError> {
        self.node.initialize(members).await.map_err(raft_error)
    }

    /// A [`crate::MetaClient`] over this member: writes are proposed through the leader (this
    /// member or the one it forwards to) and reads are linearizable (read index). It stops
    /// working (`Unavailable`) once the member is shut down.
    pub fn client(&self) -> RaftMeta {
        RaftMeta {
            node: Arc::downgrade(&self.node),
        }
    }

    /// The digest of this member's state as it is now (not linearizable).
    pub async fn digest(&self) -> Result<StateDigest, MetaError> {
        match read_local(self.node.db().clone(), ReadRequest::Digest).await? {
            ReadAnswer::Digest(d) => Ok(d),
            _ => Err(MetaError::Storage("unexpected answer to a digest".into())),
        }
    }

    /// Stops the member (its Raft node and server) and closes its database. Calls of its
    /// [`RaftMeta`] clients still running are waited for, at most the request timeout.
    pub async fn shutdown(self) -> Result<(), MetaError> {
        let id = self.node.id();
        let deadline = Instant::now() + self.request_timeout + Duration::from_secs(1);
        let mut node = self.node;
        let node = loop {
            match Arc::try_unwrap(node) {
                Ok(node) => break node,
                Err(shared) if Instant::now() < deadline => {
                    node = shared;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(_) => {
                    return Err(MetaError::Storage(format!(
                        "meta node {id}: client calls still running after shutdown"
                    )))
                }
            }
        };
        node.shutdown().await.map_err(raft_error)
    }
}

/// The [`crate::MetaClient`] of a process that runs a [`MetaNode`] itself (`coffer dev`, a
/// single-node group; any member of a larger group). Writes go through
/// [`RaftNode::client_write`], which forwards them to the leader when this member is not the
/// leader and returns once the entry is committed on a quorum and applied; reads wait for
/// [`RaftNode::linearizable_read`] (read index, asked of the leader), then read this member's
/// state.
#[derive(Debug, Clone)]
pub struct RaftMeta {
    node: Weak<RaftNode<MetaApp>>,
}

impl RaftMeta {
    fn node(&self) -> Result<Arc<RaftNode<MetaApp>>, MetaError> {
        self.node
            .upgrade()
            .ok_or_else(|| MetaError::Unavailable("the meta node is shut down".into()))
    }
}

#[async_trait]
impl Remote for RaftMeta {
    async fn propose(&self, commands: Vec<Command>) -> Result<CommandResults, MetaError> {
        let node = self.node()?;
        let proposal = wire::encode(&Proposal { commands })?;
        let written = node.client_write(proposal).await.map_err(raft_error)?;
        wire::decode::<ProposalAnswer>(&written.response)?
    }

    async fn read(&self, request: ReadRequest) -> Result<ReadAnswer, MetaError> {
        let node = self.node()?;
        node.linearizable_read().await.map_err(raft_error)?;
        read_local(node.db().clone(), request).await
    }
}
