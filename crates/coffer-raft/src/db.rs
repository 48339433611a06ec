//! The one RocksDB database of a Raft node: its column families, the keys of the Raft metadata,
//! and how the records are encoded.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;

/// Column family of the Raft log: entries keyed by their big-endian index (so that key order is
/// log order).
pub const LOGS_CF: &str = "logs";
/// Column family of the Raft metadata: the vote, the committed and purged log ids of the log
/// store, and the last-applied log id and membership of the state machine.
pub const RAFT_META_CF: &str = "raft_meta";

pub(crate) const KEY_VOTE: &[u8] = b"vote";
pub(crate) const KEY_COMMITTED: &[u8] = b"committed";
pub(crate) const KEY_LAST_PURGED: &[u8] = b"last_purged";
pub(crate) const KEY_APPLIED: &[u8] = b"applied";
pub(crate) const KEY_MEMBERSHIP: &[u8] = b"membership";

/// Opens (or creates) the database at `path` with the Raft column families and the
/// application's `app_cfs`.
pub fn open_db(path: &Path, app_cfs: &[&str]) -> Result<Arc<DB>, Error> {
    for name in app_cfs {
        if [LOGS_CF, RAFT_META_CF, rocksdb::DEFAULT_COLUMN_FAMILY_NAME].contains(name) {
            return Err(Error::Config(format!(
                "the application column family {name:?} is reserved"
            )));
        }
    }
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let mut names: Vec<String> = DB::list_cf(&opts, path).unwrap_or_default();
    for name in [LOGS_CF, RAFT_META_CF].iter().chain(app_cfs) {
        if !names.iter().any(|n| n == name) {
            names.push((*name).to_owned());
        }
    }
    let cfs = names
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    Ok(Arc::new(DB::open_cf_descriptors(&opts, path, cfs)?))
}

pub(crate) fn cf<'a>(db: &'a DB, name: &str) -> &'a ColumnFamily {
    db.cf_handle(name)
        .unwrap_or_else(|| panic!("column family {name} is created by open_db"))
}

/// The key of log entry `index`.
pub(crate) fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub(crate) fn index_of_key(key: &[u8]) -> Result<u64, Error> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| Error::Codec(format!("log key of {} bytes", key.len())))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Records are MessagePack with field names, so that a field added later stays readable.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    rmp_serde::to_vec_named(value).map_err(Error::codec)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    rmp_serde::from_slice(bytes).map_err(Error::codec)
}

/// Reads and decodes a record of the Raft metadata column family.
pub(crate) fn get_meta<T: DeserializeOwned>(db: &DB, key: &[u8]) -> Result<Option<T>, Error> {
    match db.get_pinned_cf(cf(db, RAFT_META_CF), key)? {
        Some(v) => Ok(Some(decode(&v)?)),
        None => Ok(None),
    }
}

/// Writes `batch` and fsyncs the write-ahead log before returning, on a blocking thread.
pub(crate) async fn write_synced(db: &Arc<DB>, batch: WriteBatch) -> Result<(), Error> {
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        db.write_opt(batch, &opts)
    })
    .await
    .map_err(|e| Error::Io(std::io::Error::other(e)))??;
    Ok(())
}
