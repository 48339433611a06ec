//! Shared helpers for the benchmarks: timing, the raw cipher baseline, S3 PUT/GET throughput
//! from concurrent clients, table printing.

use std::time::{Duration, Instant};

/// MiB/s of `bytes` moved in `elapsed`.
pub fn mib_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

/// Raw `ring` AES-256-GCM seal and open throughput (MiB/s) over 1 MiB buffers for about
/// `budget`: the ceiling our data path is compared with.
pub fn raw_aes_gcm(budget: Duration) -> (f64, f64) {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).expect("key"));
    let mut buf = vec![0x5au8; 1 << 20];
    let mut n = 0u64;
    let start = Instant::now();
    let mut tags = Vec::new();
    while start.elapsed() < budget {
        let nonce = Nonce::assume_unique_for_key([(n % 251) as u8; 12]);
        tags.push(
            key.seal_in_place_separate_tag(nonce, Aad::empty(), &mut buf)
                .expect("seal"),
        );
        n += 1;
    }
    let seal = mib_per_s(n << 20, start.elapsed());
    // Open what the last seal produced, repeatedly (re-sealing in between is not measured).
    let nonce_for = |i: u64| Nonce::assume_unique_for_key([(i % 251) as u8; 12]);
    let tag = tags.pop().expect("at least one seal");
    let last = n - 1;
    let mut sealed = buf.clone();
    sealed.extend_from_slice(tag.as_ref());
    let mut m = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        let mut work = sealed.clone();
        key.open_in_place(nonce_for(last), Aad::empty(), &mut work)
            .expect("open");
        m += 1;
    }
    let open = mib_per_s(m << 20, start.elapsed());
    (seal, open)
}

/// Prints a Markdown table.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    println!("| {} |", header.join(" | "));
    println!(
        "|{}|",
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for r in rows {
        println!("| {} |", r.join(" | "));
    }
}

/// The time per case: `COFFER_BENCH_SECONDS`, else `default_secs`.
pub fn bench_budget(default_secs: u64) -> Duration {
    let secs = std::env::var("COFFER_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_secs);
    Duration::from_secs(secs)
}

/// Runs `op(client, iteration)` on `clients` concurrent tasks for `budget` (each client at
/// least once); returns the number of operations completed and the elapsed time.
pub async fn run_clients<F, Fut>(budget: Duration, clients: usize, op: F) -> (u64, Duration)
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while start.elapsed() < budget || i == 0 {
                op(c, i).await;
                i += 1;
            }
            i
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("task");
    }
    (total, start.elapsed())
}

/// PUT MiB/s of `body` into `bucket` from `clients` concurrent clients for `budget`, each PUT
/// under a new key `obj-{len}-{client}-{i}` (so [`get_mib_per_s`] finds `...-0` of each client).
pub async fn put_mib_per_s(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    body: bytes::Bytes,
    clients: usize,
    budget: Duration,
) -> f64 {
    let size = body.len();
    let (s3, bucket) = (s3.clone(), bucket.to_owned());
    let (n, elapsed) = run_clients(budget, clients, move |c, i| {
        // `Bytes` clones share the buffer: no copy of the object per request.
        let (s3, bucket, body) = (s3.clone(), bucket.clone(), body.clone());
        async move {
            s3.put_object()
                .bucket(bucket)
                .key(format!("obj-{size}-{c}-{i}"))
                .body(aws_sdk_s3::primitives::ByteStream::from(body))
                .send()
                .await
                .unwrap_or_else(|e| panic!("PUT: {e:?}"));
        }
    })
    .await;
    mib_per_s(n * size as u64, elapsed)
}

/// GET MiB/s from `clients` concurrent clients for `budget`, client `c` reading
/// `obj-{size}-{c}-0` (written by [`put_mib_per_s`]) whole and checking its length.
pub async fn get_mib_per_s(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    size: usize,
    clients: usize,
    budget: Duration,
) -> f64 {
    let (s3, bucket) = (s3.clone(), bucket.to_owned());
    let (n, elapsed) = run_clients(budget, clients, move |c, _| {
        let (s3, bucket) = (s3.clone(), bucket.clone());
        async move {
            let o = s3
                .get_object()
                .bucket(bucket)
                .key(format!("obj-{size}-{c}-0"))
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET: {e:?}"));
            let n = o.body.collect().await.expect("body").into_bytes().len();
            assert_eq!(n, size);
        }
    })
    .await;
    mib_per_s(n * size as u64, elapsed)
}

/// `name` from the environment as a number, else `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Runs `op(i)` for every `i` in `0..n` on `clients` concurrent tasks (each takes the next
/// index when it is free); returns the wall time.
pub async fn run_all<F, Fut>(n: usize, clients: usize, op: F) -> Duration
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = std::sync::Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                op(i).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    start.elapsed()
}

/// The classic re-encryption of one object: CopyObject onto itself under the SSE-KMS key
/// `key_arn`, metadata kept.
pub async fn copy_onto_itself(s3: &aws_sdk_s3::Client, bucket: &str, key: &str, key_arn: &str) {
    use aws_sdk_s3::types::{MetadataDirective, ServerSideEncryption};
    s3.copy_object()
        .bucket(bucket)
        .key(key)
        .copy_source(format!("{bucket}/{key}"))
        .metadata_directive(MetadataDirective::Copy)
        .server_side_encryption(ServerSideEncryption::AwsKms)
        .ssekms_key_id(key_arn)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CopyObject {bucket}/{key}: {e:?}"));
}
