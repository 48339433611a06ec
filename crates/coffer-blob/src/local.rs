//! Blobs as files under a data directory.
//!
//! ```text
//! <dir>/<hex[0..2]>/<hex[2..4]>/<hex id>       committed blobs, fanned out over 65,536 directories
//! <dir>/<hex[0..2]>/<hex[2..4]>/<hex id>.sum   their block checksums (crate::sums)
//! <dir>/tmp/<hex id>.<random>                  blobs being written; emptied on open
//! ```
//!
//! A blob becomes visible only by the rename at commit, after its file is fsynced; the
//! destination directory is fsynced after the rename, and a fan-out directory's parent is
//! fsynced the first time this process commits into it. An acknowledged blob therefore survives
//! a crash, and a crash mid-write leaves only a temp file, which the next [`LocalBlobStore::open`]
//! removes. One store must own a directory: opening a second store on it would delete the first
//! one's in-progress writes.
//!
//! The writer sums the bytes as they go to disk; at commit the sidecar is written and fsynced
//! in `tmp`, renamed into place first, then the blob, and the directory fsynced once. A crash
//! between the renames leaves a sidecar without its blob (nothing was acknowledged here; the
//! scrub fetches the blob from a replica that has it, else removes the sidecar) or, if only the
//! blob's rename reached the disk, a blob without sums, which the scrub treats like a blob
//! written before sums existed. A delete removes the sidecar first, then the blob.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::sums::{BlockSums, Summer, SUM_BLOCK};
use crate::{blob_name, BlobError, BlobId, BlobStore, BlobWriter};

/// Appends are handed to a blocking thread in batches of about this many bytes; one batch is
/// written while the next fills, so the caller and the disk work in parallel.
const BATCH_BYTES: usize = 4 << 20;

/// Small appends are coalesced into writes of this size; larger ones bypass the buffer.
const WRITE_BUFFER: usize = 256 << 10;

const TMP_DIR: &str = "tmp";

/// The suffix of checksum sidecars.
const SUM_SUFFIX: &str = ".sum";

/// A blob's checksum sidecar, as found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sidecar {
    /// No sidecar: the blob was written before sums existed (or a crash lost it).
    Missing,
    /// A sidecar that does not parse or fails its own checksum.
    Corrupt(String),
    /// The sums.
    Valid(BlockSums),
}

/// A [`BlobStore`] keeping each blob in its own file under a data directory.
#[derive(Clone, Debug)]
pub struct LocalBlobStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    tmp: PathBuf,
    /// Fan-out directories (by the id's first two bytes) known to be durable in their parents.
    synced_dirs: Mutex<HashSet<[u8; 2]>>,
}

impl LocalBlobStore {
    /// Opens (creating if needed) the store at `dir` and removes temp files left by a crash.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, BlobError> {
        let root = dir.into();
        let tmp = root.join(TMP_DIR);
        fs::create_dir_all(&tmp)?;
        let mut removed = 0usize;
        for entry in fs::read_dir(&tmp)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                fs::remove_dir_all(entry.path())?;
            } else {
                fs::remove_file(entry.path())?;
            }
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(dir = %root.display(), removed, "removed temp files of interrupted writes");
        }
        sync_dir(&root)?;
        Ok(Self {
            inner: Arc::new(Inner {
                root,
                tmp,
                synced_dirs: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// Where blob `id` lives once committed (whether or not it exists).
    pub fn path_of(&self, id: &BlobId) -> PathBuf {
        self.inner.path_of(id)
    }

    /// Every committed blob, in id order (for the orphan sweep).
    pub async fn list(&self) -> Result<Vec<BlobId>, BlobError> {
        let inner = self.inner.clone();
        blocking(move || Ok(inner.list()?.0)).await
    }

    /// Sidecars whose blob does not exist, in id order.
    pub async fn stray_sums(&self) -> Result<Vec<BlobId>, BlobError> {
        let inner = self.inner.clone();
        blocking(move || Ok(inner.list()?.1)).await
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Where blob `id`'s checksum sidecar lives.
    pub fn sums_path_of(&self, id: &BlobId) -> PathBuf {
        self.inner.sums_path_of(id)
    }

    /// Blob `id`'s checksum sidecar.
    pub async fn sums(&self, id: &BlobId) -> Result<Sidecar, BlobError> {
        let path = self.inner.sums_path_of(id);
        blocking(move || match fs::read(&path) {
            Ok(raw) => Ok(match BlockSums::decode(&raw) {
                Ok(s) => Sidecar::Valid(s),
                Err(e) => Sidecar::Corrupt(e),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Sidecar::Missing),
            Err(e) => Err(e.into()),
        })
        .await
    }

    /// Writes blob `id`'s sidecar (temp file, fsync, rename, directory fsync), for a blob
    /// that had none or a corrupt one once its bytes are known good.
    pub async fn put_sums(&self, id: &BlobId, sums: &BlockSums) -> Result<(), BlobError> {
        let (inner, id, raw) = (self.inner.clone(), *id, sums.encode());
        blocking(move || {
            let dir = inner.ensure_fanout(&id)?;
            inner.install_sums(&id, &raw)?;
            sync_dir(&dir)?;
            Ok(())
        })
        .await
    }

    /// Removes blob `id`'s sidecar when the blob itself is absent.
    pub async fn remove_stray_sums(&self, id: &BlobId) -> Result<(), BlobError> {
        let (blob, sums) = (self.inner.path_of(id), self.inner.sums_path_of(id));
        blocking(move || {
            if !blob.exists() {
                remove_if_present(&sums)?;
            }
            Ok(())
        })
        .await
    }

    /// When blob `id` was last written (committed, repaired or copied here).
    pub async fn modified(&self, id: &BlobId) -> Result<std::time::SystemTime, BlobError> {
        let path = self.inner.path_of(id);
        let id = *id;
        blocking(move || {
            Ok(fs::metadata(&path)
                .map_err(|e| not_found(&id, e))?
                .modified()?)
        })
        .await
    }
}

impl Inner {
    fn fanout_dir(&self, id: &BlobId) -> PathBuf {
        self.root
            .join(hex::encode(&id[..1]))
            .join(hex::encode(&id[1..2]))
    }

    fn path_of(&self, id: &BlobId) -> PathBuf {
        self.fanout_dir(id).join(blob_name(id))
    }

    fn sums_path_of(&self, id: &BlobId) -> PathBuf {
        self.fanout_dir(id)
            .join(format!("{}{SUM_SUFFIX}", blob_name(id)))
    }

    /// Writes a sidecar in `tmp`, fsyncs it and renames it into place (the caller fsyncs the
    /// fan-out directory).
    fn install_sums(&self, id: &BlobId, raw: &[u8]) -> io::Result<()> {
        let tmp = self.tmp.join(format!(
            "{}.{}{SUM_SUFFIX}",
            blob_name(id),
            uuid::Uuid::new_v4().simple()
        ));
        let written = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(raw)?;
            f.sync_all()?;
            fs::rename(&tmp, self.sums_path_of(id))
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// Creates `id`'s fan-out directories and makes their entries durable.
    fn ensure_fanout(&self, id: &BlobId) -> io::Result<PathBuf> {
        let key = [id[0], id[1]];
        let leaf = self.fanout_dir(id);
        if self.synced_dirs.lock().expect("poisoned").contains(&key) {
            return Ok(leaf);
        }
        // Also when the directories already exist: another writer may have created them and
        // not yet synced, or a crashed process may have created them and never synced.
        fs::create_dir_all(&leaf)?;
        sync_dir(&self.root)?;
        sync_dir(leaf.parent().expect("leaf has a parent"))?;
        self.synced_dirs.lock().expect("poisoned").insert(key);
        Ok(leaf)
    }

    /// The committed blobs, and the sidecars without a blob, each in id order.
    fn list(&self) -> Result<(Vec<BlobId>, Vec<BlobId>), BlobError> {
        let mut ids = Vec::new();
        let mut sums = Vec::new();
        for top in fs::read_dir(&self.root)? {
            let top = top?;
            let Some(top_name) = hex_dir_name(&top)? else {
                continue;
            };
            for leaf in fs::read_dir(top.path())? {
                let leaf = leaf?;
                let Some(leaf_name) = hex_dir_name(&leaf)? else {
                    continue;
                };
                let prefix = format!("{top_name}{leaf_name}");
                for file in fs::read_dir(leaf.path())? {
                    let file = file?;
                    let name = file.file_name();
                    let Some(name) = name.to_str() else { continue };
                    let mut id = [0u8; 16];
                    if let Some(stem) = name.strip_suffix(SUM_SUFFIX) {
                        if stem.starts_with(&prefix)
                            && is_lower_hex(stem)
                            && hex::decode_to_slice(stem, &mut id).is_ok()
                        {
                            sums.push(id);
                        }
                    } else if name.starts_with(&prefix)
                        && is_lower_hex(name)
                        && hex::decode_to_slice(name, &mut id).is_ok()
                        && file.file_type()?.is_file()
                    {
                        ids.push(id);
                    }
                }
            }
        }
        ids.sort_unstable();
        sums.sort_unstable();
        sums.retain(|s| ids.binary_search(s).is_err());
        Ok((ids, sums))
    }
}

/// The name of a fan-out directory (two lowercase hex digits), or `None` for anything else.
fn hex_dir_name(entry: &fs::DirEntry) -> io::Result<Option<String>> {
    let name = entry.file_name();
    match name.to_str() {
        Some(n) if n.len() == 2 && is_lower_hex(n) && entry.file_type()?.is_dir() => {
            Ok(Some(n.to_owned()))
        }
        _ => Ok(None),
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Runs blocking file work off the async runtime.
async fn blocking<T, F>(f: F) -> Result<T, BlobError>
where
    F: FnOnce() -> Result<T, BlobError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(join_error)?
}

fn join_error(e: tokio::task::JoinError) -> BlobError {
    BlobError::Io(io::Error::other(e))
}

fn not_found(id: &BlobId, e: io::Error) -> BlobError {
    if e.kind() == io::ErrorKind::NotFound {
        BlobError::NotFound(blob_name(id))
    } else {
        BlobError::Io(e)
    }
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn create(&self, id: &BlobId) -> Result<Box<dyn BlobWriter>, BlobError> {
        let tmp_path = self.inner.tmp.join(format!(
            "{}.{}",
            blob_name(id),
            uuid::Uuid::new_v4().simple()
        ));
        let path = tmp_path.clone();
        let file = blocking(move || {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            Ok(Sink {
                file: BufWriter::with_capacity(WRITE_BUFFER, file),
                sums: Summer::new(SUM_BLOCK),
            })
        })
        .await?;
        Ok(Box::new(LocalBlobWriter {
            inner: self.inner.clone(),
            id: *id,
            tmp_path,
            file: Some(file),
            in_flight: None,
            batch: Vec::new(),
            batch_len: 0,
            len: 0,
            finished: false,
        }))
    }

    async fn read(&self, id: &BlobId, offset: u64, len: u64) -> Result<Bytes, BlobError> {
        let path = self.inner.path_of(id);
        let id = *id;
        blocking(move || {
            let file = File::open(&path).map_err(|e| not_found(&id, e))?;
            let size = file.metadata()?.len();
            let out_of_range = || BlobError::OutOfRange(blob_name(&id));
            match offset.checked_add(len) {
                Some(end) if end <= size => {}
                _ => return Err(out_of_range()),
            }
            let mut buf = vec![0u8; usize::try_from(len).map_err(|_| out_of_range())?];
            file.read_exact_at(&mut buf, offset)?;
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn len(&self, id: &BlobId) -> Result<u64, BlobError> {
        let path = self.inner.path_of(id);
        let id = *id;
        blocking(move || {
            let meta = fs::metadata(&path).map_err(|e| not_found(&id, e))?;
            Ok(meta.len())
        })
        .await
    }

    async fn delete(&self, id: &BlobId) -> Result<(), BlobError> {
        let (path, sums) = (self.inner.path_of(id), self.inner.sums_path_of(id));
        // No directory fsync: a delete lost in a crash brings back a blob that metadata no
        // longer names, and the orphan sweep removes it again.
        // The sidecar goes first: a sidecar left without its blob means a lost file, which
        // the scrub fetches back from a replica.
        blocking(move || {
            remove_if_present(&sums)?;
            remove_if_present(&path)?;
            Ok(())
        })
        .await
    }
}

/// A blob being written to `<dir>/tmp`.
struct LocalBlobWriter {
    inner: Arc<Inner>,
    id: BlobId,
    tmp_path: PathBuf,
    /// The file, when no batch is being written to it; `None` after a write failed.
    file: Option<Sink>,
    /// The batch being written; gives the file back when done.
    in_flight: Option<JoinHandle<io::Result<Sink>>>,
    batch: Vec<Bytes>,
    batch_len: usize,
    len: u64,
    /// Committed or aborted: nothing left for `Drop` to clean up.
    finished: bool,
}

impl LocalBlobWriter {
    /// Waits for the batch in flight and takes the file back.
    async fn take_file(&mut self) -> Result<Sink, BlobError> {
        if let Some(handle) = self.in_flight.take() {
            return Ok(handle.await.map_err(join_error)??);
        }
        self.file.take().ok_or_else(|| {
            BlobError::Io(io::Error::other(format!(
                "an earlier write to blob {} failed",
                blob_name(&self.id)
            )))
        })
    }
}

/// The temp file of a blob being written, and the sums of what went into it.
struct Sink {
    file: BufWriter<File>,
    sums: Summer,
}

fn write_batch(sink: &mut Sink, batch: Vec<Bytes>) -> io::Result<()> {
    for data in batch {
        sink.sums.update(&data);
        sink.file.write_all(&data)?;
    }
    Ok(())
}

#[async_trait]
impl BlobWriter for LocalBlobWriter {
    async fn append(&mut self, data: Bytes) -> Result<(), BlobError> {
        if data.is_empty() {
            return Ok(());
        }
        self.len += data.len() as u64;
        self.batch_len += data.len();
        self.batch.push(data);
        if self.batch_len >= BATCH_BYTES {
            let mut file = self.take_file().await?;
            let batch = std::mem::take(&mut self.batch);
            self.batch_len = 0;
            self.in_flight = Some(tokio::task::spawn_blocking(move || {
                write_batch(&mut file, batch)?;
                Ok(file)
            }));
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, BlobError> {
        let mut file = self.take_file().await?;
        let batch = std::mem::take(&mut self.batch);
        let (inner, id, tmp_path) = (self.inner.clone(), self.id, self.tmp_path.clone());
        blocking(move || {
            write_batch(&mut file, batch)?;
            let sums = file.sums.finish().encode();
            let f = file.file.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            drop(f);
            let dir = inner.ensure_fanout(&id)?;
            inner.install_sums(&id, &sums)?;
            fs::rename(&tmp_path, dir.join(blob_name(&id)))?;
            sync_dir(&dir)?;
            Ok(())
        })
        .await?;
        self.finished = true;
        Ok(self.len)
    }

    async fn abort(mut self: Box<Self>) {
        // Let a batch in flight finish so its file is closed before the temp file goes.
        if let Some(handle) = self.in_flight.take() {
            let _ = handle.await;
        }
        self.file = None;
        let path = self.tmp_path.clone();
        let removed = blocking(move || Ok(fs::remove_file(path)?)).await;
        if let Err(e) = removed {
            tracing::warn!(path = %self.tmp_path.display(), error = %e, "could not remove temp file");
        }
        self.finished = true;
    }
}

impl Drop for LocalBlobWriter {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // A cancelled request drops its writer without abort(). A batch still in flight writes
        // to the unlinked file, which disappears when the batch closes it.
        match fs::remove_file(&self.tmp_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                tracing::warn!(path = %self.tmp_path.display(), error = %e, "could not remove temp file");
            }
            _ => {}
        }
    }
}
