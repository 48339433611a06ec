//! Background jobs (`J <id>` records): bulk re-encryption and key rotation, with one record
//! shape. A job is created by an admin, claimed by one runner under a lease, advanced by
//! compare-and-set checkpoints (cursor and counters in one command), and paused, resumed or
//! cancelled by an admin between checkpoints. Every time it carries comes from the command
//! (the proposer's clock), never from the member applying it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::Envelope;

fn v1() -> u16 {
    crate::types::FORMAT_VERSION
}

/// At most this many skipped or failed objects are listed in a job record; the counts by
/// reason are always complete.
pub const MAX_LISTED_SKIPS: usize = 1000;

/// Lifecycle of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Created or resumed; waiting for a runner to claim it.
    Pending,
    /// Claimed by a runner (see `owner` and `lease_until_ms`).
    Running,
    /// Paused by an admin; a runner stops at its next checkpoint.
    Paused,
    /// Every selected object was processed.
    Completed,
    /// Cancelled by an admin; a runner stops at its next checkpoint.
    Cancelled,
    /// Stopped by an error that retrying does not fix (e.g. the bucket was deleted).
    Failed,
}

impl JobState {
    /// Completed, cancelled or failed: nothing changes any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Cancelled | JobState::Failed
        )
    }

    /// The name used in JSON, metrics and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Completed => "completed",
            JobState::Cancelled => "cancelled",
            JobState::Failed => "failed",
        }
    }
}

/// Which current encryption a re-encryption job selects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFilter {
    /// Every encrypted object (those the rewrap refuses are skipped with a reason).
    Any,
    /// SSE-S3 objects.
    SseS3,
    /// SSE-KMS objects, under this key ARN if given.
    SseKms(Option<String>),
}

/// What a re-encryption job selects and where it moves the objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReencryptSpec {
    /// Bucket.
    pub bucket: String,
    /// Only keys starting with this.
    #[serde(default)]
    pub prefix: String,
    /// Current encryption to select.
    pub source: SourceFilter,
    /// Every version (true) or the current version of each key only.
    pub all_versions: bool,
    /// Target SSE-KMS key ARN.
    pub target_key_arn: String,
    /// Target Bucket Key setting.
    pub bucket_key_enabled: bool,
}

/// Key rotation with --rewrap: every envelope (and bucket key) wrapped by `key_arn` under a
/// material version older than `material_version` moves to the current material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateSpec {
    /// The rotated key's ARN.
    pub key_arn: String,
    /// The key's current material version when the job was created (after the rotation).
    pub material_version: u32,
    /// Only these buckets; empty = every bucket.
    #[serde(default)]
    pub buckets: Vec<String>,
}

/// What a job does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Rewrap the data keys of the selected objects under a KMS key.
    Reencrypt(ReencryptSpec),
    /// Move what a rotated key wraps to its current material.
    Rotate(RotateSpec),
}

/// The position of a job: the last object version processed, in listing order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCursor {
    /// Object key.
    pub key: String,
    /// Version ID (in all-versions jobs; `None` when walking current versions).
    pub version_id: Option<String>,
    /// The version's `seq`: a walk resuming inside `key` takes only older versions (smaller
    /// `seq`), even if the cursor's version was deleted meanwhile.
    #[serde(default)]
    pub seq: u64,
    /// Rotation jobs walk bucket after bucket: the bucket of `key` (None for reencrypt jobs).
    #[serde(default)]
    pub bucket: Option<String>,
}

/// Counts of a job. `done()` of them out of `total` is its progress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounters {
    /// Rewrapped by this job.
    pub rewrapped: u64,
    /// Already under the target (key ARN and Bucket Key setting): nothing to do.
    pub already_done: u64,
    /// Refused (SSE-C, DSSE-KMS, Object Lock, unencrypted); see `skipped_by_reason`.
    pub skipped: u64,
    /// Failed (KMS refused the rewrap, conflicts persisted); listed with the error.
    pub failed: u64,
    /// Objects whose data key is wrapped by a bucket key that the job rewrapped (rotation):
    /// moved to the new material without touching their envelope. Counted in done().
    #[serde(default)]
    pub via_bucket_key: u64,
    /// Bucket key records rewrapped (not objects; not in done()).
    #[serde(default)]
    pub bucket_keys_rewrapped: u64,
}

impl JobCounters {
    /// Objects processed.
    pub fn done(&self) -> u64 {
        self.rewrapped + self.already_done + self.skipped + self.failed + self.via_bucket_key
    }

    fn add(&mut self, other: &JobCounters) {
        self.rewrapped += other.rewrapped;
        self.already_done += other.already_done;
        self.skipped += other.skipped;
        self.failed += other.failed;
        self.via_bucket_key += other.via_bucket_key;
        self.bucket_keys_rewrapped += other.bucket_keys_rewrapped;
    }
}

/// An object a job skipped or failed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedObject {
    /// Object key.
    pub key: String,
    /// Version ID.
    pub version_id: String,
    /// Why: `sse-c`, `dsse-kms`, `unencrypted`, `object-lock-retention`,
    /// `object-lock-legal-hold`, or `failed` for errors.
    pub reason: String,
    /// Details (the error message of a failure).
    #[serde(default)]
    pub detail: Option<String>,
}

/// One envelope compare-and-set carried by a checkpoint (same checks as
/// [`crate::Command::UpdateEnvelope`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeRewrap {
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Version ID.
    pub version_id: String,
    /// The envelope generation the runner read.
    pub expected_generation: u64,
    /// The version's `seq` the runner read (a replaced version is a conflict).
    pub expected_seq: u64,
    /// The new envelope: generation = expected_generation + 1.
    pub envelope: Envelope,
}

/// A bucket key record (config entry `bucket-key/<id>`) replaced by a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigPut {
    /// Config entry name.
    pub name: String,
    /// Its new value.
    pub value: Vec<u8>,
}

/// The progress a runner made since its last checkpoint, applied with [`crate::Command::UpdateJob`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProgress {
    /// The new cursor (`None`: unchanged).
    pub cursor: Option<JobCursor>,
    /// Counts to add.
    pub counters: JobCounters,
    /// Skipped or failed objects to add to the list (kept while it has room).
    pub skipped: Vec<SkippedObject>,
    /// The number of selected objects, once counted.
    pub total: Option<u64>,
    /// The walk reached the end: the job is completed.
    pub finished: bool,
    /// The job cannot go on: it fails with this message.
    pub failed: Option<String>,
    /// The runner gives the job up (it saw a pause or cancel, or is shutting down).
    pub release: bool,
    /// Envelope compare-and-sets applied all-or-nothing with the checkpoint.
    #[serde(default)]
    pub rewraps: Vec<EnvelopeRewrap>,
    /// Config entries (bucket key records) written with the checkpoint too.
    #[serde(default)]
    pub config_puts: Vec<ConfigPut>,
}

/// A job record (`J <id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// Format version.
    #[serde(default = "v1")]
    pub v: u16,
    /// Job ID.
    pub id: String,
    /// What it does.
    pub kind: JobKind,
    /// Where it is.
    pub state: JobState,
    /// Compare-and-set version: bumped by every claim and checkpoint.
    pub version: u64,
    /// Created (ms since the epoch, the creator's clock).
    pub created_ms: i64,
    /// Last changed.
    pub updated_ms: i64,
    /// Reached a terminal state.
    #[serde(default)]
    pub finished_ms: Option<i64>,
    /// The runner holding the job.
    #[serde(default)]
    pub owner: Option<String>,
    /// Until when the owner's claim holds (its clock); another runner may claim after.
    #[serde(default)]
    pub lease_until_ms: i64,
    /// Last object version processed.
    #[serde(default)]
    pub cursor: Option<JobCursor>,
    /// Selected objects, counted when the job first runs.
    #[serde(default)]
    pub total: Option<u64>,
    /// Counts.
    #[serde(default)]
    pub counters: JobCounters,
    /// Skipped or failed objects, the first [`MAX_LISTED_SKIPS`].
    #[serde(default)]
    pub skipped: Vec<SkippedObject>,
    /// Skipped or failed objects by reason (complete).
    #[serde(default)]
    pub skipped_by_reason: BTreeMap<String, u64>,
    /// Why the job failed.
    #[serde(default)]
    pub error: Option<String>,
}

impl JobRecord {
    /// A new pending job.
    pub fn new(id: String, kind: JobKind, now_ms: i64) -> Self {
        JobRecord {
            v: crate::types::FORMAT_VERSION,
            id,
            kind,
            state: JobState::Pending,
            version: 0,
            created_ms: now_ms,
            updated_ms: now_ms,
            finished_ms: None,
            owner: None,
            lease_until_ms: 0,
            cursor: None,
            total: None,
            counters: JobCounters::default(),
            skipped: Vec::new(),
            skipped_by_reason: BTreeMap::new(),
            error: None,
        }
    }

    /// Adds a checkpoint's progress (state changes are the caller's).
    pub(crate) fn add_progress(&mut self, p: &JobProgress) {
        if let Some(c) = &p.cursor {
            self.cursor = Some(c.clone());
        }
        if let Some(t) = p.total {
            self.total = Some(t);
        }
        self.counters.add(&p.counters);
        for s in &p.skipped {
            *self.skipped_by_reason.entry(s.reason.clone()).or_default() += 1;
            if self.skipped.len() < MAX_LISTED_SKIPS {
                self.skipped.push(s.clone());
            }
        }
    }
}

/// An admin's action on a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobAction {
    /// Pending/running → paused.
    Pause,
    /// Paused → pending (any runner may claim it).
    Resume,
    /// Any non-terminal state → cancelled.
    Cancel,
}
