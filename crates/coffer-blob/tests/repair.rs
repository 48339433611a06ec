//! A blob node's repair work against real stores: the checksum sidecar written with each blob,
//! the scrub finding a flipped byte, a truncated file and a lost file and repairing them from a
//! peer over gRPC, a blob without sums verified against a peer, the scrub cursor surviving a
//! restart, re-replication to the placement nodes that lack a blob, and the orphan sweep.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use coffer_blob::grpc::{self, GrpcBlobConfig, GrpcBlobStore};
use coffer_blob::local::{LocalBlobStore, Sidecar};
use coffer_blob::repair::{
    Cluster, ClusterFuture, PeerNode, Repair, RepairConfig, RepairStats, CURSOR_FILE,
};
use coffer_blob::replicated::rank;
use coffer_blob::sums::{BlockSums, SUM_BLOCK};
use coffer_blob::{BlobError, BlobId, BlobStore};
use tokio::net::TcpListener;

fn id(n: u8) -> BlobId {
    let mut id = [0u8; 16];
    id[0] = 0x3c;
    id[1] = n.wrapping_mul(37);
    id[15] = n;
    id
}

/// Deterministic, position-dependent content.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 251) as u8 ^ seed).collect()
}

async fn put(store: &dyn BlobStore, id: &BlobId, data: &[u8]) {
    let mut w = store.create(id).await.unwrap();
    for part in data.chunks(300_000) {
        w.append(Bytes::copy_from_slice(part)).await.unwrap();
    }
    assert_eq!(w.commit().await.unwrap(), data.len() as u64);
}

async fn read_all(store: &LocalBlobStore, id: &BlobId) -> Vec<u8> {
    let len = store.len(id).await.unwrap();
    store.read(id, 0, len).await.unwrap().to_vec()
}

fn flip_byte(path: &Path, at: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 0x40;
    f.write_all_at(&b, at).unwrap();
    f.sync_all().unwrap();
}

/// The cluster as a test sets it up: fixed peers and a set of referenced blobs.
struct TestCluster {
    nodes: Vec<PeerNode>,
    referenced: Mutex<HashSet<BlobId>>,
}

impl Cluster for TestCluster {
    fn nodes(&self) -> ClusterFuture<'_, Vec<PeerNode>> {
        Box::pin(async move { Ok(self.nodes.clone()) })
    }

    fn referenced<'a>(&'a self, ids: &'a [BlobId]) -> ClusterFuture<'a, Vec<bool>> {
        let refs = self.referenced.lock().unwrap();
        let answer = ids.iter().map(|i| refs.contains(i)).collect();
        Box::pin(async move { Ok(answer) })
    }
}

fn peer(id: &str, store: Arc<dyn BlobStore>) -> PeerNode {
    PeerNode {
        id: id.into(),
        store,
        alive: true,
    }
}

fn cluster(nodes: Vec<PeerNode>, referenced: &[BlobId]) -> Arc<dyn Cluster> {
    Arc::new(TestCluster {
        nodes,
        referenced: Mutex::new(referenced.iter().copied().collect()),
    })
}

fn cfg(node_id: &str) -> RepairConfig {
    RepairConfig {
        node_id: node_id.into(),
        scrub_bytes_per_sec: 0,
        ..Default::default()
    }
}

fn stat(s: &RepairStats, f: fn(&RepairStats) -> &std::sync::atomic::AtomicU64) -> u64 {
    f(s).load(Ordering::Relaxed)
}

/// A blob node serving `store` over gRPC on a loopback port, and a client of it.
async fn serve(store: LocalBlobStore) -> Arc<dyn BlobStore> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(grpc::serve(store, listener, std::future::pending()));
    Arc::new(
        GrpcBlobStore::connect_lazy(GrpcBlobConfig {
            endpoint: format!("http://{addr}"),
            call_timeout: Duration::from_secs(3),
            write_timeout: Duration::from_secs(3),
            ..Default::default()
        })
        .unwrap(),
    )
}

#[tokio::test]
async fn sidecar_is_written_with_the_blob_and_deleted_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path()).unwrap();
    let data = content(2 * SUM_BLOCK as usize + 12_345, 1);
    put(&store, &id(1), &data).await;
    let raw = std::fs::read(store.sums_path_of(&id(1))).unwrap();
    let sums = BlockSums::decode(&raw).unwrap();
    assert_eq!(sums, BlockSums::of(&data, SUM_BLOCK));
    assert_eq!(sums.crcs.len(), 3);
    assert_eq!(store.sums(&id(1)).await.unwrap(), Sidecar::Valid(sums));
    // The sidecar is no blob.
    assert_eq!(store.list().await.unwrap(), vec![id(1)]);
    store.delete(&id(1)).await.unwrap();
    assert!(!store.sums_path_of(&id(1)).exists());
    assert_eq!(store.sums(&id(1)).await.unwrap(), Sidecar::Missing);
}

#[tokio::test]
async fn scrub_repairs_a_flipped_byte_and_a_truncated_file_from_a_grpc_peer() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = LocalBlobStore::open(da.path()).unwrap();
    let b = LocalBlobStore::open(db.path()).unwrap();
    let big = content(3 * SUM_BLOCK as usize + 777, 2);
    let small = content(5000, 3);
    for s in [&a, &b] {
        put(s, &id(1), &big).await;
        put(s, &id(2), &small).await;
    }
    let b_client = serve(b.clone()).await;

    // Detection alone: no cluster, nothing to repair from.
    flip_byte(&a.path_of(&id(1)), SUM_BLOCK + SUM_BLOCK / 2);
    let lonely = Repair::new(a.clone(), None, cfg(""));
    lonely.scrub_pass().await.unwrap();
    let st = lonely.stats();
    assert_eq!(stat(&st, |s| &s.scrub_chunks_bad), 1);
    assert_eq!(stat(&st, |s| &s.scrub_chunks_ok), 4);
    assert_eq!(stat(&st, |s| &s.scrub_repair_failed), 1);
    assert_ne!(read_all(&a, &id(1)).await, big);

    // With a peer: repaired, byte-identical, and a second pass finds nothing.
    std::fs::OpenOptions::new()
        .write(true)
        .open(a.path_of(&id(2)))
        .unwrap()
        .set_len(1000)
        .unwrap();
    let repair = Repair::new(
        a.clone(),
        Some(cluster(vec![peer("b", b_client)], &[])),
        cfg("a"),
    );
    repair.scrub_pass().await.unwrap();
    let st = repair.stats();
    assert_eq!(
        stat(&st, |s| &s.scrub_chunks_bad),
        2,
        "a flipped byte and a short file"
    );
    assert_eq!(stat(&st, |s| &s.scrub_repaired), 2);
    assert_eq!(stat(&st, |s| &s.scrub_passes), 1);
    assert_eq!(read_all(&a, &id(1)).await, big);
    assert_eq!(read_all(&a, &id(2)).await, small);
    repair.scrub_pass().await.unwrap();
    assert_eq!(stat(&st, |s| &s.scrub_chunks_bad), 2);
    assert_eq!(stat(&st, |s| &s.scrub_chunks_ok), 3 + 5);
    assert_eq!(std::fs::read_dir(da.path().join("tmp")).unwrap().count(), 0);
}

#[tokio::test]
async fn a_peer_with_a_bad_copy_too_is_not_used() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = LocalBlobStore::open(da.path()).unwrap();
    let b = LocalBlobStore::open(db.path()).unwrap();
    let data = content(10_000, 4);
    put(&a, &id(1), &data).await;
    put(&b, &id(1), &data).await;
    flip_byte(&a.path_of(&id(1)), 10);
    flip_byte(&b.path_of(&id(1)), 20);
    let repair = Repair::new(
        a.clone(),
        Some(cluster(vec![peer("b", Arc::new(b.clone()))], &[])),
        cfg("a"),
    );
    repair.scrub_pass().await.unwrap();
    assert_eq!(stat(&repair.stats(), |s| &s.scrub_repair_failed), 1);
    assert_eq!(stat(&repair.stats(), |s| &s.scrub_repaired), 0);
}

#[tokio::test]
async fn a_lost_blob_file_is_fetched_back() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = LocalBlobStore::open(da.path()).unwrap();
    let b = LocalBlobStore::open(db.path()).unwrap();
    let data = content(SUM_BLOCK as usize + 10, 5);
    put(&a, &id(1), &data).await;
    put(&b, &id(1), &data).await;
    put(&a, &id(2), &data).await; // no copy anywhere else
    for n in [1, 2] {
        std::fs::remove_file(a.path_of(&id(n))).unwrap();
        // Older than the age under which a sidecar without its blob is left alone.
        let old = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(a.sums_path_of(&id(n)))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    assert_eq!(a.stray_sums().await.unwrap(), vec![id(1), id(2)]);
    let repair = Repair::new(
        a.clone(),
        Some(cluster(vec![peer("b", Arc::new(b.clone()))], &[])),
        cfg("a"),
    );
    repair.scrub_pass().await.unwrap();
    assert_eq!(read_all(&a, &id(1)).await, data);
    assert_eq!(stat(&repair.stats(), |s| &s.scrub_repaired), 1);
    // Nobody has the other one: its sidecar goes.
    assert!(matches!(a.len(&id(2)).await, Err(BlobError::NotFound(_))));
    assert!(a.stray_sums().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_blob_without_sums_is_verified_against_a_peer() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = LocalBlobStore::open(da.path()).unwrap();
    let b = LocalBlobStore::open(db.path()).unwrap();
    let data = content(2 * SUM_BLOCK as usize, 6);
    put(&a, &id(1), &data).await;
    put(&b, &id(1), &data).await;
    put(&a, &id(2), &data).await;
    std::fs::remove_file(a.sums_path_of(&id(1))).unwrap();
    std::fs::write(a.sums_path_of(&id(2)), b"damaged").unwrap();
    let repair = Repair::new(
        a.clone(),
        Some(cluster(vec![peer("b", Arc::new(b.clone()))], &[])),
        cfg("a"),
    );
    repair.scrub_pass().await.unwrap();
    let st = repair.stats();
    // id(1) matches b's copy: its sums are written. id(2) has no other copy.
    assert_eq!(
        a.sums(&id(1)).await.unwrap(),
        Sidecar::Valid(BlockSums::of(&data, SUM_BLOCK))
    );
    assert_eq!(stat(&st, |s| &s.scrub_chunks_ok), 2);
    assert_eq!(stat(&st, |s| &s.scrub_chunks_unverified), 2);
    assert!(matches!(a.sums(&id(2)).await.unwrap(), Sidecar::Corrupt(_)));
}

#[tokio::test]
async fn the_scrub_cursor_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path()).unwrap();
    for n in 1..=5 {
        put(&store, &id(n), &content(100, n)).await;
    }
    let first = Repair::new(store.clone(), None, cfg(""));
    assert!(!first.scrub_some(2).await.unwrap());
    assert_eq!(stat(&first.stats(), |s| &s.scrub_blobs), 2);
    let saved = std::fs::read_to_string(dir.path().join(CURSOR_FILE)).unwrap();
    let ids = store.list().await.unwrap();
    assert!(saved.contains(&hex::encode(ids[1])), "{saved}");
    drop(first);

    let store = LocalBlobStore::open(dir.path()).unwrap();
    let second = Repair::new(store.clone(), None, cfg(""));
    second.scrub_pass().await.unwrap();
    let st = second.stats();
    assert_eq!(
        stat(&st, |s| &s.scrub_blobs),
        3,
        "continues after the second blob"
    );
    assert_eq!(stat(&st, |s| &s.scrub_passes), 1);
    let saved = std::fs::read_to_string(dir.path().join(CURSOR_FILE)).unwrap();
    assert!(saved.contains("after -"), "{saved}");
    // The next pass starts from the beginning.
    second.scrub_pass().await.unwrap();
    assert_eq!(stat(&st, |s| &s.scrub_blobs), 8);
}

/// Three nodes in process; `nodes[i]` sees the other two as peers.
fn three_nodes(
    dirs: &[tempfile::TempDir],
    replicas: usize,
) -> Vec<(String, LocalBlobStore, Repair)> {
    let names = ["n1", "n2", "n3"];
    let stores: Vec<LocalBlobStore> = dirs
        .iter()
        .map(|d| LocalBlobStore::open(d.path()).unwrap())
        .collect();
    (0..3)
        .map(|i| {
            let peers = (0..3)
                .filter(|j| *j != i)
                .map(|j| peer(names[j], Arc::new(stores[j].clone())))
                .collect();
            let mut c = cfg(names[i]);
            c.replicas = replicas;
            (
                names[i].to_owned(),
                stores[i].clone(),
                // id(9) is the one blob no object references.
                Repair::new(
                    stores[i].clone(),
                    Some(cluster(peers, &[id(1), id(2), id(3)])),
                    c,
                ),
            )
        })
        .collect()
}

#[tokio::test]
async fn rereplication_copies_to_the_placement_nodes_that_lack_a_blob() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = three_nodes(&dirs, 3);
    let data = content(SUM_BLOCK as usize * 2 + 3, 7);
    // Only the lowest-ranked node holds it: it is the first holder, so it copies.
    let order = rank(["n1", "n2", "n3"], &id(1));
    let last = nodes.iter().find(|n| n.0 == order[2]).unwrap();
    put(&last.1, &id(1), &data).await;
    for (_, _, r) in &nodes {
        r.rereplicate_pass().await.unwrap();
    }
    for (_, s, _) in &nodes {
        assert_eq!(read_all(s, &id(1)).await, data);
        assert!(matches!(s.sums(&id(1)).await.unwrap(), Sidecar::Valid(_)));
    }
    assert_eq!(stat(&last.2.stats(), |s| &s.rereplicated), 2);
    // Nothing is missing any more.
    for (_, _, r) in &nodes {
        r.rereplicate_pass().await.unwrap();
    }
    // An orphan is not copied.
    put(&last.1, &id(9), &data).await;
    last.2.rereplicate_pass().await.unwrap();
    let total: u64 = nodes
        .iter()
        .map(|n| stat(&n.2.stats(), |s| &s.rereplicated))
        .sum();
    assert_eq!(total, 2);
    for (_, s, _) in &nodes {
        assert_eq!(s.len(&id(9)).await.is_ok(), s.root() == last.1.root());
    }
}

#[tokio::test]
async fn rereplication_stays_within_the_top_r_and_spares_a_bad_copy() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let nodes = three_nodes(&dirs, 2);
    let data = content(50_000, 8);
    let order = rank(["n1", "n2", "n3"], &id(2));
    let by_name = |n: &str| nodes.iter().find(|x| x.0 == n).unwrap();
    // Held by the third-ranked node only; R = 2: copies go to the first two.
    put(&by_name(order[2]).1, &id(2), &data).await;
    by_name(order[2]).2.rereplicate_pass().await.unwrap();
    assert_eq!(read_all(&by_name(order[0]).1, &id(2)).await, data);
    assert_eq!(read_all(&by_name(order[1]).1, &id(2)).await, data);

    // A damaged copy is never spread.
    let holder = &nodes[0];
    put(&holder.1, &id(3), &data).await;
    flip_byte(&holder.1.path_of(&id(3)), 5);
    holder.2.rereplicate_pass().await.unwrap();
    assert!(stat(&holder.2.stats(), |s| &s.rereplicate_failed) >= 1);
    for (_, s, _) in &nodes[1..] {
        assert!(matches!(s.len(&id(3)).await, Err(BlobError::NotFound(_))));
    }
}

#[tokio::test]
async fn orphans_older_than_the_grace_are_collected() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path()).unwrap();
    for n in 1..=3 {
        put(&store, &id(n), &content(100, n)).await;
    }
    let refs = Arc::new(TestCluster {
        nodes: Vec::new(),
        referenced: Mutex::new([id(1)].into_iter().collect()),
    });
    let mut c = cfg("a");
    c.orphan_grace = Duration::from_secs(3600);
    let young = Repair::new(store.clone(), Some(refs.clone()), c.clone());
    young.orphan_pass().await.unwrap();
    assert_eq!(store.list().await.unwrap().len(), 3, "all within the grace");

    c.orphan_grace = Duration::ZERO;
    let sweep = Repair::new(store.clone(), Some(refs), c);
    sweep.orphan_pass().await.unwrap();
    assert_eq!(store.list().await.unwrap(), vec![id(1)]);
    assert_eq!(stat(&sweep.stats(), |s| &s.orphans_deleted), 2);
    assert!(!store.sums_path_of(&id(2)).exists());
}
