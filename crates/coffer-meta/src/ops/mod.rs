//! The semantics of each [`Command`] (S3's), applied to a [`Txn`], and the record helpers they
//! share.
//!
//! Blobs are reference-counted (`D <bucket>$ R <blob_id>`): every version and every uploaded part
//! holds one reference per part it lists, and a blob is reported in `freed_blobs` exactly when its
//! count drops to zero. A command always adds the references of what it writes before dropping
//! those of what it removes, so a replayed or duplicated write never frees a blob still in use.

mod bucket;
mod job;
mod multipart;
mod object;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec;
use crate::error::MetaError;
use crate::keys;
use crate::state_machine::Txn;
use crate::types::{BucketRecord, Command, CommandOutput, ObjectVersion, PartRef, WriteCondition};

/// The version id of unversioned writes.
pub(crate) const NULL_VERSION: &str = "null";

/// Applies one command. Any error leaves the pending writes to be discarded by the caller.
pub(crate) fn apply(txn: &mut Txn<'_>, command: &Command) -> Result<CommandOutput, MetaError> {
    match command {
        Command::CreateBucket(record) => bucket::create(txn, record),
        Command::DeleteBucket { bucket } => bucket::delete(txn, bucket),
        Command::UpdateBucket(record) => bucket::update(txn, record),
        Command::PutConfig { name, value } => {
            txn.put(keys::config(name), value.clone());
            Ok(CommandOutput::default())
        }
        Command::PutObject {
            bucket,
            version,
            condition,
        } => object::put(txn, bucket, version, condition.as_ref()),
        Command::DeleteObject {
            bucket,
            key,
            version_id,
            marker_version_id,
            now_ms,
            bypass_governance,
        } => object::delete(
            txn,
            bucket,
            key,
            version_id.as_deref(),
            marker_version_id,
            *now_ms,
            *bypass_governance,
        ),
        Command::UpdateEnvelope {
            bucket,
            key,
            version_id,
            expected_generation,
            expected_seq,
            envelope,
        } => object::update_envelope(
            txn,
            bucket,
            key,
            version_id.as_deref(),
            *expected_seq,
            *expected_generation,
            envelope,
        ),
        Command::UpdateObjectLock {
            bucket,
            key,
            version_id,
            retention,
            legal_hold,
            bypass_governance,
            now_ms,
        } => object::update_lock(
            txn,
            bucket,
            key,
            version_id.as_deref(),
            retention.as_ref(),
            *legal_hold,
            *bypass_governance,
            *now_ms,
        ),
        Command::CreateMultipartUpload { bucket, upload } => multipart::create(txn, bucket, upload),
        Command::PutPart {
            bucket,
            upload_id,
            part,
        } => multipart::put_part(txn, bucket, upload_id, part),
        Command::CompleteMultipartUpload {
            bucket,
            upload_id,
            version,
            condition,
        } => multipart::complete(txn, bucket, upload_id, version, condition.as_ref()),
        Command::AbortMultipartUpload { bucket, upload_id } => {
            multipart::abort(txn, bucket, upload_id)
        }
        Command::CreateJob(record) => job::create(txn, record),
        Command::ClaimJob {
            id,
            runner_id,
            now_ms,
            lease_until_ms,
        } => job::claim(txn, id, runner_id, *now_ms, *lease_until_ms),
        Command::UpdateJob {
            id,
            runner_id,
            expected_version,
            progress,
            now_ms,
            lease_until_ms,
        } => job::update(
            txn,
            id,
            runner_id,
            *expected_version,
            progress,
            *now_ms,
            *lease_until_ms,
        ),
        Command::ControlJob { id, action, now_ms } => job::control(txn, id, *action, *now_ms),
    }
}

fn load<T: DeserializeOwned>(txn: &Txn<'_>, key: &[u8]) -> Result<Option<T>, MetaError> {
    txn.get(key)?.map(|v| codec::decode(&v)).transpose()
}

fn store<T: Serialize>(txn: &mut Txn<'_>, key: Vec<u8>, value: &T) -> Result<(), MetaError> {
    txn.put(key, codec::encode(value)?);
    Ok(())
}

fn bucket_record(txn: &Txn<'_>, bucket: &str) -> Result<BucketRecord, MetaError> {
    load(txn, &keys::bucket(bucket))?.ok_or_else(|| MetaError::NoSuchBucket(bucket.to_owned()))
}

/// The next value of the state machine's sequence counter.
fn next_seq(txn: &mut Txn<'_>) -> Result<u64, MetaError> {
    let key = keys::seq_counter();
    let last = match txn.get(&key)? {
        Some(v) => codec::decode_u64(&v)?,
        None => 0,
    };
    txn.put(key, codec::encode_u64(last + 1));
    Ok(last + 1)
}

/// The newest version of a key (possibly a delete marker).
fn newest_version(
    txn: &Txn<'_>,
    bucket: &str,
    key: &str,
) -> Result<Option<ObjectVersion>, MetaError> {
    txn.scan_prefix(&keys::versions_of(bucket, key), 1)?
        .first()
        .map(|(_, v)| codec::decode(v))
        .transpose()
}

fn version_by_id(
    txn: &Txn<'_>,
    bucket: &str,
    key: &str,
    version_id: &str,
) -> Result<Option<ObjectVersion>, MetaError> {
    let Some(seq) = txn.get(&keys::version_id(bucket, key, version_id))? else {
        return Ok(None);
    };
    let seq = codec::decode_u64(&seq)?;
    match load(txn, &keys::version(bucket, key, seq))? {
        Some(v) => Ok(Some(v)),
        None => Err(MetaError::Storage(format!(
            "version index of {key:?} {version_id:?} points to a missing record"
        ))),
    }
}

/// The version a request addresses: the current one (`NoSuchKey` if none, or if it is a delete
/// marker), or the given id (`NoSuchVersion`).
fn resolve_version(
    txn: &Txn<'_>,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> Result<ObjectVersion, MetaError> {
    match version_id {
        None => newest_version(txn, bucket, key)?
            .filter(|v| !v.delete_marker)
            .ok_or_else(|| MetaError::NoSuchKey(key.to_owned())),
        Some(id) => version_by_id(txn, bucket, key, id)?
            .ok_or_else(|| MetaError::NoSuchVersion(id.to_owned())),
    }
}

/// Writes a version record and its id index (not its blob references, not the current index).
fn write_version(txn: &mut Txn<'_>, bucket: &str, v: &ObjectVersion) -> Result<(), MetaError> {
    store(txn, keys::version(bucket, &v.key, v.seq), v)?;
    txn.put(
        keys::version_id(bucket, &v.key, &v.version_id),
        codec::encode_u64(v.seq),
    );
    Ok(())
}

/// Removes a version record and its id index, and drops its blob references.
fn remove_version(
    txn: &mut Txn<'_>,
    bucket: &str,
    v: &ObjectVersion,
    freed: &mut Vec<[u8; 16]>,
) -> Result<(), MetaError> {
    txn.delete(keys::version(bucket, &v.key, v.seq));
    txn.delete(keys::version_id(bucket, &v.key, &v.version_id));
    drop_refs(txn, bucket, &v.parts, freed)
}

/// Points the current-version index of `key` at its newest version, or removes it when there
/// is none or the newest is a delete marker.
fn refresh_current(txn: &mut Txn<'_>, bucket: &str, key: &str) -> Result<(), MetaError> {
    match newest_version(txn, bucket, key)? {
        Some(v) if !v.delete_marker => store(txn, keys::current(bucket, key), &v),
        _ => {
            txn.delete(keys::current(bucket, key));
            Ok(())
        }
    }
}

fn add_refs(txn: &mut Txn<'_>, bucket: &str, parts: &[PartRef]) -> Result<(), MetaError> {
    for part in parts {
        let key = keys::blob_ref(bucket, &part.blob_id);
        let count = match txn.get(&key)? {
            Some(v) => codec::decode_u64(&v)?,
            None => 0,
        };
        txn.put(key, codec::encode_u64(count + 1));
    }
    Ok(())
}

fn drop_refs(
    txn: &mut Txn<'_>,
    bucket: &str,
    parts: &[PartRef],
    freed: &mut Vec<[u8; 16]>,
) -> Result<(), MetaError> {
    for part in parts {
        let key = keys::blob_ref(bucket, &part.blob_id);
        let count = match txn.get(&key)? {
            Some(v) => codec::decode_u64(&v)?,
            None => 0,
        };
        match count {
            0 => {
                return Err(MetaError::Storage(format!(
                    "blob {} of bucket {bucket} has no reference to drop",
                    hex_id(&part.blob_id)
                )))
            }
            1 => {
                txn.delete(key);
                freed.push(part.blob_id);
            }
            n => txn.put(key, codec::encode_u64(n - 1)),
        }
    }
    Ok(())
}

fn hex_id(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks `If-None-Match: *` / `If-Match` against the current version of `key`.
fn check_condition(
    txn: &Txn<'_>,
    bucket: &str,
    key: &str,
    condition: Option<&WriteCondition>,
) -> Result<(), MetaError> {
    let Some(condition) = condition else {
        return Ok(());
    };
    let live = newest_version(txn, bucket, key)?.filter(|v| !v.delete_marker);
    match condition {
        WriteCondition::IfNoneMatchStar if live.is_some() => Err(MetaError::PreconditionFailed),
        WriteCondition::IfNoneMatchStar => Ok(()),
        WriteCondition::IfMatch(etag) => {
            let live = live.ok_or_else(|| MetaError::NoSuchKey(key.to_owned()))?;
            let wanted = etag.trim().trim_matches('"');
            if wanted == "*" || wanted == live.etag {
                Ok(())
            } else {
                Err(MetaError::PreconditionFailed)
            }
        }
    }
}

/// Fails with `ObjectLocked` if Object Lock forbids removing `v` at `now_ms`.
fn check_removable(
    v: &ObjectVersion,
    now_ms: i64,
    bypass_governance: bool,
) -> Result<(), MetaError> {
    if v.delete_marker {
        return Ok(());
    }
    if v.legal_hold {
        return Err(MetaError::ObjectLocked(format!(
            "{} {} is under legal hold",
            v.key, v.version_id
        )));
    }
    match &v.retention {
        Some(r) if r.retain_until_ms > now_ms => {
            if r.mode == "GOVERNANCE" && bypass_governance {
                Ok(())
            } else {
                Err(MetaError::ObjectLocked(format!(
                    "{} {} is retained in {} mode until {}",
                    v.key, v.version_id, r.mode, r.retain_until
                )))
            }
        }
        _ => Ok(()),
    }
}

/// Stores a new version (its `seq` assigned, its blob references already added) under the
/// bucket's versioning rules: in unversioned and suspended buckets it must be the `null`
/// version and replaces the previous one; in enabled buckets its id must be new.
fn store_new_version(
    txn: &mut Txn<'_>,
    bucket: &BucketRecord,
    version: &ObjectVersion,
    now_ms: i64,
    bypass_governance: bool,
    freed: &mut Vec<[u8; 16]>,
) -> Result<(), MetaError> {
    use crate::types::Versioning;
    let name = &bucket.name;
    match bucket.versioning {
        Versioning::Unversioned | Versioning::Suspended => {
            if version.version_id != NULL_VERSION {
                return Err(MetaError::Invalid(format!(
                    "version id must be \"null\" in a bucket without versioning, got {:?}",
                    version.version_id
                )));
            }
            if let Some(old) = version_by_id(txn, name, &version.key, NULL_VERSION)? {
                check_removable(&old, now_ms, bypass_governance)?;
                remove_version(txn, name, &old, freed)?;
            }
        }
        Versioning::Enabled => {
            if version.version_id.is_empty() || version.version_id == NULL_VERSION {
                return Err(MetaError::Invalid(format!(
                    "invalid version id {:?} in a versioned bucket",
                    version.version_id
                )));
            }
            if txn
                .get(&keys::version_id(name, &version.key, &version.version_id))?
                .is_some()
            {
                return Err(MetaError::Invalid(format!(
                    "version id {:?} of {:?} already exists",
                    version.version_id, version.key
                )));
            }
        }
    }
    write_version(txn, name, version)?;
    refresh_current(txn, name, &version.key)
}

/// Object Lock settings need a bucket created with Object Lock.
fn check_lock_allowed(
    bucket: &BucketRecord,
    has_retention: bool,
    legal_hold: bool,
) -> Result<(), MetaError> {
    if (has_retention || legal_hold) && !bucket.object_lock_enabled {
        return Err(MetaError::Invalid(format!(
            "bucket {} is missing Object Lock configuration",
            bucket.name
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod testutil;
