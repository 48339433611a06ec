//! Which material versions of a KMS key the stored data still needs: every object version's
//! envelope (and every multipart upload in progress) of every bucket is read, and each data key
//! wrapped by the key is counted under the material version its Coffer keystore blob names.
//!
//! An envelope with a Bucket Key counts under the material of its bucket key record (read once
//! per record): `BucketKeys` counts the distinct records, `Envelopes` the objects. Blobs that
//! are not Coffer keystore blobs (an AWS KMS behind the gateway: opaque) count as `Unknown`;
//! while any is unknown, no material is reported as no longer needed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use coffer_meta::{Envelope, UploadQuery, VersionQuery};
use serde::Serialize;

use crate::error::{S3ErrorCode, S3Result};
use crate::state::AppState;

/// Listing page size of the walk.
const PAGE: usize = 1000;

/// The usage of a key's material versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMaterials {
    /// The key's ARN.
    pub key_arn: String,
    /// Its current material version (new data keys are wrapped under it).
    pub current_material_version: u32,
    /// Versions 1..=current, in order.
    pub materials: Vec<MaterialUsage>,
    /// Envelopes naming the key whose blob names no material (not a Coffer keystore blob, or a
    /// bucket key record that is missing).
    pub unknown: u64,
}

/// The references to one material version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MaterialUsage {
    /// Material version.
    pub version: u32,
    /// Object versions and uploads whose data key depends on it (directly or through a bucket
    /// key).
    pub envelopes: u64,
    /// Bucket key records wrapped under it that objects use.
    pub bucket_keys: u64,
    /// Older than the current material, nothing references it, and no reference is unknown.
    pub no_longer_needed: bool,
}

/// Where a wrapped blob points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ref {
    Material(u32),
    Unknown,
    /// A bucket key record of another KMS key.
    OtherKey,
}

/// The counts of a walk.
struct Tally {
    key_arn: String,
    key_id: String,
    envelopes: BTreeMap<u32, u64>,
    bucket_keys: BTreeMap<u32, u64>,
    unknown: u64,
    records: HashMap<String, Ref>,
}

impl Tally {
    fn blob_ref(&self, blob: &[u8]) -> Ref {
        match coffer_kms::ciphertext::material_of(blob) {
            Some(h) if h.key_id.to_string().eq_ignore_ascii_case(&self.key_id) => {
                Ref::Material(h.material_version)
            }
            _ => Ref::Unknown,
        }
    }

    /// The material of bucket key record `id`, read from meta on first use.
    async fn record_ref(&mut self, state: &AppState, id: &str) -> S3Result<Ref> {
        if let Some(r) = self.records.get(id) {
            return Ok(*r);
        }
        let r = match crate::bucket_keys::record(state, id).await? {
            None => Ref::Unknown,
            Some(record) if record.kms_key_arn != self.key_arn => Ref::OtherKey,
            Some(record) => self.blob_ref(&record.wrapped),
        };
        if let Ref::Material(v) = r {
            *self.bucket_keys.entry(v).or_default() += 1;
        }
        self.records.insert(id.to_owned(), r);
        Ok(r)
    }

    async fn count(&mut self, state: &AppState, env: &Envelope) -> S3Result<()> {
        if env.kms_key_arn.as_deref() != Some(self.key_arn.as_str()) {
            return Ok(());
        }
        // The materials this envelope needs: an envelope counts once per material, even when
        // both DSSE-KMS layers name the same one.
        let mut needs = BTreeSet::new();
        let mut unknown = false;
        let refs = match &env.bucket_key_id {
            Some(id) => vec![self.record_ref(state, id).await?],
            None => std::iter::once(&env.wrapped_dek)
                .chain(env.second_wrapped_dek.as_ref())
                .map(|blob| self.blob_ref(blob))
                .collect(),
        };
        for r in refs {
            match r {
                Ref::Material(v) => {
                    needs.insert(v);
                }
                Ref::Unknown => unknown = true,
                Ref::OtherKey => {}
            }
        }
        for v in needs {
            *self.envelopes.entry(v).or_default() += 1;
        }
        self.unknown += u64::from(unknown);
        Ok(())
    }

    fn report(self, current: u32) -> KeyMaterials {
        let top = self
            .envelopes
            .keys()
            .chain(self.bucket_keys.keys())
            .copied()
            .chain([current])
            .max()
            .unwrap_or(current);
        let materials = (1..=top)
            .map(|version| {
                let envelopes = self.envelopes.get(&version).copied().unwrap_or(0);
                let bucket_keys = self.bucket_keys.get(&version).copied().unwrap_or(0);
                MaterialUsage {
                    version,
                    envelopes,
                    bucket_keys,
                    no_longer_needed: version < current
                        && envelopes == 0
                        && bucket_keys == 0
                        && self.unknown == 0,
                }
            })
            .collect();
        KeyMaterials {
            key_arn: self.key_arn,
            current_material_version: current,
            materials,
            unknown: self.unknown,
        }
    }
}

/// The material usage of `key` (key ID, key ARN, alias or alias ARN): DescribeKey, then every
/// bucket's versions and uploads in progress.
pub async fn key_materials(state: &AppState, key: &str) -> S3Result<KeyMaterials> {
    let meta = state.kms.describe_key(key).await?;
    let mut tally = Tally {
        key_arn: meta.arn,
        key_id: meta.key_id,
        envelopes: BTreeMap::new(),
        bucket_keys: BTreeMap::new(),
        unknown: 0,
        records: HashMap::new(),
    };
    for bucket in state.meta.list_buckets().await? {
        match count_bucket(state, &bucket.name, &mut tally).await {
            // Deleted during the walk: it references nothing any more.
            Err(e) if e.code() == S3ErrorCode::NoSuchBucket => {}
            other => other?,
        }
    }
    Ok(tally.report(meta.current_material_version))
}

async fn count_bucket(state: &AppState, bucket: &str, tally: &mut Tally) -> S3Result<()> {
    let mut q = VersionQuery {
        max_keys: PAGE,
        ..Default::default()
    };
    loop {
        let page = state.meta.list_object_versions(bucket, &q).await?;
        for (version, _) in &page.versions {
            if let Some(env) = &version.envelope {
                tally.count(state, env).await?;
            }
        }
        if !page.is_truncated || page.next_key_marker.is_none() {
            break;
        }
        q.key_marker = page.next_key_marker;
        q.version_id_marker = page.next_version_id_marker;
    }
    let mut q = UploadQuery {
        max_uploads: PAGE,
        ..Default::default()
    };
    loop {
        let page = state.meta.list_uploads(bucket, &q).await?;
        for upload in &page.uploads {
            tally.count(state, &upload.envelope).await?;
        }
        if !page.is_truncated || page.next_key_marker.is_none() {
            break;
        }
        q.key_marker = page.next_key_marker;
        q.upload_id_marker = page.next_upload_id_marker;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use coffer_meta::{Command, SseAlgorithm};

    use super::*;
    use crate::sse::{new_object_key, SseRequest};
    use crate::test_support::{create_bucket, gateway, new_key, put_version};

    /// Puts `name` (version `name`) encrypted under `key_arn`; returns its envelope.
    async fn put(
        state: &AppState,
        name: &str,
        algorithm: SseAlgorithm,
        key_arn: &str,
        bucket_key: bool,
    ) -> Envelope {
        let req = SseRequest {
            algorithm,
            kms_key_id: Some(key_arn.into()),
            context: None,
            bucket_key,
            customer_key: None,
        };
        let envelope = new_object_key(state, "b", name, &req)
            .await
            .unwrap()
            .envelope;
        put_envelope(state, name, envelope.clone()).await;
        envelope
    }

    async fn put_envelope(state: &AppState, name: &str, envelope: Envelope) {
        put_version(state, "b", name, name, envelope).await;
    }

    async fn delete(state: &AppState, name: &str) {
        let cmd = Command::DeleteObject {
            bucket: "b".into(),
            key: name.into(),
            version_id: Some(name.into()),
            marker_version_id: format!("dm-{name}"),
            now_ms: 2,
            bypass_governance: false,
        };
        state.meta.apply(cmd).await.unwrap();
    }

    fn usage(r: &KeyMaterials) -> Vec<(u32, u64, u64, bool)> {
        r.materials
            .iter()
            .map(|m| (m.version, m.envelopes, m.bucket_keys, m.no_longer_needed))
            .collect()
    }

    /// Objects with and without a Bucket Key and DSSE-KMS ones count under the material that
    /// wrapped them; once the old material's objects are gone it is no longer needed, and an
    /// unreadable blob keeps every material needed.
    #[tokio::test]
    async fn materials_count_envelopes_and_bucket_keys() {
        let dir = tempfile::tempdir().unwrap();
        let state = gateway(dir.path()).await;
        create_bucket(&state, "b").await;
        let key = new_key(state.kms.as_ref()).await;
        let other = new_key(state.kms.as_ref()).await;
        for name in ["p1", "p2"] {
            put(&state, name, SseAlgorithm::AwsKms, &key, false).await;
        }
        for name in ["bk1", "bk2", "bk3"] {
            put(&state, name, SseAlgorithm::AwsKms, &key, true).await;
        }
        put(&state, "dsse", SseAlgorithm::AwsKmsDsse, &key, false).await;
        put(&state, "other", SseAlgorithm::AwsKms, &other, true).await;

        let r = key_materials(&state, &key).await.unwrap();
        assert_eq!(r.key_arn, key);
        assert_eq!((r.current_material_version, r.unknown), (1, 0));
        assert_eq!(usage(&r), vec![(1, 6, 1, false)]);

        state.kms.rotate_key_on_demand(&key).await.unwrap();
        let new = put(&state, "new", SseAlgorithm::AwsKms, &key, false).await;
        // By alias too.
        state.kms.create_alias("alias/usage", &key).await.unwrap();
        let r = key_materials(&state, "alias/usage").await.unwrap();
        assert_eq!(r.current_material_version, 2);
        assert_eq!(usage(&r), vec![(1, 6, 1, false), (2, 1, 0, false)]);

        for name in ["p1", "p2", "bk1", "bk2", "bk3", "dsse"] {
            delete(&state, name).await;
        }
        let r = key_materials(&state, &key).await.unwrap();
        assert_eq!(usage(&r), vec![(1, 0, 0, true), (2, 1, 0, false)]);

        let foreign = Envelope {
            wrapped_dek: b"an AWS KMS blob, opaque".to_vec(),
            ..new
        };
        put_envelope(&state, "x", foreign).await;
        let r = key_materials(&state, &key).await.unwrap();
        assert_eq!(r.unknown, 1);
        assert_eq!(usage(&r), vec![(1, 0, 0, false), (2, 1, 0, false)]);

        assert!(key_materials(&state, "alias/none").await.is_err());
    }
}
