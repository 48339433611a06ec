//! The runner over real components in process: the local KMS, LocalMeta, the local blob store.

use std::collections::BTreeMap;

use coffer_meta::{
    Command, JobKind, JobRecord, JobState, ReencryptSpec, SourceFilter, SseAlgorithm,
};

use super::*;
use crate::sse::{new_object_key, SseRequest};
use crate::test_support::{create_bucket, new_key, put_version};

async fn gateway(dir: &std::path::Path) -> Arc<AppState> {
    Arc::new(crate::test_support::gateway(dir).await)
}

/// `n` SSE-S3 versions (empty objects: the runner never reads data) under keys `k000`...
async fn put_versions(state: &AppState, bucket: &str, n: usize) {
    let req = SseRequest {
        algorithm: SseAlgorithm::Aes256,
        kms_key_id: None,
        context: None,
        bucket_key: false,
        customer_key: None,
    };
    put_with(state, bucket, "k", n, &req).await
}

/// `n` versions encrypted as `req` says under keys `<prefix>000`...
async fn put_with(state: &AppState, bucket: &str, prefix: &str, n: usize, req: &SseRequest) {
    for i in 0..n {
        let key = format!("{prefix}{i:03}");
        let ok = new_object_key(state, bucket, &key, req).await.unwrap();
        put_version(
            state,
            bucket,
            &key,
            &format!("{prefix}v{i}"),
            ok.envelope.clone(),
        )
        .await;
    }
}

fn config(runner: &str) -> JobsConfig {
    JobsConfig {
        runner_id: runner.into(),
        concurrency: 3,
        page_size: 7,
        lease: Duration::from_secs(5),
        page_delay: Duration::from_millis(5),
        poll: Duration::from_millis(20),
    }
}

/// Two runners on one job, whose first owner died holding a lease: one of them takes it over
/// when the lease ends, and every version is rewrapped exactly once (its generation went up by
/// one) and counted once.
/// A gateway state with bucket `b` of `n` SSE-S3 versions, and a new KMS key.
async fn setup(dir: &std::path::Path, n: usize) -> (Arc<AppState>, String) {
    let state = gateway(dir).await;
    let target = new_key(state.kms.as_ref()).await;
    create_bucket(&state, "b").await;
    put_versions(&state, "b", n).await;
    (state, target)
}

fn job_to(target: &str) -> JobKind {
    JobKind::Reencrypt(ReencryptSpec {
        bucket: "b".into(),
        prefix: String::new(),
        source: SourceFilter::SseS3,
        all_versions: true,
        target_key_arn: target.into(),
        bucket_key_enabled: false,
    })
}

async fn wait_for(state: &AppState, id: &str, want: JobState) -> JobRecord {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let job = state.meta.get_job(id).await.unwrap().unwrap();
        if job.state == want {
            return job;
        }
        assert!(std::time::Instant::now() < deadline, "{job:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two runners on one job, whose first owner died holding a lease: one of them takes it over
/// when the lease ends, and every version is rewrapped exactly once (its generation went up by
/// one) and counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_take_over_a_dead_owner_and_rewrap_each_version_once() {
    let dir = tempfile::tempdir().unwrap();
    let (state, target) = setup(dir.path(), 50).await;
    let before: BTreeMap<String, u64> = list_generations(&state).await;

    let now = chrono::Utc::now().timestamp_millis();
    let record = JobRecord::new("j".into(), job_to(&target), now);
    state.meta.apply(Command::CreateJob(record)).await.unwrap();
    // A runner that claimed the job and died: its lease holds for 300 ms.
    state
        .meta
        .apply(Command::ClaimJob {
            id: "j".into(),
            runner_id: "dead".into(),
            now_ms: now,
            lease_until_ms: now + 300,
        })
        .await
        .unwrap();

    let (stop_tx, stop_rx) = watch::channel(false);
    let runners: Vec<_> = ["r1", "r2"]
        .into_iter()
        .map(|r| tokio::spawn(run(state.clone(), config(r), stop_rx.clone())))
        .collect();
    let job = wait_for(&state, "j", JobState::Completed).await;
    stop_tx.send(true).unwrap();
    for r in runners {
        r.await.unwrap();
    }
    assert!(job.created_ms <= job.finished_ms.unwrap());
    assert_eq!(job.total, Some(50));
    assert_eq!((job.counters.rewrapped, job.counters.already_done), (50, 0));
    assert_eq!(job.owner, None);

    // Exactly one rewrap per version, under the target key.
    let after = list_generations(&state).await;
    assert_eq!(after.len(), 50);
    for (k, g) in &after {
        assert_eq!(*g, before[k] + 1, "{k}");
        let v = state.meta.get_object("b", k, None).await.unwrap();
        let env = v.envelope.unwrap();
        assert_eq!(env.kms_key_arn.as_deref(), Some(target.as_str()));
        assert_eq!(env.algorithm, SseAlgorithm::AwsKms);
    }
    // The runners' metrics count each version once.
    let text = state.metrics.render();
    assert!(
        text.contains("coffer_s3_job_objects_total{outcome=\"rewrapped\"} 50"),
        "{text}"
    );
}

async fn list_generations(state: &AppState) -> BTreeMap<String, u64> {
    envelopes(state)
        .await
        .into_iter()
        .map(|(k, e)| (k, e.generation))
        .collect()
}

/// A target key that is disabled: every rewrap fails (not transient), each version is counted
/// and listed as failed with the KMS error, and the job still completes.
#[tokio::test]
async fn versions_the_kms_refuses_are_failed_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let (state, target) = setup(dir.path(), 12).await;
    state.kms.disable_key(&target).await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let record = JobRecord::new("j".into(), job_to(&target), now);
    state.meta.apply(Command::CreateJob(record)).await.unwrap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let runner = tokio::spawn(run(state.clone(), config("r1"), stop_rx));
    let job = wait_for(&state, "j", JobState::Completed).await;
    stop_tx.send(true).unwrap();
    runner.await.unwrap();
    assert_eq!(job.total, Some(12));
    assert_eq!((job.counters.failed, job.counters.rewrapped), (12, 0));
    assert_eq!(job.skipped_by_reason.get("failed"), Some(&12));
    assert_eq!(job.skipped.len(), 12);
    let detail = job.skipped[0].detail.as_deref().unwrap();
    assert!(detail.starts_with("KMS.DisabledException"), "{detail}");
    // Nothing changed.
    for g in list_generations(&state).await.keys() {
        let v = state.meta.get_object("b", g, None).await.unwrap();
        assert_eq!(v.envelope.unwrap().algorithm, SseAlgorithm::Aes256);
    }
}

fn sse_kms(key: &str, bucket_key: bool) -> SseRequest {
    SseRequest {
        algorithm: SseAlgorithm::AwsKms,
        kms_key_id: Some(key.into()),
        context: None,
        bucket_key,
        customer_key: None,
    }
}

/// Every version of bucket `b` with its envelope, by key.
async fn envelopes(state: &AppState) -> BTreeMap<String, coffer_meta::Envelope> {
    let page = state
        .meta
        .list_object_versions(
            "b",
            &VersionQuery {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    page.versions
        .into_iter()
        .map(|(v, _)| (v.key, v.envelope.unwrap()))
        .collect()
}

/// Runs job `kind` to the end with one runner.
async fn run_job(state: &Arc<AppState>, id: &str, kind: JobKind) -> JobRecord {
    let now = chrono::Utc::now().timestamp_millis();
    let record = JobRecord::new(id.into(), kind, now);
    state.meta.apply(Command::CreateJob(record)).await.unwrap();
    let (stop_tx, stop_rx) = watch::channel(false);
    let runner = tokio::spawn(run(state.clone(), config("r1"), stop_rx));
    let job = wait_for(state, id, JobState::Completed).await;
    stop_tx.send(true).unwrap();
    runner.await.unwrap();
    job
}

fn kms_calls(state: &AppState, op: &str) -> u64 {
    let text = state.metrics.render();
    let needle = format!("coffer_s3_kms_calls_total{{op=\"{op}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .map_or(0, |n| n.trim().parse().unwrap())
}

/// Objects under one bucket key of key A move to key B with Bucket Key on by one ReEncrypt of
/// the bucket key: each envelope names the new bucket key and B, its wrapped data key is
/// untouched, and the data key opens to the same bytes.
#[tokio::test]
async fn bucket_key_objects_move_by_rewrapping_their_bucket_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let (state, target) = setup(dir.path(), 0).await;
    let source = new_key(state.kms.as_ref()).await;
    put_with(&state, "b", "bk", 20, &sse_kms(&source, true)).await;
    let before = envelopes(&state).await;
    let old_ids: std::collections::BTreeSet<_> =
        before.values().map(|e| e.bucket_key_id.clone()).collect();
    assert_eq!(old_ids.len(), 1);
    let batches = kms_calls(&state, "ReEncryptBatch");
    let job = run_job(
        &state,
        "j",
        JobKind::Reencrypt(ReencryptSpec {
            bucket: "b".into(),
            prefix: String::new(),
            source: SourceFilter::SseKms(Some(source.clone())),
            all_versions: true,
            target_key_arn: target.clone(),
            bucket_key_enabled: true,
        }),
    )
    .await;
    assert_eq!(job.total, Some(20));
    assert_eq!(job.counters.rewrapped, 20);
    assert_eq!(job.counters.bucket_keys_rewrapped, 1);
    // One batch for the bucket key (pages hold 7 versions; a page of bucket-key objects needs
    // no per-object KMS call).
    assert_eq!(kms_calls(&state, "ReEncryptBatch") - batches, 1);
    let after = envelopes(&state).await;
    let new_ids: std::collections::BTreeSet<_> =
        after.values().map(|e| e.bucket_key_id.clone()).collect();
    assert_eq!(new_ids.len(), 1);
    assert_ne!(new_ids, old_ids);
    for (k, env) in &after {
        let old = &before[k];
        assert_eq!(env.kms_key_arn.as_deref(), Some(target.as_str()));
        assert_eq!(env.wrapped_dek, old.wrapped_dek, "{k}");
        assert_eq!(env.generation, old.generation + 1);
        let a = crate::sse::open_object_key(&state, old).await.unwrap();
        let b = crate::sse::open_object_key(&state, env).await.unwrap();
        assert_eq!(a.inner.as_bytes(), b.inner.as_bytes());
    }
}

/// A rotation job moves every data key wrapped by the old material of a key to the new one,
/// and each bucket key once (its objects untouched); a second run finds nothing to do.
#[tokio::test]
async fn rotation_moves_old_material_and_each_bucket_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let (state, key) = setup(dir.path(), 0).await;
    put_with(&state, "b", "plain", 9, &sse_kms(&key, false)).await;
    put_with(&state, "b", "bk", 11, &sse_kms(&key, true)).await;
    let before = envelopes(&state).await;
    state.kms.rotate_key_on_demand(&key).await.unwrap();
    let material = |blob: &[u8]| {
        coffer_kms::ciphertext::material_of(blob)
            .unwrap()
            .material_version
    };
    let spec = coffer_meta::RotateSpec {
        key_arn: key.clone(),
        material_version: 2,
        buckets: Vec::new(),
    };
    let job = run_job(&state, "rot1", JobKind::Rotate(spec.clone())).await;
    assert_eq!(job.total, Some(20));
    assert_eq!(job.counters.rewrapped, 9);
    assert_eq!(job.counters.via_bucket_key, 11);
    assert_eq!(job.counters.bucket_keys_rewrapped, 1);
    let after = envelopes(&state).await;
    for (k, env) in &after {
        let old = &before[k];
        let a = crate::sse::open_object_key(&state, old).await.unwrap();
        if let Some(id) = &env.bucket_key_id {
            // Untouched; its bucket key record is under material 2.
            assert_eq!(env, old, "{k}");
            let r = crate::bucket_keys::record(&state, id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(material(&r.wrapped), 2);
        } else {
            assert_eq!(material(&old.wrapped_dek), 1);
            assert_eq!(material(&env.wrapped_dek), 2, "{k}");
            assert_eq!(env.generation, old.generation + 1);
        }
        let b = crate::sse::open_object_key(&state, env).await.unwrap();
        assert_eq!(a.inner.as_bytes(), b.inner.as_bytes());
    }
    let again = run_job(&state, "rot2", JobKind::Rotate(spec)).await;
    assert_eq!(again.counters.rewrapped, 0);
    assert_eq!(again.counters.already_done, 9);
    assert_eq!(again.counters.via_bucket_key, 11);
    assert_eq!(again.counters.bucket_keys_rewrapped, 0);
}
