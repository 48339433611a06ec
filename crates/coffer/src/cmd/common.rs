//! Pieces shared by the roles: shutdown signals, ready files, generated secrets, the access key
//! pair, the local keystore's configuration, the default KMS key and KMS housekeeping.

use std::future::Future;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use coffer_kms::backend::KmsBackendConfig;
use coffer_kms::{CreateKeyRequest, Kms, KmsError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use zeroize::Zeroizing;

use super::CmdError;

/// The alias of the customer managed key created on first start (`coffer dev`, `coffer kms`).
pub const DEFAULT_KEY_ALIAS: &str = "alias/coffer-default";
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
    match kms.describe_key(DEFAULT_KEY_ALIAS).await {
        Ok(k) => Ok(k.arn),
        Err(KmsError::NotFound(_)) => {
            let k = kms
                .create_key(CreateKeyRequest {
                    description: "Coffer default customer managed key".into(),
                    aws_managed: false,
                    tags: Default::default(),
                })
                .await?;
            match kms.create_alias(DEFAULT_KEY_ALIAS, &k.key_id).await {
                Ok(()) => Ok(k.arn),
                Err(KmsError::AlreadyExists(_)) => {
                    if let Err(e) = kms.schedule_key_deletion(&k.key_id, Some(7)).await {
                        tracing::warn!(key = %k.arn, error = %e, "could not retire a spare default key");
                    }
                    Ok(kms.describe_key(DEFAULT_KEY_ALIAS).await?.arn)
                }
                Err(e) => Err(e.into()),
            }
        }
        Err(e) => Err(e.into()),
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
