//! The local blob store against its contract: visibility only after commit, exact ranges,
//! NotFound/OutOfRange, and no temp file left behind by abort, drop or a crash.

use std::path::Path;

use bytes::Bytes;
use coffer_blob::local::LocalBlobStore;
use coffer_blob::{BlobError, BlobId, BlobStore};

fn id(n: u8) -> BlobId {
    let mut id = [0u8; 16];
    id[0] = 0xab;
    id[1] = 0xcd;
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

async fn put(store: &LocalBlobStore, id: &BlobId, data: &[u8], piece: usize) -> u64 {
    let mut w = store.create(id).await.unwrap();
    for part in data.chunks(piece.max(1)) {
        w.append(Bytes::copy_from_slice(part)).await.unwrap();
    }
    w.commit().await.unwrap()
}

#[tokio::test]
async fn write_commit_read_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path()).unwrap();
    // Larger than a write batch, in pieces that do not divide it, so batches are in flight.
    let data = content(9 << 20 | 12345);
    let id = id(1);
    assert_eq!(
        put(&store, &id, &data, (1 << 20) + 16).await,
        data.len() as u64
    );

    assert_eq!(store.len(&id).await.unwrap(), data.len() as u64);
    let path = store.path_of(&id);
    assert_eq!(
        path,
        dir.path()
            .join("ab")
            .join("cd")
            .join("abcd0000000000000000000000000001")
    );
    assert_eq!(std::fs::read(&path).unwrap(), data);
    assert_eq!(tmp_entries(dir.path()), 0);

    let n = data.len() as u64;
    for (offset, len) in [
        (0, n),
        (0, 1),
        (1, 1000),
        (4 << 20, 5 << 20),
        (n - 1, 1),
        (n, 0),
        (7, 0),
    ] {
        let got = store.read(&id, offset, len).await.unwrap();
        assert_eq!(&got[..], &data[offset as usize..(offset + len) as usize]);
    }
    for (offset, len) in [(0, n + 1), (n, 1), (n + 1, 0), (u64::MAX, 2), (1, u64::MAX)] {
        assert!(
            matches!(
                store.read(&id, offset, len).await,
                Err(BlobError::OutOfRange(_))
            ),
            "read({offset}, {len}) should be out of range"
        );
    }
}

#[tokio::test]
async fn small_and_empty_appends() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path()).unwrap();
    let data = content(10_000);
    let mut w = store.create(&id(2)).await.unwrap();
    w.append(Bytes::new()).await.unwrap();
    for b in &data {
        w.append(Bytes::copy_from_slice(std::slice::from_ref(b)))
            .await
            .unwrap();
    }
    w.append(Bytes::new()).await.unwrap();
    assert_eq!(w.commit().await.unwrap(), 10_000);
    assert_eq!(&store.read(&id(2), 0, 10_000).await.unwrap()[..], &data[..]);
}

#[tokio::test]
async fn empty_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path()).unwrap();
    assert_eq!(
        store.create(&id(3)).await.unwrap().commit().await.unwrap(),
        0
    );
    assert_eq!(store.len(&id(3)).await.unwrap(), 0);
    assert!(store.read(&id(3), 0, 0).await.unwrap().is_empty());
    assert!(matches!(
        store.read(&id(3), 0, 1).await,
        Err(BlobError::OutOfRange(_))
    ));
}

#[tokio::test]
async fn uncommitted_blob_is_invisible() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path()).unwrap();
    let mut w = store.create(&id(4)).await.unwrap();
    w.append(Bytes::from(content(5 << 20))).await.unwrap();
    assert_eq!(tmp_entries(dir.path()), 1);
    assert!(matches!(
        store.read(&id(4), 0, 1).await,
        Err(BlobError::NotFound(_))
    ));
    assert!(matches!(
        store.len(&id(4)).await,
        Err(BlobError::NotFound(_))
    ));
    assert!(store.list().await.unwrap().is_empty());
    assert!(!store.path_of(&id(4)).exists());
    assert_eq!(w.commit().await.unwrap(), 5 << 20);
    assert_eq!(store.len(&id(4)).await.unwrap(), 5 << 20);
}

#[tokio::test]
async fn missing_blob_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path()).unwrap();
    let err = store.read(&id(5), 0, 0).await.unwrap_err();
    match err {
        BlobError::NotFound(name) => assert_eq!(name, coffer_blob::blob_name(&id(5))),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(matches!(
        store.len(&id(5)).await,
        Err(BlobError::NotFound(_))
    ));
}

#[tokio::test]
async fn delete_removes_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path()).unwrap();
    put(&store, &id(6), b"doomed", 3).await;
    put(&store, &id(7), b"kept", 3).await;
    store.delete(&id(6)).await.unwrap();
    assert!(matches!(
        store.len(&id(6)).await,
        Err(BlobError::NotFound(_))
    ));
    assert!(!store.path_of(&id(6)).exists());
    store.delete(&id(6)).await.unwrap();
    store.delete(&id(99)).await.unwrap();
    assert_eq!(&store.read(&id(7), 0, 4).await.unwrap()[..], b"kept");
}

#[tokio::test]
async fn abort_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path()).unwrap();
    let mut w = store.create(&id(8)).await.unwrap();
    w.append(Bytes::from(content(6 << 20))).await.unwrap();
    w.append(Bytes::from_static(b"tail")).await.unwrap();
    w.abort().await;
    assert_eq!(tmp_entries(dir.path()), 0);
    assert!(!store.path_of(&id(8)).exists());
    assert!(store.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn dropped_writer_removes_its_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path()).unwrap();
    let mut w = store.create(&id(9)).await.unwrap();
    // A batch is still in flight when the writer is dropped.
    w.append(Bytes::from(content(5 << 20))).await.unwrap();
    assert_eq!(tmp_entries(dir.path()), 1);
    drop(w);
    assert_eq!(tmp_entries(dir.path()), 0);
    assert!(matches!(
        store.len(&id(9)).await,
        Err(BlobError::NotFound(_))
    ));
}

#[tokio::test]
async fn reopen_removes_temp_files_and_keeps_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(100_000);
    {
        let store = LocalBlobStore::open(dir.path()).unwrap();
        put(&store, &id(10), &data, 4096).await;
    }
    // What a crash mid-write leaves behind.
    std::fs::write(dir.path().join("tmp").join("abcd.partial"), b"half a blob").unwrap();
    std::fs::create_dir(dir.path().join("tmp").join("stray")).unwrap();
    let path_before = {
        let store = LocalBlobStore::open(dir.path()).unwrap();
        assert_eq!(tmp_entries(dir.path()), 0);
        assert_eq!(
            &store.read(&id(10), 0, 100_000).await.unwrap()[..],
            &data[..]
        );
        assert_eq!(store.list().await.unwrap(), vec![id(10)]);
        store.path_of(&id(10))
    };
    assert_eq!(std::fs::read(path_before).unwrap(), data);
}

#[tokio::test]
async fn list_walks_the_fanout_and_ignores_strays() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path()).unwrap();
    let mut ids: Vec<BlobId> = (0u8..20).map(|n| [n.wrapping_mul(37); 16]).collect();
    ids.push(id(11));
    for i in &ids {
        put(&store, i, i, 16).await;
    }
    std::fs::write(dir.path().join("README"), b"not a blob").unwrap();
    std::fs::write(store.path_of(&id(11)).with_file_name("junk"), b"").unwrap();
    std::fs::create_dir(dir.path().join("zz")).unwrap();
    ids.sort();
    assert_eq!(store.list().await.unwrap(), ids);
    for i in &ids {
        assert_eq!(&store.read(i, 0, 16).await.unwrap()[..], &i[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_into_one_fanout_directory() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalBlobStore::open(dir.path()).unwrap();
    let tasks: Vec<_> = (0u8..8)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let data = content(300_000 + usize::from(n));
                put(&store, &id(n), &data, 65_536).await;
                data
            })
        })
        .collect();
    for (n, task) in tasks.into_iter().enumerate() {
        let data = task.await.unwrap();
        let got = store
            .read(&id(n as u8), 0, data.len() as u64)
            .await
            .unwrap();
        assert_eq!(&got[..], &data[..]);
    }
    assert_eq!(store.list().await.unwrap().len(), 8);
    assert_eq!(tmp_entries(dir.path()), 0);
}
