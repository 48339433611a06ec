//! `coffer kms`: the key-management role alone. Opens one backend (the local keystore in the
//! data directory, or any backend from `--backend-config`) and serves it twice: the `Kms` trait
//! over gRPC for gateways (`coffer dev --kms-endpoint`), and the AWS KMS JSON 1.1 API for
//! `aws kms`, boto3 and `coffer admin`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use coffer_gateway::kms_api::{self, KmsApiState};
use coffer_kms::backend::KmsBackendConfig;
use serde::Serialize;
use tokio::net::TcpListener;

use super::common::{
    credentials, default_key, join_server, local_kms_config, print_credentials, shutdown_signal,
    spawn_maintenance, stopped, write_file_atomic, DEFAULT_KEY_ALIAS,
};
use super::CmdError;
use crate::cli::KmsArgs;

/// How long the servers may drain connections after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the ready file says.
#[derive(Serialize)]
struct Ready<'a> {
    /// The gRPC address (`coffer dev --kms-endpoint http://<grpc>`).
    grpc: String,
    /// The AWS KMS JSON API address.
    http: String,
    region: &'a str,
    access_key_id: &'a str,
    default_kms_key_arn: &'a str,
    pid: u32,
}

/// Runs `coffer kms` until SIGINT/SIGTERM.
pub async fn run(args: KmsArgs) -> Result<(), CmdError> {
    std::fs::create_dir_all(&args.data_dir)?;
    let data = args.data_dir.canonicalize()?;
    let (creds, generated) = credentials(&data)?;

    let cfg = match &args.backend_config {
        Some(path) => backend_config(path)?,
        None => local_kms_config(&data, &args.region, &args.account_id)?,
    };
    let kms = coffer_kms::backend::open(&cfg).await?;
    if !kms.is_secure() {
        tracing::warn!("this KMS backend is not fit for production");
    }
    let default_key_arn = default_key(kms.as_ref()).await?;

    let grpc_listener = TcpListener::bind(args.grpc_listen).await?;
    let http_listener = TcpListener::bind(args.listen).await?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let grpc = tokio::spawn(coffer_kms::grpc::serve(
        kms.clone(),
        grpc_listener,
        stopped(stop_rx.clone()),
    ));
    let http = tokio::spawn(kms_api::serve(
        http_listener,
        KmsApiState {
            kms: kms.clone(),
            creds: Arc::new(creds.provider()),
            region: args.region.clone(),
        },
        stopped(stop_rx.clone()),
    ));
    let maintenance = spawn_maintenance(
        kms,
        Duration::from_secs(args.maintenance_interval_secs),
        stop_rx,
    );

    println!("Coffer KMS is running.");
    println!("  gRPC endpoint:     http://{grpc_addr}");
    println!("  KMS API endpoint:  http://{http_addr}");
    println!("  Region:            {}", args.region);
    print_credentials(&creds, generated, &data);
    println!("  Default KMS key:   {default_key_arn} ({DEFAULT_KEY_ALIAS})");
    match &args.backend_config {
        Some(p) => println!("  Backend:           from {}", p.display()),
        None => println!("  Backend:           local keystore in the data directory"),
    }
    println!("  Data directory:    {}", data.display());

    if let Some(path) = &args.ready_file {
        let r = Ready {
            grpc: grpc_addr.to_string(),
            http: http_addr.to_string(),
            region: &args.region,
            access_key_id: &creds.access_key_id,
            default_kms_key_arn: &default_key_arn,
            pid: std::process::id(),
        };
        write_file_atomic(path, serde_json::to_string_pretty(&r)?.as_bytes(), 0o644)?;
    }

    shutdown_signal().await;
    let _ = stop_tx.send(true);
    join_server("gRPC server", grpc, SHUTDOWN_GRACE).await?;
    join_server("KMS API server", http, SHUTDOWN_GRACE).await?;
    let _ = maintenance.await;
    Ok(())
}

/// Reads a JSON [`KmsBackendConfig`] (`{"type": "local" | "aws-kms" | "transit", ...}`).
fn backend_config(path: &Path) -> Result<KmsBackendConfig, CmdError> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("invalid KMS backend config {}: {e}", path.display()).into())
}
