//! `MetaClient`: how gateways use the metadata role, in process or over gRPC.

use async_trait::async_trait;

use crate::error::MetaError;
use crate::types::*;

/// Ids one [`MetaClient::blob_references`] call may ask about.
pub const MAX_BLOB_REFERENCE_IDS: usize = 1000;

/// Refuses a [`MetaClient::blob_references`] call asking about too many ids.
pub(crate) fn check_blob_reference_ids(ids: &[[u8; 16]]) -> Result<(), MetaError> {
    if ids.len() > MAX_BLOB_REFERENCE_IDS {
        return Err(MetaError::Invalid(format!(
            "asked about {} blobs; at most {MAX_BLOB_REFERENCE_IDS} per call",
            ids.len()
        )));
    }
    Ok(())
}

/// The metadata role's interface. Writes go through [`MetaClient::apply`] (one command, applied
/// atomically and durably before it returns); reads are linearizable.
#[async_trait]
pub trait MetaClient: Send + Sync + 'static {
    /// Applies a command; returns once it is durable and applied.
    async fn apply(&self, command: Command) -> Result<CommandOutput, MetaError>;
    /// Applies several commands in one durable write (one Raft entry later); each gets its own
    /// result, and one failing does not undo the others.
    async fn apply_batch(
        &self,
        commands: Vec<Command>,
    ) -> Result<Vec<Result<CommandOutput, MetaError>>, MetaError>;
    /// A bucket, or `NoSuchBucket`.
    async fn get_bucket(&self, bucket: &str) -> Result<BucketRecord, MetaError>;
    /// All buckets, by name.
    async fn list_buckets(&self) -> Result<Vec<BucketRecord>, MetaError>;
    /// A version: the current one when `version_id` is `None` (which may be a delete marker),
    /// or `NoSuchKey` / `NoSuchVersion`.
    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectVersion, MetaError>;
    /// Current versions (delete markers hidden), with delimiter grouping.
    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> Result<ListPage, MetaError>;
    /// All versions and delete markers.
    async fn list_object_versions(
        &self,
        bucket: &str,
        query: &VersionQuery,
    ) -> Result<VersionPage, MetaError>;
    /// A multipart upload, or `NoSuchUpload`.
    async fn get_upload(&self, bucket: &str, upload_id: &str)
        -> Result<MultipartUpload, MetaError>;
    /// Parts of an upload with number > `part_number_marker`, at most `max_parts`; and whether more exist.
    async fn list_parts(
        &self,
        bucket: &str,
        upload_id: &str,
        part_number_marker: u32,
        max_parts: usize,
    ) -> Result<(Vec<UploadedPart>, bool), MetaError>;
    /// Uploads in progress.
    async fn list_uploads(
        &self,
        bucket: &str,
        query: &UploadQuery,
    ) -> Result<UploadPage, MetaError>;
    /// Reads a small value from the global config space (e.g. `cluster/sse-s3-key-arn`).
    async fn get_config(&self, name: &str) -> Result<Option<Vec<u8>>, MetaError>;
    /// A job record, if it exists.
    async fn get_job(&self, id: &str) -> Result<Option<crate::job::JobRecord>, MetaError>;
    /// Every job record, by id.
    async fn list_jobs(&self) -> Result<Vec<crate::job::JobRecord>, MetaError>;
    /// For each blob id, whether an object version or an uploaded part references it (for a
    /// blob node's orphan sweep). At most [`MAX_BLOB_REFERENCE_IDS`] ids.
    async fn blob_references(&self, ids: &[[u8; 16]]) -> Result<Vec<bool>, MetaError>;
}
