//! The cost of replication: PUT and GET throughput of 1 MiB and 64 MiB objects (1 and 8
//! concurrent clients) through the split roles with three replicas, next to one `coffer dev`,
//! in the same run. Every role is a real process on loopback ports chosen by the OS: three
//! `coffer meta` members (one Raft group), `coffer kms`, three `coffer blob --meta` nodes that
//! register themselves, and a `coffer gateway` without `--blob` that takes them from meta with
//! R=3, W=2. The same cluster also has a gateway with one `--blob` node (R=W=1), measured too:
//! it separates the cost of the split roles (gRPC hops to meta, KMS and the blob node) from the
//! cost of writing three copies. The three targets run back to back for each case.
//!
//! Run: `cargo build --release --workspace --bins --benches && COFFER_BIN=$CARGO_TARGET_DIR/release/coffer cargo bench --workspace --bench cluster`
//! (`COFFER_BENCH_SECONDS` sets the time per case and target, default 2; every client finishes
//! at least one request. What is written stays in the temp dir until the end: about
//! throughput x seconds for `coffer dev` and for R=1, three times that for R=3.)

use std::ffi::OsString;
use std::time::{Duration, Instant};

use coffer_benches::{bench_budget, get_mib_per_s, print_table, put_mib_per_s};
use coffer_tests::cluster::{Cluster, ClusterOptions};
use coffer_tests::{body_of, s3_client, Coffer, Process};

/// The ids of the registered blob nodes.
const BLOB_IDS: [&str; 3] = ["blob1", "blob2", "blob3"];

fn main() {
    let budget = bench_budget(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dev = Coffer::start();
    let cluster = Cluster::start(ClusterOptions::default());
    let (_blobs, replicated) = start_replicated(&cluster);
    // (object, clients) -> [dev, R=1, R=3] for PUT and for GET.
    let mut put_rows = Vec::new();
    let mut get_rows = Vec::new();
    rt.block_on(async {
        let targets = [
            (dev.s3().await, "bench-dev"),
            (cluster.s3().await, "bench-r1"),
            (
                s3_client(&format!("http://{}", replicated.ready_str("s3")), true).await,
                "bench-r3",
            ),
        ];
        for (s3, bucket) in &targets {
            s3.create_bucket()
                .bucket(*bucket)
                .send()
                .await
                .unwrap_or_else(|e| panic!("CreateBucket {bucket}: {e:?}"));
        }
        for size in [1usize << 20, 64 << 20] {
            let body = bytes::Bytes::from(body_of(size, 42));
            for clients in [1usize, 8] {
                let (mut put, mut get) = (Vec::new(), Vec::new());
                for (s3, bucket) in &targets {
                    put.push(put_mib_per_s(s3, bucket, body.clone(), clients, budget).await);
                    get.push(get_mib_per_s(s3, bucket, size, clients, budget).await);
                }
                put_rows.push(row(size, clients, &put));
                get_rows.push(row(size, clients, &get));
            }
        }
    });
    let header = |op: &str| {
        [
            "object".to_owned(),
            "clients".to_owned(),
            format!("dev {op} MiB/s"),
            format!("R=1 {op} MiB/s"),
            format!("R=3 W=2 {op} MiB/s"),
            "R=1 / dev".to_owned(),
            "R=3 / dev".to_owned(),
            "R=3 / R=1".to_owned(),
        ]
    };
    println!(
        "{} s per case and target. dev: one `coffer dev`; R=1: gateway with one --blob node; \
         R=3 W=2: gateway over three blob nodes registered in meta (3 meta members, KMS, \
         each role its own process).",
        budget.as_secs()
    );
    for (op, rows) in [("PUT", &put_rows), ("GET", &get_rows)] {
        let h = header(op);
        let h: Vec<&str> = h.iter().map(String::as_str).collect();
        println!();
        print_table(&h, rows);
    }
}

/// A table row: the three targets' MiB/s and their ratios.
fn row(size: usize, clients: usize, mib: &[f64]) -> Vec<String> {
    let (dev, r1, r3) = (mib[0], mib[1], mib[2]);
    vec![
        format!("{} MiB", size >> 20),
        clients.to_string(),
        format!("{dev:.0}"),
        format!("{r1:.0}"),
        format!("{r3:.0}"),
        format!("{:.2}", r1 / dev),
        format!("{:.2}", r3 / dev),
        format!("{:.2}", r3 / r1),
    ]
}

fn os_args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

/// Starts the three `coffer blob --meta` nodes, waits until meta lists them alive and
/// reachable, then starts a gateway without `--blob` (R=3, W=2), which reads the registered
/// nodes before it reports ready; checks from its log that it knows all three.
fn start_replicated(cluster: &Cluster) -> (Vec<Process>, Process) {
    let dir = &cluster.dir;
    let meta = cluster.meta_addrs();
    let blobs: Vec<Process> = BLOB_IDS
        .iter()
        .map(|id| {
            let data = dir.join(format!("{id}-data"));
            Process::start(
                dir,
                id,
                &os_args(&[
                    "blob",
                    "--data-dir",
                    &data.to_string_lossy(),
                    "--listen",
                    "127.0.0.1:0",
                    "--meta",
                    &meta,
                    "--id",
                    id,
                ]),
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = cluster.admin(&["status"]);
        let up = |id: &str| {
            status.code == 0
                && status.json()["blob_nodes"].as_array().is_some_and(|nodes| {
                    nodes
                        .iter()
                        .any(|n| n["id"] == id && n["alive"] == true && n["reachable"] == true)
                })
        };
        if BLOB_IDS.iter().all(|id| up(id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "meta does not list blob nodes {BLOB_IDS:?} as alive and reachable: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let gateway = Process::start(
        dir,
        "gateway-r3",
        &os_args(&[
            "gateway",
            "--meta",
            &meta,
            "--kms",
            &format!("http://{}", cluster.kms.ready_str("grpc")),
            "--replicas",
            "3",
            "--write-quorum",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ]),
    );
    let log = std::fs::read_to_string(dir.join("stderr-gateway-r3.log")).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("blob nodes registered in meta")
                && BLOB_IDS.iter().all(|id| l.contains(&format!("\"{id}\"")))),
        "the R=3 gateway did not report knowing {BLOB_IDS:?}:\n{log}"
    );
    (blobs, gateway)
}
