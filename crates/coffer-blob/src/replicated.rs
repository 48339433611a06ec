//! [`ReplicatedBlobStore`]: a [`BlobStore`] keeping each blob on R blob nodes.
//!
//! # Placement
//! Rendezvous (highest-random-weight) hashing: each node's weight for a blob is the first 8
//! bytes of SHA-256(len(node id) ‖ node id ‖ blob id); the blob lives on the R nodes of highest
//! weight. Placement depends only on the node ids (not on the list's order or the process), and
//! adding or removing a node moves only the blobs whose top R it enters or leaves.
//!
//! # Writes
//! [`BlobStore::create`] opens a writer on each of the R placement nodes; every append goes to
//! all of them in parallel (the same `Bytes`, no copy). A replica that fails is dropped as long
//! as at least W remain, otherwise the write fails with [`BlobError::Unavailable`] and every
//! replica is aborted; a replica still busy [`STRAGGLER_GRACE`] after W others took an append
//! is dropped too. [`BlobWriter::commit`] commits the remaining replicas in parallel and
//! succeeds as soon as W of them have committed durably (each replica fsyncs before it
//! acknowledges). The others finish in the background: a replica is visible only after its own
//! commit, and one that fails keeps nothing, so acknowledging after W never exposes a
//! half-written copy, and a stalled node does not stall every PUT. If fewer than W commit, the
//! copies that did are deleted (best effort) and the write fails.
//!
//! Left to the blob nodes' background work ([`crate::repair`]): a blob acknowledged with W < R
//! copies is under-replicated until re-replication copies it; a replica whose background commit
//! lands after the blob was deleted, and a replica a delete could not reach (its node was
//! down), are orphans until the orphan sweep deletes them.
//!
//! # Reads
//! Replicas are tried in placement order (nodes that recently failed last), then the other
//! known nodes (a blob written before the node list changed may sit outside its new top R). A
//! long read is split into segments of [`READ_SEGMENT`]; a segment that fails on one replica is
//! read from the next, so a read resumes where it broke instead of starting over.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};

use crate::{blob_name, BlobError, BlobId, BlobStore, BlobWriter};

/// Reads longer than this are split into segments, each failing over on its own.
pub const READ_SEGMENT: u64 = 4 << 20;

/// Once W replicas took an append, how long the others may still take to; then they are
/// dropped from the write.
pub const STRAGGLER_GRACE: Duration = Duration::from_secs(5);

/// How long a node that answered Unavailable is tried last by reads (it is still tried when
/// the others fail, so a long window costs nothing once it is back).
const SUSPECT_FOR: Duration = Duration::from_secs(30);

/// R and W.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// Copies of each blob (R).
    pub replicas: usize,
    /// Copies durably committed before a write is acknowledged (W).
    pub write_quorum: usize,
}

impl Default for Replication {
    fn default() -> Self {
        Replication {
            replicas: 3,
            write_quorum: 2,
        }
    }
}

impl Replication {
    /// Checks 1 ≤ W ≤ R.
    pub fn validate(&self) -> Result<(), String> {
        if self.write_quorum == 0 {
            return Err("the write quorum must be at least 1".into());
        }
        if self.write_quorum > self.replicas {
            return Err(format!(
                "the write quorum ({}) cannot exceed the number of replicas ({})",
                self.write_quorum, self.replicas
            ));
        }
        Ok(())
    }
}

/// A blob node as the replicated store sees it.
#[derive(Clone)]
pub struct ReplicaNode {
    /// The node's stable id (placement hashes it).
    pub id: String,
    /// How to reach it.
    pub store: Arc<dyn BlobStore>,
}

impl std::fmt::Debug for ReplicaNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaNode").field("id", &self.id).finish()
    }
}

struct Node {
    id: String,
    store: Arc<dyn BlobStore>,
    /// Unix milliseconds until which reads try this node last.
    suspect_until: AtomicU64,
}

/// Keeps each blob on R of a list of blob nodes; see the module doc.
pub struct ReplicatedBlobStore {
    cfg: Replication,
    nodes: RwLock<Arc<Vec<Arc<Node>>>>,
}

impl std::fmt::Debug for ReplicatedBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicatedBlobStore")
            .field("cfg", &self.cfg)
            .field("nodes", &self.node_ids())
            .finish()
    }
}

/// The rendezvous weight of `node` for `blob`.
pub fn weight(node: &str, blob: &BlobId) -> u64 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&(node.len() as u64).to_be_bytes());
    ctx.update(node.as_bytes());
    ctx.update(blob);
    let d = ctx.finish();
    u64::from_be_bytes(d.as_ref()[..8].try_into().expect("8 bytes"))
}

/// Node ids ranked for `blob`, highest weight first (ties by id): its first R are the
/// placement.
pub fn rank<'a>(node_ids: impl IntoIterator<Item = &'a str>, blob: &BlobId) -> Vec<&'a str> {
    let mut ranked: Vec<(u64, &str)> = node_ids.into_iter().map(|n| (weight(n, blob), n)).collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    ranked.into_iter().map(|(_, n)| n).collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn unavailable(what: String) -> BlobError {
    BlobError::Unavailable(what)
}

impl ReplicatedBlobStore {
    /// A store over a fixed list of nodes; checks 1 ≤ W ≤ R ≤ nodes and that ids are unique
    /// and non-empty.
    pub fn new(nodes: Vec<ReplicaNode>, cfg: Replication) -> Result<Self, String> {
        cfg.validate()?;
        if cfg.replicas > nodes.len() {
            return Err(format!(
                "{} replicas need at least {} blob nodes, {} given",
                cfg.replicas,
                cfg.replicas,
                nodes.len()
            ));
        }
        let store = Self::dynamic(cfg)?;
        store.set_nodes(nodes)?;
        Ok(store)
    }

    /// A store whose node list comes later ([`ReplicatedBlobStore::set_nodes`]), e.g. from the
    /// registrations in the metadata group. While fewer than R nodes are known, blobs go to
    /// all of them; while fewer than W are, writes fail with Unavailable.
    pub fn dynamic(cfg: Replication) -> Result<Self, String> {
        cfg.validate()?;
        Ok(ReplicatedBlobStore {
            cfg,
            nodes: RwLock::new(Arc::new(Vec::new())),
        })
    }

    /// Replaces the node list. Nodes whose id was already known keep their health state.
    pub fn set_nodes(&self, nodes: Vec<ReplicaNode>) -> Result<(), String> {
        let mut seen = HashSet::new();
        for n in &nodes {
            if n.id.is_empty() {
                return Err("a blob node id cannot be empty".into());
            }
            if !seen.insert(n.id.as_str()) {
                return Err(format!("blob node id '{}' appears twice", n.id));
            }
        }
        let old = self.snapshot();
        let list = nodes
            .into_iter()
            .map(|n| {
                let suspect = old
                    .iter()
                    .find(|o| o.id == n.id)
                    .map(|o| o.suspect_until.load(Ordering::Relaxed))
                    .unwrap_or(0);
                Arc::new(Node {
                    id: n.id,
                    store: n.store,
                    suspect_until: AtomicU64::new(suspect),
                })
            })
            .collect();
        *self.nodes.write().expect("poisoned") = Arc::new(list);
        Ok(())
    }

    /// The known node ids, in the order given.
    pub fn node_ids(&self) -> Vec<String> {
        self.snapshot().iter().map(|n| n.id.clone()).collect()
    }

    /// R and W.
    pub fn replication(&self) -> Replication {
        self.cfg
    }

    /// The ids of the nodes a blob is placed on (at most R).
    pub fn placement(&self, id: &BlobId) -> Vec<String> {
        let nodes = self.snapshot();
        let ranked = self.ranked(&nodes, id);
        ranked
            .into_iter()
            .take(self.cfg.replicas)
            .map(|n| n.id.clone())
            .collect()
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Node>>> {
        self.nodes.read().expect("poisoned").clone()
    }

    fn ranked(&self, nodes: &[Arc<Node>], id: &BlobId) -> Vec<Arc<Node>> {
        rank(nodes.iter().map(|n| n.id.as_str()), id)
            .into_iter()
            .map(|nid| {
                nodes
                    .iter()
                    .find(|n| n.id == nid)
                    .expect("ranked from these nodes")
                    .clone()
            })
            .collect()
    }

    /// Every node in the order reads try them: the placement first, then the others; within
    /// each, nodes that recently failed go last.
    fn read_order(&self, id: &BlobId) -> Vec<Arc<Node>> {
        let nodes = self.snapshot();
        let mut ranked = self.ranked(&nodes, id);
        let rest = ranked.split_off(self.cfg.replicas.min(ranked.len()));
        let now = now_ms();
        let healthy_first = |mut v: Vec<Arc<Node>>| {
            // Stable: keeps the placement order among the healthy and among the suspect.
            v.sort_by_key(|n| n.suspect_until.load(Ordering::Relaxed) > now);
            v
        };
        let mut order = healthy_first(ranked);
        order.extend(healthy_first(rest));
        order
    }

    fn note_error(node: &Node, e: &BlobError) {
        if matches!(e, BlobError::Unavailable(_) | BlobError::Io(_)) {
            node.suspect_until
                .store(now_ms() + SUSPECT_FOR.as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// Runs `op` on the nodes in read order until one answers; the error when none does is
    /// NotFound only if every node said so (a node that could not be reached may hold it).
    async fn first_answer<T, F, Fut>(
        &self,
        id: &BlobId,
        start: &mut usize,
        order: &[Arc<Node>],
        op: F,
    ) -> Result<T, BlobError>
    where
        F: Fn(Arc<dyn BlobStore>) -> Fut,
        Fut: std::future::Future<Output = Result<T, BlobError>>,
    {
        if order.is_empty() {
            return Err(unavailable("no blob nodes are known".into()));
        }
        let mut not_found = 0usize;
        let mut last = None;
        for k in 0..order.len() {
            let i = (*start + k) % order.len();
            let node = &order[i];
            match op(node.store.clone()).await {
                Ok(v) => {
                    *start = i;
                    return Ok(v);
                }
                // Replicas are byte-identical: a bad range is the caller's.
                Err(e @ BlobError::OutOfRange(_)) => return Err(e),
                Err(BlobError::NotFound(_)) => not_found += 1,
                Err(e) => {
                    tracing::debug!(node = %node.id, blob = %blob_name(id), error = %e, "blob replica failed; trying the next");
                    Self::note_error(node, &e);
                    last = Some(format!("{}: {e}", node.id));
                }
            }
        }
        if not_found == order.len() {
            return Err(BlobError::NotFound(blob_name(id)));
        }
        Err(unavailable(format!(
            "no replica of blob {} could be read ({} not found; last error {})",
            blob_name(id),
            not_found,
            last.unwrap_or_default()
        )))
    }
}

#[async_trait]
impl BlobStore for ReplicatedBlobStore {
    async fn create(&self, id: &BlobId) -> Result<Box<dyn BlobWriter>, BlobError> {
        let nodes = self.snapshot();
        let w = self.cfg.write_quorum;
        if nodes.len() < w {
            let msg = format!(
                "only {} blob node(s) known, the write quorum is {w}",
                nodes.len()
            );
            tracing::warn!("{msg}; refusing the write");
            return Err(unavailable(msg));
        }
        let placement: Vec<Arc<Node>> = self
            .ranked(&nodes, id)
            .into_iter()
            .take(self.cfg.replicas)
            .collect();
        let opened = futures::future::join_all(placement.iter().map(|n| n.store.create(id))).await;
        let mut replicas = Vec::new();
        let mut errors = Vec::new();
        for (node, res) in placement.into_iter().zip(opened) {
            match res {
                Ok(writer) => replicas.push(Replica { node, writer }),
                Err(e) => {
                    Self::note_error(&node, &e);
                    errors.push(format!("{}: {e}", node.id));
                }
            }
        }
        let mut writer = ReplicatedWriter {
            id: *id,
            quorum: w,
            replicas,
            errors,
        };
        writer.check_quorum().await?;
        Ok(Box::new(writer))
    }

    async fn read(&self, id: &BlobId, offset: u64, len: u64) -> Result<Bytes, BlobError> {
        let order = self.read_order(id);
        let mut start = 0;
        if len <= READ_SEGMENT {
            return self
                .first_answer(id, &mut start, &order, |s| async move {
                    s.read(id, offset, len).await
                })
                .await;
        }
        let end = offset
            .checked_add(len)
            .ok_or_else(|| BlobError::OutOfRange(blob_name(id)))?;
        let cap = usize::try_from(len).map_err(|_| BlobError::OutOfRange(blob_name(id)))?;
        let mut buf = BytesMut::with_capacity(cap);
        let mut at = offset;
        while at < end {
            let n = (end - at).min(READ_SEGMENT);
            // Starts at the replica that served the previous segment.
            let seg = self
                .first_answer(id, &mut start, &order, |s| async move {
                    s.read(id, at, n).await
                })
                .await?;
            buf.extend_from_slice(&seg);
            at += n;
        }
        Ok(buf.freeze())
    }

    async fn len(&self, id: &BlobId) -> Result<u64, BlobError> {
        let order = self.read_order(id);
        self.first_answer(id, &mut 0, &order, |s| async move { s.len(id).await })
            .await
    }

    async fn delete(&self, id: &BlobId) -> Result<(), BlobError> {
        let nodes = self.snapshot();
        let placement: Vec<Arc<Node>> = self
            .ranked(&nodes, id)
            .into_iter()
            .take(self.cfg.replicas)
            .collect();
        if placement.is_empty() {
            return Err(unavailable("no blob nodes are known".into()));
        }
        let results = futures::future::join_all(placement.iter().map(|n| n.store.delete(id))).await;
        let mut reached = 0;
        let mut errors = Vec::new();
        for (node, res) in placement.iter().zip(results) {
            match res {
                Ok(()) | Err(BlobError::NotFound(_)) => reached += 1,
                Err(e) => {
                    Self::note_error(node, &e);
                    errors.push(format!("{}: {e}", node.id));
                }
            }
        }
        if !errors.is_empty() {
            // The replicas left behind are orphans for the orphan sweep.
            tracing::warn!(blob = %blob_name(id), errors = ?errors, "blob replicas not deleted");
        }
        if reached == 0 {
            return Err(unavailable(format!(
                "no replica of blob {} could be deleted: {}",
                blob_name(id),
                errors.join("; ")
            )));
        }
        Ok(())
    }
}

struct Replica {
    node: Arc<Node>,
    writer: Box<dyn BlobWriter>,
}

/// One blob streamed to its placement nodes.
struct ReplicatedWriter {
    id: BlobId,
    quorum: usize,
    replicas: Vec<Replica>,
    /// Why dropped replicas were dropped.
    errors: Vec<String>,
}

impl ReplicatedWriter {
    /// Fails (aborting every replica) once fewer than W replicas remain.
    async fn check_quorum(&mut self) -> Result<(), BlobError> {
        if self.replicas.len() >= self.quorum {
            return Ok(());
        }
        for r in self.replicas.drain(..) {
            r.writer.abort().await;
        }
        Err(unavailable(format!(
            "blob {}: fewer than {} replicas could be written ({})",
            blob_name(&self.id),
            self.quorum,
            self.errors.join("; ")
        )))
    }
}

#[async_trait]
impl BlobWriter for ReplicatedWriter {
    async fn append(&mut self, data: Bytes) -> Result<(), BlobError> {
        let quorum = self.quorum;
        let mut results: Vec<Option<Result<(), BlobError>>> =
            (0..self.replicas.len()).map(|_| None).collect();
        {
            let mut pending: FuturesUnordered<_> = self
                .replicas
                .iter_mut()
                .enumerate()
                .map(|(i, r)| {
                    let data = data.clone();
                    async move { (i, r.writer.append(data).await) }
                })
                .collect();
            let mut ok = 0;
            while ok < quorum {
                let Some((i, res)) = pending.next().await else {
                    break;
                };
                ok += usize::from(res.is_ok());
                results[i] = Some(res);
            }
            // W replicas took the data: the others get a grace period, then are dropped
            // (a stalled node must not hold every write for its whole timeout).
            let deadline = tokio::time::Instant::now() + STRAGGLER_GRACE;
            while let Ok(Some((i, res))) = tokio::time::timeout_at(deadline, pending.next()).await {
                results[i] = Some(res);
            }
        }
        let results: Vec<Result<(), BlobError>> = results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(unavailable(format!(
                        "did not take the data within {STRAGGLER_GRACE:?} of the write quorum"
                    )))
                })
            })
            .collect();
        let mut kept = Vec::with_capacity(self.replicas.len());
        for (r, res) in std::mem::take(&mut self.replicas).into_iter().zip(results) {
            match res {
                Ok(()) => kept.push(r),
                Err(e) => {
                    tracing::warn!(node = %r.node.id, blob = %blob_name(&self.id), error = %e, "blob replica dropped from a write");
                    ReplicatedBlobStore::note_error(&r.node, &e);
                    self.errors.push(format!("{}: {e}", r.node.id));
                    r.writer.abort().await;
                }
            }
        }
        self.replicas = kept;
        self.check_quorum().await
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, BlobError> {
        let id = self.id;
        let quorum = self.quorum;
        let mut pending: FuturesUnordered<_> = std::mem::take(&mut self.replicas)
            .into_iter()
            .map(|r| async move {
                let res = r.writer.commit().await;
                (r.node, res)
            })
            .collect();
        let mut committed: Vec<Arc<Node>> = Vec::new();
        let mut length = None;
        while committed.len() < quorum && committed.len() + pending.len() >= quorum {
            let Some((node, res)) = pending.next().await else {
                break;
            };
            match res {
                Ok(n) if length.is_none_or(|l| l == n) => {
                    length = Some(n);
                    committed.push(node);
                }
                Ok(n) => {
                    // Cannot happen with replicas fed the same bytes; never acknowledge it.
                    self.errors.push(format!(
                        "{}: committed {n} bytes, another replica {}",
                        node.id,
                        length.unwrap_or_default()
                    ));
                }
                Err(e) => {
                    ReplicatedBlobStore::note_error(&node, &e);
                    self.errors.push(format!("{}: {e}", node.id));
                }
            }
        }
        if committed.len() >= quorum {
            if !pending.is_empty() {
                // The rest become visible on their own commit, or keep nothing.
                tokio::spawn(async move {
                    while let Some((node, res)) = pending.next().await {
                        if let Err(e) = res {
                            tracing::warn!(node = %node.id, blob = %blob_name(&id), error = %e, "a replica failed after the write quorum committed; the blob is under-replicated");
                        }
                    }
                });
            }
            return Ok(length.expect("committed at least one"));
        }
        // No quorum: whatever did or still does commit must not stay behind.
        while let Some((node, res)) = pending.next().await {
            if res.is_ok() {
                committed.push(node);
            }
        }
        for node in committed {
            if let Err(e) = node.store.delete(&id).await {
                tracing::warn!(node = %node.id, blob = %blob_name(&id), error = %e, "could not delete the replica of a failed write; it is an orphan");
            }
        }
        Err(unavailable(format!(
            "blob {}: fewer than {quorum} replicas committed ({})",
            blob_name(&id),
            self.errors.join("; ")
        )))
    }

    async fn abort(mut self: Box<Self>) {
        futures::future::join_all(self.replicas.drain(..).map(|r| r.writer.abort())).await;
    }
}
