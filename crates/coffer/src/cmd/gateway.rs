//! `coffer gateway`: the S3 API over remote roles. Stateless (no data directory): the
//! metadata group (`coffer meta`, through `GrpcMetaClient`), the KMS (`coffer kms`, through
//! `GrpcKmsClient`) and a blob node (`coffer blob`, through `GrpcBlobStore`). Any number of
//! gateways may serve the same cluster; the access key pair comes from the environment.
//!
//! Startup waits (bounded) for the metadata group and the KMS, which it needs to settle the
//! SSE-S3 key; the blob node may come later: until it answers, requests that need it get 503.

use std::sync::Arc;
use std::time::Duration;

use coffer_blob::grpc::{GrpcBlobConfig, GrpcBlobStore};
use coffer_gateway::{AppState, GatewayConfig};
use coffer_meta::{GrpcMetaClient, GrpcMetaConfig, MetaClient};
use serde::Serialize;

use super::common::{
    env_credentials, grpc_kms_client, shutdown_signal, sse_s3_key, while_unavailable,
    write_file_atomic, GatewayServers,
};
use super::CmdError;
use crate::cli::GatewayArgs;

/// How long startup waits for the metadata group and the KMS to be reachable.
const STARTUP_WAIT: Duration = Duration::from_secs(60);
/// How long the servers may drain connections after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What the ready file says.
#[derive(Serialize)]
struct Ready {
    s3: String,
    admin: String,
    pid: u32,
}

/// Runs `coffer gateway` until SIGINT/SIGTERM.
pub async fn run(args: GatewayArgs) -> Result<(), CmdError> {
    let creds = env_credentials()
        .filter(|c| !c.access_key_id.is_empty() && !c.secret_access_key.is_empty())
        .ok_or(
            "coffer gateway takes its access key pair from the environment: set \
             COFFER_ACCESS_KEY_ID and COFFER_SECRET_ACCESS_KEY (both non-empty)",
        )?;
    let meta_addrs: Vec<String> = args
        .meta
        .iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect();
    let meta: Arc<dyn MetaClient> = Arc::new(
        GrpcMetaClient::new(meta_addrs.clone(), GrpcMetaConfig::default())
            .map_err(|e| format!("--meta: {e}"))?,
    );
    let kms = grpc_kms_client(&args.kms, args.kms_timeout_ms).map_err(|e| format!("--kms: {e}"))?;
    let blobs = Arc::new(
        GrpcBlobStore::connect_lazy(GrpcBlobConfig {
            endpoint: args.blob.clone(),
            ..Default::default()
        })
        .map_err(|e| format!("--blob: {e}"))?,
    );

    tracing::info!(meta = ?meta_addrs, kms = %args.kms, "waiting for the metadata group and the KMS");
    let sse_s3_key_arn = while_unavailable("SSE-S3 key", STARTUP_WAIT, || {
        sse_s3_key(kms.as_ref(), meta.as_ref())
    })
    .await?;
    match blobs.stat().await {
        Ok(s) => tracing::info!(blob = %args.blob, version = %s.version, "blob node reachable"),
        Err(e) => tracing::warn!(
            blob = %args.blob,
            error = %e,
            "the blob node is not reachable yet; requests that need it answer 503 until it is"
        ),
    }

    let banner_key = sse_s3_key_arn.clone();
    let state = Arc::new(AppState::new(
        meta,
        blobs,
        kms,
        Arc::new(creds.provider()),
        GatewayConfig {
            region: args.region.clone(),
            account_id: args.account_id.clone(),
            domains: args.domains.clone(),
            chunk_size: args.chunk_size,
            max_put_size: 5 * 1024 * 1024 * 1024,
            sse_s3_key_arn,
            allow_sse_c_on_new_buckets: args.allow_sse_c_on_new_buckets,
        },
    ));
    let servers = GatewayServers::start(state, args.listen, args.admin_listen).await?;

    println!("Coffer gateway is running.");
    println!("  S3 endpoint:       http://{}", servers.s3_addr);
    println!("  Admin endpoint:    http://{}", servers.admin_addr);
    println!("  Region:            {}", args.region);
    println!(
        "  Access key ID:     {} (from the environment)",
        creds.access_key_id
    );
    println!("  SSE-S3 key:        {banner_key}");
    println!("  Meta:              {}", meta_addrs.join(","));
    println!("  KMS:               {}", args.kms);
    println!("  Blob node:         {}", args.blob);
    if let Some(path) = &args.ready_file {
        let r = Ready {
            s3: servers.s3_addr.to_string(),
            admin: servers.admin_addr.to_string(),
            pid: std::process::id(),
        };
        write_file_atomic(path, serde_json::to_string_pretty(&r)?.as_bytes(), 0o644)?;
    }
    servers.set_ready();

    shutdown_signal().await;
    servers.stop(SHUTDOWN_GRACE).await
}
