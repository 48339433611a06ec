//! PUT and GET throughput against a real `coffer dev` (1 MiB and 64 MiB objects, 1 and 8
//! concurrent clients), next to raw `ring` AES-256-GCM measured in the same run.
//!
//! Run: `cargo build --release --workspace --bins --benches && COFFER_BIN=$CARGO_TARGET_DIR/release/coffer cargo bench --workspace --bench put_get`
//! (`COFFER_BENCH_SECONDS` sets the time per case, default 5).

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use coffer_benches::{mib_per_s, print_table, raw_aes_gcm};
use coffer_tests::{body_of, Coffer};

fn main() {
    let secs: u64 = std::env::var("COFFER_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let budget = Duration::from_secs(secs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (seal, open) = raw_aes_gcm(budget.min(Duration::from_secs(2)));
    let coffer = Coffer::start();
    let mut rows = Vec::new();
    rt.block_on(async {
        let s3 = coffer.s3().await;
        s3.create_bucket()
            .bucket("bench")
            .send()
            .await
            .expect("bucket");
        for size in [1usize << 20, 64 << 20] {
            // `Bytes` clones share the buffer: no copy of the object per request.
            let body = bytes::Bytes::from(body_of(size, 42));
            for clients in [1usize, 8] {
                let (s3p, bodyp) = (s3.clone(), body.clone());
                let put = run(budget, clients, move |c, i| {
                    let s3 = s3p.clone();
                    let body = bodyp.clone();
                    async move {
                        s3.put_object()
                            .bucket("bench")
                            .key(format!("obj-{size}-{c}-{i}"))
                            .body(ByteStream::from(body))
                            .send()
                            .await
                            .expect("put");
                    }
                })
                .await;
                let put_mib = mib_per_s(put.0 * size as u64, put.1);
                let s3g = s3.clone();
                let get = run(budget, clients, move |c, _| {
                    let s3 = s3g.clone();
                    async move {
                        let o = s3
                            .get_object()
                            .bucket("bench")
                            .key(format!("obj-{size}-{c}-0"))
                            .send()
                            .await
                            .expect("get");
                        let n = o.body.collect().await.expect("body").into_bytes().len();
                        assert_eq!(n, size);
                    }
                })
                .await;
                let get_mib = mib_per_s(get.0 * size as u64, get.1);
                rows.push(vec![
                    format!("{} MiB", size >> 20),
                    clients.to_string(),
                    format!("{put_mib:.0}"),
                    format!("{:.3}", put_mib / seal),
                    format!("{get_mib:.0}"),
                    format!("{:.3}", get_mib / open),
                ]);
            }
        }
    });
    println!("raw ring AES-256-GCM: seal {seal:.0} MiB/s, open {open:.0} MiB/s (one core)");
    print_table(
        &[
            "object",
            "clients",
            "PUT MiB/s",
            "PUT / raw seal",
            "GET MiB/s",
            "GET / raw open",
        ],
        &rows,
    );
}

/// Runs `op(client, iteration)` on `clients` concurrent tasks for `budget`; returns the number
/// of operations completed and the elapsed time.
async fn run<F, Fut>(budget: Duration, clients: usize, op: F) -> (u64, Duration)
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
