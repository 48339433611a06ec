//! The rewrap path against a real `coffer dev`: UpdateObjectEncryption latency (p50, p99) for
//! objects of 1 KiB, 1 MiB, 64 MiB and 1 GiB and the ratio of the largest to the smallest (the
//! goal is 1.0: the cost does not depend on the object's size), then re-encrypting a bucket of N
//! objects by UpdateObjectEncryption versus by CopyObject onto itself (the classic way), as a
//! speedup, for 4 KiB, 1 MiB and 64 MiB objects. Everything is measured side by side in one run.
//!
//! Run: `cargo build --release --workspace --bins --benches && COFFER_BIN=$CARGO_TARGET_DIR/release/coffer cargo bench --workspace --bench rewrap`
//! (`COFFER_BENCH_ITERS` rewraps per size, default 200; `COFFER_BENCH_OBJECTS` objects per bucket, default 32).

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ObjectEncryption, ServerSideEncryption, SsekmsEncryption};
use aws_sdk_s3::Client;
use coffer_benches::{copy_onto_itself, env_usize, print_table, run_all};
use coffer_tests::{body_of, Coffer};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

fn size_label(size: usize) -> String {
    match size {
        s if s >= 1 << 30 => format!("{} GiB", s >> 30),
        s if s >= MIB => format!("{} MiB", s >> 20),
        s => format!("{} KiB", s >> 10),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn rewrap(s3: &Client, bucket: &str, key: &str, key_arn: &str) {
    s3.update_object_encryption()
        .bucket(bucket)
        .key(key)
        .object_encryption(ObjectEncryption::Ssekms(
            SsekmsEncryption::builder()
                .kms_key_arn(key_arn)
                .build()
                .expect("SSE-KMS target"),
        ))
        .send()
        .await
        .expect("UpdateObjectEncryption");
}

async fn put(s3: &Client, bucket: &str, key: &str, body: bytes::Bytes) {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .expect("PutObject");
}

fn main() {
    let iters = env_usize("COFFER_BENCH_ITERS", 200).max(2);
    let objects = env_usize("COFFER_BENCH_OBJECTS", 32).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let coffer = Coffer::start();
    let key_a = coffer.ready.default_kms_key_arn.clone();
    rt.block_on(async {
        let s3 = coffer.s3().await;
        s3.create_bucket()
            .bucket("rewrap")
            .send()
            .await
            .expect("bucket");
        // A second key: alias/aws/s3, created by the first SSE-KMS upload without a key ID.
        let probe = s3
            .put_object()
            .bucket("rewrap")
            .key("probe")
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .body(ByteStream::from_static(b"probe"))
            .send()
            .await
            .expect("SSE-KMS put");
        let key_b = probe.ssekms_key_id().expect("key id").to_string();
        assert_ne!(key_a, key_b);

        // 1. Latency of one UpdateObjectEncryption by object size.
        let mut rows = Vec::new();
        let mut p50s = Vec::new();
        for size in [KIB, MIB, 64 * MIB, 1 << 30] {
            let key = format!("lat-{size}");
            put(&s3, "rewrap", &key, bytes::Bytes::from(body_of(size, 7))).await;
            let mut samples = Vec::with_capacity(iters);
            for i in 0..iters {
                let target = if i % 2 == 0 { &key_a } else { &key_b };
                let t = Instant::now();
                rewrap(&s3, "rewrap", &key, target).await;
                samples.push(t.elapsed());
            }
            samples.sort();
            let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
            p50s.push(p50);
            rows.push(vec![
                size_label(size),
                iters.to_string(),
                format!("{:.2}", ms(p50)),
                format!("{:.2}", ms(p99)),
            ]);
            s3.delete_object()
                .bucket("rewrap")
                .key(&key)
                .send()
                .await
                .expect("delete");
        }
        println!("UpdateObjectEncryption latency by object size (one client, sequential):");
        print_table(&["object", "rewraps", "p50 ms", "p99 ms"], &rows);
        println!(
            "p50(1 GiB) / p50(1 KiB) = {:.2}\n",
            ms(p50s[3]) / ms(p50s[0])
        );

        // 2. Re-encrypting a bucket of N objects: UpdateObjectEncryption vs CopyObject.
        let mut rows = Vec::new();
        for size in [4 * KIB, MIB, 64 * MIB] {
            let bucket = format!("bulk-{}", size_label(size).replace(' ', "").to_lowercase());
            s3.create_bucket()
                .bucket(&bucket)
                .send()
                .await
                .expect("bucket");
            let body = bytes::Bytes::from(body_of(size, 9));
            let (s, b, bd) = (s3.clone(), bucket.clone(), body.clone());
            run_all(objects, 4, move |i| {
                let (s, b, bd) = (s.clone(), b.clone(), bd.clone());
                async move { put(&s, &b, &format!("o{i}"), bd).await }
            })
            .await;
            let (s, b, k) = (s3.clone(), bucket.clone(), key_b.clone());
            let by_rewrap = run_all(objects, 8, move |i| {
                let (s, b, k) = (s.clone(), b.clone(), k.clone());
                async move { rewrap(&s, &b, &format!("o{i}"), &k).await }
            })
            .await;
            let (s, b, k) = (s3.clone(), bucket.clone(), key_a.clone());
            let by_copy = run_all(objects, 8, move |i| {
                let (s, b, k) = (s.clone(), b.clone(), k.clone());
                async move { copy_onto_itself(&s, &b, &format!("o{i}"), &k).await }
            })
            .await;
            rows.push(vec![
                size_label(size),
                objects.to_string(),
                format!("{:.1}", ms(by_rewrap)),
                format!("{:.1}", ms(by_copy)),
                format!("{:.1}", by_copy.as_secs_f64() / by_rewrap.as_secs_f64()),
            ]);
        }
        println!("Re-encrypting a bucket (8 concurrent clients):");
        print_table(
            &[
                "object",
                "objects",
                "UpdateObjectEncryption ms",
                "CopyObject ms",
                "speedup",
            ],
            &rows,
        );
    });
}
