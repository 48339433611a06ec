//! What travels in Raft entries and in `proto/meta.proto`'s bytes fields: a [`Proposal`] of
//! commands and its results, a [`ReadRequest`] and its [`ReadAnswer`]. All are
//! [`crate::codec`] values (a format byte, then MessagePack with field names).
//!
//! [`Remote`] is what the Raft-backed clients ([`super::RaftMeta`], [`super::GrpcMetaClient`])
//! implement: propose a batch of commands, run a read. Every [`MetaClient`] method is written
//! once on top of it.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::client::MetaClient;
use crate::codec;
use crate::error::MetaError;
use crate::read::Reader;
use crate::types::*;

/// The content of one Raft entry: commands applied in order, each seeing the ones before it.
///
/// A proposal with a [`RequestId`] is applied at most once however often it is proposed: the
/// state machine records the ids it applied with their answers, and answers a proposal whose id
/// it knows with the recorded answer, without applying it again (see `super::dedup`). That is
/// what lets a client retry a write whose outcome it does not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// The commands.
    pub commands: Vec<Command>,
    /// The id every attempt of this proposal carries; `None` (a proposal of an older build):
    /// applied each time it is committed.
    #[serde(default)]
    pub request: Option<RequestId>,
    /// When the member that put the proposal in the log received it (ms since the Unix epoch,
    /// its wall clock; 0 = not stamped). It is part of the entry, so every member applying the
    /// entry sees the same value: the request records expire by it, never by the clock of the
    /// member applying.
    #[serde(default)]
    pub proposed_ms: u64,
}

impl Proposal {
    /// A proposal of `commands` with a new random request id.
    pub fn new(commands: Vec<Command>) -> Self {
        Self {
            commands,
            request: Some(RequestId::random()),
            proposed_ms: 0,
        }
    }

    /// Stamps the proposal with the wall clock of the member putting it in the log.
    pub fn stamp(&mut self) {
        self.proposed_ms = chrono::Utc::now().timestamp_millis().max(0) as u64;
    }
}

/// The id of a write request: 128 random bits, the same for every attempt of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestId(pub [u8; 16]);

impl RequestId {
    /// A new random id (UUID v4 bits).
    pub fn random() -> Self {
        Self(*uuid::Uuid::new_v4().as_bytes())
    }
}

/// The results of one command each.
pub type CommandResults = Vec<Result<CommandOutput, MetaError>>;

/// The answer to a [`Proposal`]: an outer error rejects the whole entry (it does not decode),
/// leaving the state unchanged.
pub type ProposalAnswer = Result<CommandResults, MetaError>;

/// A read of the state, as `MetaClient`'s read methods ask for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReadRequest {
    /// [`MetaClient::get_bucket`].
    GetBucket {
        /// Bucket.
        bucket: String,
    },
    /// [`MetaClient::list_buckets`].
    ListBuckets,
    /// [`MetaClient::get_object`].
    GetObject {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Version (`None` = current).
        version_id: Option<String>,
    },
    /// [`MetaClient::list_objects`].
    ListObjects {
        /// Bucket.
        bucket: String,
        /// Query.
        query: ListQuery,
    },
    /// [`MetaClient::list_object_versions`].
    ListObjectVersions {
        /// Bucket.
        bucket: String,
        /// Query.
        query: VersionQuery,
    },
    /// [`MetaClient::get_upload`].
    GetUpload {
        /// Bucket.
        bucket: String,
        /// Upload ID.
        upload_id: String,
    },
    /// [`MetaClient::list_parts`].
    ListParts {
        /// Bucket.
        bucket: String,
        /// Upload ID.
        upload_id: String,
        /// Parts after this number.
        part_number_marker: u32,
        /// At most this many.
        max_parts: u64,
    },
    /// [`MetaClient::list_uploads`].
    ListUploads {
        /// Bucket.
        bucket: String,
        /// Query.
        query: UploadQuery,
    },
    /// [`MetaClient::get_config`].
    GetConfig {
        /// Name.
        name: String,
    },
    /// [`Reader::digest`] of the state.
    Digest,
    /// [`MetaClient::get_job`].
    GetJob {
        /// Job ID.
        id: String,
    },
    /// [`MetaClient::list_jobs`].
    ListJobs,
    /// [`MetaClient::blob_references`].
    BlobReferences {
        /// Blob ids.
        ids: Vec<[u8; 16]>,
    },
}

/// The answer to a [`ReadRequest`], one variant per request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReadAnswer {
    /// To `GetBucket`.
    Bucket(BucketRecord),
    /// To `ListBuckets`.
    Buckets(Vec<BucketRecord>),
    /// To `GetObject`.
    Object(ObjectVersion),
    /// To `ListObjects`.
    Objects(ListPage),
    /// To `ListObjectVersions`.
    Versions(VersionPage),
    /// To `GetUpload`.
    Upload(MultipartUpload),
    /// To `ListParts`: the parts and whether more exist.
    Parts(Vec<UploadedPart>, bool),
    /// To `ListUploads`.
    Uploads(UploadPage),
    /// To `GetConfig`.
    Config(Option<Vec<u8>>),
    /// To `Digest`.
    Digest(StateDigest),
    /// To `GetJob`.
    Job(Option<crate::job::JobRecord>),
    /// To `ListJobs`.
    Jobs(Vec<crate::job::JobRecord>),
    /// To `BlobReferences`: one answer per id, in order.
    BlobReferences(Vec<bool>),
}

impl ReadRequest {
    /// Runs the read on `reader`.
    pub fn execute(&self, reader: &Reader<'_>) -> Result<ReadAnswer, MetaError> {
        Ok(match self {
            ReadRequest::GetBucket { bucket } => ReadAnswer::Bucket(reader.get_bucket(bucket)?),
            ReadRequest::ListBuckets => ReadAnswer::Buckets(reader.list_buckets()?),
            ReadRequest::GetObject {
                bucket,
                key,
                version_id,
            } => ReadAnswer::Object(reader.get_object(bucket, key, version_id.as_deref())?),
            ReadRequest::ListObjects { bucket, query } => {
                ReadAnswer::Objects(reader.list_objects(bucket, query)?)
            }
            ReadRequest::ListObjectVersions { bucket, query } => {
                ReadAnswer::Versions(reader.list_object_versions(bucket, query)?)
            }
            ReadRequest::GetUpload { bucket, upload_id } => {
                ReadAnswer::Upload(reader.get_upload(bucket, upload_id)?)
            }
            ReadRequest::ListParts {
                bucket,
                upload_id,
                part_number_marker,
                max_parts,
            } => {
                let max_parts = usize::try_from(*max_parts).unwrap_or(usize::MAX);
                let (parts, more) =
                    reader.list_parts(bucket, upload_id, *part_number_marker, max_parts)?;
                ReadAnswer::Parts(parts, more)
            }
            ReadRequest::ListUploads { bucket, query } => {
                ReadAnswer::Uploads(reader.list_uploads(bucket, query)?)
            }
            ReadRequest::GetConfig { name } => ReadAnswer::Config(reader.get_config(name)?),
            ReadRequest::Digest => ReadAnswer::Digest(reader.digest()?),
            ReadRequest::GetJob { id } => ReadAnswer::Job(reader.get_job(id)?),
            ReadRequest::ListJobs => ReadAnswer::Jobs(reader.list_jobs()?),
            ReadRequest::BlobReferences { ids } => {
                crate::client::check_blob_reference_ids(ids)?;
                ReadAnswer::BlobReferences(reader.blob_references(ids)?)
            }
        })
    }
}

/// The error of an answer of the wrong kind (client and server of different builds).
fn unexpected(answer: &ReadAnswer) -> MetaError {
    let kind = format!("{answer:?}");
    let kind = kind.split(['(', ' ']).next().unwrap_or_default();
    MetaError::Storage(format!("unexpected read answer {kind}"))
}

/// Proposes commands and runs reads on a Raft-replicated state: the part of a [`MetaClient`]
/// that differs between [`super::RaftMeta`] and [`super::GrpcMetaClient`].
#[async_trait]
pub trait Remote: Send + Sync + 'static {
    /// Proposes `commands` as one entry; returns once it is committed and applied.
    async fn propose(&self, commands: Vec<Command>) -> Result<CommandResults, MetaError>;
    /// A linearizable read.
    async fn read(&self, request: ReadRequest) -> Result<ReadAnswer, MetaError>;
}

#[async_trait]
impl<R: Remote> MetaClient for R {
    async fn apply(&self, command: Command) -> Result<CommandOutput, MetaError> {
        self.propose(vec![command])
            .await?
            .pop()
            .ok_or_else(|| MetaError::Storage("no result for the command".into()))?
    }

    async fn apply_batch(&self, commands: Vec<Command>) -> Result<CommandResults, MetaError> {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let n = commands.len();
        let results = self.propose(commands).await?;
        if results.len() != n {
            return Err(MetaError::Storage(format!(
                "{} results for {n} commands",
                results.len()
            )));
        }
        Ok(results)
    }

    async fn get_bucket(&self, bucket: &str) -> Result<BucketRecord, MetaError> {
        let request = ReadRequest::GetBucket {
            bucket: bucket.to_owned(),
        };
        match self.read(request).await? {
            ReadAnswer::Bucket(b) => Ok(b),
            other => Err(unexpected(&other)),
        }
    }

    async fn list_buckets(&self) -> Result<Vec<BucketRecord>, MetaError> {
        match self.read(ReadRequest::ListBuckets).await? {
            ReadAnswer::Buckets(b) => Ok(b),
            other => Err(unexpected(&other)),
        }
    }

    async fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectVersion, MetaError> {
        let request = ReadRequest::GetObject {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version_id: version_id.map(str::to_owned),
        };
        match self.read(request).await? {
            ReadAnswer::Object(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    async fn list_objects(&self, bucket: &str, query: &ListQuery) -> Result<ListPage, MetaError> {
        let request = ReadRequest::ListObjects {
            bucket: bucket.to_owned(),
            query: query.clone(),
        };
        match self.read(request).await? {
            ReadAnswer::Objects(page) => Ok(page),
            other => Err(unexpected(&other)),
        }
    }

    async fn list_object_versions(
        &self,
        bucket: &str,
        query: &VersionQuery,
    ) -> Result<VersionPage, MetaError> {
        let request = ReadRequest::ListObjectVersions {
            bucket: bucket.to_owned(),
            query: query.clone(),
        };
        match self.read(request).await? {
            ReadAnswer::Versions(page) => Ok(page),
            other => Err(unexpected(&other)),
        }
    }

    async fn get_upload(
        &self,
        bucket: &str,
        upload_id: &str,
    ) -> Result<MultipartUpload, MetaError> {
        let request = ReadRequest::GetUpload {
            bucket: bucket.to_owned(),
            upload_id: upload_id.to_owned(),
        };
        match self.read(request).await? {
            ReadAnswer::Upload(u) => Ok(u),
            other => Err(unexpected(&other)),
        }
    }

    async fn list_parts(
        &self,
        bucket: &str,
        upload_id: &str,
        part_number_marker: u32,
        max_parts: usize,
    ) -> Result<(Vec<UploadedPart>, bool), MetaError> {
        let request = ReadRequest::ListParts {
            bucket: bucket.to_owned(),
            upload_id: upload_id.to_owned(),
            part_number_marker,
            max_parts: max_parts as u64,
        };
        match self.read(request).await? {
            ReadAnswer::Parts(parts, more) => Ok((parts, more)),
            other => Err(unexpected(&other)),
        }
    }

    async fn list_uploads(
        &self,
        bucket: &str,
        query: &UploadQuery,
    ) -> Result<UploadPage, MetaError> {
        let request = ReadRequest::ListUploads {
            bucket: bucket.to_owned(),
            query: query.clone(),
        };
        match self.read(request).await? {
            ReadAnswer::Uploads(page) => Ok(page),
            other => Err(unexpected(&other)),
        }
    }

    async fn get_config(&self, name: &str) -> Result<Option<Vec<u8>>, MetaError> {
        let request = ReadRequest::GetConfig {
            name: name.to_owned(),
        };
        match self.read(request).await? {
            ReadAnswer::Config(v) => Ok(v),
            other => Err(unexpected(&other)),
        }
    }

    async fn get_job(&self, id: &str) -> Result<Option<crate::job::JobRecord>, MetaError> {
        match self.read(ReadRequest::GetJob { id: id.to_owned() }).await? {
            ReadAnswer::Job(j) => Ok(j),
            other => Err(unexpected(&other)),
        }
    }

    async fn list_jobs(&self) -> Result<Vec<crate::job::JobRecord>, MetaError> {
        match self.read(ReadRequest::ListJobs).await? {
            ReadAnswer::Jobs(j) => Ok(j),
            other => Err(unexpected(&other)),
        }
    }

    async fn blob_references(&self, ids: &[[u8; 16]]) -> Result<Vec<bool>, MetaError> {
        crate::client::check_blob_reference_ids(ids)?;
        let request = ReadRequest::BlobReferences { ids: ids.to_vec() };
        match self.read(request).await? {
            // The caller (the repair loops) checks one answer per id.
            ReadAnswer::BlobReferences(refs) => Ok(refs),
            other => Err(unexpected(&other)),
        }
    }
}

/// Encodes a wire value.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, MetaError> {
    codec::encode(value)
}

/// Decodes a wire value.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, MetaError> {
    codec::decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_errors_round_trip() {
        let answer: ProposalAnswer = Ok(vec![
            Ok(CommandOutput {
                seq: 7,
                version_id: Some("v".into()),
                ..Default::default()
            }),
            Err(MetaError::GenerationMismatch {
                expected: 1,
                found: 2,
            }),
            Err(MetaError::RewrapConflict {
                index: 3,
                reason: "no such version: v".into(),
            }),
            Err(MetaError::Unavailable("x".into())),
        ]);
        let back: ProposalAnswer = decode(&encode(&answer).unwrap()).unwrap();
        assert_eq!(back, answer);
        let request = ReadRequest::ListObjects {
            bucket: "b".into(),
            query: ListQuery {
                prefix: "p/".into(),
                delimiter: Some("/".into()),
                start_after: None,
                max_keys: 10,
            },
        };
        let back: ReadRequest = decode(&encode(&request).unwrap()).unwrap();
        assert!(matches!(back, ReadRequest::ListObjects { query, .. } if query.max_keys == 10));
        assert_eq!(
            unexpected(&ReadAnswer::Config(None)).to_string(),
            "metadata storage error: unexpected read answer Config"
        );
    }
}
