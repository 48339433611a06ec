//! The job runner (issue 8): a background task of every gateway that claims runnable jobs from
//! the metadata role and runs them.
//!
//! A job walks the selected versions in listing order (bucket, key, then newest version first),
//! a page at a time; [`crate::job_plan`] decides each version (the same checks as
//! UpdateObjectEncryption; a version already under the target counts as already done, so jobs
//! are idempotent by target state) and rewraps the page's data keys in one KMS batch. One
//! `UpdateJob` checkpoint then commits the page's envelope compare-and-sets with its counts and
//! the cursor past it — one Raft entry, all or nothing — compare-and-set on the job version and
//! the runner's ownership, so two runners never both advance a job. After a crash, another
//! runner (or the restarted one) claims the job when the lease ends and resumes after the last
//! checkpoint: nothing of the lost page was written, so no version is rewrapped twice or
//! skipped, and `rewrapped` counts exactly the envelopes the job changed.
//!
//! Pause and cancel are seen after each checkpoint (the runner reads the record back); the
//! runner then releases the job.

use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use coffer_meta::{
    Command, JobCursor, JobProgress, JobRecord, JobState, ListQuery, MetaError, ObjectVersion,
    SkippedObject, VersionQuery,
};
use tokio::sync::watch;

use crate::error::S3ErrorCode;
pub use crate::job_plan::selected;
use crate::job_plan::{self, BucketKeyCache, Item, Plan, Work};
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
        match self.execute(&job, version).await {
            Ok(()) => tracing::info!(job = %job.id, "job runner: job finished"),
            Err(Stop::Lost) => tracing::info!(job = %job.id, "job runner: job taken over"),
            Err(Stop::Released) => tracing::info!(job = %job.id, "job runner: job released"),
        }
    }

    /// Applies a checkpoint; returns the new version. An unavailable group is waited for; a
    /// refusal is returned as is.
    async fn checkpoint_raw(
        &self,
        id: &str,
        version: u64,
        progress: JobProgress,
    ) -> Result<u64, MetaError> {
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
                    if *self.stop.borrow() {
                        return Err(MetaError::Unavailable(e));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A checkpoint without envelopes; a refusal means the job is not ours any more.
    async fn checkpoint(&self, id: &str, version: u64, progress: JobProgress) -> Result<u64, Stop> {
        self.checkpoint_raw(id, version, progress)
            .await
            .map_err(|e| {
                tracing::info!(job = id, error = %e, "job runner: checkpoint refused");
                Stop::Lost
            })
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

    /// The buckets a job walks (retried while the metadata role is unavailable).
    async fn buckets(&self, id: &str, work: &Work, version: &mut u64) -> Result<Vec<String>, Stop> {
        loop {
            match work.buckets(&self.state).await {
                Ok(b) => return Ok(b),
                Err(e) => {
                    tracing::warn!(job = id, error = %e, "job runner: cannot list buckets; retrying");
                    self.pause(Duration::from_secs(1)).await;
                    *version = self.should_stop(id, *version).await?;
                }
            }
        }
    }

    async fn execute(&self, job: &JobRecord, mut version: u64) -> Result<(), Stop> {
        let work = Work::new(&job.kind);
        let buckets = self.buckets(&job.id, &work, &mut version).await?;
        if job.total.is_none() {
            let total = match self.count(&job.id, &work, &buckets, &mut version).await? {
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
        let mut cache = BucketKeyCache::default();
        let mut attempts = 0;
        loop {
            let page = match self.page(&work, &buckets, cursor.as_ref()).await {
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
            let items: Vec<Item> = page
                .items
                .into_iter()
                .filter(|i| work.selects(&i.version))
                .collect();
            attempts += 1;
            let last_attempt = attempts >= PAGE_ATTEMPTS;
            let plan = job_plan::plan(
                &self.state,
                &work,
                &mut cache,
                items,
                self.config.concurrency,
                last_attempt,
            )
            .await;
            if plan.transient {
                // A transient failure (KMS or metadata unavailable): do the page again; nothing
                // of it was written.
                self.pause(Duration::from_secs(1)).await;
                version = self.should_stop(&job.id, version).await?;
                continue;
            }
            attempts = 0;
            version = self
                .commit(
                    &job.id, version, &work, &mut cache, plan, &page.next, !page.more,
                )
                .await?;
            if !page.more {
                return Ok(());
            }
            cursor = page.next;
            if !self.config.page_delay.is_zero() {
                self.pause(self.config.page_delay).await;
            }
            version = self.should_stop(&job.id, version).await?;
        }
    }

    /// Commits a page: its envelopes, bucket keys, counts and the new cursor in one checkpoint
    /// (one Raft entry, all or nothing). A version whose envelope changed since it was listed
    /// (a PUT, DELETE or UpdateObjectEncryption meanwhile) is read again and planned alone, at
    /// most [`PAGE_ATTEMPTS`] times; the rest of the page is committed as planned.
    #[allow(clippy::too_many_arguments)]
    async fn commit(
        &self,
        id: &str,
        version: u64,
        work: &Work,
        cache: &mut BucketKeyCache,
        mut plan: Plan,
        cursor: &Option<JobCursor>,
        finished: bool,
    ) -> Result<u64, Stop> {
        let mut conflicts: HashMap<(String, String, String), u32> = HashMap::new();
        loop {
            let mut counters = plan.counters.clone();
            counters.rewrapped += plan.rewraps.len() as u64;
            let progress = JobProgress {
                cursor: cursor.clone(),
                counters: counters.clone(),
                skipped: plan.skipped.clone(),
                finished,
                rewraps: plan.rewraps.clone(),
                config_puts: plan.config_puts.clone(),
                ..Default::default()
            };
            let index = match self.checkpoint_raw(id, version, progress).await {
                Ok(v) => {
                    self.state.metrics.add_job_objects(&counters);
                    cache.committed(&plan.config_puts);
                    return Ok(v);
                }
                Err(MetaError::RewrapConflict { index, reason }) => {
                    tracing::debug!(
                        job = id,
                        index,
                        reason,
                        "job runner: envelope changed; planning it again"
                    );
                    index as usize
                }
                Err(e) => {
                    tracing::info!(job = id, error = %e, "job runner: checkpoint refused");
                    return Err(Stop::Lost);
                }
            };
            if index >= plan.rewraps.len() {
                tracing::warn!(job = id, index, "job runner: conflict index out of range");
                return Err(Stop::Lost);
            }
            let r = plan.rewraps.remove(index);
            let tries = conflicts
                .entry((r.bucket.clone(), r.key.clone(), r.version_id.clone()))
                .or_default();
            *tries += 1;
            let fresh = match self
                .state
                .meta
                .get_object(&r.bucket, &r.key, Some(&r.version_id))
                .await
            {
                Ok(v) => v,
                Err(MetaError::NoSuchKey(_) | MetaError::NoSuchVersion(_)) => {
                    plan.merge(skipped_plan(&r.key, &r.version_id, "deleted"));
                    continue;
                }
                Err(e) => {
                    // Reading failed: the version is planned again on the next round.
                    tracing::warn!(job = id, error = %e, "job runner: cannot read a conflicting version");
                    self.pause(Duration::from_secs(1)).await;
                    plan.rewraps.insert(index, r);
                    continue;
                }
            };
            let item = Item {
                bucket: r.bucket.clone(),
                version: fresh,
            };
            if *tries > PAGE_ATTEMPTS {
                let mut p = Plan::default();
                p.error(
                    &item,
                    &crate::error::S3Error::new(
                        S3ErrorCode::ConditionalRequestConflict,
                        "The envelope kept changing during the job.",
                    ),
                    true,
                );
                plan.merge(p);
                continue;
            }
            if !work.selects(&item.version) {
                // Overwritten by a version the job does not select (e.g. another encryption).
                plan.merge(skipped_plan(&r.key, &r.version_id, "changed"));
                continue;
            }
            let again = job_plan::plan(&self.state, work, cache, vec![item], 1, true).await;
            plan.merge(again);
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
        work: &Work,
        buckets: &[String],
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
            let page = loop {
                match self.page(work, buckets, cursor.as_ref()).await {
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
            total += page
                .items
                .iter()
                .filter(|i| work.selects(&i.version))
                .count() as u64;
            if !page.more {
                return Ok(Ok(total));
            }
            cursor = page.next;
        }
    }

    /// One page of versions after `cursor` (delete markers included, for the cursor), the
    /// cursor after it, and whether more follow. A rotation goes on with the next bucket when
    /// one ends (a bucket deleted meanwhile is passed over).
    async fn page(
        &self,
        work: &Work,
        buckets: &[String],
        cursor: Option<&JobCursor>,
    ) -> Result<Page, MetaError> {
        let rotation = matches!(work, Work::Rotate(_));
        let bucket = match cursor.and_then(|c| c.bucket.clone()) {
            Some(b) => b,
            None => match buckets.first() {
                Some(b) => b.clone(),
                None => {
                    return Ok(Page {
                        items: Vec::new(),
                        next: cursor.cloned(),
                        more: false,
                    })
                }
            },
        };
        // The position inside the bucket (an empty key: its start).
        let within = cursor.filter(|c| !c.key.is_empty());
        let tag = rotation.then(|| bucket.clone());
        let listed = match self.list(work, &bucket, within).await {
            Err(MetaError::NoSuchBucket(_)) if rotation => None,
            other => Some(other?),
        };
        let (items, last, truncated) = listed.unwrap_or_default();
        let next = last
            .map(|mut c| {
                c.bucket = tag.clone();
                c
            })
            .or_else(|| cursor.cloned());
        let items = items
            .into_iter()
            .map(|version| Item {
                bucket: bucket.clone(),
                version,
            })
            .collect();
        if truncated {
            return Ok(Page {
                items,
                next,
                more: true,
            });
        }
        // This bucket is done: a rotation goes on with the next one.
        match buckets.iter().find(|b| **b > bucket).filter(|_| rotation) {
            Some(b) => Ok(Page {
                items,
                next: Some(JobCursor {
                    key: String::new(),
                    version_id: None,
                    seq: 0,
                    bucket: Some(b.clone()),
                }),
                more: true,
            }),
            None => Ok(Page {
                items,
                next,
                more: false,
            }),
        }
    }

    /// One listing page of `bucket` after `cursor`: the versions, the cursor of the last entry
    /// (a delete marker included), and whether the listing was truncated.
    async fn list(
        &self,
        work: &Work,
        bucket: &str,
        cursor: Option<&JobCursor>,
    ) -> Result<(Vec<ObjectVersion>, Option<JobCursor>, bool), MetaError> {
        let meta = &self.state.meta;
        if work.all_versions() {
            let q = VersionQuery {
                prefix: work.prefix().to_owned(),
                delimiter: None,
                key_marker: cursor.map(|c| c.key.clone()),
                version_id_marker: cursor.and_then(|c| c.version_id.clone()),
                max_keys: self.config.page_size,
            };
            let page = meta.list_object_versions(bucket, &q).await?;
            let last = page.versions.last().map(|(v, _)| JobCursor {
                key: v.key.clone(),
                version_id: Some(v.version_id.clone()),
                seq: v.seq,
                bucket: None,
            });
            let mut items: Vec<ObjectVersion> = page.versions.into_iter().map(|(v, _)| v).collect();
            // If the cursor's version was deleted, the listing restarts at the newest version of
            // its key: keep only those older than the cursor.
            if let Some(c) = cursor {
                items.retain(|v| v.key != c.key || v.seq < c.seq);
            }
            Ok((items, last, page.is_truncated))
        } else {
            let q = ListQuery {
                prefix: work.prefix().to_owned(),
                delimiter: None,
                start_after: cursor.map(|c| c.key.clone()),
                max_keys: self.config.page_size,
            };
            let page = meta.list_objects(bucket, &q).await?;
            let last = page.objects.last().map(|v| JobCursor {
                key: v.key.clone(),
                version_id: None,
                seq: v.seq,
                bucket: None,
            });
            Ok((page.objects, last, page.is_truncated))
        }
    }
}

/// A page of a job's walk.
struct Page {
    items: Vec<Item>,
    /// The cursor after the page.
    next: Option<JobCursor>,
    /// More pages follow.
    more: bool,
}

/// A version skipped for `reason` after it was listed (`deleted`, or `changed` into one the job
/// does not select).
fn skipped_plan(key: &str, version_id: &str, reason: &str) -> Plan {
    let mut p = Plan::default();
    p.counters.skipped += 1;
    p.skipped.push(SkippedObject {
        key: key.to_owned(),
        version_id: version_id.to_owned(),
        reason: reason.to_owned(),
        detail: None,
    });
    p
}

#[cfg(test)]
#[path = "jobs_tests.rs"]
mod tests;
