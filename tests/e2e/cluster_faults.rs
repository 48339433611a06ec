//! Fault tests of the split roles with real processes (issue 5): three `coffer meta` members,
//! `coffer kms`, `coffer blob` and a `coffer gateway`, under a load of PUT (SSE-S3 and SSE-KMS),
//! DELETE and UpdateObjectEncryption from concurrent aws-sdk-s3 tasks, while
//! (a) the leader is SIGKILLed and restarted, (b) a follower is SIGSTOPped and resumed,
//! (c) a follower falls behind past the snapshot threshold and catches up by snapshot, and
//! (d) two of three members are down: writes fail fast with 503, then succeed again.
//!
//! Afterwards every acknowledged write reads back with its acknowledged envelope, a write that
//! failed or whose outcome is unknown is either absent or whole (never a HEAD that works with
//! a GET that fails), the listing agrees, and the three members' state digests are identical.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ObjectEncryption, ServerSideEncryption, SsekmsEncryption};
use coffer_tests::cluster::{Cluster, ClusterOptions};
use coffer_tests::{body_of, bucket_name, md5_hex, ACCESS_KEY, SECRET_KEY};
use futures::StreamExt;

/// Bound on how long the cluster may take to recover from a fault (elections, restarts).
const RECOVERY: Duration = Duration::from_secs(45);

/// Runs a blocking harness call without stalling the other tasks of the runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// An S3 client for the gateway. `retries` false: one attempt per call, so an outcome is the
/// gateway's answer to that one request.
fn client(endpoint: &str, retries: bool, timeout: Duration) -> aws_sdk_s3::Client {
    let creds =
        aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "coffer-test");
    let retry = if retries {
        RetryConfig::standard().with_max_attempts(5)
    } else {
        RetryConfig::disabled()
    };
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .force_path_style(true)
        .retry_config(retry)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(timeout)
                .build(),
        )
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The encryption an object has, as HEAD/GET/PUT report it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Envelope {
    /// `x-amz-server-side-encryption`.
    sse: String,
    /// `x-amz-server-side-encryption-aws-kms-key-id`.
    key: Option<String>,
}

impl Envelope {
    fn sse_s3() -> Self {
        Envelope {
            sse: "AES256".into(),
            key: None,
        }
    }

    fn kms(arn: &str) -> Self {
        Envelope {
            sse: "aws:kms".into(),
            key: Some(arn.to_string()),
        }
    }

    fn of(sse: Option<&ServerSideEncryption>, key: Option<&str>) -> Self {
        Envelope {
            sse: sse.map(|s| s.as_str().to_string()).unwrap_or_default(),
            key: key.map(str::to_string),
        }
    }
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// 2xx.
    Acked,
    /// A 500 or 503 with an S3 error code: allowed while a fault lasts; the write may or may
    /// not have been applied.
    Failed { status: u16, code: String },
    /// No answer (timeout, connection reset): the write may or may not have been applied.
    Unknown(String),
    /// Anything else (a 4xx, a 5xx without an error code): a bug, reported by the test.
    Unexpected(String),
}

impl Outcome {
    fn of<T, E>(r: &Result<T, SdkError<E, HttpResponse>>) -> Outcome
    where
        E: ProvideErrorMetadata + std::fmt::Debug,
    {
        let err = match r {
            Ok(_) => return Outcome::Acked,
            Err(e) => e,
        };
        match err.raw_response().map(|r| r.status().as_u16()) {
            Some(status @ (500 | 503)) if err.code().is_some() => Outcome::Failed {
                status,
                code: err.code().unwrap_or_default().to_string(),
            },
            Some(status) => Outcome::Unexpected(format!("HTTP {status}: {err:?}")),
            None => Outcome::Unknown(format!("{err:?}")),
        }
    }

    fn label(&self) -> String {
        match self {
            Outcome::Acked => "acked".into(),
            Outcome::Failed { status, code } => format!("{status} {code}"),
            Outcome::Unknown(_) => "unknown".into(),
            Outcome::Unexpected(_) => "unexpected".into(),
        }
    }
}

/// Everything the load did to one key (each key belongs to one task, which touches it again
/// only after an acknowledged write).
#[derive(Debug, Clone)]
struct KeyLog {
    key: String,
    seed: u64,
    len: usize,
    /// The encryption asked for in the PUT.
    requested: Envelope,
    put: Outcome,
    /// The envelope the PUT's response reported.
    acked: Option<Envelope>,
    /// UpdateObjectEncryption to this SSE-KMS key, and how it ended.
    update: Option<(String, Outcome)>,
    delete: Option<Outcome>,
}

impl KeyLog {
    fn body(&self) -> Vec<u8> {
        body_of(self.len, self.seed)
    }

    /// The envelope it should have now if it exists, and whether an unfinished update may
    /// have left the previous one.
    fn envelopes(&self) -> Vec<Envelope> {
        let base = self.acked.clone().unwrap_or_else(|| self.requested.clone());
        match &self.update {
            None => vec![base],
            Some((arn, Outcome::Acked)) => vec![Envelope::kms(arn)],
            Some((arn, _)) => vec![base, Envelope::kms(arn)],
        }
    }
}

/// What HEAD and GET say about a key.
#[derive(Debug)]
enum Seen {
    Absent,
    Present { envelope: Envelope, md5: String },
}

/// Shared by the load's tasks.
#[derive(Default)]
struct LoadShared {
    stop: AtomicBool,
    /// Acknowledged requests so far.
    acked: AtomicU64,
    /// Outcome label -> count, per operation.
    outcomes: Mutex<BTreeMap<String, u64>>,
    /// GETs of a key whose last write was acknowledged that answered anything but its
    /// acknowledged bytes and envelope (or a 500/503, or no answer).
    bad_reads: Mutex<Vec<String>>,
}

/// Concurrent tasks doing PUT, DELETE, UpdateObjectEncryption and GET until stopped.
struct Load {
    shared: Arc<LoadShared>,
    tasks: Vec<tokio::task::JoinHandle<Vec<KeyLog>>>,
}

/// The two SSE-KMS keys of the load, and what it writes to.
#[derive(Clone)]
struct Target {
    endpoint: String,
    bucket: String,
    key_a: String,
    key_b: String,
}

impl Load {
    fn start(target: &Target, tasks: u64, max_len: usize) -> Load {
        let shared = Arc::new(LoadShared::default());
        let tasks = (0..tasks)
            .map(|t| {
                let target = target.clone();
                let shared = shared.clone();
                tokio::spawn(async move { load_task(t, target, max_len, shared).await })
            })
            .collect();
        Load { shared, tasks }
    }

    fn acked(&self) -> u64 {
        self.shared.acked.load(Ordering::Relaxed)
    }

    /// Waits until `n` more requests than now were acknowledged; panics after `timeout`.
    async fn wait_more(&self, n: u64, timeout: Duration, what: &str) {
        let goal = self.acked() + n;
        let deadline = Instant::now() + timeout;
        while self.acked() < goal {
            assert!(
                Instant::now() < deadline,
                "{what}: only {} of {goal} requests acknowledged within {timeout:?}; outcomes {:?}",
                self.acked(),
                self.shared.outcomes.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the tasks and returns every key's history.
    async fn finish(self) -> Vec<KeyLog> {
        self.shared.stop.store(true, Ordering::Relaxed);
        let mut logs = Vec::new();
        for t in self.tasks {
            logs.extend(t.await.expect("load task panicked"));
        }
        eprintln!(
            "load: {} keys, outcomes {:?}",
            logs.len(),
            self.shared.outcomes.lock().unwrap()
        );
        let bad_reads = self.shared.bad_reads.lock().unwrap();
        assert!(
            bad_reads.is_empty(),
            "reads of acknowledged writes went wrong during the load: {bad_reads:#?}"
        );
        logs
    }
}

fn record(shared: &LoadShared, op: &str, outcome: &Outcome) {
    if *outcome == Outcome::Acked {
        shared.acked.fetch_add(1, Ordering::Relaxed);
    }
    *shared
        .outcomes
        .lock()
        .unwrap()
        .entry(format!("{op} {}", outcome.label()))
        .or_default() += 1;
}

async fn load_task(t: u64, target: Target, max_len: usize, shared: Arc<LoadShared>) -> Vec<KeyLog> {
    let s3 = client(&target.endpoint, false, Duration::from_secs(20));
    let mut logs: Vec<KeyLog> = Vec::new();
    // Keys whose last write was acknowledged and that may be written again.
    let mut live: VecDeque<usize> = VecDeque::new();
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        match n % 6 {
            4 if !live.is_empty() => {
                let log = &logs[*live.back().expect("live key")];
                if let Some(bad) = read_back(&s3, &target.bucket, log, &shared).await {
                    shared.bad_reads.lock().unwrap().push(bad);
                }
            }
            2 | 5 if !live.is_empty() => {
                // UpdateObjectEncryption of a key not updated yet, else DELETE the oldest.
                let pos = live.iter().position(|&i| logs[i].update.is_none());
                match (n % 6, pos) {
                    (2, Some(pos)) => {
                        let i = live.remove(pos).expect("live key");
                        let log = &mut logs[i];
                        let to = if log.envelopes()[0].key.as_deref() == Some(&target.key_a) {
                            target.key_b.clone()
                        } else {
                            target.key_a.clone()
                        };
                        let r = s3
                            .update_object_encryption()
                            .bucket(&target.bucket)
                            .key(&log.key)
                            .object_encryption(kms_target(&to))
                            .send()
                            .await;
                        let outcome = Outcome::of(&r);
                        record(&shared, "update", &outcome);
                        let acked = outcome == Outcome::Acked;
                        log.update = Some((to, outcome));
                        if acked {
                            live.push_back(i);
                        }
                    }
                    _ => {
                        let i = live.pop_front().expect("live key");
                        let r = s3
                            .delete_object()
                            .bucket(&target.bucket)
                            .key(&logs[i].key)
                            .send()
                            .await;
                        let outcome = Outcome::of(&r);
                        record(&shared, "delete", &outcome);
                        logs[i].delete = Some(outcome);
                    }
                }
            }
            _ => {
                let seed = t * 1_000_000 + n;
                let len = 1 + (seed.wrapping_mul(7919) % max_len as u64) as usize;
                let requested = match n % 3 {
                    0 => Envelope::sse_s3(),
                    1 => Envelope::kms(&target.key_a),
                    _ => Envelope::kms(&target.key_b),
                };
                let key = format!("t{t}/k{n}");
                let mut put = s3
                    .put_object()
                    .bucket(&target.bucket)
                    .key(&key)
                    .body(ByteStream::from(body_of(len, seed)));
                put = match &requested.key {
                    None => put.server_side_encryption(ServerSideEncryption::Aes256),
                    Some(arn) => put
                        .server_side_encryption(ServerSideEncryption::AwsKms)
                        .ssekms_key_id(arn),
                };
                let r = put.send().await;
                let outcome = Outcome::of(&r);
                record(&shared, "put", &outcome);
                let acked = r
                    .ok()
                    .map(|o| Envelope::of(o.server_side_encryption(), o.ssekms_key_id()));
                if acked.is_some() {
                    live.push_back(logs.len());
                }
                logs.push(KeyLog {
                    key,
                    seed,
                    len,
                    requested,
                    put: outcome,
                    acked,
                    update: None,
                    delete: None,
                });
            }
        }
    }
    logs
}

/// The body of an UpdateObjectEncryption to SSE-KMS under `arn`.
fn kms_target(arn: &str) -> ObjectEncryption {
    ObjectEncryption::Ssekms(
        SsekmsEncryption::builder()
            .kms_key_arn(arn)
            .build()
            .expect("SsekmsEncryption"),
    )
}

/// GETs a key whose last write was acknowledged, during the load: it must answer its bytes
/// and envelope, or fail with a 500/503 or no answer. Returns what was wrong.
async fn read_back(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    log: &KeyLog,
    shared: &LoadShared,
) -> Option<String> {
    let r = s3.get_object().bucket(bucket).key(&log.key).send().await;
    let outcome = Outcome::of(&r);
    record(shared, "get", &outcome);
    let got = match (r, outcome) {
        (Ok(got), _) => got,
        (Err(_), Outcome::Unexpected(m)) => return Some(format!("GET {}: {m}", log.key)),
        (Err(_), _) => return None,
    };
    let envelope = Envelope::of(got.server_side_encryption(), got.ssekms_key_id());
    let body = match got.body.collect().await {
        Ok(b) => b.into_bytes(),
        Err(e) => return Some(format!("GET {}: the body broke off: {e}", log.key)),
    };
    let seen = Seen::Present {
        envelope,
        md5: md5_hex(&body),
    };
    judge(log, &seen)
        .err()
        .map(|e| format!("GET {} during the load: {e}", log.key))
}

/// The status of an SDK error, if the gateway answered.
fn status_of<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// HEAD and GET of `key`: both 404, or both 200 with one envelope; anything else is a
/// half-applied write.
async fn observe(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Seen, String> {
    let head = s3.head_object().bucket(bucket).key(key).send().await;
    let get = s3.get_object().bucket(bucket).key(key).send().await;
    match (head, get) {
        (Err(h), Err(g)) if status_of(&h) == Some(404) && status_of(&g) == Some(404) => {
            Ok(Seen::Absent)
        }
        (Ok(h), Ok(g)) => {
            let from_head = Envelope::of(h.server_side_encryption(), h.ssekms_key_id());
            let from_get = Envelope::of(g.server_side_encryption(), g.ssekms_key_id());
            if from_head != from_get {
                return Err(format!("HEAD says {from_head:?}, GET says {from_get:?}"));
            }
            if h.e_tag() != g.e_tag() {
                return Err(format!(
                    "HEAD ETag {:?}, GET ETag {:?}",
                    h.e_tag(),
                    g.e_tag()
                ));
            }
            let body = g
                .body
                .collect()
                .await
                .map_err(|e| format!("GET body broke off: {e}"))?
                .into_bytes();
            let md5 = md5_hex(&body);
            if h.e_tag() != Some(format!("\"{md5}\"").as_str()) {
                return Err(format!("ETag {:?} but the body's MD5 is {md5}", h.e_tag()));
            }
            Ok(Seen::Present {
                envelope: from_head,
                md5,
            })
        }
        (h, g) => Err(format!(
            "half-applied: HEAD {}, GET {}",
            match &h {
                Ok(_) => "200".to_string(),
                Err(e) => format!("{:?} {:?}", status_of(e), e.code()),
            },
            match &g {
                Ok(_) => "200".to_string(),
                Err(e) => format!("{:?} {:?}", status_of(e), e.code()),
            }
        )),
    }
}

/// Whether what is seen of a key agrees with its history.
fn judge(log: &KeyLog, seen: &Seen) -> Result<(), String> {
    let must_exist = log.put == Outcome::Acked && log.delete.is_none();
    let must_be_gone = log.delete == Some(Outcome::Acked);
    match seen {
        Seen::Absent if must_exist => Err("acknowledged, but gone".into()),
        Seen::Absent => Ok(()),
        Seen::Present { .. } if must_be_gone => {
            Err("still there after an acknowledged DELETE".into())
        }
        Seen::Present { envelope, md5 } => {
            if *md5 != md5_hex(&log.body()) {
                return Err(format!("body MD5 {md5}, written {}", md5_hex(&log.body())));
            }
            let allowed = log.envelopes();
            if !allowed.contains(envelope) {
                return Err(format!(
                    "envelope {envelope:?}, expected one of {allowed:?}"
                ));
            }
            Ok(())
        }
    }
}

/// Every key of the bucket, all pages.
async fn list_all(s3: &aws_sdk_s3::Client, bucket: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("ListObjectsV2: {e:?}"));
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        if page.is_truncated() != Some(true) {
            return keys;
        }
        token = page.next_continuation_token().map(str::to_string);
    }
}

/// Panics unless the load got enough of each write acknowledged to judge anything.
fn assert_enough_load(logs: &[KeyLog]) {
    let acked_puts = logs.iter().filter(|l| l.put == Outcome::Acked).count();
    let acked_updates = logs
        .iter()
        .filter(|l| matches!(l.update, Some((_, Outcome::Acked))))
        .count();
    let acked_deletes = logs
        .iter()
        .filter(|l| l.delete == Some(Outcome::Acked))
        .count();
    assert!(
        acked_puts >= 20 && acked_updates >= 3 && acked_deletes >= 3,
        "too little load to judge: {acked_puts} PUTs, {acked_updates} updates, \
         {acked_deletes} DELETEs acknowledged"
    );
}

/// One cluster, a bucket, and a second KMS key.
struct Env {
    cluster: Cluster,
    target: Target,
}

impl Env {
    fn start(options: ClusterOptions) -> Env {
        let cluster = blocking(|| Cluster::start(options));
        let key_b = blocking(|| cluster.create_kms_key("cluster fault tests"));
        let target = Target {
            endpoint: cluster.endpoint(),
            bucket: bucket_name("faults"),
            key_a: cluster.default_key_arn.clone(),
            key_b,
        };
        Env { cluster, target }
    }

    /// A client with retries for setup and checks (the cluster is healthy then).
    fn s3(&self) -> aws_sdk_s3::Client {
        client(&self.target.endpoint, true, Duration::from_secs(30))
    }

    async fn create_bucket(&self) {
        self.s3()
            .create_bucket()
            .bucket(&self.target.bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateBucket: {e:?}"));
    }

    /// The checks after a fault: identical digests, every key's history agrees with what HEAD
    /// and GET see, the listing agrees with them, no unexpected answer.
    async fn check(&self, logs: &[KeyLog]) {
        let digest = blocking(|| self.cluster.wait_identical(RECOVERY));
        eprintln!("digest after the load: {digest}");

        let unexpected: Vec<String> = logs
            .iter()
            .flat_map(|l| {
                let mut v = vec![(&l.key, "PUT", &l.put)];
                v.extend(
                    l.update
                        .as_ref()
                        .map(|(_, o)| (&l.key, "UpdateObjectEncryption", o)),
                );
                v.extend(l.delete.as_ref().map(|o| (&l.key, "DELETE", o)));
                v
            })
            .filter_map(|(key, op, o)| match o {
                Outcome::Unexpected(m) => Some(format!("{op} {key}: {m}")),
                _ => None,
            })
            .collect();
        let mismatched: Vec<String> = logs
            .iter()
            .filter(|l| l.acked.as_ref().is_some_and(|a| *a != l.requested))
            .map(|l| {
                format!(
                    "PUT {}: asked {:?}, acknowledged {:?}",
                    l.key, l.requested, l.acked
                )
            })
            .collect();

        let s3 = self.s3();
        let bucket = &self.target.bucket;
        let seen: Vec<(usize, Result<Seen, String>)> =
            futures::stream::iter(logs.iter().enumerate())
                .map(|(i, l)| {
                    let s3 = s3.clone();
                    async move { (i, observe(&s3, bucket, &l.key).await) }
                })
                .buffer_unordered(8)
                .collect()
                .await;
        let mut problems = Vec::new();
        let mut present = BTreeSet::new();
        for (i, seen) in seen {
            let log = &logs[i];
            match seen.and_then(|s| judge(log, &s).map(|()| s)) {
                Ok(Seen::Present { .. }) => {
                    present.insert(log.key.clone());
                }
                Ok(Seen::Absent) => {}
                Err(e) => problems.push(format!("{}: {e}; history {log:?}", log.key)),
            }
        }
        let listed = list_all(&s3, bucket).await;
        for k in listed.difference(&present) {
            problems.push(format!("{k}: listed but HEAD/GET find no such object"));
        }
        for k in present.difference(&listed) {
            problems.push(format!("{k}: readable but not listed"));
        }
        assert!(
            unexpected.is_empty() && mismatched.is_empty() && problems.is_empty(),
            "unexpected answers: {unexpected:#?}\nenvelope mismatches: {mismatched:#?}\n\
             inconsistent keys ({} of {}): {problems:#?}",
            problems.len(),
            logs.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigkill_and_restart_under_load() {
    let mut env = Env::start(ClusterOptions::default());
    env.create_bucket().await;
    let load = Load::start(&env.target, 4, 20_000);
    load.wait_more(40, RECOVERY, "before the fault").await;

    let leader = blocking(|| env.cluster.wait_leader(RECOVERY));
    blocking(|| env.cluster.kill(leader));
    // Two of three members still make a quorum: writes go on once a new leader is elected.
    load.wait_more(30, RECOVERY, "with the old leader dead")
        .await;
    let new_leader = blocking(|| env.cluster.wait_leader(RECOVERY));
    assert_ne!(new_leader, leader, "the killed member cannot lead");

    blocking(|| env.cluster.restart(leader));
    load.wait_more(40, RECOVERY, "after the old leader restarted")
        .await;
    let logs = load.finish().await;
    assert_enough_load(&logs);
    env.check(&logs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_sigstop_and_resume_under_load() {
    let mut env = Env::start(ClusterOptions::default());
    env.create_bucket().await;
    let load = Load::start(&env.target, 4, 20_000);
    load.wait_more(40, RECOVERY, "before the fault").await;

    let leader = blocking(|| env.cluster.wait_leader(RECOVERY));
    let follower = env.cluster.follower_of(leader);
    blocking(|| env.cluster.freeze(follower));
    let frozen_at = Instant::now();
    // A frozen follower costs the group nothing: writes keep being acknowledged.
    load.wait_more(30, RECOVERY, "with a follower frozen").await;
    let left = Duration::from_secs(10).saturating_sub(frozen_at.elapsed());
    tokio::time::sleep(left).await;
    blocking(|| env.cluster.thaw(follower));

    load.wait_more(40, RECOVERY, "after the follower resumed")
        .await;
    let logs = load.finish().await;
    assert_enough_load(&logs);
    env.check(&logs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_by_snapshot() {
    let options = ClusterOptions::default();
    // How many entries before its last snapshot a member keeps in its log.
    let log_kept_before_snapshot = options.snapshot_keep_logs;
    let mut env = Env::start(options);
    env.create_bucket().await;
    let leader = blocking(|| env.cluster.wait_leader(RECOVERY));
    let follower = env.cluster.follower_of(leader);
    let status = blocking(|| env.cluster.status()).expect("status");
    let behind_at = status
        .iter()
        .find(|m| m.id == follower)
        .and_then(|m| m.raw["last_log_index"].as_u64())
        .unwrap_or(0);

    blocking(|| env.cluster.kill(follower));
    let load = Load::start(&env.target, 6, 2_000);
    // Write until the leader has purged the log the follower needs: its snapshot is more than
    // `log_kept_before_snapshot` entries past the follower, and it has started to send the
    // follower a snapshot (which it does only for a follower whose next entry is purged, or
    // about to be). Only a snapshot can bring the follower back then.
    let goal = behind_at + log_kept_before_snapshot;
    let deadline = Instant::now() + Duration::from_secs(150);
    let sending = format!("target={follower} ");
    let leader_snapshot = loop {
        let snapshot = blocking(|| env.cluster.status()).and_then(|s| {
            s.iter()
                .find(|m| m.id == leader && m.role == "leader")
                .and_then(|m| m.raw["snapshot_index"].as_u64())
        });
        let log = env.cluster.member_log(leader);
        let sent = log
            .lines()
            .any(|l| l.contains("sending a snapshot") && l.contains(&sending));
        match snapshot {
            Some(s) if s > goal && sent => break s,
            _ => assert!(
                Instant::now() < deadline,
                "member {leader} did not start sending member {follower} a snapshot past \
                 index {goal} in time (its snapshot: {snapshot:?}, acked {})",
                load.acked()
            ),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let logs = load.finish().await;

    assert_enough_load(&logs);
    blocking(|| env.cluster.restart(follower));
    env.check(&logs).await;
    let status = blocking(|| env.cluster.status()).expect("status");
    let snapshot = status
        .iter()
        .find(|m| m.id == follower)
        .and_then(|m| m.raw["snapshot_index"].as_u64());
    assert!(
        snapshot.is_some_and(|s| s >= leader_snapshot),
        "member {follower} should hold a snapshot at or past the leader's {leader_snapshot}: \
         {status:?}"
    );
    let log = env.cluster.member_log(follower);
    assert!(
        log.contains("installing a snapshot"),
        "member {follower} did not install a snapshot; its log:\n{log}"
    );
}

/// PUTs `key` (SSE-S3) until it is acknowledged, for at most [`RECOVERY`]; its history.
async fn put_until_acked(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, seed: u64) -> KeyLog {
    let len = 5_000;
    let deadline = Instant::now() + RECOVERY;
    loop {
        let r = s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .body(ByteStream::from(body_of(len, seed)))
            .send()
            .await;
        match r {
            Ok(o) => {
                return KeyLog {
                    key: key.to_string(),
                    seed,
                    len,
                    requested: Envelope::sse_s3(),
                    put: Outcome::Acked,
                    acked: Some(Envelope::of(o.server_side_encryption(), o.ssekms_key_id())),
                    update: None,
                    delete: None,
                }
            }
            Err(e) => assert!(
                Instant::now() < deadline,
                "PUT {key} still fails after {RECOVERY:?} with a quorum: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_quorum_writes_fail_fast_with_503_and_recover() {
    let mut env = Env::start(ClusterOptions::default());
    env.create_bucket().await;
    let fast = client(&env.target.endpoint, false, Duration::from_secs(60));
    let bucket = env.target.bucket.clone();
    let limit = Duration::from_secs(15);
    let mut logs = Vec::new();
    // Round 0: the leader hangs (SIGSTOP: its connections stay open, nothing answers) and a
    // follower is dead. Round 1: both followers are dead and the leader is alone.
    for round in 0..2u64 {
        let mut old = put_until_acked(&fast, &bucket, &format!("r{round}/old"), 10 * round).await;
        let leader = blocking(|| env.cluster.wait_leader(RECOVERY));
        let followers: Vec<u64> = env
            .cluster
            .members
            .iter()
            .map(|m| m.id)
            .filter(|id| *id != leader)
            .collect();
        let down: Vec<u64> = if round == 0 {
            blocking(|| env.cluster.freeze(leader));
            blocking(|| env.cluster.kill(followers[0]));
            vec![followers[0]]
        } else {
            blocking(|| followers.iter().for_each(|f| env.cluster.kill(*f)));
            followers.clone()
        };

        let during = KeyLog {
            key: format!("r{round}/during"),
            seed: 10 * round + 1,
            len: 5_000,
            requested: Envelope::sse_s3(),
            put: Outcome::Acked,
            acked: None,
            update: None,
            delete: None,
        };
        let (p, d, u) = tokio::join!(
            timed(
                "PUT",
                fast.put_object()
                    .bucket(&bucket)
                    .key(&during.key)
                    .server_side_encryption(ServerSideEncryption::Aes256)
                    .body(ByteStream::from(during.body()))
                    .send()
            ),
            timed(
                "DELETE",
                fast.delete_object().bucket(&bucket).key(&old.key).send()
            ),
            timed(
                "UpdateObjectEncryption",
                fast.update_object_encryption()
                    .bucket(&bucket)
                    .key(&old.key)
                    .object_encryption(kms_target(&env.target.key_b))
                    .send()
            ),
        );
        let mut failed = Vec::new();
        for (op, took, r) in [p, d, u] {
            eprintln!("round {round}: {op} without a quorum: {r:?} after {took:?}");
            let Err((status, code)) = r else {
                panic!("round {round}: {op} succeeded without a quorum");
            };
            assert!(
                status == Some(503)
                    && matches!(code.as_deref(), Some("ServiceUnavailable" | "SlowDown")),
                "round {round}: {op} without a quorum: expected 503 ServiceUnavailable or \
                 SlowDown, got {status:?} {code:?} after {took:?}"
            );
            assert!(
                took < limit,
                "round {round}: {op} took {took:?} to fail (limit {limit:?})"
            );
            failed.push(Outcome::Failed {
                status: 503,
                code: code.unwrap_or_default(),
            });
        }
        logs.push(KeyLog {
            put: failed[0].clone(),
            ..during
        });
        old.delete = Some(failed[1].clone());
        old.update = Some((env.target.key_b.clone(), failed[2].clone()));
        logs.push(old);

        if round == 0 {
            blocking(|| env.cluster.thaw(leader));
        }
        blocking(|| down.iter().for_each(|id| env.cluster.restart(*id)));
        let after = format!("r{round}/after");
        logs.push(put_until_acked(&fast, &bucket, &after, 10 * round + 2).await);
    }
    // The writes that failed are each applied whole or not at all; the rest is intact.
    env.check(&logs).await;
}

/// Runs `call`, timing it: (what, how long, `Err((status, code))` if it failed).
async fn timed<T, E: ProvideErrorMetadata>(
    op: &'static str,
    call: impl std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
) -> (
    &'static str,
    Duration,
    Result<(), (Option<u16>, Option<String>)>,
) {
    let t = Instant::now();
    let r = call.await;
    (op, t.elapsed(), r.map(drop).map_err(|e| describe(&e)))
}

/// The HTTP status and S3 error code of a failed request.
fn describe<E: ProvideErrorMetadata>(
    e: &SdkError<E, HttpResponse>,
) -> (Option<u16>, Option<String>) {
    (status_of(e), e.code().map(str::to_string))
}

/// The checker itself: each broken property is caught, each allowed outcome passes.
#[test]
fn judge_catches_lost_half_and_stale_writes() {
    let (a, b) = ("arn:a", "arn:b");
    let acked = KeyLog {
        key: "k".into(),
        seed: 7,
        len: 100,
        requested: Envelope::kms(a),
        put: Outcome::Acked,
        acked: Some(Envelope::kms(a)),
        update: None,
        delete: None,
    };
    let md5 = md5_hex(&acked.body());
    let present = |env: Envelope| Seen::Present {
        envelope: env,
        md5: md5.clone(),
    };
    let failed = Outcome::Failed {
        status: 503,
        code: "ServiceUnavailable".into(),
    };
    assert!(judge(&acked, &present(Envelope::kms(a))).is_ok());
    assert!(judge(&acked, &Seen::Absent).is_err(), "lost write");
    assert!(
        judge(&acked, &present(Envelope::kms(b))).is_err(),
        "wrong key"
    );
    let wrong_body = Seen::Present {
        envelope: Envelope::kms(a),
        md5: md5_hex(b"other"),
    };
    assert!(judge(&acked, &wrong_body).is_err(), "wrong body");

    let updated = KeyLog {
        update: Some((b.into(), Outcome::Acked)),
        ..acked.clone()
    };
    assert!(judge(&updated, &present(Envelope::kms(b))).is_ok());
    assert!(
        judge(&updated, &present(Envelope::kms(a))).is_err(),
        "stale"
    );
    let maybe_updated = KeyLog {
        update: Some((b.into(), failed.clone())),
        ..acked.clone()
    };
    assert!(judge(&maybe_updated, &present(Envelope::kms(a))).is_ok());
    assert!(judge(&maybe_updated, &present(Envelope::kms(b))).is_ok());

    let deleted = KeyLog {
        delete: Some(Outcome::Acked),
        ..acked.clone()
    };
    assert!(judge(&deleted, &Seen::Absent).is_ok());
    assert!(
        judge(&deleted, &present(Envelope::kms(a))).is_err(),
        "resurrected"
    );
    let maybe_deleted = KeyLog {
        delete: Some(Outcome::Unknown("reset".into())),
        ..acked.clone()
    };
    assert!(judge(&maybe_deleted, &Seen::Absent).is_ok());
    assert!(judge(&maybe_deleted, &present(Envelope::kms(a))).is_ok());

    let not_acked = KeyLog {
        put: failed,
        acked: None,
        ..acked.clone()
    };
    assert!(judge(&not_acked, &Seen::Absent).is_ok());
    assert!(judge(&not_acked, &present(Envelope::kms(a))).is_ok());
    assert!(judge(&not_acked, &present(Envelope::sse_s3())).is_err());
    assert!(judge(&not_acked, &wrong_body).is_err(), "half written");
}
