//! Snapshots: a dump of the application's column families taken from one RocksDB snapshot,
//! kept in one file per node and streamed to followers as is.
//!
//! # File format (version 1)
//! ```text
//! "COFSNAP\0"  u32 version = 1
//! u32 meta length, MessagePack of the openraft SnapshotMeta (last log id, membership, id)
//! records: 0x01 u16 name length, column family name      (every application CF, in order)
//!          0x02 u32 key length, key, u32 value length, value   (its entries, in key order)
//! 0xFF u64 number of entries, then u32 CRC-32C of every byte before it
//! ```
//! All integers are big-endian. The state, the last-applied log id and the membership are read
//! from the same RocksDB snapshot, so the file is one point of the log.
//!
//! Installing parses and verifies the whole file, then replaces the application's column
//! families in ONE synced `WriteBatch` that also sets the last-applied log id and membership: a
//! crash leaves the old state or the new one. The batch holds the whole state in memory, which
//! bounds the state size by the node's memory. The received file is made the node's current
//! snapshot before the batch is written; a node that finds its current snapshot ahead of its
//! state when it opens installs it again.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crc_fast::{CrcAlgorithm, Digest};
use rocksdb::{IteratorMode, WriteBatch, DB};

use crate::db::{self, RAFT_META_CF};
use crate::error::Error;
use crate::types::{LogId, SnapshotMeta, StoredMembership};

const MAGIC: &[u8; 8] = b"COFSNAP\0";
const VERSION: u32 = 1;
const TAG_CF: u8 = 0x01;
const TAG_KV: u8 = 0x02;
const TAG_END: u8 = 0xFF;
const MAX_META_LEN: u32 = 64 << 20;
const CURRENT: &str = "current.snap";
const TMP_PREFIX: &str = "tmp-";

fn corrupt(msg: impl Into<String>) -> Error {
    Error::CorruptSnapshot(msg.into())
}

/// The snapshot directory of a node: the current snapshot and the files being written.
#[derive(Debug)]
pub(crate) struct SnapshotStore {
    dir: PathBuf,
    /// The metadata of the current snapshot; the lock also serializes its replacement.
    current: Mutex<Option<SnapshotMeta>>,
    counter: AtomicU64,
}

impl SnapshotStore {
    /// Opens `dir`, removing the files of writes a crash interrupted.
    pub(crate) fn open(dir: &Path) -> Result<Self, Error> {
        fs::create_dir_all(dir)?;
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                fs::remove_file(entry.path())?;
            }
        }
        let current_path = dir.join(CURRENT);
        let current = match File::open(&current_path) {
            Ok(f) => Some(read_header(&mut BufReader::new(f))?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        Ok(Self {
            dir: dir.to_owned(),
            current: Mutex::new(current),
            counter: AtomicU64::new(0),
        })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh path for a snapshot being written.
    pub(crate) fn tmp_path(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{TMP_PREFIX}{n}"))
    }

    pub(crate) fn current_path(&self) -> PathBuf {
        self.dir.join(CURRENT)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SnapshotMeta>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current snapshot, opened.
    pub(crate) fn open_current(&self) -> Result<Option<(SnapshotMeta, File)>, Error> {
        let guard = self.lock();
        match &*guard {
            Some(meta) => Ok(Some((meta.clone(), File::open(self.current_path())?))),
            None => Ok(None),
        }
    }

    /// Makes the complete, synced snapshot file at `tmp` the current snapshot, unless the current
    /// one is at least as recent (a build that raced with an install). Returns whether it did.
    pub(crate) fn publish(&self, tmp: &Path, meta: &SnapshotMeta) -> Result<bool, Error> {
        let mut guard = self.lock();
        if let Some(current) = &*guard {
            if current.last_log_id >= meta.last_log_id {
                fs::remove_file(tmp)?;
                return Ok(false);
            }
        }
        fs::rename(tmp, self.current_path())?;
        File::open(&self.dir)?.sync_all()?;
        *guard = Some(meta.clone());
        Ok(true)
    }
}

fn new_snapshot_id(last: Option<&LogId>) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    match last {
        Some(id) => format!(
            "{}-{}-{}-{nanos}",
            id.leader_id.term, id.leader_id.node_id, id.index
        ),
        None => format!("none-{nanos}"),
    }
}

/// Reads the last-applied log id and membership from a consistent view.
fn applied_state<F>(get: F) -> Result<(Option<LogId>, StoredMembership), Error>
where
    F: Fn(&[u8]) -> Result<Option<Vec<u8>>, rocksdb::Error>,
{
    let applied = match get(db::KEY_APPLIED)? {
        Some(v) => db::decode::<Option<LogId>>(&v)?,
        None => None,
    };
    let membership = match get(db::KEY_MEMBERSHIP)? {
        Some(v) => db::decode(&v)?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

struct HashingWriter<W> {
    inner: W,
    digest: Digest,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct HashingReader<R> {
    inner: R,
    digest: Digest,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.digest.update(&buf[..n]);
        Ok(n)
    }
}

fn write_chunk(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::other("a key or value of 4 GiB or more"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(bytes)
}

/// Dumps the application column families `cfs` of `db`, with the applied state, into a new file
/// at `path` (synced). Blocking.
pub(crate) fn write_snapshot(db: &DB, cfs: &[&str], path: &Path) -> Result<SnapshotMeta, Error> {
    let view = db.snapshot();
    let meta_cf = db::cf(db, RAFT_META_CF);
    let (last_log_id, last_membership) = applied_state(|k| view.get_cf(meta_cf, k))?;
    let meta = SnapshotMeta {
        snapshot_id: new_snapshot_id(last_log_id.as_ref()),
        last_log_id,
        last_membership,
    };

    let file = File::create(path)?;
    let mut w = HashingWriter {
        inner: BufWriter::new(file),
        digest: Digest::new(CrcAlgorithm::Crc32Iscsi),
    };
    w.write_all(MAGIC)?;
    w.write_all(&VERSION.to_be_bytes())?;
    write_chunk(&mut w, &db::encode(&meta)?)?;
    let mut count: u64 = 0;
    for name in cfs {
        w.write_all(&[TAG_CF])?;
        w.write_all(&(name.len() as u16).to_be_bytes())?;
        w.write_all(name.as_bytes())?;
        for item in view.iterator_cf(db::cf(db, name), IteratorMode::Start) {
            let (key, value) = item?;
            w.write_all(&[TAG_KV])?;
            write_chunk(&mut w, &key)?;
            write_chunk(&mut w, &value)?;
            count += 1;
        }
    }
    w.write_all(&[TAG_END])?;
    w.write_all(&count.to_be_bytes())?;
    let crc = w.digest.finalize() as u32;
    let mut inner = w.inner;
    inner.write_all(&crc.to_be_bytes())?;
    let file = inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(meta)
}

fn read_u8(r: &mut impl Read) -> Result<u8, Error> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b).map_err(truncated)?;
    Ok(b[0])
}

fn read_u16(r: &mut impl Read) -> Result<u16, Error> {
    let mut b = [0u8; 2];
    r.read_exact(&mut b).map_err(truncated)?;
    Ok(u16::from_be_bytes(b))
}

fn read_u32(r: &mut impl Read) -> Result<u32, Error> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b).map_err(truncated)?;
    Ok(u32::from_be_bytes(b))
}

fn read_u64(r: &mut impl Read) -> Result<u64, Error> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b).map_err(truncated)?;
    Ok(u64::from_be_bytes(b))
}

fn truncated(e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        corrupt("truncated file")
    } else {
        Error::Io(e)
    }
}

fn read_vec(r: &mut impl Read, len: usize) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    r.take(len as u64).read_to_end(&mut out)?;
    if out.len() != len {
        return Err(corrupt("truncated file"));
    }
    Ok(out)
}

/// Reads the header of a snapshot file: its metadata.
pub(crate) fn read_header(r: &mut impl Read) -> Result<SnapshotMeta, Error> {
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(truncated)?;
    if &magic != MAGIC {
        return Err(corrupt("not a Coffer snapshot"));
    }
    let version = read_u32(r)?;
    if version != VERSION {
        return Err(corrupt(format!("unknown snapshot version {version}")));
    }
    let len = read_u32(r)?;
    if len > MAX_META_LEN {
        return Err(corrupt(format!("metadata of {len} bytes")));
    }
    db::decode(&read_vec(r, len as usize)?)
}

/// Adds to `batch` the deletion of every entry of column family `name`.
fn clear_cf(db: &DB, batch: &mut WriteBatch, name: &str) -> Result<(), Error> {
    let cf = db::cf(db, name);
    let first = db.iterator_cf(cf, IteratorMode::Start).next().transpose()?;
    let last = db.iterator_cf(cf, IteratorMode::End).next().transpose()?;
    if let (Some((first, _)), Some((last, _))) = (first, last) {
        batch.delete_range_cf(cf, &first, &last);
        batch.delete_cf(cf, &last);
    }
    Ok(())
}

/// Parses and verifies the snapshot file `file` (from its start) and returns its metadata and the
/// batch that makes it the state of `db`: the application column families `cfs` replaced, the
/// last-applied log id and membership set. Blocking; nothing is written.
pub(crate) fn read_for_install(
    db: &DB,
    cfs: &[&str],
    mut file: File,
) -> Result<(SnapshotMeta, WriteBatch), Error> {
    file.seek(SeekFrom::Start(0))?;
    let mut r = HashingReader {
        inner: BufReader::new(file),
        digest: Digest::new(CrcAlgorithm::Crc32Iscsi),
    };
    let meta = read_header(&mut r)?;

    let mut batch = WriteBatch::default();
    for name in cfs {
        clear_cf(db, &mut batch, name)?;
    }
    let mut current: Option<&str> = None;
    let mut seen: Vec<&str> = Vec::new();
    let mut count: u64 = 0;
    loop {
        match read_u8(&mut r)? {
            TAG_CF => {
                let len = read_u16(&mut r)? as usize;
                let name = String::from_utf8(read_vec(&mut r, len)?)
                    .map_err(|_| corrupt("a column family name is not UTF-8"))?;
                let Some(known) = cfs.iter().find(|n| **n == name) else {
                    return Err(corrupt(format!("unknown column family {name:?}")));
                };
                if seen.contains(known) {
                    return Err(corrupt(format!("column family {name:?} twice")));
                }
                seen.push(known);
                current = Some(known);
            }
            TAG_KV => {
                let Some(name) = current else {
                    return Err(corrupt("an entry before any column family"));
                };
                let klen = read_u32(&mut r)? as usize;
                let key = read_vec(&mut r, klen)?;
                let vlen = read_u32(&mut r)? as usize;
                let value = read_vec(&mut r, vlen)?;
                batch.put_cf(db::cf(db, name), key, value);
                count += 1;
            }
            TAG_END => break,
            tag => return Err(corrupt(format!("unknown record tag {tag:#x}"))),
        }
    }
    let expected_count = read_u64(&mut r)?;
    let crc = r.digest.finalize() as u32;
    let stored_crc = read_u32(&mut r.inner)?;
    if stored_crc != crc {
        return Err(corrupt(format!(
            "CRC-32C {crc:#010x}, stored {stored_crc:#010x}"
        )));
    }
    if expected_count != count {
        return Err(corrupt(format!(
            "{count} entries where the trailer says {expected_count}"
        )));
    }
    let mut rest = [0u8; 1];
    if r.inner.read(&mut rest)? != 0 {
        return Err(corrupt("bytes after the trailer"));
    }

    let meta_cf = db::cf(db, RAFT_META_CF);
    batch.put_cf(meta_cf, db::KEY_APPLIED, db::encode(&meta.last_log_id)?);
    batch.put_cf(
        meta_cf,
        db::KEY_MEMBERSHIP,
        db::encode(&meta.last_membership)?,
    );
    Ok((meta, batch))
}

/// Copies `src` (from its start) into a new synced file at `dst`. Blocking.
pub(crate) fn copy_to(src: &mut File, dst: &Path) -> Result<(), Error> {
    src.seek(SeekFrom::Start(0))?;
    let mut out = File::create(dst)?;
    io::copy(src, &mut out)?;
    out.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::open_db;

    fn db_with(dir: &Path, entries: &[(&str, &str)]) -> std::sync::Arc<DB> {
        let db = open_db(dir, &["a", "b"]).unwrap();
        for (k, v) in entries {
            db.put_cf(db::cf(&db, "a"), k, v).unwrap();
        }
        db
    }

    fn refused(db: &DB, cfs: &[&str], path: &Path) -> Error {
        match read_for_install(db, cfs, File::open(path).unwrap()) {
            Ok(_) => panic!("the snapshot at {} was accepted", path.display()),
            Err(e) => e,
        }
    }

    #[test]
    fn a_truncated_or_foreign_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = db_with(&dir.path().join("db"), &[("k1", "v1"), ("k2", "v2")]);
        let path = dir.path().join("snap");
        let meta = write_snapshot(&db, &["a", "b"], &path).unwrap();
        assert_eq!(meta.last_log_id, None);

        let (read_meta, batch) =
            read_for_install(&db, &["a", "b"], File::open(&path).unwrap()).unwrap();
        assert_eq!(read_meta, meta);
        // Clears "a" (range + last key), puts two entries, sets applied and membership.
        assert_eq!(batch.len(), 6);

        let full = fs::read(&path).unwrap();
        for cut in [full.len() - 1, full.len() / 2, 10] {
            fs::write(&path, &full[..cut]).unwrap();
            let err = refused(&db, &["a", "b"], &path);
            assert!(
                matches!(err, Error::CorruptSnapshot(_)),
                "cut at {cut}: {err}"
            );
        }
        // A snapshot of an application with other column families does not install.
        fs::write(&path, &full).unwrap();
        let err = refused(&db, &["b"], &path);
        assert!(err.to_string().contains("unknown column family"), "{err}");
        fs::write(&path, b"PK\x03\x04 not a snapshot").unwrap();
        let err = refused(&db, &["a", "b"], &path);
        assert!(err.to_string().contains("not a Coffer snapshot"), "{err}");
    }
}
