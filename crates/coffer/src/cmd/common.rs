//! Pieces shared by the roles: shutdown signals, ready files, generated secrets, the access key
//! pair, the local keystore's configuration, the default KMS key and KMS housekeeping, and the
//! startup of a gateway (`coffer dev`, `coffer gateway`): waiting for the roles it needs, the
//! SSE-S3 key, its S3 and admin servers.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use coffer_gateway::AppState;
use coffer_kms::backend::KmsBackendConfig;
use coffer_kms::grpc::{ClientConfig, GrpcKmsClient};
use coffer_kms::{CreateKeyRequest, Kms, KmsError};
use coffer_meta::{Command, MetaClient, MetaError};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use super::health::{self, Probe};
use super::CmdError;

/// The alias of the customer managed key created on first start (`coffer dev`, `coffer kms`).
pub const DEFAULT_KEY_ALIAS: &str = "alias/coffer-default";
/// Where the ARN of the S3-managed (SSE-S3) key is kept in meta.
pub const SSE_S3_KEY_CONFIG: &str = "cluster/sse-s3-key-arn";
/// The alias that settles which key becomes the SSE-S3 key when gateways start at once.
pub const SSE_S3_KEY_ALIAS: &str = "alias/coffer-sse-s3";
/// The environment variable that may hold the local keystore's root key (base64 of 32 bytes).
pub const ROOT_KEY_ENV: &str = "COFFER_KMS_ROOT_KEY";
/// Name of the generated access key pair in a data directory.
pub const CREDENTIALS_FILE: &str = "credentials.json";
/// Name of the generated root key file in a data directory.
pub const ROOT_KEY_FILE: &str = "kms-root-key";
/// How often the local keystore's housekeeping runs (deletions due, automatic rotations).
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(300);

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

/// Resolves once `true` is sent on the stop channel (or its sender is gone).
pub fn stopped(mut rx: watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Writes `contents` to `path` atomically (temp file, fsync, rename) with mode `mode`.
pub fn write_file_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CmdError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // A bare file name has the parent "": the current directory.
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Random bytes from the OS generator.
pub fn random<const N: usize>() -> Result<[u8; N], CmdError> {
    coffer_crypto::random_bytes::<N>().map_err(|e| format!("random: {e}").into())
}

/// An access key pair, as kept in `credentials.json`.
#[derive(Serialize, Deserialize)]
pub struct StoredCredentials {
    /// Access key ID.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl StoredCredentials {
    /// The pair as the gateway's credential provider.
    pub fn provider(&self) -> coffer_gateway::StaticCredentials {
        coffer_gateway::StaticCredentials {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: Zeroizing::new(self.secret_access_key.clone()),
        }
    }
}

/// The pair in `COFFER_ACCESS_KEY_ID` / `COFFER_SECRET_ACCESS_KEY`, when both are set.
pub fn env_credentials() -> Option<StoredCredentials> {
    match (
        std::env::var("COFFER_ACCESS_KEY_ID"),
        std::env::var("COFFER_SECRET_ACCESS_KEY"),
    ) {
        (Ok(access_key_id), Ok(secret_access_key)) => Some(StoredCredentials {
            access_key_id,
            secret_access_key,
        }),
        _ => None,
    }
}

/// The pair kept in `data`'s `credentials.json`, if there is one.
pub fn stored_credentials(data: &Path) -> Result<Option<StoredCredentials>, CmdError> {
    let path = data.join(CREDENTIALS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display()).into()),
    }
}

/// Credentials from `COFFER_ACCESS_KEY_ID` / `COFFER_SECRET_ACCESS_KEY`, else the pair kept in
/// the data directory, else a new pair written there (returned with `true`).
pub fn credentials(data: &Path) -> Result<(StoredCredentials, bool), CmdError> {
    if let Some(c) = env_credentials() {
        return Ok((c, false));
    }
    if let Some(c) = stored_credentials(data)? {
        return Ok((c, false));
    }
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let id_raw: [u8; 16] = random()?;
    let access_key_id = format!(
        "CK{}",
        id_raw
            .iter()
            .map(|b| ALNUM[(*b as usize) % 32] as char)
            .collect::<String>()
    );
    let secret_raw: [u8; 30] = random()?;
    let secret_access_key = base64::engine::general_purpose::STANDARD.encode(secret_raw);
    let creds = StoredCredentials {
        access_key_id,
        secret_access_key,
    };
    write_file_atomic(
        &data.join(CREDENTIALS_FILE),
        serde_json::to_string_pretty(&creds)?.as_bytes(),
        0o600,
    )?;
    Ok((creds, true))
}

/// Prints the access key lines of a startup banner. The secret is printed only when it was just
/// generated (it is then nowhere else but in `credentials.json`).
pub fn print_credentials(creds: &StoredCredentials, generated: bool, data: &Path) {
    println!("  Access key ID:     {}", creds.access_key_id);
    let file = data.join(CREDENTIALS_FILE);
    if generated {
        println!(
            "  Secret access key: {}   (generated; kept in {})",
            creds.secret_access_key,
            file.display()
        );
    } else {
        println!(
            "  Secret access key: (from the environment or {})",
            file.display()
        );
    }
}

/// The local keystore in `data/kms`: its root key comes from `COFFER_KMS_ROOT_KEY` when set,
/// else from `data/kms-root-key`, generated (mode 0600) on first start.
pub fn local_kms_config(
    data: &Path,
    region: &str,
    account_id: &str,
) -> Result<KmsBackendConfig, CmdError> {
    let root_key_env = std::env::var_os(ROOT_KEY_ENV).map(|_| ROOT_KEY_ENV.to_string());
    let root_key_file = if root_key_env.is_some() {
        None
    } else {
        Some(generated_root_key(data)?)
    };
    Ok(KmsBackendConfig::Local {
        path: data.join("kms"),
        root_key_file,
        root_key_env,
        region: region.to_string(),
        account_id: account_id.to_string(),
    })
}

/// The keystore's root key file in `data`, created (mode 0600) on first start.
fn generated_root_key(data: &Path) -> Result<PathBuf, CmdError> {
    let path = data.join(ROOT_KEY_FILE);
    if !path.exists() {
        let key = Zeroizing::new(random::<32>()?);
        let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(key.as_ref()));
        write_file_atomic(&path, b64.as_bytes(), 0o600)?;
    }
    Ok(path)
}

/// The customer managed key `alias/coffer-default`, created on first start. Two processes
/// creating it at once (a gateway and its KMS) agree on the first alias; the spare key is
/// scheduled for deletion.
pub async fn default_key(kms: &dyn Kms) -> Result<String, CmdError> {
    key_behind_alias(
        kms,
        DEFAULT_KEY_ALIAS,
        CreateKeyRequest {
            description: "Coffer default customer managed key".into(),
            aws_managed: false,
            tags: Default::default(),
        },
    )
    .await
}

/// The ARN of the key `alias` names, creating the key and the alias when the alias does not
/// exist. Creating an alias is atomic in the KMS, so processes racing here agree on the first
/// alias created; each loser schedules its spare key for deletion (an AWS managed spare cannot
/// be deleted: it stays, unused).
async fn key_behind_alias(
    kms: &dyn Kms,
    alias: &str,
    request: CreateKeyRequest,
) -> Result<String, CmdError> {
    match kms.describe_key(alias).await {
        Ok(k) => Ok(k.arn),
        Err(KmsError::NotFound(_)) => {
            let k = kms.create_key(request).await?;
            match kms.create_alias(alias, &k.key_id).await {
                Ok(()) => Ok(k.arn),
                Err(KmsError::AlreadyExists(_)) => {
                    match kms.schedule_key_deletion(&k.key_id, Some(7)).await {
                        Ok(_) => {
                            tracing::info!(key = %k.arn, alias, "another process created the key first; the spare is scheduled for deletion")
                        }
                        Err(e) => {
                            tracing::warn!(key = %k.arn, alias, error = %e, "another process created the key first; the spare stays, unused")
                        }
                    }
                    Ok(kms.describe_key(alias).await?.arn)
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// The S3-managed key (SSE-S3), created on first start and remembered in meta
/// ([`SSE_S3_KEY_CONFIG`]), where every gateway reads it.
///
/// Gateways starting at once on a new cluster must not each create a key and overwrite each
/// other's config (meta has no conditional put): the key is first settled through the KMS alias
/// [`SSE_S3_KEY_ALIAS`] (one alias creation wins), so every racer writes the same ARN.
pub async fn sse_s3_key(kms: &dyn Kms, meta: &dyn MetaClient) -> Result<String, CmdError> {
    if let Some(arn) = meta.get_config(SSE_S3_KEY_CONFIG).await? {
        return Ok(String::from_utf8(arn)?);
    }
    let arn = key_behind_alias(
        kms,
        SSE_S3_KEY_ALIAS,
        CreateKeyRequest {
            description: "Coffer S3-managed key (SSE-S3)".into(),
            aws_managed: true,
            tags: Default::default(),
        },
    )
    .await?;
    meta.apply(Command::PutConfig {
        name: SSE_S3_KEY_CONFIG.into(),
        value: arn.clone().into_bytes(),
    })
    .await?;
    // Whatever meta holds now is what every gateway uses.
    match meta.get_config(SSE_S3_KEY_CONFIG).await? {
        Some(stored) => Ok(String::from_utf8(stored)?),
        None => Err("the SSE-S3 key ARN just written to meta is not there".into()),
    }
}

/// The client of a remote `coffer kms` at `endpoint` (gRPC); connects on first use.
pub fn grpc_kms_client(endpoint: &str, timeout_ms: u64) -> Result<Arc<dyn Kms>, CmdError> {
    Ok(Arc::new(GrpcKmsClient::connect_lazy(ClientConfig {
        endpoint: endpoint.to_owned(),
        timeout: Duration::from_millis(timeout_ms),
        ..Default::default()
    })?))
}

/// Runs a startup step against remote roles, retrying while one of them is unreachable (a
/// KMS or metadata group started at the same time, a group still electing its leader), for at
/// most `patience`. What was unreachable is logged (at most every few seconds).
pub async fn while_unavailable<T, F, Fut>(
    step_name: &str,
    patience: Duration,
    step: F,
) -> Result<T, CmdError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, CmdError>>,
{
    /// After the first failure, one log line per this long at most.
    const LOG_EVERY: Duration = Duration::from_secs(5);
    let started = Instant::now();
    let mut last_log: Option<Instant> = None;
    loop {
        let e = match step().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let role = match (e.downcast_ref::<KmsError>(), e.downcast_ref::<MetaError>()) {
            (Some(KmsError::Unavailable(_)), _) => "the KMS",
            (_, Some(MetaError::Unavailable(_))) => "the metadata group",
            _ => return Err(e),
        };
        if started.elapsed() >= patience {
            return Err(format!(
                "{step_name}: {role} was still not reachable after {patience:?}: {e}"
            )
            .into());
        }
        if last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            last_log = Some(Instant::now());
            tracing::warn!(
                step = step_name,
                waited_s = started.elapsed().as_secs(),
                patience_s = patience.as_secs(),
                error = %e,
                "{role} is not reachable yet; retrying"
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Runs `kms.run_maintenance()` every `every` until the stop channel says so. Failures are
/// logged and retried at the next tick.
pub fn spawn_maintenance(
    kms: Arc<dyn Kms>,
    every: Duration,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = stopped(stop);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tick.tick() => {}
            }
            match kms.run_maintenance().await {
                Ok(r) if r.keys_deleted > 0 || r.keys_rotated > 0 => tracing::info!(
                    keys_deleted = r.keys_deleted,
                    keys_rotated = r.keys_rotated,
                    "KMS maintenance"
                ),
                Ok(_) => tracing::debug!("KMS maintenance: nothing due"),
                Err(e) => tracing::warn!(error = %e, "KMS maintenance failed"),
            }
        }
    })
}

/// Waits for a server task after the stop signal, at most `grace`: a server still draining
/// connections then is abandoned with a warning rather than holding the process.
pub async fn join_server<E>(
    name: &str,
    task: tokio::task::JoinHandle<Result<(), E>>,
    grace: Duration,
) -> Result<(), CmdError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(grace, task).await {
        Ok(joined) => Ok(joined?.map_err(|e| format!("{name}: {e}"))?),
        Err(_) => {
            tracing::warn!(server = name, "still draining connections; exiting anyway");
            Ok(())
        }
    }
}

/// What a gateway's admin listener reports: ready once it serves, its S3 request metrics.
struct GatewayProbe {
    state: Arc<AppState>,
    ready: Arc<AtomicBool>,
}

impl Probe for GatewayProbe {
    async fn ready(&self) -> Result<(), String> {
        if self.ready.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err("the gateway is starting or stopping".into())
        }
    }

    async fn metrics(&self) -> String {
        self.state.metrics.render()
    }
}

/// The S3 and admin servers of a gateway (`coffer dev`, `coffer gateway`).
pub struct GatewayServers {
    /// The bound S3 address.
    pub s3_addr: SocketAddr,
    /// The bound admin address.
    pub admin_addr: SocketAddr,
    ready: Arc<AtomicBool>,
    stop_tx: watch::Sender<bool>,
    s3: JoinHandle<std::io::Result<()>>,
    admin: JoinHandle<std::io::Result<()>>,
    jobs: JoinHandle<()>,
}

impl GatewayServers {
    /// Binds both listeners and serves `state` on them; `/health/ready` answers 503 until
    /// [`GatewayServers::set_ready`].
    pub async fn start(
        state: Arc<AppState>,
        listen: SocketAddr,
        admin_listen: SocketAddr,
    ) -> Result<Self, CmdError> {
        let s3_listener = TcpListener::bind(listen).await?;
        let admin_listener = TcpListener::bind(admin_listen).await?;
        let s3_addr = s3_listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;
        let ready = Arc::new(AtomicBool::new(false));
        let (stop_tx, stop_rx) = watch::channel(false);
        // The background job runner (re-encryption jobs), tuned by COFFER_JOBS_* variables.
        let jobs_config = coffer_gateway::jobs::JobsConfig::from_env()?;
        let jobs = tokio::spawn(coffer_gateway::jobs::run(
            state.clone(),
            jobs_config,
            stop_rx.clone(),
        ));
        let s3 = tokio::spawn(coffer_gateway::serve(
            s3_listener,
            state.clone(),
            stopped(stop_rx.clone()),
        ));
        let admin = tokio::spawn(health::serve_with(
            admin_listener,
            Arc::new(GatewayProbe {
                state: state.clone(),
                ready: ready.clone(),
            }),
            coffer_gateway::jobs_api::router(state),
            stopped(stop_rx),
        ));
        Ok(GatewayServers {
            s3_addr,
            admin_addr,
            ready,
            stop_tx,
            s3,
            admin,
            jobs,
        })
    }

    /// Says "ready" on `/health/ready`.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// The stop channel, for tasks that should end with the servers.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop_tx.subscribe()
    }

    /// Stops being ready, then stops both servers, letting connections drain for `grace`.
    pub async fn stop(self, grace: Duration) -> Result<(), CmdError> {
        self.ready.store(false, Ordering::Release);
        let _ = self.stop_tx.send(true);
        // The runner releases its job at its next checkpoint; a page in flight may take a while.
        let mut jobs = self.jobs;
        if tokio::time::timeout(grace, &mut jobs).await.is_err() {
            jobs.abort();
        }
        join_server("S3 server", self.s3, grace).await?;
        join_server("admin server", self.admin, grace).await
    }
}
