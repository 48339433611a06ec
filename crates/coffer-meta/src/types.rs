//! Persisted metadata records. Every record carries a format version (`v`) so that later
//! formats can migrate it; new fields are added with `#[serde(default)]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Current format version written by this build.
pub const FORMAT_VERSION: u16 = 1;

fn v1() -> u16 {
    FORMAT_VERSION
}

/// Bucket versioning state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Versioning {
    /// Never enabled: every write replaces the `null` version.
    #[default]
    Unversioned,
    /// Every write creates a new version.
    Enabled,
    /// Writes replace the `null` version; older versions are kept.
    Suspended,
}

/// Server-side encryption algorithm of an object or a bucket default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SseAlgorithm {
    /// SSE-S3 (`AES256`).
    Aes256,
    /// SSE-KMS (`aws:kms`).
    AwsKms,
    /// DSSE-KMS (`aws:kms:dsse`).
    AwsKmsDsse,
    /// SSE-C (customer-provided key; header `x-amz-server-side-encryption-customer-algorithm: AES256`).
    SseC,
}

/// One rule of a bucket's default encryption (PutBucketEncryption).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketEncryption {
    /// `SSEAlgorithm` (never `SseC`).
    pub sse_algorithm: SseAlgorithm,
    /// `KMSMasterKeyID` as the user gave it (key ID, key ARN or alias).
    pub kms_master_key_id: Option<String>,
    /// `BucketKeyEnabled`.
    pub bucket_key_enabled: bool,
    /// `BlockedEncryptionTypes` (e.g. `["SSE-C"]`).
    #[serde(default)]
    pub blocked_encryption_types: Vec<String>,
}

/// Default Object Lock retention of a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultRetention {
    /// `GOVERNANCE` or `COMPLIANCE`.
    pub mode: String,
    /// Days, if given.
    pub days: Option<u32>,
    /// Years, if given.
    pub years: Option<u32>,
}

/// A bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketRecord {
    /// Format version.
    #[serde(default = "v1")]
    pub v: u16,
    /// Bucket name.
    pub name: String,
    /// Creation time, milliseconds since the epoch.
    pub created_ms: i64,
    /// `LocationConstraint` region.
    pub region: String,
    /// Owner's canonical ID (the account).
    pub owner_id: String,
    /// Versioning state.
    pub versioning: Versioning,
    /// Created with Object Lock enabled.
    pub object_lock_enabled: bool,
    /// Default retention of the Object Lock configuration.
    pub default_retention: Option<DefaultRetention>,
    /// Default encryption; `None` means the SSE-S3 default.
    pub encryption: Option<BucketEncryption>,
    /// Directory bucket (`--x-s3` suffix).
    #[serde(default)]
    pub directory: bool,
}

/// How an object version's data key is protected: the envelope of DESIGN.md §2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Format version.
    #[serde(default = "v1")]
    pub v: u16,
    /// SSE type.
    pub algorithm: SseAlgorithm,
    /// ARN of the KMS key that wraps the data key (the S3-managed key for SSE-S3; absent for SSE-C).
    pub kms_key_arn: Option<String>,
    /// The wrapped data key: a KMS ciphertext blob, or (with a Bucket Key / SSE-C) the DEK sealed locally.
    pub wrapped_dek: Vec<u8>,
    /// The encryption context bound to `wrapped_dek` (for Bucket Keys, the bucket key's context).
    pub context: BTreeMap<String, String>,
    /// The context the user supplied (returned in `x-amz-server-side-encryption-context`).
    #[serde(default)]
    pub user_context: Option<BTreeMap<String, String>>,
    /// The Bucket Key that wraps `wrapped_dek`, if any: its id in meta.
    pub bucket_key_id: Option<String>,
    /// Second layer for DSSE-KMS: wrapped second data key.
    #[serde(default)]
    pub second_wrapped_dek: Option<Vec<u8>>,
    /// SSE-C: salted HMAC of the customer key, to reject a wrong key before reading data.
    #[serde(default)]
    pub sse_c_key_hmac: Option<Vec<u8>>,
    /// SSE-C: the salt of that HMAC.
    #[serde(default)]
    pub sse_c_salt: Option<Vec<u8>>,
    /// SSE-C: the customer key's MD5 (base64), returned in responses.
    #[serde(default)]
    pub sse_c_key_md5: Option<String>,
    /// Bumped by every rewrap; compare-and-set target of UpdateEnvelope.
    pub generation: u64,
}

/// A full-object or composite checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    /// `CRC32`, `CRC32C`, `SHA1`, `SHA256` or `CRC64NVME`.
    pub algorithm: String,
    /// Base64 value; composite values end in `-N`.
    pub value: String,
    /// `FULL_OBJECT` or `COMPOSITE`.
    pub checksum_type: String,
}

/// Where a part's ciphertext lives, and how it was chunked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRef {
    /// Part number used in the chunk nonce and AAD (0 for a single PUT).
    pub part_number: u32,
    /// Blob id (16 random bytes, hex in file names).
    pub blob_id: [u8; 16],
    /// Plaintext size.
    pub size: u64,
    /// Plaintext chunk size.
    pub chunk_size: u32,
    /// The part's ETag (MD5 hex, no quotes), for multipart.
    pub etag: String,
    /// The part's checksum, if any (base64), for GetObjectAttributes and composite checksums.
    #[serde(default)]
    pub checksum: Option<String>,
}

/// Object Lock retention of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// `GOVERNANCE` or `COMPLIANCE`.
    pub mode: String,
    /// RFC 3339 `RetainUntilDate`.
    pub retain_until: String,
    /// Same as milliseconds since the epoch, for comparisons.
    pub retain_until_ms: i64,
}

/// HTTP headers stored with an object and returned on GET/HEAD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ObjectHeaders {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Expires`, as sent.
    pub expires: Option<String>,
    /// `x-amz-meta-*`, lower-cased names without the prefix.
    pub user_metadata: BTreeMap<String, String>,
    /// `x-amz-storage-class` (`STANDARD` when absent).
    pub storage_class: Option<String>,
    /// `x-amz-website-redirect-location`.
    #[serde(default)]
    pub website_redirect_location: Option<String>,
}

/// One version of an object (or a delete marker).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectVersion {
    /// Format version.
    #[serde(default = "v1")]
    pub v: u16,
    /// Object key.
    pub key: String,
    /// Version ID; `"null"` in unversioned or suspended buckets.
    pub version_id: String,
    /// Order of versions of a key: assigned by the state machine when applied; newer is greater.
    #[serde(default)]
    pub seq: u64,
    /// True for a delete marker (no data, no envelope).
    pub delete_marker: bool,
    /// Plaintext size.
    pub size: u64,
    /// ETag without quotes (`md5hex`, or `md5hex-N` for multipart).
    pub etag: String,
    /// Last-Modified, milliseconds since the epoch.
    pub last_modified_ms: i64,
    /// Stored headers and user metadata.
    pub headers: ObjectHeaders,
    /// Object checksum, if one was sent or computed.
    pub checksum: Option<Checksum>,
    /// Parts in order (one part for a simple PUT).
    pub parts: Vec<PartRef>,
    /// The envelope; `None` only for delete markers.
    pub envelope: Option<Envelope>,
    /// Object Lock retention.
    pub retention: Option<Retention>,
    /// Object Lock legal hold.
    pub legal_hold: bool,
    /// Number of parts of a multipart upload (for `x-amz-mp-parts-count`), 0 for a simple PUT.
    #[serde(default)]
    pub multipart_parts: u32,
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultipartUpload {
    /// Format version.
    #[serde(default = "v1")]
    pub v: u16,
    /// Upload ID.
    pub upload_id: String,
    /// Object key.
    pub key: String,
    /// Initiated, milliseconds since the epoch.
    pub initiated_ms: i64,
    /// Headers of the object to be.
    pub headers: ObjectHeaders,
    /// Envelope of the object to be: every part is sealed under its data key.
    pub envelope: Envelope,
    /// `x-amz-checksum-algorithm` of CreateMultipartUpload.
    pub checksum_algorithm: Option<String>,
    /// `x-amz-checksum-type` (`COMPOSITE` or `FULL_OBJECT`).
    pub checksum_type: Option<String>,
    /// Object Lock settings requested at creation.
    pub retention: Option<Retention>,
    /// Legal hold requested at creation.
    pub legal_hold: bool,
}

/// An uploaded part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadedPart {
    /// Part number 1–10000.
    pub part_number: u32,
    /// Where its ciphertext lives.
    pub part: PartRef,
    /// Last-Modified, milliseconds since the epoch.
    pub last_modified_ms: i64,
    /// The part's checksum (algorithm of the upload), base64.
    pub checksum: Option<String>,
}

/// A precondition decided inside the state machine (so that it holds under concurrency).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteCondition {
    /// `If-None-Match: *`: fail if a current (non-delete-marker) version exists.
    IfNoneMatchStar,
    /// `If-Match: etag`: fail unless the current version has this ETag.
    IfMatch(String),
}

/// A state-machine command (DESIGN.md §4). Applied in log order; deterministic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Create a bucket.
    CreateBucket(BucketRecord),
    /// Delete an empty bucket (no versions, no delete markers, no uploads).
    DeleteBucket {
        /// Bucket.
        bucket: String,
    },
    /// Replace a bucket record's configuration (versioning, encryption, object lock).
    UpdateBucket(BucketRecord),
    /// Store a new object version. In unversioned/suspended buckets it replaces the `null` version.
    PutObject {
        /// Bucket.
        bucket: String,
        /// The version (its `seq` is assigned when applied).
        version: ObjectVersion,
        /// Optional precondition.
        condition: Option<WriteCondition>,
    },
    /// Delete: without `version_id`, adds a delete marker (versioned) or removes the `null` version;
    /// with it, removes that version.
    DeleteObject {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Specific version to remove.
        version_id: Option<String>,
        /// Version ID for the new delete marker (versioned buckets).
        marker_version_id: String,
        /// Time of the delete marker.
        now_ms: i64,
        /// `x-amz-bypass-governance-retention: true` was sent (and allowed).
        bypass_governance: bool,
    },
    /// Replace a version's envelope if its generation is still `expected_generation`.
    UpdateEnvelope {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Version (`None` = current).
        version_id: Option<String>,
        /// Generation read before the rewrap.
        expected_generation: u64,
        /// The version's `seq` read before the rewrap: a version overwritten in place (the
        /// `null` version of an unversioned bucket) has a new `seq`, so the rewrap of the old
        /// data key cannot land on the new data.
        #[serde(default)]
        expected_seq: Option<u64>,
        /// New envelope (generation = expected + 1).
        envelope: Envelope,
    },
    /// Set retention and/or legal hold of a version.
    UpdateObjectLock {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// Version (`None` = current).
        version_id: Option<String>,
        /// New retention (`Some(None)` clears it).
        #[serde(default, with = "double_option")]
        retention: Option<Option<Retention>>,
        /// New legal hold.
        legal_hold: Option<bool>,
        /// Allow shortening/removing GOVERNANCE retention.
        bypass_governance: bool,
        /// Time of the request, for retention checks.
        now_ms: i64,
    },
    /// Start a multipart upload.
    CreateMultipartUpload {
        /// Bucket.
        bucket: String,
        /// The upload.
        upload: MultipartUpload,
    },
    /// Record an uploaded part (replacing a previous upload of the same number).
    PutPart {
        /// Bucket.
        bucket: String,
        /// Upload ID.
        upload_id: String,
        /// The part.
        part: UploadedPart,
    },
    /// Complete an upload: its parts become an object version; the upload is removed.
    CompleteMultipartUpload {
        /// Bucket.
        bucket: String,
        /// Upload ID.
        upload_id: String,
        /// The resulting version.
        version: ObjectVersion,
        /// Optional precondition.
        condition: Option<WriteCondition>,
    },
    /// Abort an upload.
    AbortMultipartUpload {
        /// Bucket.
        bucket: String,
        /// Upload ID.
        upload_id: String,
    },
    /// Set a value of the global config space (read with `MetaClient::get_config`).
    PutConfig {
        /// Name, e.g. `cluster/sse-s3-key-arn`.
        name: String,
        /// Value.
        value: Vec<u8>,
    },
    /// Create a job (its id must be new; it starts pending with version 0).
    CreateJob(crate::job::JobRecord),
    /// Take (or renew) a job for a runner: allowed when the job is pending or running and has
    /// no owner, is owned by `runner_id`, or its lease ended before `now_ms`. Bumps the version.
    ClaimJob {
        /// Job ID.
        id: String,
        /// The claiming runner.
        runner_id: String,
        /// The runner's clock.
        now_ms: i64,
        /// The claim holds until then.
        lease_until_ms: i64,
    },
    /// A runner's checkpoint: the progress is added and the lease renewed if the job's version
    /// is still `expected_version` and `runner_id` owns it (`PreconditionFailed` otherwise).
    /// Bumps the version. A job paused or cancelled meanwhile keeps that state (the progress
    /// still counts).
    UpdateJob {
        /// Job ID.
        id: String,
        /// The runner.
        runner_id: String,
        /// The version the runner last saw.
        expected_version: u64,
        /// What it did.
        progress: crate::job::JobProgress,
        /// The runner's clock.
        now_ms: i64,
        /// The renewed lease.
        lease_until_ms: i64,
    },
    /// An admin's pause, resume or cancel.
    ControlJob {
        /// Job ID.
        id: String,
        /// What to do.
        action: crate::job::JobAction,
        /// The admin's clock.
        now_ms: i64,
    },
}

/// What applying a command produced.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CommandOutput {
    /// Blobs no longer referenced by any version or upload; the caller deletes them.
    pub freed_blobs: Vec<[u8; 16]>,
    /// For deletes: the version ID removed or created, and whether it is a delete marker.
    pub version_id: Option<String>,
    /// For deletes: the affected version is (or was) a delete marker.
    pub delete_marker: bool,
    /// For writes: the `seq` assigned.
    pub seq: u64,
}

/// ListObjects / ListObjectsV2 query (the meta side does delimiter grouping).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListQuery {
    /// Only keys starting with this.
    pub prefix: String,
    /// Group keys by the first occurrence of this after the prefix.
    pub delimiter: Option<String>,
    /// Start strictly after this key (marker / start-after / decoded continuation token).
    pub start_after: Option<String>,
    /// At most this many keys + common prefixes (0–1000).
    pub max_keys: usize,
}

/// One page of a listing of current versions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListPage {
    /// Current versions that are not delete markers, in key order.
    pub objects: Vec<ObjectVersion>,
    /// Common prefixes, in order.
    pub common_prefixes: Vec<String>,
    /// More results exist.
    pub is_truncated: bool,
    /// The last key or common prefix returned (for NextMarker / continuation tokens).
    pub next_marker: Option<String>,
}

/// ListObjectVersions query.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VersionQuery {
    /// Prefix.
    pub prefix: String,
    /// Delimiter.
    pub delimiter: Option<String>,
    /// `key-marker`.
    pub key_marker: Option<String>,
    /// `version-id-marker`.
    pub version_id_marker: Option<String>,
    /// Max keys (0–1000).
    pub max_keys: usize,
}

/// One page of ListObjectVersions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VersionPage {
    /// Versions and delete markers, by key then newest first; with `is_latest`.
    pub versions: Vec<(ObjectVersion, bool)>,
    /// Common prefixes.
    pub common_prefixes: Vec<String>,
    /// More results exist.
    pub is_truncated: bool,
    /// `NextKeyMarker`.
    pub next_key_marker: Option<String>,
    /// `NextVersionIdMarker`.
    pub next_version_id_marker: Option<String>,
}

/// ListMultipartUploads query.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UploadQuery {
    /// Prefix.
    pub prefix: String,
    /// Delimiter.
    pub delimiter: Option<String>,
    /// `key-marker`.
    pub key_marker: Option<String>,
    /// `upload-id-marker`.
    pub upload_id_marker: Option<String>,
    /// `max-uploads` (0–1000).
    pub max_uploads: usize,
}

/// One page of ListMultipartUploads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UploadPage {
    /// Uploads by key, then initiation order.
    pub uploads: Vec<MultipartUpload>,
    /// Common prefixes.
    pub common_prefixes: Vec<String>,
    /// More results exist.
    pub is_truncated: bool,
    /// `NextKeyMarker`.
    pub next_key_marker: Option<String>,
    /// `NextUploadIdMarker`.
    pub next_upload_id_marker: Option<String>,
}

/// A digest of a member's state ([`crate::Reader::digest`]), to compare the members of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDigest {
    /// The log index of the last entry whose commands were applied (`M applied`).
    pub last_applied: u64,
    /// Number of records in the state.
    pub entries: u64,
    /// SHA-256 of the records, in lowercase hex.
    pub sha256: String,
}

/// Serde for `Option<Option<T>>` that keeps `Some(None)` apart from `None` in formats that write
/// both as nil (MessagePack, JSON): `None` is nil, `Some(x)` an array of zero or one element.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(
        v: &Option<Option<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            None => s.serialize_none(),
            Some(inner) => s.serialize_some(&inner.iter().collect::<Vec<_>>()),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        let v: Option<Vec<T>> = Option::deserialize(d)?;
        Ok(v.map(|v| v.into_iter().next()))
    }
}

#[cfg(test)]
mod double_option_tests {
    use super::*;

    #[test]
    fn clearing_a_retention_survives_encoding() {
        let retention = Retention {
            mode: "GOVERNANCE".into(),
            retain_until: "2023-11-14T22:13:20Z".into(),
            retain_until_ms: 1_700_000_000_000,
        };
        for r in [None, Some(None), Some(Some(retention))] {
            let cmd = Command::UpdateObjectLock {
                bucket: "b".into(),
                key: "k".into(),
                version_id: None,
                retention: r.clone(),
                legal_hold: None,
                bypass_governance: true,
                now_ms: 1,
            };
            let bytes = rmp_serde::to_vec_named(&cmd).unwrap();
            match rmp_serde::from_slice::<Command>(&bytes).unwrap() {
                Command::UpdateObjectLock { retention, .. } => assert_eq!(retention, r),
                other => panic!("{other:?}"),
            }
            let json = serde_json::to_vec(&cmd).unwrap();
            match serde_json::from_slice::<Command>(&json).unwrap() {
                Command::UpdateObjectLock { retention, .. } => assert_eq!(retention, r),
                other => panic!("{other:?}"),
            }
        }
    }
}
