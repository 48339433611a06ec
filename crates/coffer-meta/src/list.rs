//! ListObjects(V2), ListObjectVersions and ListMultipartUploads over a [`Reader`].
//!
//! All three walk one kind of a bucket's records (`C`, `V` or `U`, see [`crate::keys`]) from a
//! start position inside the scan range of `prefix`, in S3 order (UTF-8 binary order of keys).
//! With a delimiter, a key whose remainder after the prefix contains it is rolled up into the
//! common prefix ending at its first occurrence; the walk then seeks past every key with that
//! common prefix instead of iterating them. A common prefix is emitted only if it sorts after the
//! marker, so that resuming from a page whose last entry was a common prefix does not repeat it.
//! Keys and common prefixes both count against the page size; a page is truncated when one more
//! entry exists after it (so `max == 0` answers whether anything is left).

use crate::codec;
use crate::error::MetaError;
use crate::keys;
use crate::read::Reader;
use crate::types::{
    ListPage, ListQuery, MultipartUpload, ObjectVersion, UploadPage, UploadQuery, VersionPage,
    VersionQuery,
};

enum Entry<T> {
    Item(T),
    Prefix(String),
}

/// Where a walk starts and what it may emit.
struct Walk<'q> {
    kind: u8,
    prefix: &'q str,
    delimiter: Option<&'q str>,
    /// Raw key to seek to (clamped to the prefix's range).
    start: Vec<u8>,
    /// Common prefixes must sort after this.
    marker: Option<&'q str>,
    max: usize,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn walk<T>(
    r: &Reader<'_>,
    bucket: &str,
    w: Walk<'_>,
    mut item: impl FnMut(&[u8], &[u8]) -> Result<T, MetaError>,
) -> Result<(Vec<Entry<T>>, bool), MetaError> {
    let range = keys::component_prefix(bucket, w.kind, w.prefix);
    let mut it = r.iter(keys::prefix_successor(&range));
    it.seek(w.start.max(range));
    let delimiter = w.delimiter.filter(|d| !d.is_empty()).map(str::as_bytes);
    let mut out = Vec::new();
    let mut truncated = false;
    while let Some(raw) = it.key() {
        let key = keys::object_key_of(bucket, raw)
            .ok_or_else(|| MetaError::Storage(format!("malformed record key {raw:?}")))?;
        let rolled_up = delimiter.and_then(|d| {
            find(&key[w.prefix.len()..], d)
                .map(|pos| key[..w.prefix.len() + pos + d.len()].to_vec())
        });
        if let Some(common) = rolled_up {
            let common = String::from_utf8(common)
                .map_err(|_| MetaError::Storage("non-UTF-8 object key".into()))?;
            if w.marker.is_none_or(|m| common.as_str() > m) {
                if out.len() == w.max {
                    truncated = true;
                    break;
                }
                out.push(Entry::Prefix(common.clone()));
            }
            match keys::prefix_successor(&keys::component_prefix(bucket, w.kind, &common)) {
                Some(next) => it.seek(next),
                None => break,
            }
            continue;
        }
        if out.len() == w.max {
            truncated = true;
            break;
        }
        out.push(Entry::Item(item(&key, it.value().unwrap_or_default())?));
        it.next();
    }
    it.status().map_err(crate::state_machine::storage)?;
    Ok((out, truncated))
}

impl Reader<'_> {
    /// Current versions that are not delete markers, with delimiter grouping.
    pub fn list_objects(&self, bucket: &str, q: &ListQuery) -> Result<ListPage, MetaError> {
        self.get_bucket(bucket)?;
        let start = match &q.start_after {
            Some(after) => keys::key_successor(&keys::current(bucket, after)),
            None => Vec::new(),
        };
        let walk_spec = Walk {
            kind: keys::CURRENT,
            prefix: &q.prefix,
            delimiter: q.delimiter.as_deref(),
            start,
            marker: q.start_after.as_deref(),
            max: q.max_keys,
        };
        let (entries, is_truncated) = walk(self, bucket, walk_spec, |_, v| {
            codec::decode::<ObjectVersion>(v)
        })?;
        let mut page = ListPage {
            is_truncated,
            ..ListPage::default()
        };
        for entry in entries {
            match entry {
                Entry::Item(v) => {
                    page.next_marker = Some(v.key.clone());
                    page.objects.push(v);
                }
                Entry::Prefix(p) => {
                    page.next_marker = Some(p.clone());
                    page.common_prefixes.push(p);
                }
            }
        }
        Ok(page)
    }

    /// All versions and delete markers, by key then newest first. `version_id_marker` is used
    /// only with `key_marker`; if that version no longer exists, the page starts at the newest
    /// version of `key_marker` again (repeating rather than skipping).
    pub fn list_object_versions(
        &self,
        bucket: &str,
        q: &VersionQuery,
    ) -> Result<VersionPage, MetaError> {
        self.get_bucket(bucket)?;
        let mut previous_key: Option<Vec<u8>> = None;
        let start = match (&q.key_marker, &q.version_id_marker) {
            (None, _) => Vec::new(),
            (Some(km), None) => keys::prefix_successor(&keys::versions_of(bucket, km))
                .expect("a version prefix is not all 0xFF"),
            (Some(km), Some(id)) => match self.get_raw(&keys::version_id(bucket, km, id))? {
                Some(seq) => {
                    previous_key = Some(km.as_bytes().to_vec());
                    keys::key_successor(&keys::version(bucket, km, codec::decode_u64(&seq)?))
                }
                None => keys::versions_of(bucket, km),
            },
        };
        let walk_spec = Walk {
            kind: keys::VERSION,
            prefix: &q.prefix,
            delimiter: q.delimiter.as_deref(),
            start,
            marker: q.key_marker.as_deref(),
            max: q.max_keys,
        };
        let (entries, is_truncated) = walk(self, bucket, walk_spec, |key, v| {
            let version = codec::decode::<ObjectVersion>(v)?;
            let is_latest = previous_key.as_deref() != Some(key);
            previous_key = Some(key.to_vec());
            Ok((version, is_latest))
        })?;
        let mut page = VersionPage {
            is_truncated,
            ..VersionPage::default()
        };
        for entry in entries {
            match entry {
                Entry::Item((v, latest)) => {
                    page.next_key_marker = Some(v.key.clone());
                    page.next_version_id_marker = Some(v.version_id.clone());
                    page.versions.push((v, latest));
                }
                Entry::Prefix(p) => {
                    page.next_key_marker = Some(p.clone());
                    page.next_version_id_marker = None;
                    page.common_prefixes.push(p);
                }
            }
        }
        Ok(page)
    }

    /// Uploads in progress, by key then initiation order. As for versions, an
    /// `upload_id_marker` that no longer exists restarts at the first upload of `key_marker`.
    pub fn list_uploads(&self, bucket: &str, q: &UploadQuery) -> Result<UploadPage, MetaError> {
        self.get_bucket(bucket)?;
        let start = match (&q.key_marker, &q.upload_id_marker) {
            (None, _) => Vec::new(),
            (Some(km), None) => {
                keys::prefix_successor(&keys::component_key(bucket, keys::UPLOAD, km))
                    .expect("an upload prefix is not all 0xFF")
            }
            (Some(km), Some(id)) => match self.upload_index(bucket, id)? {
                Some(index) if &index.key == km => {
                    keys::key_successor(&keys::upload(bucket, km, index.seq))
                }
                _ => keys::component_key(bucket, keys::UPLOAD, km),
            },
        };
        let walk_spec = Walk {
            kind: keys::UPLOAD,
            prefix: &q.prefix,
            delimiter: q.delimiter.as_deref(),
            start,
            marker: q.key_marker.as_deref(),
            max: q.max_uploads,
        };
        let (entries, is_truncated) = walk(self, bucket, walk_spec, |_, v| {
            codec::decode::<MultipartUpload>(v)
        })?;
        let mut page = UploadPage {
            is_truncated,
            ..UploadPage::default()
        };
        for entry in entries {
            match entry {
                Entry::Item(u) => {
                    page.next_key_marker = Some(u.key.clone());
                    page.next_upload_id_marker = Some(u.upload_id.clone());
                    page.uploads.push(u);
                }
                Entry::Prefix(p) => {
                    page.next_key_marker = Some(p.clone());
                    page.next_upload_id_marker = None;
                    page.common_prefixes.push(p);
                }
            }
        }
        Ok(page)
    }
}

#[cfg(test)]
#[path = "list_tests.rs"]
mod tests;
