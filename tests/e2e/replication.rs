//! Blob replication across real processes: one `coffer meta`, one `coffer kms`, three
//! `coffer blob --meta` nodes that register themselves, and a `coffer gateway` without `--blob`
//! that takes the nodes from meta, with R=3, W=2. Every object lands on all three nodes; with
//! one node killed (-9) PUT and GET still work, byte-identical; with two killed PUT answers 503
//! quickly while GET still reads every object from the last replica; once the nodes are back,
//! PUT works again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use coffer_tests::cluster::reserve_port;
use coffer_tests::{
    body_of, bucket_name, coffer_bin, get_bytes, os_args, s3_client, s3_client_no_retry, start_kms,
    start_single_meta, Process,
};

/// A `coffer blob` node registered in meta, restartable on its address and data directory.
pub(crate) struct BlobNode {
    pub(crate) id: String,
    pub(crate) addr: String,
    pub(crate) data: PathBuf,
    pub(crate) proc: Option<Process>,
    /// More options, kept across restarts.
    extra: Vec<String>,
}

impl BlobNode {
    fn start(dir: &Path, id: &str, meta: &str) -> BlobNode {
        BlobNode::start_with(dir, id, meta, &[])
    }

    /// Starts a node with more options than the registration.
    pub(crate) fn start_with(dir: &Path, id: &str, meta: &str, extra: &[&str]) -> BlobNode {
        let mut n = BlobNode {
            id: id.to_owned(),
            addr: reserve_port(),
            data: dir.join(format!("{id}-data")),
            proc: None,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        n.up(dir, meta);
        n
    }

    pub(crate) fn up(&mut self, dir: &Path, meta: &str) {
        let mut args = os_args(&[
            "blob",
            "--data-dir",
            self.data.to_str().unwrap(),
            "--listen",
            &self.addr,
            "--meta",
            meta,
            "--id",
            &self.id,
        ]);
        args.extend(self.extra.iter().map(Into::into));
        let p = Process::start(dir, &self.id, &args);
        assert_eq!(p.ready_str("listen"), self.addr);
        self.proc = Some(p);
    }

    pub(crate) fn kill(&mut self) {
        self.proc.take().expect("running").kill_with(9);
    }

    /// Committed blobs on this node (temp files of writes in progress excluded).
    fn blobs(&self) -> usize {
        fn walk(p: &Path) -> usize {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| {
                            let path = e.path();
                            if path.is_dir() {
                                walk(&path)
                            } else {
                                // Not the checksum sidecars.
                                usize::from(path.extension().is_none_or(|e| e != "sum"))
                            }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        std::fs::read_dir(&self.data)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name() != "tmp" && e.path().is_dir())
            .map(|e| walk(&e.path()))
            .sum()
    }
}

/// Waits until the gateway's log says it knows all of `ids` from meta.
pub(crate) fn wait_for_nodes(dir: &Path, tag: &str, ids: &[&str]) {
    let log = dir.join(format!("stderr-{tag}.log"));
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text
            .lines()
            .filter(|l| l.contains("blob nodes registered in meta"))
            .any(|l| ids.iter().all(|id| l.contains(&format!("\"{id}\""))))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not learn blob nodes {ids:?} from meta:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `coffer admin cluster status --json`'s `blob_nodes`, by id: (alive, reachable).
fn blob_status(meta: &str) -> std::collections::BTreeMap<String, (bool, bool)> {
    let out = std::process::Command::new(coffer_bin())
        .args(["admin", "cluster", "--meta", meta, "--json", "status"])
        .output()
        .expect("coffer admin cluster status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    v["blob_nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("no blob_nodes in {v}"))
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_owned(),
                (n["alive"] == true, n["reachable"] == true),
            )
        })
        .collect()
}

pub(crate) async fn put(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, body: &[u8]) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {key}: {e:?}"));
}

/// A gateway (tag `gw`) taking its blob nodes from meta, R=3 W=2.
pub(crate) fn start_gateway(dir: &Path, meta_addr: &str, kms: &Process) -> Process {
    Process::start(
        dir,
        "gw",
        &os_args(&[
            "gateway",
            "--meta",
            meta_addr,
            "--kms",
            &format!("http://{}", kms.ready_str("grpc")),
            "--replicas",
            "3",
            "--write-quorum",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_survive_node_failures() {
    let tmp = tempfile::Builder::new()
        .prefix("coffer-e2e-replication-")
        .tempdir()
        .expect("tempdir");
    let dir = tmp.path();

    let (_meta, meta_addr) = start_single_meta(dir);
    let kms = start_kms(dir);
    let ids = ["b0", "b1", "b2"];
    let mut nodes: Vec<BlobNode> = ids
        .iter()
        .map(|id| BlobNode::start(dir, id, &meta_addr))
        .collect();
    let gw = start_gateway(dir, &meta_addr, &kms);
    wait_for_nodes(dir, "gw", &ids);
    let all_ok = ids
        .iter()
        .map(|id| (id.to_string(), (true, true)))
        .collect();
    assert_eq!(blob_status(&meta_addr), all_ok);
    let endpoint = format!("http://{}", gw.ready_str("s3"));
    let s3 = s3_client(&endpoint, true).await;
    let no_retry = s3_client_no_retry(&endpoint);
    let bucket = bucket_name("replication");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();

    // All up: every object on all three nodes.
    let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, len) in [(3usize << 20) + 17, 1000, 0].into_iter().enumerate() {
        let key = format!("all-up-{i}");
        let body = body_of(len, i as u64 + 1);
        put(&s3, &bucket, &key, &body).await;
        objects.push((key, body));
    }
    for (key, body) in &objects {
        assert!(get_bytes(&s3, &bucket, key).await == *body, "{key}");
    }
    // The third copy may still be committing in the background.
    let deadline = Instant::now() + Duration::from_secs(5);
    while nodes.iter().any(|n| n.blobs() != nodes[0].blobs()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let counts: Vec<usize> = nodes.iter().map(BlobNode::blobs).collect();
    assert!(counts[0] >= 2, "{counts:?}");
    assert!(counts.iter().all(|c| *c == counts[0]), "{counts:?}");

    // One node killed: PUT and GET work; new objects land on the two others.
    nodes[0].kill();
    let before: Vec<usize> = nodes.iter().map(BlobNode::blobs).collect();
    for i in 0..4u64 {
        let key = format!("one-down-{i}");
        let body = body_of((2 << 20) + i as usize * 4099, 10 + i);
        put(&no_retry, &bucket, &key, &body).await;
        objects.push((key, body));
    }
    for (key, body) in &objects {
        assert!(get_bytes(&no_retry, &bucket, key).await == *body, "{key}");
    }
    assert_eq!(nodes[0].blobs(), before[0]);
    assert!(nodes[1].blobs() >= before[1] + 4);
    assert_eq!(nodes[1].blobs() - before[1], nodes[2].blobs() - before[2]);

    let mut expected = all_ok.clone();
    expected.insert("b0".into(), (true, false));
    assert_eq!(blob_status(&meta_addr), expected, "b0 killed just now");

    // Two killed: PUT fails with 503 in bounded time; GET reads from the last replica.
    nodes[1].kill();
    let survivor = nodes[2].blobs();
    let started = Instant::now();
    let err = no_retry
        .put_object()
        .bucket(&bucket)
        .key("two-down")
        .body(ByteStream::from(body_of(100_000, 99)))
        .send()
        .await
        .expect_err("a PUT without a write quorum must fail");
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(503), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the PUT took {:?} to fail",
        started.elapsed()
    );
    assert_eq!(nodes[2].blobs(), survivor, "the failed PUT left a blob");
    for (key, body) in &objects {
        assert!(get_bytes(&no_retry, &bucket, key).await == *body, "{key}");
    }
    let missing = no_retry
        .head_object()
        .bucket(&bucket)
        .key("two-down")
        .send()
        .await;
    assert!(missing.is_err(), "the failed PUT left an object");

    // Back: PUT works again (once the gateway's channels reconnect).
    for n in nodes.iter_mut().take(2) {
        n.up(dir, &meta_addr);
    }
    let body = body_of((1 << 20) + 3, 42);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = no_retry
            .put_object()
            .bucket(&bucket)
            .key("after")
            .body(ByteStream::from(body.clone()))
            .send()
            .await;
        match r {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "PUT still fails after the nodes came back: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    objects.push(("after".into(), body));
    for (key, body) in &objects {
        assert!(get_bytes(&s3, &bucket, key).await == *body, "{key}");
    }
}

/// Bad replication options end `coffer gateway` at once with a clear message, before it waits
/// for the metadata group or the KMS (neither runs here).
#[test]
fn gateway_refuses_bad_replication_options() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--blob", "http://127.0.0.1:1", "--replicas", "3"],
            "one --blob keeps every blob on that node",
        ),
        (
            &["--blob", "http://127.0.0.1:1,http://127.0.0.1:2"],
            "3 replicas need at least 3 blob nodes, 2 given",
        ),
        (
            &["--replicas", "2", "--write-quorum", "3"],
            "cannot exceed the number of replicas",
        ),
        (&["--write-quorum", "0"], "must be at least 1"),
    ];
    let unused = reserve_port();
    for (extra, message) in cases {
        let started = Instant::now();
        let out = std::process::Command::new(coffer_bin())
            .args([
                "gateway",
                "--meta",
                &unused,
                "--kms",
                &format!("http://{unused}"),
            ])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(extra)
            .env("COFFER_ACCESS_KEY_ID", coffer_tests::ACCESS_KEY)
            .env("COFFER_SECRET_ACCESS_KEY", coffer_tests::SECRET_KEY)
            .output()
            .expect("coffer gateway");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} was accepted");
        assert!(stderr.contains(message), "{extra:?}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(10), "{extra:?}");
    }
}
