//! CreateJob, ClaimJob, UpdateJob, ControlJob: job records under `J <id>`.
//!
//! Ownership: a runner claims a job under a lease (times from the command). Only the owner's
//! checkpoints land, and only against the version it last saw, so two runners can never both
//! advance a job: the loser gets `PreconditionFailed` and re-reads. Admin actions do not bump
//! the version: a checkpoint racing a pause still lands (its work is counted), and the runner
//! sees the pause when it reads the record back.
//!
//! A checkpoint also carries the runner's envelope compare-and-sets and bucket key records: they
//! land with the progress or not at all (a failing command's writes are discarded), so a
//! job's counts never include a rewrap that did not land, nor the reverse.

use super::{bucket_record, load, object, store};
use crate::error::MetaError;
use crate::job::{JobAction, JobKind, JobProgress, JobRecord, JobState};
use crate::keys;
use crate::state_machine::Txn;
use crate::types::CommandOutput;

fn job_record(txn: &Txn<'_>, id: &str) -> Result<JobRecord, MetaError> {
    load(txn, &keys::job(id))?.ok_or_else(|| MetaError::Invalid(format!("no such job: {id}")))
}

pub(super) fn create(txn: &mut Txn<'_>, record: &JobRecord) -> Result<CommandOutput, MetaError> {
    if record.id.is_empty() || record.id.len() > 128 {
        return Err(MetaError::Invalid("job id must be 1 to 128 bytes".into()));
    }
    if record.state != JobState::Pending || record.version != 0 || record.owner.is_some() {
        return Err(MetaError::Invalid(
            "a new job starts pending, at version 0, without owner".into(),
        ));
    }
    match &record.kind {
        JobKind::Reencrypt(spec) => {
            bucket_record(txn, &spec.bucket)?;
        }
        JobKind::Rotate(spec) => {
            if spec.key_arn.is_empty() {
                return Err(MetaError::Invalid("a rotation job needs a key ARN".into()));
            }
            for bucket in &spec.buckets {
                bucket_record(txn, bucket)?;
            }
        }
    }
    let key = keys::job(&record.id);
    if txn.get(&key)?.is_some() {
        return Err(MetaError::Invalid(format!(
            "job already exists: {}",
            record.id
        )));
    }
    store(txn, key, record)?;
    Ok(CommandOutput::default())
}

pub(super) fn claim(
    txn: &mut Txn<'_>,
    id: &str,
    runner_id: &str,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<CommandOutput, MetaError> {
    let mut job = job_record(txn, id)?;
    if !matches!(job.state, JobState::Pending | JobState::Running) {
        return Err(MetaError::PreconditionFailed);
    }
    let free = match &job.owner {
        None => true,
        Some(owner) => owner == runner_id || job.lease_until_ms < now_ms,
    };
    if !free {
        return Err(MetaError::PreconditionFailed);
    }
    job.owner = Some(runner_id.to_owned());
    job.lease_until_ms = lease_until_ms;
    job.state = JobState::Running;
    job.version += 1;
    job.updated_ms = now_ms;
    store(txn, keys::job(id), &job)?;
    Ok(CommandOutput {
        seq: job.version,
        ..Default::default()
    })
}

pub(super) fn update(
    txn: &mut Txn<'_>,
    id: &str,
    runner_id: &str,
    expected_version: u64,
    progress: &JobProgress,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<CommandOutput, MetaError> {
    let mut job = job_record(txn, id)?;
    // A cancelled job still takes its owner's last checkpoint (the work it reports was done),
    // which also releases it; completed and failed jobs take nothing.
    if job.version != expected_version
        || job.owner.as_deref() != Some(runner_id)
        || matches!(job.state, JobState::Completed | JobState::Failed)
    {
        return Err(MetaError::PreconditionFailed);
    }
    for (index, r) in progress.rewraps.iter().enumerate() {
        let applied = object::update_envelope(
            txn,
            &r.bucket,
            &r.key,
            Some(&r.version_id),
            Some(r.expected_seq),
            r.expected_generation,
            &r.envelope,
        );
        match applied {
            Ok(_) => {}
            // Storage failures are not a decision of the state machine: they stay what they are.
            Err(e @ MetaError::Storage(_)) => return Err(e),
            Err(e) => {
                return Err(MetaError::RewrapConflict {
                    index: index as u32,
                    reason: e.to_string(),
                })
            }
        }
    }
    for c in &progress.config_puts {
        txn.put(keys::config(&c.name), c.value.clone());
    }
    job.add_progress(progress);
    job.version += 1;
    job.updated_ms = now_ms;
    job.lease_until_ms = lease_until_ms;
    if let Some(error) = &progress.failed {
        job.state = JobState::Failed;
        job.error = Some(error.clone());
    } else if progress.finished && job.state != JobState::Cancelled {
        job.state = JobState::Completed;
    }
    if job.state.is_terminal() && job.finished_ms.is_none() {
        job.finished_ms = Some(now_ms);
    }
    if progress.release || job.state.is_terminal() {
        job.owner = None;
        job.lease_until_ms = 0;
        if job.state == JobState::Running {
            job.state = JobState::Pending;
        }
    }
    store(txn, keys::job(id), &job)?;
    Ok(CommandOutput {
        seq: job.version,
        ..Default::default()
    })
}

pub(super) fn control(
    txn: &mut Txn<'_>,
    id: &str,
    action: JobAction,
    now_ms: i64,
) -> Result<CommandOutput, MetaError> {
    let mut job = job_record(txn, id)?;
    if job.state.is_terminal() {
        return Err(MetaError::Invalid(format!(
            "job {id} is {} and cannot change",
            job.state.as_str()
        )));
    }
    let next = match (action, job.state) {
        (JobAction::Pause, _) => JobState::Paused,
        (JobAction::Resume, JobState::Paused) => {
            // The owner, if it still holds the job, keeps it; otherwise anyone may claim it.
            if job.owner.is_some() {
                JobState::Running
            } else {
                JobState::Pending
            }
        }
        (JobAction::Resume, s) => s,
        (JobAction::Cancel, _) => JobState::Cancelled,
    };
    job.state = next;
    job.updated_ms = now_ms;
    if next == JobState::Cancelled {
        job.finished_ms = Some(now_ms);
    }
    store(txn, keys::job(id), &job)?;
    Ok(CommandOutput::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use crate::job::*;
    use crate::ops::testutil::*;
    use crate::types::{Command, Envelope, Versioning};

    fn spec() -> JobKind {
        JobKind::Reencrypt(ReencryptSpec {
            bucket: "b".into(),
            prefix: String::new(),
            source: SourceFilter::Any,
            all_versions: false,
            target_key_arn: "arn:aws:kms:us-east-1:000000000000:key/k".into(),
            bucket_key_enabled: false,
        })
    }

    fn claim(id: &str, runner: &str, now_ms: i64) -> Command {
        Command::ClaimJob {
            id: id.into(),
            runner_id: runner.into(),
            now_ms,
            lease_until_ms: now_ms + 1000,
        }
    }

    fn update(runner: &str, expected_version: u64, progress: JobProgress) -> Command {
        Command::UpdateJob {
            id: "j".into(),
            runner_id: runner.into(),
            expected_version,
            progress,
            now_ms: 10,
            lease_until_ms: 1010,
        }
    }

    fn control(action: JobAction) -> Command {
        Command::ControlJob {
            id: "j".into(),
            action,
            now_ms: 20,
        }
    }

    fn job(t: &TestSm) -> JobRecord {
        t.sm.reader().get_job("j").unwrap().unwrap()
    }

    fn done(n: u64) -> JobProgress {
        JobProgress {
            cursor: Some(JobCursor {
                key: format!("k{n}"),
                version_id: None,
                seq: 0,
                bucket: None,
            }),
            counters: JobCounters {
                rewrapped: n,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn create_validates_and_is_unique() {
        let t = TestSm::with_bucket("b", Versioning::Enabled);
        t.ok(Command::CreateJob(JobRecord::new("j".into(), spec(), 1)));
        assert!(matches!(
            t.run(Command::CreateJob(JobRecord::new("j".into(), spec(), 2))),
            Err(MetaError::Invalid(_))
        ));
        let mut other = JobRecord::new("x".into(), spec(), 1);
        let JobKind::Reencrypt(s) = &mut other.kind else {
            unreachable!("spec() is a reencrypt job")
        };
        s.bucket = "nope".into();
        assert!(matches!(
            t.run(Command::CreateJob(other)),
            Err(MetaError::NoSuchBucket(_))
        ));
        let mut running = JobRecord::new("y".into(), spec(), 1);
        running.state = JobState::Running;
        assert!(matches!(
            t.run(Command::CreateJob(running)),
            Err(MetaError::Invalid(_))
        ));
        t.ok(control(JobAction::Pause));
        let ids: Vec<_> =
            t.sm.reader()
                .list_jobs()
                .unwrap()
                .into_iter()
                .map(|j| j.id)
                .collect();
        assert_eq!(ids, ["j"]);
        assert!(t.sm.reader().get_job("x").unwrap().is_none());
    }

    #[test]
    fn one_runner_at_a_time_until_the_lease_ends() {
        let t = TestSm::with_bucket("b", Versioning::Enabled);
        t.ok(Command::CreateJob(JobRecord::new("j".into(), spec(), 1)));
        assert_eq!(t.ok(claim("j", "r1", 100)).seq, 1);
        assert_eq!(job(&t).state, JobState::Running);
        assert_eq!(job(&t).owner.as_deref(), Some("r1"));
        // r2 cannot take it while r1's lease holds (until 1100), but can after.
        assert!(matches!(
            t.run(claim("j", "r2", 1100)),
            Err(MetaError::PreconditionFailed)
        ));
        // r1 renews.
        assert_eq!(t.ok(claim("j", "r1", 500)).seq, 2);
        assert_eq!(t.ok(claim("j", "r2", 1501)).seq, 3);
        // r1's checkpoint no longer lands: not the owner, and a stale version.
        assert!(matches!(
            t.run(update("r1", 2, done(5))),
            Err(MetaError::PreconditionFailed)
        ));
        assert!(matches!(
            t.run(update("r1", 3, done(5))),
            Err(MetaError::PreconditionFailed)
        ));
        assert_eq!(job(&t).counters.rewrapped, 0);
        // A claim of a missing job is refused clearly.
        assert!(matches!(
            t.run(claim("zz", "r1", 1)),
            Err(MetaError::Invalid(_))
        ));
    }

    #[test]
    fn checkpoints_compare_and_set_and_add_progress_once() {
        let t = TestSm::with_bucket("b", Versioning::Enabled);
        t.ok(Command::CreateJob(JobRecord::new("j".into(), spec(), 1)));
        t.ok(claim("j", "r1", 0));
        let mut p = done(3);
        p.total = Some(10);
        p.skipped = vec![SkippedObject {
            key: "c".into(),
            version_id: "v".into(),
            reason: "sse-c".into(),
            detail: None,
        }];
        p.counters.skipped = 1;
        assert_eq!(t.ok(update("r1", 1, p.clone())).seq, 2);
        // The same checkpoint again (a runner that did not see the answer) does not count twice.
        assert!(matches!(
            t.run(update("r1", 1, p)),
            Err(MetaError::PreconditionFailed)
        ));
        let j = job(&t);
        assert_eq!((j.counters.rewrapped, j.counters.skipped), (3, 1));
        assert_eq!(j.total, Some(10));
        assert_eq!(j.cursor.unwrap().key, "k3");
        assert_eq!(j.skipped_by_reason.get("sse-c"), Some(&1));
        let mut fin = done(6);
        fin.finished = true;
        t.ok(update("r1", 2, fin));
        let j = job(&t);
        assert_eq!(j.state, JobState::Completed);
        assert_eq!(j.counters.done(), 10);
        assert_eq!((j.owner, j.finished_ms), (None, Some(10)));
        // Terminal: no more claims, checkpoints or actions.
        assert!(t.run(claim("j", "r1", 0)).is_err());
        assert!(t.run(update("r1", 3, done(1))).is_err());
        assert!(matches!(
            t.run(control(JobAction::Resume)),
            Err(MetaError::Invalid(_))
        ));
    }

    #[test]
    fn the_skip_list_is_bounded_but_counts_are_complete() {
        let t = TestSm::with_bucket("b", Versioning::Enabled);
        t.ok(Command::CreateJob(JobRecord::new("j".into(), spec(), 1)));
        t.ok(claim("j", "r1", 0));
        let skip = |i: usize| SkippedObject {
            key: format!("k{i}"),
            version_id: "null".into(),
            reason: if i % 2 == 0 { "sse-c" } else { "dsse-kms" }.into(),
            detail: None,
        };
        for round in 0..3u64 {
            let p = JobProgress {
                skipped: (0..600).map(skip).collect(),
                ..Default::default()
            };
            t.ok(update("r1", round + 1, p));
        }
        let j = job(&t);
        assert_eq!(j.skipped.len(), MAX_LISTED_SKIPS);
        assert_eq!(j.skipped_by_reason.values().sum::<u64>(), 1800);
        assert_eq!(j.skipped_by_reason["sse-c"], 900);
    }

    #[test]
    fn pause_resume_cancel() {
        let t = TestSm::with_bucket("b", Versioning::Enabled);
        t.ok(Command::CreateJob(JobRecord::new("j".into(), spec(), 1)));
        t.ok(claim("j", "r1", 0));
        t.ok(control(JobAction::Pause));
        assert_eq!(job(&t).state, JobState::Paused);
        // Nobody claims a paused job.
        assert!(t.run(claim("j", "r2", 5000)).is_err());
        // The owner's racing checkpoint still lands and it keeps the pause; releasing frees it.
        let mut p = done(2);
        p.release = true;
        t.ok(update("r1", 1, p));
        let j = job(&t);
        assert_eq!(
            (j.state, j.owner, j.counters.rewrapped),
            (JobState::Paused, None, 2)
        );
        t.ok(control(JobAction::Resume));
        assert_eq!(job(&t).state, JobState::Pending);
        // Another runner takes it at once (no owner) and goes on from the checkpoint.
        t.ok(claim("j", "r2", 0));
        assert_eq!(job(&t).cursor.unwrap().key, "k2");
        t.ok(control(JobAction::Cancel));
        let j = job(&t);
        assert_eq!((j.state, j.finished_ms), (JobState::Cancelled, Some(20)));
        // Cancelled is terminal: r2's last checkpoint lands (its work was done) and releases
        // the job; after it nothing lands, and nothing can resume it.
        t.ok(update("r2", 3, done(1)));
        let j = job(&t);
        assert_eq!(
            (j.state, j.owner, j.counters.rewrapped),
            (JobState::Cancelled, None, 3)
        );
        assert!(t.run(update("r2", 4, done(1))).is_err());
        assert!(t.run(claim("j", "r2", 0)).is_err());
        assert!(t.run(control(JobAction::Resume)).is_err());
        assert!(t.run(control(JobAction::Pause)).is_err());
    }

    fn rewrap(key: &str, seq: u64, expected_generation: u64) -> EnvelopeRewrap {
        let mut envelope = envelope(expected_generation + 1);
        envelope.wrapped_dek = vec![7; 8];
        EnvelopeRewrap {
            bucket: "b".into(),
            key: key.into(),
            version_id: "v1".into(),
            expected_generation,
            expected_seq: seq,
            envelope,
        }
    }

    fn envelope_of(t: &TestSm, key: &str) -> Envelope {
        let v = t.sm.reader().get_object("b", key, Some("v1")).unwrap();
        v.envelope.unwrap()
    }

    /// Objects `k0..k<n>` (version `v1`, generation 1) and job `j` claimed by `r1` (version 1);
    /// returns their seqs.
    fn claimed_over_objects(n: u32) -> (TestSm, Vec<u64>) {
        let t = TestSm::with_bucket("b", Versioning::Enabled);
        let seqs = (0..n)
            .map(|i| t.ok(put("b", &format!("k{i}"), "v1", i + 1)).seq)
            .collect();
        t.ok(Command::CreateJob(JobRecord::new("j".into(), spec(), 1)));
        t.ok(claim("j", "r1", 0));
        (t, seqs)
    }

    fn bucket_key_put() -> ConfigPut {
        ConfigPut {
            name: "bucket-key/x".into(),
            value: vec![9, 9],
        }
    }

    #[test]
    fn rewraps_and_config_puts_land_with_the_checkpoint() {
        let (t, seqs) = claimed_over_objects(3);
        let mut p = done(2);
        p.rewraps = vec![rewrap("k0", seqs[0], 1), rewrap("k1", seqs[1], 1)];
        p.config_puts = vec![bucket_key_put()];
        assert_eq!(t.ok(update("r1", 1, p.clone())).seq, 2);
        assert_eq!(envelope_of(&t, "k0"), p.rewraps[0].envelope);
        assert_eq!(envelope_of(&t, "k1"), p.rewraps[1].envelope);
        assert_eq!(envelope_of(&t, "k2"), envelope(1));
        // The current index follows.
        let current = t.sm.reader().get_object("b", "k1", None).unwrap();
        assert_eq!(current.envelope.unwrap().generation, 2);
        assert_eq!(
            t.sm.reader().get_config("bucket-key/x").unwrap(),
            Some(vec![9, 9])
        );
        assert_eq!(job(&t).counters.rewrapped, 2);
        // A paused job still takes its owner's checkpoint with its rewraps (the KMS work is done).
        t.ok(control(JobAction::Pause));
        let mut p = done(1);
        p.rewraps = vec![rewrap("k2", seqs[2], 1)];
        t.ok(update("r1", 2, p));
        assert_eq!(envelope_of(&t, "k2").generation, 2);
        assert_eq!(
            (job(&t).state, job(&t).counters.rewrapped),
            (JobState::Paused, 3)
        );
        // A refused checkpoint (stale version) is refused as before, its rewraps unapplied.
        let mut p = done(1);
        p.rewraps = vec![rewrap("k2", seqs[2], 2)];
        assert!(matches!(
            t.run(update("r1", 2, p)),
            Err(MetaError::PreconditionFailed)
        ));
        assert_eq!(envelope_of(&t, "k2").generation, 2);
    }

    #[test]
    fn a_conflicting_rewrap_applies_nothing_of_the_checkpoint() {
        let (t, seqs) = claimed_over_objects(4);
        // k1 was rewrapped by someone else meanwhile; k3's version was deleted.
        t.ok(Command::UpdateEnvelope {
            bucket: "b".into(),
            key: "k1".into(),
            version_id: Some("v1".into()),
            expected_generation: 1,
            expected_seq: None,
            envelope: envelope(2),
        });
        t.ok(delete("b", "k3", Some("v1"), "m"));
        let before = job(&t);
        let conflicts = [
            (
                rewrap("k1", seqs[1], 1),
                "envelope generation changed: expected 1, found 2",
            ),
            // k2 read at another seq (replaced since): refused although the generation matches.
            (
                rewrap("k2", seqs[2] + 100, 1),
                "envelope generation changed: expected 1, found 1",
            ),
            (rewrap("k3", seqs[3], 1), "no such version: v1"),
        ];
        for (bad, reason) in conflicts {
            let mut p = done(2);
            p.rewraps = vec![rewrap("k0", seqs[0], 1), bad, rewrap("k2", seqs[2], 1)];
            p.config_puts = vec![bucket_key_put()];
            p.finished = true;
            assert_eq!(
                t.run(update("r1", 1, p)),
                Err(MetaError::RewrapConflict {
                    index: 1,
                    reason: reason.into()
                })
            );
            assert_eq!(job(&t), before);
            assert_eq!(envelope_of(&t, "k0"), envelope(1));
            assert_eq!(envelope_of(&t, "k2"), envelope(1));
            assert_eq!(t.sm.reader().get_config("bucket-key/x").unwrap(), None);
        }
        // In one batch, the failing checkpoint leaves no write while the commands around it
        // apply: the same expected version then lands.
        let mut bad = done(2);
        bad.rewraps = vec![rewrap("k0", seqs[0], 1), rewrap("k1", seqs[1], 1)];
        let mut good = done(5);
        good.rewraps = vec![rewrap("k2", seqs[2], 1)];
        let index = t.sm.last_applied().unwrap() + 1;
        let results =
            t.sm.apply_batch(
                index,
                &[
                    update("r1", 1, bad),
                    Command::PutConfig {
                        name: "c".into(),
                        value: vec![1],
                    },
                    update("r1", 1, good),
                ],
            )
            .unwrap();
        assert!(matches!(
            results[0],
            Err(MetaError::RewrapConflict { index: 1, .. })
        ));
        assert!(results[1].is_ok());
        assert_eq!(results[2].as_ref().unwrap().seq, 2);
        assert_eq!(envelope_of(&t, "k0"), envelope(1));
        assert_eq!(envelope_of(&t, "k2").generation, 2);
        assert_eq!(t.sm.reader().get_config("c").unwrap(), Some(vec![1]));
        let j = job(&t);
        assert_eq!((j.version, j.counters.rewrapped), (2, 5));
    }

    fn rotate() -> JobKind {
        JobKind::Rotate(RotateSpec {
            key_arn: "arn:aws:kms:us-east-1:000000000000:key/k".into(),
            material_version: 2,
            buckets: vec!["b".into()],
        })
    }

    #[test]
    fn rotate_jobs_round_trip_and_run() {
        let rec = JobRecord::new("j".into(), rotate(), 1);
        let json = serde_json::to_value(&rec).unwrap();
        assert_eq!(json["kind"]["rotate"]["material_version"], 2);
        assert_eq!(serde_json::from_value::<JobRecord>(json).unwrap(), rec);
        let back: JobRecord = codec::decode(&codec::encode(&rec).unwrap()).unwrap();
        assert_eq!(back, rec);

        let t = TestSm::with_bucket("b", Versioning::Enabled);
        let mut other = JobRecord::new("x".into(), rotate(), 1);
        if let JobKind::Rotate(s) = &mut other.kind {
            s.buckets.push("nope".into());
        }
        assert_eq!(
            t.run(Command::CreateJob(other)),
            Err(MetaError::NoSuchBucket("nope".into()))
        );
        t.ok(Command::CreateJob(rec));
        t.ok(claim("j", "r1", 0));
        let p = JobProgress {
            cursor: Some(JobCursor {
                key: "k".into(),
                version_id: Some("v1".into()),
                seq: 3,
                bucket: Some("b".into()),
            }),
            counters: JobCounters {
                rewrapped: 1,
                via_bucket_key: 4,
                bucket_keys_rewrapped: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        t.ok(update("r1", 1, p.clone()));
        t.ok(update("r1", 2, p));
        let j = job(&t);
        assert_eq!(j.kind, rotate());
        assert_eq!(j.cursor.unwrap().bucket.as_deref(), Some("b"));
        let c = &j.counters;
        assert_eq!((c.via_bucket_key, c.bucket_keys_rewrapped), (8, 2));
        assert_eq!(c.done(), 10);
    }

    #[test]
    fn records_and_checkpoints_without_the_new_fields_still_decode() {
        let drop = |v: &mut serde_json::Value, fields: &[&str]| {
            for f in fields {
                v.as_object_mut().unwrap().remove(*f).unwrap();
            }
        };
        let mut rec = JobRecord::new("j".into(), spec(), 1);
        rec.cursor = done(3).cursor;
        rec.counters.rewrapped = 3;
        let mut old = serde_json::to_value(&rec).unwrap();
        drop(&mut old["cursor"], &["bucket"]);
        drop(
            &mut old["counters"],
            &["via_bucket_key", "bucket_keys_rewrapped"],
        );
        let back: JobRecord = codec::decode(&codec::encode(&old).unwrap()).unwrap();
        assert_eq!(back, rec);
        // UpdateJob commands of older members, as they sit in the Raft log.
        let p = done(2);
        let mut old = serde_json::to_value(&p).unwrap();
        drop(&mut old, &["rewraps", "config_puts"]);
        drop(&mut old["cursor"], &["bucket"]);
        drop(
            &mut old["counters"],
            &["via_bucket_key", "bucket_keys_rewrapped"],
        );
        let back: JobProgress = codec::decode(&codec::encode(&old).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
