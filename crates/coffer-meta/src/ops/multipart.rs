//! CreateMultipartUpload, PutPart, CompleteMultipartUpload, AbortMultipartUpload.

use super::*;
use crate::codec::UploadIndex;
use crate::types::{MultipartUpload, UploadedPart};

/// Highest part number S3 accepts.
pub(crate) const MAX_PART_NUMBER: u32 = 10_000;

fn upload_index(txn: &Txn<'_>, bucket: &str, upload_id: &str) -> Result<UploadIndex, MetaError> {
    load(txn, &keys::upload_id(bucket, upload_id))?
        .ok_or_else(|| MetaError::NoSuchUpload(upload_id.to_owned()))
}

pub(super) fn create(
    txn: &mut Txn<'_>,
    bucket: &str,
    upload: &MultipartUpload,
) -> Result<CommandOutput, MetaError> {
    let record = bucket_record(txn, bucket)?;
    check_lock_allowed(&record, upload.retention.is_some(), upload.legal_hold)?;
    if upload.upload_id.is_empty() {
        return Err(MetaError::Invalid("empty upload id".into()));
    }
    if txn
        .get(&keys::upload_id(bucket, &upload.upload_id))?
        .is_some()
    {
        return Err(MetaError::Invalid(format!(
            "upload id {:?} already exists",
            upload.upload_id
        )));
    }
    let seq = next_seq(txn)?;
    store(txn, keys::upload(bucket, &upload.key, seq), upload)?;
    let index = UploadIndex {
        key: upload.key.clone(),
        seq,
    };
    store(txn, keys::upload_id(bucket, &upload.upload_id), &index)?;
    Ok(CommandOutput {
        seq,
        ..CommandOutput::default()
    })
}

pub(super) fn put_part(
    txn: &mut Txn<'_>,
    bucket: &str,
    upload_id: &str,
    part: &UploadedPart,
) -> Result<CommandOutput, MetaError> {
    bucket_record(txn, bucket)?;
    upload_index(txn, bucket, upload_id)?;
    if !(1..=MAX_PART_NUMBER).contains(&part.part_number)
        || part.part.part_number != part.part_number
    {
        return Err(MetaError::Invalid(format!(
            "part number {} (blob part number {})",
            part.part_number, part.part.part_number
        )));
    }
    let key = keys::part(bucket, upload_id, part.part_number);
    let old: Option<UploadedPart> = load(txn, &key)?;
    let mut freed = Vec::new();
    add_refs(txn, bucket, std::slice::from_ref(&part.part))?;
    if let Some(old) = old {
        drop_refs(txn, bucket, std::slice::from_ref(&old.part), &mut freed)?;
    }
    store(txn, key, part)?;
    Ok(CommandOutput {
        freed_blobs: freed,
        ..CommandOutput::default()
    })
}

/// Removes an upload and all its parts, dropping the parts' blob references.
fn remove_upload(
    txn: &mut Txn<'_>,
    bucket: &str,
    upload_id: &str,
    index: &UploadIndex,
    freed: &mut Vec<[u8; 16]>,
) -> Result<(), MetaError> {
    for (key, value) in txn.scan_prefix(&keys::parts_of(bucket, upload_id), usize::MAX)? {
        let part: UploadedPart = codec::decode(&value)?;
        txn.delete(key);
        drop_refs(txn, bucket, std::slice::from_ref(&part.part), freed)?;
    }
    txn.delete(keys::upload(bucket, &index.key, index.seq));
    txn.delete(keys::upload_id(bucket, upload_id));
    Ok(())
}

/// The version lists the parts it is made of, in ascending part-number order; each must be the
/// part currently stored for that number (same blob), or the completion races with a re-upload
/// of that part and fails like S3's `InvalidPart`. Parts not listed are freed.
pub(super) fn complete(
    txn: &mut Txn<'_>,
    bucket: &str,
    upload_id: &str,
    version: &ObjectVersion,
    condition: Option<&WriteCondition>,
) -> Result<CommandOutput, MetaError> {
    let record = bucket_record(txn, bucket)?;
    let index = upload_index(txn, bucket, upload_id)?;
    object::check_object_version(&record, version)?;
    if version.key != index.key {
        return Err(MetaError::Invalid(format!(
            "upload {upload_id} is for key {:?}, not {:?}",
            index.key, version.key
        )));
    }
    let mut previous = 0;
    for p in &version.parts {
        if p.part_number <= previous {
            return Err(MetaError::Invalid(
                "InvalidPartOrder: parts must be in ascending order".into(),
            ));
        }
        previous = p.part_number;
        let stored: Option<UploadedPart> =
            load(txn, &keys::part(bucket, upload_id, p.part_number))?;
        if stored.is_none_or(|s| s.part.blob_id != p.blob_id) {
            return Err(MetaError::Invalid(format!(
                "InvalidPart: part {} of upload {upload_id} is not the uploaded one",
                p.part_number
            )));
        }
    }
    check_condition(txn, bucket, &version.key, condition)?;
    let mut version = version.clone();
    version.seq = next_seq(txn)?;
    let mut freed = Vec::new();
    add_refs(txn, bucket, &version.parts)?;
    remove_upload(txn, bucket, upload_id, &index, &mut freed)?;
    store_new_version(
        txn,
        &record,
        &version,
        version.last_modified_ms,
        false,
        &mut freed,
    )?;
    Ok(CommandOutput {
        freed_blobs: freed,
        version_id: Some(version.version_id),
        delete_marker: false,
        seq: version.seq,
    })
}

pub(super) fn abort(
    txn: &mut Txn<'_>,
    bucket: &str,
    upload_id: &str,
) -> Result<CommandOutput, MetaError> {
    bucket_record(txn, bucket)?;
    let index = upload_index(txn, bucket, upload_id)?;
    let mut freed = Vec::new();
    remove_upload(txn, bucket, upload_id, &index, &mut freed)?;
    Ok(CommandOutput {
        freed_blobs: freed,
        ..CommandOutput::default()
    })
}

#[cfg(test)]
mod tests {
    use crate::error::MetaError;
    use crate::ops::testutil::*;
    use crate::types::*;

    fn complete(
        t: &TestSm,
        upload: &str,
        key: &str,
        vid: &str,
        parts: &[(u32, u32)],
    ) -> Result<CommandOutput, MetaError> {
        let mut v = version(key, vid, 0);
        v.parts = parts.iter().map(|&(n, b)| part_ref(n, b)).collect();
        v.multipart_parts = parts.len() as u32;
        t.run(Command::CompleteMultipartUpload {
            bucket: "b".into(),
            upload_id: upload.into(),
            version: v,
            condition: None,
        })
    }

    #[test]
    fn put_part_replaces_and_frees_the_old_blob() {
        let t = TestSm::with_bucket("b", Versioning::Unversioned);
        t.ok(create_upload("b", "k", "up"));
        assert!(t.ok(put_part("b", "up", 1, 10)).freed_blobs.is_empty());
        assert_eq!(t.ok(put_part("b", "up", 1, 11)).freed_blobs, vec![blob(10)]);
        // A replay of the same part (same blob) frees nothing.
        assert!(t.ok(put_part("b", "up", 1, 11)).freed_blobs.is_empty());
        let (parts, more) = t.sm.reader().list_parts("b", "up", 0, 10).unwrap();
        assert_eq!(
            parts.iter().map(|p| p.part.blob_id).collect::<Vec<_>>(),
            vec![blob(11)]
        );
        assert!(!more);
        for bad in [0, 10_001] {
            assert!(matches!(
                t.run(put_part("b", "up", bad, 12)),
                Err(MetaError::Invalid(_))
            ));
        }
        assert!(matches!(
            t.run(put_part("b", "nope", 1, 12)),
            Err(MetaError::NoSuchUpload(_))
        ));
        assert!(matches!(
            t.run(create_upload("b", "k", "up")),
            Err(MetaError::Invalid(_))
        ));
    }

    #[test]
    fn complete_moves_used_parts_and_frees_the_rest() {
        let t = TestSm::with_bucket("b", Versioning::Unversioned);
        t.ok(put("b", "k", "null", 1));
        t.ok(create_upload("b", "k", "up"));
        for (n, b) in [(1, 10), (2, 20), (3, 30)] {
            t.ok(put_part("b", "up", n, b));
        }
        // Part 2 listed with another blob: InvalidPart, nothing changes.
        assert!(matches!(
            complete(&t, "up", "k", "null", &[(1, 10), (2, 99)]),
            Err(MetaError::Invalid(_))
        ));
        assert!(matches!(
            complete(&t, "up", "k", "null", &[(3, 30), (1, 10)]),
            Err(MetaError::Invalid(_))
        ));
        assert!(matches!(
            complete(&t, "up", "other", "null", &[(1, 10)]),
            Err(MetaError::Invalid(_))
        ));
        let out = complete(&t, "up", "k", "null", &[(1, 10), (3, 30)]).unwrap();
        // The replaced null version's blob and the unused part 2.
        let mut freed = out.freed_blobs.clone();
        freed.sort();
        assert_eq!(freed, vec![blob(1), blob(20)]);
        assert_eq!(out.version_id.as_deref(), Some("null"));
        let cur = t.sm.reader().get_object("b", "k", None).unwrap();
        assert_eq!(
            cur.parts.iter().map(|p| p.blob_id).collect::<Vec<_>>(),
            vec![blob(10), blob(30)]
        );
        assert_eq!(cur.seq, out.seq);
        assert!(matches!(
            t.sm.reader().get_upload("b", "up"),
            Err(MetaError::NoSuchUpload(_))
        ));
        assert!(matches!(
            t.sm.reader().list_parts("b", "up", 0, 10),
            Err(MetaError::NoSuchUpload(_))
        ));
        assert!(matches!(
            complete(&t, "up", "k", "null", &[(1, 10)]),
            Err(MetaError::NoSuchUpload(_))
        ));
        // Deleting the object frees the moved parts.
        let out = t.ok(delete("b", "k", None, "-"));
        let mut freed = out.freed_blobs;
        freed.sort();
        assert_eq!(freed, vec![blob(10), blob(30)]);
    }

    #[test]
    fn complete_checks_the_condition_and_versioning() {
        let t = TestSm::with_bucket("b", Versioning::Enabled);
        t.ok(put("b", "k", "v1", 1));
        t.ok(create_upload("b", "k", "up"));
        t.ok(put_part("b", "up", 1, 10));
        let mut v = version("k", "v2", 0);
        v.parts = vec![part_ref(1, 10)];
        let cmd = |condition| Command::CompleteMultipartUpload {
            bucket: "b".into(),
            upload_id: "up".into(),
            version: v.clone(),
            condition,
        };
        assert!(matches!(
            t.run(cmd(Some(WriteCondition::IfNoneMatchStar))),
            Err(MetaError::PreconditionFailed)
        ));
        assert!(matches!(
            complete(&t, "up", "k", "null", &[(1, 10)]),
            Err(MetaError::Invalid(_))
        ));
        let out = t.ok(cmd(Some(WriteCondition::IfMatch(format!(
            "\"{}\"",
            etag_of(1)
        )))));
        assert!(out.freed_blobs.is_empty());
        let page =
            t.sm.reader()
                .list_object_versions(
                    "b",
                    &VersionQuery {
                        max_keys: 10,
                        ..Default::default()
                    },
                )
                .unwrap();
        assert_eq!(page.versions.len(), 2);
    }

    #[test]
    fn abort_frees_every_part() {
        let t = TestSm::with_bucket("b", Versioning::Enabled);
        t.ok(create_upload("b", "k", "up"));
        t.ok(put_part("b", "up", 1, 10));
        t.ok(put_part("b", "up", 7, 70));
        let mut freed = t
            .ok(Command::AbortMultipartUpload {
                bucket: "b".into(),
                upload_id: "up".into(),
            })
            .freed_blobs;
        freed.sort();
        assert_eq!(freed, vec![blob(10), blob(70)]);
        assert!(matches!(
            t.run(Command::AbortMultipartUpload {
                bucket: "b".into(),
                upload_id: "up".into()
            }),
            Err(MetaError::NoSuchUpload(_))
        ));
        assert_eq!(t.count_prefix(&crate::keys::kind_prefix("b", 0)[..4]), 0);
    }
}
