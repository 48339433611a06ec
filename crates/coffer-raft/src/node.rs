//! [`RaftNode`]: one member of a Raft group, with its storage, its gRPC server and the client
//! API (writes, linearizable reads, membership changes) that forwards to the leader.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    CheckIsLeaderError, ClientWriteError, ForwardToLeader, InitializeError, RaftError,
};
use rocksdb::DB;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::service::Routes;

use crate::app::StateMachineApp;
use crate::config::RaftConfig;
use crate::db::open_db;
use crate::error::Error;
use crate::log_store::LogStore;
use crate::network::{Forwarded, Forwarder, NetworkFactory, MAX_MESSAGE_SIZE};
use crate::pb;
use crate::service::RaftService;
use crate::state_machine::StateMachineStore;
use crate::types::{AppRequest, BasicNode, NodeId, Raft, RaftMetrics, TypeConfig};

/// The answer to a committed and applied command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The log index the command was applied at. A read on any node is guaranteed to see the
    /// write once that node has applied this index.
    pub index: u64,
    /// The application's answer ([`StateMachineApp::apply`]).
    pub response: Vec<u8>,
}

/// Where the leader is, as seen by this node.
type LeaderHint = Option<(NodeId, String)>;

/// How a call on the local Raft node ended, when it did not succeed.
enum Local {
    /// This node is not the leader; nothing was proposed.
    NotLeader(LeaderHint),
    Failed(Error),
}

fn hint(f: &ForwardToLeader<NodeId, BasicNode>) -> LeaderHint {
    match (f.leader_id, &f.leader_node) {
        (Some(id), Some(node)) => Some((id, node.addr.clone())),
        _ => None,
    }
}

fn stopped(e: impl std::fmt::Display) -> Error {
    Error::Stopped(e.to_string())
}

fn write_outcome<T>(
    result: Result<T, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>,
) -> Result<T, Local> {
    match result {
        Ok(v) => Ok(v),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(Local::NotLeader(hint(&f)))
        }
        Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
            Err(Local::Failed(Error::Membership(e.to_string())))
        }
        Err(RaftError::Fatal(e)) => Err(Local::Failed(stopped(e))),
    }
}

struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

/// One member of a Raft group replicating the state machine `A`.
///
/// The node owns one RocksDB database in `<dir>/db` (the log, the Raft metadata and the app's
/// column families) and its snapshots in `<dir>/snapshots`, and serves `proto/raft.proto` on the
/// listener it is given. Call [`RaftNode::shutdown`] to stop it; dropping it leaves the server
/// and the Raft tasks running.
pub struct RaftNode<A: StateMachineApp> {
    id: NodeId,
    raft: Raft,
    db: Arc<DB>,
    app: Arc<A>,
    config: RaftConfig,
    forwarder: Forwarder,
    local_addr: SocketAddr,
    server: Mutex<Option<Server>>,
}

impl<A: StateMachineApp> std::fmt::Debug for RaftNode<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("id", &self.id)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl<A: StateMachineApp> RaftNode<A> {
    /// Opens the node's storage in `dir` (creating it), starts Raft and serves the Raft service
    /// on `listener`. The address other members reach this node at is the one given to
    /// [`RaftNode::initialize`] or [`RaftNode::add_learner`]; it must stay the same across
    /// restarts.
    pub async fn start(
        id: NodeId,
        dir: &Path,
        listener: TcpListener,
        app: Arc<A>,
        config: RaftConfig,
    ) -> Result<Self, Error> {
        Self::start_with_services(id, dir, listener, app, config, |_, _| Routes::default()).await
    }

    /// Like [`RaftNode::start`], also serving on the same listener the gRPC services that
    /// `services` builds from the started Raft handle and the opened database (an application's
    /// own API, so that one address per node reaches both). The services are stopped with the
    /// node; they must not keep the handle or the database once their server is stopped.
    pub async fn start_with_services<F>(
        id: NodeId,
        dir: &Path,
        listener: TcpListener,
        app: Arc<A>,
        config: RaftConfig,
        services: F,
    ) -> Result<Self, Error>
    where
        F: FnOnce(&Raft, &Arc<DB>) -> Routes,
    {
        let raft_config = Arc::new(config.to_openraft()?);
        let db_dir = dir.join("db");
        let snapshot_dir = dir.join("snapshots");
        let (db, sm) = {
            let app = app.clone();
            tokio::task::spawn_blocking(move || -> Result<_, Error> {
                std::fs::create_dir_all(&db_dir)?;
                let db = open_db(&db_dir, A::COLUMN_FAMILIES)?;
                let sm = StateMachineStore::open(db.clone(), app, &snapshot_dir)?;
                Ok((db, sm))
            })
            .await
            .map_err(|e| Error::Io(std::io::Error::other(e)))??
        };
        let network = NetworkFactory::new(id, config.connect_timeout);
        let raft = openraft::Raft::<TypeConfig>::new(
            id,
            raft_config,
            network,
            LogStore::new(db.clone()),
            sm,
        )
        .await
        .map_err(stopped)?;

        let local_addr = listener.local_addr()?;
        let service = pb::raft_server::RaftServer::new(RaftService::new(raft.clone()))
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let routes = services(&raft, &db).add_service(service);
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let (stop, stopped_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped_rx.await;
                }),
        );
        tracing::info!(id, %local_addr, "raft node started");
        Ok(Self {
            id,
            raft,
            db,
            app,
            forwarder: Forwarder::new(config.connect_timeout),
            config,
            local_addr,
            server: Mutex::new(Some(Server { stop, task })),
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address the Raft service listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The openraft handle, for what this API does not cover (waiting on metrics, triggering a
    /// snapshot or an election).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The node's database: the app reads its column families here. Reads see what this node
    /// has applied; call [`RaftNode::linearizable_read`] first for a linearizable read.
    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }

    /// The application.
    pub fn app(&self) -> &Arc<A> {
        &self.app
    }

    /// The current metrics: state, leader, term, last log and applied index, membership.
    pub fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow().clone()
    }

    /// Bootstraps a new group whose voters are `members` (node id to address), this node
    /// included. Call it on one node of the new group. Does nothing if this node already belongs
    /// to an initialized group, so a restarted node may call it again.
    pub async fn initialize(&self, members: BTreeMap<NodeId, String>) -> Result<(), Error> {
        if self.raft.is_initialized().await.map_err(stopped)? {
            return Ok(());
        }
        let nodes: BTreeMap<NodeId, BasicNode> = members
            .into_iter()
            .map(|(id, addr)| (id, BasicNode::new(addr)))
            .collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(RaftError::APIError(e)) => Err(Error::Initialize(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(stopped(e)),
        }
    }

    /// Proposes `command` and returns once it is committed on a quorum and applied on the leader,
    /// with the application's answer. On a follower the command is forwarded to the leader.
    /// Leader changes are retried up to [`RaftConfig::max_forward_attempts`] times within
    /// [`RaftConfig::request_timeout`]; see [`Error`] for which failures may still commit.
    pub async fn client_write(&self, command: Vec<u8>) -> Result<Written, Error> {
        let local = || {
            let raft = self.raft.clone();
            let command = command.clone();
            async move {
                let resp = write_outcome(raft.client_write(AppRequest(command)).await)?;
                Ok(Written {
                    index: resp.log_id.index,
                    response: resp.data.0,
                })
            }
        };
        let remote = |addr: String, ttl: Duration| {
            let command = command.clone();
            async move {
                Ok(
                    match self.forwarder.client_write(&addr, command, ttl).await? {
                        Forwarded::Done((index, response)) => {
                            Forwarded::Done(Written { index, response })
                        }
                        Forwarded::NotLeader(nl) => Forwarded::NotLeader(nl),
                    },
                )
            }
        };
        self.leader_call(local, remote).await
    }

    /// Makes a following read of this node's state linearizable (read index): asks the leader
    /// to confirm its leadership with a quorum, then waits until this node has applied the
    /// leader's commit index at that moment. Returns that index.
    pub async fn linearizable_read(&self) -> Result<u64, Error> {
        let local = || {
            let raft = self.raft.clone();
            async move {
                match raft.ensure_linearizable().await {
                    Ok(read_log_id) => Ok(read_log_id.map(|id| id.index).unwrap_or(0)),
                    Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                        Err(Local::NotLeader(hint(&f)))
                    }
                    Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                        Err(Local::Failed(Error::NoQuorum(e.to_string())))
                    }
                    Err(RaftError::Fatal(e)) => Err(Local::Failed(stopped(e))),
                }
            }
        };
        let remote = |addr: String, ttl: Duration| async move {
            let start = Instant::now();
            let index = match self.forwarder.read_index(&addr, ttl).await? {
                Forwarded::Done(index) => index,
                Forwarded::NotLeader(nl) => return Ok(Forwarded::NotLeader(nl)),
            };
            if index > 0 {
                let left = ttl.saturating_sub(start.elapsed());
                self.raft
                    .wait(Some(left))
                    .applied_index_at_least(Some(index), "read index")
                    .await
                    .map_err(|e| match e {
                        openraft::metrics::WaitError::Timeout(..) => (true, Error::Timeout(ttl)),
                        openraft::metrics::WaitError::ShuttingDown => {
                            (true, stopped("shutting down"))
                        }
                    })?;
            }
            Ok(Forwarded::Done(index))
        };
        self.leader_call(local, remote).await
    }

    /// Adds node `id` at `addr` as a learner (or updates its address), through the leader.
    /// With `blocking`, returns only once the learner has caught up. Returns the log index of
    /// the membership entry.
    pub async fn add_learner(
        &self,
        id: NodeId,
        addr: String,
        blocking: bool,
    ) -> Result<u64, Error> {
        let local = || {
            let raft = self.raft.clone();
            let addr = addr.clone();
            async move {
                let resp =
                    write_outcome(raft.add_learner(id, BasicNode::new(addr), blocking).await)?;
                Ok(resp.log_id.index)
            }
        };
        let remote = |leader: String, ttl: Duration| {
            let req = pb::AddLearnerRequest {
                node_id: id,
                addr: addr.clone(),
                blocking,
            };
            async move { self.forwarder.add_learner(&leader, req, ttl).await }
        };
        self.leader_call(local, remote).await
    }

    /// Makes `voters` the voters of the group, through the leader (learners to promote must
    /// have been added first). With `retain`, removed voters stay as learners. Returns the log
    /// index of the final membership entry.
    pub async fn change_membership(
        &self,
        voters: BTreeSet<NodeId>,
        retain: bool,
    ) -> Result<u64, Error> {
        let local = || {
            let raft = self.raft.clone();
            let voters = voters.clone();
            async move {
                let resp = write_outcome(raft.change_membership(voters, retain).await)?;
                Ok(resp.log_id.index)
            }
        };
        let remote = |leader: String, ttl: Duration| {
            let req = pb::ChangeMembershipRequest {
                voters: voters.iter().copied().collect(),
                retain,
            };
            async move { self.forwarder.change_membership(&leader, req, ttl).await }
        };
        self.leader_call(local, remote).await
    }

    /// Runs a leader-only call: locally if this node leads, else forwarded to the leader it knows
    /// of. Retries, within the request deadline and the attempt budget, only what certainly did
    /// not take effect: a node answering that it is not the leader, a leader that cannot be
    /// connected to, no leader known yet.
    async fn leader_call<T, L, LF, R, RF>(&self, local: L, remote: R) -> Result<T, Error>
    where
        L: Fn() -> LF,
        LF: Future<Output = Result<T, Local>>,
        R: Fn(String, Duration) -> RF,
        RF: Future<Output = Result<Forwarded<T>, (bool, Error)>>,
    {
        let budget = self.config.request_timeout;
        let deadline = Instant::now() + budget;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout(budget));
            }
            let leader = match tokio::time::timeout(left, local()).await {
                Err(_) => return Err(Error::Timeout(budget)),
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(Local::Failed(e))) => return Err(e),
                Ok(Err(Local::NotLeader(leader))) => leader,
            };
            let failure = match &leader {
                Some((leader_id, addr)) if *leader_id != self.id => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match remote(addr.clone(), left).await {
                        Ok(Forwarded::Done(v)) => return Ok(v),
                        Ok(Forwarded::NotLeader(_)) => {
                            format!("node {leader_id} at {addr} is no longer the leader")
                        }
                        Err((false, e)) => format!("leader {leader_id} unreachable: {e}"),
                        Err((true, e)) => return Err(e),
                    }
                }
                _ => "no leader known".to_owned(),
            };
            if attempt >= self.config.max_forward_attempts {
                return Err(Error::NoLeader(format!(
                    "after {attempt} attempts: {failure}"
                )));
            }
            // Wait for news of a (new) leader, at most an exponential backoff.
            let backoff = Duration::from_millis(25u64 << attempt.min(6))
                .min(deadline.saturating_duration_since(Instant::now()));
            let known = leader.map(|(id, _)| id);
            let _ = self
                .raft
                .wait(Some(backoff))
                .metrics(
                    |m| m.current_leader.is_some() && m.current_leader != known,
                    "a new leader",
                )
                .await;
        }
    }

    /// Stops the Raft node and its server, and waits until the database is closed, so that the
    /// same directory can be opened again.
    pub async fn shutdown(self) -> Result<(), Error> {
        let RaftNode {
            id,
            raft,
            db,
            app,
            server,
            ..
        } = self;
        let raft_result = raft.shutdown().await;
        drop(raft);
        let server = server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(Server { stop, mut task }) = server {
            let _ = stop.send(());
            match tokio::time::timeout(Duration::from_secs(5), &mut task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(id, error = %e, "raft server failed"),
                Ok(Err(e)) => tracing::warn!(id, error = %e, "raft server task failed"),
                Err(_) => {
                    tracing::warn!(id, "raft server did not stop in 5 s: aborting it");
                    task.abort();
                    let _ = task.await;
                }
            }
        }
        drop(app);
        // Snapshot builds and blocking writes that were under way hold the database too.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&db) > 1 {
            if Instant::now() >= deadline {
                return Err(Error::Stopped(format!(
                    "node {id}: the database is still in use after shutdown"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(db);
        tracing::info!(id, "raft node stopped");
        raft_result.map_err(stopped)
    }
}
