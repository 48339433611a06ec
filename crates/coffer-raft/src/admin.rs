//! [`RaftAdminClient`]: administration of a running group from outside it (`coffer admin
//! cluster`): every member's own status, and membership changes sent to the leader.
//!
//! Status is asked of each member directly (`Status`, answered from the member's own metrics),
//! so a member that lags or is cut off shows as such. Membership changes go to the leader: the
//! client starts with the leader the members name, follows `NotLeader` answers, and tries the
//! other known members when no leader is known or one cannot be connected to. Every RPC carries
//! a deadline; a change is bounded by [`AdminConfig::request_timeout`], and the waits for a
//! learner to catch up by [`AdminConfig::catch_up_timeout`]. A change whose outcome is unknown
//! (its connection broke after it was sent) is not retried: the error says so.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Error;
use crate::network::{client, not_delivered, Client, Forwarder};
use crate::pb;
use crate::types::NodeId;

/// Deadlines of a [`RaftAdminClient`].
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Deadline for opening a connection to a member.
    pub connect_timeout: Duration,
    /// Deadline of one Status call.
    pub status_timeout: Duration,
    /// Deadline of a membership change, leader redirects and retries included (not counting
    /// the wait for a learner to catch up).
    pub request_timeout: Duration,
    /// How long `add_learner` and `promote` wait for a learner to catch up with the leader.
    pub catch_up_timeout: Duration,
    /// A learner is caught up when its log is at most this many entries behind the leader's.
    pub catch_up_lag: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(1),
            status_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            catch_up_timeout: Duration::from_secs(60),
            catch_up_lag: 100,
        }
    }
}

/// A member's Raft role, as it sees itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It leads the group.
    Leader,
    /// A voter following a leader.
    Follower,
    /// A voter asking for votes.
    Candidate,
    /// It receives the log but does not vote (or is not a member any more).
    Learner,
    /// Raft is stopped on it.
    Shutdown,
}

impl Role {
    /// The name used in `proto/raft.proto` and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "leader" => Role::Leader,
            "follower" => Role::Follower,
            "candidate" => Role::Candidate,
            "learner" => Role::Learner,
            "shutdown" => Role::Shutdown,
            _ => return None,
        })
    }
}

/// A membership config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// The log index of the entry that introduced it (`None` before the group is initialized).
    pub log_index: Option<u64>,
    /// The term of that entry.
    pub log_term: Option<u64>,
    /// Every member, voters and learners, by id: its Raft address.
    pub nodes: BTreeMap<NodeId, String>,
    /// The voter sets: one, or two while a change is in progress (joint consensus).
    pub configs: Vec<BTreeSet<NodeId>>,
}

impl Membership {
    /// The voters (of every config while a change is in progress).
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.configs.iter().flatten().copied().collect()
    }

    /// The members that are not voters.
    pub fn learners(&self) -> BTreeSet<NodeId> {
        let voters = self.voters();
        self.nodes
            .keys()
            .filter(|id| !voters.contains(id))
            .copied()
            .collect()
    }

    /// Whether a membership change is in progress.
    pub fn is_joint(&self) -> bool {
        self.configs.len() > 1
    }

    fn key(&self) -> (Option<u64>, Option<u64>) {
        (self.log_term, self.log_index)
    }
}

/// One member's own view of the group (its Raft metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// Its id.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of, and that leader's address if known.
    pub leader: Option<(NodeId, Option<String>)>,
    /// The last index in its log.
    pub last_log_index: Option<u64>,
    /// The last index applied to its state machine.
    pub last_applied_index: Option<u64>,
    /// The commit index it knows of (`None` if it could not tell in time).
    pub committed_index: Option<u64>,
    /// The last index of its latest snapshot.
    pub snapshot_index: Option<u64>,
    /// The last index purged from its log.
    pub purged_index: Option<u64>,
    /// The membership config in effect on it.
    pub membership: Membership,
    /// On the leader: the highest log index known to be on each member (`None`: not known yet).
    /// Empty on the other members.
    pub replication: BTreeMap<NodeId, Option<u64>>,
    /// On the leader: milliseconds since a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
}

impl NodeStatus {
    fn from_pb(r: pb::StatusReply) -> Result<Self, String> {
        let role = Role::parse(&r.state).ok_or_else(|| format!("unknown state {:?}", r.state))?;
        let m = r.membership.unwrap_or_default();
        let membership = Membership {
            log_index: m.log_index,
            log_term: m.log_term,
            nodes: m.nodes.into_iter().map(|n| (n.id, n.addr)).collect(),
            configs: m
                .configs
                .into_iter()
                .map(|c| c.ids.into_iter().collect())
                .collect(),
        };
        Ok(NodeStatus {
            id: r.id,
            role,
            term: r.current_term,
            leader: r
                .leader_id
                .map(|id| (id, Some(r.leader_addr).filter(|a| !a.is_empty()))),
            last_log_index: r.last_log_index,
            last_applied_index: r.last_applied_index,
            committed_index: r.committed_index,
            snapshot_index: r.snapshot_index,
            purged_index: r.purged_index,
            membership,
            replication: r
                .replication
                .into_iter()
                .map(|p| (p.id, p.matched_index))
                .collect(),
            millis_since_quorum_ack: r.millis_since_quorum_ack,
        })
    }

    /// How far the leader knows `id`'s log matches its own, if this is the leader's status.
    pub fn matched(&self, id: NodeId) -> Option<u64> {
        if self.id == id && self.role == Role::Leader {
            return self.last_log_index;
        }
        self.replication.get(&id).copied().flatten()
    }
}

/// A member of the membership config and what it answered.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    /// Its id.
    pub id: NodeId,
    /// Its Raft address.
    pub addr: String,
    /// Whether it votes.
    pub voter: bool,
    /// Its own status, or why it could not be had (unreachable, no answer in time).
    pub status: Result<NodeStatus, String>,
}

/// The group as its members see it.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    /// The membership config: the leader's, else the newest any member reported.
    pub membership: Membership,
    /// The leader: a member that says it leads (the one of the highest term if several do).
    pub leader: Option<NodeId>,
    /// Every member of `membership`, by id.
    pub members: Vec<MemberStatus>,
}

impl ClusterStatus {
    /// The leader's own status, if a leader answered.
    pub fn leader_status(&self) -> Option<&NodeStatus> {
        let leader = self.leader?;
        self.members
            .iter()
            .find(|m| m.id == leader)
            .and_then(|m| m.status.as_ref().ok())
    }

    /// The address of the leader.
    pub fn leader_addr(&self) -> Option<String> {
        self.leader
            .and_then(|l| self.membership.nodes.get(&l).cloned())
    }
}

/// A client for administering a Raft group from outside it. See the module documentation.
#[derive(Debug)]
pub struct RaftAdminClient {
    addrs: Vec<String>,
    config: AdminConfig,
    /// One client per member address, kept.
    clients: Forwarder,
}

impl RaftAdminClient {
    /// A client of the group reachable at `addrs` (the Raft addresses, "host:port", of one or
    /// more members). Connects on first use.
    pub fn new(addrs: Vec<String>, config: AdminConfig) -> Result<Self, Error> {
        let addrs: Vec<String> = addrs
            .into_iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        if addrs.is_empty() {
            return Err(Error::Config("no member address".into()));
        }
        for addr in &addrs {
            client(addr, config.connect_timeout)?;
        }
        Ok(Self {
            addrs,
            clients: Forwarder::new(config.connect_timeout),
            config,
        })
    }

    fn client(&self, addr: &str) -> Result<Client, Error> {
        self.clients.client(addr)
    }

    /// The status of the member at `addr`, from its own metrics. One attempt, within
    /// [`AdminConfig::status_timeout`].
    pub async fn node_status(&self, addr: &str) -> Result<NodeStatus, Error> {
        let ttl = self.config.status_timeout;
        let rpc_error = |message: String| Error::Rpc {
            addr: addr.to_owned(),
            message,
        };
        let mut c = self.client(addr)?;
        let mut req = tonic::Request::new(pb::StatusRequest {});
        req.set_timeout(ttl);
        match tokio::time::timeout(ttl, c.status(req)).await {
            Err(_) => Err(rpc_error(format!("no answer within {ttl:?}"))),
            Ok(Err(status)) if not_delivered(&status) => Err(rpc_error("unreachable".into())),
            Ok(Err(status)) => Err(rpc_error(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))),
            Ok(Ok(reply)) => NodeStatus::from_pb(reply.into_inner()).map_err(rpc_error),
        }
    }

    /// Every member's own status. The membership is learnt from the members at the addresses
    /// given (the leader's config, else the newest reported); then every member of it is asked
    /// directly. When a member asked that way leads with another config (the addresses given
    /// were stale: removed members, a member cut off), its config is used instead. Fails only
    /// when no address answered.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, Error> {
        let seeds: Vec<(String, Result<NodeStatus, Error>)> = futures::future::join_all(
            self.addrs
                .iter()
                .map(|a| async move { (a.clone(), self.node_status(a).await) }),
        )
        .await;
        let answered: Vec<&NodeStatus> =
            seeds.iter().filter_map(|(_, r)| r.as_ref().ok()).collect();
        let Some(view) = authoritative(&answered) else {
            let why: Vec<String> = seeds
                .iter()
                .filter_map(|(a, r)| r.as_ref().err().map(|e| format!("{a}: {e}")))
                .collect();
            return Err(Error::NoLeader(format!(
                "no member answered ({})",
                why.join("; ")
            )));
        };
        let mut membership = view.membership.clone();
        let mut known: HashMap<NodeId, NodeStatus> =
            answered.iter().map(|s| (s.id, (*s).clone())).collect();
        let mut rounds = 0;
        loop {
            rounds += 1;
            let members = self.members_of(&membership, &known).await;
            let leader = members
                .iter()
                .filter_map(|m| m.status.as_ref().ok())
                .filter(|s| s.role == Role::Leader)
                .max_by_key(|s| s.term);
            match leader {
                Some(l) if l.membership != membership && rounds < 3 => {
                    membership = l.membership.clone();
                    known.extend(
                        members
                            .into_iter()
                            .filter_map(|m| m.status.ok())
                            .map(|s| (s.id, s)),
                    );
                }
                _ => {
                    return Ok(ClusterStatus {
                        leader: leader.map(|l| l.id),
                        membership,
                        members,
                    })
                }
            }
        }
    }

    /// Every member of `membership` with its status: the one in `known`, else asked now.
    async fn members_of(
        &self,
        membership: &Membership,
        known: &HashMap<NodeId, NodeStatus>,
    ) -> Vec<MemberStatus> {
        let voters = membership.voters();
        futures::future::join_all(membership.nodes.iter().map(|(id, addr)| {
            let known = known.get(id).cloned();
            let voter = voters.contains(id);
            async move {
                let status = match known {
                    Some(s) => Ok(s),
                    None => self.node_status(addr).await.map_err(|e| e.to_string()),
                };
                // A process at that address that is another node is not this member.
                let status = status.and_then(|s| {
                    if s.id == *id {
                        Ok(s)
                    } else {
                        Err(format!("{addr} answers as node {}", s.id))
                    }
                });
                MemberStatus {
                    id: *id,
                    addr: addr.clone(),
                    voter,
                    status,
                }
            }
        }))
        .await
    }

    /// Adds node `id` at `addr` as a learner, then waits until it has caught up with the
    /// leader's log ([`AdminConfig::catch_up_timeout`]). Adding a learner that is already one
    /// at the same address only waits. Returns the log index of the membership entry (or of
    /// the config that already had it).
    pub async fn add_learner(&self, id: NodeId, addr: &str) -> Result<u64, Error> {
        let addr = addr.trim();
        // The node must run, and be the one named, before the group starts replicating to it.
        match self.node_status(addr).await {
            Ok(s) if s.id == id => {}
            Ok(s) => {
                return Err(Error::Membership(format!(
                    "{addr} is node {}, not node {id}",
                    s.id
                )))
            }
            Err(e) => {
                return Err(Error::Membership(format!(
                    "node {id} does not answer at {addr} ({e}); start it first"
                )))
            }
        }
        let status = self.cluster_status().await?;
        let index = match status.membership.nodes.get(&id) {
            Some(_) if status.membership.voters().contains(&id) => {
                return Err(Error::Membership(format!("node {id} is already a voter")))
            }
            Some(known) if known != addr => {
                return Err(Error::Membership(format!(
                    "node {id} is already a learner at {known}; remove it first to change its \
                     address"
                )))
            }
            Some(_) => status.membership.log_index.unwrap_or(0),
            None => {
                let req = pb::AddLearnerRequest {
                    node_id: id,
                    addr: addr.to_owned(),
                    blocking: false,
                };
                self.leader_call(&status, "add the learner", move |mut c, ttl| {
                    let mut req = tonic::Request::new(req.clone());
                    req.set_timeout(ttl);
                    async move { c.add_learner(req).await }
                })
                .await?
            }
        };
        self.wait_caught_up(id, index).await.map_err(|why| {
            Error::Membership(format!(
                "node {id} was added as a learner (membership entry {index}) but {why}"
            ))
        })?;
        Ok(index)
    }

    /// Makes learner `id` a voter, once it has caught up with the leader. Returns the log index
    /// of the final membership entry.
    pub async fn promote(&self, id: NodeId) -> Result<u64, Error> {
        let status = self.cluster_status().await?;
        let m = &status.membership;
        if m.voters().contains(&id) {
            return Err(Error::Membership(format!("node {id} is already a voter")));
        }
        if !m.nodes.contains_key(&id) {
            return Err(Error::Membership(format!(
                "node {id} is not a learner of the group; add it first (add-learner)"
            )));
        }
        self.wait_caught_up(id, 0)
            .await
            .map_err(|why| Error::Membership(format!("not promoting node {id}: {why}")))?;
        self.alter(&status, pb::alter_membership_request::Change::Promote(id))
            .await
    }

    /// Removes member `id`: out of the voters (it is not kept as a learner) and out of the
    /// learners. Refuses to remove the last voter. Returns the log index of the final membership
    /// entry.
    pub async fn remove(&self, id: NodeId) -> Result<u64, Error> {
        let status = self.cluster_status().await?;
        let m = &status.membership;
        let voters = m.voters();
        if !m.nodes.contains_key(&id) {
            return Err(Error::Membership(format!(
                "node {id} is not a member of the group"
            )));
        }
        if voters.contains(&id) && voters.len() == 1 {
            return Err(Error::Membership(format!(
                "node {id} is the last voter: removing it would leave the group without voters"
            )));
        }
        self.alter(&status, pb::alter_membership_request::Change::Remove(id))
            .await
    }

    async fn alter(
        &self,
        status: &ClusterStatus,
        change: pb::alter_membership_request::Change,
    ) -> Result<u64, Error> {
        if status.membership.is_joint() {
            return Err(Error::Membership(
                "another membership change is in progress; retry once it is done".into(),
            ));
        }
        let req = pb::AlterMembershipRequest {
            change: Some(change),
        };
        self.leader_call(status, "change the membership", move |mut c, ttl| {
            let mut req = tonic::Request::new(req.clone());
            req.set_timeout(ttl);
            async move { c.alter_membership(req).await }
        })
        .await
    }

    /// Waits until the leader reports learner `id` has the log up to `index` at least and is at
    /// most [`AdminConfig::catch_up_lag`] entries behind the leader's last log index. The error
    /// says why it is not caught up.
    async fn wait_caught_up(&self, id: NodeId, index: u64) -> Result<u64, String> {
        let limit = self.config.catch_up_timeout;
        let deadline = Instant::now() + limit;
        loop {
            let last;
            match self.cluster_status().await {
                Ok(status) => match status.leader_status() {
                    Some(leader) => {
                        let head = leader.last_log_index.unwrap_or(0);
                        match leader.matched(id) {
                            Some(m)
                                if m >= index
                                    && head.saturating_sub(m) <= self.config.catch_up_lag =>
                            {
                                return Ok(m)
                            }
                            Some(m) => {
                                last = format!("it has the log up to {m}, the leader up to {head}")
                            }
                            None => {
                                last = format!(
                                    "the leader ({}) reports no progress for it yet",
                                    leader.id
                                )
                            }
                        }
                        if !status.membership.nodes.contains_key(&id) {
                            return Err("it is no longer a member of the group".into());
                        }
                    }
                    None => last = "no leader answered".into(),
                },
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(format!("it has not caught up within {limit:?}: {last}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends a membership call to the leader: first the one `status` names, else the known
    /// members in turn, following `NotLeader` answers. Retries only what certainly was not
    /// proposed (a `NotLeader` answer, a refused connection), within
    /// [`AdminConfig::request_timeout`].
    async fn leader_call<F, Fut>(
        &self,
        status: &ClusterStatus,
        what: &str,
        call: F,
    ) -> Result<u64, Error>
    where
        F: Fn(Client, Duration) -> Fut,
        Fut: Future<Output = Result<tonic::Response<pb::MembershipReply>, tonic::Status>>,
    {
        let budget = self.config.request_timeout;
        let deadline = Instant::now() + budget;
        // Where to try when no leader is named: the leader seen, every member, the seeds.
        let mut candidates: Vec<String> = status.leader_addr().into_iter().collect();
        for addr in status.membership.nodes.values().chain(self.addrs.iter()) {
            if !candidates.contains(addr) {
                candidates.push(addr.clone());
            }
        }
        let mut next = 0usize;
        let mut target = candidates[0].clone();
        let mut backoff = Duration::from_millis(50);
        let mut last = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::NoLeader(format!(
                    "could not {what} within {budget:?}: {last}"
                )));
            }
            let client = self.client(&target)?;
            let outcome = tokio::time::timeout(left, call(client, left)).await;
            let redirect = match outcome {
                Err(_) => {
                    return Err(Error::Rpc {
                        addr: target,
                        message: format!(
                            "no answer within {budget:?}; the change may still take effect \
                             (check status)"
                        ),
                    })
                }
                Ok(Ok(reply)) => match reply.into_inner().result {
                    Some(pb::membership_reply::Result::Index(index)) => return Ok(index),
                    Some(pb::membership_reply::Result::NotLeader(nl)) => {
                        last = format!("{target} is not the leader");
                        Some(nl.leader_addr).filter(|a| !a.is_empty() && *a != target)
                    }
                    None => {
                        return Err(Error::Rpc {
                            addr: target,
                            message: "empty reply".into(),
                        })
                    }
                },
                Ok(Err(s)) if s.code() == tonic::Code::FailedPrecondition => {
                    return Err(Error::Membership(s.message().to_owned()))
                }
                Ok(Err(s)) if not_delivered(&s) => {
                    last = format!("{target} unreachable");
                    None
                }
                Ok(Err(s)) => {
                    return Err(Error::Rpc {
                        addr: target,
                        message: format!(
                            "{:?}: {}; the change may or may not have taken effect (check \
                             status)",
                            s.code(),
                            s.message()
                        ),
                    })
                }
            };
            match redirect {
                Some(leader) => target = leader,
                None => {
                    next = (next + 1) % candidates.len();
                    target = candidates[next].clone();
                    tokio::time::sleep(
                        backoff.min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

/// The status whose membership is authoritative: a leader's (highest term), else the newest
/// membership any member reported.
fn authoritative<'a>(answered: &[&'a NodeStatus]) -> Option<&'a NodeStatus> {
    answered
        .iter()
        .filter(|s| s.role == Role::Leader)
        .max_by_key(|s| s.term)
        .or_else(|| answered.iter().max_by_key(|s| s.membership.key()))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(id: NodeId, role: Role, term: u64, log_index: u64, nodes: &[NodeId]) -> NodeStatus {
        NodeStatus {
            id,
            role,
            term,
            leader: None,
            last_log_index: Some(10),
            last_applied_index: Some(10),
            committed_index: Some(10),
            snapshot_index: None,
            purged_index: None,
            membership: Membership {
                log_index: Some(log_index),
                log_term: Some(term),
                nodes: nodes.iter().map(|n| (*n, format!("h:{n}"))).collect(),
                configs: vec![nodes.iter().copied().collect()],
            },
            replication: BTreeMap::new(),
            millis_since_quorum_ack: None,
        }
    }

    #[test]
    fn the_leader_membership_wins_over_a_newer_looking_one() {
        let leader = status(1, Role::Leader, 3, 5, &[1, 2, 3]);
        let stale = status(2, Role::Follower, 2, 9, &[1, 2]);
        assert_eq!(authoritative(&[&stale, &leader]).unwrap().id, 1);
        // Without a leader, the newest config (term first, then index).
        let newer = status(3, Role::Follower, 3, 1, &[1, 2, 3, 4]);
        assert_eq!(authoritative(&[&stale, &newer]).unwrap().id, 3);
        assert!(authoritative(&[]).is_none());
    }

    #[test]
    fn learners_are_members_that_do_not_vote() {
        let mut m = status(1, Role::Leader, 1, 1, &[1, 2, 3]).membership;
        m.nodes.insert(4, "h:4".into());
        assert_eq!(m.voters(), BTreeSet::from([1, 2, 3]));
        assert_eq!(m.learners(), BTreeSet::from([4]));
        assert!(!m.is_joint());
        m.configs.push(BTreeSet::from([1, 2, 3, 4]));
        assert!(m.is_joint());
        assert!(m.learners().is_empty());
    }

    #[test]
    fn a_reply_round_trips_and_unknown_states_are_refused() {
        let reply = pb::StatusReply {
            id: 2,
            state: "follower".into(),
            current_term: 4,
            leader_id: Some(1),
            leader_addr: "h:1".into(),
            last_log_index: Some(7),
            membership: Some(pb::MembershipStatus {
                log_index: Some(3),
                log_term: Some(1),
                nodes: vec![
                    pb::MemberNode {
                        id: 1,
                        addr: "h:1".into(),
                        voter: true,
                    },
                    pb::MemberNode {
                        id: 2,
                        addr: "h:2".into(),
                        voter: false,
                    },
                ],
                configs: vec![pb::VoterSet { ids: vec![1] }],
            }),
            ..Default::default()
        };
        let s = NodeStatus::from_pb(reply.clone()).unwrap();
        assert_eq!(s.role, Role::Follower);
        assert_eq!(s.leader, Some((1, Some("h:1".into()))));
        assert_eq!(s.membership.learners(), BTreeSet::from([2]));
        assert_eq!(s.matched(2), None);
        let bad = pb::StatusReply {
            state: "boss".into(),
            ..reply
        };
        assert!(NodeStatus::from_pb(bad).is_err());
    }

    #[tokio::test]
    async fn an_unreachable_member_is_reported_not_hidden() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let admin = RaftAdminClient::new(vec![addr.clone()], AdminConfig::default()).unwrap();
        let err = admin.node_status(&addr).await.unwrap_err();
        assert!(err.to_string().contains("unreachable"), "{err}");
        let err = admin.cluster_status().await.unwrap_err();
        assert!(err.to_string().contains("no member answered"), "{err}");
        assert!(RaftAdminClient::new(vec![" ".into()], AdminConfig::default()).is_err());
    }
}
