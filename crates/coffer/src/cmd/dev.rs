//! `coffer dev`: every role in one process on one data directory.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::Engine;
use coffer_gateway::{AppState, GatewayConfig, StaticCredentials};
use coffer_kms::backend::KmsBackendConfig;
use coffer_kms::{CreateKeyRequest, Kms, KmsError};
use coffer_meta::{Command, MetaClient};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use zeroize::Zeroizing;

use super::common::{random, shutdown_signal, write_file_atomic};
use super::CmdError;
use crate::cli::DevArgs;

/// The alias of the customer managed key `coffer dev` creates on first start.
pub const DEFAULT_KEY_ALIAS: &str = "alias/coffer-default";
/// Where the ARN of the S3-managed (SSE-S3) key is kept in meta.
pub const SSE_S3_KEY_CONFIG: &str = "cluster/sse-s3-key-arn";
const ROOT_KEY_ENV: &str = "COFFER_KMS_ROOT_KEY";

#[derive(Serialize, Deserialize)]
struct StoredCredentials {
    access_key_id: String,
    secret_access_key: String,
}

/// What the ready file says.
#[derive(Serialize)]
struct Ready<'a> {
    s3: String,
    admin: String,
    region: &'a str,
    access_key_id: &'a str,
    default_kms_key_arn: &'a str,
    pid: u32,
}

pub async fn run(args: DevArgs) -> Result<(), CmdError> {
    std::fs::create_dir_all(&args.data_dir)?;
    let data = args.data_dir.canonicalize()?;
    let (creds, generated) = credentials(&data)?;

    let root_key_env = std::env::var_os(ROOT_KEY_ENV).map(|_| ROOT_KEY_ENV.to_string());
    let root_key_file = if root_key_env.is_some() {
        None
    } else {
        Some(dev_root_key(&data)?)
    };
    let kms = coffer_kms::backend::open(&KmsBackendConfig::Local {
        path: data.join("kms"),
        root_key_file,
        root_key_env,
        region: args.region.clone(),
        account_id: args.account_id.clone(),
    })
    .await?;
    let meta: Arc<dyn MetaClient> =
        Arc::new(coffer_meta::local::LocalMeta::open(&data.join("meta"))?);
    let blobs = Arc::new(coffer_blob::local::LocalBlobStore::open(
        data.join("blobs"),
    )?);

    let sse_s3_key_arn = sse_s3_key(kms.as_ref(), meta.as_ref()).await?;
    let default_key_arn = default_key(kms.as_ref()).await?;

    let state = Arc::new(AppState {
        meta,
        blobs,
        kms,
        creds: Arc::new(StaticCredentials {
            access_key_id: creds.access_key_id.clone(),
            secret_access_key: Zeroizing::new(creds.secret_access_key.clone()),
        }),
        config: GatewayConfig {
            region: args.region.clone(),
            account_id: args.account_id.clone(),
            domains: args.domains.clone(),
            chunk_size: args.chunk_size,
            max_put_size: 5 * 1024 * 1024 * 1024,
            sse_s3_key_arn,
        },
        metrics: Default::default(),
        bucket_keys: Default::default(),
    });

    let s3_listener = TcpListener::bind(args.listen).await?;
    let admin_listener = TcpListener::bind(args.admin_listen).await?;
    let s3_addr = s3_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;
    let ready = Arc::new(AtomicBool::new(false));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let s3 = tokio::spawn(coffer_gateway::serve(
        s3_listener,
        state.clone(),
        wait_stop(stop_rx.clone()),
    ));
    let admin = tokio::spawn(coffer_gateway::serve_admin(
        admin_listener,
        state.clone(),
        ready.clone(),
        wait_stop(stop_rx),
    ));

    println!("Coffer dev is running.");
    println!("  S3 endpoint:       http://{s3_addr}");
    println!("  Admin endpoint:    http://{admin_addr}");
    println!("  Region:            {}", args.region);
    println!("  Access key ID:     {}", creds.access_key_id);
    if generated {
        println!(
            "  Secret access key: {}   (generated; kept in {})",
            creds.secret_access_key,
            data.join("credentials.json").display()
        );
    } else {
        println!(
            "  Secret access key: (from the environment or {})",
            data.join("credentials.json").display()
        );
    }
    println!("  Default KMS key:   {default_key_arn} ({DEFAULT_KEY_ALIAS})");
    println!("  Data directory:    {}", data.display());

    if let Some(path) = &args.ready_file {
        let r = Ready {
            s3: s3_addr.to_string(),
            admin: admin_addr.to_string(),
            region: &args.region,
            access_key_id: &creds.access_key_id,
            default_kms_key_arn: &default_key_arn,
            pid: std::process::id(),
        };
        write_file_atomic(path, serde_json::to_string_pretty(&r)?.as_bytes(), 0o644)?;
    }
    ready.store(true, Ordering::Release);

    shutdown_signal().await;
    ready.store(false, Ordering::Release);
    let _ = stop_tx.send(true);
    s3.await??;
    admin.await??;
    Ok(())
}

/// Credentials from `COFFER_ACCESS_KEY_ID` / `COFFER_SECRET_ACCESS_KEY`, else the pair kept in
/// the data directory, else a new pair (returned with `true`).
fn credentials(data: &Path) -> Result<(StoredCredentials, bool), CmdError> {
    if let (Ok(id), Ok(secret)) = (
        std::env::var("COFFER_ACCESS_KEY_ID"),
        std::env::var("COFFER_SECRET_ACCESS_KEY"),
    ) {
        return Ok((
            StoredCredentials {
                access_key_id: id,
                secret_access_key: secret,
            },
            false,
        ));
    }
    let path = data.join("credentials.json");
    if path.exists() {
        return Ok((serde_json::from_slice(&std::fs::read(&path)?)?, false));
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
        &path,
        serde_json::to_string_pretty(&creds)?.as_bytes(),
        0o600,
    )?;
    Ok((creds, true))
}

/// The dev keystore's root key file, created (mode 0600) on first start.
fn dev_root_key(data: &Path) -> Result<std::path::PathBuf, CmdError> {
    let path = data.join("kms-root-key");
    if !path.exists() {
        let key = Zeroizing::new(random::<32>()?);
        let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(key.as_ref()));
        write_file_atomic(&path, b64.as_bytes(), 0o600)?;
    }
    Ok(path)
}

/// The S3-managed key (SSE-S3), created on first start and remembered in meta.
async fn sse_s3_key(kms: &dyn Kms, meta: &dyn MetaClient) -> Result<String, CmdError> {
    if let Some(arn) = meta.get_config(SSE_S3_KEY_CONFIG).await? {
        return Ok(String::from_utf8(arn)?);
    }
    let key = kms
        .create_key(CreateKeyRequest {
            description: "Coffer S3-managed key (SSE-S3)".into(),
            aws_managed: true,
            tags: Default::default(),
        })
        .await?;
    meta.apply(Command::PutConfig {
        name: SSE_S3_KEY_CONFIG.into(),
        value: key.arn.clone().into_bytes(),
    })
    .await?;
    Ok(key.arn)
}

/// The customer managed key `alias/coffer-default`, created on first start.
async fn default_key(kms: &dyn Kms) -> Result<String, CmdError> {
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
            kms.create_alias(DEFAULT_KEY_ALIAS, &k.key_id).await?;
            Ok(k.arn)
        }
        Err(e) => Err(e.into()),
    }
}
