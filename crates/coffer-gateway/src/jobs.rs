//! The job runner (issue 8): a background task of every gateway that claims runnable jobs from
//! the metadata role and runs them.
//!
//! A re-encryption job walks the selected versions in listing order (key, then newest version
//! first), a page at a time. Each version is rewrapped through the same code as
//! UpdateObjectEncryption ([`rewrap_version`]), at most `concurrency` at once; a version already
//! under the target counts as already done (idempotent by target state). After each page one
//! `UpdateJob` checkpoint adds the page's counts and moves the cursor past it, compare-and-set
//! on the job version and the runner's ownership, so two runners never both advance a job.
//! After a crash, another runner (or the restarted one) claims the job when the lease ends and
//! resumes after the last checkpoint; versions of the lost page already rewrapped then count as
//! already done, so `done` stays exact and no version is counted twice.
//!
//! Pause and cancel are seen after each checkpoint (the runner reads the record back); the
//! runner then releases the job.

use std::sync::Arc;
use std::time::Duration;

use coffer_meta::{
    Command, Envelope, JobCursor, JobKind, JobProgress, JobRecord, JobState, ListQuery, MetaError,
    ObjectVersion, ReencryptSpec, SkippedObject, SourceFilter, SseAlgorithm, VersionQuery,
};
use futures::StreamExt;
use tokio::sync::watch;

use crate::error::S3ErrorCode;
use crate::s3::update_encryption::{at_target, rewrap_version, Rewrapped, Target};
use crate::state::AppState;

/// How a gateway runs jobs.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// This runner's id (unique per process).
    pub runner_id: String,
    /// Rewraps in flight at once.
    pub concurrency: usize,
    /// Versions per page (and per checkpoint).
    pub page_size: usize,
    /// How long a claim holds without a checkpoint.
    pub lease: Duration,
    /// A pause between pages, to leave room for S3 traffic (0 = none).
    pub page_delay: Duration,
    /// How often an idle runner looks for jobs.
    pub poll: Duration,
}

impl JobsConfig {
    /// Defaults, overridden by `COFFER_JOBS_CONCURRENCY` (8), `COFFER_JOBS_PAGE_SIZE` (100),
    /// `COFFER_JOBS_LEASE_SECS` (15), `COFFER_JOBS_PAGE_DELAY_MS` (0), `COFFER_JOBS_POLL_MS`
    /// (1000). Invalid values are an error.
    pub fn from_env() -> Result<Self, String> {
        fn var(name: &str, default: u64, min: u64) -> Result<u64, String> {
            match std::env::var(name) {
                Err(_) => Ok(default),
                Ok(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n >= min => Ok(n),
                    _ => Err(format!("{name}={v:?}: expected an integer >= {min}")),
                },
            }
        }
        Ok(JobsConfig {
            runner_id: uuid::Uuid::new_v4().to_string(),
            concurrency: var("COFFER_JOBS_CONCURRENCY", 8, 1)? as usize,
            page_size: var("COFFER_JOBS_PAGE_SIZE", 100, 1)?.min(1000) as usize,
            lease: Duration::from_secs(var("COFFER_JOBS_LEASE_SECS", 15, 2)?),
            page_delay: Duration::from_millis(var("COFFER_JOBS_PAGE_DELAY_MS", 0, 0)?),
            poll: Duration::from_millis(var("COFFER_JOBS_POLL_MS", 1000, 10)?),
        })
    }
}

/// A page whose rewraps keep failing transiently is tried this many times; then those versions
/// count as failed (listed with the error) and the job goes on.
const PAGE_ATTEMPTS: u32 = 5;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Runs jobs until `stop` turns true.
pub async fn run(state: Arc<AppState>, config: JobsConfig, mut stop: watch::Receiver<bool>) {
    let runner = Runner {
        state,
        config,
        stop: stop.clone(),
    };
    loop {
        if *stop.borrow() {
            return;
        }
        match runner.state.meta.list_jobs().await {
            Ok(jobs) => {
                runner.state.metrics.set_job_states(&jobs);
                let mut ran = false;
                for job in jobs {
                    if *stop.borrow() {
                        return;
                    }
                    if runner.claimable(&job) {
                        runner.try_run(job).await;
                        ran = true;
                    }
                }
                // A job this runner ran changed state: the gauge shows it at once, not only
                // after the next poll.
                if ran {
                    if let Ok(jobs) = runner.state.meta.list_jobs().await {
                        runner.state.metrics.set_job_states(&jobs);
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "job runner: cannot list jobs"),
        }
        tokio::select! {
            _ = tokio::time::sleep(runner.config.poll) => {}
            _ = stop.changed() => {}
        }
    }
}

struct Runner {
    state: Arc<AppState>,
    config: JobsConfig,
    stop: watch::Receiver<bool>,
}

/// Why a job run ended early.
enum Stop {
    /// Another runner owns the job now, or it changed under us: leave it.
    Lost,
    /// Paused, cancelled or shutting down: the job was released.
    Released,
}

impl Runner {
    fn claimable(&self, job: &JobRecord) -> bool {
        match job.state {
            JobState::Pending => true,
            JobState::Running => {
                job.owner.as_deref() == Some(self.config.runner_id.as_str())
                    || job.lease_until_ms < now_ms()
            }
            _ => false,
        }
    }

    fn lease_until(&self) -> i64 {
        now_ms() + self.config.lease.as_millis() as i64
    }

    async fn try_run(&self, job: JobRecord) {
        let claim = Command::ClaimJob {
            id: job.id.clone(),
            runner_id: self.config.runner_id.clone(),
            now_ms: now_ms(),
            lease_until_ms: self.lease_until(),
        };
        let version = match self.state.meta.apply(claim).await {
            Ok(out) => out.seq,
            Err(e) => {
                tracing::debug!(job = %job.id, error = %e, "job runner: claim refused");
                return;
            }
        };
        tracing::info!(job = %job.id, runner = %self.config.runner_id, "job runner: running job");
        let JobKind::Reencrypt(spec) = &job.kind;
        match self.reencrypt(&job, spec, version).await {
            Ok(()) => tracing::info!(job = %job.id, "job runner: job finished"),
            Err(Stop::Lost) => tracing::info!(job = %job.id, "job runner: job taken over"),
            Err(Stop::Released) => tracing::info!(job = %job.id, "job runner: job released"),
        }
    }

    /// Applies a checkpoint; returns the new version.
    async fn checkpoint(&self, id: &str, version: u64, progress: JobProgress) -> Result<u64, Stop> {
        let cmd = Command::UpdateJob {
            id: id.to_owned(),
            runner_id: self.config.runner_id.clone(),
            expected_version: version,
            progress,
            now_ms: now_ms(),
            lease_until_ms: self.lease_until(),
        };
        loop {
            match self.state.meta.apply(cmd.clone()).await {
                Ok(out) => return Ok(out.seq),
                Err(MetaError::Unavailable(e)) => {
                    // Retried with the same expected version: applied at most once.
                    tracing::warn!(job = id, error = %e, "job runner: checkpoint unavailable; retrying");
                    self.pause(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    tracing::info!(job = id, error = %e, "job runner: checkpoint refused");
                    return Err(Stop::Lost);
                }
            }
        }
    }

    async fn pause(&self, d: Duration) {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = stop.changed() => {}
        }
    }

    /// After a checkpoint: stop if the job was paused or cancelled, or the gateway stops.
    async fn should_stop(&self, id: &str, version: u64) -> Result<u64, Stop> {
        let paused = match self.state.meta.get_job(id).await {
            Ok(Some(j)) => j.state != JobState::Running,
            Ok(None) => return Err(Stop::Lost),
            Err(_) => false,
        };
        if paused || *self.stop.borrow() {
            let release = JobProgress {
                release: true,
                ..Default::default()
            };
            self.checkpoint(id, version, release).await?;
            return Err(Stop::Released);
        }
        Ok(version)
    }

    async fn reencrypt(
        &self,
        job: &JobRecord,
        spec: &ReencryptSpec,
        mut version: u64,
    ) -> Result<(), Stop> {
        let target = Target {
            key_arn: spec.target_key_arn.clone(),
            bucket_key_enabled: spec.bucket_key_enabled,
        };
        if job.total.is_none() {
            let total = match self.count(&job.id, spec, &target, &mut version).await? {
                Ok(n) => n,
                Err(e) => return self.fail(&job.id, version, e).await,
            };
            let p = JobProgress {
                total: Some(total),
                ..Default::default()
            };
            version = self.checkpoint(&job.id, version, p).await?;
            version = self.should_stop(&job.id, version).await?;
        }
        let mut cursor = job.cursor.clone();
        let mut attempts = 0;
        loop {
            let (items, next, more) = match self.page(spec, cursor.as_ref()).await {
                Ok(page) => page,
                Err(MetaError::NoSuchBucket(b)) => {
                    return self
                        .fail(&job.id, version, format!("no such bucket: {b}"))
                        .await
                }
                Err(e) => {
                    tracing::warn!(job = %job.id, error = %e, "job runner: listing failed; retrying");
                    self.pause(Duration::from_secs(1)).await;
                    version = self.should_stop(&job.id, version).await?;
                    continue;
                }
            };
            let selected: Vec<_> = items
                .into_iter()
                .filter(|v| selected(v, spec, &target))
                .collect();
            attempts += 1;
            let last_attempt = attempts >= PAGE_ATTEMPTS;
            let progress = match self.process(spec, &target, selected, last_attempt).await {
                Some(mut p) => {
                    attempts = 0;
                    p.cursor = next.clone();
                    p.finished = !more;
                    p
                }
                None => {
                    // A transient failure (KMS or metadata unavailable): do the page again
                    // (versions rewrapped meanwhile then count as already done).
                    self.pause(Duration::from_secs(1)).await;
                    version = self.should_stop(&job.id, version).await?;
                    continue;
                }
            };
            self.state.metrics.add_job_objects(&progress.counters);
            version = self.checkpoint(&job.id, version, progress).await?;
            if !more {
                return Ok(());
            }
            cursor = next;
            if !self.config.page_delay.is_zero() {
                self.pause(self.config.page_delay).await;
            }
            version = self.should_stop(&job.id, version).await?;
        }
    }

    async fn fail(&self, id: &str, version: u64, error: String) -> Result<(), Stop> {
        tracing::warn!(job = id, error = %error, "job runner: job failed");
        let p = JobProgress {
            failed: Some(error),
            ..Default::default()
        };
        self.checkpoint(id, version, p).await?;
        Ok(())
    }

    /// Number of selected versions, by a walk of the listing; the claim is renewed on the way
    /// (a large bucket takes longer than a lease). `Err(message)` fails the job.
    async fn count(
        &self,
        id: &str,
        spec: &ReencryptSpec,
        target: &Target,
        version: &mut u64,
    ) -> Result<Result<u64, String>, Stop> {
        let mut cursor = None;
        let mut total = 0u64;
        let mut renewed = std::time::Instant::now();
        loop {
            if renewed.elapsed() > self.config.lease / 3 {
                let claim = Command::ClaimJob {
                    id: id.to_owned(),
                    runner_id: self.config.runner_id.clone(),
                    now_ms: now_ms(),
                    lease_until_ms: self.lease_until(),
                };
                *version = self
                    .state
                    .meta
                    .apply(claim)
                    .await
                    .map_err(|_| Stop::Lost)?
                    .seq;
                renewed = std::time::Instant::now();
            }
            let (items, next, more) = loop {
                match self.page(spec, cursor.as_ref()).await {
                    Ok(p) => break p,
                    Err(MetaError::NoSuchBucket(b)) => {
                        return Ok(Err(format!("no such bucket: {b}")))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "job runner: listing failed; retrying");
                        if *self.stop.borrow() {
                            return Err(Stop::Lost);
                        }
                        self.pause(Duration::from_secs(1)).await;
                    }
                }
            };
            total += items.iter().filter(|v| selected(v, spec, target)).count() as u64;
            if !more {
                return Ok(Ok(total));
            }
            cursor = next;
        }
    }

    /// One page of versions after `cursor` (delete markers included, for the cursor), the
    /// cursor after it, and whether more follow.
    async fn page(
        &self,
        spec: &ReencryptSpec,
        cursor: Option<&JobCursor>,
    ) -> Result<(Vec<ObjectVersion>, Option<JobCursor>, bool), MetaError> {
        let meta = &self.state.meta;
        if spec.all_versions {
            let q = VersionQuery {
                prefix: spec.prefix.clone(),
                delimiter: None,
                key_marker: cursor.map(|c| c.key.clone()),
                version_id_marker: cursor.and_then(|c| c.version_id.clone()),
                max_keys: self.config.page_size,
            };
            let page = meta.list_object_versions(&spec.bucket, &q).await?;
            let last = page.versions.last().map(|(v, _)| JobCursor {
                key: v.key.clone(),
                version_id: Some(v.version_id.clone()),
                seq: v.seq,
            });
            let mut items: Vec<ObjectVersion> = page.versions.into_iter().map(|(v, _)| v).collect();
            // If the cursor's version was deleted, the listing restarts at the newest version of
            // its key: keep only those older than the cursor.
            if let Some(c) = cursor {
                items.retain(|v| v.key != c.key || v.seq < c.seq);
            }
            // The cursor moves to the page's last entry, a delete marker included.
            let next = last.or_else(|| cursor.cloned());
            Ok((items, next, page.is_truncated))
        } else {
            let q = ListQuery {
                prefix: spec.prefix.clone(),
                delimiter: None,
                start_after: cursor.map(|c| c.key.clone()),
                max_keys: self.config.page_size,
            };
            let page = meta.list_objects(&spec.bucket, &q).await?;
            let next = page
                .objects
                .last()
                .map(|v| JobCursor {
                    key: v.key.clone(),
                    version_id: None,
                    seq: v.seq,
                })
                .or_else(|| cursor.cloned());
            Ok((page.objects, next, page.is_truncated))
        }
    }

    /// Rewraps the selected versions of a page, `concurrency` at once. `None` if one met a
    /// transient failure (the page is done again), unless `last_attempt`: then such a version
    /// counts as failed.
    async fn process(
        &self,
        spec: &ReencryptSpec,
        target: &Target,
        versions: Vec<ObjectVersion>,
        last_attempt: bool,
    ) -> Option<JobProgress> {
        let results: Vec<_> = futures::stream::iter(versions)
            .map(|v| async move {
                let r = rewrap_version(
                    &self.state,
                    &spec.bucket,
                    &v.key,
                    Some(&v.version_id),
                    target,
                    true,
                )
                .await;
                (v, r)
            })
            .buffer_unordered(self.config.concurrency)
            .collect()
            .await;
        let mut p = JobProgress::default();
        let mut transient = false;
        for (v, r) in results {
            let skip = |reason: &str, detail: Option<String>| SkippedObject {
                key: v.key.clone(),
                version_id: v.version_id.clone(),
                reason: reason.to_owned(),
                detail,
            };
            match r {
                Ok(Ok(Rewrapped::Done)) => p.counters.rewrapped += 1,
                Ok(Ok(Rewrapped::AlreadyAtTarget)) => p.counters.already_done += 1,
                Ok(Err(refusal)) => {
                    p.counters.skipped += 1;
                    p.skipped.push(skip(refusal.reason(), None));
                }
                Err(e)
                    if matches!(
                        e.code(),
                        S3ErrorCode::NoSuchKey | S3ErrorCode::NoSuchVersion
                    ) =>
                {
                    p.counters.skipped += 1;
                    p.skipped.push(skip("deleted", None));
                }
                Err(e)
                    if !last_attempt
                        && matches!(
                            e.code(),
                            S3ErrorCode::ServiceUnavailable
                                | S3ErrorCode::KMSInternalException
                                | S3ErrorCode::InternalError
                        ) =>
                {
                    tracing::warn!(key = %v.key, error = ?e, "job runner: transient rewrap failure");
                    transient = true;
                }
                Err(e) => {
                    p.counters.failed += 1;
                    p.skipped.push(skip(
                        "failed",
                        Some(format!("{}: {}", e.code().as_str(), e.message())),
                    ));
                }
            }
        }
        (!transient).then_some(p)
    }
}

/// Whether a version is selected by the job: it matches the source filter, or it is already
/// under the target (a version the job itself rewrapped before a crash stays selected, so a
/// resumed job counts it as already done, not as missing).
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

#[cfg(test)]
#[path = "jobs_tests.rs"]
mod tests;
