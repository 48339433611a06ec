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

    /// Imports the state of a metadata directory of the pre-Raft format (the database of a
    /// [`crate::StateMachine`], as `LocalMeta` kept it) into `dir`, the directory of a member
    /// that was never started. Returns `false` (and does nothing) if `dir` already holds a
    /// member's database. Blocking.
    ///
    /// The records become the member's initial state, before its first log entry. Start the
    /// member, bootstrap it as a single-member group, then call [`MetaNode::compact`], so that
    /// members added later receive the imported records in a snapshot rather than replay a log
    /// that lacks them.
    pub fn import_local_state(local: &Path, dir: &Path) -> Result<bool, MetaError> {
        let db_dir = dir.join("db");
        if db_dir.exists() {
            return Ok(false);
        }
        let source = crate::StateMachine::open(local)?;
        let staging = dir.join("db.importing");
        if staging.exists() {
            std::fs::remove_dir_all(&staging)
                .map_err(|e| MetaError::Storage(format!("removing {}: {e}", staging.display())))?;
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| MetaError::Storage(format!("creating {}: {e}", dir.display())))?;
        let records = {
            let db = coffer_raft::open_db(
                &staging,
                <MetaApp as coffer_raft::StateMachineApp>::COLUMN_FAMILIES,
            )
            .map_err(raft_error)?;
            let target = crate::state_machine::state_cf(&db)?;
            let mut batch = rocksdb::WriteBatch::default();
            let applied = crate::keys::applied_index();
            let mut records = 0u64;
            let source_cf = crate::state_machine::state_cf(source.db())?;
            for item in source
                .db()
                .iterator_cf(source_cf, rocksdb::IteratorMode::Start)
            {
                let (k, v) = item.map_err(crate::state_machine::storage)?;
                // The member numbers its log from 1: the old applied index means nothing to it.
                if *k != *applied {
                    batch.put_cf(target, k, v);
                    records += 1;
                }
            }
            let mut opts = rocksdb::WriteOptions::default();
            opts.set_sync(true);
            db.write_opt(batch, &opts)
                .map_err(crate::state_machine::storage)?;
            records
        };
        // The database is complete before it gets the name a member opens.
        std::fs::rename(&staging, &db_dir)
            .map_err(|e| MetaError::Storage(format!("renaming {}: {e}", staging.display())))?;
        tracing::info!(from = %local.display(), to = %dir.display(), records, "imported the metadata state");
        Ok(true)
    }

    /// Builds a snapshot of the state now and purges the log up to it: a member added later
    /// then starts from the snapshot. Returns the snapshot's log index.
    pub async fn compact(&self) -> Result<u64, MetaError> {
        let raft = self.node.raft();
        let applied = self.node.metrics().last_applied.map_or(0, |l| l.index);
        let stopped = |e: openraft::error::Fatal<NodeId>| MetaError::Unavailable(e.to_string());
        raft.trigger().snapshot().await.map_err(stopped)?;
        let metrics = raft
            .wait(Some(self.request_timeout))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= applied),
                "a snapshot of the current state",
            )
            .await
            .map_err(|e| MetaError::Unavailable(format!("snapshot: {e}")))?;
        let index = metrics.snapshot.map_or(0, |s| s.index);
        raft.trigger().purge_log(index).await.map_err(stopped)?;
        Ok(index)
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

    /// Asks the group of the member at `via` ("host:port") to add this member as a learner,
    /// known by `addr` (the address the others reach it at). The leader replicates its log (or a
    /// snapshot) to it; making it a voter is a separate membership change. Retries while the
    /// group has no leader or `via` is not reachable yet, for at most `patience`. Returns the
    /// log index of the membership entry.
    pub async fn join(&self, via: &str, addr: &str, patience: Duration) -> Result<u64, MetaError> {
        use coffer_raft::pb::{self as raft_pb, membership_reply::Result as R};
        let deadline = Instant::now() + patience;
        let mut target = via.to_owned();
        let mut backoff = Duration::from_millis(50);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(MetaError::Unavailable(format!(
                    "could not join the group through {via} within {patience:?}"
                )));
            }
            let attempt = async {
                let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{target}"))
                    .map_err(|e| MetaError::Invalid(format!("bad address {target:?}: {e}")))?
                    .connect_timeout(Duration::from_secs(1));
                let channel = endpoint.connect().await.map_err(|e| {
                    MetaError::Unavailable(format!("cannot connect to {target}: {e}"))
                })?;
                let mut client = raft_pb::raft_client::RaftClient::new(channel);
                let mut req = tonic::Request::new(raft_pb::AddLearnerRequest {
                    node_id: self.id(),
                    addr: addr.to_owned(),
                    blocking: false,
                });
                req.set_timeout(left);
                let reply = client
                    .add_learner(req)
                    .await
                    .map_err(|s| MetaError::Unavailable(format!("{target}: {}", s.message())))?;
                Ok::<_, MetaError>(reply.into_inner().result)
            };
            match tokio::time::timeout(left, attempt).await {
                Ok(Ok(Some(R::Index(index)))) => {
                    tracing::info!(id = self.id(), via = %target, index, "joined as a learner");
                    return Ok(index);
                }
                Ok(Ok(Some(R::NotLeader(nl)))) if !nl.leader_addr.is_empty() => {
                    target = nl.leader_addr;
                    continue;
                }
                Ok(Ok(_)) => tracing::info!(via = %target, "no leader yet; retrying"),
                Ok(Err(e @ MetaError::Invalid(_))) => return Err(e),
                Ok(Err(e)) => tracing::info!(error = %e, "cannot join yet; retrying"),
                Err(_) => continue,
            }
            target = via.to_owned();
            tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now())))
                .await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
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
        let mut proposal = Proposal::new(commands);
        proposal.stamp();
        let proposal = wire::encode(&proposal)?;
        let written = node.client_write(proposal).await.map_err(raft_error)?;
        wire::decode::<ProposalAnswer>(&written.response)?
    }

    async fn read(&self, request: ReadRequest) -> Result<ReadAnswer, MetaError> {
        let node = self.node()?;
        node.linearizable_read().await.map_err(raft_error)?;
        read_local(node.db().clone(), request).await
    }
}
