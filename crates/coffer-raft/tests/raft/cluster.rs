//! A three-node group on loopback ports chosen by the OS: writes through the leader and through
//! followers, the loss of the leader, a restarted node catching up by snapshot, and a minority
//! that refuses writes within a bounded time.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coffer_raft::{Error, NodeId, RaftConfig, RaftNode};
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
        // Small, so that the test crosses several snapshots and the log gets purged.
        snapshot_logs_since_last: 20,
        max_in_snapshot_log_to_keep: 0,
        request_timeout: Duration::from_secs(5),
        ..RaftConfig::default()
    }
}

/// Polls `check` until it returns `Some`, failing the test after `timeout`.
async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(id: NodeId, dir: &Path, listener: TcpListener) -> Node {
    RaftNode::start(id, dir, listener, Arc::new(KvApp), config())
        .await
        .expect("start node")
}

/// Binds the address a stopped node had again (the group knows the node by it).
async fn rebind(addr: SocketAddr) -> TcpListener {
    eventually(
        "the old address to be free",
        Duration::from_secs(10),
        || async move { TcpListener::bind(addr).await.ok() },
    )
    .await
}

/// The leader agreed on by every node of `nodes`.
async fn leader_of(nodes: &[&Node]) -> NodeId {
    eventually("a leader", Duration::from_secs(20), || async {
        let leaders: Vec<Option<NodeId>> =
            nodes.iter().map(|n| n.metrics().current_leader).collect();
        let first = leaders[0]?;
        let all_agree = leaders.iter().all(|l| *l == Some(first));
        let leader_is_up = nodes.iter().any(|n| n.id() == first);
        (all_agree && leader_is_up).then_some(first)
    })
    .await
}

async fn wait_applied(node: &Node, index: u64) {
    eventually(
        &format!("node {} to apply index {index}", node.id()),
        Duration::from_secs(20),
        || async { (node.metrics().last_applied.map(|l| l.index) >= Some(index)).then_some(()) },
    )
    .await;
}

async fn incr(node: &Node, key: &str) -> (u64, u64) {
    let written = node.client_write(kv::incr(key)).await.expect("write");
    let n = String::from_utf8(written.response)
        .unwrap()
        .parse()
        .unwrap();
    (written.index, n)
}

fn pos(slots: &[Slot], id: NodeId) -> usize {
    slots.iter().position(|s| s.id == id).expect("known node")
}

struct Slot {
    id: NodeId,
    dir: PathBuf,
    addr: SocketAddr,
    node: Option<Node>,
}

impl Slot {
    fn node(&self) -> &Node {
        self.node.as_ref().expect("node running")
    }

    async fn stop(&mut self) {
        self.node
            .take()
            .expect("node running")
            .shutdown()
            .await
            .expect("shutdown");
    }

    async fn restart(&mut self) {
        assert!(self.node.is_none());
        let listener = rebind(self.addr).await;
        self.node = Some(start(self.id, &self.dir, listener).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_survive_leader_loss_and_catch_up_by_snapshot() {
    let root = TempDir::new().unwrap();
    let mut slots = Vec::new();
    for id in 1..=3u64 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dir = root.path().join(format!("node-{id}"));
        let node = start(id, &dir, listener).await;
        slots.push(Slot {
            id,
            dir,
            addr,
            node: Some(node),
        });
    }
    let members: BTreeMap<NodeId, String> =
        slots.iter().map(|s| (s.id, s.addr.to_string())).collect();
    slots[0].node().initialize(members.clone()).await.unwrap();
    // Initializing again (a restarted bootstrap node) is harmless.
    slots[0].node().initialize(members).await.unwrap();

    let nodes: Vec<&Node> = slots.iter().map(Slot::node).collect();
    let leader = leader_of(&nodes).await;
    let follower = slots.iter().find(|s| s.id != leader).unwrap().id;

    // Writes through the leader and through a follower (forwarded) interleave in one order.
    let mut expected = 0;
    for i in 0..10 {
        let via = if i % 2 == 0 { leader } else { follower };
        let (_, n) = incr(slots[pos(&slots, via)].node(), "counter").await;
        expected += 1;
        assert_eq!(n, expected, "write {i} via node {via}");
    }
    // A linearizable read on a follower sees every acknowledged write.
    let f = slots[pos(&slots, follower)].node();
    let read_index = f.linearizable_read().await.unwrap();
    assert!(f.metrics().last_applied.map(|l| l.index) >= Some(read_index));
    assert_eq!(kv::get(f.db(), "counter"), Some(expected.to_string()));

    // The leader goes away; the two others elect a new one and keep writing.
    let old_leader = leader;
    {
        let i = pos(&slots, old_leader);
        slots[i].stop()
    }
    .await;
    let alive: Vec<&Node> = slots.iter().filter_map(|s| s.node.as_ref()).collect();
    let leader = leader_of(&alive).await;
    assert_ne!(leader, old_leader);
    let follower = alive
        .iter()
        .map(|n| n.id())
        .find(|id| *id != leader)
        .unwrap();
    let mut last_index = 0;
    for i in 0..60 {
        let via = if i % 3 == 0 { follower } else { leader };
        let (index, n) = incr(slots[pos(&slots, via)].node(), "counter").await;
        expected += 1;
        assert_eq!(n, expected);
        last_index = index;
    }
    // The leader has snapshotted and purged the log past what the stopped node has.
    let leader_node = slots[pos(&slots, leader)].node();
    let purged = eventually(
        "the leader to purge its log",
        Duration::from_secs(20),
        || async {
            leader_node
                .metrics()
                .purged
                .map(|p| p.index)
                .filter(|p| *p > 20)
        },
    )
    .await;

    // The old leader comes back: it can only catch up by snapshot.
    {
        let i = pos(&slots, old_leader);
        slots[i].restart()
    }
    .await;
    let back = slots[pos(&slots, old_leader)].node();
    wait_applied(back, last_index).await;
    let snapshot = back.metrics().snapshot.map(|s| s.index).unwrap_or(0);
    assert!(
        snapshot >= purged,
        "node {old_leader} should have installed a snapshot past {purged}, has {snapshot}"
    );
    assert_eq!(kv::get(back.db(), "counter"), Some(expected.to_string()));
    // Writes through it work too, and all three state machines are identical.
    let (index, n) = incr(back, "counter").await;
    expected += 1;
    assert_eq!(n, expected);
    for s in &slots {
        wait_applied(s.node(), index).await;
    }
    let dumps: Vec<_> = slots.iter().map(|s| kv::dump(s.node().db())).collect();
    assert_eq!(dumps[0], dumps[1]);
    assert_eq!(dumps[1], dumps[2]);

    // Two of three stopped: a write fails within the request deadline instead of hanging, and
    // succeeds once a quorum is back.
    let survivor = leader;
    let others: Vec<NodeId> = slots
        .iter()
        .map(|s| s.id)
        .filter(|id| *id != survivor)
        .collect();
    for id in &others {
        {
            let i = pos(&slots, *id);
            slots[i].stop()
        }
        .await;
    }
    let started = Instant::now();
    let err = slots[pos(&slots, survivor)]
        .node()
        .client_write(kv::incr("counter"))
        .await
        .expect_err("a minority must not accept writes");
    let took = started.elapsed();
    assert!(
        took < config().request_timeout + Duration::from_secs(2),
        "the write failed only after {took:?}"
    );
    assert!(
        matches!(err, Error::Timeout(_) | Error::NoLeader(_)),
        "unexpected error {err:?}"
    );
    // That write may still commit once the quorum is back (its outcome was unknown).
    {
        let i = pos(&slots, others[0]);
        slots[i].restart()
    }
    .await;
    let nodes: Vec<&Node> = slots.iter().filter_map(|s| s.node.as_ref()).collect();
    leader_of(&nodes).await;
    let (_, n) = incr(slots[pos(&slots, others[0])].node(), "counter").await;
    assert!(
        n == expected + 1 || n == expected + 2,
        "counter {n} after {expected}"
    );

    for s in &mut slots {
        if s.node.is_some() {
            s.stop().await;
        }
    }
}
