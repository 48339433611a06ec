//! Test fixtures: a state machine in a temporary directory and record builders.

use std::cell::Cell;
use std::collections::BTreeMap;

use tempfile::TempDir;

use crate::error::MetaError;
use crate::state_machine::StateMachine;
use crate::types::*;

/// A state machine in a temporary directory that numbers log entries itself.
pub(crate) struct TestSm {
    pub(crate) sm: StateMachine,
    next_index: Cell<u64>,
    pub(crate) dir: TempDir,
}

impl TestSm {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path()).unwrap();
        Self {
            sm,
            next_index: Cell::new(1),
            dir,
        }
    }

    pub(crate) fn with_bucket(name: &str, versioning: Versioning) -> Self {
        let t = Self::new();
        t.ok(Command::CreateBucket(bucket(name, versioning)));
        t
    }

    pub(crate) fn with_lock_bucket(name: &str) -> Self {
        let t = Self::new();
        let mut rec = bucket(name, Versioning::Enabled);
        rec.object_lock_enabled = true;
        t.ok(Command::CreateBucket(rec));
        t
    }

    pub(crate) fn run(&self, command: Command) -> Result<CommandOutput, MetaError> {
        let index = self.next_index.get();
        self.next_index.set(index + 1);
        let out = self.sm.apply(index, &command);
        assert_eq!(self.sm.last_applied().unwrap(), index);
        out
    }

    #[track_caller]
    pub(crate) fn ok(&self, command: Command) -> CommandOutput {
        match self.run(command.clone()) {
            Ok(out) => out,
            Err(e) => panic!("{command:?} failed: {e}"),
        }
    }

    /// Number of records whose key starts with `prefix`.
    pub(crate) fn count_prefix(&self, prefix: &[u8]) -> usize {
        self.sm
            .db()
            .prefix_iterator_cf(self.sm.cf(), prefix)
            .map(|r| r.unwrap())
            .take_while(|(k, _)| k.starts_with(prefix))
            .count()
    }

    /// Every blob referenced by a version or an uploaded part, counted by a full scan of those
    /// records (independently of the reference counts).
    pub(crate) fn referenced_blobs(&self, bucket: &str) -> BTreeMap<[u8; 16], usize> {
        let mut out = BTreeMap::new();
        for kind in [crate::keys::VERSION, crate::keys::PART] {
            let prefix = crate::keys::kind_prefix(bucket, kind);
            for item in self.sm.db().prefix_iterator_cf(self.sm.cf(), &prefix) {
                let (k, v) = item.unwrap();
                if !k.starts_with(&prefix) {
                    break;
                }
                let parts = if kind == crate::keys::VERSION {
                    crate::codec::decode::<ObjectVersion>(&v).unwrap().parts
                } else {
                    vec![crate::codec::decode::<UploadedPart>(&v).unwrap().part]
                };
                for p in parts {
                    *out.entry(p.blob_id).or_default() += 1;
                }
            }
        }
        out
    }
}

pub(crate) fn bucket(name: &str, versioning: Versioning) -> BucketRecord {
    BucketRecord {
        v: FORMAT_VERSION,
        name: name.into(),
        created_ms: 1,
        region: "us-east-1".into(),
        owner_id: "owner".into(),
        versioning,
        object_lock_enabled: false,
        default_retention: None,
        encryption: None,
        directory: false,
    }
}

pub(crate) fn blob(n: u32) -> [u8; 16] {
    let mut id = [0xB0; 16];
    id[12..].copy_from_slice(&n.to_be_bytes());
    id
}

pub(crate) fn etag_of(n: u32) -> String {
    format!("{n:032x}")
}

pub(crate) fn envelope(generation: u64) -> Envelope {
    Envelope {
        v: FORMAT_VERSION,
        algorithm: SseAlgorithm::AwsKms,
        kms_key_arn: Some("arn:aws:kms:us-east-1:111122223333:key/k".into()),
        wrapped_dek: vec![1, 2, 3],
        context: BTreeMap::from([("aws:s3:arn".to_owned(), "arn:aws:s3:::b/k".to_owned())]),
        user_context: None,
        bucket_key_id: None,
        second_wrapped_dek: None,
        sse_c_key_hmac: None,
        sse_c_salt: None,
        sse_c_key_md5: None,
        generation,
    }
}

pub(crate) fn part_ref(part_number: u32, blob_n: u32) -> PartRef {
    PartRef {
        part_number,
        blob_id: blob(blob_n),
        size: 5,
        chunk_size: 1 << 20,
        etag: etag_of(blob_n),
        checksum: None,
    }
}

/// A one-part version whose blob is `blob(blob_n)` and ETag `etag_of(blob_n)`; no blob when
/// `blob_n` is 0.
pub(crate) fn version(key: &str, version_id: &str, blob_n: u32) -> ObjectVersion {
    ObjectVersion {
        v: FORMAT_VERSION,
        key: key.into(),
        version_id: version_id.into(),
        seq: 0,
        delete_marker: false,
        size: 5,
        etag: etag_of(blob_n),
        last_modified_ms: 1_000,
        headers: ObjectHeaders::default(),
        checksum: None,
        parts: if blob_n == 0 {
            Vec::new()
        } else {
            vec![part_ref(0, blob_n)]
        },
        envelope: Some(envelope(1)),
        retention: None,
        legal_hold: false,
        multipart_parts: 0,
    }
}

pub(crate) fn put(bucket: &str, key: &str, version_id: &str, blob_n: u32) -> Command {
    Command::PutObject {
        bucket: bucket.into(),
        version: version(key, version_id, blob_n),
        condition: None,
    }
}

pub(crate) fn delete(bucket: &str, key: &str, version_id: Option<&str>, marker: &str) -> Command {
    Command::DeleteObject {
        bucket: bucket.into(),
        key: key.into(),
        version_id: version_id.map(Into::into),
        marker_version_id: marker.into(),
        now_ms: 2_000,
        bypass_governance: false,
    }
}

pub(crate) fn upload(key: &str, upload_id: &str) -> MultipartUpload {
    MultipartUpload {
        v: FORMAT_VERSION,
        upload_id: upload_id.into(),
        key: key.into(),
        initiated_ms: 1_000,
        headers: ObjectHeaders::default(),
        envelope: envelope(1),
        checksum_algorithm: None,
        checksum_type: None,
        retention: None,
        legal_hold: false,
    }
}

pub(crate) fn create_upload(bucket: &str, key: &str, upload_id: &str) -> Command {
    Command::CreateMultipartUpload {
        bucket: bucket.into(),
        upload: upload(key, upload_id),
    }
}

pub(crate) fn put_part(bucket: &str, upload_id: &str, part_number: u32, blob_n: u32) -> Command {
    Command::PutPart {
        bucket: bucket.into(),
        upload_id: upload_id.into(),
        part: UploadedPart {
            part_number,
            part: part_ref(part_number, blob_n),
            last_modified_ms: 1_000,
            checksum: None,
        },
    }
}
