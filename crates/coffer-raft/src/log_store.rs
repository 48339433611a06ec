//! [`LogStore`]: the Raft log and vote in RocksDB (openraft `RaftLogStorage`, storage v2).
//!
//! Entries live in [`LOGS_CF`] under their big-endian index; the vote and the committed and
//! last-purged log ids in [`RAFT_META_CF`]. An append is reported flushed to openraft only after
//! `flush_wal(true)` returned, so an acknowledged entry survives a crash; the vote and purges are
//! synced writes.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogState, RaftLogReader, StorageIOError};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};

use crate::db::{self, LOGS_CF, RAFT_META_CF};
use crate::error::Error;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// The Raft log of a node. Cheap to clone: clones share the database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("path", &self.db.path())
            .finish()
    }
}

fn io_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: Error) -> StorageError {
    StorageIOError::new(subject, verb, &e).into()
}

fn read_logs_err(e: impl Into<Error>) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Read, e.into())
}

fn write_logs_err(e: impl Into<Error>) -> StorageError {
    io_err(ErrorSubject::Logs, ErrorVerb::Write, e.into())
}

impl LogStore {
    /// The log store over `db`, which must have been opened by [`crate::open_db`].
    pub fn new(db: Arc<DB>) -> Self {
        Self { db }
    }

    fn last_purged(&self) -> Result<Option<LogId>, Error> {
        Ok(db::get_meta::<Option<LogId>>(&self.db, db::KEY_LAST_PURGED)?.flatten())
    }

    fn last_entry_log_id(&self) -> Result<Option<LogId>, Error> {
        let cf = db::cf(&self.db, LOGS_CF);
        match self.db.iterator_cf(cf, IteratorMode::End).next() {
            Some(item) => {
                let (_, value) = item?;
                Ok(Some(db::decode::<Entry>(&value)?.log_id))
            }
            None => Ok(None),
        }
    }

    fn entries(&self, start: u64, end: Bound<u64>) -> Result<Vec<Entry>, Error> {
        let cf = db::cf(&self.db, LOGS_CF);
        let from = db::index_key(start);
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&from, Direction::Forward))
        {
            let (key, value) = item?;
            let index = db::index_of_key(&key)?;
            let in_range = match end {
                Bound::Included(e) => index <= e,
                Bound::Excluded(e) => index < e,
                Bound::Unbounded => true,
            };
            if !in_range {
                break;
            }
            out.push(db::decode(&value)?);
        }
        Ok(out)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => match s.checked_add(1) {
                Some(s) => s,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        self.entries(start, range.end_bound().cloned())
            .map_err(read_logs_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.last_purged().map_err(read_logs_err)?;
        let last_log_id = self
            .last_entry_log_id()
            .map_err(read_logs_err)?
            .or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote_err = |e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e);
        let mut batch = WriteBatch::default();
        batch.put_cf(
            db::cf(&self.db, RAFT_META_CF),
            db::KEY_VOTE,
            db::encode(vote).map_err(vote_err)?,
        );
        db::write_synced(&self.db, batch).await.map_err(vote_err)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        db::get_meta(&self.db, db::KEY_VOTE)
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    // The committed log id only spares re-replication after a restart: losing the latest one is
    // harmless, so it is written without sync.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let value = db::encode(&committed).map_err(write_logs_err)?;
        self.db
            .put_cf(db::cf(&self.db, RAFT_META_CF), db::KEY_COMMITTED, value)
            .map_err(write_logs_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(db::get_meta::<Option<LogId>>(&self.db, db::KEY_COMMITTED)
            .map_err(read_logs_err)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let cf = db::cf(&self.db, LOGS_CF);
        let mut batch = WriteBatch::default();
        for entry in entries {
            let value = db::encode(&entry).map_err(write_logs_err)?;
            batch.put_cf(cf, db::index_key(entry.log_id.index), value);
        }
        let db = self.db.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<(), rocksdb::Error> {
            db.write(batch)?;
            db.flush_wal(true)
        })
        .await
        .map_err(|e| write_logs_err(std::io::Error::other(e)))?;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(write_logs_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "truncate the log from");
        let mut batch = WriteBatch::default();
        let cf = db::cf(&self.db, LOGS_CF);
        batch.delete_range_cf(cf, db::index_key(log_id.index), db::index_key(u64::MAX));
        batch.delete_cf(cf, db::index_key(u64::MAX));
        db::write_synced(&self.db, batch)
            .await
            .map_err(write_logs_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        tracing::debug!(%log_id, "purge the log up to");
        // The last-purged id and the deletion go in one write: a crash cannot leave a hole that
        // the log state does not account for.
        let mut batch = WriteBatch::default();
        batch.put_cf(
            db::cf(&self.db, RAFT_META_CF),
            db::KEY_LAST_PURGED,
            db::encode(&Some(log_id)).map_err(write_logs_err)?,
        );
        batch.delete_range_cf(
            db::cf(&self.db, LOGS_CF),
            db::index_key(0),
            db::index_key(log_id.index.saturating_add(1)),
        );
        db::write_synced(&self.db, batch)
            .await
            .map_err(write_logs_err)
    }
}
