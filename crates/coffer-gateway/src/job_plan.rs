//! What a job does to one page of object versions (issue 8): which versions it selects and, for
//! each, the envelope compare-and-set it commits, or why it leaves the version alone.
//!
//! A page costs one KMS `ReEncrypt` batch (one round trip to the KMS role) and then one Raft
//! entry: the checkpoint carries every envelope compare-and-set of the page with the job's new
//! cursor and counters, applied all or nothing (`JobProgress::rewraps`). So after a crash a page
//! is either wholly committed or not at all, and `rewrapped` counts exactly the envelopes this
//! job changed.
//!
//! Bucket Keys are rewrapped once, not per object:
//! - a re-encryption job moving objects under bucket key `X` (KMS key A) to key B with Bucket
//!   Key on rewraps `X` once under B (one ReEncrypt, a new record `X'` with the same bucket key,
//!   put by the same checkpoint); each object's envelope then only names `X'` and B — its
//!   wrapped data key, sealed by the unchanged bucket key, stays as it is;
//! - a key rotation rewraps the record of each bucket key wrapped by an old key material (same
//!   id, new ciphertext), and the objects under it need no change at all (`via_bucket_key`).
//!
//! The other combinations (Bucket Key on one side only) go through [`crate::sse::rewrap`], a
//! KMS call per object, `concurrency` at once.

use std::collections::{BTreeSet, HashMap, HashSet};

use coffer_kms::{ReEncryptItem, ReEncrypted, MAX_REENCRYPT_BATCH};
use coffer_meta::{
    ConfigPut, Envelope, EnvelopeRewrap, JobCounters, JobKind, MetaError, ObjectVersion,
    ReencryptSpec, RotateSpec, SkippedObject, SourceFilter, SseAlgorithm,
};
use futures::StreamExt;

use crate::bucket_keys::{self, BucketKeyRecord};
use crate::error::{S3Error, S3ErrorCode, S3Result};
use crate::s3::update_encryption::{at_target, check, Target};
use crate::state::AppState;

/// A job's work, from its kind.
#[derive(Debug, Clone)]
pub enum Work {
    /// Move the selected versions to a KMS key.
    Reencrypt {
        /// What is selected.
        spec: ReencryptSpec,
        /// Where it goes.
        target: Target,
    },
    /// Move what a key's old materials wrap to its current material.
    Rotate(RotateSpec),
}

impl Work {
    /// The work of a job kind.
    pub fn new(kind: &JobKind) -> Self {
        match kind {
            JobKind::Reencrypt(spec) => Work::Reencrypt {
                target: Target {
                    key_arn: spec.target_key_arn.clone(),
                    bucket_key_enabled: spec.bucket_key_enabled,
                },
                spec: spec.clone(),
            },
            JobKind::Rotate(spec) => Work::Rotate(spec.clone()),
        }
    }

    /// Every version (true) or the current ones.
    pub fn all_versions(&self) -> bool {
        match self {
            Work::Reencrypt { spec, .. } => spec.all_versions,
            Work::Rotate(_) => true,
        }
    }

    /// The key prefix walked.
    pub fn prefix(&self) -> &str {
        match self {
            Work::Reencrypt { spec, .. } => &spec.prefix,
            Work::Rotate(_) => "",
        }
    }

    /// The buckets walked, in order. A re-encryption job has one; a rotation the ones named, or
    /// every bucket.
    pub async fn buckets(&self, state: &AppState) -> Result<Vec<String>, MetaError> {
        match self {
            Work::Reencrypt { spec, .. } => Ok(vec![spec.bucket.clone()]),
            Work::Rotate(spec) if !spec.buckets.is_empty() => {
                let mut b = spec.buckets.clone();
                b.sort();
                b.dedup();
                Ok(b)
            }
            Work::Rotate(_) => {
                let mut b: Vec<String> = state
                    .meta
                    .list_buckets()
                    .await?
                    .into_iter()
                    .filter(|b| !b.directory)
                    .map(|b| b.name)
                    .collect();
                b.sort();
                Ok(b)
            }
        }
    }

    /// Whether the job selects a version (it counts in the job's total).
    pub fn selects(&self, v: &ObjectVersion) -> bool {
        match self {
            Work::Reencrypt { spec, target } => selected(v, spec, target),
            Work::Rotate(spec) => {
                !v.delete_marker
                    && v.envelope.as_ref().is_some_and(|e| {
                        e.algorithm != SseAlgorithm::SseC
                            && e.kms_key_arn.as_deref() == Some(spec.key_arn.as_str())
                    })
            }
        }
    }
}

/// Whether a version is selected by a re-encryption job: it matches the source filter, or it
/// is already under the target (a version the job itself rewrapped before a crash stays
/// selected, so a resumed job counts it as already done, not as missing).
pub fn selected(v: &ObjectVersion, spec: &ReencryptSpec, target: &Target) -> bool {
    if v.delete_marker {
        return false;
    }
    let Some(env) = &v.envelope else {
        return spec.source == SourceFilter::Any;
    };
    at_target(env, target) || matches_source(env, &spec.source)
}

fn matches_source(env: &Envelope, source: &SourceFilter) -> bool {
    match source {
        SourceFilter::Any => true,
        SourceFilter::SseS3 => env.algorithm == SseAlgorithm::Aes256,
        SourceFilter::SseKms(arn) => {
            env.algorithm == SseAlgorithm::AwsKms
                && arn
                    .as_deref()
                    .map_or(true, |a| env.kms_key_arn.as_deref() == Some(a))
        }
    }
}

/// A version of a page, with its bucket (rotations walk several).
#[derive(Debug, Clone)]
pub struct Item {
    /// Bucket.
    pub bucket: String,
    /// The version as listed.
    pub version: ObjectVersion,
}

/// What a page comes to: the checkpoint's content, except the cursor.
#[derive(Debug, Default)]
pub struct Plan {
    /// Envelope compare-and-sets (each counts as `rewrapped` once committed).
    pub rewraps: Vec<EnvelopeRewrap>,
    /// Bucket key records to put with them.
    pub config_puts: Vec<ConfigPut>,
    /// Counts of the versions not rewrapped, and `bucket_keys_rewrapped`.
    pub counters: JobCounters,
    /// Skipped and failed versions.
    pub skipped: Vec<SkippedObject>,
    /// A version met a transient failure: the page is to be done again.
    pub transient: bool,
}

impl Plan {
    fn skip(&mut self, item: &Item, reason: &str, detail: Option<String>) {
        self.counters.skipped += 1;
        self.skipped.push(skipped(item, reason, detail));
    }

    fn fail(&mut self, item: &Item, e: &S3Error) {
        self.counters.failed += 1;
        self.skipped.push(skipped(
            item,
            "failed",
            Some(format!("{}: {}", e.code().as_str(), e.message())),
        ));
    }

    /// The outcome of an error on `item`: deleted meanwhile (skipped), transient (the page is
    /// done again, unless this is the last attempt) or failed.
    pub fn error(&mut self, item: &Item, e: &S3Error, last_attempt: bool) {
        match e.code() {
            S3ErrorCode::NoSuchKey | S3ErrorCode::NoSuchVersion => self.skip(item, "deleted", None),
            S3ErrorCode::ServiceUnavailable
            | S3ErrorCode::KMSInternalException
            | S3ErrorCode::InternalError
                if !last_attempt =>
            {
                tracing::warn!(key = %item.version.key, error = ?e, "job runner: transient rewrap failure");
                self.transient = true;
            }
            _ => self.fail(item, e),
        }
    }

    /// Adds another plan (of re-planned versions).
    pub fn merge(&mut self, other: Plan) {
        self.rewraps.extend(other.rewraps);
        for p in other.config_puts {
            if !self.config_puts.iter().any(|q| q.name == p.name) {
                self.config_puts.push(p);
            }
        }
        let c = &other.counters;
        self.counters.already_done += c.already_done;
        self.counters.skipped += c.skipped;
        self.counters.failed += c.failed;
        self.counters.via_bucket_key += c.via_bucket_key;
        self.counters.bucket_keys_rewrapped += c.bucket_keys_rewrapped;
        self.skipped.extend(other.skipped);
        self.transient |= other.transient;
    }
}

fn skipped(item: &Item, reason: &str, detail: Option<String>) -> SkippedObject {
    SkippedObject {
        key: item.version.key.clone(),
        version_id: item.version.version_id.clone(),
        reason: reason.to_owned(),
        detail,
    }
}

/// A bucket key record this run rewrapped (rotation) or derived (re-encryption).
#[derive(Debug, Clone)]
struct Rewrapped {
    record: BucketKeyRecord,
    /// A checkpoint carrying its record has been committed.
    committed: bool,
}

/// Bucket keys of one job run: each source bucket key is rewrapped once per run.
#[derive(Debug, Default)]
pub struct BucketKeyCache {
    /// Re-encryption: (source bucket key id, target key ARN) → the derived record.
    derived: HashMap<(String, String), Rewrapped>,
    /// Rotation: bucket key id → its record rewrapped under the current material.
    rotated: HashMap<String, Rewrapped>,
    /// Rotation: bucket keys found already under the current material (or not under the key).
    current: HashSet<String>,
}

impl BucketKeyCache {
    /// A checkpoint carrying these puts committed: they are counted and put no more.
    pub fn committed(&mut self, puts: &[ConfigPut]) {
        for r in self.derived.values_mut().chain(self.rotated.values_mut()) {
            if puts
                .iter()
                .any(|p| p.name == bucket_keys::config_name(&r.record.id))
            {
                r.committed = true;
            }
        }
    }
}

/// Whether a KMS ciphertext is under material `version` or newer; `None` when the blob does not
/// tell (not a Coffer keystore's blob).
fn material_current(blob: &[u8], version: u32) -> Option<bool> {
    coffer_kms::ciphertext::material_of(blob).map(|h| h.material_version >= version)
}

/// One envelope that waits for KMS results.
struct Pending {
    item: Item,
    envelope: Envelope,
    /// The new envelope's algorithm (SSE-KMS for a re-encryption; unchanged by a rotation).
    algorithm: SseAlgorithm,
    /// Indexes into the batch: the data key, and the DSSE-KMS outer one.
    first: usize,
    second: Option<usize>,
}

/// Plans a page. KMS work happens here (ReEncrypt batches, per-object calls for the mixed
/// Bucket Key cases); nothing is written.
pub async fn plan(
    state: &AppState,
    work: &Work,
    cache: &mut BucketKeyCache,
    items: Vec<Item>,
    concurrency: usize,
    last_attempt: bool,
) -> Plan {
    match work {
        Work::Reencrypt { target, .. } => {
            plan_reencrypt(state, target, cache, items, concurrency, last_attempt).await
        }
        Work::Rotate(spec) => plan_rotate(state, spec, cache, items, last_attempt).await,
    }
}

async fn plan_reencrypt(
    state: &AppState,
    target: &Target,
    cache: &mut BucketKeyCache,
    items: Vec<Item>,
    concurrency: usize,
    last_attempt: bool,
) -> Plan {
    let mut plan = Plan::default();
    let mut batch = Vec::new();
    let mut pending = Vec::new();
    let mut via_derived = Vec::new();
    let mut mixed = Vec::new();
    let now = crate::s3::common::now_ms();
    for item in items {
        let env = match check(&item.version, target, true, now) {
            Err(refusal) => {
                plan.skip(&item, refusal.reason(), None);
                continue;
            }
            Ok(None) => {
                plan.counters.already_done += 1;
                continue;
            }
            Ok(Some(env)) => env.clone(),
        };
        match (&env.bucket_key_id, target.bucket_key_enabled) {
            (None, false) => {
                batch.push(ReEncryptItem {
                    ciphertext_blob: env.wrapped_dek.clone(),
                    source_context: env.context.clone(),
                    source_key_id: env.kms_key_arn.clone(),
                    destination_key_id: target.key_arn.clone(),
                    destination_context: env.context.clone(),
                });
                pending.push(Pending {
                    first: batch.len() - 1,
                    second: None,
                    item,
                    envelope: env,
                    algorithm: SseAlgorithm::AwsKms,
                });
            }
            (Some(_), true) => via_derived.push((item, env)),
            _ => mixed.push((item, env)),
        }
    }

    // Bucket key → bucket key: derive each source bucket key under the target once.
    let sources: Vec<String> = via_derived
        .iter()
        .filter_map(|(_, env)| env.bucket_key_id.clone())
        .filter(|id| {
            !cache
                .derived
                .contains_key(&(id.clone(), target.key_arn.clone()))
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut failed_sources: HashMap<String, S3Error> = HashMap::new();
    if !sources.is_empty() {
        let (records, missing) = load_records(state, &sources).await;
        failed_sources.extend(missing);
        let req = records
            .iter()
            .map(|r| record_item(r, &target.key_arn))
            .collect();
        let results = re_encrypt(state, req).await;
        for (r, res) in records.iter().zip(results) {
            match res.and_then(|re| Ok((re, bucket_keys::new_id()?))) {
                Ok((re, new_id)) => {
                    let record = r.rewrapped(new_id, re.ciphertext_blob, re.key_id);
                    cache.derived.insert(
                        (r.id.clone(), target.key_arn.clone()),
                        Rewrapped {
                            record,
                            committed: false,
                        },
                    );
                }
                Err(e) => {
                    failed_sources.insert(r.id.clone(), e);
                }
            }
        }
    }
    for (item, env) in via_derived {
        let source = env.bucket_key_id.clone().unwrap_or_default();
        if let Some(e) = failed_sources.get(&source) {
            plan.error(&item, e, last_attempt);
            continue;
        }
        let Some(d) = cache
            .derived
            .get(&(source.clone(), target.key_arn.clone()))
            .cloned()
        else {
            plan.fail(
                &item,
                &S3Error::internal(format!("bucket key {source} was not rewrapped")),
            );
            continue;
        };
        put_record(&mut plan, &d);
        let new_env = Envelope {
            algorithm: SseAlgorithm::AwsKms,
            kms_key_arn: Some(d.record.kms_key_arn.clone()),
            bucket_key_id: Some(d.record.id.clone()),
            ..env.clone()
        };
        push_rewrap(&mut plan, &item, &env, new_env);
    }

    // ReEncrypt batch.
    let results = re_encrypt(state, batch).await;
    finish_pending(&mut plan, pending, &results, last_attempt);

    // Bucket Key on one side only: a KMS call per object.
    let outcomes: Vec<_> = futures::stream::iter(mixed)
        .map(|(item, env)| async move {
            let r = crate::sse::rewrap(
                state,
                &item.bucket,
                &item.version.key,
                &env,
                &target.key_arn,
                target.bucket_key_enabled,
            )
            .await;
            (item, env, r)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    for (item, env, r) in outcomes {
        match r {
            Ok(new_env) => push_rewrap(&mut plan, &item, &env, new_env),
            Err(e) => plan.error(&item, &e, last_attempt),
        }
    }
    plan
}

async fn plan_rotate(
    state: &AppState,
    spec: &RotateSpec,
    cache: &mut BucketKeyCache,
    items: Vec<Item>,
    last_attempt: bool,
) -> Plan {
    let mut plan = Plan::default();
    let mv = spec.material_version;
    // Bucket keys first: every record not yet known, read once, rewrapped once if old.
    let ids: Vec<String> = items
        .iter()
        .filter_map(|i| i.version.envelope.as_ref()?.bucket_key_id.clone())
        .filter(|id| !cache.rotated.contains_key(id) && !cache.current.contains(id))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (records, mut failed_keys) = load_records(state, &ids).await;
    let mut old = Vec::new();
    for r in records {
        if r.kms_key_arn != spec.key_arn || material_current(&r.wrapped, mv).unwrap_or(false) {
            cache.current.insert(r.id.clone());
        } else {
            old.push(r);
        }
    }
    let req = old.iter().map(|r| record_item(r, &spec.key_arn)).collect();
    for (r, res) in old.iter().zip(re_encrypt(state, req).await) {
        match res {
            Ok(re) => {
                let record = r.rewrapped(r.id.clone(), re.ciphertext_blob, re.key_id);
                cache.rotated.insert(
                    r.id.clone(),
                    Rewrapped {
                        record,
                        committed: false,
                    },
                );
            }
            Err(e) => {
                failed_keys.insert(r.id.clone(), e);
            }
        }
    }

    let mut batch = Vec::new();
    let mut pending = Vec::new();
    for item in items {
        let Some(env) = item.version.envelope.clone() else {
            continue;
        };
        if let Some(id) = &env.bucket_key_id {
            if let Some(e) = failed_keys.get(id) {
                plan.error(&item, e, last_attempt);
            } else {
                if let Some(r) = cache.rotated.get(id).cloned() {
                    put_record(&mut plan, &r);
                }
                plan.counters.via_bucket_key += 1;
            }
            continue;
        }
        let mut wrapped = vec![(env.wrapped_dek.clone(), env.context.clone())];
        if env.algorithm == SseAlgorithm::AwsKmsDsse {
            match &env.second_wrapped_dek {
                Some(second) => wrapped.push((
                    second.clone(),
                    crate::sse::outer_layer_context(&env.context),
                )),
                None => {
                    plan.fail(
                        &item,
                        &S3Error::internal("DSSE-KMS envelope without a second data key"),
                    );
                    continue;
                }
            }
        }
        // Opaque ciphertexts (another KMS) are rewrapped: ReEncrypt to the same key moves
        // them to its current material.
        if wrapped
            .iter()
            .all(|(blob, _)| material_current(blob, mv) == Some(true))
        {
            plan.counters.already_done += 1;
            continue;
        }
        let mut idx = wrapped.into_iter().map(|(blob, context)| {
            batch.push(ReEncryptItem {
                ciphertext_blob: blob,
                source_context: context.clone(),
                source_key_id: Some(spec.key_arn.clone()),
                destination_key_id: spec.key_arn.clone(),
                destination_context: context,
            });
            batch.len() - 1
        });
        let first = idx.next().expect("one wrapped key at least");
        let second = idx.next();
        pending.push(Pending {
            item,
            algorithm: env.algorithm,
            envelope: env,
            first,
            second,
        });
    }
    let results = re_encrypt(state, batch).await;
    finish_pending(&mut plan, pending, &results, last_attempt);
    plan
}

/// The records of bucket keys `ids`, and why those that could not be read fail.
async fn load_records(
    state: &AppState,
    ids: &[String],
) -> (Vec<BucketKeyRecord>, HashMap<String, S3Error>) {
    let mut records = Vec::new();
    let mut failed = HashMap::new();
    for id in ids {
        match bucket_keys::record(state, id).await {
            Ok(Some(r)) => records.push(r),
            Ok(None) => {
                let e = S3Error::internal(format!("bucket key {id} is missing from meta"));
                failed.insert(id.clone(), e);
            }
            Err(e) => {
                failed.insert(id.clone(), e);
            }
        }
    }
    (records, failed)
}

/// The ReEncrypt of a bucket key record under `destination` (same context).
fn record_item(r: &BucketKeyRecord, destination: &str) -> ReEncryptItem {
    ReEncryptItem {
        ciphertext_blob: r.wrapped.clone(),
        source_context: r.context.clone(),
        source_key_id: Some(r.kms_key_arn.clone()),
        destination_key_id: destination.to_owned(),
        destination_context: r.context.clone(),
    }
}

/// Puts a rewrapped bucket key record with the page (once per page), counted until a
/// checkpoint carrying it committed.
fn put_record(plan: &mut Plan, r: &Rewrapped) {
    let Ok((name, value)) = r.record.to_config() else {
        return;
    };
    if plan.config_puts.iter().any(|p| p.name == name) {
        return;
    }
    if !r.committed {
        plan.counters.bucket_keys_rewrapped += 1;
    }
    plan.config_puts.push(ConfigPut { name, value });
}

fn push_rewrap(plan: &mut Plan, item: &Item, old: &Envelope, new_env: Envelope) {
    plan.rewraps.push(EnvelopeRewrap {
        bucket: item.bucket.clone(),
        key: item.version.key.clone(),
        version_id: item.version.version_id.clone(),
        expected_generation: old.generation,
        expected_seq: item.version.seq,
        envelope: Envelope {
            generation: old.generation + 1,
            ..new_env
        },
    });
}

/// Envelopes waiting for the ReEncrypt batch: the new ciphertexts replace the old ones (same
/// context, the KMS key the result names).
fn finish_pending(
    plan: &mut Plan,
    pending: Vec<Pending>,
    results: &[S3Result<ReEncrypted>],
    last_attempt: bool,
) {
    for p in pending {
        let a = match &results[p.first] {
            Ok(a) => a,
            Err(e) => {
                plan.error(&p.item, e, last_attempt);
                continue;
            }
        };
        let second = match p.second.map(|i| &results[i]) {
            Some(Err(e)) => {
                plan.error(&p.item, e, last_attempt);
                continue;
            }
            Some(Ok(b)) => Some(b.ciphertext_blob.clone()),
            None => p.envelope.second_wrapped_dek.clone(),
        };
        let new_env = Envelope {
            algorithm: p.algorithm,
            kms_key_arn: Some(a.key_id.clone()),
            wrapped_dek: a.ciphertext_blob.clone(),
            second_wrapped_dek: second,
            ..p.envelope.clone()
        };
        push_rewrap(plan, &p.item, &p.envelope, new_env);
    }
}

/// ReEncrypt of `items`, in batches of at most [`MAX_REENCRYPT_BATCH`]; one result per item (a
/// failed call fails each of its items).
async fn re_encrypt(state: &AppState, items: Vec<ReEncryptItem>) -> Vec<S3Result<ReEncrypted>> {
    let mut out = Vec::with_capacity(items.len());
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let chunk: Vec<_> = items.by_ref().take(MAX_REENCRYPT_BATCH).collect();
        let n = chunk.len();
        match state.kms.re_encrypt_batch(chunk).await {
            Ok(results) if results.len() == n => {
                out.extend(results.into_iter().map(|r| r.map_err(S3Error::from)))
            }
            Ok(results) => {
                let e = S3Error::internal(format!(
                    "KMS answered {} results for {n} ReEncrypt items",
                    results.len()
                ));
                out.extend((0..n).map(|_| Err(same(&e))));
            }
            Err(e) => {
                let e = S3Error::from(e);
                tracing::warn!(error = ?e, "job runner: ReEncrypt batch failed");
                out.extend((0..n).map(|_| Err(same(&e))));
            }
        }
    }
    out
}

/// An error with the same code and message (what a version's report and retry depend on).
fn same(e: &S3Error) -> S3Error {
    S3Error::new(e.code(), e.message())
}
