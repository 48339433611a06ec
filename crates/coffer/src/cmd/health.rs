//! The admin HTTP listener of the roles: `/health/live` answers 200 while the process runs,
//! `/health/ready` 200 or 503 with the reason its role gives, and `/metrics` the role's
//! Prometheus text. `coffer gateway` and `coffer dev` always run one (`--admin-listen`);
//! `coffer meta`, `coffer kms` and `coffer blob` when given `--admin-listen`. What "ready" means
//! and what is counted is each role's [`Probe`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Metric, Registry};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::common::{join_server, stopped};
use super::CmdError;

/// What a role's admin listener asks of it.
pub trait Probe: Send + Sync + 'static {
    /// `Ok` when the role is ready to serve, else why not (one short line).
    fn ready(&self) -> impl Future<Output = Result<(), String>> + Send;
    /// The Prometheus text exposition of the role's metrics.
    fn metrics(&self) -> impl Future<Output = String> + Send;
}

/// Serves `/health/live`, `/health/ready` and `/metrics` of `probe` on `listener` until
/// `shutdown` resolves.
pub async fn serve<P: Probe>(
    listener: TcpListener,
    probe: Arc<P>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, probe, Router::new(), shutdown).await
}

/// [`serve`], plus the routes of `extra` (the gateway's job API).
pub async fn serve_with<P: Probe>(
    listener: TcpListener,
    probe: Arc<P>,
    extra: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let ready = probe.clone();
    let app = Router::new()
        .route("/health/live", get(|| async { "OK\n" }))
        .route(
            "/health/ready",
            get(move || {
                let probe = ready.clone();
                async move {
                    match probe.ready().await {
                        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
                        Err(why) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {why}\n"),
                        ),
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let probe = probe.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        probe.metrics().await,
                    )
                }
            }),
        )
        .merge(extra);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `--admin-listen` when it is given.
pub async fn bind(listen: Option<SocketAddr>) -> Result<Option<TcpListener>, CmdError> {
    match listen {
        Some(addr) => Ok(Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| format!("--admin-listen {addr}: {e}"))?,
        )),
        None => Ok(None),
    }
}

/// An admin listener serving in the background.
pub struct AdminServer {
    /// The bound address.
    pub addr: SocketAddr,
    stop_tx: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl AdminServer {
    /// Serves `probe` on `listener` (see [`bind`]); `None` without a listener.
    pub fn spawn<P: Probe>(
        listener: Option<TcpListener>,
        probe: P,
    ) -> Result<Option<Self>, CmdError> {
        let Some(listener) = listener else {
            return Ok(None);
        };
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, Arc::new(probe), stopped(stop_rx)));
        Ok(Some(AdminServer {
            addr,
            stop_tx,
            task,
        }))
    }

    /// The bound address for a ready file: `None` when there is no admin listener.
    pub fn addr_of(server: &Option<Self>) -> Option<String> {
        server.as_ref().map(|s| s.addr.to_string())
    }

    /// Stops the listener, letting requests in progress finish for at most `grace`.
    pub async fn stop(self, grace: Duration) -> Result<(), CmdError> {
        let _ = self.stop_tx.send(true);
        join_server("admin server", self.task, grace).await
    }
}

/// A Prometheus page of values read when it is scraped.
pub struct MetricsPage(Registry);

impl MetricsPage {
    /// An empty page whose metric names start with `<prefix>_`.
    pub fn new(prefix: &str) -> Self {
        MetricsPage(Registry::with_prefix(prefix))
    }

    /// A gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: i64) {
        self.0.register(name, help, ConstGauge::new(value));
    }

    /// A gauge of an unsigned value (an index, a count), capped at `i64::MAX`.
    pub fn gauge_u64(&mut self, name: &str, help: &str, value: u64) {
        self.gauge(name, help, i64::try_from(value).unwrap_or(i64::MAX));
    }

    /// A gauge of a fractional value (seconds).
    pub fn gauge_f64(&mut self, name: &str, help: &str, value: f64) {
        self.0.register(name, help, ConstGauge::new(value));
    }

    /// A counter; its exposed name ends in `_total`.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.0.register(name, help, ConstCounter::new(value));
    }

    /// Any other metric (a family of counters by label, ...).
    pub fn metric(&mut self, name: &str, help: &str, metric: impl Metric) {
        self.0.register(name, help, metric);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_renders_gauges_and_counters() {
        let mut page = MetricsPage::new("coffer_test");
        page.gauge("up", "Whether it is up", 1);
        page.gauge_u64("index", "An index", u64::MAX);
        page.gauge_f64("age_seconds", "An age", 1.5);
        page.counter("calls", "Calls", 7);
        let text = page.render();
        for line in [
            "# TYPE coffer_test_up gauge",
            "coffer_test_up 1",
            &format!("coffer_test_index {}", i64::MAX),
            "coffer_test_age_seconds 1.5",
            "# TYPE coffer_test_calls counter",
            "coffer_test_calls_total 7",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
        }
    }
}
