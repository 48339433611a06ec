//! Re-encryption at scale against a real `coffer dev`, side by side in one run:
//!
//! 1. objects per second rewrapped by a re-encryption job (admin API
//!    `POST /admin/v1/jobs/reencrypt`, timed from the job's creation to its completion as the
//!    job record says) for N objects of 4 KiB and of 1 MiB, versus the classic re-encryption,
//!    CopyObject of each object onto itself with the new SSE-KMS key (16 concurrent clients);
//!    the job's rate should not depend on the object's size;
//! 2. a key rotation with rewrap (`POST /admin/v1/jobs/rotate` after KMS `RotateKeyOnDemand`)
//!    on a bucket of N objects written with Bucket Keys versus one written without.
//!
//! Run: `cargo build --release --workspace --bins --benches && COFFER_BIN=$CARGO_TARGET_DIR/release/coffer cargo bench --workspace --bench reencrypt`
//! Objects, each a comma-separated list of bucket sizes (one bucket and one table row each):
//! `COFFER_BENCH_OBJECTS_SMALL` of 4 KiB (default 10000), `COFFER_BENCH_OBJECTS_LARGE` of 1 MiB
//! (default 2000), `COFFER_BENCH_OBJECTS_ROTATE` of 4 KiB per rotation bucket (default 5000);
//! the scale is `SMALL=10000,100000 LARGE=10000,100000 ROTATE=100000`.
//! `COFFER_BENCH_COPY_OBJECTS` of each bucket are copied onto themselves (default 300: its rate
//! is per object). The server's job runner gets `COFFER_JOBS_PAGE_SIZE` 500,
//! `COFFER_JOBS_CONCURRENCY` 32 and `COFFER_JOBS_POLL_MS` 100 unless they are set. Everything
//! stays in the temp dir until the end (about N + COPY MiB per 1 MiB bucket); a bucket that
//! would not fit in the free space of the temp dir's file system is skipped, and its row says
//! so.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use bytes::Bytes;
use coffer_benches::{copy_onto_itself, env_usize, print_table, run_all};
use coffer_tests::{body_of, get_bytes, Coffer, ACCESS_KEY, SECRET_KEY};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// Concurrent PutObject while filling a bucket.
const POPULATE_CLIENTS: usize = 32;
/// Concurrent CopyObject of the classic re-encryption.
const COPY_CLIENTS: usize = 16;
/// The job runner settings given to the server unless already set: (variable, value).
const RUNNER_ENV: [(&str, &str); 3] = [
    ("COFFER_JOBS_PAGE_SIZE", "500"),
    ("COFFER_JOBS_CONCURRENCY", "32"),
    ("COFFER_JOBS_POLL_MS", "100"),
];

/// How the objects of a bucket are encrypted when written.
#[derive(Clone)]
struct Sse {
    key_arn: String,
    bucket_key: bool,
}

/// The jobs API on the admin listener.
struct AdminApi {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl AdminApi {
    fn new(admin_addr: &str) -> Self {
        AdminApi {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{admin_addr}"),
        }
    }

    /// `method path` with an optional JSON body: the status and the JSON answer (`Null` when
    /// the answer is not JSON, e.g. axum's plain 404/405 for a route that does not exist).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(
                hyper::header::AUTHORIZATION,
                format!("Bearer {ACCESS_KEY}:{SECRET_KEY}"),
            )
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .expect("request");
        let resp = tokio::time::timeout(Duration::from_secs(60), self.client.request(request))
            .await
            .unwrap_or_else(|_| panic!("{method} {path}: no answer within 60 s"))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .expect("admin body")
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Creates a job (`POST path`); `None` when the route answers 404 or 405 (not on this
    /// build). Any other refusal panics with the server's message.
    async fn create_job(&self, path: &str, body: Value) -> Option<String> {
        let (status, v) = self.call("POST", path, Some(body)).await;
        match status {
            201 => Some(v["id"].as_str().expect("job id").to_owned()),
            404 | 405 => None,
            _ => panic!("POST {path}: HTTP {status}: {v}"),
        }
    }

    /// Polls the job until it is terminal; panics unless it completed without failures.
    async fn wait_completed(&self, id: &str) -> Job {
        let path = format!("/admin/v1/jobs/{id}");
        let deadline = Instant::now() + Duration::from_secs(6 * 3600);
        loop {
            let (status, v) = self.call("GET", &path, None).await;
            assert_eq!(status, 200, "GET {path}: {v}");
            match v["state"].as_str().unwrap_or_default() {
                "completed" => {
                    assert_eq!(v["counters"]["failed"], 0, "job {id} had failures: {v}");
                    return Job(v);
                }
                "failed" | "cancelled" | "paused" => panic!("job {id} did not complete: {v}"),
                _ => {}
            }
            assert!(Instant::now() < deadline, "job {id} still running: {v}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A completed job's record, as the admin API shows it.
struct Job(Value);

impl Job {
    fn counter(&self, name: &str) -> u64 {
        self.0["counters"][name].as_u64().unwrap_or(0)
    }

    /// Objects done (rewrapped, already done, skipped, failed, moved through a bucket key).
    fn done(&self) -> u64 {
        self.0["done"].as_u64().expect("done")
    }

    /// From the creation of the job to its completion, by the server's clock.
    fn elapsed(&self) -> Duration {
        let ms = |f: &str| {
            self.0[f]
                .as_i64()
                .unwrap_or_else(|| panic!("{f}: {}", self.0))
        };
        Duration::from_millis((ms("finished_ms") - ms("created_ms")).max(1) as u64)
    }

    fn rate(&self) -> f64 {
        self.done() as f64 / self.elapsed().as_secs_f64()
    }
}

fn kms_client(endpoint: &str) -> aws_sdk_kms::Client {
    let creds = aws_sdk_kms::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "bench");
    aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .region(aws_sdk_kms::config::Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .credentials_provider(creds)
            .build(),
    )
}

/// A new customer managed key (KMS JSON API on the S3 port of `coffer dev`); its ARN.
async fn create_key(kms: &aws_sdk_kms::Client, description: &str) -> String {
    let out = kms
        .create_key()
        .description(description)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateKey: {e:?}"));
    let meta = out.key_metadata().expect("key metadata");
    meta.arn().expect("arn").to_owned()
}

fn object_key(i: usize) -> String {
    format!("o{i:07}")
}

/// Creates `bucket` and writes `n` objects of `body` into it under `sse`; returns the wall time.
async fn populate(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    n: usize,
    body: Bytes,
    sse: &Sse,
) -> Duration {
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateBucket {bucket}: {e:?}"));
    let (s3, bucket, sse) = (s3.clone(), bucket.to_owned(), sse.clone());
    run_all(n, POPULATE_CLIENTS, move |i| {
        let (s3, bucket, body, sse) = (s3.clone(), bucket.clone(), body.clone(), sse.clone());
        async move {
            s3.put_object()
                .bucket(bucket)
                .key(object_key(i))
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(sse.key_arn)
                .bucket_key_enabled(sse.bucket_key)
                .body(ByteStream::from(body))
                .send()
                .await
                .unwrap_or_else(|e| panic!("PutObject: {e:?}"));
        }
    })
    .await
}

/// CopyObject of objects `0..n` onto themselves under `key_arn`; returns the wall time.
async fn copy_onto_themselves(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    n: usize,
    key_arn: &str,
) -> Duration {
    let (s3, bucket, key_arn) = (s3.clone(), bucket.to_owned(), key_arn.to_owned());
    run_all(n, COPY_CLIENTS, move |i| {
        let (s3, bucket, key_arn) = (s3.clone(), bucket.clone(), key_arn.clone());
        async move { copy_onto_itself(&s3, &bucket, &object_key(i), &key_arn).await }
    })
    .await
}

/// Checks that object `i` reads back as `body` and is under `key_arn`.
async fn check_object(s3: &aws_sdk_s3::Client, bucket: &str, i: usize, body: &[u8], key_arn: &str) {
    let key = object_key(i);
    let head = s3
        .head_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("HeadObject {bucket}/{key}: {e:?}"));
    assert_eq!(head.ssekms_key_id(), Some(key_arn), "{bucket}/{key}");
    assert!(
        get_bytes(s3, bucket, &key).await == body,
        "{bucket}/{key}: wrong bytes"
    );
}

/// A comma-separated list of object counts from `name`, or `default`.
fn env_counts(name: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .split(',')
            .map(|n| {
                n.trim()
                    .parse::<usize>()
                    .unwrap_or_else(|e| panic!("{name}={v}: {e}"))
                    .max(1)
            })
            .collect(),
        Err(_) => default.to_vec(),
    }
}

/// Bytes free for an unprivileged writer on the file system of `dir` (`df -Pk`).
fn free_bytes(dir: &Path) -> u64 {
    let out = std::process::Command::new("df")
        .arg("-Pk")
        .arg(dir)
        .output()
        .expect("df");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("df -Pk {}: {text}", dir.display()))
}

/// Whether `n` objects of `size` (and the copies of the classic re-encryption) fit in the free
/// space of `dir`, with a tenth to spare for metadata and logs.
fn fits(dir: &Path, n: usize, size: usize, copies: usize) -> Result<(), String> {
    let need = ((n + copies) as u64 * size as u64) / 10 * 11;
    let free = free_bytes(dir);
    if need <= free {
        Ok(())
    } else {
        Err(format!(
            "skipped: needs about {} GB, {} GB free",
            need / 1_000_000_000,
            free / 1_000_000_000
        ))
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

fn per_s(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let small = env_counts("COFFER_BENCH_OBJECTS_SMALL", &[10_000]);
    let large = env_counts("COFFER_BENCH_OBJECTS_LARGE", &[2000]);
    let copies = env_usize("COFFER_BENCH_COPY_OBJECTS", 300).max(1);
    let rotate_ns = env_counts("COFFER_BENCH_OBJECTS_ROTATE", &[5000]);
    // The server inherits the runner settings; set before any other thread exists.
    let runner: Vec<String> = RUNNER_ENV
        .iter()
        .map(|(name, default)| {
            let value = std::env::var(name).unwrap_or_else(|_| {
                std::env::set_var(name, default);
                (*default).to_owned()
            });
            format!("{name}={value}")
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let coffer = Coffer::start();
    let admin = AdminApi::new(&coffer.ready.admin);
    println!("coffer dev, job runner: {}", runner.join(", "));
    rt.block_on(async {
        let s3 = coffer.s3().await;
        let kms = kms_client(&coffer.endpoint());
        let key_a = coffer.ready.default_kms_key_arn.clone();
        let key_b = create_key(&kms, "bench reencrypt target").await;

        // 1. Job versus CopyObject onto itself, by object size.
        let mut rows = Vec::new();
        // (size label, objects, job rate) of every bucket measured.
        let mut job_rates: Vec<(&str, usize, f64)> = Vec::new();
        let sizes = small
            .iter()
            .map(|&n| ("4 KiB", 4 * KIB, n))
            .chain(large.iter().map(|&n| ("1 MiB", MIB, n)));
        for (label, size, n) in sizes {
            let bucket = format!("reencrypt-{}-{n}", label.replace(' ', "").to_lowercase());
            if let Err(why) = fits(&coffer.dir, n, size, copies.min(n)) {
                eprintln!("{bucket}: {why}");
                let mut row = vec![label.to_owned(), n.to_string(), why];
                row.resize(8, "-".to_owned());
                rows.push(row);
                continue;
            }
            let body = Bytes::from(body_of(size, size as u64));
            let from_a = Sse {
                key_arn: key_a.clone(),
                bucket_key: false,
            };
            let fill = populate(&s3, &bucket, n, body.clone(), &from_a).await;
            eprintln!("{bucket}: {n} objects written in {} s", secs(fill));
            let id = admin
                .create_job(
                    "/admin/v1/jobs/reencrypt",
                    json!({ "bucket": bucket, "target_key_arn": key_b }),
                )
                .await
                .expect("POST /admin/v1/jobs/reencrypt is not served");
            let job = admin.wait_completed(&id).await;
            assert_eq!(job.counter("rewrapped"), n as u64, "{}", job.0);
            check_object(&s3, &bucket, n - 1, &body, &key_b).await;
            // The classic way, on the first objects: back from key B to key A.
            let c = copies.min(n);
            let copy = copy_onto_themselves(&s3, &bucket, c, &key_a).await;
            check_object(&s3, &bucket, c - 1, &body, &key_a).await;
            let (job_rate, copy_rate) = (job.rate(), per_s(c, copy));
            job_rates.push((label, n, job_rate));
            rows.push(vec![
                label.to_owned(),
                n.to_string(),
                secs(job.elapsed()),
                format!("{job_rate:.0}"),
                c.to_string(),
                secs(copy),
                format!("{copy_rate:.0}"),
                format!("{:.1}", job_rate / copy_rate),
            ]);
        }
        println!(
            "\nRe-encryption of a bucket: a job (SSE-KMS key A -> key B, every object) versus \
             CopyObject onto itself ({COPY_CLIENTS} clients; on the first objects only, its \
             rate being per object)."
        );
        print_table(
            &[
                "object",
                "job objects",
                "job s",
                "job objects/s",
                "copied objects",
                "copy s",
                "copy objects/s",
                "job / copy",
            ],
            &rows,
        );
        // The size ratio, for each object count measured at both sizes.
        for &(_, n, small_rate) in job_rates.iter().filter(|r| r.0 == "4 KiB") {
            if let Some(&(_, _, large_rate)) = job_rates.iter().find(|r| r.0 == "1 MiB" && r.1 == n)
            {
                println!(
                    "job rate 1 MiB / 4 KiB at {n} objects = {:.2} (1.0: the cost does not \
                     depend on the size)",
                    large_rate / small_rate
                );
            }
        }

        // 2. Key rotation with rewrap: Bucket Keys versus none.
        for n in rotate_ns {
            rotation(&admin, &s3, &kms, n).await;
        }
    });
    println!("\n(whole run: {} s)", secs(started.elapsed()));
}

/// Rotates two keys, one under a bucket written with Bucket Keys and one under a bucket
/// written without, and times a rotate job on each.
async fn rotation(admin: &AdminApi, s3: &aws_sdk_s3::Client, kms: &aws_sdk_kms::Client, n: usize) {
    let body = Bytes::from(body_of(4 * KIB, 11));
    let mut rows = Vec::new();
    let mut rates = Vec::new();
    for (prefix, bucket_key) in [
        ("rotate-bucket-keys", true),
        ("rotate-no-bucket-keys", false),
    ] {
        let bucket = &format!("{prefix}-{n}");
        let key_arn = create_key(kms, &format!("bench rotate {bucket}")).await;
        let sse = Sse {
            key_arn: key_arn.clone(),
            bucket_key,
        };
        let fill = populate(s3, bucket, n, body.clone(), &sse).await;
        eprintln!("{bucket}: {n} objects written in {} s", secs(fill));
        kms.rotate_key_on_demand()
            .key_id(&key_arn)
            .send()
            .await
            .unwrap_or_else(|e| panic!("RotateKeyOnDemand: {e:?}"));
        let created = admin
            .create_job(
                "/admin/v1/jobs/rotate",
                json!({ "key": key_arn, "buckets": [bucket] }),
            )
            .await;
        let Some(id) = created else {
            println!("\nrotation: not available (404): POST /admin/v1/jobs/rotate is not served by this build");
            return;
        };
        let job = admin.wait_completed(&id).await;
        assert_eq!(job.done(), n as u64, "{}", job.0);
        // The key id: an ARN's `/` does not fit in one path segment.
        let key_id = key_arn.rsplit('/').next().unwrap_or_default();
        check_object(s3, bucket, n - 1, &body, &key_arn).await;
        let (status, materials) = admin
            .call("GET", &format!("/admin/v1/keys/{key_id}/materials"), None)
            .await;
        let old = if status == 200 {
            let v1 = materials["Materials"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["Version"] == 1))
                .cloned()
                .unwrap_or(Value::Null);
            format!("{}", v1["NoLongerNeeded"])
        } else {
            format!("HTTP {status}")
        };
        rates.push(job.rate());
        rows.push(vec![
            bucket.to_owned(),
            if bucket_key { "on" } else { "off" }.to_owned(),
            n.to_string(),
            secs(job.elapsed()),
            format!("{:.0}", job.rate()),
            job.counter("rewrapped").to_string(),
            job.counter("via_bucket_key").to_string(),
            job.counter("bucket_keys_rewrapped").to_string(),
            old,
        ]);
    }
    println!("\nKey rotation with rewrap (RotateKeyOnDemand, then a rotate job on the bucket):");
    print_table(
        &[
            "bucket",
            "Bucket Key",
            "objects",
            "job s",
            "objects/s",
            "envelopes rewrapped",
            "via bucket key",
            "bucket keys rewrapped",
            "old material no longer needed",
        ],
        &rows,
    );
    println!(
        "rotation speedup with Bucket Keys = {:.1}",
        rates[0] / rates[1]
    );
}
