//! Prometheus metrics of the gateway: requests by operation and status, bytes in and out,
//! latency histograms.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of a request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The S3 operation name.
    pub op: String,
    /// The HTTP status code.
    pub status: u16,
}

/// Labels of per-operation series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// The S3 operation name.
    pub op: String,
}

/// Labels of job object counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `rewrapped`, `already_done`, `skipped` or `failed`.
    pub outcome: String,
}

/// Labels of the job gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobStateLabels {
    /// The job state (`pending`, `running`, `paused`, `completed`, `cancelled`, `failed`).
    pub state: String,
}

/// The gateway's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    /// `coffer_s3_requests_total{op,status}`.
    pub requests: Family<RequestLabels, Counter>,
    /// `coffer_s3_request_duration_seconds{op}`.
    pub latency: Family<OpLabels, Histogram>,
    /// `coffer_s3_bytes_in_total`: object payload bytes received.
    pub bytes_in: Counter,
    /// `coffer_s3_bytes_out_total`: object payload bytes sent.
    pub bytes_out: Counter,
    /// `coffer_s3_kms_calls_total{op}`: KMS calls by operation (see `MeteredKms`).
    pub kms_calls: Family<OpLabels, Counter>,
    /// `coffer_s3_job_objects_total{outcome}`: object versions this gateway's job runner
    /// processed, by outcome.
    pub job_objects: Family<OutcomeLabels, Counter>,
    /// `coffer_s3_jobs{state}`: jobs of the cluster by state, as the runner last listed them.
    pub jobs: Family<JobStateLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("coffer_s3");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<OpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        let bytes_in = Counter::default();
        let bytes_out = Counter::default();
        registry.register(
            "requests",
            "S3 requests by operation and status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "S3 request latency",
            latency.clone(),
        );
        registry.register(
            "bytes_in",
            "Object payload bytes received",
            bytes_in.clone(),
        );
        registry.register("bytes_out", "Object payload bytes sent", bytes_out.clone());
        let kms_calls = Family::<OpLabels, Counter>::default();
        registry.register("kms_calls", "KMS calls by operation", kms_calls.clone());
        let job_objects = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "job_objects",
            "Object versions processed by background jobs on this gateway, by outcome",
            job_objects.clone(),
        );
        let jobs = Family::<JobStateLabels, Gauge>::default();
        registry.register("jobs", "Background jobs by state", jobs.clone());
        Metrics {
            registry,
            job_objects,
            jobs,
            requests,
            latency,
            bytes_in,
            bytes_out,
            kms_calls,
        }
    }
}

impl Metrics {
    /// Records one finished request.
    pub fn observe(&self, op: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                op: op.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&OpLabels { op: op.to_string() })
            .observe(seconds);
    }

    /// Counts a job checkpoint's objects.
    pub fn add_job_objects(&self, c: &coffer_meta::JobCounters) {
        for (outcome, n) in [
            ("rewrapped", c.rewrapped),
            ("already_done", c.already_done),
            ("skipped", c.skipped),
            ("failed", c.failed),
        ] {
            self.job_objects
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.into(),
                })
                .inc_by(n);
        }
    }

    /// Sets the job gauge from a listing of the jobs.
    pub fn set_job_states(&self, jobs: &[coffer_meta::JobRecord]) {
        use coffer_meta::JobState as S;
        for state in [
            S::Pending,
            S::Running,
            S::Paused,
            S::Completed,
            S::Cancelled,
            S::Failed,
        ] {
            let n = jobs.iter().filter(|j| j.state == state).count() as i64;
            self.jobs
                .get_or_create(&JobStateLabels {
                    state: state.as_str().into(),
                })
                .set(n);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
