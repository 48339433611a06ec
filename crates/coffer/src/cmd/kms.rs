//! `coffer kms`: the key-management role alone. Opens one backend (the local keystore in the
//! data directory, or any backend from `--backend-config`) and serves it twice: the `Kms` trait
//! over gRPC for gateways (`coffer dev --kms-endpoint`), and the AWS KMS JSON 1.1 API for
//! `aws kms`, boto3 and `coffer admin`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer_gateway::kms_api::{self, KmsApiState};
use coffer_gateway::metered_kms::MeteredKms;
use coffer_gateway::metrics::OpLabels;
use coffer_kms::backend::KmsBackendConfig;
use coffer_kms::{Kms, KmsError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use super::common::{
    credentials, default_key, join_server, local_kms_config, print_credentials, shutdown_signal,
    spawn_maintenance, stopped, write_file_atomic, DEFAULT_KEY_ALIAS,
};
use super::health::{self, AdminServer, MetricsPage, Probe};
use super::CmdError;
use crate::cli::KmsArgs;

/// How long the servers may drain connections after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// A backend check younger than this is reused: health checks and scrapes cost the backend
/// at most one call per this long.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long the backend may take to answer a check.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// What the ready file says.
#[derive(Serialize)]
struct Ready<'a> {
    /// The gRPC address (`coffer dev --kms-endpoint http://<grpc>`).
    grpc: String,
    /// The AWS KMS JSON API address.
    http: String,
    region: &'a str,
    access_key_id: &'a str,
    default_kms_key_arn: &'a str,
    /// The admin listener (`--admin-listen`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    admin: Option<String>,
    pid: u32,
}

/// One check of the backend: when, and how long it took to answer or why it failed.
#[derive(Clone)]
struct Check {
    at: Instant,
    outcome: Result<Duration, String>,
}

/// What `coffer kms`'s admin listener reports.
///
/// Ready: the backend answered a DescribeKey of the default key's alias within
/// [`CHECK_TIMEOUT`], at most [`CHECK_EVERY`] ago. A listener that serves is not enough: the
/// gRPC and JSON APIs accept calls even when a remote backend (AWS KMS, Vault) is unreachable
/// or refuses the credentials, and then every gateway write fails. DescribeKey reads key
/// metadata only: no cryptographic operation, nothing secret in the answer, and a real round
/// trip to a remote backend. A "not found" answer (the alias deleted since) counts as an
/// answer.
struct KmsHealth {
    /// The backend itself, so that checks are not counted as calls.
    backend: Arc<dyn Kms>,
    /// Calls to the backend through the gRPC and JSON APIs and maintenance, by operation.
    calls: Family<OpLabels, Counter>,
    last: Mutex<Option<Check>>,
}

impl KmsHealth {
    /// The latest check, made now if the last one is older than [`CHECK_EVERY`]. Concurrent
    /// callers wait for one check.
    async fn check(&self) -> Check {
        let mut last = self.last.lock().await;
        if let Some(c) = last.as_ref().filter(|c| c.at.elapsed() < CHECK_EVERY) {
            return c.clone();
        }
        let started = Instant::now();
        let answer =
            tokio::time::timeout(CHECK_TIMEOUT, self.backend.describe_key(DEFAULT_KEY_ALIAS)).await;
        let outcome = match answer {
            Ok(Ok(_)) | Ok(Err(KmsError::NotFound(_))) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(format!("the KMS backend failed DescribeKey: {e}")),
            Err(_) => Err(format!(
                "the KMS backend did not answer DescribeKey within {CHECK_TIMEOUT:?}"
            )),
        };
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, "KMS backend check failed");
        }
        let check = Check {
            at: started,
            outcome,
        };
        *last = Some(check.clone());
        check
    }
}

impl Probe for KmsHealth {
    async fn ready(&self) -> Result<(), String> {
        self.check().await.outcome.map(drop)
    }

    async fn metrics(&self) -> String {
        let check = self.check().await;
        let mut page = MetricsPage::new("coffer_kms");
        page.metric(
            "calls",
            "KMS calls served (gRPC, JSON API, maintenance) by operation",
            self.calls.clone(),
        );
        page.gauge(
            "backend_up",
            "1 if the backend answered the latest check",
            i64::from(check.outcome.is_ok()),
        );
        if let Ok(took) = check.outcome {
            page.gauge_f64(
                "backend_check_seconds",
                "How long the backend took to answer the latest check",
                took.as_secs_f64(),
            );
        }
        page.gauge(
            "backend_secure",
            "1 if the backend is fit for production",
            i64::from(self.backend.is_secure()),
        );
        page.render()
    }
}

/// Runs `coffer kms` until SIGINT/SIGTERM.
pub async fn run(args: KmsArgs) -> Result<(), CmdError> {
    std::fs::create_dir_all(&args.data_dir)?;
    let data = args.data_dir.canonicalize()?;
    let (creds, generated) = credentials(&data)?;

    let cfg = match &args.backend_config {
        Some(path) => backend_config(path)?,
        None => local_kms_config(&data, &args.region, &args.account_id)?,
    };
    let backend = coffer_kms::backend::open(&cfg).await?;
    let calls = Family::<OpLabels, Counter>::default();
    let kms: Arc<dyn Kms> = Arc::new(MeteredKms::new(backend.clone(), calls.clone()));
    if !kms.is_secure() {
        tracing::warn!("this KMS backend is not fit for production");
    }
    let default_key_arn = default_key(kms.as_ref()).await?;

    let grpc_listener = TcpListener::bind(args.grpc_listen).await?;
    let http_listener = TcpListener::bind(args.listen).await?;
    let admin_listener = health::bind(args.admin_listen).await?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let grpc = tokio::spawn(coffer_kms::grpc::serve(
        kms.clone(),
        grpc_listener,
        stopped(stop_rx.clone()),
    ));
    let http = tokio::spawn(kms_api::serve(
        http_listener,
        KmsApiState {
            kms: kms.clone(),
            creds: Arc::new(creds.provider()),
            region: args.region.clone(),
        },
        stopped(stop_rx.clone()),
    ));
    let admin = AdminServer::spawn(
        admin_listener,
        KmsHealth {
            backend,
            calls,
            last: Mutex::new(None),
        },
    )?;
    let maintenance = spawn_maintenance(
        kms,
        Duration::from_secs(args.maintenance_interval_secs),
        stop_rx,
    );

    println!("Coffer KMS is running.");
    println!("  gRPC endpoint:     http://{grpc_addr}");
    println!("  KMS API endpoint:  http://{http_addr}");
    println!("  Region:            {}", args.region);
    print_credentials(&creds, generated, &data);
    println!("  Default KMS key:   {default_key_arn} ({DEFAULT_KEY_ALIAS})");
    match &args.backend_config {
        Some(p) => println!("  Backend:           from {}", p.display()),
        None => println!("  Backend:           local keystore in the data directory"),
    }
    println!("  Data directory:    {}", data.display());
    if let Some(a) = &admin {
        println!("  Admin endpoint:    http://{}", a.addr);
    }

    if let Some(path) = &args.ready_file {
        let r = Ready {
            grpc: grpc_addr.to_string(),
            http: http_addr.to_string(),
            region: &args.region,
            access_key_id: &creds.access_key_id,
            default_kms_key_arn: &default_key_arn,
            admin: AdminServer::addr_of(&admin),
            pid: std::process::id(),
        };
        write_file_atomic(path, serde_json::to_string_pretty(&r)?.as_bytes(), 0o644)?;
    }

    shutdown_signal().await;
    if let Some(a) = admin {
        a.stop(SHUTDOWN_GRACE).await?;
    }
    let _ = stop_tx.send(true);
    join_server("gRPC server", grpc, SHUTDOWN_GRACE).await?;
    join_server("KMS API server", http, SHUTDOWN_GRACE).await?;
    let _ = maintenance.await;
    Ok(())
}

/// Reads a JSON [`KmsBackendConfig`] (`{"type": "local" | "aws-kms" | "transit", ...}`).
fn backend_config(path: &Path) -> Result<KmsBackendConfig, CmdError> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("invalid KMS backend config {}: {e}", path.display()).into())
}
