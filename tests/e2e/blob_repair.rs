//! A blob node's repair work across real processes: one `coffer meta`, one `coffer kms`, three
//! `coffer blob` nodes with scrub, re-replication and orphan sweep passes every second (the
//! orphan grace stays at its default hour), and a gateway with R=3 W=2.
//! (a) A byte flipped in a blob file on one node: the scrub finds it and repairs the file from a
//!     replica; every GET still works.
//! (b) A node stopped, its data directory deleted, started again empty: re-replication brings
//!     its blobs back, and with the two other nodes down every object reads from it alone.
//! (c) Orphans: a node down while an object is deleted keeps the object's blob; the sweep keeps
//!     it while it is younger than the grace and deletes it once older (its mtime is moved back
//!     two hours). A blob file no version names, planted with an old mtime, is deleted and
//!     never copied to another node. Referenced blobs stay everywhere.
//! `/metrics` of the nodes counts each.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use coffer_tests::{body_of, bucket_name, get_bytes, s3_client, start_kms, start_single_meta};

use crate::health::metrics;
use crate::replication::{put, start_gateway, wait_for_nodes, BlobNode};

/// The repair options of every node: each loop every second.
const REPAIR_EVERY_SECOND: [&str; 12] = [
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
    "--orphan-interval-secs",
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

/// Moves a file's mtime two hours back, past the orphan grace.
fn age(path: &std::path::Path) {
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(two_hours_ago))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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

    // (c) r1 is down while obj-2 is deleted: its copy of the blob becomes an orphan.
    nodes[1].kill();
    let (gone_key, _) = objects.pop().unwrap();
    s3.delete_object()
        .bucket(&bucket)
        .key(&gone_key)
        .send()
        .await
        .unwrap();
    wait_for(
        15,
        "the gateway deletes obj-2's blob from r0 and r2",
        || blobs(&nodes[0]).len() == 2 && blobs(&nodes[2]).len() == 2,
    );
    let kept = blobs(&nodes[0]);
    let orphan = referenced.difference(&kept).next().unwrap().clone();
    // A blob file nothing names, planted on r0 with an old mtime (a copy of a real blob and its
    // checksums under a new id, as a failed PUT leaves).
    let planted = "0f".repeat(16);
    let model = kept.iter().next().unwrap();
    std::fs::create_dir_all(path_of(&nodes[0], &planted).parent().unwrap()).unwrap();
    for suffix in ["", ".sum"] {
        std::fs::copy(
            format!("{}{suffix}", path_of(&nodes[0], model).display()),
            format!("{}{suffix}", path_of(&nodes[0], &planted).display()),
        )
        .unwrap();
    }
    age(&path_of(&nodes[0], &planted));
    nodes[1].up(dir, &meta_addr);
    assert!(blobs(&nodes[1]).contains(&orphan));
    wait_for(30, "r0's sweep deletes the planted orphan", || {
        !path_of(&nodes[0], &planted).exists()
    });
    assert!(counter(&nodes[0], "coffer_blob_orphans_deleted_total") >= 1.0);
    // Younger than the grace, r1's orphan stays through two sweeps.
    let passes = counter(&nodes[1], "coffer_blob_orphan_passes_total");
    wait_for(30, "two orphan sweeps on r1", || {
        counter(&nodes[1], "coffer_blob_orphan_passes_total") >= passes + 2.0
    });
    assert!(blobs(&nodes[1]).contains(&orphan), "a young orphan is kept");
    assert_eq!(counter(&nodes[1], "coffer_blob_orphans_deleted_total"), 0.0);
    age(&path_of(&nodes[1], &orphan));
    wait_for(30, "r1's sweep deletes the aged orphan", || {
        !path_of(&nodes[1], &orphan).exists()
    });
    assert_eq!(counter(&nodes[1], "coffer_blob_orphans_deleted_total"), 1.0);
    // Referenced blobs are everywhere; no orphan was copied anywhere.
    for n in &nodes {
        assert_eq!(blobs(n), kept, "{}", n.id);
        assert!(!std::path::Path::new(&format!("{}.sum", path_of(n, &orphan).display())).exists());
    }
    for (key, body) in &objects {
        assert!(get_bytes(&s3, &bucket, key).await == *body, "{key}");
    }
}
