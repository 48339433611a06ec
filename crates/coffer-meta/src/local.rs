//! [`LocalMeta`]: the metadata role in process, without Raft (single writer).

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::client::MetaClient;
use crate::error::MetaError;
use crate::read::Reader;
use crate::state_machine::StateMachine;
use crate::types::*;

/// A [`MetaClient`] over a local [`StateMachine`]: commands get consecutive log indexes
/// (after the state's last applied one) and are applied one call at a time; each call is one
/// synced RocksDB write. Reads use a snapshot each. RocksDB work runs on tokio's blocking pool.
#[derive(Debug, Clone)]
pub struct LocalMeta {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sm: StateMachine,
    /// Held while a log index is chosen and applied, so indexes are consecutive.
    writer: Mutex<()>,
}

impl LocalMeta {
    /// Opens (or creates) the state machine at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, MetaError> {
        Ok(Self::new(StateMachine::open(path)?))
    }

    /// Wraps an opened state machine.
    pub fn new(sm: StateMachine) -> Self {
        Self {
            inner: Arc::new(Inner {
                sm,
                writer: Mutex::new(()),
            }),
        }
    }

    /// The state machine.
    pub fn state_machine(&self) -> &StateMachine {
        &self.inner.sm
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, MetaError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| MetaError::Storage(format!("metadata task failed: {e}")))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Reader<'_>) -> Result<T, MetaError> + Send + 'static,
    ) -> Result<T, MetaError> {
        self.blocking(move |inner| f(&inner.sm.reader())).await
    }
}

impl Inner {
    fn apply_batch(
        &self,
        commands: &[Command],
    ) -> Result<Vec<Result<CommandOutput, MetaError>>, MetaError> {
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let index = self.sm.last_applied()? + 1;
        self.sm.apply_batch(index, commands)
    }
}

#[async_trait]
impl MetaClient for LocalMeta {
    async fn apply(&self, command: Command) -> Result<CommandOutput, MetaError> {
        self.blocking(move |inner| {
            inner
                .apply_batch(std::slice::from_ref(&command))?
                .pop()
                .expect("one result per command")
        })
        .await
    }

    async fn apply_batch(
        &self,
        commands: Vec<Command>,
    ) -> Result<Vec<Result<CommandOutput, MetaError>>, MetaError> {
        self.blocking(move |inner| inner.apply_batch(&commands))
            .await
    }

    async fn get_bucket(&self, bucket: &str) -> Result<BucketRecord, MetaError> {
        let bucket = bucket.to_owned();
        self.read(move |r| r.get_bucket(&bucket)).await
    }

    async fn list_buckets(&self) -> Result<Vec<BucketRecord>, MetaError> {
        self.read(|r| r.list_buckets()).await
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectVersion, MetaError> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        let version_id = version_id.map(str::to_owned);
        self.read(move |r| r.get_object(&bucket, &key, version_id.as_deref()))
            .await
    }

    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> Result<ListPage, MetaError> {
        let (bucket, query) = (bucket.to_owned(), query.clone());
        self.read(move |r| r.list_objects(&bucket, &query)).await
    }

    async fn list_object_versions(
        &self,
        bucket: &str,
        query: &VersionQuery,
    ) -> Result<VersionPage, MetaError> {
        let (bucket, query) = (bucket.to_owned(), query.clone());
        self.read(move |r| r.list_object_versions(&bucket, &query))
            .await
    }

    async fn get_upload(
        &self,
        bucket: &str,
        upload_id: &str,
    ) -> Result<MultipartUpload, MetaError> {
        let (bucket, upload_id) = (bucket.to_owned(), upload_id.to_owned());
        self.read(move |r| r.get_upload(&bucket, &upload_id)).await
    }

    async fn list_parts(
        &self,
        bucket: &str,
        upload_id: &str,
        part_number_marker: u32,
        max_parts: usize,
    ) -> Result<(Vec<UploadedPart>, bool), MetaError> {
        let (bucket, upload_id) = (bucket.to_owned(), upload_id.to_owned());
        self.read(move |r| r.list_parts(&bucket, &upload_id, part_number_marker, max_parts))
            .await
    }

    async fn list_uploads(
        &self,
        bucket: &str,
        query: &UploadQuery,
    ) -> Result<UploadPage, MetaError> {
        let (bucket, query) = (bucket.to_owned(), query.clone());
        self.read(move |r| r.list_uploads(&bucket, &query)).await
    }

    async fn get_config(&self, name: &str) -> Result<Option<Vec<u8>>, MetaError> {
        let name = name.to_owned();
        self.read(move |r| r.get_config(&name)).await
    }

    async fn get_job(&self, id: &str) -> Result<Option<crate::job::JobRecord>, MetaError> {
        let id = id.to_owned();
        self.read(move |r| r.get_job(&id)).await
    }

    async fn list_jobs(&self) -> Result<Vec<crate::job::JobRecord>, MetaError> {
        self.read(|r| r.list_jobs()).await
    }

    async fn blob_references(&self, ids: &[[u8; 16]]) -> Result<Vec<bool>, MetaError> {
        crate::client::check_blob_reference_ids(ids)?;
        let ids = ids.to_vec();
        self.read(move |r| r.blob_references(&ids)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testutil::{blob, bucket, delete, put, version};

    #[tokio::test]
    async fn applies_reads_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let meta = LocalMeta::open(dir.path()).unwrap();
            meta.apply(Command::CreateBucket(bucket("b", Versioning::Enabled)))
                .await
                .unwrap();
            let results = meta
                .apply_batch(vec![
                    put("b", "a", "v1", 1),
                    put("b", "a", "v1", 2), // duplicate version id: fails alone
                    put("b", "a", "v2", 3),
                    Command::PutConfig {
                        name: "cluster/k".into(),
                        value: b"v".to_vec(),
                    },
                ])
                .await
                .unwrap();
            assert!(results[0].is_ok());
            assert!(matches!(results[1], Err(MetaError::Invalid(_))));
            // The third command saw the first one's effects: v2 is newer.
            assert!(results[2].as_ref().unwrap().seq > results[0].as_ref().unwrap().seq);
            assert_eq!(meta.state_machine().last_applied().unwrap(), 5);
        }
        let meta = LocalMeta::open(dir.path()).unwrap();
        assert_eq!(meta.state_machine().last_applied().unwrap(), 5);
        let cur = meta.get_object("b", "a", None).await.unwrap();
        assert_eq!(
            (cur.version_id.as_str(), cur.parts[0].blob_id),
            ("v2", version("a", "", 3).parts[0].blob_id)
        );
        assert_eq!(
            meta.get_object("b", "a", Some("v1"))
                .await
                .unwrap()
                .version_id,
            "v1"
        );
        assert_eq!(
            meta.get_config("cluster/k").await.unwrap(),
            Some(b"v".to_vec())
        );
        assert_eq!(meta.list_buckets().await.unwrap().len(), 1);
        let page = meta
            .list_objects(
                "b",
                &ListQuery {
                    max_keys: 10,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(page.objects.len(), 1);
        // Indexes continue after the reopened state's last applied one.
        meta.apply(put("b", "c", "v3", 4)).await.unwrap();
        assert_eq!(meta.state_machine().last_applied().unwrap(), 6);
        assert!(matches!(
            meta.get_upload("b", "x").await,
            Err(MetaError::NoSuchUpload(_))
        ));
        assert!(matches!(
            meta.get_bucket("x").await,
            Err(MetaError::NoSuchBucket(_))
        ));
    }

    #[tokio::test]
    async fn concurrent_writers_are_serialized() {
        let dir = tempfile::tempdir().unwrap();
        let meta = LocalMeta::open(dir.path()).unwrap();
        meta.apply(Command::CreateBucket(bucket("b", Versioning::Enabled)))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..16u32)
            .map(|i| {
                let meta = meta.clone();
                tokio::spawn(
                    async move { meta.apply(put("b", "k", &format!("v{i}"), i + 1)).await },
                )
            })
            .collect();
        let mut seqs = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap().unwrap().seq);
        }
        seqs.sort();
        seqs.dedup();
        assert_eq!(seqs.len(), 16);
        assert_eq!(meta.state_machine().last_applied().unwrap(), 17);
        let page = meta
            .list_object_versions(
                "b",
                &VersionQuery {
                    max_keys: 100,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(page.versions.len(), 16);
        assert_eq!(
            page.versions.iter().filter(|(_, latest)| *latest).count(),
            1
        );
    }

    #[tokio::test]
    async fn blob_references_follow_versions_across_buckets() {
        let dir = tempfile::tempdir().unwrap();
        let meta = LocalMeta::open(dir.path()).unwrap();
        for (name, versioning) in [("b", Versioning::Enabled), ("c", Versioning::Unversioned)] {
            meta.apply(Command::CreateBucket(bucket(name, versioning)))
                .await
                .unwrap();
        }
        meta.apply(put("b", "a", "v1", 1)).await.unwrap();
        meta.apply(put("c", "x", "null", 2)).await.unwrap();
        let ids = [blob(1), blob(2), blob(3)];
        assert_eq!(
            meta.blob_references(&ids).await.unwrap(),
            [true, true, false]
        );
        // An overwrite in the unversioned bucket frees blob 2; a delete marker keeps blob 1.
        meta.apply(put("c", "x", "null", 3)).await.unwrap();
        meta.apply(delete("b", "a", None, "m1")).await.unwrap();
        assert_eq!(
            meta.blob_references(&ids).await.unwrap(),
            [true, false, true]
        );
        // Deleting the version itself frees blob 1.
        meta.apply(delete("b", "a", Some("v1"), "")).await.unwrap();
        assert_eq!(
            meta.blob_references(&ids).await.unwrap(),
            [false, false, true]
        );
        assert!(meta.blob_references(&[]).await.unwrap().is_empty());
        let too_many = vec![blob(1); crate::MAX_BLOB_REFERENCE_IDS + 1];
        assert!(matches!(
            meta.blob_references(&too_many).await,
            Err(MetaError::Invalid(_))
        ));
    }
}
