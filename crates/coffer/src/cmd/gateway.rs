//! `coffer gateway`: the S3 API over remote roles. Stateless (no data directory): the
//! metadata group (`coffer meta`, through `GrpcMetaClient`), the KMS (`coffer kms`, through
//! `GrpcKmsClient`) and a blob node (`coffer blob`, through `GrpcBlobStore`). Any number of
//! gateways may serve the same cluster; the access key pair comes from the environment.
//!
//! Startup waits (bounded) for the metadata group and the KMS, which it needs to settle the
//! SSE-S3 key; the blob node may come later: until it answers, requests that need it get 503.
//!
//! Blob nodes: one `--blob` endpoint keeps every blob there; several, or none (then the nodes
//! registered in meta by `coffer blob --meta`, re-read every [`NODE_REFRESH`]), keep each blob
//! on `--replicas` nodes and acknowledge after `--write-quorum` copies (`ReplicatedBlobStore`).

use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use coffer_blob::grpc::{GrpcBlobConfig, GrpcBlobStore};
use coffer_blob::replicated::{ReplicaNode, ReplicatedBlobStore, Replication};
use coffer_blob::BlobStore;
use coffer_gateway::{AppState, GatewayConfig};
use coffer_meta::{GrpcMetaClient, GrpcMetaConfig, MetaClient};
use serde::Serialize;

use super::blob::{address_list, registered_nodes};
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

/// How often a gateway without `--blob` re-reads the blob nodes registered in meta.
const NODE_REFRESH: Duration = Duration::from_secs(5);

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
    let meta_addrs = address_list(&args.meta);
    let meta: Arc<dyn MetaClient> = Arc::new(
        GrpcMetaClient::new(meta_addrs.clone(), GrpcMetaConfig::default())
            .map_err(|e| format!("--meta: {e}"))?,
    );
    let blob_nodes = Blobs::from_args(&args)?;
    let kms = grpc_kms_client(&args.kms, args.kms_timeout_ms).map_err(|e| format!("--kms: {e}"))?;
    tracing::info!(meta = ?meta_addrs, kms = %args.kms, "waiting for the metadata group and the KMS");
    let sse_s3_key_arn = while_unavailable("SSE-S3 key", STARTUP_WAIT, || {
        sse_s3_key(kms.as_ref(), meta.as_ref())
    })
    .await?;
    let (blobs, blob_desc) = blob_nodes.start(&meta).await;
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
    println!("  Blob nodes:        {blob_desc}");
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

/// Deadline of one read, length or delete on one replica: another replica is tried after it,
/// so it is shorter than a single node's.
const REPLICA_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of one blob node; `replica`: one of several, with [`REPLICA_CALL_TIMEOUT`].
fn blob_client(endpoint: &str, replica: bool) -> Result<Arc<GrpcBlobStore>, CmdError> {
    let mut cfg = GrpcBlobConfig {
        endpoint: endpoint.to_owned(),
        ..Default::default()
    };
    if replica {
        cfg.call_timeout = REPLICA_CALL_TIMEOUT;
    }
    Ok(Arc::new(
        GrpcBlobStore::connect_lazy(cfg).map_err(|e| format!("--blob: {e}"))?,
    ))
}

/// The gateway's blob nodes from `--blob`, `--replicas`, `--write-quorum` (see the module doc),
/// checked before startup waits for anything.
enum Blobs {
    /// One node, every blob there.
    Single(Arc<GrpcBlobStore>, String),
    /// Several `--blob` endpoints, replicated over.
    Fixed(Arc<ReplicatedBlobStore>, String),
    /// The nodes registered in meta, replicated over.
    FromMeta(Arc<ReplicatedBlobStore>, String),
}

impl Blobs {
    fn from_args(args: &GatewayArgs) -> Result<Blobs, CmdError> {
        let endpoints = address_list(&args.blob);
        if let [endpoint] = endpoints.as_slice() {
            if args.replicas.is_some() || args.write_quorum.is_some() {
                return Err(
                    "--replicas and --write-quorum apply to several --blob endpoints, \
                            or to none (the blob nodes registered in meta); one --blob keeps \
                            every blob on that node"
                        .into(),
                );
            }
            return Ok(Blobs::Single(
                blob_client(endpoint, false)?,
                endpoint.clone(),
            ));
        }
        let replication = Replication {
            replicas: args.replicas.unwrap_or(3),
            write_quorum: args.write_quorum.unwrap_or(2),
        };
        replication
            .validate()
            .map_err(|e| format!("--replicas/--write-quorum: {e}"))?;
        let desc = format!("R={}, W={}", replication.replicas, replication.write_quorum);
        if endpoints.is_empty() {
            let store = ReplicatedBlobStore::dynamic(replication)?;
            return Ok(Blobs::FromMeta(
                Arc::new(store),
                format!("registered in meta ({desc})"),
            ));
        }
        let nodes = endpoints
            .iter()
            .map(|e| {
                Ok(ReplicaNode {
                    id: e.clone(),
                    store: blob_client(e, true)?,
                })
            })
            .collect::<Result<Vec<_>, CmdError>>()?;
        let store =
            ReplicatedBlobStore::new(nodes, replication).map_err(|e| format!("--blob: {e}"))?;
        Ok(Blobs::Fixed(
            Arc::new(store),
            format!("{} ({desc})", endpoints.join(",")),
        ))
    }

    /// Checks the single node, or loads the registered nodes and keeps re-reading them; the
    /// store and how the banner describes it.
    async fn start(self, meta: &Arc<dyn MetaClient>) -> (Arc<dyn BlobStore>, String) {
        match self {
            Blobs::Single(store, endpoint) => {
                match store.stat().await {
                    Ok(s) => {
                        tracing::info!(blob = %endpoint, version = %s.version, "blob node reachable")
                    }
                    Err(e) => tracing::warn!(
                        blob = %endpoint,
                        error = %e,
                        "the blob node is not reachable yet; requests that need it answer 503 until it is"
                    ),
                }
                (store, endpoint)
            }
            Blobs::Fixed(store, desc) => (store, desc),
            Blobs::FromMeta(store, desc) => {
                let mut known = KnownNodes::default();
                if let Err(e) = known.refresh(meta.as_ref(), &store).await {
                    tracing::warn!(error = %e, "cannot read the blob nodes registered in meta yet");
                }
                tokio::spawn({
                    let (meta, store) = (meta.clone(), store.clone());
                    async move {
                        loop {
                            tokio::time::sleep(NODE_REFRESH).await;
                            if let Err(e) = known.refresh(meta.as_ref(), &store).await {
                                tracing::warn!(error = %e, "cannot re-read the blob nodes registered in meta; keeping the last list");
                            }
                        }
                    }
                });
                (store, desc)
            }
        }
    }
}

/// The clients of the registered blob nodes, kept while a node's address stays the same.
#[derive(Default)]
struct KnownNodes {
    clients: HashMap<String, (String, Arc<GrpcBlobStore>)>,
}

impl KnownNodes {
    async fn refresh(
        &mut self,
        meta: &dyn MetaClient,
        store: &ReplicatedBlobStore,
    ) -> Result<(), CmdError> {
        let records = registered_nodes(meta).await?;
        let mut nodes = Vec::with_capacity(records.len());
        let mut clients = HashMap::new();
        for r in records {
            let client = match self.clients.remove(&r.id) {
                Some((addr, c)) if addr == r.addr => c,
                _ => match blob_client(&r.addr, true) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(id = %r.id, addr = %r.addr, error = %e, "skipping a registered blob node");
                        continue;
                    }
                },
            };
            nodes.push(ReplicaNode {
                id: r.id.clone(),
                store: client.clone(),
            });
            clients.insert(r.id, (r.addr, client));
        }
        let before = store.node_ids();
        store.set_nodes(nodes)?;
        let after = store.node_ids();
        if before != after {
            tracing::info!(nodes = ?after, "blob nodes registered in meta");
        }
        let quorum = store.replication().write_quorum;
        if after.len() < quorum {
            tracing::warn!(
                known = after.len(),
                write_quorum = quorum,
                "fewer blob nodes registered than the write quorum: writes answer 503"
            );
        }
        self.clients = clients;
        Ok(())
    }
}
