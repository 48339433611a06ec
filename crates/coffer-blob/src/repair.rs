//! A blob node's background work (DESIGN.md §5): the scrub, re-replication and the orphan
//! sweep, each a loop at its own interval over the blobs of a [`LocalBlobStore`].
//!
//! # Scrub
//! Walks the blobs in id order, at most [`RepairConfig::scrub_bytes_per_sec`], and checks each
//! block against the sums written with the blob ([`crate::sums`], which also says why a CRC
//! and not the GCM tag). A bad block, or one missing from a truncated file, is fetched from a
//! peer, checked against the same sum, and the blob is rewritten whole (temp file, fsync,
//! rename), so readers see the old or the repaired file, never a mix. A sidecar whose blob is
//! gone (the file was lost) brings the whole blob back from a peer. A blob without sums
//! (written before they existed, or whose sidecar is damaged) is compared with a peer's copy:
//! when they agree the sums are written and the blob counts as verified; otherwise its blocks
//! count as `unverified` (with no checksum, nothing says which copy is right).
//!
//! The position is persisted in `<data>/scrub.cursor` (the last blob done, and when the last
//! pass ended), so a restarted node continues its pass, and does not start a new one before
//! [`RepairConfig::scrub_interval`] has passed since the last ended.
//!
//! # Re-replication
//! For each blob it holds, a node ranks the alive nodes (a fresh heartbeat; this node always
//! counts) with the placement's rendezvous ranking ([`crate::replicated::rank`]). The first
//! holder in that order is in charge: a node asks the nodes ranked above it (a Length call),
//! and if none of them holds the blob it copies it, through the ordinary write path, to each
//! of the top R that lacks it. The copy is read block by block and checked against the sums
//! first, so a bad copy is never spread (the scrub repairs it first). Only blobs meta says are
//! referenced are copied: an orphan is left to the sweep.
//!
//! # Orphan sweep
//! A blob last written more than [`RepairConfig::orphan_grace`] ago that no object version or
//! upload part references ([`Cluster::referenced`], from meta) is deleted. The grace covers the
//! gap between a gateway writing a blob and committing the metadata that names it.

use std::collections::HashMap;
use std::fs;
use std::future::Future;
use std::io::{self, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::local::{LocalBlobStore, Sidecar};
use crate::replicated::rank;
use crate::sums::{crc32c, BlockSums, Summer, SUM_BLOCK};
use crate::{blob_name, BlobError, BlobId, BlobStore};

/// The file holding the scrub's position, in the data directory.
pub const CURSOR_FILE: &str = "scrub.cursor";

/// Blobs scrubbed between two saves of the cursor.
const SCRUB_BATCH: usize = 64;

/// Ids asked about in one [`Cluster::referenced`] call.
const REFERENCE_BATCH: usize = 256;

/// A sidecar without its blob is left alone this long (a commit renames the sidecar into
/// place just before the blob).
const STRAY_SUMS_AGE: Duration = Duration::from_secs(60);

/// Another blob node, as the repair work sees it.
#[derive(Clone)]
pub struct PeerNode {
    /// Its id (placement hashes it).
    pub id: String,
    /// How to reach it.
    pub store: Arc<dyn BlobStore>,
    /// Whether its heartbeat is fresh.
    pub alive: bool,
}

/// The answer of a [`Cluster`] call.
pub type ClusterFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// What the repair work needs from the cluster (the metadata group, in `coffer blob`).
pub trait Cluster: Send + Sync + 'static {
    /// The registered blob nodes; this node's own entry, if listed, is ignored.
    fn nodes(&self) -> ClusterFuture<'_, Vec<PeerNode>>;
    /// For each id, whether any object version or upload part references the blob.
    fn referenced<'a>(&'a self, ids: &'a [BlobId]) -> ClusterFuture<'a, Vec<bool>>;
}

/// Settings of the repair work. An interval of zero turns that work off.
#[derive(Debug, Clone)]
pub struct RepairConfig {
    /// This node's id in the cluster (empty: not in a cluster, nothing but the scrub runs,
    /// and it cannot repair).
    pub node_id: String,
    /// Copies of each blob (R).
    pub replicas: usize,
    /// Time from the end of one scrub pass to the start of the next.
    pub scrub_interval: Duration,
    /// Bytes per second the scrub reads at most (0: no bound).
    pub scrub_bytes_per_sec: u64,
    /// Time between re-replication passes.
    pub rereplicate_interval: Duration,
    /// Time between orphan sweeps.
    pub orphan_interval: Duration,
    /// Age below which an unreferenced blob is kept.
    pub orphan_grace: Duration,
}

impl Default for RepairConfig {
    fn default() -> Self {
        RepairConfig {
            node_id: String::new(),
            replicas: 3,
            scrub_interval: Duration::from_secs(24 * 3600),
            scrub_bytes_per_sec: 32 << 20,
            rereplicate_interval: Duration::from_secs(600),
            orphan_interval: Duration::from_secs(900),
            orphan_grace: Duration::from_secs(3600),
        }
    }
}

/// Counters of the repair work since the process started.
#[derive(Debug, Default)]
pub struct RepairStats {
    /// Blocks that matched their sum.
    pub scrub_chunks_ok: AtomicU64,
    /// Blocks that did not, or were missing.
    pub scrub_chunks_bad: AtomicU64,
    /// Blocks of blobs without sums that no peer's copy confirmed.
    pub scrub_chunks_unverified: AtomicU64,
    /// Blobs scrubbed.
    pub scrub_blobs: AtomicU64,
    /// Blobs repaired (bad blocks, or a lost file, fetched from a peer).
    pub scrub_repaired: AtomicU64,
    /// Repairs that found no good copy.
    pub scrub_repair_failed: AtomicU64,
    /// Scrub passes completed.
    pub scrub_passes: AtomicU64,
    /// Copies made to nodes of a blob's placement that lacked it.
    pub rereplicated: AtomicU64,
    /// Copies that failed.
    pub rereplicate_failed: AtomicU64,
    /// Re-replication passes completed.
    pub rereplicate_passes: AtomicU64,
    /// Unreferenced blobs deleted.
    pub orphans_deleted: AtomicU64,
    /// Orphan sweeps completed.
    pub orphan_passes: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Where the scrub stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Cursor {
    /// The last blob of the current pass done; `None` between passes.
    after: Option<BlobId>,
    /// When the last pass ended, Unix milliseconds.
    last_pass_end_ms: u64,
}

impl Cursor {
    fn encode(&self) -> String {
        let after = self.after.as_ref().map_or("-".to_owned(), blob_name);
        format!(
            "coffer scrub cursor 1\nafter {after}\nlast_pass_end_ms {}\n",
            self.last_pass_end_ms
        )
    }

    fn decode(text: &str) -> Option<Cursor> {
        let mut lines = text.lines();
        if lines.next()? != "coffer scrub cursor 1" {
            return None;
        }
        let after = match lines.next()?.strip_prefix("after ")? {
            "-" => None,
            h => {
                let mut id = [0u8; 16];
                hex::decode_to_slice(h, &mut id).ok()?;
                Some(id)
            }
        };
        let last_pass_end_ms = lines
            .next()?
            .strip_prefix("last_pass_end_ms ")?
            .parse()
            .ok()?;
        Some(Cursor {
            after,
            last_pass_end_ms,
        })
    }
}

/// Bounds the bytes per second of a pass.
struct Pacer {
    rate: u64,
    started: Instant,
    bytes: u64,
}

impl Pacer {
    fn new(rate: u64) -> Self {
        Pacer {
            rate,
            started: Instant::now(),
            bytes: 0,
        }
    }

    async fn consumed(&mut self, n: u64) {
        if self.rate == 0 {
            return;
        }
        self.bytes += n;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs `pass` every `interval` (the first after one interval), logging failures.
fn every<F, Fut>(interval: Duration, what: &'static str, pass: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            if let Err(e) = pass().await {
                tracing::warn!(error = %e, "{what} failed");
            }
        }
    })
}

/// Whether a node holds a blob: `None` when it could not say.
async fn holds(store: &dyn BlobStore, id: &BlobId) -> Option<bool> {
    match store.len(id).await {
        Ok(_) => Some(true),
        Err(BlobError::NotFound(_)) => Some(false),
        Err(_) => None,
    }
}

/// The repair work of one blob node; see the module doc.
pub struct Repair {
    store: LocalBlobStore,
    cluster: Option<Arc<dyn Cluster>>,
    cfg: RepairConfig,
    stats: Arc<RepairStats>,
    cursor: tokio::sync::Mutex<Cursor>,
    cursor_path: PathBuf,
}

impl Repair {
    /// The repair work of `store`, reading its persisted scrub cursor. Without a cluster the
    /// scrub only detects.
    pub fn new(
        store: LocalBlobStore,
        cluster: Option<Arc<dyn Cluster>>,
        cfg: RepairConfig,
    ) -> Self {
        let cursor_path = store.root().join(CURSOR_FILE);
        let cursor = match fs::read_to_string(&cursor_path) {
            Ok(text) => Cursor::decode(&text).unwrap_or_else(|| {
                tracing::warn!(path = %cursor_path.display(), "unreadable scrub cursor; the scrub starts over");
                Cursor::default()
            }),
            Err(_) => Cursor::default(),
        };
        Repair {
            store,
            cluster,
            cfg,
            stats: Arc::new(RepairStats::default()),
            cursor: tokio::sync::Mutex::new(cursor),
            cursor_path,
        }
    }

    /// The counters.
    pub fn stats(&self) -> Arc<RepairStats> {
        self.stats.clone()
    }

    /// Starts the loops whose interval is not zero.
    pub fn spawn(self: Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if !self.cfg.scrub_interval.is_zero() {
            tasks.push(tokio::spawn(self.clone().scrub_loop()));
        }
        if self.cluster.is_some() && !self.cfg.node_id.is_empty() {
            if !self.cfg.rereplicate_interval.is_zero() {
                let me = self.clone();
                tasks.push(every(
                    self.cfg.rereplicate_interval,
                    "re-replication pass",
                    move || {
                        let me = me.clone();
                        async move { me.rereplicate_pass().await }
                    },
                ));
            }
            if !self.cfg.orphan_interval.is_zero() {
                let me = self.clone();
                tasks.push(every(self.cfg.orphan_interval, "orphan sweep", move || {
                    let me = me.clone();
                    async move { me.orphan_pass().await }
                }));
            }
        }
        tasks
    }

    async fn scrub_loop(self: Arc<Self>) {
        let interval_ms = self.cfg.scrub_interval.as_millis() as u64;
        loop {
            let cursor = self.cursor.lock().await.clone();
            if cursor.after.is_none() {
                let now = now_ms();
                let next = cursor.last_pass_end_ms.saturating_add(interval_ms);
                if next > now {
                    // Bounded by the interval, should the clock have gone back.
                    let wait = (next - now).min(interval_ms);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            }
            let mut pacer = Pacer::new(self.cfg.scrub_bytes_per_sec);
            let ids = match self.store.list().await {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the blobs to scrub; retrying later");
                    tokio::time::sleep(self.cfg.scrub_interval.min(Duration::from_secs(60))).await;
                    continue;
                }
            };
            loop {
                match self.scrub_batch(&ids, SCRUB_BATCH, &mut pacer).await {
                    Ok(true) => break,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "scrub failed; retrying later");
                        tokio::time::sleep(self.cfg.scrub_interval.min(Duration::from_secs(60)))
                            .await;
                        break;
                    }
                }
            }
        }
    }

    /// Scrubs up to `limit` of `ids` (the blobs listed when the pass started) after the
    /// cursor, and saves it; `true` when the pass ended (the cursor then starts the next pass
    /// at the beginning).
    async fn scrub_batch(
        &self,
        ids: &[BlobId],
        limit: usize,
        pacer: &mut Pacer,
    ) -> Result<bool, BlobError> {
        let mut cursor = self.cursor.lock().await;
        let start = match cursor.after {
            Some(after) => ids.partition_point(|id| *id <= after),
            None => 0,
        };
        let batch = &ids[start..ids.len().min(start + limit)];
        for id in batch {
            self.scrub_blob(id, pacer).await;
            cursor.after = Some(*id);
        }
        let done = start + batch.len() >= ids.len();
        if done {
            // Lost files (a sidecar without its blob) are looked at once per pass.
            self.scrub_stray_sums().await;
            cursor.after = None;
            cursor.last_pass_end_ms = now_ms();
            bump(&self.stats.scrub_passes, 1);
        }
        self.save_cursor(&cursor).await?;
        Ok(done)
    }

    /// Runs the rest of the scrub pass from the cursor, without bound on the rate (for tests
    /// and tools).
    pub async fn scrub_pass(&self) -> Result<(), BlobError> {
        let ids = self.store.list().await?;
        let mut pacer = Pacer::new(0);
        while !self.scrub_batch(&ids, SCRUB_BATCH, &mut pacer).await? {}
        Ok(())
    }

    /// Scrubs at most `limit` blobs from the cursor; `true` when that ended the pass.
    pub async fn scrub_some(&self, limit: usize) -> Result<bool, BlobError> {
        let ids = self.store.list().await?;
        self.scrub_batch(&ids, limit, &mut Pacer::new(0)).await
    }

    async fn save_cursor(&self, cursor: &Cursor) -> Result<(), BlobError> {
        let (path, text) = (self.cursor_path.clone(), cursor.encode());
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let tmp = path.with_extension("cursor.tmp");
            let mut f = fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(())
    }

    /// The other nodes, ranked for `id`: alive ones first, each group in placement order.
    async fn sources(&self, id: &BlobId) -> Vec<PeerNode> {
        let Some(cluster) = &self.cluster else {
            return Vec::new();
        };
        let nodes = match cluster.nodes().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the blob nodes; no peer to repair from");
                return Vec::new();
            }
        };
        let peers: HashMap<&str, &PeerNode> = nodes
            .iter()
            .filter(|n| n.id != self.cfg.node_id)
            .map(|n| (n.id.as_str(), n))
            .collect();
        let mut ranked: Vec<PeerNode> = rank(peers.keys().copied(), id)
            .into_iter()
            .map(|n| peers[n].clone())
            .collect();
        ranked.sort_by_key(|n| !n.alive);
        ranked
    }

    /// Scrubs one blob; a failure is logged and counted, never fatal to the pass.
    async fn scrub_blob(&self, id: &BlobId, pacer: &mut Pacer) {
        bump(&self.stats.scrub_blobs, 1);
        let sidecar = match self.store.sums(id).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(blob = %blob_name(id), error = %e, "cannot read the blob's sums");
                return;
            }
        };
        let sums = match sidecar {
            Sidecar::Valid(s) => s,
            Sidecar::Corrupt(why) => {
                tracing::warn!(blob = %blob_name(id), why, "damaged checksum sidecar; checking the blob against a replica");
                self.verify_against_peer(id, pacer).await;
                return;
            }
            Sidecar::Missing => {
                self.verify_against_peer(id, pacer).await;
                return;
            }
        };
        let Ok(have) = self.store.len(id).await else {
            return; // deleted meanwhile
        };
        let mut bad = Vec::new();
        for i in 0..sums.crcs.len() {
            let (offset, len) = sums.range(i);
            let ok = if offset + len <= have {
                match self.store.read(id, offset, len).await {
                    Ok(data) => {
                        pacer.consumed(len).await;
                        crc32c(&data) == sums.crcs[i]
                    }
                    Err(BlobError::NotFound(_)) => return,
                    Err(_) => false,
                }
            } else {
                false
            };
            if ok {
                bump(&self.stats.scrub_chunks_ok, 1);
            } else {
                bump(&self.stats.scrub_chunks_bad, 1);
                bad.push(i);
            }
        }
        if have != sums.length && bad.is_empty() {
            // Bytes past the recorded length: the blob is rewritten without them.
            bad.push(usize::MAX);
        }
        if !bad.is_empty() {
            tracing::warn!(blob = %blob_name(id), bad_blocks = bad.len(), length = have, expected = sums.length, "scrub found damaged blocks; repairing from a replica");
            self.repair(id, &sums, &bad, true).await;
        }
    }

    /// Rewrites blob `id` from its good local blocks and the `bad` ones fetched from peers,
    /// each checked against `sums`. `local`: whether the local file may be read at all.
    async fn repair(&self, id: &BlobId, sums: &BlockSums, bad: &[usize], local: bool) -> bool {
        match self.try_repair(id, sums, bad, local).await {
            Ok(true) => {
                bump(&self.stats.scrub_repaired, 1);
                tracing::info!(blob = %blob_name(id), "blob repaired from a replica");
                true
            }
            Ok(false) => false,
            Err(e) => {
                bump(&self.stats.scrub_repair_failed, 1);
                tracing::warn!(blob = %blob_name(id), error = %e, "blob could not be repaired");
                false
            }
        }
    }

    /// `Ok(false)`: nothing to do any more (the blob was deleted meanwhile).
    async fn try_repair(
        &self,
        id: &BlobId,
        sums: &BlockSums,
        bad: &[usize],
        local: bool,
    ) -> Result<bool, String> {
        let sources = self.sources(id).await;
        if sources.is_empty() {
            return Err("no peer to fetch it from".into());
        }
        let mut writer = self.store.create(id).await.map_err(|e| e.to_string())?;
        let mut preferred = 0usize;
        for i in 0..sums.crcs.len() {
            let (offset, len) = sums.range(i);
            let data = if local && bad.binary_search(&i).is_err() {
                self.store.read(id, offset, len).await.ok()
            } else {
                None
            };
            let data = match data.filter(|d| crc32c(d) == sums.crcs[i]) {
                Some(d) => d,
                None => {
                    self.fetch_block(id, offset, len, sums.crcs[i], &sources, &mut preferred)
                        .await?
                }
            };
            if let Err(e) = writer.append(data).await {
                writer.abort().await;
                return Err(e.to_string());
            }
        }
        if local && matches!(self.store.len(id).await, Err(BlobError::NotFound(_))) {
            writer.abort().await;
            return Ok(false);
        }
        writer.commit().await.map_err(|e| e.to_string())?;
        Ok(true)
    }

    /// One block from the first peer whose copy matches `crc`.
    async fn fetch_block(
        &self,
        id: &BlobId,
        offset: u64,
        len: u64,
        crc: u32,
        sources: &[PeerNode],
        preferred: &mut usize,
    ) -> Result<Bytes, String> {
        let mut errors = Vec::new();
        for k in 0..sources.len() {
            let i = (*preferred + k) % sources.len();
            let peer = &sources[i];
            match peer.store.read(id, offset, len).await {
                Ok(d) if crc32c(&d) == crc => {
                    *preferred = i;
                    return Ok(d);
                }
                Ok(_) => errors.push(format!("{}: its copy is damaged too", peer.id)),
                Err(e) => errors.push(format!("{}: {e}", peer.id)),
            }
        }
        Err(format!(
            "no good copy of bytes {offset}..{} ({})",
            offset + len,
            errors.join("; ")
        ))
    }

    /// A blob without (valid) sums: compared with a peer's copy; sums written when equal.
    async fn verify_against_peer(&self, id: &BlobId, pacer: &mut Pacer) {
        let Ok(have) = self.store.len(id).await else {
            return;
        };
        let blocks = have.div_ceil(SUM_BLOCK);
        for peer in self.sources(id).await {
            if !matches!(peer.store.len(id).await, Ok(l) if l == have) {
                continue;
            }
            let mut summer = Summer::new(SUM_BLOCK);
            let mut same = true;
            let mut at = 0;
            while at < have {
                let n = (have - at).min(SUM_BLOCK);
                let (mine, theirs) = match (
                    self.store.read(id, at, n).await,
                    peer.store.read(id, at, n).await,
                ) {
                    (Ok(m), Ok(t)) => (m, t),
                    (Err(BlobError::NotFound(_)), _) => return,
                    _ => {
                        same = false;
                        break;
                    }
                };
                pacer.consumed(n).await;
                if mine != theirs {
                    tracing::warn!(blob = %blob_name(id), peer = %peer.id, offset = at, "a blob without checksums differs from a replica; nothing says which copy is right");
                    same = false;
                    break;
                }
                summer.update(&mine);
                at += n;
            }
            if same {
                match self.store.put_sums(id, &summer.finish()).await {
                    Ok(()) => {
                        bump(&self.stats.scrub_chunks_ok, blocks);
                        tracing::info!(blob = %blob_name(id), peer = %peer.id, "blob without checksums matches a replica; checksums written");
                    }
                    Err(e) => {
                        tracing::warn!(blob = %blob_name(id), error = %e, "cannot write the blob's checksums");
                        bump(&self.stats.scrub_chunks_unverified, blocks);
                    }
                }
                return;
            }
        }
        bump(&self.stats.scrub_chunks_unverified, blocks);
    }

    /// Sidecars whose blob is gone: the blob is fetched back from a peer that has it; when
    /// none has it, the sidecar is removed.
    async fn scrub_stray_sums(&self) {
        let strays = match self.store.stray_sums().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list checksum sidecars");
                return;
            }
        };
        for id in strays {
            let path = self.store.sums_path_of(&id);
            let old_enough = fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= STRAY_SUMS_AGE);
            if !old_enough {
                continue;
            }
            let Ok(Sidecar::Valid(sums)) = self.store.sums(&id).await else {
                let _ = self.store.remove_stray_sums(&id).await;
                continue;
            };
            let mut any_holder = false;
            for peer in self.sources(&id).await {
                if holds(peer.store.as_ref(), &id).await != Some(false) {
                    any_holder = true;
                    break;
                }
            }
            if !any_holder {
                let _ = self.store.remove_stray_sums(&id).await;
                continue;
            }
            tracing::warn!(blob = %blob_name(&id), "blob file missing next to its checksums; fetching it from a replica");
            bump(&self.stats.scrub_chunks_bad, sums.crcs.len() as u64);
            let all: Vec<usize> = (0..sums.crcs.len()).collect();
            self.repair(&id, &sums, &all, false).await;
        }
    }

    /// One re-replication pass over the blobs held here; see the module doc.
    pub async fn rereplicate_pass(&self) -> Result<(), String> {
        let cluster = self.cluster.as_ref().ok_or("not in a cluster")?;
        let me = self.cfg.node_id.as_str();
        let nodes = cluster.nodes().await?;
        let alive: HashMap<&str, &PeerNode> = nodes
            .iter()
            .filter(|n| n.alive && n.id != me)
            .map(|n| (n.id.as_str(), n))
            .collect();
        let ids = self.store.list().await.map_err(|e| e.to_string())?;
        // Blobs this node is in charge of, and the nodes to copy each to.
        let mut plans: Vec<(BlobId, Vec<&PeerNode>)> = Vec::new();
        for id in ids {
            let ranked = rank(alive.keys().copied().chain([me]), &id);
            let my_pos = ranked.iter().position(|n| *n == me).expect("ranked");
            let mut known: HashMap<&str, Option<bool>> = HashMap::new();
            let mut someone_above = false;
            for n in &ranked[..my_pos] {
                let h = holds(alive[n].store.as_ref(), &id).await;
                known.insert(n, h);
                if h == Some(true) {
                    someone_above = true;
                    break;
                }
            }
            if someone_above {
                continue;
            }
            let mut targets = Vec::new();
            for n in ranked.iter().take(self.cfg.replicas) {
                if *n == me {
                    continue;
                }
                let peer = alive[n];
                let h = match known.get(n) {
                    Some(h) => *h,
                    None => holds(peer.store.as_ref(), &id).await,
                };
                if h == Some(false) {
                    targets.push(peer);
                }
            }
            if !targets.is_empty() {
                plans.push((id, targets));
            }
        }
        for batch in plans.chunks(REFERENCE_BATCH) {
            // Orphans are not copied: a copy is a new file, younger than the grace period,
            // and nodes would keep handing an orphan back to each other as each sweep deletes
            // its own. When meta cannot say, everything is copied (the sweep, which needs the
            // same answer, deletes nothing meanwhile).
            let ids: Vec<BlobId> = batch.iter().map(|(id, _)| *id).collect();
            let referenced = match cluster.referenced(&ids).await {
                Ok(r) if r.len() == ids.len() => r,
                Ok(_) | Err(_) => vec![true; ids.len()],
            };
            for ((id, targets), referenced) in batch.iter().zip(referenced) {
                if referenced {
                    self.copy_to_all(id, targets).await;
                }
            }
        }
        bump(&self.stats.rereplicate_passes, 1);
        Ok(())
    }

    async fn copy_to_all(&self, id: &BlobId, targets: &[&PeerNode]) {
        for peer in targets {
            match self.copy_to(id, peer).await {
                Ok(()) => {
                    bump(&self.stats.rereplicated, 1);
                    tracing::info!(blob = %blob_name(id), to = %peer.id, "blob re-replicated");
                }
                Err(e) => {
                    bump(&self.stats.rereplicate_failed, 1);
                    tracing::warn!(blob = %blob_name(id), to = %peer.id, error = %e, "re-replication failed");
                }
            }
        }
    }

    /// Copies blob `id` to `peer`, each block checked against the sums when there are some.
    async fn copy_to(&self, id: &BlobId, peer: &PeerNode) -> Result<(), String> {
        let sums = match self.store.sums(id).await.map_err(|e| e.to_string())? {
            Sidecar::Valid(s) => Some(s),
            _ => None,
        };
        let have = self.store.len(id).await.map_err(|e| e.to_string())?;
        if sums.as_ref().is_some_and(|s| s.length != have) {
            return Err("the local copy does not match its checksums; the scrub repairs it".into());
        }
        let mut writer = peer.store.create(id).await.map_err(|e| e.to_string())?;
        let mut at = 0;
        let mut block = 0;
        while at < have {
            let n = (have - at).min(SUM_BLOCK);
            let data = match self.store.read(id, at, n).await {
                Ok(d) => d,
                Err(e) => {
                    writer.abort().await;
                    return Err(e.to_string());
                }
            };
            if sums
                .as_ref()
                .is_some_and(|s| s.block != SUM_BLOCK || s.crcs[block] != crc32c(&data))
            {
                writer.abort().await;
                return Err(
                    "the local copy does not match its checksums; the scrub repairs it".into(),
                );
            }
            if let Err(e) = writer.append(data).await {
                writer.abort().await;
                return Err(e.to_string());
            }
            at += n;
            block += 1;
        }
        let len = writer.commit().await.map_err(|e| e.to_string())?;
        if len != have {
            return Err(format!("the peer committed {len} bytes of {have}"));
        }
        Ok(())
    }

    /// One orphan sweep; see the module doc.
    pub async fn orphan_pass(&self) -> Result<(), String> {
        let cluster = self.cluster.as_ref().ok_or("not in a cluster")?;
        let ids = self.store.list().await.map_err(|e| e.to_string())?;
        let mut old = Vec::new();
        for id in ids {
            match self.store.modified(&id).await {
                Ok(t) if t.elapsed().is_ok_and(|age| age >= self.cfg.orphan_grace) => old.push(id),
                _ => {}
            }
        }
        for batch in old.chunks(REFERENCE_BATCH) {
            let refs = cluster.referenced(batch).await?;
            if refs.len() != batch.len() {
                return Err(format!(
                    "asked about {} blobs, got {} answers",
                    batch.len(),
                    refs.len()
                ));
            }
            for (id, referenced) in batch.iter().zip(refs) {
                if referenced {
                    continue;
                }
                match self.store.delete(id).await {
                    Ok(()) => {
                        bump(&self.stats.orphans_deleted, 1);
                        tracing::info!(blob = %blob_name(id), "orphan blob deleted");
                    }
                    Err(e) => {
                        tracing::warn!(blob = %blob_name(id), error = %e, "cannot delete an orphan blob")
                    }
                }
            }
        }
        bump(&self.stats.orphan_passes, 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        for c in [
            Cursor::default(),
            Cursor {
                after: Some([7u8; 16]),
                last_pass_end_ms: 1234,
            },
        ] {
            assert_eq!(Cursor::decode(&c.encode()), Some(c));
        }
        assert_eq!(Cursor::decode("garbage"), None);
    }
}
