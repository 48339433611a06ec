//! `coffer blob`: a blob node. Keeps sealed chunks as files under its data directory
//! (`coffer_blob::local`) and serves them to gateways over gRPC (`proto/blob.proto`). It only
//! ever sees ciphertext, and holds no key.
//!
//! With `--meta`, the node registers in the metadata group and heartbeats every
//! [`HEARTBEAT_INTERVAL`]; gateways started without `--blob` take their node list from there.
//!
//! In the background the node scrubs its blobs, and with `--meta` re-replicates the blobs
//! whose placement nodes lack them and deletes the orphans past their grace period
//! (`coffer_blob::repair`; the peers and their liveness come from the registry below, and
//! whether a blob is referenced from [`MetaClient::blob_references`], a linearizable read).
//! The counters are on `/metrics`.
//!
//! # The registry in meta (config entries, JSON)
//! - `cluster/blob-nodes/<id>`: `{"id", "addr", "last_heartbeat_ms"}`, rewritten by each
//!   heartbeat.
//! - `cluster/blob-nodes`: the list of registered ids. The metadata group has no listing of
//!   config entries by prefix and no conditional config write, so this list is a
//!   read-modify-write: two nodes registering at the same moment may drop each other's id, and
//!   each heartbeat re-adds its own id when it is missing, so the list converges within one
//!   interval. Ids are never removed (decommissioning a node is not implemented yet).

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coffer_blob::grpc::{GrpcBlobConfig, GrpcBlobStore};
use coffer_blob::local::LocalBlobStore;
use coffer_blob::repair::{Cluster, ClusterFuture, PeerNode, Repair, RepairConfig, RepairStats};
use coffer_blob::BlobId;
use coffer_meta::{Command, GrpcMetaClient, GrpcMetaConfig, MetaClient, MetaError};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

use super::common::{join_server, shutdown_signal, stopped, write_file_atomic};
use super::health::{self, AdminServer, MetricsPage, Probe};
use super::CmdError;
use crate::cli::BlobArgs;

/// How long open streams may finish after SIGINT/SIGTERM; a write cut off then keeps nothing.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How often a registered node rewrites its entry in meta.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// The config entry listing the registered blob node ids.
pub const BLOB_NODES_CONFIG: &str = "cluster/blob-nodes";
/// A registered node counts as alive while its last heartbeat is at most this old (in
/// `coffer admin cluster status`, and for re-replication).
pub const ALIVE_WITHIN_MS: u64 = 3 * HEARTBEAT_INTERVAL.as_millis() as u64 + 1_000;
/// Below this grace (seconds), the orphan sweep's start logs a warning.
const MIN_SAFE_ORPHAN_GRACE_SECS: u64 = 600;
/// Deadline of one call to a peer during repair work (another peer is tried next).
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A blob node's entry in meta.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlobNodeRecord {
    /// Stable id (placement hashes it).
    pub id: String,
    /// gRPC endpoint gateways use, `http://HOST:PORT`.
    pub addr: String,
    /// When the node last wrote its entry, Unix milliseconds.
    pub last_heartbeat_ms: u64,
}

/// The config entry of node `id`.
pub fn blob_node_config(id: &str) -> String {
    format!("{BLOB_NODES_CONFIG}/{id}")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn corrupt(what: &str, e: serde_json::Error) -> MetaError {
    MetaError::Invalid(format!("{what} in meta is not valid JSON: {e}"))
}

/// The registered node ids.
async fn registered_ids(meta: &dyn MetaClient) -> Result<Vec<String>, MetaError> {
    match meta.get_config(BLOB_NODES_CONFIG).await? {
        Some(raw) => serde_json::from_slice(&raw).map_err(|e| corrupt(BLOB_NODES_CONFIG, e)),
        None => Ok(Vec::new()),
    }
}

/// Every registered blob node, in id order.
pub async fn registered_nodes(meta: &dyn MetaClient) -> Result<Vec<BlobNodeRecord>, MetaError> {
    let mut ids = registered_ids(meta).await?;
    ids.sort();
    ids.dedup();
    let mut nodes = Vec::with_capacity(ids.len());
    for id in ids {
        let name = blob_node_config(&id);
        if let Some(raw) = meta.get_config(&name).await? {
            nodes.push(serde_json::from_slice(&raw).map_err(|e| corrupt(&name, e))?);
        }
    }
    Ok(nodes)
}

/// Writes the node's entry, and adds its id to the list when missing (see the module doc).
async fn heartbeat(meta: &dyn MetaClient, id: &str, addr: &str) -> Result<(), MetaError> {
    let record = BlobNodeRecord {
        id: id.to_owned(),
        addr: addr.to_owned(),
        last_heartbeat_ms: now_ms(),
    };
    let mut commands = vec![Command::PutConfig {
        name: blob_node_config(id),
        value: serde_json::to_vec(&record).expect("serializable"),
    }];
    let mut ids = registered_ids(meta).await?;
    if !ids.iter().any(|i| i == id) {
        ids.push(id.to_owned());
        ids.sort();
        commands.push(Command::PutConfig {
            name: BLOB_NODES_CONFIG.to_owned(),
            value: serde_json::to_vec(&ids).expect("serializable"),
        });
        tracing::info!(id, addr, "registering the blob node in meta");
    }
    for res in meta.apply_batch(commands).await? {
        res?;
    }
    Ok(())
}

/// Heartbeats until the process ends; logs failures (the node serves meanwhile).
async fn heartbeat_loop(meta: Arc<dyn MetaClient>, id: String, addr: String) {
    let mut failing = false;
    loop {
        match heartbeat(meta.as_ref(), &id, &addr).await {
            Ok(()) if failing => {
                tracing::info!(id, "blob node heartbeat to meta works again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(id, error = %e, "blob node heartbeat to meta failed; retrying");
                }
                failing = true;
            }
        }
        tokio::time::sleep(HEARTBEAT_INTERVAL).await;
    }
}

/// The cluster as the repair work sees it: the registered nodes, and references from meta.
struct MetaCluster {
    meta: Arc<dyn MetaClient>,
    /// Clients of the registered nodes by id, kept while a node's address stays the same.
    clients: Mutex<HashMap<String, (String, Arc<GrpcBlobStore>)>>,
}

impl Cluster for MetaCluster {
    fn nodes(&self) -> ClusterFuture<'_, Vec<PeerNode>> {
        Box::pin(async move {
            let records = registered_nodes(self.meta.as_ref())
                .await
                .map_err(|e| format!("reading the blob nodes in meta: {e}"))?;
            let now = now_ms();
            let mut clients = self.clients.lock().expect("poisoned");
            let mut nodes = Vec::with_capacity(records.len());
            for r in records {
                let store = match clients.get(&r.id) {
                    Some((addr, c)) if *addr == r.addr => c.clone(),
                    _ => {
                        let cfg = GrpcBlobConfig {
                            endpoint: r.addr.clone(),
                            call_timeout: PEER_CALL_TIMEOUT,
                            ..Default::default()
                        };
                        match GrpcBlobStore::connect_lazy(cfg) {
                            Ok(c) => {
                                let c = Arc::new(c);
                                clients.insert(r.id.clone(), (r.addr.clone(), c.clone()));
                                c
                            }
                            Err(e) => {
                                tracing::warn!(id = %r.id, addr = %r.addr, error = %e, "skipping a registered blob node");
                                continue;
                            }
                        }
                    }
                };
                nodes.push(PeerNode {
                    alive: now.saturating_sub(r.last_heartbeat_ms) <= ALIVE_WITHIN_MS,
                    id: r.id,
                    store,
                });
            }
            Ok(nodes)
        })
    }

    fn referenced<'a>(&'a self, ids: &'a [BlobId]) -> ClusterFuture<'a, Vec<bool>> {
        Box::pin(async move {
            self.meta
                .blob_references(ids)
                .await
                .map_err(|e| format!("reading blob references in meta: {e}"))
        })
    }
}

/// A comma-separated option's values, trimmed, empty ones dropped.
pub fn address_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .map(|a| a.trim().to_owned())
        .filter(|a| !a.is_empty())
        .collect()
}

/// Checks a node id: what a config name and a log line can carry.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// What the ready file says.
#[derive(Serialize)]
struct Ready {
    /// The bound gRPC address (`coffer gateway --blob http://<listen>`).
    listen: String,
    /// The admin listener (`--admin-listen`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    admin: Option<String>,
    pid: u32,
}

/// What `coffer blob`'s admin listener reports.
///
/// Ready: a small file can be written, synced and removed in the data directory's temp
/// directory (emptied when the store opens, so a probe a crash leaves behind goes then), and
/// the node's own gRPC service answers a Stat over loopback. The metrics are that Stat's
/// counters.
struct BlobHealth {
    data: PathBuf,
    /// A client of this node's own gRPC listener.
    own: GrpcBlobStore,
    probes: AtomicU64,
    /// The counters of the scrub and re-replication.
    repair: Arc<RepairStats>,
}

/// The `result` label of the scrub's block counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScrubLabels {
    result: &'static str,
}

impl BlobHealth {
    /// Writes, syncs and removes a probe file in `<data>/tmp`.
    async fn write_probe(&self) -> Result<(), String> {
        let n = self.probes.fetch_add(1, Ordering::Relaxed);
        let path = self
            .data
            .join("tmp")
            .join(format!("health-probe-{}-{n}", std::process::id()));
        let written = tokio::task::spawn_blocking(move || {
            let res = std::fs::File::create(&path).and_then(|mut f| {
                f.write_all(b"coffer health probe\n")?;
                f.sync_all()
            });
            let removed = std::fs::remove_file(&path);
            res.and(removed)
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("the data directory is not writable: {e}")),
            Err(e) => Err(format!("the data directory check failed: {e}")),
        }
    }
}

impl Probe for BlobHealth {
    async fn ready(&self) -> Result<(), String> {
        self.write_probe().await?;
        self.own
            .stat()
            .await
            .map(drop)
            .map_err(|e| format!("the blob gRPC service does not answer: {e}"))
    }

    async fn metrics(&self) -> String {
        let mut page = MetricsPage::new("coffer_blob");
        let stat = self.own.stat().await;
        page.gauge(
            "serving",
            "1 if the node's gRPC service answers a Stat",
            i64::from(stat.is_ok()),
        );
        if let Ok(s) = stat {
            page.gauge_u64(
                "uptime_seconds",
                "Seconds since the node started serving",
                s.uptime_seconds,
            );
            page.gauge_u64(
                "writes_in_progress",
                "Write streams open now",
                s.writes_in_progress,
            );
            page.counter(
                "writes_committed",
                "Blobs committed since the node started",
                s.writes_committed,
            );
            page.counter("deletes", "Blobs deleted since the node started", s.deletes);
        }
        let r = &self.repair;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let chunks = Family::<ScrubLabels, Counter>::default();
        for (result, c) in [
            ("ok", &r.scrub_chunks_ok),
            ("bad", &r.scrub_chunks_bad),
            ("unverified", &r.scrub_chunks_unverified),
        ] {
            chunks.get_or_create(&ScrubLabels { result }).inc_by(get(c));
        }
        page.metric(
            "scrub_chunks",
            "Blocks the scrub checked against their checksums (unverified: a blob without \
             checksums no replica confirmed)",
            chunks,
        );
        for (name, help, c) in [
            ("scrub_blobs", "Blobs scrubbed", &r.scrub_blobs),
            (
                "scrub_repaired",
                "Blobs repaired from a replica (damaged blocks or a lost file)",
                &r.scrub_repaired,
            ),
            (
                "scrub_repair_failed",
                "Repairs that found no good copy",
                &r.scrub_repair_failed,
            ),
            ("scrub_passes", "Scrub passes completed", &r.scrub_passes),
            (
                "rereplicated",
                "Blob copies made to placement nodes that lacked them",
                &r.rereplicated,
            ),
            (
                "rereplicate_failed",
                "Blob copies that failed",
                &r.rereplicate_failed,
            ),
            (
                "rereplicate_passes",
                "Re-replication passes completed",
                &r.rereplicate_passes,
            ),
            (
                "orphans_deleted",
                "Blobs no version or upload part referenced, deleted after the grace period",
                &r.orphans_deleted,
            ),
            ("orphan_passes", "Orphan sweeps completed", &r.orphan_passes),
        ] {
            page.counter(name, help, get(c));
        }
        page.render()
    }
}

/// The address to reach a listener bound to `addr` from this host (loopback for a wildcard).
fn own_address(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// Runs `coffer blob` until SIGINT/SIGTERM.
pub async fn run(args: BlobArgs) -> Result<(), CmdError> {
    let meta_addrs = address_list(&args.meta);
    let registry = if meta_addrs.is_empty() {
        None
    } else {
        let id = args
            .id
            .clone()
            .ok_or("coffer blob --meta needs --id (the node's stable id in the cluster)")?;
        if !valid_id(&id) {
            return Err(format!(
                "--id '{id}': 1 to 64 characters among letters, digits, '-', '_' and '.'"
            )
            .into());
        }
        let meta: Arc<dyn MetaClient> = Arc::new(
            GrpcMetaClient::new(meta_addrs.clone(), GrpcMetaConfig::default())
                .map_err(|e| format!("--meta: {e}"))?,
        );
        // Checked before the data directory is touched.
        match &args.advertise {
            Some(a) => {
                GrpcBlobStore::connect_lazy(GrpcBlobConfig {
                    endpoint: a.clone(),
                    ..Default::default()
                })
                .map_err(|e| format!("--advertise: {e}"))?;
            }
            None if args.listen.ip().is_unspecified() => {
                return Err(format!(
                    "listening on {}: give --advertise http://HOST:PORT, the address gateways \
                     reach this node at",
                    args.listen
                )
                .into())
            }
            None => {}
        }
        Some((id, meta))
    };
    if args.replicas == 0 {
        return Err("--replicas must be at least 1".into());
    }
    if args.orphan_interval_secs > 0 && args.orphan_grace_secs < MIN_SAFE_ORPHAN_GRACE_SECS {
        tracing::warn!(
            grace_secs = args.orphan_grace_secs,
            "--orphan-grace-secs is short: a blob whose PUT has not committed its metadata \
             within the grace (a slow leader election, say) is deleted as an orphan"
        );
    }
    std::fs::create_dir_all(&args.data_dir)?;
    let data = args.data_dir.canonicalize()?;
    // Removes the temp files of writes a crash interrupted.
    let store = LocalBlobStore::open(&data)?;
    let listener = TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let admin_listener = health::bind(args.admin_listen).await?;

    let repair = Arc::new(Repair::new(
        store.clone(),
        registry.as_ref().map(|(_, meta)| {
            Arc::new(MetaCluster {
                meta: meta.clone(),
                clients: Mutex::new(HashMap::new()),
            }) as Arc<dyn Cluster>
        }),
        RepairConfig {
            node_id: registry
                .as_ref()
                .map(|(id, _)| id.clone())
                .unwrap_or_default(),
            replicas: args.replicas,
            scrub_interval: Duration::from_secs(args.scrub_interval_secs),
            scrub_bytes_per_sec: args.scrub_bytes_per_sec,
            rereplicate_interval: Duration::from_secs(args.rereplicate_interval_secs),
            orphan_interval: Duration::from_secs(args.orphan_interval_secs),
            orphan_grace: Duration::from_secs(args.orphan_grace_secs),
        },
    ));
    let repair_stats = repair.stats();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(coffer_blob::grpc::serve(store, listener, stopped(stop_rx)));
    let own = GrpcBlobStore::connect_lazy(GrpcBlobConfig {
        endpoint: format!("http://{}", own_address(addr)),
        call_timeout: Duration::from_secs(2),
        retries: 0,
        ..Default::default()
    })?;
    let admin = AdminServer::spawn(
        admin_listener,
        BlobHealth {
            data: data.clone(),
            own,
            probes: AtomicU64::new(0),
            repair: repair_stats,
        },
    )?;

    println!("Coffer blob node is running.");
    println!("  gRPC endpoint:     http://{addr}");
    println!("  Data directory:    {}", data.display());
    if let Some(a) = &admin {
        println!("  Admin endpoint:    http://{}", a.addr);
    }
    if let Some((id, meta)) = registry {
        let advertise = match &args.advertise {
            Some(a) => a.clone(),
            None if !addr.ip().is_unspecified() => format!("http://{addr}"),
            None => {
                return Err(format!(
                    "listening on {addr}: give --advertise http://HOST:PORT, the address \
                     gateways reach this node at"
                )
                .into())
            }
        };
        println!(
            "  Registered as:     {id} at {advertise} (meta {})",
            meta_addrs.join(",")
        );
        tokio::spawn(heartbeat_loop(meta, id, advertise));
    }
    // The repair loops stop with the process; work cut short keeps only temp files, which
    // the next start removes.
    let _repair_tasks = repair.spawn();
    if let Some(path) = &args.ready_file {
        let r = Ready {
            listen: addr.to_string(),
            admin: AdminServer::addr_of(&admin),
            pid: std::process::id(),
        };
        write_file_atomic(path, serde_json::to_string_pretty(&r)?.as_bytes(), 0o644)?;
    }

    shutdown_signal().await;
    if let Some(a) = admin {
        a.stop(SHUTDOWN_GRACE).await?;
    }
    let _ = stop_tx.send(true);
    join_server("blob gRPC server", server, SHUTDOWN_GRACE).await
}
