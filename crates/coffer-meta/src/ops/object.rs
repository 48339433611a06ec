//! PutObject, DeleteObject, UpdateEnvelope, UpdateObjectLock.

use super::*;
use crate::types::{Envelope, ObjectHeaders, Retention, Versioning};

pub(super) fn put(
    txn: &mut Txn<'_>,
    bucket: &str,
    version: &ObjectVersion,
    condition: Option<&WriteCondition>,
) -> Result<CommandOutput, MetaError> {
    let record = bucket_record(txn, bucket)?;
    check_object_version(&record, version)?;
    check_condition(txn, bucket, &version.key, condition)?;
    let mut version = version.clone();
    version.seq = next_seq(txn)?;
    let mut freed = Vec::new();
    add_refs(txn, bucket, &version.parts)?;
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

/// What a data-carrying version must look like (shared with CompleteMultipartUpload).
pub(super) fn check_object_version(
    bucket: &BucketRecord,
    version: &ObjectVersion,
) -> Result<(), MetaError> {
    if version.delete_marker || version.envelope.is_none() {
        return Err(MetaError::Invalid(
            "an object version needs an envelope and cannot be a delete marker".into(),
        ));
    }
    check_lock_allowed(bucket, version.retention.is_some(), version.legal_hold)
}

pub(super) fn delete(
    txn: &mut Txn<'_>,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    marker_version_id: &str,
    now_ms: i64,
    bypass_governance: bool,
) -> Result<CommandOutput, MetaError> {
    let record = bucket_record(txn, bucket)?;
    let mut freed = Vec::new();
    if let Some(id) = version_id {
        // S3 answers 204 for a version id that does not exist.
        let Some(v) = version_by_id(txn, bucket, key, id)? else {
            return Ok(CommandOutput {
                version_id: Some(id.to_owned()),
                ..CommandOutput::default()
            });
        };
        check_removable(&v, now_ms, bypass_governance)?;
        remove_version(txn, bucket, &v, &mut freed)?;
        refresh_current(txn, bucket, key)?;
        return Ok(CommandOutput {
            freed_blobs: freed,
            version_id: Some(v.version_id),
            delete_marker: v.delete_marker,
            seq: v.seq,
        });
    }
    match record.versioning {
        Versioning::Unversioned => {
            if let Some(v) = version_by_id(txn, bucket, key, NULL_VERSION)? {
                check_removable(&v, now_ms, bypass_governance)?;
                remove_version(txn, bucket, &v, &mut freed)?;
                refresh_current(txn, bucket, key)?;
            }
            Ok(CommandOutput {
                freed_blobs: freed,
                ..CommandOutput::default()
            })
        }
        Versioning::Enabled | Versioning::Suspended => {
            let id = match record.versioning {
                Versioning::Enabled => marker_version_id,
                _ => NULL_VERSION,
            };
            let marker = delete_marker(key, id, next_seq(txn)?, now_ms);
            store_new_version(txn, &record, &marker, now_ms, bypass_governance, &mut freed)?;
            Ok(CommandOutput {
                freed_blobs: freed,
                version_id: Some(marker.version_id),
                delete_marker: true,
                seq: marker.seq,
            })
        }
    }
}

fn delete_marker(key: &str, version_id: &str, seq: u64, now_ms: i64) -> ObjectVersion {
    ObjectVersion {
        v: crate::types::FORMAT_VERSION,
        key: key.to_owned(),
        version_id: version_id.to_owned(),
        seq,
        delete_marker: true,
        size: 0,
        etag: String::new(),
        last_modified_ms: now_ms,
        headers: ObjectHeaders::default(),
        checksum: None,
        parts: Vec::new(),
        envelope: None,
        retention: None,
        legal_hold: false,
        multipart_parts: 0,
    }
}

/// A version addressed by a change of its metadata: delete markers have none to change.
fn addressed_version(
    txn: &Txn<'_>,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<ObjectVersion, MetaError> {
    let v = resolve_version(txn, bucket, key, version_id)?;
    if v.delete_marker {
        return Err(MetaError::Invalid(format!(
            "{key} {} is a delete marker",
            v.version_id
        )));
    }
    Ok(v)
}

/// Rewrites a version's record (and the current index if it is the current one).
fn rewrite(txn: &mut Txn<'_>, bucket: &str, v: &ObjectVersion) -> Result<CommandOutput, MetaError> {
    store(txn, keys::version(bucket, &v.key, v.seq), v)?;
    refresh_current(txn, bucket, &v.key)?;
    Ok(CommandOutput {
        version_id: Some(v.version_id.clone()),
        seq: v.seq,
        ..CommandOutput::default()
    })
}

pub(super) fn update_envelope(
    txn: &mut Txn<'_>,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    expected_seq: Option<u64>,
    expected_generation: u64,
    envelope: &Envelope,
) -> Result<CommandOutput, MetaError> {
    bucket_record(txn, bucket)?;
    let mut v = addressed_version(txn, bucket, key, version_id)?;
    if expected_seq.is_some_and(|s| s != v.seq) {
        // Another write replaced the version: its generation says nothing about ours.
        return Err(MetaError::GenerationMismatch {
            expected: expected_generation,
            found: v.envelope.as_ref().map_or(0, |e| e.generation),
        });
    }
    let found = v
        .envelope
        .as_ref()
        .map(|e| e.generation)
        .ok_or_else(|| MetaError::Storage(format!("{key} {} has no envelope", v.version_id)))?;
    if found != expected_generation {
        return Err(MetaError::GenerationMismatch {
            expected: expected_generation,
            found,
        });
    }
    if envelope.generation != expected_generation + 1 {
        return Err(MetaError::Invalid(format!(
            "new envelope generation must be {}, got {}",
            expected_generation + 1,
            envelope.generation
        )));
    }
    v.envelope = Some(envelope.clone());
    rewrite(txn, bucket, &v)
}

/// S3 Object Lock: an active retention can always be extended in the same mode; COMPLIANCE
/// retention cannot be shortened, removed or changed to GOVERNANCE; GOVERNANCE retention can be
/// shortened, removed or changed only with the bypass. An expired retention can be replaced
/// freely; a new retain-until date must be in the future.
#[allow(clippy::too_many_arguments)]
pub(super) fn update_lock(
    txn: &mut Txn<'_>,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    retention: Option<&Option<Retention>>,
    legal_hold: Option<bool>,
    bypass_governance: bool,
    now_ms: i64,
) -> Result<CommandOutput, MetaError> {
    let record = bucket_record(txn, bucket)?;
    check_lock_allowed(&record, true, true)?;
    let mut v = addressed_version(txn, bucket, key, version_id)?;
    if let Some(new) = retention {
        if let Some(new) = new {
            if new.mode != "GOVERNANCE" && new.mode != "COMPLIANCE" {
                return Err(MetaError::Invalid(format!("retention mode {:?}", new.mode)));
            }
            if new.retain_until_ms <= now_ms {
                return Err(MetaError::Invalid(
                    "the retain until date must be in the future".into(),
                ));
            }
        }
        if let Some(old) = v.retention.as_ref().filter(|r| r.retain_until_ms > now_ms) {
            let extends = new
                .as_ref()
                .is_some_and(|n| n.mode == old.mode && n.retain_until_ms >= old.retain_until_ms);
            let allowed = extends || (old.mode == "GOVERNANCE" && bypass_governance);
            if !allowed {
                return Err(MetaError::ObjectLocked(format!(
                    "{key} {} is retained in {} mode until {}",
                    v.version_id, old.mode, old.retain_until
                )));
            }
        }
        v.retention = new.clone();
    }
    if let Some(hold) = legal_hold {
        v.legal_hold = hold;
    }
    rewrite(txn, bucket, &v)
}

#[cfg(test)]
#[path = "object_tests.rs"]
mod tests;
