//! [`StateMachineStore`]: openraft's `RaftStateMachine` over a [`StateMachineApp`].
//!
//! Each call to `apply` hands the batch's application commands to the app, which adds its writes
//! to a `WriteBatch`; the last-applied log id and the last membership go into the same batch,
//! written with `sync`. The answers reach the writers only after that write returned (openraft
//! `sm-rocks`). Snapshots are described in [`crate::snapshot`].

use std::fmt::Debug;
use std::marker::PhantomData;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError};
use rocksdb::{WriteBatch, WriteOptions, DB};

use crate::app::{ApplyError, LogCommand, StateMachineApp};
use crate::db::{self, RAFT_META_CF};
use crate::error::Error;
use crate::snapshot::{self, SnapshotStore};
use crate::types::{
    AppResponse, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

fn snapshot_err(verb: ErrorVerb, e: Error) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, &e).into()
}

fn join_err(e: tokio::task::JoinError) -> Error {
    Error::Io(std::io::Error::other(e))
}

fn write_synced_blocking(db: &DB, batch: WriteBatch) -> Result<(), Error> {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    db.write_opt(batch, &opts)?;
    Ok(())
}

/// The state machine of a node: the app's state, the applied log id and membership, snapshots.
pub struct StateMachineStore<A: StateMachineApp> {
    db: Arc<DB>,
    app: Arc<A>,
    snapshots: Arc<SnapshotStore>,
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
}

impl<A: StateMachineApp> Debug for StateMachineStore<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachineStore")
            .field("path", &self.db.path())
            .field("last_applied", &self.last_applied)
            .finish()
    }
}

impl<A: StateMachineApp> StateMachineStore<A> {
    /// Opens the state machine over `db` (opened by [`crate::open_db`] with the app's column
    /// families), keeping snapshots in `snapshot_dir`. If the current snapshot is ahead of the
    /// state (a crash interrupted its install), it is installed again. Blocking.
    pub fn open(db: Arc<DB>, app: Arc<A>, snapshot_dir: &Path) -> Result<Self, Error> {
        let snapshots = Arc::new(SnapshotStore::open(snapshot_dir)?);
        let last_applied = db::get_meta::<Option<LogId>>(&db, db::KEY_APPLIED)?.flatten();
        let last_membership = db::get_meta(&db, db::KEY_MEMBERSHIP)?.unwrap_or_default();
        let mut sm = Self {
            db,
            app,
            snapshots,
            last_applied,
            last_membership,
        };
        if let Some((meta, file)) = sm.snapshots.open_current()? {
            if meta.last_log_id > sm.last_applied {
                tracing::warn!(
                    snapshot = ?meta.last_log_id,
                    applied = ?sm.last_applied,
                    "the current snapshot is ahead of the state: installing it again"
                );
                let meta = install_blocking(&sm.db, sm.app.as_ref(), file, Some(&meta))?;
                sm.last_applied = meta.last_log_id;
                sm.last_membership = meta.last_membership;
            }
        }
        Ok(sm)
    }

    /// The database.
    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }

    /// The application.
    pub fn app(&self) -> &Arc<A> {
        &self.app
    }
}

/// Verifies the snapshot `file` and makes it the state in one synced write. Blocking.
fn install_blocking<A: StateMachineApp>(
    db: &DB,
    app: &A,
    file: std::fs::File,
    expected: Option<&SnapshotMeta>,
) -> Result<SnapshotMeta, Error> {
    let (meta, batch) = snapshot::read_for_install(db, A::COLUMN_FAMILIES, file)?;
    if let Some(expected) = expected {
        if expected.last_log_id != meta.last_log_id
            || expected.last_membership != meta.last_membership
        {
            return Err(Error::CorruptSnapshot(format!(
                "the file holds {:?}, the snapshot meta says {:?}",
                meta.last_log_id, expected.last_log_id
            )));
        }
    }
    write_synced_blocking(db, batch)?;
    app.snapshot_installed(db)?;
    Ok(meta)
}

impl<A: StateMachineApp> RaftStateMachine<TypeConfig> for StateMachineStore<A> {
    type SnapshotBuilder = SnapshotBuilder<A>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<AppResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        // For each entry, the position of its answer among the app's answers (None: blank or
        // membership entries, answered with an empty response).
        let mut slots: Vec<Option<usize>> = Vec::new();
        let mut commands: Vec<LogCommand> = Vec::new();
        let mut last: Option<LogId> = None;
        let mut membership = self.last_membership.clone();
        for entry in entries {
            last = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => slots.push(None),
                EntryPayload::Normal(req) => {
                    slots.push(Some(commands.len()));
                    commands.push(LogCommand {
                        index: entry.log_id.index,
                        data: req.0,
                    });
                }
                EntryPayload::Membership(m) => {
                    membership = StoredMembership::new(Some(entry.log_id), m);
                    slots.push(None);
                }
            }
        }
        let Some(last) = last else {
            return Ok(Vec::new());
        };
        let apply_err = |e: Error| -> StorageError { StorageIOError::apply(last, &e).into() };

        let applied_value = db::encode(&Some(last)).map_err(apply_err)?;
        let membership_value = db::encode(&membership).map_err(apply_err)?;
        let db = self.db.clone();
        let app = self.app.clone();
        let answers = tokio::task::spawn_blocking(move || -> Result<Vec<Vec<u8>>, Error> {
            let mut batch = WriteBatch::default();
            let answers = if commands.is_empty() {
                Vec::new()
            } else {
                app.apply(&db, &mut batch, &commands)?
            };
            if answers.len() != commands.len() {
                return Err(ApplyError(format!(
                    "{} answers to {} commands",
                    answers.len(),
                    commands.len()
                ))
                .into());
            }
            let meta_cf = db::cf(&db, RAFT_META_CF);
            batch.put_cf(meta_cf, db::KEY_APPLIED, applied_value);
            batch.put_cf(meta_cf, db::KEY_MEMBERSHIP, membership_value);
            write_synced_blocking(&db, batch)?;
            Ok(answers)
        })
        .await
        .map_err(join_err)
        .and_then(|r| r)
        .map_err(apply_err)?;

        self.last_applied = Some(last);
        self.last_membership = membership;
        let mut answers = answers.into_iter();
        Ok(slots
            .into_iter()
            .map(|slot| match slot {
                Some(_) => AppResponse(answers.next().unwrap_or_default()),
                None => AppResponse::default(),
            })
            .collect())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            snapshots: self.snapshots.clone(),
            _app: PhantomData,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        // An unlinked file: nothing is left behind if the transfer is abandoned.
        let file = tempfile::tempfile_in(self.snapshots.dir())
            .map_err(|e| snapshot_err(ErrorVerb::Write, e.into()))?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        tracing::info!(snapshot = ?meta.last_log_id, "installing a snapshot");
        let mut received = snapshot.into_std().await;
        let db = self.db.clone();
        let app = self.app.clone();
        let snapshots = self.snapshots.clone();
        let expected = meta.clone();
        let installed = tokio::task::spawn_blocking(move || -> Result<SnapshotMeta, Error> {
            // Keep our own synced copy first: it becomes the current snapshot, and the copy is
            // what gets verified and installed.
            let tmp = snapshots.tmp_path();
            snapshot::copy_to(&mut received, &tmp)?;
            let (meta, batch) =
                snapshot::read_for_install(&db, A::COLUMN_FAMILIES, std::fs::File::open(&tmp)?)?;
            if meta.last_log_id != expected.last_log_id
                || meta.last_membership != expected.last_membership
            {
                std::fs::remove_file(&tmp)?;
                return Err(Error::CorruptSnapshot(format!(
                    "the file holds {:?}, the snapshot meta says {:?}",
                    meta.last_log_id, expected.last_log_id
                )));
            }
            snapshots.publish(&tmp, &meta)?;
            write_synced_blocking(&db, batch)?;
            app.snapshot_installed(&db)?;
            Ok(meta)
        })
        .await
        .map_err(join_err)
        .and_then(|r| r)
        .map_err(|e| snapshot_err(ErrorVerb::Write, e))?;
        self.last_applied = installed.last_log_id;
        self.last_membership = installed.last_membership;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let current = self
            .snapshots
            .open_current()
            .map_err(|e| snapshot_err(ErrorVerb::Read, e))?;
        Ok(current.map(|(meta, file)| Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        }))
    }
}

/// Builds a snapshot of the state machine without stopping it: the dump reads one RocksDB
/// snapshot while commands keep being applied.
pub struct SnapshotBuilder<A> {
    db: Arc<DB>,
    snapshots: Arc<SnapshotStore>,
    _app: PhantomData<fn() -> A>,
}

impl<A: StateMachineApp> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<A> {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let db = self.db.clone();
        let snapshots = self.snapshots.clone();
        let (meta, file) =
            tokio::task::spawn_blocking(move || -> Result<(SnapshotMeta, std::fs::File), Error> {
                let tmp = snapshots.tmp_path();
                let meta = snapshot::write_snapshot(&db, A::COLUMN_FAMILIES, &tmp)?;
                // Opened before publishing: the handle stays valid even if a more recent
                // snapshot wins and this file is removed.
                let file = std::fs::File::open(&tmp)?;
                snapshots.publish(&tmp, &meta)?;
                Ok((meta, file))
            })
            .await
            .map_err(join_err)
            .and_then(|r| r)
            .map_err(|e| snapshot_err(ErrorVerb::Write, e))?;
        tracing::info!(snapshot = ?meta.last_log_id, id = %meta.snapshot_id, "built a snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }
}
