//! `coffer dev`: every role in one process on one data directory. The metadata is a
//! single-member Raft group (the code `coffer meta` runs, in `<data>/meta-raft`); the KMS is the
//! local keystore in the data directory, or a remote `coffer kms` over gRPC (`--kms-endpoint`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use coffer_gateway::{AppState, GatewayConfig};
use coffer_kms::Kms;
use coffer_meta::{MetaClient, MetaNode};
use coffer_raft::RaftConfig;
use serde::Serialize;
use tokio::net::TcpListener;

use super::common::{
    credentials, default_key, grpc_kms_client, local_kms_config, print_credentials,
    shutdown_signal, spawn_maintenance, sse_s3_key, while_unavailable, write_file_atomic,
    GatewayServers, DEFAULT_KEY_ALIAS, MAINTENANCE_INTERVAL,
};
use super::CmdError;
use crate::cli::DevArgs;

/// How long startup waits for a remote KMS that is not reachable yet.
const REMOTE_KMS_STARTUP_WAIT: Duration = Duration::from_secs(30);
/// How long the servers may drain connections after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The metadata directory of the Raft member, and the one of the pre-Raft format it imports.
const META_DIR: &str = "meta-raft";
const LEGACY_META_DIR: &str = "meta";
/// Where a pre-Raft metadata directory is moved once imported.
const IMPORTED_META_DIR: &str = "meta.pre-raft";

/// What the ready file says.
#[derive(Serialize)]
struct Ready<'a> {
    s3: String,
    admin: String,
    /// The metadata member's address (Raft and the metadata gRPC API).
    meta: String,
    region: &'a str,
    access_key_id: &'a str,
    default_kms_key_arn: &'a str,
    kms_endpoint: Option<&'a str>,
    pid: u32,
}

/// Runs `coffer dev` until SIGINT/SIGTERM.
pub async fn run(args: DevArgs) -> Result<(), CmdError> {
    std::fs::create_dir_all(&args.data_dir)?;
    let data = args.data_dir.canonicalize()?;
    let (creds, generated) = credentials(&data)?;

    let kms: Arc<dyn Kms> = match &args.kms_endpoint {
        Some(endpoint) => grpc_kms_client(endpoint, args.kms_timeout_ms)?,
        None => {
            coffer_kms::backend::open(&local_kms_config(&data, &args.region, &args.account_id)?)
                .await?
        }
    };
    let meta_node = start_meta(&data, args.meta_listen).await?;
    let meta_addr = meta_node.local_addr();
    let meta: Arc<dyn MetaClient> = Arc::new(meta_node.client());
    let blobs = Arc::new(coffer_blob::local::LocalBlobStore::open(
        data.join("blobs"),
    )?);

    let sse_s3_key_arn = while_unavailable("SSE-S3 key", REMOTE_KMS_STARTUP_WAIT, || {
        sse_s3_key(kms.as_ref(), meta.as_ref())
    })
    .await?;
    let default_key_arn = while_unavailable("default KMS key", REMOTE_KMS_STARTUP_WAIT, || {
        default_key(kms.as_ref())
    })
    .await?;

    let state = Arc::new(AppState::new(
        meta,
        blobs,
        kms.clone(),
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

    let servers = GatewayServers::start(state.clone(), args.listen, args.admin_listen).await?;
    let (s3_addr, admin_addr) = (servers.s3_addr, servers.admin_addr);
    // A remote KMS does its own housekeeping.
    let maintenance = args
        .kms_endpoint
        .is_none()
        .then(|| spawn_maintenance(kms, MAINTENANCE_INTERVAL, servers.stop_signal()));

    println!("Coffer dev is running.");
    println!("  S3 endpoint:       http://{s3_addr}");
    println!("  Admin endpoint:    http://{admin_addr}");
    println!("  Meta endpoint:     {meta_addr} (single-member Raft group, gRPC)");
    println!("  Region:            {}", args.region);
    print_credentials(&creds, generated, &data);
    println!("  Default KMS key:   {default_key_arn} ({DEFAULT_KEY_ALIAS})");
    match &args.kms_endpoint {
        Some(e) => println!("  KMS:               remote, {e} (gRPC)"),
        None => println!("  KMS:               local keystore in the data directory"),
    }
    println!("  Data directory:    {}", data.display());

    if let Some(path) = &args.ready_file {
        let r = Ready {
            s3: s3_addr.to_string(),
            admin: admin_addr.to_string(),
            meta: meta_addr.to_string(),
            region: &args.region,
            access_key_id: &creds.access_key_id,
            default_kms_key_arn: &default_key_arn,
            kms_endpoint: args.kms_endpoint.as_deref(),
            pid: std::process::id(),
        };
        write_file_atomic(path, serde_json::to_string_pretty(&r)?.as_bytes(), 0o644)?;
    }
    servers.set_ready();

    shutdown_signal().await;
    servers.stop(SHUTDOWN_GRACE).await?;
    if let Some(m) = maintenance {
        let _ = m.await;
    }
    drop(state);
    meta_node.shutdown().await?;
    Ok(())
}

/// Starts the metadata as a single-member Raft group in `<data>/meta-raft`, listening on
/// `listen`. A metadata directory of the pre-Raft format (`<data>/meta`, `LocalMeta`) is
/// imported first, then compacted into a snapshot and moved to `<data>/meta.pre-raft`.
async fn start_meta(data: &Path, listen: SocketAddr) -> Result<MetaNode, CmdError> {
    let dir = data.join(META_DIR);
    let legacy = data.join(LEGACY_META_DIR);
    let import = legacy.join("CURRENT").exists();
    if import {
        let (from, to) = (legacy.clone(), dir.clone());
        let imported =
            tokio::task::spawn_blocking(move || MetaNode::import_local_state(&from, &to)).await??;
        tracing::info!(imported, from = %legacy.display(), "pre-Raft metadata directory found");
    }
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let node = MetaNode::start(1, &dir, listener, RaftConfig::default()).await?;
    // Bootstraps the group on the first start; a no-op afterwards (a single member does not
    // need its recorded address to stay valid).
    node.initialize(BTreeMap::from([(1, addr.to_string())]))
        .await?;
    if import {
        node.compact().await?;
        std::fs::rename(&legacy, data.join(IMPORTED_META_DIR))?;
        tracing::info!(
            "imported the pre-Raft metadata; the old directory is now {IMPORTED_META_DIR}"
        );
    }
    Ok(node)
}
