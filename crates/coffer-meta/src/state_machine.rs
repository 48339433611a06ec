//! The replicated state machine over RocksDB (DESIGN.md §4).
//!
//! Every command is applied in log order against an overlay of the pending writes; the changes
//! of all commands of one call and the new last-applied index go to RocksDB in ONE `WriteBatch`
//! written with `sync`, and results are returned only once that write is durable (openraft
//! `sm-rocks`). Applying is deterministic: times and ids come inside the commands.
//!
//! A command that fails validation leaves no trace but the advanced last-applied index, so a
//! replay of the log reaches the same state. Log indexes must increase strictly: the caller
//! (Raft's apply loop, [`crate::LocalMeta`]) never re-applies an index at or below
//! [`StateMachine::last_applied`]; doing so is refused with `MetaError::Storage`, since the
//! state already contains that command's effects (they were written atomically with the index).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBWithThreadMode, Options, ReadOptions, SingleThreaded,
    WriteBatch, WriteOptions,
};

use crate::codec;
use crate::error::MetaError;
use crate::keys;
use crate::ops;
use crate::read::Reader;
use crate::types::{Command, CommandOutput};

/// The RocksDB handle type used by the metadata role.
pub type Db = DBWithThreadMode<SingleThreaded>;

/// Column family of the state machine's records (see [`crate::keys`]).
pub const STATE_CF: &str = "state";

pub(crate) fn storage(e: rocksdb::Error) -> MetaError {
    MetaError::Storage(e.to_string())
}

/// The metadata state machine.
pub struct StateMachine {
    db: Arc<Db>,
    /// Serializes appliers: each apply is a read-modify-write of the state.
    write_lock: Mutex<()>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("path", &self.db.path())
            .finish()
    }
}

impl StateMachine {
    /// Opens (or creates) the database at `path` with the "state" column family, and any other
    /// column family already present.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, MetaError> {
        Self::open_with_column_families(path, &[])
    }

    /// Like [`StateMachine::open`], also creating `extra` column families (e.g. the Raft log's
    /// "logs"), reachable through [`StateMachine::db`].
    pub fn open_with_column_families(
        path: impl AsRef<Path>,
        extra: &[&str],
    ) -> Result<Self, MetaError> {
        let path = path.as_ref();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // An error here means there is no database yet.
        let mut names: Vec<String> = Db::list_cf(&opts, path).unwrap_or_default();
        for name in [STATE_CF].iter().chain(extra) {
            if !names.iter().any(|n| n == name) {
                names.push((*name).to_owned());
            }
        }
        let cfs = names
            .into_iter()
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = Db::open_cf_descriptors(&opts, path, cfs).map_err(storage)?;
        let sm = Self {
            db: Arc::new(db),
            write_lock: Mutex::new(()),
        };
        sm.check_layout()?;
        Ok(sm)
    }

    /// Records the keyspace layout of a new state, or refuses a state of another layout.
    fn check_layout(&self) -> Result<(), MetaError> {
        let mut batch = WriteBatch::default();
        Applier::new(&self.db)?.finish(&mut batch);
        if batch.is_empty() {
            return Ok(());
        }
        self.write(batch)
    }

    /// The underlying database (for the Raft log's column family and checkpoints).
    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    pub(crate) fn cf(&self) -> &ColumnFamily {
        self.db
            .cf_handle(STATE_CF)
            .expect("the state column family is created by open")
    }

    /// A consistent read view of the state (a RocksDB snapshot).
    pub fn reader(&self) -> Reader<'_> {
        Reader::new(&self.db, self.cf())
    }

    /// The index of the last applied log entry (0 before the first).
    pub fn last_applied(&self) -> Result<u64, MetaError> {
        match self
            .db
            .get_cf(self.cf(), keys::applied_index())
            .map_err(storage)?
        {
            Some(v) => codec::decode_u64(&v),
            None => Ok(0),
        }
    }

    /// Applies the command of log entry `index`. Validation errors are returned after the
    /// index is durably advanced; `MetaError::Storage` means nothing was written.
    pub fn apply(&self, index: u64, command: &Command) -> Result<CommandOutput, MetaError> {
        self.apply_batch(index, std::slice::from_ref(command))?
            .pop()
            .expect("one result per command")
    }

    /// Applies `commands` as log entries `first_index..first_index + len` in one durable write.
    /// Each command sees the effects of the ones before it and gets its own result.
    pub fn apply_batch(
        &self,
        first_index: u64,
        commands: &[Command],
    ) -> Result<Vec<Result<CommandOutput, MetaError>>, MetaError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut applier = Applier::new(&self.db)?;
        let mut results = Vec::with_capacity(commands.len());
        for (index, command) in (first_index..).zip(commands) {
            results.extend(applier.apply(index, std::slice::from_ref(command))?);
        }
        let mut batch = WriteBatch::default();
        applier.finish(&mut batch);
        self.write(batch)?;
        Ok(results)
    }

    /// Advances the last-applied index without a command (Raft blank and membership entries).
    pub fn advance(&self, index: u64) -> Result<(), MetaError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let applied = self.last_applied()?;
        if index <= applied {
            return Err(MetaError::Storage(format!(
                "log index {index} is already applied (last applied {applied})"
            )));
        }
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(), keys::applied_index(), codec::encode_u64(index));
        self.write(batch)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), MetaError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts).map_err(storage)
    }
}

/// The state column family of `db`.
pub(crate) fn state_cf(db: &Db) -> Result<&ColumnFamily, MetaError> {
    db.cf_handle(STATE_CF)
        .ok_or_else(|| MetaError::Storage(format!("no column family {STATE_CF:?}")))
}

/// Applies commands on top of the state in a database and collects their writes, for the caller
/// to commit in one write: the one implementation of applying, shared by [`StateMachine`]
/// ([`crate::LocalMeta`]) and the Raft application ([`crate::raft::MetaApp`]).
///
/// Each log entry carries one or more commands ([`Applier::apply`]); a command sees the effects
/// of every command applied before it, a command that fails leaves no write, and `M applied`
/// records the index of the last entry. The first apply on an empty state records the keyspace
/// layout (`M layout`); a state of another layout is refused.
pub(crate) struct Applier<'a> {
    txn: Txn<'a>,
    applied: u64,
}

impl<'a> Applier<'a> {
    /// Starts applying on top of the state in `db`.
    pub(crate) fn new(db: &'a Db) -> Result<Self, MetaError> {
        let mut txn = Txn::new(db, state_cf(db)?);
        match txn.get(&keys::layout_version())? {
            Some(v) if codec::decode_u64(&v)? == keys::LAYOUT_VERSION => {}
            Some(v) => {
                return Err(MetaError::Storage(format!(
                    "metadata keyspace layout {} is not supported by this build (expects {})",
                    codec::decode_u64(&v)?,
                    keys::LAYOUT_VERSION
                )))
            }
            None => {
                txn.put(
                    keys::layout_version(),
                    codec::encode_u64(keys::LAYOUT_VERSION),
                );
                txn.keep();
            }
        }
        let applied = match txn.get(&keys::applied_index())? {
            Some(v) => codec::decode_u64(&v)?,
            None => 0,
        };
        Ok(Self { txn, applied })
    }

    /// Applies the commands of log entry `index`, which must be above every index applied so
    /// far. Returns one result per command; `Err` (only `MetaError::Storage`) means the state
    /// cannot be applied to and nothing of this applier must be written.
    pub(crate) fn apply(
        &mut self,
        index: u64,
        commands: &[Command],
    ) -> Result<Vec<Result<CommandOutput, MetaError>>, MetaError> {
        if index <= self.applied {
            return Err(MetaError::Storage(format!(
                "log index {index} is already applied (last applied {})",
                self.applied
            )));
        }
        let mut results = Vec::with_capacity(commands.len());
        for command in commands {
            match ops::apply(&mut self.txn, command) {
                Ok(out) => {
                    self.txn.keep();
                    results.push(Ok(out));
                }
                Err(e @ MetaError::Storage(_)) => return Err(e),
                Err(e) => {
                    self.txn.discard();
                    results.push(Err(e));
                }
            }
        }
        self.txn
            .put(keys::applied_index(), codec::encode_u64(index));
        self.txn.keep();
        self.applied = index;
        Ok(results)
    }

    /// Reads `key` as the entries applied so far left the state.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
        self.txn.get(key)
    }

    /// Up to `limit` live entries with keys in `[start, end)`, in key order, as the entries
    /// applied so far left the state.
    pub(crate) fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, MetaError> {
        self.txn.scan(start, end, limit)
    }

    /// Writes bookkeeping of the entry just applied (kept with the batch, like its commands'
    /// writes).
    pub(crate) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.txn.put(key, value);
        self.txn.keep();
    }

    /// Deletes bookkeeping (kept with the batch).
    pub(crate) fn delete(&mut self, key: Vec<u8>) {
        self.txn.delete(key);
        self.txn.keep();
    }

    /// Adds the writes of everything applied to `batch`.
    pub(crate) fn finish(self, batch: &mut WriteBatch) {
        self.txn.write_into(batch);
    }
}

type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The writes of the commands being applied, over the database: reads see the database, then
/// the writes of the commands already applied in this batch (`kept`), then those of the command
/// being applied (`pending`), which are dropped if it fails.
pub(crate) struct Txn<'a> {
    db: &'a Db,
    cf: &'a ColumnFamily,
    kept: Overlay,
    pending: Overlay,
}

impl<'a> Txn<'a> {
    fn new(db: &'a Db, cf: &'a ColumnFamily) -> Self {
        Self {
            db,
            cf,
            kept: Overlay::new(),
            pending: Overlay::new(),
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
        if let Some(v) = self.pending.get(key).or_else(|| self.kept.get(key)) {
            return Ok(v.clone());
        }
        self.db.get_cf(self.cf, key).map_err(storage)
    }

    pub(crate) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.pending.insert(key, Some(value));
    }

    pub(crate) fn delete(&mut self, key: Vec<u8>) {
        self.pending.insert(key, None);
    }

    /// Up to `limit` live entries with keys in `[start, end)`, in key order.
    pub(crate) fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, MetaError> {
        let range = (Bound::Included(start), Bound::Excluded(end));
        let mut overlay: BTreeMap<&[u8], &Option<Vec<u8>>> = BTreeMap::new();
        for (k, v) in self.kept.range::<[u8], _>(range) {
            overlay.insert(k.as_slice(), v);
        }
        for (k, v) in self.pending.range::<[u8], _>(range) {
            overlay.insert(k.as_slice(), v);
        }
        let mut overlay = overlay.into_iter().peekable();

        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(end.to_vec());
        let mut it = self.db.raw_iterator_cf_opt(self.cf, opts);
        it.seek(start);

        let mut out = Vec::new();
        while out.len() < limit {
            let take_db = match (it.key(), overlay.peek()) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some(d), Some((o, _))) => d < *o,
            };
            if take_db {
                let (k, v) = it.item().expect("valid iterator");
                out.push((k.to_vec(), v.to_vec()));
                it.next();
                continue;
            }
            let (k, v) = overlay.next().expect("peeked");
            if it.key() == Some(k) {
                it.next(); // the overlay shadows the database
            }
            if let Some(v) = v {
                out.push((k.to_vec(), v.clone()));
            }
        }
        it.status().map_err(storage)?;
        Ok(out)
    }

    /// All live entries whose key starts with `prefix`.
    pub(crate) fn scan_prefix(
        &self,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, MetaError> {
        let end = keys::prefix_successor(prefix).expect("data prefixes are not all 0xFF");
        self.scan(prefix, &end, limit)
    }

    /// Makes the pending writes part of the batch.
    fn keep(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.kept.extend(pending);
    }

    /// Drops the pending writes (the command failed).
    fn discard(&mut self) {
        self.pending.clear();
    }

    /// Adds the kept writes to `batch`.
    fn write_into(self, batch: &mut WriteBatch) {
        for (k, v) in self.kept {
            match v {
                Some(v) => batch.put_cf(self.cf, k, v),
                None => batch.delete_cf(self.cf, k),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::{bucket, delete, put};
    use crate::types::Versioning;

    #[test]
    fn a_batch_isolates_failures_and_sees_earlier_commands() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path()).unwrap();
        assert_eq!(sm.last_applied().unwrap(), 0);
        assert!(sm.apply_batch(1, &[]).unwrap().is_empty());
        let results = sm
            .apply_batch(
                1,
                &[
                    Command::CreateBucket(bucket("b", Versioning::Enabled)),
                    put("b", "k", "v1", 1),
                    put("b", "k", "v1", 2),
                    delete("b", "k", None, "dm"),
                    put("missing", "k", "null", 3),
                    delete("b", "k", Some("dm"), "-"),
                ],
            )
            .unwrap();
        assert!(matches!(results[2], Err(MetaError::Invalid(_))));
        assert!(matches!(results[4], Err(MetaError::NoSuchBucket(_))));
        // The marker added by command 3 was seen and removed by command 5.
        assert!(results[3].as_ref().unwrap().delete_marker);
        assert_eq!(
            results[5].as_ref().unwrap().version_id.as_deref(),
            Some("dm")
        );
        assert_eq!(sm.last_applied().unwrap(), 6);
        let r = sm.reader();
        let cur = r.get_object("b", "k", None).unwrap();
        assert_eq!(
            (cur.version_id.as_str(), cur.parts[0].blob_id),
            ("v1", crate::ops::testutil::blob(1))
        );
        assert!(matches!(
            r.get_object("b", "k", Some("dm")),
            Err(MetaError::NoSuchVersion(_))
        ));
        drop(r);
        assert!(matches!(
            sm.apply(6, &put("b", "x", "v9", 9)),
            Err(MetaError::Storage(_))
        ));
        assert!(matches!(sm.advance(6), Err(MetaError::Storage(_))));
        assert_eq!(sm.last_applied().unwrap(), 6);
    }

    #[test]
    fn opens_with_extra_column_families_and_refuses_unknown_layouts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let sm = StateMachine::open_with_column_families(dir.path(), &["logs"]).unwrap();
            assert!(sm.db().cf_handle("logs").is_some());
            sm.apply(
                1,
                &Command::CreateBucket(bucket("b", Versioning::Unversioned)),
            )
            .unwrap();
        }
        {
            // Reopening without naming "logs" keeps it.
            let sm = StateMachine::open(dir.path()).unwrap();
            assert!(sm.db().cf_handle("logs").is_some());
            assert_eq!(sm.reader().list_buckets().unwrap().len(), 1);
            sm.db()
                .put_cf(
                    sm.cf(),
                    keys::layout_version(),
                    codec::encode_u64(keys::LAYOUT_VERSION + 1),
                )
                .unwrap();
        }
        let err = StateMachine::open(dir.path()).unwrap_err();
        assert!(matches!(err, MetaError::Storage(m) if m.contains("layout")));
    }
}
