//! `coffer meta`: one member of the metadata Raft group. It serves Raft (`proto/raft.proto`)
//! and the metadata API gateways use (`proto/meta.proto`) on one address, and either
//! bootstraps the group (`--initial-members`) or asks an existing member to add it as a learner
//! (`--join`).

use std::collections::BTreeMap;
use std::time::Duration;

use coffer_meta::MetaNode;
use coffer_raft::{NodeId, Raft, RaftConfig};
use serde::Serialize;
use tokio::net::TcpListener;

use super::common::{shutdown_signal, write_file_atomic};
use super::health::{self, AdminServer, MetricsPage, Probe};
use super::CmdError;
use crate::cli::MetaArgs;

/// How long `--join` keeps trying while the group has no leader or is not reachable yet.
const JOIN_PATIENCE: Duration = Duration::from_secs(60);
/// How long the admin listener may finish its requests after SIGINT/SIGTERM.
const ADMIN_GRACE: Duration = Duration::from_secs(5);
/// How long a readiness check waits for the Raft core to tell its commit index.
const COMMITTED_WAIT: Duration = Duration::from_secs(1);
/// How long a readiness check lets entries already committed reach the state machine (under
/// load a member always has a few in flight).
const APPLY_WAIT: Duration = Duration::from_secs(1);

/// What the ready file says.
#[derive(Serialize)]
struct Ready {
    id: NodeId,
    /// The bound address (Raft and the metadata API).
    listen: String,
    /// The address the group knows this member by.
    advertise: String,
    /// The admin listener (`--admin-listen`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    admin: Option<String>,
    pid: u32,
}

/// What `coffer meta`'s admin listener reports, from the member's Raft state.
///
/// Ready: the member is a voter or learner of the group, knows a leader, and has applied the
/// entries up to the commit index it knows. A member whose group lost its quorum stops being
/// ready: a follower ends up a candidate that knows no leader, and a leader that has not heard
/// from a quorum for [`MetaHealth::lease`] says so (openraft does not make it step down).
struct MetaHealth {
    id: NodeId,
    raft: Raft,
    /// The longest a leader may go without a quorum's acknowledgement and stay ready: as long
    /// as a follower waits for a leader before it calls an election.
    lease: Duration,
}

impl MetaHealth {
    /// The commit index the member knows, if the Raft core tells it in time.
    async fn committed(&self) -> Option<u64> {
        tokio::time::timeout(
            COMMITTED_WAIT,
            self.raft
                .with_raft_state(|st| st.committed.map(|l| l.index)),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .flatten()
    }
}

impl Probe for MetaHealth {
    async fn ready(&self) -> Result<(), String> {
        let m = self.raft.metrics().borrow().clone();
        if m.running_state.is_err() {
            return Err("Raft stopped on this member".into());
        }
        if m.membership_config
            .membership()
            .get_node(&self.id)
            .is_none()
        {
            return Err(format!(
                "member {} is not a voter or learner of the group",
                self.id
            ));
        }
        let leader = m.current_leader.ok_or("no leader known")?;
        if leader == self.id {
            let lease = self.lease.as_millis() as u64;
            match m.millis_since_quorum_ack {
                Some(ms) if ms <= lease => {}
                Some(ms) => {
                    return Err(format!(
                        "this leader has not heard from a quorum for {ms} ms"
                    ))
                }
                None => return Err("this leader has not heard from a quorum yet".into()),
            }
        }
        let committed = self.committed().await.ok_or("commit index unknown")?;
        match self
            .raft
            .wait(Some(APPLY_WAIT))
            .applied_index_at_least(Some(committed), "readiness")
            .await
        {
            Ok(_) => Ok(()),
            Err(_) => {
                let applied = self.raft.metrics().borrow().last_applied.map(|l| l.index);
                Err(format!(
                    "applied index {applied:?} is behind the commit index {committed}"
                ))
            }
        }
    }

    async fn metrics(&self) -> String {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voter = membership.voter_ids().any(|v| v == self.id);
        let mut page = MetricsPage::new("coffer_meta_raft");
        let flag = |b: bool| i64::from(b);
        let leads = m.current_leader == Some(self.id);
        page.gauge("is_leader", "1 if this member leads the group", flag(leads));
        page.gauge(
            "has_leader",
            "1 if this member knows a leader",
            flag(m.current_leader.is_some()),
        );
        page.gauge("is_voter", "1 if this member is a voter", flag(voter));
        page.gauge_u64("term", "The current term", m.current_term);
        let indexes = [
            (
                "last_log_index",
                "The last index in the log",
                m.last_log_index,
            ),
            (
                "applied_index",
                "The last index applied to the state machine",
                m.last_applied.map(|l| l.index),
            ),
            (
                "committed_index",
                "The commit index this member knows",
                self.committed().await,
            ),
            (
                "snapshot_index",
                "The last index in the latest snapshot",
                m.snapshot.map(|l| l.index),
            ),
        ];
        for (name, help, value) in indexes {
            if let Some(v) = value {
                page.gauge_u64(name, help, v);
            }
        }
        page.gauge_u64(
            "voters",
            "Voters in the membership",
            membership.voter_ids().count() as u64,
        );
        page.gauge_u64(
            "learners",
            "Learners in the membership",
            membership.learner_ids().count() as u64,
        );
        if let Some(ms) = m.millis_since_quorum_ack {
            page.gauge_f64(
                "seconds_since_quorum_ack",
                "On the leader: time since a quorum last acknowledged it",
                ms as f64 / 1000.0,
            );
        }
        page.render()
    }
}

/// Parses `--initial-members 1=host:port,2=host:port,...`.
pub fn parse_members(spec: &str) -> Result<BTreeMap<NodeId, String>, CmdError> {
    let mut members = BTreeMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("--initial-members: {item:?} is not ID=ADDR"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|e| format!("--initial-members: bad id {id:?}: {e}"))?;
        let addr = addr.trim();
        if addr.is_empty() {
            return Err(format!("--initial-members: no address for {id}").into());
        }
        if members.insert(id, addr.to_owned()).is_some() {
            return Err(format!("--initial-members: {id} is given twice").into());
        }
    }
    if members.is_empty() {
        return Err("--initial-members: no member".into());
    }
    Ok(members)
}

/// Runs `coffer meta` until SIGINT/SIGTERM.
pub async fn run(args: MetaArgs) -> Result<(), CmdError> {
    let members = args
        .initial_members
        .as_deref()
        .map(parse_members)
        .transpose()?;
    std::fs::create_dir_all(&args.data_dir)?;
    let data = args.data_dir.canonicalize()?;
    let listener = TcpListener::bind(args.listen).await?;
    let bound = listener.local_addr()?;
    let advertise = match (&args.advertise, &members) {
        (Some(a), _) => a.clone(),
        (None, Some(m)) => m
            .get(&args.id)
            .cloned()
            .ok_or_else(|| format!("--initial-members does not name this member ({})", args.id))?,
        (None, None) => bound.to_string(),
    };
    if let Some(m) = &members {
        if m.get(&args.id).is_some_and(|a| *a != advertise) {
            return Err(format!(
                "--initial-members names {} for member {}, --advertise says {advertise}",
                m[&args.id], args.id
            )
            .into());
        }
    }
    let admin_listener = health::bind(args.admin_listen).await?;
    let config = RaftConfig {
        snapshot_logs_since_last: args.snapshot_logs,
        max_in_snapshot_log_to_keep: args.snapshot_keep_logs,
        ..RaftConfig::default()
    };
    let lease = config.election_timeout_max;
    let node = MetaNode::start(args.id, &data, listener, config).await?;
    // Serving already while the member joins: live, not ready.
    let admin = AdminServer::spawn(
        admin_listener,
        MetaHealth {
            id: args.id,
            raft: node.raft_node().raft().clone(),
            lease,
        },
    )?;
    let joined = match (&members, &args.join) {
        (Some(m), _) => node.initialize(m.clone()).await.map(drop),
        (None, Some(via)) => node.join(via, &advertise, JOIN_PATIENCE).await.map(drop),
        // A restarted member: its membership is in its log.
        (None, None) => Ok(()),
    };
    if let Err(e) = joined {
        if let Some(a) = admin {
            a.stop(ADMIN_GRACE).await?;
        }
        if let Err(stop) = node.shutdown().await {
            tracing::warn!(error = %stop, "stopping the meta node failed");
        }
        return Err(e.into());
    }

    println!("Coffer meta member {} is running.", args.id);
    println!("  Listening on:      {bound} (Raft and metadata gRPC)");
    println!("  Known as:          {advertise}");
    println!("  Data directory:    {}", data.display());
    if let Some(a) = &admin {
        println!("  Admin endpoint:    http://{}", a.addr);
    }
    if let Some(path) = &args.ready_file {
        let r = Ready {
            id: args.id,
            listen: bound.to_string(),
            advertise,
            admin: AdminServer::addr_of(&admin),
            pid: std::process::id(),
        };
        write_file_atomic(path, serde_json::to_string_pretty(&r)?.as_bytes(), 0o644)?;
    }

    shutdown_signal().await;
    if let Some(a) = admin {
        a.stop(ADMIN_GRACE).await?;
    }
    node.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse() {
        let m = parse_members("1=127.0.0.1:7001, 2=h:7002,3=[::1]:7003").unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[&3], "[::1]:7003");
        for bad in ["", "1", "x=a:1", "1=", "1=a:1,1=b:2"] {
            assert!(parse_members(bad).is_err(), "{bad:?}");
        }
    }
}
