//! CreateBucket, DeleteBucket, UpdateBucket.

use super::{bucket_record, store, Txn};
use crate::error::MetaError;
use crate::keys;
use crate::types::{BucketRecord, CommandOutput, Versioning};

pub(super) fn create(txn: &mut Txn<'_>, record: &BucketRecord) -> Result<CommandOutput, MetaError> {
    if record.name.is_empty() {
        return Err(MetaError::Invalid("empty bucket name".into()));
    }
    if txn.get(&keys::bucket(&record.name))?.is_some() {
        return Err(MetaError::BucketAlreadyExists(record.name.clone()));
    }
    store(txn, keys::bucket(&record.name), record)?;
    Ok(CommandOutput::default())
}

/// Removes an empty bucket: no version, no delete marker, no upload. An empty bucket has no
/// other record either (current index, ids, parts and blob references only exist alongside
/// versions and uploads).
pub(super) fn delete(txn: &mut Txn<'_>, bucket: &str) -> Result<CommandOutput, MetaError> {
    bucket_record(txn, bucket)?;
    for kind in [keys::VERSION, keys::UPLOAD] {
        if !txn
            .scan_prefix(&keys::kind_prefix(bucket, kind), 1)?
            .is_empty()
        {
            return Err(MetaError::BucketNotEmpty(bucket.to_owned()));
        }
    }
    txn.delete(keys::bucket(bucket));
    Ok(CommandOutput::default())
}

/// Replaces a bucket's record. Versioning cannot go back to `Unversioned` once set (S3 only
/// knows Enabled and Suspended afterwards).
pub(super) fn update(txn: &mut Txn<'_>, record: &BucketRecord) -> Result<CommandOutput, MetaError> {
    let old = bucket_record(txn, &record.name)?;
    if old.versioning != Versioning::Unversioned && record.versioning == Versioning::Unversioned {
        return Err(MetaError::Invalid(format!(
            "bucket {}: versioning cannot return to unversioned",
            record.name
        )));
    }
    store(txn, keys::bucket(&record.name), record)?;
    Ok(CommandOutput::default())
}

#[cfg(test)]
mod tests {
    use crate::error::MetaError;
    use crate::ops::testutil::*;
    use crate::types::*;

    #[test]
    fn create_delete_update() {
        let t = TestSm::new();
        t.ok(Command::CreateBucket(bucket("b", Versioning::Unversioned)));
        assert!(matches!(
            t.run(Command::CreateBucket(bucket("b", Versioning::Enabled))),
            Err(MetaError::BucketAlreadyExists(_))
        ));
        // The failed create did not replace the record.
        assert_eq!(
            t.sm.reader().get_bucket("b").unwrap().versioning,
            Versioning::Unversioned
        );

        let mut rec = bucket("b", Versioning::Enabled);
        rec.region = "eu-west-1".into();
        t.ok(Command::UpdateBucket(rec.clone()));
        assert_eq!(t.sm.reader().get_bucket("b").unwrap(), rec);
        assert!(matches!(
            t.run(Command::UpdateBucket(bucket("b", Versioning::Unversioned))),
            Err(MetaError::Invalid(_))
        ));
        t.ok(Command::UpdateBucket(bucket("b", Versioning::Suspended)));
        assert!(matches!(
            t.run(Command::UpdateBucket(bucket("nope", Versioning::Enabled))),
            Err(MetaError::NoSuchBucket(_))
        ));

        t.ok(Command::DeleteBucket { bucket: "b".into() });
        assert!(matches!(
            t.sm.reader().get_bucket("b"),
            Err(MetaError::NoSuchBucket(_))
        ));
        assert!(matches!(
            t.run(Command::DeleteBucket { bucket: "b".into() }),
            Err(MetaError::NoSuchBucket(_))
        ));
    }

    #[test]
    fn delete_bucket_refuses_versions_markers_and_uploads() {
        let t = TestSm::new();
        t.ok(Command::CreateBucket(bucket("b", Versioning::Enabled)));
        t.ok(put("b", "k", "v1", 1));
        t.ok(delete("b", "k", None, "dm"));
        t.ok(delete("b", "k", Some("v1"), "-"));
        // Only the delete marker is left: still not empty.
        assert!(matches!(
            t.run(Command::DeleteBucket { bucket: "b".into() }),
            Err(MetaError::BucketNotEmpty(_))
        ));
        t.ok(delete("b", "k", Some("dm"), "-"));
        t.ok(create_upload("b", "k", "up"));
        assert!(matches!(
            t.run(Command::DeleteBucket { bucket: "b".into() }),
            Err(MetaError::BucketNotEmpty(_))
        ));
        t.ok(Command::AbortMultipartUpload {
            bucket: "b".into(),
            upload_id: "up".into(),
        });
        t.ok(Command::DeleteBucket { bucket: "b".into() });
        // Nothing of the bucket is left in the keyspace.
        assert_eq!(t.count_prefix(&crate::keys::kind_prefix("b", 0)[..4]), 0);
    }

    #[test]
    fn config_is_a_command() {
        let t = TestSm::new();
        assert_eq!(t.sm.reader().get_config("cluster/x").unwrap(), None);
        t.ok(Command::PutConfig {
            name: "cluster/x".into(),
            value: b"arn".to_vec(),
        });
        assert_eq!(
            t.sm.reader().get_config("cluster/x").unwrap(),
            Some(b"arn".to_vec())
        );
    }
}
