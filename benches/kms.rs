//! KMS operations per second — GenerateDataKey, Decrypt and ReEncrypt — for each backend
//! (local keystore, aws-kms against moto's emulator, transit against an OpenBao dev server),
//! in-process and over Coffer's gRPC KMS service, all in one run; each figure is also printed as
//! the ratio to the in-process local backend.
//!
//! Run: `cargo build --release --workspace --bins --benches && cargo bench --workspace --bench kms`
//! (`COFFER_BENCH_OPS` calls per operation, default 400; `COFFER_BENCH_CONCURRENCY` calls in
//! flight, default 8). moto and bao come from the test venv tests/run-all.sh makes.

use std::sync::Arc;
use std::time::Duration;

use coffer_benches::print_table;
use coffer_kms::backend::{self, KmsBackendConfig};
use coffer_kms::grpc::{ClientConfig, GrpcKmsClient};
use coffer_kms::test_servers::{BaoServer, MotoServer};
use coffer_kms::testing::{bench_ops_with, BenchResult};
use coffer_kms::Kms;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Serves `kms` over gRPC on a loopback port; returns a client of it and the server task.
async fn over_grpc(kms: Arc<dyn Kms>) -> (GrpcKmsClient, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        coffer_kms::grpc::serve(kms, listener, std::future::pending())
            .await
            .expect("gRPC server");
    });
    let client = GrpcKmsClient::connect_lazy(ClientConfig {
        endpoint: format!("http://{addr}"),
        timeout: Duration::from_secs(30),
        ..Default::default()
    })
    .expect("client");
    (client, task)
}

fn main() {
    let n = env_usize("COFFER_BENCH_OPS", 400).max(1);
    let concurrency = env_usize("COFFER_BENCH_CONCURRENCY", 8).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let moto = MotoServer::start();
    let bao = BaoServer::start();
    let results: Vec<(String, BenchResult)> = rt.block_on(async {
        std::env::set_var(
            "COFFER_BENCH_KMS_ROOT_KEY",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        );
        let configs = [
            (
                "local",
                KmsBackendConfig::Local {
                    path: dir.path().join("kms"),
                    root_key_file: None,
                    root_key_env: Some("COFFER_BENCH_KMS_ROOT_KEY".into()),
                    region: "us-east-1".into(),
                    account_id: "000000000000".into(),
                },
            ),
            (
                "aws-kms → moto",
                KmsBackendConfig::AwsKms(moto.aws_kms_config("us-east-1")),
            ),
            (
                "transit → OpenBao",
                KmsBackendConfig::Transit(bao.transit_config("us-east-1", "000000000000")),
            ),
        ];
        let mut out = Vec::new();
        for (name, cfg) in configs {
            let kms = backend::open(&cfg).await.expect("open backend");
            let r = bench_ops_with(kms.as_ref(), n, concurrency).await;
            out.push((format!("{name}, in-process"), r));
            let (client, server) = over_grpc(kms).await;
            let r = bench_ops_with(&client, n, concurrency).await;
            out.push((format!("{name}, over gRPC"), r));
            server.abort();
        }
        out
    });
    let base = results[0].1;
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|(name, r)| {
            vec![
                name.clone(),
                format!("{:.0}", r.gdk_per_s),
                format!("{:.3}", r.gdk_per_s / base.gdk_per_s),
                format!("{:.0}", r.decrypt_per_s),
                format!("{:.3}", r.decrypt_per_s / base.decrypt_per_s),
                format!("{:.0}", r.reencrypt_per_s),
                format!("{:.3}", r.reencrypt_per_s / base.reencrypt_per_s),
            ]
        })
        .collect();
    println!("KMS operations per second ({n} calls each, {concurrency} in flight):");
    print_table(
        &[
            "backend",
            "GenerateDataKey/s",
            "× local",
            "Decrypt/s",
            "× local",
            "ReEncrypt/s",
            "× local",
        ],
        &rows,
    );
}
