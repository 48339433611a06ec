//! A blob node's repair work across real processes: one `coffer meta`, one `coffer kms`, three
//! `coffer blob` nodes with scrub and re-replication passes every second, and a gateway with
//! R=3 W=2.
//! (a) A byte flipped in a blob file on one node: the scrub finds it and repairs the file from a
//!     replica; every GET still works.
//! (b) A node stopped, its data directory deleted, started again empty: re-replication brings
//!     its blobs back, and with the two other nodes down every object reads from it alone.
//! `/metrics` of the nodes counts each.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use coffer_tests::{body_of, bucket_name, get_bytes, s3_client, start_kms, start_single_meta};

use crate::health::metrics;
use crate::replication::{put, start_gateway, wait_for_nodes, BlobNode};

/// The repair options of every node: each loop every second.
const REPAIR_EVERY_SECOND: [&str; 10] = [
    "--admin-listen",
    "127.0.0.1:0",
    "--replicas",
    "3",
    "--scrub-interval-secs",
    "1",
    "--scrub-bytes-per-sec",
    "0",
    "--rereplicate-interval-secs",
    "1",
];

/// The committed blobs on a node's disk, by hex id (no sidecars, no temp files).
fn blobs(n: &BlobNode) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for top in std::fs::read_dir(&n.data).into_iter().flatten().flatten() {
        if top.file_name() == "tmp" || !top.path().is_dir() {
            continue;
        }
        for leaf in std::fs::read_dir(top.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in std::fs::read_dir(leaf.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.len() == 32 && !name.contains('.') {
                    out.insert(name);
                }
            }
        }
    }
    out
}

fn path_of(n: &BlobNode, hex_id: &str) -> PathBuf {
    n.data.join(&hex_id[..2]).join(&hex_id[2..4]).join(hex_id)
}

/// A series of the node's `/metrics`; 0 when absent.
fn counter(n: &BlobNode, series: &str) -> f64 {
    let admin = n.proc.as_ref().expect("running").ready_str("admin");
    metrics(&admin).get(series).copied().unwrap_or(0.0)
}

/// Waits up to `secs` for `cond`, then panics with `what`.
fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "after {secs} s: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_rereplication_and_orphan_sweep() {
    let tmp = tempfile::Builder::new()
        .prefix("coffer-e2e-blob-repair-")
        .tempdir()
        .expect("tempdir");
    let dir = tmp.path();
    let (_meta, meta_addr) = start_single_meta(dir);
    let kms = start_kms(dir);
    let mut nodes: Vec<BlobNode> = ["r0", "r1", "r2"]
        .iter()
        .map(|id| BlobNode::start_with(dir, id, &meta_addr, &REPAIR_EVERY_SECOND))
        .collect();
    let gw = start_gateway(dir, &meta_addr, &kms);
    wait_for_nodes(dir, "gw", &["r0", "r1", "r2"]);
    let s3 = s3_client(&format!("http://{}", gw.ready_str("s3")), true).await;
    let bucket = bucket_name("blob-repair");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let mut objects = Vec::new();
    for (i, len) in [(3usize << 20) + 5, 70_000, 1234].into_iter().enumerate() {
        let (key, body) = (format!("obj-{i}"), body_of(len, i as u64 + 7));
        put(&s3, &bucket, &key, &body).await;
        objects.push((key, body));
    }
    wait_for(15, "every node holds the three blobs", || {
        nodes.iter().all(|n| blobs(n).len() == 3) && blobs(&nodes[1]) == blobs(&nodes[0])
    });
    let referenced = blobs(&nodes[0]);

    // (a) A flipped byte in the largest blob on r0.
    let big = referenced
        .iter()
        .max_by_key(|h| std::fs::metadata(path_of(&nodes[0], h)).unwrap().len())
        .unwrap()
        .clone();
    let good = std::fs::read(path_of(&nodes[1], &big)).unwrap();
    let mut bad = good.clone();
    bad[good.len() / 2] ^= 0x01;
    std::fs::write(path_of(&nodes[0], &big), &bad).unwrap();
    wait_for(30, "r0's scrub repairs the flipped byte", || {
        std::fs::read(path_of(&nodes[0], &big)).unwrap() == good
    });
    assert!(counter(&nodes[0], "coffer_blob_scrub_chunks_total{result=\"bad\"}") >= 1.0);
    assert!(counter(&nodes[0], "coffer_blob_scrub_chunks_total{result=\"ok\"}") >= 1.0);
    assert!(counter(&nodes[0], "coffer_blob_scrub_repaired_total") >= 1.0);
    assert!(counter(&nodes[0], "coffer_blob_scrub_passes_total") >= 1.0);
    for (key, body) in &objects {
        assert!(get_bytes(&s3, &bucket, key).await == *body, "{key}");
    }

    // (b) r2 loses its data directory.
    nodes[2].kill();
    std::fs::remove_dir_all(&nodes[2].data).unwrap();
    nodes[2].up(dir, &meta_addr);
    wait_for(30, "re-replication restores r2's blobs", || {
        blobs(&nodes[2]) == referenced
    });
    for h in &referenced {
        assert_eq!(
            std::fs::read(path_of(&nodes[2], h)).unwrap(),
            std::fs::read(path_of(&nodes[1], h)).unwrap(),
            "{h}"
        );
    }
    let copied = counter(&nodes[0], "coffer_blob_rereplicated_total")
        + counter(&nodes[1], "coffer_blob_rereplicated_total");
    assert!(copied >= referenced.len() as f64, "{copied} copies");
    // Every object reads from r2 alone.
    nodes[0].kill();
    nodes[1].kill();
    for (key, body) in &objects {
        assert!(get_bytes(&s3, &bucket, key).await == *body, "{key} from r2");
    }
    nodes[0].up(dir, &meta_addr);
    nodes[1].up(dir, &meta_addr);
    // Everything is still everywhere, once each.
    for n in &nodes {
        assert_eq!(blobs(n), referenced, "{}", n.id);
    }
    for (key, body) in &objects {
        assert!(get_bytes(&s3, &bucket, key).await == *body, "{key}");
    }
}
