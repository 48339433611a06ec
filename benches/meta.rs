//! Metadata commits per second: envelope compare-and-set commands (`UpdateEnvelope` with the
//! expected seq and generation, on objects created beforehand) sent by `GrpcMetaClient` over
//! loopback gRPC to a 1-member and a 3-member metadata group (in-process `MetaNode`s on port-0
//! listeners, RocksDB in temp dirs), one command per Raft entry from K concurrent clients versus
//! `apply_batch` of B commands per entry (from the same K clients); next to bare RocksDB synced
//! writes (`WriteOptions::set_sync(true)`, one writer) of a value the size of one encoded
//! command, measured in the same run. Each figure is also printed as the ratio to the bare
//! synced writes.
//!
//! Run: `cargo bench --workspace --bench meta` (`COFFER_BENCH_SECONDS` per case, default 5;
//! `COFFER_BENCH_CLIENTS` K, default 16; `COFFER_BENCH_BATCH` B, default 16; `COFFER_BENCH_DIR`
//! where the databases go, default the temp dir: put it on the disk you mean to measure).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_benches::print_table;
use coffer_meta::raft::{MetaNode, Proposal};
use coffer_meta::{
    BucketRecord, Command, Envelope, GrpcMetaClient, GrpcMetaConfig, MetaClient, ObjectHeaders,
    ObjectVersion, PartRef, SseAlgorithm, Versioning,
};
use coffer_raft::RaftConfig;

const BUCKET: &str = "bench";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn envelope(generation: u64) -> Envelope {
    Envelope {
        v: 1,
        algorithm: SseAlgorithm::AwsKms,
        kms_key_arn: Some("arn:aws:kms:us-east-1:111122223333:key/bench".into()),
        wrapped_dek: vec![7; 184],
        context: BTreeMap::from([("aws:s3:arn".into(), format!("arn:aws:s3:::{BUCKET}"))]),
        user_context: None,
        bucket_key_id: None,
        second_wrapped_dek: None,
        sse_c_key_hmac: None,
        sse_c_salt: None,
        sse_c_key_md5: None,
        generation,
    }
}

fn put(key: &str, blob: [u8; 16]) -> Command {
    let etag = format!("{:032x}", u128::from_be_bytes(blob));
    Command::PutObject {
        bucket: BUCKET.into(),
        version: ObjectVersion {
            v: 1,
            key: key.into(),
            version_id: "null".into(),
            seq: 0,
            delete_marker: false,
            size: 4096,
            etag: etag.clone(),
            last_modified_ms: 1_000,
            headers: ObjectHeaders::default(),
            checksum: None,
            parts: vec![PartRef {
                part_number: 0,
                blob_id: blob,
                size: 4096,
                chunk_size: 1 << 20,
                etag,
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

/// An object the bench rewraps: what the compare-and-set expects of it.
#[derive(Clone)]
struct Target {
    key: String,
    seq: u64,
    generation: u64,
}

impl Target {
    fn rewrap(&self) -> Command {
        Command::UpdateEnvelope {
            bucket: BUCKET.into(),
            key: self.key.clone(),
            version_id: None,
            expected_generation: self.generation,
            expected_seq: Some(self.seq),
            envelope: envelope(self.generation + 1),
        }
    }
}

/// Bare RocksDB: synced writes of `value_len` bytes, one at a time, for `budget`; writes/s.
fn bare_rocksdb(path: &Path, value_len: usize, budget: Duration) -> f64 {
    let db = rocksdb::DB::open_default(path).expect("open RocksDB");
    let mut opts = rocksdb::WriteOptions::default();
    opts.set_sync(true);
    let value = vec![0x5a; value_len];
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        db.put_opt(n.to_be_bytes(), &value, &opts)
            .expect("synced write");
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Starts `n` members in `root` on loopback port-0 listeners and bootstraps them as one group.
async fn start_group(root: &Path, n: u64) -> Vec<MetaNode> {
    let mut nodes = Vec::new();
    for id in 1..=n {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let dir = root.join(format!("meta-{id}"));
        nodes.push(
            MetaNode::start(id, &dir, listener, RaftConfig::default())
                .await
                .expect("start member"),
        );
    }
    let members = nodes
        .iter()
        .map(|m| (m.id(), m.local_addr().to_string()))
        .collect();
    nodes[0].initialize(members).await.expect("bootstrap");
    nodes[0]
        .raft_node()
        .raft()
        .wait(Some(Duration::from_secs(30)))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .expect("a leader is elected");
    nodes
}

/// Creates the bucket and `clients` × `per_client` objects; returns each client's objects.
async fn create_objects(
    client: &GrpcMetaClient,
    clients: usize,
    per_client: usize,
) -> Vec<Vec<Target>> {
    client
        .apply(Command::CreateBucket(BucketRecord {
            v: 1,
            name: BUCKET.into(),
            created_ms: 1,
            region: "us-east-1".into(),
            owner_id: "owner".into(),
            versioning: Versioning::Unversioned,
            object_lock_enabled: false,
            default_retention: None,
            encryption: None,
            directory: false,
        }))
        .await
        .expect("bucket");
    let mut all = Vec::new();
    for c in 0..clients {
        let keys: Vec<String> = (0..per_client).map(|j| format!("c{c}/o{j}")).collect();
        let commands = keys
            .iter()
            .enumerate()
            .map(|(j, key)| put(key, ((c * per_client + j) as u128 + 1).to_be_bytes()))
            .collect();
        let outputs = client.apply_batch(commands).await.expect("objects");
        let targets = keys
            .into_iter()
            .zip(outputs)
            .map(|(key, out)| Target {
                key,
                seq: out.expect("object").seq,
                generation: 1,
            })
            .collect();
        all.push(targets);
    }
    all
}

/// What one timed case did.
struct Run {
    entries: u64,
    commands: u64,
    elapsed: Duration,
}

/// Each client rewraps its objects until `budget` is spent: one command per call
/// (`per_entry == 1`, its objects in turn) or all its objects in one `apply_batch`. Every
/// compare-and-set must succeed (the client knows the generation). Returns the objects with
/// their new generations.
async fn run(
    client: &Arc<GrpcMetaClient>,
    objects: Vec<Vec<Target>>,
    per_entry: usize,
    budget: Duration,
) -> (Run, Vec<Vec<Target>>) {
    let start = Instant::now();
    let deadline = start + budget;
    let tasks: Vec<_> = objects
        .into_iter()
        .map(|mut targets| {
            let client = client.clone();
            tokio::spawn(async move {
                let (mut entries, mut commands) = (0u64, 0u64);
                let mut next = 0;
                while Instant::now() < deadline {
                    let picked: Vec<usize> = (0..per_entry.min(targets.len()))
                        .map(|i| (next + i) % targets.len())
                        .collect();
                    next = (next + picked.len()) % targets.len();
                    let batch = picked.iter().map(|&i| targets[i].rewrap()).collect();
                    let results = client.apply_batch(batch).await.expect("commit");
                    for (i, result) in picked.iter().zip(results) {
                        result.expect("compare-and-set");
                        targets[*i].generation += 1;
                    }
                    entries += 1;
                    commands += picked.len() as u64;
                }
                (entries, commands, targets)
            })
        })
        .collect();
    let mut total = Run {
        entries: 0,
        commands: 0,
        elapsed: Duration::ZERO,
    };
    let mut objects = Vec::new();
    for task in tasks {
        let (entries, commands, targets) = task.await.expect("client task");
        total.entries += entries;
        total.commands += commands;
        objects.push(targets);
    }
    total.elapsed = start.elapsed();
    (total, objects)
}

fn main() {
    let budget = Duration::from_secs(env_u64("COFFER_BENCH_SECONDS", 5).max(1));
    let clients = env_u64("COFFER_BENCH_CLIENTS", 16).max(1) as usize;
    let batch = env_u64("COFFER_BENCH_BATCH", 16).max(1) as usize;
    let root = match std::env::var_os("COFFER_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let sample = Target {
        key: "c0/o0".into(),
        seq: 1,
        generation: 1,
    }
    .rewrap();
    let value_len = coffer_meta::codec::encode(&Proposal::new(vec![sample]))
        .expect("encode")
        .len();
    let bare = bare_rocksdb(&root.path().join("bare"), value_len, budget);
    let mut rows = vec![vec![
        format!("bare RocksDB, synced write of {value_len} B"),
        "1".into(),
        "1".into(),
        format!("{bare:.0}"),
        format!("{bare:.0}"),
        "1.00".into(),
    ]];

    for members in [1u64, 3] {
        let measured = rt.block_on(async {
            let nodes = start_group(&root.path().join(format!("group-{members}")), members).await;
            let addrs = nodes.iter().map(|n| n.local_addr().to_string()).collect();
            let client = Arc::new(
                GrpcMetaClient::new(addrs, GrpcMetaConfig::default()).expect("meta client"),
            );
            let objects = create_objects(&client, clients, batch).await;
            let (single, objects) = run(&client, objects, 1, budget).await;
            let (batched, _) = run(&client, objects, batch, budget).await;
            drop(client);
            for node in nodes {
                node.shutdown().await.expect("shutdown");
            }
            [(1, single), (batch, batched)]
        });
        for (per_entry, r) in measured {
            let secs = r.elapsed.as_secs_f64();
            let commits = r.commands as f64 / secs;
            rows.push(vec![
                format!("{members}-member group over gRPC"),
                per_entry.to_string(),
                clients.to_string(),
                format!("{:.0}", r.entries as f64 / secs),
                format!("{commits:.0}"),
                format!("{:.2}", commits / bare),
            ]);
        }
    }

    println!(
        "\nMetadata commits (UpdateEnvelope compare-and-set), {} s per case:\n",
        budget.as_secs()
    );
    print_table(
        &[
            "setup",
            "commands/entry",
            "clients",
            "entries/s",
            "commits/s",
            "vs bare synced write",
        ],
        &rows,
    );
}
