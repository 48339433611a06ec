//! Reads of the state: a [`Reader`] is a RocksDB snapshot, so every answer it gives (a page of
//! a listing included) is consistent. Listings are in [`crate::list`].

use rocksdb::{ColumnFamily, DBRawIteratorWithThreadMode, ReadOptions, SnapshotWithThreadMode};
use serde::de::DeserializeOwned;

use crate::codec::{self, UploadIndex};
use crate::error::MetaError;
use crate::keys;
use crate::state_machine::{storage, Db};
use crate::types::{BucketRecord, MultipartUpload, ObjectVersion, StateDigest, UploadedPart};

/// A consistent read view of the state machine.
pub struct Reader<'a> {
    cf: &'a ColumnFamily,
    snapshot: SnapshotWithThreadMode<'a, Db>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(db: &'a Db, cf: &'a ColumnFamily) -> Self {
        Self {
            cf,
            snapshot: db.snapshot(),
        }
    }

    pub(crate) fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
        self.snapshot.get_cf(self.cf, key).map_err(storage)
    }

    pub(crate) fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, MetaError> {
        self.get_raw(key)?.map(|v| codec::decode(&v)).transpose()
    }

    /// A raw iterator over the snapshot, bounded above by `upper` (exclusive).
    pub(crate) fn iter(&self, upper: Option<Vec<u8>>) -> DBRawIteratorWithThreadMode<'_, Db> {
        let mut opts = ReadOptions::default();
        if let Some(upper) = upper {
            opts.set_iterate_upper_bound(upper);
        }
        self.snapshot.raw_iterator_cf_opt(self.cf, opts)
    }

    /// Decoded values of up to `limit` records whose key starts with `prefix`, from `start`.
    pub(crate) fn scan<T: DeserializeOwned>(
        &self,
        prefix: &[u8],
        start: &[u8],
        limit: usize,
    ) -> Result<Vec<T>, MetaError> {
        let mut it = self.iter(keys::prefix_successor(prefix));
        it.seek(start.max(prefix));
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(value) = it.value() else { break };
            out.push(codec::decode(value)?);
            it.next();
        }
        it.status().map_err(storage)?;
        Ok(out)
    }

    /// A bucket, or `NoSuchBucket`.
    pub fn get_bucket(&self, bucket: &str) -> Result<BucketRecord, MetaError> {
        self.get(&keys::bucket(bucket))?
            .ok_or_else(|| MetaError::NoSuchBucket(bucket.to_owned()))
    }

    /// All buckets, by name.
    pub fn list_buckets(&self) -> Result<Vec<BucketRecord>, MetaError> {
        let prefix = keys::bucket_prefix();
        self.scan(&prefix, &prefix, usize::MAX)
    }

    /// A job record.
    pub fn get_job(&self, id: &str) -> Result<Option<crate::job::JobRecord>, MetaError> {
        self.get(&keys::job(id))
    }

    /// All job records, by id.
    pub fn list_jobs(&self) -> Result<Vec<crate::job::JobRecord>, MetaError> {
        let prefix = keys::job_prefix();
        self.scan(&prefix, &prefix, usize::MAX)
    }

    /// A version: the current one when `version_id` is `None` (possibly a delete marker), or
    /// `NoSuchKey` / `NoSuchVersion`.
    pub fn get_object(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectVersion, MetaError> {
        self.get_bucket(bucket)?;
        match version_id {
            None => {
                if let Some(v) = self.get(&keys::current(bucket, key))? {
                    return Ok(v);
                }
                // No live current version: the newest may be a delete marker.
                let prefix = keys::versions_of(bucket, key);
                self.scan::<ObjectVersion>(&prefix, &prefix, 1)?
                    .pop()
                    .filter(|v| v.delete_marker)
                    .ok_or_else(|| MetaError::NoSuchKey(key.to_owned()))
            }
            Some(id) => {
                let seq = self
                    .get_raw(&keys::version_id(bucket, key, id))?
                    .ok_or_else(|| MetaError::NoSuchVersion(id.to_owned()))?;
                let seq = codec::decode_u64(&seq)?;
                self.get(&keys::version(bucket, key, seq))?
                    .ok_or_else(|| MetaError::Storage(format!("dangling version index {id}")))
            }
        }
    }

    pub(crate) fn upload_index(
        &self,
        bucket: &str,
        upload_id: &str,
    ) -> Result<Option<UploadIndex>, MetaError> {
        self.get(&keys::upload_id(bucket, upload_id))
    }

    /// A multipart upload, or `NoSuchUpload`.
    pub fn get_upload(&self, bucket: &str, upload_id: &str) -> Result<MultipartUpload, MetaError> {
        self.get_bucket(bucket)?;
        let index = self
            .upload_index(bucket, upload_id)?
            .ok_or_else(|| MetaError::NoSuchUpload(upload_id.to_owned()))?;
        self.get(&keys::upload(bucket, &index.key, index.seq))?
            .ok_or_else(|| MetaError::Storage(format!("dangling upload index {upload_id}")))
    }

    /// Parts with number > `part_number_marker`, at most `max_parts`, and whether more exist.
    pub fn list_parts(
        &self,
        bucket: &str,
        upload_id: &str,
        part_number_marker: u32,
        max_parts: usize,
    ) -> Result<(Vec<UploadedPart>, bool), MetaError> {
        self.get_bucket(bucket)?;
        if self.upload_index(bucket, upload_id)?.is_none() {
            return Err(MetaError::NoSuchUpload(upload_id.to_owned()));
        }
        let prefix = keys::parts_of(bucket, upload_id);
        let Some(first) = part_number_marker.checked_add(1) else {
            return Ok((Vec::new(), false));
        };
        let start = keys::part(bucket, upload_id, first);
        let mut parts = self.scan(&prefix, &start, max_parts.saturating_add(1))?;
        let more = parts.len() > max_parts;
        parts.truncate(max_parts);
        Ok((parts, more))
    }

    /// A value of the global config space.
    pub fn get_config(&self, name: &str) -> Result<Option<Vec<u8>>, MetaError> {
        self.get_raw(&keys::config(name))
    }

    /// For each blob id, whether an object version or an uploaded part of some bucket
    /// references it (its reference count `D <bucket>$ R <blob_id>` exists). Buckets are the
    /// only owners of references: an empty bucket has none, so a deleted bucket left none.
    pub fn blob_references(&self, ids: &[[u8; 16]]) -> Result<Vec<bool>, MetaError> {
        let buckets = self.list_buckets()?;
        ids.iter()
            .map(|id| {
                for b in &buckets {
                    if self.get_raw(&keys::blob_ref(&b.name, id))?.is_some() {
                        return Ok(true);
                    }
                }
                Ok(false)
            })
            .collect()
    }

    /// A digest of the whole state: SHA-256 over every key and value in key order (each as its
    /// length in 8 big-endian bytes, then its bytes). Two members that applied the same log
    /// have the same digest.
    pub fn digest(&self) -> Result<StateDigest, MetaError> {
        let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
        let mut entries = 0u64;
        let mut it = self.iter(None);
        it.seek_to_first();
        while let Some((k, v)) = it.item() {
            for part in [k, v] {
                sha.update(&(part.len() as u64).to_be_bytes());
                sha.update(part);
            }
            entries += 1;
            it.next();
        }
        it.status().map_err(storage)?;
        let last_applied = match self.get_raw(&keys::applied_index())? {
            Some(v) => codec::decode_u64(&v)?,
            None => 0,
        };
        let sha256 = sha
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(StateDigest {
            last_applied,
            entries,
            sha256,
        })
    }
}
