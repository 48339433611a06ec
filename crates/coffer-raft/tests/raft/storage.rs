//! The storage: openraft's suite, then what the suite does not check (application data through
//! apply, restarts, snapshots carrying data).

use std::sync::Arc;

use coffer_raft::types::{Entry, StorageError};
use coffer_raft::{open_db, AppRequest, LogStore, StateMachineApp, StateMachineStore, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::{log_id, StoreBuilder, Suite};
use openraft::{EntryPayload, RaftLogReader, RaftSnapshotBuilder, StorageIOError};
use tempfile::TempDir;

use crate::kv::{self, KvApp};

pub type Sm = StateMachineStore<KvApp>;

pub fn open(dir: &std::path::Path) -> (LogStore, Sm) {
    let db = open_db(&dir.join("db"), KvApp::COLUMN_FAMILIES).expect("open db");
    let sm = StateMachineStore::open(db.clone(), Arc::new(KvApp), &dir.join("snapshots"))
        .expect("open state machine");
    (LogStore::new(db), sm)
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, Sm, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, Sm), StorageError> {
        let dir = TempDir::new().map_err(|e| StorageIOError::write(&e))?;
        let (log, sm) = open(dir.path());
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft storage suite");
}

fn normal(term: u64, index: u64, command: Vec<u8>) -> Entry {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Normal(AppRequest(command)),
    }
}

fn blank(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, 1, index),
        payload: EntryPayload::Blank,
    }
}

fn answers(responses: Vec<coffer_raft::AppResponse>) -> Vec<String> {
    responses
        .into_iter()
        .map(|r| String::from_utf8(r.0).expect("utf-8"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_state_and_data_survive_a_restart() {
    let dir = TempDir::new().unwrap();
    {
        let (_log, mut sm) = open(dir.path());
        // One call: later commands see the earlier ones' writes; blank entries answer nothing.
        let out = sm
            .apply([
                blank(1, 1),
                normal(1, 2, kv::incr("n")),
                normal(1, 3, kv::incr("n")),
                normal(1, 4, kv::set("a", "x")),
                normal(1, 5, b"bogus".to_vec()),
            ])
            .await
            .unwrap();
        assert_eq!(
            answers(out),
            ["", "1", "2", "", "error: bad command \"bogus\""]
        );
        let out = sm
            .apply([normal(1, 6, kv::incr("n")), normal(1, 7, kv::set("a", "y"))])
            .await
            .unwrap();
        assert_eq!(answers(out), ["3", "x"]);
    }
    let (_log, mut sm) = open(dir.path());
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 1, 7)));
    assert_eq!(kv::get(sm.db(), "n").as_deref(), Some("3"));
    assert_eq!(kv::get(sm.db(), "a").as_deref(), Some("y"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_entries_survive_a_restart_and_purge_is_durable() {
    let dir = TempDir::new().unwrap();
    {
        let (mut log, _sm) = open(dir.path());
        let entries: Vec<Entry> = (1..=10).map(|i| normal(2, i, kv::incr("k"))).collect();
        // `append` needs openraft's flush callback, which only openraft can build: go through
        // the storage helper that the suite uses too.
        openraft::storage::RaftLogStorageExt::blocking_append(&mut log, entries)
            .await
            .unwrap();
        log.purge(log_id(2, 1, 3)).await.unwrap();
    }
    let (mut log, _sm) = open(dir.path());
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 1, 3)));
    assert_eq!(state.last_log_id, Some(log_id(2, 1, 10)));
    let entries = log.try_get_log_entries(0..).await.unwrap();
    let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
    assert_eq!(indexes, (4..=10).collect::<Vec<_>>());
    log.truncate(log_id(2, 1, 8)).await.unwrap();
    let entries = log.try_get_log_entries(4..).await.unwrap();
    assert_eq!(entries.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_replaces_the_whole_state() {
    let leader_dir = TempDir::new().unwrap();
    let follower_dir = TempDir::new().unwrap();
    let (_l, mut leader) = open(leader_dir.path());
    let (_f, mut follower) = open(follower_dir.path());

    leader
        .apply([
            normal(1, 1, kv::set("a", "1")),
            normal(1, 2, kv::set("b", "2")),
            normal(1, 3, kv::incr("n")),
        ])
        .await
        .unwrap();
    // The follower holds state the snapshot does not have: it must disappear.
    follower
        .apply([
            normal(1, 1, kv::set("stale", "x")),
            normal(1, 2, kv::set("a", "old")),
        ])
        .await
        .unwrap();

    let built = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    assert_eq!(built.meta.last_log_id, Some(log_id(1, 1, 3)));
    let current = leader
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("current snapshot");
    assert_eq!(current.meta, built.meta);

    let mut receiving = follower.begin_receiving_snapshot().await.unwrap();
    let mut source = current.snapshot;
    tokio::io::copy(&mut source, &mut *receiving).await.unwrap();
    follower
        .install_snapshot(&current.meta, receiving)
        .await
        .unwrap();

    assert_eq!(kv::dump(leader.db()), kv::dump(follower.db()));
    assert_eq!(kv::get(follower.db(), "stale"), None);
    assert_eq!(kv::get(follower.db(), "a").as_deref(), Some("1"));
    let (applied, _) = follower.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 1, 3)));
    let installed = follower
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("installed snapshot");
    assert_eq!(installed.meta, built.meta);

    // Applying continues after the snapshot, and the installed state survives a restart.
    let out = follower.apply([normal(1, 4, kv::incr("n"))]).await.unwrap();
    assert_eq!(answers(out), ["2"]);
    drop(follower);
    drop(_f);
    let (_f, mut follower) = open(follower_dir.path());
    let (applied, _) = follower.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 1, 4)));
    assert_eq!(kv::get(follower.db(), "n").as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_snapshot_is_refused_and_changes_nothing() {
    let leader_dir = TempDir::new().unwrap();
    let follower_dir = TempDir::new().unwrap();
    let (_l, mut leader) = open(leader_dir.path());
    let (_f, mut follower) = open(follower_dir.path());
    leader
        .apply([
            normal(1, 1, kv::set("a", "1")),
            normal(1, 2, kv::set("b", "2")),
        ])
        .await
        .unwrap();
    follower
        .apply([normal(1, 1, kv::set("a", "mine"))])
        .await
        .unwrap();
    let snap = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();

    let mut bytes = Vec::new();
    let mut source = snap.snapshot;
    tokio::io::AsyncReadExt::read_to_end(&mut source, &mut bytes)
        .await
        .unwrap();
    // Change the value of "b" (length 1, "2"): only the checksum can tell.
    let at = bytes
        .windows(5)
        .position(|w| w == [0, 0, 0, 1, b'2'])
        .expect("the value of b")
        + 4;
    bytes[at] = b'3';
    let mut receiving = follower.begin_receiving_snapshot().await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut *receiving, &bytes)
        .await
        .unwrap();
    let err = follower
        .install_snapshot(&snap.meta, receiving)
        .await
        .expect_err("a corrupt snapshot must be refused");
    assert!(err.to_string().contains("CRC"), "{err}");
    assert_eq!(kv::get(follower.db(), "a").as_deref(), Some("mine"));
    assert_eq!(kv::get(follower.db(), "b"), None);
    assert!(follower.get_current_snapshot().await.unwrap().is_none());
}
