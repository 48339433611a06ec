//! Fault test of bulk re-encryption (issue 8, item 5) on the split roles: three `coffer meta`
//! members, `coffer kms`, one `coffer blob` and two `coffer gateway`s, whose job runners share
//! the work. A job moves 10,000 small objects (SSE-S3, and SSE-KMS under key A) to SSE-KMS
//! under key B while the gateway running it is SIGKILLed and restarted, then the metadata
//! leader is SIGKILLed and restarted.
//!
//! Afterwards the job is completed and counted exactly (every selected object once); the
//! metadata, read straight from the group, shows every object under key B with its envelope
//! generation one higher (rewrapped exactly once: never twice, never missed), the objects
//! already under B and the SSE-C ones untouched, and the same blobs; the blob node's data
//! directory holds exactly the files it held before (no blob written, moved or removed);
//! HEAD and GET through S3 agree; and the three members' state digests are identical.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BlockedEncryptionTypes, EncryptionType, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};
use base64::Engine;
use coffer_meta::{
    GrpcMetaClient, GrpcMetaConfig, ListQuery, MetaClient, ObjectVersion, SseAlgorithm,
};
use coffer_tests::cluster::{Cluster, ClusterOptions};
use coffer_tests::{body_of, bucket_name, get_bytes, s3_client, ACCESS_KEY, SECRET_KEY};
use futures::StreamExt;
use md5::Digest;
use serde_json::{json, Value};

/// Objects the job rewraps: SSE-S3, and every fifth SSE-KMS under key A.
const REWRAP: usize = 10_000;
/// Objects already under key B before the job: selected, counted as already done, untouched.
const AT_TARGET: usize = 50;
/// SSE-C objects: selected (the job's source is "any") and skipped with the reason "sse-c".
const SSE_C: usize = 20;
/// Every object of the bucket.
const ALL: usize = REWRAP + AT_TARGET + SSE_C;

/// Versions per page, so one checkpoint per 50 objects.
const PAGE_SIZE: usize = 50;

/// PUTs in flight while the bucket is filled.
const PUT_CONCURRENCY: usize = 48;
/// The gateway running the job is killed once this many objects are done.
const GATEWAY_KILL_AT: u64 = 1_500;
/// The meta leader is killed once this many more are done after the takeover.
const LEADER_KILL_AFTER: u64 = 1_500;
/// How long the job may take, faults included.
const JOB_TIMEOUT: Duration = Duration::from_secs(240);
/// Bound on each recovery: a takeover after the lease, a new leader.
const RECOVERY: Duration = Duration::from_secs(60);

/// The SSE-C customer key of the SSE-C objects (test data, not a secret).
const CUSTOMER_KEY: [u8; 32] = [0x5c; 32];

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Runs a blocking harness call without stalling the other tasks of the runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// How an object is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Enc {
    SseS3,
    KeyA,
    KeyB,
    SseC,
}

/// Object `i` of the bucket: its key, encryption and (deterministic) body of 256 B–1 KiB.
/// Keys sort as the job walks them: `obj/` (rewrapped), `ssec/` (skipped), `tgt/` (at target).
fn object(i: usize) -> (String, Enc, Vec<u8>) {
    let (key, enc) = if i < REWRAP {
        let enc = if i % 5 == 0 { Enc::KeyA } else { Enc::SseS3 };
        (format!("obj/{i:05}"), enc)
    } else if i < REWRAP + AT_TARGET {
        (format!("tgt/{:03}", i - REWRAP), Enc::KeyB)
    } else {
        (format!("ssec/{:03}", i - REWRAP - AT_TARGET), Enc::SseC)
    };
    let len = 256 + (i * 131) % 769;
    (key, enc, body_of(len, i as u64 + 1))
}

/// The index of `key` (an `obj/NNNNN` key) for [`object`].
fn index_of(key: &str) -> Option<usize> {
    key.strip_prefix("obj/")?.parse().ok()
}

/// The SSE-C header trio's values: algorithm, key, key MD5 (base64).
fn sse_c_headers() -> (String, String, String) {
    (
        "AES256".into(),
        B64.encode(CUSTOMER_KEY),
        B64.encode(md5::Md5::digest(CUSTOMER_KEY)),
    )
}

/// PUTs object `i` through `s3`.
async fn put(s3: &aws_sdk_s3::Client, bucket: &str, i: usize, key_a: &str, key_b: &str) {
    let (key, enc, body) = object(i);
    let req = s3
        .put_object()
        .bucket(bucket)
        .key(&key)
        .body(ByteStream::from(body));
    let req = match enc {
        Enc::SseS3 => req,
        Enc::KeyA => req
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(key_a),
        Enc::KeyB => req
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(key_b),
        Enc::SseC => {
            let (alg, k, md5) = sse_c_headers();
            req.sse_customer_algorithm(alg)
                .sse_customer_key(k)
                .sse_customer_key_md5(md5)
        }
    };
    req.send()
        .await
        .unwrap_or_else(|e| panic!("PUT {key}: {e:?}"));
}

/// Allows SSE-C writes to `bucket` (new buckets block them), keeping SSE-S3 as the default.
async fn allow_sse_c(s3: &aws_sdk_s3::Client, bucket: &str) {
    let default = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .expect("default encryption");
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(default)
        .blocked_encryption_types(
            BlockedEncryptionTypes::builder()
                .encryption_type(EncryptionType::None)
                .build(),
        )
        .build();
    let config = ServerSideEncryptionConfiguration::builder()
        .rules(rule)
        .build()
        .expect("encryption configuration");
    s3.put_bucket_encryption()
        .bucket(bucket)
        .server_side_encryption_configuration(config)
        .send()
        .await
        .expect("PutBucketEncryption allowing SSE-C");
}

/// Every current object of `bucket`, read from the metadata group (retried while it has no
/// leader).
async fn meta_listing(meta: &GrpcMetaClient, bucket: &str) -> BTreeMap<String, ObjectVersion> {
    let deadline = Instant::now() + RECOVERY;
    let mut out = BTreeMap::new();
    let mut start_after = None;
    loop {
        let q = ListQuery {
            prefix: String::new(),
            delimiter: None,
            start_after: start_after.clone(),
            max_keys: 1000,
        };
        let page = match meta.list_objects(bucket, &q).await {
            Ok(p) => p,
            Err(e) => {
                assert!(Instant::now() < deadline, "listing {bucket} from meta: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        start_after = page.objects.last().map(|v| v.key.clone());
        for v in page.objects {
            out.insert(v.key.clone(), v);
        }
        if !page.is_truncated {
            return out;
        }
    }
}

/// A file of the blob node's data directory: size and modification time.
type FileStamp = (u64, SystemTime);

/// Every file under `dir` (relative path → size and mtime).
fn blob_files(dir: &Path) -> BTreeMap<String, FileStamp> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, FileStamp>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let entry = entry.expect("directory entry");
            let meta = entry.metadata().expect("file metadata");
            if meta.is_dir() {
                walk(root, &entry.path(), out);
            } else {
                let rel = entry
                    .path()
                    .strip_prefix(root)
                    .expect("under root")
                    .to_owned();
                let stamp = (meta.len(), meta.modified().expect("mtime"));
                out.insert(rel.to_string_lossy().into_owned(), stamp);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// One call to a gateway's admin API (`addr` = `host:port`), authenticated with the test key
/// pair; the status and the JSON body. Blocking.
fn admin_call(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    use std::io::{Read, Write};
    let sock = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut conn = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(3))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ACCESS_KEY}:{SECRET_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: no HTTP response: {text:?}"))?;
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: bad status line: {head:?}"))?;
    let v = serde_json::from_str(rest)
        .map_err(|e| format!("{method} {path}: HTTP {status}, not JSON ({e}): {rest:?}"))?;
    Ok((status, v))
}

/// The job as a running gateway's admin API shows it (the first that answers 200).
fn read_job(cluster: &Cluster, id: &str) -> Result<Value, String> {
    let mut errors = Vec::new();
    for i in 0..cluster.gateways.len() {
        if !cluster.gateway_running(i) {
            continue;
        }
        match admin_call(
            &cluster.gateway_admin(i),
            "GET",
            &format!("/admin/v1/jobs/{id}"),
            None,
        ) {
            Ok((200, v)) => return Ok(v),
            Ok((status, v)) => errors.push(format!("gateway {i}: HTTP {status} {v}")),
            Err(e) => errors.push(format!("gateway {i}: {e}")),
        }
    }
    Err(errors.join("; "))
}

/// Polls the job until `pred` holds; panics after `timeout` (or when the job reached a
/// terminal state that does not satisfy `pred`) with the last record.
async fn wait_job(
    cluster: &Cluster,
    id: &str,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match blocking(|| read_job(cluster, id)) {
            Ok(job) => {
                if pred(&job) {
                    return job;
                }
                let state = job["state"].as_str().unwrap_or_default();
                assert!(
                    !matches!(state, "completed" | "cancelled" | "failed"),
                    "job {id} ended ({state}) before {what}: {job}"
                );
                job.to_string()
            }
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "job {id}: no {what} within {timeout:?}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn done_of(job: &Value) -> u64 {
    job["done"].as_u64().unwrap_or(0)
}

fn owner_of(job: &Value) -> Option<String> {
    job["owner"].as_str().map(str::to_string)
}

fn counter(job: &Value, name: &str) -> u64 {
    job["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("job without counters.{name}: {job}"))
}

/// The running gateway whose job runner is `runner` (it logs its id when it claims a job).
fn gateway_of(cluster: &Cluster, runner: &str) -> Option<usize> {
    (0..cluster.gateways.len())
        .find(|&i| cluster.gateway_running(i) && cluster.gateway_log(i).contains(runner))
}

/// The key the job's cursor is at, as an [`object`] index.
fn cursor_index(job: &Value) -> Option<usize> {
    index_of(job["cursor"]["key"].as_str()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_survives_gateway_and_leader_sigkill_rewrapping_each_object_once() {
    let options = ClusterOptions {
        // Snapshots now and then, not every few hundred of the ~10,000 PUTs.
        snapshot_logs: 5_000,
        snapshot_keep_logs: 1_000,
        gateways: 2,
        gateway_env: [
            ("COFFER_JOBS_LEASE_SECS", "3"),
            ("COFFER_JOBS_PAGE_SIZE", &PAGE_SIZE.to_string()),
            ("COFFER_JOBS_CONCURRENCY", "16"),
            ("COFFER_JOBS_POLL_MS", "200"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    };
    let mut cluster = blocking(|| Cluster::start(options));
    let key_a = blocking(|| cluster.create_kms_key("reencrypt-faults source A"));
    let key_b = blocking(|| cluster.create_kms_key("reencrypt-faults target B"));
    let bucket = bucket_name("reenc-faults");
    let gw = [
        s3_client(&cluster.gateway_endpoint(0), true).await,
        s3_client(&cluster.gateway_endpoint(1), true).await,
    ];
    gw[0]
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("CreateBucket");
    allow_sse_c(&gw[0], &bucket).await;

    // Fill the bucket through both gateways.
    let started = Instant::now();
    futures::stream::iter(0..ALL)
        .map(|i| put(&gw[i % 2], &bucket, i, &key_a, &key_b))
        .buffer_unordered(PUT_CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    eprintln!("{ALL} objects written in {:.1?}", started.elapsed());

    let meta = GrpcMetaClient::new(
        cluster.members.iter().map(|m| m.addr.clone()).collect(),
        GrpcMetaConfig::default(),
    )
    .expect("meta client");
    let before = meta_listing(&meta, &bucket).await;
    assert_eq!(before.len(), ALL, "objects in the bucket before the job");
    for i in 0..ALL {
        let (key, enc, _) = object(i);
        let env = before[&key].envelope.as_ref().expect("an envelope");
        let expected = match enc {
            Enc::SseS3 => (SseAlgorithm::Aes256, None),
            Enc::KeyA => (SseAlgorithm::AwsKms, Some(key_a.as_str())),
            Enc::KeyB => (SseAlgorithm::AwsKms, Some(key_b.as_str())),
            Enc::SseC => (SseAlgorithm::SseC, None),
        };
        let arn = env.kms_key_arn.as_deref().filter(|_| expected.1.is_some());
        assert_eq!((env.algorithm, arn), expected, "{key} before the job");
    }
    let blob_dir = cluster.blob_data_dir();
    let files_before = blob_files(&blob_dir);
    let names: BTreeSet<&str> = files_before
        .keys()
        .filter_map(|p| Path::new(p).file_name()?.to_str())
        .collect();
    for v in before.values() {
        for part in &v.parts {
            assert!(
                names.contains(hex::encode(part.blob_id).as_str()),
                "{}: blob {} is not in {}",
                v.key,
                hex::encode(part.blob_id),
                blob_dir.display()
            );
        }
    }
    eprintln!(
        "{} files in the blob node's data directory",
        files_before.len()
    );

    // Start the job on the first gateway's admin API.
    let spec = json!({ "bucket": bucket, "source": "any", "target_key_arn": key_b });
    let admin0 = cluster.gateway_admin(0);
    let (status, job) =
        blocking(|| admin_call(&admin0, "POST", "/admin/v1/jobs/reencrypt", Some(&spec)))
            .expect("create the job");
    assert_eq!(status, 201, "create the job: {job}");
    let id = job["id"].as_str().expect("job id").to_string();
    let job_started = Instant::now();

    // Fault 1: SIGKILL the gateway whose runner holds the job, then start it again.
    let running = wait_job(&cluster, &id, RECOVERY, "progress to kill at", |j| {
        j["state"] == "running" && done_of(j) >= GATEWAY_KILL_AT && owner_of(j).is_some()
    })
    .await;
    let owner = owner_of(&running).expect("owner");
    let victim = gateway_of(&cluster, &owner)
        .unwrap_or_else(|| panic!("no gateway logged runner {owner}: {running}"));
    blocking(|| cluster.kill_gateway(victim));
    // What the dead runner had checkpointed (read after the kill: nothing advances it now).
    let at_kill = blocking(|| read_job(&cluster, &id)).expect("the job after the gateway kill");
    assert_ne!(
        at_kill["state"], "completed",
        "the job ended before the fault"
    );
    let done_at_kill = done_of(&at_kill);
    eprintln!(
        "gateway {victim} (runner {owner}) killed at {done_at_kill}/{ALL} after {:.1?}",
        job_started.elapsed()
    );
    blocking(|| cluster.restart_gateway(victim));
    let taken = wait_job(&cluster, &id, RECOVERY, "takeover by another runner", |j| {
        owner_of(j).is_some_and(|o| o != owner) && done_of(j) > done_at_kill
    })
    .await;
    let new_owner = owner_of(&taken).expect("owner");
    let heir = gateway_of(&cluster, &new_owner)
        .unwrap_or_else(|| panic!("no running gateway logged runner {new_owner}"));
    eprintln!(
        "taken over by gateway {heir} (runner {new_owner}) at {}/{ALL}",
        done_of(&taken)
    );

    // Fault 2: SIGKILL the meta leader once the job went on for a while; restart it when the
    // others have elected a new one.
    let target = done_of(&taken) + LEADER_KILL_AFTER;
    wait_job(
        &cluster,
        &id,
        RECOVERY,
        "progress after the takeover",
        |j| done_of(j) >= target,
    )
    .await;
    let leader = blocking(|| cluster.wait_leader(RECOVERY));
    blocking(|| cluster.kill(leader));
    let at_leader_kill = wait_job(
        &cluster,
        &id,
        RECOVERY,
        "an answer without the leader",
        |_| true,
    )
    .await;
    assert_ne!(
        at_leader_kill["state"], "completed",
        "the job ended before the leader was killed"
    );
    let done_at_leader_kill = done_of(&at_leader_kill);
    let new_leader = blocking(|| cluster.wait_leader(RECOVERY));
    eprintln!("meta leader {leader} killed at {done_at_leader_kill}/{ALL}; {new_leader} leads");
    blocking(|| cluster.restart(leader));

    let job = wait_job(&cluster, &id, JOB_TIMEOUT, "completion", |j| {
        j["state"] == "completed"
    })
    .await;
    eprintln!("job completed after {:.1?}: {job}", job_started.elapsed());

    // The job's record: every selected object counted once.
    assert!(job["error"].is_null(), "{job}");
    assert_eq!(job["total"].as_u64(), Some(ALL as u64), "total: {job}");
    assert_eq!(done_of(&job), ALL as u64, "done: {job}");
    let rewrapped = counter(&job, "rewrapped");
    let already_done = counter(&job, "already_done");
    assert_eq!(counter(&job, "failed"), 0, "failed: {job}");
    assert_eq!(counter(&job, "skipped"), SSE_C as u64, "skipped: {job}");
    assert_eq!(
        job["skipped_by_reason"],
        json!({ "sse-c": SSE_C }),
        "skipped by reason: {job}"
    );
    assert_eq!(
        rewrapped + already_done,
        (REWRAP + AT_TARGET) as u64,
        "rewrapped + already done: {job}"
    );
    // A page's envelopes are committed with its checkpoint: what a dead runner rewrapped
    // after its last checkpoint was never written, so nothing counts as already done but the
    // objects that were under B before the job.
    assert_eq!(already_done, AT_TARGET as u64, "already done: {job}");

    // The metadata: each selected object rewrapped exactly once, the blobs unchanged.
    let after = meta_listing(&meta, &bucket).await;
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "the bucket's keys changed"
    );
    let mut bumped = 0u64;
    for i in 0..ALL {
        let (key, enc, _) = object(i);
        let (old, new) = (&before[&key], &after[&key]);
        assert_eq!(new.version_id, old.version_id, "{key}: version");
        assert_eq!(new.parts, old.parts, "{key}: parts (blobs)");
        assert_eq!(
            (new.size, &new.etag),
            (old.size, &old.etag),
            "{key}: size, ETag"
        );
        let (o, n) = (
            old.envelope.as_ref().expect("envelope"),
            new.envelope.as_ref().expect("envelope"),
        );
        match enc {
            Enc::SseS3 | Enc::KeyA => {
                assert_eq!(n.algorithm, SseAlgorithm::AwsKms, "{key}: algorithm");
                assert_eq!(n.kms_key_arn.as_deref(), Some(key_b.as_str()), "{key}: key");
                assert_eq!(n.bucket_key_id, None, "{key}: bucket key");
                assert_eq!(
                    n.generation,
                    o.generation + 1,
                    "{key}: envelope generation {} → {} (rewrapped once?)",
                    o.generation,
                    n.generation
                );
                bumped += 1;
            }
            Enc::KeyB | Enc::SseC => assert!(o == n, "{key}: envelope changed: {o:?} → {n:?}"),
        }
    }
    assert_eq!(bumped, REWRAP as u64);
    assert_eq!(
        rewrapped, bumped,
        "rewrapped vs objects whose envelope generation went up by one: {job}"
    );
    let files_after = blob_files(&blob_dir);
    if files_after != files_before {
        let added: Vec<_> = files_after
            .keys()
            .filter(|k| !files_before.contains_key(*k))
            .take(10)
            .collect();
        let removed: Vec<_> = files_before
            .keys()
            .filter(|k| !files_after.contains_key(*k))
            .take(10)
            .collect();
        let changed: Vec<_> = files_before
            .iter()
            .filter(|(k, v)| files_after.get(*k).is_some_and(|a| a != *v))
            .map(|(k, _)| k)
            .take(10)
            .collect();
        panic!(
            "the blob node's files changed ({} → {}): added {added:?}, removed {removed:?}, \
             rewritten {changed:?}",
            files_before.len(),
            files_after.len()
        );
    }

    // Through S3 (both gateways): HEAD says SSE-KMS under B and GET returns the bytes, for the
    // first pages, the pages around each fault, a spread of 1 in 33 and every object the job
    // skipped or found at the target.
    let gw = [
        s3_client(&cluster.gateway_endpoint(0), true).await,
        s3_client(&cluster.gateway_endpoint(1), true).await,
    ];
    let mut sample: BTreeSet<usize> = (0..2 * PAGE_SIZE).collect();
    sample.extend((0..REWRAP).step_by(33));
    sample.extend(REWRAP..ALL);
    for j in [&running, &at_kill, &taken, &at_leader_kill] {
        if let Some(c) = cursor_index(j) {
            sample.extend(c.saturating_sub(PAGE_SIZE)..(c + 2 * PAGE_SIZE).min(REWRAP));
        }
    }
    let checked = sample.len();
    futures::stream::iter(sample)
        .map(|i| check_object(&gw[i % 2], &bucket, i, &key_b))
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    eprintln!("{checked} objects read back through S3");

    // The members agree.
    blocking(|| cluster.wait_identical(RECOVERY));
}

/// HEAD and GET object `i`: the encryption it should have after the job, and its bytes.
async fn check_object(s3: &aws_sdk_s3::Client, bucket: &str, i: usize, key_b: &str) {
    let (key, enc, body) = object(i);
    let (alg, k, md5) = sse_c_headers();
    if enc == Enc::SseC {
        let got = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .sse_customer_algorithm(alg)
            .sse_customer_key(k)
            .sse_customer_key_md5(&md5)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {key} (SSE-C): {e:?}"));
        assert_eq!(got.sse_customer_key_md5(), Some(md5.as_str()), "{key}");
        let bytes = got.body.collect().await.expect("body").into_bytes();
        assert!(bytes.as_ref() == body.as_slice(), "GET {key}: wrong bytes");
        return;
    }
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("HEAD {key}: {e:?}"));
    assert_eq!(
        head.server_side_encryption(),
        Some(&ServerSideEncryption::AwsKms),
        "HEAD {key}"
    );
    assert_eq!(head.ssekms_key_id(), Some(key_b), "HEAD {key}: key id");
    let bytes = get_bytes(s3, bucket, &key).await;
    assert!(
        bytes == body,
        "GET {key}: {} bytes, not the {} written",
        bytes.len(),
        body.len()
    );
}
