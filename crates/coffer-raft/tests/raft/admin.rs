//! [`RaftAdminClient`] against a real group on loopback ports: every member's status, a learner
//! added and caught up, promoted, members removed (the leader included), the refusals (last
//! voter, unknown member, a voter promoted again), and a stopped member shown as unreachable.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use coffer_raft::admin::{ClusterStatus, Role};
use coffer_raft::{AdminConfig, Error, NodeId, RaftAdminClient, RaftConfig, RaftNode};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::kv::{self, KvApp};

type Node = RaftNode<KvApp>;

fn config() -> RaftConfig {
    RaftConfig {
        heartbeat_interval: Duration::from_millis(100),
        election_timeout_min: Duration::from_millis(600),
        election_timeout_max: Duration::from_millis(1200),
        request_timeout: Duration::from_secs(5),
        ..RaftConfig::default()
    }
}

async fn start(id: NodeId, root: &TempDir) -> (Node, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let dir = root.path().join(format!("node-{id}"));
    let node = RaftNode::start(id, &dir, listener, Arc::new(KvApp), config())
        .await
        .expect("start node");
    (node, addr)
}

/// Polls the group's status until `check` accepts it; fails after 20 s with the last status.
async fn status_until(
    admin: &RaftAdminClient,
    what: &str,
    check: impl Fn(&ClusterStatus) -> bool,
) -> ClusterStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = admin.cluster_status().await;
        if let Ok(s) = &status {
            if check(s) {
                return s.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(v: &[NodeId]) -> BTreeSet<NodeId> {
    v.iter().copied().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn membership_is_administered_from_outside_the_group() {
    let root = TempDir::new().unwrap();
    let mut nodes: BTreeMap<NodeId, (Node, String)> = BTreeMap::new();
    for id in 1..=3 {
        nodes.insert(id, start(id, &root).await);
    }
    let members: BTreeMap<NodeId, String> =
        nodes.iter().map(|(id, (_, a))| (*id, a.clone())).collect();
    nodes[&1].0.initialize(members).await.unwrap();
    // A client that knows one member only finds the others from the membership.
    let one = RaftAdminClient::new(vec![nodes[&2].1.clone()], AdminConfig::default()).unwrap();
    let status = status_until(&one, "a leader and 3 members", |s| {
        s.leader.is_some() && s.members.iter().all(|m| m.status.is_ok())
    })
    .await;
    assert_eq!(status.membership.voters(), ids(&[1, 2, 3]));
    assert!(status.membership.learners().is_empty());
    let leader = status.leader.unwrap();
    let ls = status.leader_status().unwrap();
    assert_eq!(ls.role, Role::Leader);
    for m in &status.members {
        let s = m.status.as_ref().unwrap();
        assert_eq!(s.id, m.id);
        assert_eq!(s.leader.as_ref().map(|l| l.0), Some(leader), "{s:?}");
        if m.id != leader {
            assert_eq!(s.role, Role::Follower);
        }
    }
    for _ in 0..5 {
        nodes[&leader].0.client_write(kv::incr("n")).await.unwrap();
    }
    let admin = RaftAdminClient::new(
        nodes.values().map(|(_, a)| a.clone()).collect(),
        AdminConfig {
            catch_up_timeout: Duration::from_secs(20),
            ..AdminConfig::default()
        },
    )
    .unwrap();

    // A fourth node: added as a learner, caught up, then promoted.
    nodes.insert(4, start(4, &root).await);
    let addr4 = nodes[&4].1.clone();
    let err = admin.promote(4).await.unwrap_err();
    assert!(matches!(err, Error::Membership(_)), "{err}");
    admin.add_learner(4, &addr4).await.unwrap();
    let s = admin.cluster_status().await.unwrap();
    assert_eq!(s.membership.learners(), ids(&[4]));
    let leader_status = s.leader_status().unwrap();
    let head = leader_status.last_log_index.unwrap();
    assert!(leader_status.matched(4).unwrap() + 100 >= head);
    // It has the data too (applied shortly after it has the log).
    nodes[&4]
        .0
        .raft()
        .wait(Some(Duration::from_secs(10)))
        .applied_index_at_least(leader_status.last_applied_index, "the learner to apply")
        .await
        .unwrap();
    assert_eq!(kv::get(nodes[&4].0.db(), "n"), Some("5".into()));
    // Adding it again at the same address is harmless. A node that does not run, or that is
    // another node, is refused before the membership changes.
    admin.add_learner(4, &addr4).await.unwrap();
    let err = admin.add_learner(5, "127.0.0.1:1").await.unwrap_err();
    assert!(err.to_string().contains("does not answer"), "{err}");
    let err = admin.add_learner(9, &addr4).await.unwrap_err();
    assert!(err.to_string().contains("is node 4, not node 9"), "{err}");
    let s = admin.cluster_status().await.unwrap();
    assert_eq!(s.membership.nodes.len(), 4);

    admin.promote(4).await.unwrap();
    let s = admin.cluster_status().await.unwrap();
    assert_eq!(s.membership.voters(), ids(&[1, 2, 3, 4]));
    let err = admin.promote(4).await.unwrap_err();
    assert!(err.to_string().contains("already a voter"), "{err}");

    // Removing the leader: the others elect a new one and keep writing.
    admin.remove(leader).await.unwrap();
    let s = status_until(&admin, "a new leader among 3 voters", |s| {
        s.membership.voters().len() == 3 && s.leader.is_some_and(|l| l != leader)
    })
    .await;
    assert!(!s.membership.nodes.contains_key(&leader));
    let new_leader = s.leader.unwrap();
    nodes[&new_leader]
        .0
        .client_write(kv::incr("n"))
        .await
        .unwrap();
    let err = admin.remove(leader).await.unwrap_err();
    assert!(err.to_string().contains("not a member"), "{err}");

    // A stopped member is shown unreachable, not dropped.
    let (gone, _) = nodes.remove(&leader).unwrap();
    gone.shutdown().await.unwrap();
    let victim = *s
        .membership
        .voters()
        .iter()
        .find(|id| **id != new_leader)
        .unwrap();
    let (stopped, _) = nodes.remove(&victim).unwrap();
    stopped.shutdown().await.unwrap();
    let s = admin.cluster_status().await.unwrap();
    let m = s.members.iter().find(|m| m.id == victim).unwrap();
    assert!(m.status.is_err(), "{m:?}");
    assert!(m.voter);

    // Down to one voter (the stopped one first, while a quorum remains), then the last is kept.
    admin.remove(victim).await.unwrap();
    let s = admin.cluster_status().await.unwrap();
    let other = *s
        .membership
        .voters()
        .iter()
        .find(|id| **id != new_leader)
        .unwrap();
    admin.remove(other).await.unwrap();
    let s = status_until(&admin, "one voter left", |s| {
        s.membership.voters().len() == 1 && s.leader.is_some()
    })
    .await;
    let last = s.leader.unwrap();
    let err = admin.remove(last).await.unwrap_err();
    assert!(err.to_string().contains("last voter"), "{err}");
    for (_, (node, _)) in nodes {
        node.shutdown().await.unwrap();
    }
}
