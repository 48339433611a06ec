//! The metadata state machine replicated by Raft, on loopback ports chosen by the OS: a
//! three-member group used through `GrpcMetaClient` (leader discovery, loss of the leader,
//! identical states, a minority that fails fast), and the single-member group `coffer dev` runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer_meta::raft::MetaNode;
use coffer_meta::{
    BucketRecord, Command, Envelope, GrpcMetaClient, GrpcMetaConfig, MetaClient, MetaError,
    ObjectHeaders, ObjectVersion, PartRef, SseAlgorithm, VersionQuery, Versioning,
};
use coffer_raft::{NodeId, RaftConfig};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// How long a test waits for a leader, a catch-up, a free port, before failing.
const PATIENCE: Duration = Duration::from_secs(30);

fn config() -> RaftConfig {
    RaftConfig {
        heartbeat_interval: Duration::from_millis(100),
        election_timeout_min: Duration::from_millis(600),
        election_timeout_max: Duration::from_millis(1200),
        // Small, so that a member that was down catches up by snapshot.
        snapshot_logs_since_last: 20,
        max_in_snapshot_log_to_keep: 0,
        request_timeout: Duration::from_secs(5),
        ..RaftConfig::default()
    }
}

fn bucket(name: &str) -> Command {
    Command::CreateBucket(BucketRecord {
        v: 1,
        name: name.into(),
        created_ms: 1,
        region: "us-east-1".into(),
        owner_id: "owner".into(),
        versioning: Versioning::Enabled,
        object_lock_enabled: false,
        default_retention: None,
        encryption: None,
        directory: false,
    })
}

fn envelope(generation: u64) -> Envelope {
    Envelope {
        v: 1,
        algorithm: SseAlgorithm::AwsKms,
        kms_key_arn: Some("arn:aws:kms:us-east-1:111122223333:key/k".into()),
        wrapped_dek: vec![1, 2, 3],
        context: BTreeMap::new(),
        user_context: None,
        bucket_key_id: None,
        second_wrapped_dek: None,
        sse_c_key_hmac: None,
        sse_c_salt: None,
        sse_c_key_md5: None,
        generation,
    }
}

fn put(bucket: &str, key: &str, version_id: &str, blob: u8) -> Command {
    Command::PutObject {
        bucket: bucket.into(),
        version: ObjectVersion {
            v: 1,
            key: key.into(),
            version_id: version_id.into(),
            seq: 0,
            delete_marker: false,
            size: 5,
            etag: format!("{blob:032x}"),
            last_modified_ms: 1_000,
            headers: ObjectHeaders::default(),
            checksum: None,
            parts: vec![PartRef {
                part_number: 0,
                blob_id: [blob; 16],
                size: 5,
                chunk_size: 1 << 20,
                etag: format!("{blob:032x}"),
                checksum: None,
            }],
            envelope: Some(envelope(1)),
            retention: None,
            legal_hold: false,
            multipart_parts: 0,
        },
        condition: None,
    }
}

fn rewrap(bucket: &str, key: &str, expected_generation: u64) -> Command {
    Command::UpdateEnvelope {
        bucket: bucket.into(),
        key: key.into(),
        version_id: None,
        expected_generation,
        expected_seq: None,
        envelope: envelope(expected_generation + 1),
    }
}

/// Binds `addr` again once the member that had it is stopped (the group knows it by it).
async fn rebind(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("{addr} not free yet: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{addr} stays busy: {e}"),
        }
    }
}

struct Member {
    id: NodeId,
    dir: PathBuf,
    addr: SocketAddr,
    node: Option<MetaNode>,
}

impl Member {
    fn node(&self) -> &MetaNode {
        self.node.as_ref().expect("member running")
    }

    async fn stop(&mut self) {
        let node = self.node.take().expect("member running");
        node.shutdown().await.expect("shutdown");
    }

    async fn restart(&mut self) {
        assert!(self.node.is_none());
        let listener = rebind(self.addr).await;
        self.node = Some(start(self.id, &self.dir, listener).await);
    }
}

async fn start(id: NodeId, dir: &Path, listener: TcpListener) -> MetaNode {
    MetaNode::start(id, dir, listener, config())
        .await
        .expect("start member")
}

/// Waits until every running member names the same running member as leader; returns its id.
async fn leader_of(members: &[Member]) -> NodeId {
    let running: Vec<&MetaNode> = members.iter().filter_map(|m| m.node.as_ref()).collect();
    let ids: Vec<NodeId> = running.iter().map(|n| n.id()).collect();
    let deadline = Instant::now() + PATIENCE;
    'elect: loop {
        assert!(
            Instant::now() < deadline,
            "the members never agreed on a leader"
        );
        // Wait (on metrics changes, not on time) for the first member to know a running leader,
        // then for the others to name the same one.
        let left = deadline.saturating_duration_since(Instant::now());
        let m = running[0]
            .raft_node()
            .raft()
            .wait(Some(left))
            .metrics(
                |m| m.current_leader.is_some_and(|l| ids.contains(&l)),
                "a running leader",
            )
            .await
            .expect("a leader is elected");
        let leader = m.current_leader.expect("checked");
        for n in &running[1..] {
            let agreed = n
                .raft_node()
                .raft()
                .wait(Some(Duration::from_secs(3)))
                .metrics(|m| m.current_leader == Some(leader), "the same leader")
                .await;
            if agreed.is_err() {
                continue 'elect;
            }
        }
        return leader;
    }
}

/// Waits until every running member has applied what the leader had applied when called.
async fn converge(members: &[Member], leader: NodeId) -> u64 {
    let leader_node = members.iter().find(|m| m.id == leader).unwrap().node();
    let index = leader_node
        .raft_node()
        .metrics()
        .last_applied
        .map_or(0, |l| l.index);
    for m in members.iter().filter(|m| m.node.is_some()) {
        m.node()
            .raft_node()
            .raft()
            .wait(Some(PATIENCE))
            .applied_index_at_least(Some(index), "catch up")
            .await
            .unwrap_or_else(|e| panic!("member {} did not apply {index}: {e}", m.id));
    }
    index
}

fn member(members: &mut [Member], id: NodeId) -> &mut Member {
    members
        .iter_mut()
        .find(|m| m.id == id)
        .expect("known member")
}

/// Starts members `1..=n` on loopback ports chosen by the OS and bootstraps them as one group;
/// returns them and their addresses.
async fn start_group(root: &Path, n: u64) -> (Vec<Member>, BTreeMap<NodeId, String>) {
    let mut members = Vec::new();
    for id in 1..=n {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let dir = root.join(format!("meta-{id}"));
        let node = start(id, &dir, listener).await;
        members.push(Member {
            id,
            dir,
            addr,
            node: Some(node),
        });
    }
    let addrs: BTreeMap<NodeId, String> =
        members.iter().map(|m| (m.id, m.addr.to_string())).collect();
    members[0].node().initialize(addrs.clone()).await.unwrap();
    (members, addrs)
}

/// Stops every member but `leader`; returns their ids.
async fn stop_followers(members: &mut [Member], leader: NodeId) -> Vec<NodeId> {
    let followers: Vec<NodeId> = members
        .iter()
        .map(|m| m.id)
        .filter(|id| *id != leader)
        .collect();
    for id in &followers {
        member(members, *id).stop().await;
    }
    followers
}

/// Writes `cfg/<name>` through the client.
async fn put_config(client: &GrpcMetaClient, name: &str) -> Result<(), MetaError> {
    client
        .apply(Command::PutConfig {
            name: format!("cfg/{name}"),
            value: name.as_bytes().to_vec(),
        })
        .await
        .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_members_over_grpc_survive_the_leader_and_fail_fast_without_quorum() {
    let root = TempDir::new().unwrap();
    let (mut members, addrs) = start_group(root.path(), 3).await;
    let leader = leader_of(&members).await;
    let client =
        GrpcMetaClient::new(addrs.values().cloned().collect(), GrpcMetaConfig::default()).unwrap();

    // Writes and reads through the client, which finds the leader by itself.
    client.apply(bucket("b")).await.unwrap();
    assert_eq!(client.leader(), Some(addrs[&leader].clone()));
    let first = client.apply(put("b", "k", "v1", 1)).await.unwrap();
    let results = client
        .apply_batch(vec![
            put("b", "k", "v2", 2),
            put("b", "k", "v2", 3), // duplicate version id: fails alone
            bucket("b"),            // exists: fails alone
            put("b", "other", "v3", 3),
        ])
        .await
        .unwrap();
    assert!(results[0].as_ref().unwrap().seq > first.seq);
    assert!(matches!(results[1], Err(MetaError::Invalid(_))));
    assert!(matches!(results[2], Err(MetaError::BucketAlreadyExists(_))));
    assert!(results[3].is_ok());
    assert_eq!(
        client.get_object("b", "k", None).await.unwrap().version_id,
        "v2"
    );
    assert!(matches!(
        client.get_object("b", "nope", None).await,
        Err(MetaError::NoSuchKey(_))
    ));
    // Blobs 1, 2 and 3 are referenced (v1 stays as a noncurrent version), 9 is not.
    assert_eq!(
        client
            .blob_references(&[[1; 16], [2; 16], [3; 16], [9; 16]])
            .await
            .unwrap(),
        [true, true, true, false]
    );
    // The compare-and-set of a rewrap is decided by the state machine.
    client.apply(rewrap("b", "k", 1)).await.unwrap();
    assert!(matches!(
        client.apply(rewrap("b", "k", 1)).await,
        Err(MetaError::GenerationMismatch {
            expected: 1,
            found: 2
        })
    ));
    // A member that is not the leader forwards in-process writes, and reads linearizably.
    let follower = members.iter().find(|m| m.id != leader).unwrap().node();
    follower
        .client()
        .apply(put("b", "k", "v4", 4))
        .await
        .unwrap();
    assert_eq!(
        follower
            .client()
            .get_object("b", "k", None)
            .await
            .unwrap()
            .version_id,
        "v4"
    );
    assert_eq!(
        client.get_object("b", "k", None).await.unwrap().version_id,
        "v4"
    );

    // The leader goes away: the same client keeps writing, to the new leader.
    let old_leader = leader;
    let applied_at_stop = member(&mut members, old_leader)
        .node()
        .raft_node()
        .metrics()
        .last_applied
        .map_or(0, |l| l.index);
    member(&mut members, old_leader).stop().await;
    let started = Instant::now();
    // The client retries by itself (with the same request id) until the new leader answers.
    put_config(&client, "after-loss-0").await.unwrap();
    eprintln!(
        "the first write after the loss of the leader took {:?}",
        started.elapsed()
    );
    for i in 1..30 {
        put_config(&client, &format!("after-loss-{i}"))
            .await
            .unwrap();
    }
    let leader = leader_of(&members).await;
    assert_ne!(leader, old_leader);
    assert_eq!(client.leader(), Some(addrs[&leader].clone()));

    // The old leader comes back and catches up by snapshot (the log it misses is purged); the
    // three states are then identical, as the members report them over gRPC.
    member(&mut members, leader)
        .node()
        .raft_node()
        .raft()
        .wait(Some(PATIENCE))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index > applied_at_stop),
            "the leader to purge the log the stopped member misses",
        )
        .await
        .expect("the log is purged");
    member(&mut members, old_leader).restart().await;
    put_config(&client, "back").await.unwrap();
    let index = converge(&members, leader).await;
    let mut digests = Vec::new();
    for m in &members {
        let digest = client.node_digest(&m.addr.to_string()).await.unwrap();
        assert_eq!(digest, m.node().digest().await.unwrap());
        digests.push(digest);
    }
    assert!(digests[0].entries > 30, "{digests:?}");
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    assert!(digests[0].last_applied <= index);
    assert_eq!(
        client
            .list_object_versions(
                "b",
                &VersionQuery {
                    max_keys: 100,
                    ..Default::default()
                }
            )
            .await
            .unwrap()
            .versions
            .len(),
        4
    );

    // Two of three stopped, the survivor being the leader: a write fails fast, it does not hang.
    let followers = stop_followers(&mut members, leader).await;
    let started = Instant::now();
    let err = put_config(&client, "minority-1").await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, MetaError::Unavailable(_)), "{err:?}");
    assert!(took < Duration::from_secs(10), "failed only after {took:?}");
    eprintln!("minority with the leader: the write failed after {took:?}: {err}");
    let started = Instant::now();
    let err = client.get_config("cfg/back").await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, MetaError::Unavailable(_)), "{err:?}");
    assert!(took < Duration::from_secs(10), "failed only after {took:?}");
    eprintln!("minority with the leader: the read failed after {took:?}: {err}");
    // A quorum is back: writes succeed again (the failed one may be applied too).
    member(&mut members, followers[0]).restart().await;
    put_config(&client, "quorum-back").await.unwrap();
    assert_eq!(
        client.get_config("cfg/quorum-back").await.unwrap(),
        Some(b"quorum-back".to_vec())
    );

    // Two of three stopped again, the survivor now a follower: it fails fast as well.
    let survivor = followers[0];
    member(&mut members, leader).stop().await;
    let started = Instant::now();
    let err = put_config(&client, "minority-2").await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, MetaError::Unavailable(_)), "{err:?}");
    assert!(took < Duration::from_secs(10), "failed only after {took:?}");
    eprintln!("minority of a follower: the write failed after {took:?}: {err}");
    // Everyone back: writes succeed and the three states end identical.
    for id in [leader, followers[1]] {
        member(&mut members, id).restart().await;
    }
    put_config(&client, "all-back").await.unwrap();
    let leader = leader_of(&members).await;
    put_config(&client, "last").await.unwrap();
    converge(&members, leader).await;
    let mut digests = Vec::new();
    for m in &members {
        digests.push(client.node_digest(&m.addr.to_string()).await.unwrap());
    }
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    tracing::info!(survivor, "done");

    drop(client);
    for m in &mut members {
        if m.node.is_some() {
            m.stop().await;
        }
    }
}

/// A write whose first attempt is in the leader's log when the leader stops: the client's retry
/// (same request id) gets the first attempt's answer, and the write takes effect once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_in_flight_when_the_leader_stops_is_applied_once() {
    let root = TempDir::new().unwrap();
    let (mut members, addrs) = start_group(root.path(), 3).await;
    let leader = leader_of(&members).await;
    let client = GrpcMetaClient::new(
        addrs.values().cloned().collect(),
        GrpcMetaConfig {
            call_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(50),
            max_attempts: 10_000,
            ..GrpcMetaConfig::default()
        },
    )
    .unwrap();
    client.apply(bucket("b")).await.unwrap();
    client.apply(put("b", "k", "v1", 1)).await.unwrap();
    assert_eq!(client.leader(), Some(addrs[&leader].clone()));

    // Without its followers the leader appends the write but cannot commit it; each attempt of
    // the client times out (unknown outcome) and is retried, adding a copy to the log.
    let followers = stop_followers(&mut members, leader).await;
    let logged = member(&mut members, leader)
        .node()
        .raft_node()
        .metrics()
        .last_log_index
        .unwrap_or(0);
    let client = std::sync::Arc::new(client);
    let retrying = client.clone();
    let write = tokio::spawn(async move {
        retrying
            .apply_batch(vec![bucket("c"), rewrap("b", "k", 1)])
            .await
    });
    member(&mut members, leader)
        .node()
        .raft_node()
        .raft()
        .wait(Some(PATIENCE))
        .metrics(
            |m| m.last_log_index.is_some_and(|i| i > logged),
            "the write in the leader's log",
        )
        .await
        .expect("the write reaches the log");
    // The leader stops with the write in flight, then comes back with one follower: the other
    // lacks the write, so only the old leader can win the election, and it commits the write
    // from its log. The client's first attempt died with the leader: its answer can only come
    // from a retry, which must find the write applied and return its recorded results.
    member(&mut members, leader).stop().await;
    member(&mut members, leader).restart().await;
    member(&mut members, followers[0]).restart().await;
    let results = write.await.unwrap().expect("the retried write succeeds");
    assert!(
        results[0].is_ok(),
        "CreateBucket applied twice: {results:?}"
    );
    assert!(results[1].is_ok(), "rewrap evaluated twice: {results:?}");
    assert_eq!(leader_of(&members).await, leader);
    let current = client.get_object("b", "k", None).await.unwrap();
    assert_eq!(current.envelope.unwrap().generation, 2);
    // The compare-and-set took effect exactly once: generation 2 is the current one.
    client.apply(rewrap("b", "k", 2)).await.unwrap();
    assert!(matches!(
        client.apply(bucket("c")).await,
        Err(MetaError::BucketAlreadyExists(_))
    ));

    // Every member applied the copies alike.
    member(&mut members, followers[1]).restart().await;
    put_config(&client, "last").await.unwrap();
    converge(&members, leader).await;
    let mut digests = Vec::new();
    for m in &members {
        digests.push(m.node().digest().await.unwrap());
    }
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    drop(client);
    for m in &mut members {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_member_group_keeps_its_state_across_restarts() {
    let root = TempDir::new().unwrap();
    let dir = root.path().join("meta");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let node = start(1, &dir, listener).await;
    node.initialize(BTreeMap::from([(1, addr.to_string())]))
        .await
        .unwrap();
    let meta = node.client();
    meta.apply(bucket("b")).await.unwrap();
    let mut seqs = Vec::new();
    for i in 0..5u8 {
        seqs.push(
            meta.apply(put("b", &format!("k{i}"), &format!("v{i}"), i + 1))
                .await
                .unwrap()
                .seq,
        );
    }
    meta.apply(Command::PutConfig {
        name: "cluster/k".into(),
        value: b"v".to_vec(),
    })
    .await
    .unwrap();
    let before = node.digest().await.unwrap();
    node.shutdown().await.unwrap();
    // A client of a stopped member fails with Unavailable rather than hang.
    assert!(matches!(
        meta.get_bucket("b").await,
        Err(MetaError::Unavailable(_))
    ));

    // Reopened on another port (as `coffer dev` does): the state is all there.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = start(1, &dir, listener).await;
    node.initialize(BTreeMap::from([(1, addr.to_string())]))
        .await
        .unwrap();
    assert_eq!(node.digest().await.unwrap(), before);
    let meta = node.client();
    assert_eq!(meta.list_buckets().await.unwrap().len(), 1);
    for i in 0..5u8 {
        let v = meta.get_object("b", &format!("k{i}"), None).await.unwrap();
        assert_eq!(
            (v.version_id, v.seq),
            (format!("v{i}"), seqs[usize::from(i)])
        );
    }
    assert_eq!(
        meta.get_config("cluster/k").await.unwrap(),
        Some(b"v".to_vec())
    );
    // Writes continue after the reopened state, also over gRPC.
    let next = meta.apply(put("b", "k0", "v9", 9)).await.unwrap();
    assert!(next.seq > *seqs.iter().max().unwrap());
    let client = GrpcMetaClient::new(
        vec![node.local_addr().to_string()],
        GrpcMetaConfig::default(),
    )
    .unwrap();
    assert_eq!(
        client.get_object("b", "k0", None).await.unwrap().version_id,
        "v9"
    );
    client.apply(rewrap("b", "k0", 1)).await.unwrap();
    assert_ne!(node.digest().await.unwrap(), before);
    drop(client);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_raft_state_is_imported_and_reaches_members_added_later() {
    let root = TempDir::new().unwrap();
    let local_dir = root.path().join("meta");
    {
        let local = coffer_meta::LocalMeta::open(&local_dir).unwrap();
        local.apply(bucket("b")).await.unwrap();
        for i in 0..5u8 {
            local
                .apply(put("b", &format!("k{i}"), "v1", i + 1))
                .await
                .unwrap();
        }
    }
    let dir = root.path().join("meta-raft");
    assert!(MetaNode::import_local_state(&local_dir, &dir).unwrap());
    // Only once: the member's database exists now.
    assert!(!MetaNode::import_local_state(&local_dir, &dir).unwrap());

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let first = start(1, &dir, listener).await;
    first
        .initialize(BTreeMap::from([(1, addr.clone())]))
        .await
        .unwrap();
    let meta = first.client();
    assert_eq!(
        meta.get_object("b", "k3", None).await.unwrap().version_id,
        "v1"
    );
    // New writes see the imported records (seqs continue after them).
    let seq = meta.apply(put("b", "k0", "v2", 9)).await.unwrap().seq;
    assert!(seq > meta.get_object("b", "k4", None).await.unwrap().seq);
    first.compact().await.unwrap();

    // A second member joins as a learner: it gets everything, the imported records included.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second_addr = listener.local_addr().unwrap().to_string();
    let second = start(2, &root.path().join("meta-2"), listener).await;
    second
        .join(&addr, &second_addr, Duration::from_secs(10))
        .await
        .unwrap();
    let index = first
        .raft_node()
        .metrics()
        .last_applied
        .map_or(0, |l| l.index);
    second
        .raft_node()
        .raft()
        .wait(Some(PATIENCE))
        .applied_index_at_least(Some(index), "the learner to catch up")
        .await
        .unwrap();
    assert_eq!(
        second.digest().await.unwrap(),
        first.digest().await.unwrap()
    );
    drop(meta);
    second.shutdown().await.unwrap();
    first.shutdown().await.unwrap();
}

/// A job record through `GrpcMetaClient` on three members: claimed and checkpointed by one
/// runner, it survives the loss of the leader with its cursor and counts; the stale runner can
/// no longer advance it once another runner claimed it after its lease (times from the commands).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_survives_a_leader_change_and_moves_to_another_runner_after_its_lease() {
    use coffer_meta::{
        JobCounters, JobCursor, JobKind, JobProgress, JobRecord, JobState, ReencryptSpec,
        SourceFilter,
    };
    let root = TempDir::new().unwrap();
    let (mut members, addrs) = start_group(root.path(), 3).await;
    let leader = leader_of(&members).await;
    let client =
        GrpcMetaClient::new(addrs.values().cloned().collect(), GrpcMetaConfig::default()).unwrap();
    client.apply(bucket("b")).await.unwrap();
    let kind = JobKind::Reencrypt(ReencryptSpec {
        bucket: "b".into(),
        prefix: String::new(),
        source: SourceFilter::Any,
        all_versions: true,
        target_key_arn: "arn:aws:kms:us-east-1:000000000000:key/k".into(),
        bucket_key_enabled: false,
    });
    client
        .apply(Command::CreateJob(JobRecord::new("j".into(), kind, 1)))
        .await
        .unwrap();
    let claim = |runner: &str, now_ms: i64| Command::ClaimJob {
        id: "j".into(),
        runner_id: runner.into(),
        now_ms,
        lease_until_ms: now_ms + 1000,
    };
    let checkpoint = |runner: &str, expected_version: u64, key: &str| Command::UpdateJob {
        id: "j".into(),
        runner_id: runner.into(),
        expected_version,
        progress: JobProgress {
            cursor: Some(JobCursor {
                key: key.into(),
                version_id: Some("v".into()),
                seq: 1,
                bucket: None,
            }),
            counters: JobCounters {
                rewrapped: 10,
                ..Default::default()
            },
            ..Default::default()
        },
        now_ms: 100,
        lease_until_ms: 1100,
    };
    let v = client.apply(claim("r1", 0)).await.unwrap().seq;
    let v = client.apply(checkpoint("r1", v, "k10")).await.unwrap().seq;

    member(&mut members, leader).stop().await;
    let job = client.get_job("j").await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.owner.as_deref(), job.counters.rewrapped),
        (JobState::Running, Some("r1"), 10)
    );
    assert_eq!(job.cursor.unwrap().key, "k10");
    // r2 cannot take it before r1's lease ends (1100), can after.
    assert!(matches!(
        client.apply(claim("r2", 1000)).await,
        Err(MetaError::PreconditionFailed)
    ));
    let v2 = client.apply(claim("r2", 1101)).await.unwrap().seq;
    assert!(matches!(
        client.apply(checkpoint("r1", v, "k20")).await,
        Err(MetaError::PreconditionFailed)
    ));
    client.apply(checkpoint("r2", v2, "k20")).await.unwrap();
    let jobs = client.list_jobs().await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].owner.as_deref(), jobs[0].counters.rewrapped),
        (Some("r2"), 20)
    );
    assert_eq!(jobs[0].cursor.as_ref().unwrap().key, "k20");
}
