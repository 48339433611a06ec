//! `ReplicatedBlobStore` over real blob nodes (gRPC servers on loopback ports): placement
//! stable, spread and independent of the list's order; writes acknowledged with one node down
//! land on exactly the others; writes without a quorum fail with Unavailable and leave nothing;
//! reads fail over to another replica when a node is down or lost its file, also in the middle
//! of a long read.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use coffer_blob::grpc::{self, GrpcBlobConfig, GrpcBlobStore};
use coffer_blob::local::LocalBlobStore;
use coffer_blob::replicated::{
    rank, ReplicaNode, ReplicatedBlobStore, Replication, READ_SEGMENT, STRAGGLER_GRACE,
};
use coffer_blob::{BlobError, BlobId, BlobStore, BlobWriter};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

fn id(n: u32) -> BlobId {
    let mut id = [0u8; 16];
    id[0] = 0xb1;
    id[12..].copy_from_slice(&n.to_be_bytes());
    id
}

fn content(len: usize, salt: u8) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 251) as u8 ^ salt).collect()
}

/// A blob node on a loopback port, restartable on the same address.
struct Node {
    name: String,
    dir: PathBuf,
    addr: SocketAddr,
    store: LocalBlobStore,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Node {
    async fn start(name: &str, dir: &Path) -> Node {
        let mut n = Node {
            name: name.to_owned(),
            dir: dir.to_owned(),
            addr: "127.0.0.1:0".parse().unwrap(),
            store: LocalBlobStore::open(dir).unwrap(),
            stop: None,
            task: None,
        };
        n.up().await;
        n
    }

    async fn up(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.addr = listener.local_addr().unwrap();
        self.store = LocalBlobStore::open(&self.dir).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let store = self.store.clone();
        self.task = Some(tokio::spawn(async move {
            grpc::serve(store, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("gRPC server");
        }));
        self.stop = Some(tx);
    }

    async fn down(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task.take().unwrap())
            .await
            .expect("the node stops")
            .unwrap();
    }

    fn has(&self, blob: &BlobId) -> bool {
        self.store.path_of(blob).exists()
    }

    fn tmp_entries(&self) -> usize {
        std::fs::read_dir(self.dir.join("tmp")).unwrap().count()
    }

    fn client(&self) -> Arc<GrpcBlobStore> {
        Arc::new(
            GrpcBlobStore::connect_lazy(GrpcBlobConfig {
                endpoint: format!("http://{}", self.addr),
                call_timeout: Duration::from_secs(3),
                write_timeout: Duration::from_secs(3),
                ..Default::default()
            })
            .unwrap(),
        )
    }

    fn replica(&self) -> ReplicaNode {
        ReplicaNode {
            id: self.name.clone(),
            store: self.client(),
        }
    }
}

struct Cluster {
    _dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Node>,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        let mut dirs = Vec::new();
        let mut nodes = Vec::new();
        for i in 0..n {
            let dir = tempfile::tempdir().unwrap();
            nodes.push(Node::start(&format!("blob-{i}"), dir.path()).await);
            dirs.push(dir);
        }
        Cluster { _dirs: dirs, nodes }
    }

    fn store(&self, r: usize, w: usize) -> ReplicatedBlobStore {
        ReplicatedBlobStore::new(
            self.nodes.iter().map(Node::replica).collect(),
            Replication {
                replicas: r,
                write_quorum: w,
            },
        )
        .unwrap()
    }

    fn node(&mut self, name: &str) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.name == name).unwrap()
    }

    fn holders(&self, blob: &BlobId) -> HashSet<String> {
        self.nodes
            .iter()
            .filter(|n| n.has(blob))
            .map(|n| n.name.clone())
            .collect()
    }
}

async fn put(store: &dyn BlobStore, blob: &BlobId, data: &[u8]) -> Result<u64, BlobError> {
    let mut w = store.create(blob).await?;
    for part in data.chunks(700_001) {
        w.append(Bytes::copy_from_slice(part)).await?;
    }
    w.commit().await
}

#[test]
fn placement_is_spread_stable_and_moves_little() {
    let nodes: Vec<String> = (0..5).map(|i| format!("blob-{i}")).collect();
    let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let blobs = 6000u32;
    let mut counts: HashMap<&str, u64> = HashMap::new();
    let mut first: HashMap<&str, u64> = HashMap::new();
    for b in 0..blobs {
        let ranked = rank(refs.iter().copied(), &id(b));
        assert_eq!(ranked.len(), 5);
        // Order-independent and deterministic.
        let mut reversed = refs.clone();
        reversed.reverse();
        assert_eq!(rank(reversed.iter().copied(), &id(b)), ranked);
        for n in &ranked[..3] {
            *counts.entry(n).or_default() += 1;
        }
        *first.entry(ranked[0]).or_default() += 1;

        // Adding a node only moves blobs onto the new node.
        let mut more = refs.clone();
        more.push("blob-new");
        let grown: HashSet<&str> = rank(more, &id(b))[..3].iter().copied().collect();
        let old: HashSet<&str> = ranked[..3].iter().copied().collect();
        assert!(
            grown.difference(&old).all(|n| *n == "blob-new"),
            "blob {b}: {old:?} -> {grown:?}"
        );
    }
    // Chi-square over the 5 nodes (4 degrees of freedom; 18.5 is p ≈ 0.001).
    let chi = |c: &HashMap<&str, u64>, total: f64| {
        let expected = total / 5.0;
        refs.iter()
            .map(|n| {
                let o = *c.get(n).unwrap_or(&0) as f64;
                (o - expected).powi(2) / expected
            })
            .sum::<f64>()
    };
    let replicas = chi(&counts, f64::from(blobs) * 3.0);
    let primaries = chi(&first, f64::from(blobs));
    assert!(
        replicas < 18.5,
        "replica counts {counts:?}: chi2 {replicas}"
    );
    assert!(
        primaries < 18.5,
        "primary counts {first:?}: chi2 {primaries}"
    );
}

#[tokio::test]
async fn invalid_settings_are_refused() {
    let node = |name: &str| ReplicaNode {
        id: name.into(),
        store: Arc::new(
            GrpcBlobStore::connect_lazy(GrpcBlobConfig {
                endpoint: "http://127.0.0.1:1".into(),
                ..Default::default()
            })
            .unwrap(),
        ),
    };
    let three = || vec![node("a"), node("b"), node("c")];
    let rw = |replicas, write_quorum| Replication {
        replicas,
        write_quorum,
    };
    let err = ReplicatedBlobStore::new(three(), rw(3, 0)).unwrap_err();
    assert!(err.contains("at least 1"), "{err}");
    let err = ReplicatedBlobStore::new(three(), rw(2, 3)).unwrap_err();
    assert!(err.contains("cannot exceed"), "{err}");
    let err = ReplicatedBlobStore::new(three(), rw(4, 2)).unwrap_err();
    assert!(err.contains("at least 4 blob nodes, 3 given"), "{err}");
    let err = ReplicatedBlobStore::new(vec![node("a"), node("a")], rw(2, 1)).unwrap_err();
    assert!(err.contains("twice"), "{err}");
    assert!(ReplicatedBlobStore::new(three(), rw(3, 3)).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_reach_all_replicas_and_survive_one_node_down() {
    let mut c = Cluster::start(3).await;
    let store = c.store(3, 2);
    let data = content((9 << 20) + 123, 1);
    let healthy = id(1);
    assert_eq!(
        put(&store, &healthy, &data).await.unwrap(),
        data.len() as u64
    );
    // All three commits are acknowledged or finishing in the background.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.holders(&healthy).len(), 3);

    c.node("blob-1").down().await;
    let degraded = id(2);
    assert_eq!(
        put(&store, &degraded, &data).await.unwrap(),
        data.len() as u64
    );
    let holders = c.holders(&degraded);
    assert_eq!(
        holders,
        HashSet::from(["blob-0".to_string(), "blob-2".to_string()])
    );
    // Both blobs read back whole and in ranges while the node is down.
    for blob in [healthy, degraded] {
        assert_eq!(store.len(&blob).await.unwrap(), data.len() as u64);
        let got = store.read(&blob, 0, data.len() as u64).await.unwrap();
        assert!(got == data[..], "blob read back differs");
        let got = store.read(&blob, 1 << 20, 3).await.unwrap();
        assert_eq!(got, data[1 << 20..(1 << 20) + 3]);
    }
    // Delete reaches the replicas that are up.
    store.delete(&degraded).await.unwrap();
    assert!(c.holders(&degraded).is_empty());
    assert!(matches!(
        store.read(&degraded, 0, 1).await,
        Err(BlobError::Unavailable(_))
    ));
    c.node("blob-1").up().await;
    assert!(matches!(
        store.read(&degraded, 0, 1).await,
        Err(BlobError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_without_a_quorum_fail_and_leave_nothing() {
    let mut c = Cluster::start(3).await;
    let store = c.store(3, 2);
    c.node("blob-0").down().await;
    c.node("blob-2").down().await;
    for (n, len) in [(10u32, 100usize), (11, 6 << 20)] {
        let blob = id(n);
        let err = put(&store, &blob, &content(len, 2)).await.unwrap_err();
        assert!(matches!(err, BlobError::Unavailable(_)), "{err:?}");
        assert!(c.holders(&blob).is_empty(), "{len} bytes left behind");
        let survivor = c.node("blob-1");
        for _ in 0..100 {
            if survivor.tmp_entries() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(survivor.tmp_entries(), 0);
    }
    // Fewer nodes known than the write quorum: refused up front.
    let lonely = ReplicatedBlobStore::dynamic(Replication::default()).unwrap();
    lonely.set_nodes(vec![c.nodes[1].replica()]).unwrap();
    match lonely.create(&id(12)).await {
        Err(BlobError::Unavailable(m)) => assert!(m.contains("write quorum is 2"), "{m}"),
        other => panic!("expected Unavailable, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fail_over_to_another_replica() {
    let mut c = Cluster::start(3).await;
    let store = c.store(3, 2);
    let data = content(3 << 20, 3);
    let blob = id(20);
    put(&store, &blob, &data).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let placement = store.placement(&blob);
    assert_eq!(placement.len(), 3);

    // The first replica down.
    c.node(&placement[0]).down().await;
    assert!(store.read(&blob, 0, data.len() as u64).await.unwrap() == data[..]);
    c.node(&placement[0]).up().await;

    // The first two replicas lost their file.
    for name in &placement[..2] {
        let n = c.node(name);
        std::fs::remove_file(n.store.path_of(&blob)).unwrap();
    }
    assert!(store.read(&blob, 0, data.len() as u64).await.unwrap() == data[..]);
    assert_eq!(store.len(&blob).await.unwrap(), data.len() as u64);
    // Gone everywhere: NotFound.
    let n = c.node(&placement[2]);
    std::fs::remove_file(n.store.path_of(&blob)).unwrap();
    assert!(matches!(
        store.read(&blob, 0, 1).await,
        Err(BlobError::NotFound(_))
    ));
    // Out of range is the caller's error, not a reason to fail over.
    let blob = id(21);
    put(&store, &blob, &data).await.unwrap();
    assert!(matches!(
        store.read(&blob, data.len() as u64, 1).await,
        Err(BlobError::OutOfRange(_))
    ));
}

/// Counts the reads a replica serves; after `lose_after` of them the node's file disappears,
/// as if its disk lost it in the middle of a long read.
struct LosesFileMidRead {
    inner: Arc<GrpcBlobStore>,
    file: PathBuf,
    reads: Arc<AtomicUsize>,
    lose_after: usize,
}

#[async_trait]
impl BlobStore for LosesFileMidRead {
    async fn create(&self, id: &BlobId) -> Result<Box<dyn BlobWriter>, BlobError> {
        self.inner.create(id).await
    }
    async fn read(&self, id: &BlobId, offset: u64, len: u64) -> Result<Bytes, BlobError> {
        if self.reads.load(Ordering::SeqCst) == self.lose_after {
            let _ = std::fs::remove_file(&self.file);
        }
        let r = self.inner.read(id, offset, len).await;
        if r.is_ok() {
            self.reads.fetch_add(1, Ordering::SeqCst);
        }
        r
    }
    async fn len(&self, id: &BlobId) -> Result<u64, BlobError> {
        self.inner.len(id).await
    }
    async fn delete(&self, id: &BlobId) -> Result<(), BlobError> {
        self.inner.delete(id).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_read_resumes_on_another_replica() {
    let c = Cluster::start(3).await;
    let store = c.store(3, 3);
    let data = content((READ_SEGMENT * 3 + 777) as usize, 4);
    let blob = id(30);
    put(&store, &blob, &data).await.unwrap();
    let placement = store.placement(&blob);

    let counters: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let nodes = c
        .nodes
        .iter()
        .map(|n| {
            let k = placement.iter().position(|p| *p == n.name).unwrap();
            ReplicaNode {
                id: n.name.clone(),
                store: Arc::new(LosesFileMidRead {
                    inner: n.client(),
                    file: n.store.path_of(&blob),
                    reads: counters[k].clone(),
                    // The first replica serves one segment, then loses its file.
                    lose_after: if k == 0 { 1 } else { usize::MAX },
                }),
            }
        })
        .collect();
    let flaky = ReplicatedBlobStore::new(
        nodes,
        Replication {
            replicas: 3,
            write_quorum: 3,
        },
    )
    .unwrap();
    let got = flaky.read(&blob, 0, data.len() as u64).await.unwrap();
    assert!(got == data[..], "the resumed read differs");
    let served: Vec<usize> = counters.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    // Segment 1 from the first replica, segments 2-4 from the second, none read twice.
    assert_eq!(served, vec![1, 3, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_three_replicas_follow_placement_in_any_list_order() {
    let c = Cluster::start(5).await;
    let store = c.store(3, 2);
    let mut reversed_nodes: Vec<ReplicaNode> = c.nodes.iter().map(Node::replica).collect();
    reversed_nodes.reverse();
    let reversed = ReplicatedBlobStore::new(reversed_nodes, Replication::default()).unwrap();
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for b in 0..40u32 {
        let blob = id(100 + b);
        let data = content(1000 + b as usize * 37, b as u8);
        put(&store, &blob, &data).await.unwrap();
        let placement = store.placement(&blob);
        assert_eq!(reversed.placement(&blob), placement);
        // The third commit may still be finishing.
        let expected: HashSet<String> = placement.into_iter().collect();
        for _ in 0..100 {
            if c.holders(&blob) == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(c.holders(&blob), expected, "blob {b}");
        for n in expected {
            *per_node.entry(n).or_default() += 1;
        }
        assert!(reversed.read(&blob, 0, data.len() as u64).await.unwrap() == data[..]);
    }
    assert_eq!(
        per_node.len(),
        5,
        "every node holds some blobs: {per_node:?}"
    );
}

/// A "node" that accepts connections and never answers, like a frozen process: a large write
/// drops it once the two real replicas took the data and its grace ran out, instead of waiting
/// for its 30 s write timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_replica_is_dropped_after_the_grace() {
    let c = Cluster::start(2).await;
    let hole = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        loop {
            let (conn, _) = hole.accept().await.unwrap();
            conns.push(conn);
        }
    });
    let mut nodes: Vec<ReplicaNode> = c.nodes.iter().map(Node::replica).collect();
    nodes.push(ReplicaNode {
        id: "stalled".into(),
        store: Arc::new(
            GrpcBlobStore::connect_lazy(GrpcBlobConfig {
                endpoint: format!("http://{hole_addr}"),
                write_timeout: Duration::from_secs(30),
                ..Default::default()
            })
            .unwrap(),
        ),
    });
    let store = ReplicatedBlobStore::new(nodes, Replication::default()).unwrap();
    let data = content(10 << 20, 5);
    let blob = id(40);
    let started = std::time::Instant::now();
    assert_eq!(put(&store, &blob, &data).await.unwrap(), data.len() as u64);
    let took = started.elapsed();
    assert!(
        took < STRAGGLER_GRACE + Duration::from_secs(5),
        "the write took {took:?}"
    );
    assert_eq!(
        c.holders(&blob),
        HashSet::from(["blob-0".to_string(), "blob-1".to_string()])
    );
    assert!(store.read(&blob, 0, data.len() as u64).await.unwrap() == data[..]);
    held.abort();
}
