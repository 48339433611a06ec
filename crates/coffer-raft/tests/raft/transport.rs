//! The gRPC transport against one node: a snapshot sent as one stream and a snapshot sent in
//! openraft's chunks both install, data included.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use coffer_raft::network::NetworkFactory;
use coffer_raft::types::{Entry, SnapshotMeta, Vote};
use coffer_raft::{AppRequest, BasicNode, RaftConfig, RaftNode};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::InstallSnapshotRequest;
use openraft::storage::RaftStateMachine;
use openraft::testing::log_id;
use openraft::{EntryPayload, Membership, RaftSnapshotBuilder};
use tempfile::TempDir;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::kv::{self, KvApp};
use crate::storage;

/// A snapshot of 50 keys and a membership this node is not part of (so that it stays quiet).
async fn snapshot(dir: &std::path::Path) -> (SnapshotMeta, Vec<u8>) {
    let (_log, mut sm) = storage::open(dir);
    let mut entries = vec![Entry {
        log_id: log_id(3, 9, 1),
        payload: EntryPayload::Membership(Membership::new(vec![BTreeSet::from([8, 9])], ())),
    }];
    for i in 0..50u64 {
        entries.push(Entry {
            log_id: log_id(3, 9, i + 2),
            payload: EntryPayload::Normal(AppRequest(kv::set(
                &format!("key-{i:02}"),
                &format!("value-{i:02}-padding-padding"),
            ))),
        });
    }
    sm.apply(entries).await.unwrap();
    let snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let mut bytes = Vec::new();
    let mut file = snap.snapshot;
    file.read_to_end(&mut bytes).await.unwrap();
    (snap.meta, bytes)
}

async fn fresh_node(dir: &std::path::Path) -> (RaftNode<KvApp>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let node = RaftNode::start(1, dir, listener, Arc::new(KvApp), RaftConfig::default())
        .await
        .unwrap();
    (node, addr)
}

async fn assert_installed(node: &RaftNode<KvApp>, meta: &SnapshotMeta) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.metrics().snapshot != meta.last_log_id {
        assert!(Instant::now() < deadline, "the snapshot was not installed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(node.metrics().last_applied, meta.last_log_id);
    assert_eq!(kv::dump(node.db()).len(), 50);
    assert_eq!(
        kv::get(node.db(), "key-49").as_deref(),
        Some("value-49-padding-padding")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_install_over_grpc_streamed_or_chunked() {
    let root = TempDir::new().unwrap();
    let (meta, bytes) = snapshot(&root.path().join("source")).await;
    let leader_vote = Vote::new_committed(3, 9);
    let option = || RPCOption::new(Duration::from_secs(5));

    // One client stream.
    let (node, addr) = fresh_node(&root.path().join("streamed")).await;
    let mut factory = NetworkFactory::new(9, Duration::from_secs(1));
    let mut conn = factory.new_client(1, &BasicNode::new(&addr)).await;
    let path = root.path().join("snapshot-copy");
    std::fs::write(&path, &bytes).unwrap();
    let snapshot = openraft::Snapshot {
        meta: meta.clone(),
        snapshot: Box::new(tokio::fs::File::open(&path).await.unwrap()),
    };
    let resp = conn
        .full_snapshot(leader_vote, snapshot, futures::future::pending(), option())
        .await
        .unwrap();
    assert_eq!(resp.vote, leader_vote);
    assert_installed(&node, &meta).await;
    node.shutdown().await.unwrap();

    // openraft's chunks, one RPC each.
    let (node, addr) = fresh_node(&root.path().join("chunked")).await;
    let mut conn = factory.new_client(1, &BasicNode::new(&addr)).await;
    let chunks: Vec<&[u8]> = bytes.chunks(700).collect();
    assert!(chunks.len() > 2, "{} bytes", bytes.len());
    let mut offset = 0;
    for (i, chunk) in chunks.iter().enumerate() {
        let req = InstallSnapshotRequest {
            vote: leader_vote,
            meta: meta.clone(),
            offset,
            data: chunk.to_vec(),
            done: i + 1 == chunks.len(),
        };
        conn.install_snapshot(req, option()).await.unwrap();
        offset += chunk.len() as u64;
    }
    assert_installed(&node, &meta).await;
    node.shutdown().await.unwrap();
}
