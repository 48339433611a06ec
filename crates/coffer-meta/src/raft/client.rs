//! [`GrpcMetaClient`]: the [`crate::MetaClient`] of gateways, over `proto/meta.proto`.
//!
//! The client knows the addresses of the members and remembers which one leads. A call goes to
//! the remembered leader, or else to the members in turn; a member that is not the leader
//! answers with the leader it knows of, and the call follows it. Every RPC carries a deadline
//! ([`GrpcMetaConfig::call_timeout`]); the whole call, retries included, is bounded by
//! [`GrpcMetaConfig::request_timeout`] and [`GrpcMetaConfig::max_attempts`], after which it fails
//! with [`MetaError::Unavailable`] (a gateway answers 503).
//!
//! What is retried: every call, reads and writes alike, whatever failed (a `NotLeader` answer, a
//! refused or broken connection, a deadline passed while a write waited for a quorum, a leader
//! that died with the write in flight). Reads change nothing. A write is one [`Proposal`] with a
//! request id, encoded once and sent unchanged by every attempt: the state machine applies an id
//! at most once and answers a known id with the answer it recorded (`super::dedup`), so a retry
//! of a write that was applied after all gets the first attempt's results (a `CreateBucket`
//! succeeds rather than finding its own bucket, a compare-and-set is not evaluated a second
//! time). The ids are remembered for [`super::dedup::REQUEST_ID_TTL_MS`] of the group's clock;
//! the request timeout must stay under half of it ([`GrpcMetaClient::new`] checks). A write that
//! still fails when the budget is spent has an unknown outcome (`Unavailable`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use super::pb;
use super::pb::meta_client::MetaClient as PbClient;
use super::wire::{
    self, CommandResults, Proposal, ProposalAnswer, ReadAnswer, ReadRequest, Remote,
};
use crate::error::MetaError;
use crate::types::{Command, StateDigest};

/// The largest message accepted or sent (a page of a listing, a batch of commands).
const MAX_MESSAGE_SIZE: usize = 64 << 20;

/// Timeouts and retry budget of a [`GrpcMetaClient`].
#[derive(Debug, Clone)]
pub struct GrpcMetaConfig {
    /// Deadline for opening a connection to a member.
    pub connect_timeout: Duration,
    /// Deadline of one RPC (sent as `grpc-timeout` too). A write that hits it has an unknown
    /// outcome; it is retried (with the same request id) while the request timeout allows.
    pub call_timeout: Duration,
    /// Deadline of a whole call, retries included. Under half of
    /// [`super::dedup::REQUEST_ID_TTL_MS`], so that every retry of a write is recognised.
    pub request_timeout: Duration,
    /// At most this many RPCs per call.
    pub max_attempts: u32,
}

impl Default for GrpcMetaConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            call_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(8),
            max_attempts: 32,
        }
    }
}

/// A member that could not be reached is not believed to lead for this long, even if another
/// member still names it (its news of the failure is older).
const DEAD_LEADER_GRACE: Duration = Duration::from_secs(1);

/// The first retry waits this long; each further one twice as long, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(400);

/// How one RPC ended.
enum Outcome<T> {
    /// The answer.
    Done(T),
    /// The member is not the leader; it named the leader it knows of, if any.
    NotLeader(Option<String>),
    /// The group could not serve the call (a write may have been proposed, and may be applied:
    /// its retry carries the same request id).
    Unavailable(String),
}

/// What to do after one attempt.
enum Next {
    /// Try the named member right away.
    Redirect(String),
    /// Back off, then try another member.
    Retry(String),
}

#[derive(Default)]
struct State {
    /// The member believed to lead.
    leader: Option<String>,
    /// Where the next call without a known leader starts in `addrs`.
    next: usize,
    /// When a member last could not be reached.
    failed: HashMap<String, Instant>,
    /// One client per member address (a channel reconnects by itself).
    clients: HashMap<String, PbClient<Channel>>,
}

/// A [`crate::MetaClient`] over the metadata group's gRPC API, for gateways. Cheap to share
/// (`Arc`); calls run concurrently.
pub struct GrpcMetaClient {
    addrs: Vec<String>,
    config: GrpcMetaConfig,
    state: Mutex<State>,
}

impl std::fmt::Debug for GrpcMetaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcMetaClient")
            .field("addrs", &self.addrs)
            .field("leader", &self.leader())
            .finish()
    }
}

fn endpoint(addr: &str, connect_timeout: Duration) -> Result<Endpoint, MetaError> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| MetaError::Invalid(format!("bad meta address {addr:?}: {e}")))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true))
}

impl GrpcMetaClient {
    /// A client of the members at `addrs` ("host:port" each). Connects on first use.
    pub fn new(addrs: Vec<String>, config: GrpcMetaConfig) -> Result<Self, MetaError> {
        if addrs.is_empty() {
            return Err(MetaError::Invalid("no meta address".into()));
        }
        if config.max_attempts == 0 {
            return Err(MetaError::Invalid("max_attempts must be at least 1".into()));
        }
        let ttl = Duration::from_millis(super::dedup::REQUEST_ID_TTL_MS);
        if config.request_timeout >= ttl / 2 {
            return Err(MetaError::Invalid(format!(
                "request_timeout {:?} must be under {:?}, half the time request ids are \
                 remembered, so that a retried write is not applied twice",
                config.request_timeout,
                ttl / 2
            )));
        }
        for addr in &addrs {
            endpoint(addr, config.connect_timeout)?;
        }
        Ok(Self {
            addrs,
            config,
            state: Mutex::new(State::default()),
        })
    }

    /// The member addresses given.
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The member believed to lead, if known.
    pub fn leader(&self) -> Option<String> {
        self.state().leader.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn client(&self, addr: &str) -> Result<PbClient<Channel>, MetaError> {
        let mut state = self.state();
        if let Some(c) = state.clients.get(addr) {
            return Ok(c.clone());
        }
        let channel = endpoint(addr, self.config.connect_timeout)?.connect_lazy();
        let c = PbClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        state.clients.insert(addr.to_owned(), c.clone());
        Ok(c)
    }

    /// The member to call next: the leader if known, else the next address in turn.
    fn target(&self) -> String {
        let mut state = self.state();
        if let Some(leader) = &state.leader {
            return leader.clone();
        }
        let addr = self.addrs[state.next % self.addrs.len()].clone();
        state.next = state.next.wrapping_add(1);
        addr
    }

    /// Records that `addr` failed: it is no longer believed to lead.
    fn forget(&self, addr: &str, unreachable: bool) {
        let mut state = self.state();
        if state.leader.as_deref() == Some(addr) {
            state.leader = None;
        }
        if unreachable {
            state.failed.insert(addr.to_owned(), Instant::now());
        }
    }

    /// Follows a `NotLeader` answer of `from`.
    fn redirect(&self, from: &str, hint: Option<String>) -> Next {
        let mut state = self.state();
        if state.leader.as_deref() == Some(from) {
            state.leader = None;
        }
        let recently_failed = |addr: &str| {
            state
                .failed
                .get(addr)
                .is_some_and(|t| t.elapsed() < DEAD_LEADER_GRACE)
        };
        match hint {
            Some(addr) if addr != from && !recently_failed(&addr) => {
                state.leader = Some(addr.clone());
                Next::Redirect(addr)
            }
            Some(addr) => Next::Retry(format!(
                "{from} names {addr} as the leader, which is not reachable"
            )),
            None => Next::Retry(format!("{from} knows no leader")),
        }
    }

    /// Runs `rpc` against the leader, following redirects and retrying within the budget (see
    /// the module documentation). `rpc` must be idempotent: a write sends the same proposal,
    /// request id included, every time.
    async fn call<T, F, Fut>(&self, what: &str, rpc: F) -> Result<T, MetaError>
    where
        F: Fn(PbClient<Channel>, Duration) -> Fut,
        Fut: Future<Output = Result<Outcome<T>, tonic::Status>>,
    {
        let started = Instant::now();
        let deadline = started + self.config.request_timeout;
        let mut backoff = FIRST_BACKOFF;
        let mut redirected: Option<String> = None;
        let mut attempts = 0;
        let mut last = String::from("no attempt");
        while attempts < self.config.max_attempts {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            attempts += 1;
            let target = redirected.take().unwrap_or_else(|| self.target());
            let ttl = left.min(self.config.call_timeout);
            let client = self.client(&target)?;
            let next = match tokio::time::timeout(ttl, rpc(client, ttl)).await {
                Ok(Ok(Outcome::Done(v))) => {
                    let mut state = self.state();
                    if state.leader.as_deref() != Some(&target) {
                        tracing::debug!(leader = %target, "meta leader found");
                        state.leader = Some(target);
                    }
                    return Ok(v);
                }
                Ok(Ok(Outcome::NotLeader(hint))) => self.redirect(&target, hint),
                Ok(Ok(Outcome::Unavailable(message))) => {
                    self.forget(&target, false);
                    Next::Retry(format!("{target}: {message}"))
                }
                Ok(Err(status)) => {
                    if status.code() == tonic::Code::InvalidArgument {
                        return Err(MetaError::Invalid(format!(
                            "{what} refused by {target}: {}",
                            status.message()
                        )));
                    }
                    // A write that was delivered may be applied: its retry is recognised.
                    let delivered = !coffer_raft::network::not_delivered(&status);
                    self.forget(&target, !delivered);
                    Next::Retry(format!(
                        "{target}: {:?}: {}",
                        status.code(),
                        status.message()
                    ))
                }
                Err(_) => {
                    self.forget(&target, false);
                    Next::Retry(format!("{target}: no answer within {ttl:?}"))
                }
            };
            match next {
                Next::Redirect(addr) => {
                    tracing::debug!(from = %target, to = %addr, "{what}: following the leader");
                    redirected = Some(addr);
                }
                Next::Retry(why) => {
                    tracing::debug!(attempt = attempts, "{what}: retrying: {why}");
                    last = why;
                    let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(pause).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        Err(MetaError::Unavailable(format!(
            "{what}: no metadata leader answered within {:?} ({attempts} attempts; a write may \
             still be applied); last: {last}",
            started.elapsed()
        )))
    }

    /// One read RPC; `local` reads the member's own state. An error the member answers with
    /// (`NoSuchKey`, ...) is a `Done` outcome: the call worked.
    async fn read_rpc(
        mut client: PbClient<Channel>,
        ttl: Duration,
        request: Vec<u8>,
        local: bool,
    ) -> Result<Outcome<Result<ReadAnswer, MetaError>>, tonic::Status> {
        use pb::read_reply::Result as R;
        let mut req = tonic::Request::new(pb::ReadRequest { request, local });
        req.set_timeout(ttl);
        let reply = client.read(req).await?.into_inner();
        Ok(match reply.result {
            Some(R::Answer(bytes)) => Outcome::Done(
                wire::decode(&bytes)
                    .map_err(|e| tonic::Status::internal(format!("read answer: {e}")))?,
            ),
            Some(R::NotLeader(nl)) => Outcome::NotLeader(leader_hint(nl)),
            Some(R::Unavailable(u)) => Outcome::Unavailable(u.message),
            None => return Err(tonic::Status::internal("empty read reply")),
        })
    }

    /// The digest of the member at `addr`'s own state (not of the leader's), for comparing the
    /// members (`coffer admin`). One attempt, within the call timeout.
    pub async fn node_digest(&self, addr: &str) -> Result<StateDigest, MetaError> {
        let request = wire::encode(&ReadRequest::Digest)?;
        let client = self.client(addr)?;
        let ttl = self.config.call_timeout;
        let unavailable = |why: String| MetaError::Unavailable(format!("digest of {addr}: {why}"));
        match tokio::time::timeout(ttl, Self::read_rpc(client, ttl, request, true)).await {
            Err(_) => Err(unavailable(format!("no answer within {ttl:?}"))),
            Ok(Err(status)) => Err(unavailable(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))),
            Ok(Ok(Outcome::Done(Ok(ReadAnswer::Digest(d))))) => Ok(d),
            Ok(Ok(Outcome::Done(Ok(_)))) => Err(MetaError::Storage(format!(
                "digest of {addr}: unexpected answer"
            ))),
            Ok(Ok(Outcome::Done(Err(e)))) => Err(e),
            Ok(Ok(Outcome::NotLeader(_))) => Err(unavailable("not served".into())),
            Ok(Ok(Outcome::Unavailable(message))) => Err(unavailable(message)),
        }
    }
}

fn leader_hint(nl: pb::NotLeader) -> Option<String> {
    Some(nl.leader_addr).filter(|a| !a.is_empty())
}

#[async_trait]
impl Remote for GrpcMetaClient {
    async fn propose(&self, commands: Vec<Command>) -> Result<CommandResults, MetaError> {
        use pb::apply_reply::Result as R;
        // Encoded once: every attempt carries the same request id.
        let proposal = wire::encode(&Proposal::new(commands))?;
        let answer: ProposalAnswer = self
            .call("apply", |mut client, ttl| {
                let proposal = proposal.clone();
                async move {
                    let mut req = tonic::Request::new(pb::ApplyRequest { proposal });
                    req.set_timeout(ttl);
                    let reply = client.apply(req).await?.into_inner();
                    Ok(match reply.result {
                        Some(R::Results(bytes)) => Outcome::Done(bytes),
                        Some(R::NotLeader(nl)) => Outcome::NotLeader(leader_hint(nl)),
                        Some(R::Unavailable(u)) => Outcome::Unavailable(if u.maybe_applied {
                            format!("{}; it may still be applied", u.message)
                        } else {
                            u.message
                        }),
                        None => return Err(tonic::Status::internal("empty apply reply")),
                    })
                }
            })
            .await
            .and_then(|bytes| wire::decode(&bytes))?;
        answer
    }

    async fn read(&self, request: ReadRequest) -> Result<ReadAnswer, MetaError> {
        let request = wire::encode(&request)?;
        self.call("read", |client, ttl| {
            Self::read_rpc(client, ttl, request.clone(), false)
        })
        .await?
    }
}
