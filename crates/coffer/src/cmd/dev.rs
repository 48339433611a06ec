//! `coffer dev`: every role in one process on one data directory. The metadata is a
//! single-member Raft group (the code `coffer meta` runs, in `<data>/meta-raft`); the KMS is the
//! local keystore in the data directory, or a remote `coffer kms` over gRPC (`--kms-endpoint`).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_gateway::{AppState, GatewayConfig};
use coffer_kms::grpc::{ClientConfig, GrpcKmsClient};
use coffer_kms::{CreateKeyRequest, Kms, KmsError};
use coffer_meta::{Command, MetaClient, MetaNode};
use coffer_raft::RaftConfig;
use serde::Serialize;
use tokio::net::TcpListener;

use super::common::{
    credentials, default_key, join_server, local_kms_config, print_credentials, shutdown_signal,
    spawn_maintenance, stopped, write_file_atomic, DEFAULT_KEY_ALIAS, MAINTENANCE_INTERVAL,
};
use super::CmdError;
use crate::cli::DevArgs;

/// Where the ARN of the S3-managed (SSE-S3) key is kept in meta.
pub const SSE_S3_KEY_CONFIG: &str = "cluster/sse-s3-key-arn";
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
        Some(endpoint) => Arc::new(GrpcKmsClient::connect_lazy(ClientConfig {
            endpoint: endpoint.clone(),
            timeout: Duration::from_millis(args.kms_timeout_ms),
            ..Default::default()
        })?),
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

    let sse_s3_key_arn = while_kms_unavailable(|| sse_s3_key(kms.as_ref(), meta.as_ref())).await?;
    let default_key_arn = while_kms_unavailable(|| default_key(kms.as_ref())).await?;

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

    let s3_listener = TcpListener::bind(args.listen).await?;
    let admin_listener = TcpListener::bind(args.admin_listen).await?;
    let s3_addr = s3_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let ready = Arc::new(AtomicBool::new(false));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let s3 = tokio::spawn(coffer_gateway::serve(
        s3_listener,
        state.clone(),
        stopped(stop_rx.clone()),
    ));
    let admin = tokio::spawn(coffer_gateway::serve_admin(
        admin_listener,
        state.clone(),
        ready.clone(),
        stopped(stop_rx.clone()),
    ));
    // A remote KMS does its own housekeeping.
    let maintenance = args
        .kms_endpoint
        .is_none()
        .then(|| spawn_maintenance(kms, MAINTENANCE_INTERVAL, stop_rx));

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
    ready.store(true, Ordering::Release);

    shutdown_signal().await;
    ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    join_server("S3 server", s3, SHUTDOWN_GRACE).await?;
    join_server("admin server", admin, SHUTDOWN_GRACE).await?;
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

/// Runs a startup step against the KMS, retrying while the KMS is unreachable (a remote
/// `coffer kms` started at the same time), for at most [`REMOTE_KMS_STARTUP_WAIT`].
async fn while_kms_unavailable<T, F, Fut>(step: F) -> Result<T, CmdError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, CmdError>>,
{
    let deadline = Instant::now() + REMOTE_KMS_STARTUP_WAIT;
    loop {
        match step().await {
            Err(e)
                if matches!(e.downcast_ref::<KmsError>(), Some(KmsError::Unavailable(_)))
                    && Instant::now() < deadline =>
            {
                tracing::warn!(error = %e, "the KMS is not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

/// The S3-managed key (SSE-S3), created on first start and remembered in meta.
async fn sse_s3_key(kms: &dyn Kms, meta: &dyn MetaClient) -> Result<String, CmdError> {
    if let Some(arn) = meta.get_config(SSE_S3_KEY_CONFIG).await? {
        return Ok(String::from_utf8(arn)?);
    }
    let key = kms
        .create_key(CreateKeyRequest {
            description: "Coffer S3-managed key (SSE-S3)".into(),
            aws_managed: true,
            tags: Default::default(),
        })
        .await?;
    meta.apply(Command::PutConfig {
        name: SSE_S3_KEY_CONFIG.into(),
        value: key.arn.clone().into_bytes(),
    })
    .await?;
    Ok(key.arn)
}
