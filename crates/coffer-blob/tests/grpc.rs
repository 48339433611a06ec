//! The blob node's gRPC API through `GrpcBlobStore`, against a real server on a loopback port:
//! the same contract as the local store (visibility only after commit, exact ranges,
//! NotFound/OutOfRange), nothing left behind by an abort or a broken stream, and Unavailable
//! while the node is down, then recovery once it is back on the same address.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use coffer_blob::grpc::pb::blob_client::BlobClient;
use coffer_blob::grpc::pb::{self, write_frame::Frame};
use coffer_blob::grpc::{self, GrpcBlobConfig, GrpcBlobStore, FRAME_BYTES};
use coffer_blob::local::LocalBlobStore;
use coffer_blob::{BlobError, BlobId, BlobStore};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

fn id(n: u8) -> BlobId {
    let mut id = [0u8; 16];
    id[0] = 0x5e;
    id[15] = n;
    id
}

/// Deterministic, position-dependent content, so a misplaced range shows.
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
}

fn tmp_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("tmp")).unwrap().count()
}

/// A blob node on a loopback port.
struct Node {
    addr: SocketAddr,
    store: LocalBlobStore,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    async fn start(dir: &Path, addr: SocketAddr) -> Node {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let store = LocalBlobStore::open(dir).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(grpc_serve(store.clone(), listener, rx));
        Node {
            addr,
            store,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the node stops")
            .unwrap();
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn grpc_serve(store: LocalBlobStore, listener: TcpListener, stop: oneshot::Receiver<()>) {
    grpc::serve(store, listener, async {
        let _ = stop.await;
    })
    .await
    .expect("gRPC server");
}

fn client(endpoint: String) -> GrpcBlobStore {
    GrpcBlobStore::connect_lazy(GrpcBlobConfig {
        endpoint,
        call_timeout: Duration::from_secs(3),
        write_timeout: Duration::from_secs(3),
        ..Default::default()
    })
    .unwrap()
}

async fn put(store: &GrpcBlobStore, id: &BlobId, data: &[u8], piece: usize) -> u64 {
    let mut w = store.create(id).await.unwrap();
    for part in data.chunks(piece.max(1)) {
        w.append(Bytes::copy_from_slice(part)).await.unwrap();
    }
    w.commit().await.unwrap()
}

/// Polls `f` until it holds, for at most 5 s.
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test]
async fn round_trip_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), loopback()).await;
    let store = client(node.endpoint());
    // Several frames, appended in pieces larger than a frame that do not divide it.
    let data = content(7 << 20 | 4321);
    let n = data.len() as u64;
    let blob = id(1);
    assert_eq!(put(&store, &blob, &data, FRAME_BYTES * 3 / 2 + 7).await, n);
    assert_eq!(store.len(&blob).await.unwrap(), n);
    // What the node keeps is exactly what was sent.
    assert_eq!(std::fs::read(node.store.path_of(&blob)).unwrap(), data);
    assert_eq!(tmp_entries(dir.path()), 0);

    let frame = FRAME_BYTES as u64;
    for (offset, len) in [
        (0, n),
        (0, 1),
        (1, 1000),
        (frame - 1, 2),
        (frame, frame),
        (frame - 3, frame + 6),
        (3 << 20, 4 << 20),
        (n - 1, 1),
        (n, 0),
        (7, 0),
    ] {
        let got = store.read(&blob, offset, len).await.unwrap();
        assert_eq!(
            &got[..],
            &data[offset as usize..(offset + len) as usize],
            "read({offset}, {len})"
        );
    }
    for (offset, len) in [(0, n + 1), (n, 1), (n + 1, 0), (u64::MAX, 2), (1, u64::MAX)] {
        assert!(
            matches!(
                store.read(&blob, offset, len).await,
                Err(BlobError::OutOfRange(_))
            ),
            "read({offset}, {len}) should be out of range"
        );
    }

    // Small and empty appends, and an empty blob.
    let mut w = store.create(&id(2)).await.unwrap();
    w.append(Bytes::new()).await.unwrap();
    for b in b"tiny" {
        w.append(Bytes::copy_from_slice(std::slice::from_ref(b)))
            .await
            .unwrap();
    }
    assert_eq!(w.commit().await.unwrap(), 4);
    assert_eq!(&store.read(&id(2), 0, 4).await.unwrap()[..], b"tiny");
    assert_eq!(
        store.create(&id(3)).await.unwrap().commit().await.unwrap(),
        0
    );
    assert_eq!(store.len(&id(3)).await.unwrap(), 0);
    assert!(store.read(&id(3), 0, 0).await.unwrap().is_empty());

    let stat = store.stat().await.unwrap();
    assert_eq!(stat.writes_committed, 3);
    assert_eq!(stat.writes_in_progress, 0);
    node.stop().await;
}

#[tokio::test]
async fn not_found_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), loopback()).await;
    let store = client(node.endpoint());
    match store.read(&id(5), 0, 0).await {
        Err(BlobError::NotFound(m)) => assert!(m.contains(&coffer_blob::blob_name(&id(5))), "{m}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(matches!(
        store.len(&id(5)).await,
        Err(BlobError::NotFound(_))
    ));

    put(&store, &id(6), b"doomed", 4).await;
    put(&store, &id(7), b"kept", 4).await;
    store.delete(&id(6)).await.unwrap();
    assert!(matches!(
        store.len(&id(6)).await,
        Err(BlobError::NotFound(_))
    ));
    assert!(!node.store.path_of(&id(6)).exists());
    // Deleting again, or a blob that never was, is not an error.
    store.delete(&id(6)).await.unwrap();
    store.delete(&id(99)).await.unwrap();
    assert_eq!(&store.read(&id(7), 0, 4).await.unwrap()[..], b"kept");
    node.stop().await;
}

#[tokio::test]
async fn abort_and_drop_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), loopback()).await;
    let store = client(node.endpoint());

    let mut w = store.create(&id(8)).await.unwrap();
    w.append(Bytes::from(content(3 << 20))).await.unwrap();
    let local = node.store.clone();
    // The node has the write open (a temp file) before the abort.
    eventually("the write reaches the node", || {
        tmp_entries(dir.path()) == 1
    })
    .await;
    w.abort().await;
    eventually("the aborted write's temp file is gone", || {
        tmp_entries(dir.path()) == 0
    })
    .await;
    assert!(matches!(
        store.len(&id(8)).await,
        Err(BlobError::NotFound(_))
    ));

    // A request cancelled mid-write drops its writer without abort().
    let mut w = store.create(&id(9)).await.unwrap();
    w.append(Bytes::from(content(2 << 20))).await.unwrap();
    eventually("the write reaches the node", || {
        tmp_entries(dir.path()) == 1
    })
    .await;
    drop(w);
    eventually("the dropped write's temp file is gone", || {
        tmp_entries(dir.path()) == 0
    })
    .await;
    assert!(local.list().await.unwrap().is_empty());
    assert_eq!(store.stat().await.unwrap().writes_in_progress, 0);
    node.stop().await;
}

/// Drives the wire protocol directly: streams that break, end without a commit marker, or
/// break the frame rules keep nothing.
#[tokio::test]
async fn broken_and_malformed_streams_keep_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), loopback()).await;
    let raw = BlobClient::connect(node.endpoint()).await.unwrap();
    let header = |n: u8| pb::WriteFrame {
        frame: Some(Frame::Header(pb::WriteHeader {
            blob_id: Bytes::copy_from_slice(&id(n)),
        })),
    };
    let data = |len: usize| pb::WriteFrame {
        frame: Some(Frame::Data(Bytes::from(content(len)))),
    };
    let commit = |length: u64| pb::WriteFrame {
        frame: Some(Frame::Commit(pb::WriteCommit { length })),
    };

    // The client goes away mid-write: the stream is reset under the node.
    let (tx, rx) = mpsc::channel(8);
    tx.send(header(10)).await.unwrap();
    tx.send(data(FRAME_BYTES)).await.unwrap();
    tx.send(data(1000)).await.unwrap();
    let mut c = raw.clone();
    let call = tokio::spawn(async move { c.write(ReceiverStream::new(rx)).await });
    eventually("the write reaches the node", || {
        tmp_entries(dir.path()) == 1
    })
    .await;
    call.abort();
    drop(tx);
    eventually("the broken write's temp file is gone", || {
        tmp_entries(dir.path()) == 0
    })
    .await;

    // The stream ends cleanly but without a commit marker.
    let status = raw
        .clone()
        .write(futures::stream::iter(vec![header(11), data(5000)]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");

    // A commit whose length is not what was received.
    let status = raw
        .clone()
        .write(futures::stream::iter(vec![
            header(12),
            data(10),
            commit(11),
        ]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    // No header first; a bad id; a second header; an oversized frame (refused by the limit).
    for frames in [
        vec![data(10), commit(10)],
        vec![
            pb::WriteFrame {
                frame: Some(Frame::Header(pb::WriteHeader {
                    blob_id: Bytes::from_static(b"short"),
                })),
            },
            commit(0),
        ],
        vec![header(13), header(13), commit(0)],
        vec![header(14), data(FRAME_BYTES + (128 << 10)), commit(0)],
    ] {
        let status = raw
            .clone()
            .write(futures::stream::iter(frames))
            .await
            .unwrap_err();
        assert!(
            matches!(
                status.code(),
                tonic::Code::InvalidArgument | tonic::Code::OutOfRange
            ),
            "{status:?}"
        );
    }

    assert_eq!(tmp_entries(dir.path()), 0);
    assert!(node.store.list().await.unwrap().is_empty());
    node.stop().await;
}

#[tokio::test]
async fn node_down_is_unavailable_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), loopback()).await;
    let addr = node.addr;
    let store = client(node.endpoint());
    put(&store, &id(20), b"before", 6).await;
    node.stop().await;

    // Every call fails with Unavailable, within its deadline.
    let started = Instant::now();
    for result in [
        store.read(&id(20), 0, 6).await.map(drop),
        store.len(&id(20)).await.map(drop),
        store.delete(&id(20)).await,
        store.stat().await.map(drop),
    ] {
        assert!(
            matches!(result, Err(BlobError::Unavailable(_))),
            "{result:?}"
        );
    }
    let write = async {
        let mut w = store.create(&id(21)).await?;
        w.append(Bytes::from(content(3 << 20))).await?;
        w.commit().await
    };
    assert!(matches!(write.await, Err(BlobError::Unavailable(_))));
    assert!(started.elapsed() < Duration::from_secs(15));

    // Back on the same address: the same client works again, and the blob is still there.
    let node = Node::start(dir.path(), addr).await;
    assert_eq!(&store.read(&id(20), 0, 6).await.unwrap()[..], b"before");
    assert_eq!(
        put(&store, &id(22), &content(100_000), 30_000).await,
        100_000
    );
    assert_eq!(
        &store.read(&id(22), 0, 100_000).await.unwrap()[..],
        &content(100_000)[..]
    );
    node.stop().await;
}

/// A gateway may start before its node: the client connects on first use.
#[tokio::test]
async fn client_created_before_the_node() {
    let dir = tempfile::tempdir().unwrap();
    // Reserve a port, then release it for the node.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let store = client(format!("http://{addr}"));
    assert!(matches!(
        store.len(&id(30)).await,
        Err(BlobError::Unavailable(_))
    ));
    let node = Node::start(dir.path(), addr).await;
    assert_eq!(put(&store, &id(30), b"late", 2).await, 4);
    node.stop().await;
}

#[tokio::test]
async fn bad_endpoint_is_refused() {
    assert!(GrpcBlobStore::connect_lazy(GrpcBlobConfig {
        endpoint: "not a uri".into(),
        ..Default::default()
    })
    .is_err());
}
