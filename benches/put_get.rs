//! PUT and GET throughput against a real `coffer dev` (1 MiB and 64 MiB objects, 1 and 8
//! concurrent clients), next to raw `ring` AES-256-GCM measured in the same run.
//!
//! Run: `cargo build --release --workspace --bins --benches && COFFER_BIN=$CARGO_TARGET_DIR/release/coffer cargo bench --workspace --bench put_get`
//! (`COFFER_BENCH_SECONDS` sets the time per case, default 5).

use std::time::Duration;

use coffer_benches::{bench_budget, get_mib_per_s, print_table, put_mib_per_s, raw_aes_gcm};
use coffer_tests::{body_of, Coffer};

fn main() {
    let budget = bench_budget(5);
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
            let body = bytes::Bytes::from(body_of(size, 42));
            for clients in [1usize, 8] {
                let put_mib = put_mib_per_s(&s3, "bench", body.clone(), clients, budget).await;
                let get_mib = get_mib_per_s(&s3, "bench", size, clients, budget).await;
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
