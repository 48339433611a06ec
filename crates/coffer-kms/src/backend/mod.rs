//! KMS backends, chosen at start from a tagged config by [`open`].

#[cfg(feature = "aws-kms")]
pub mod aws;
pub mod local;
pub mod transit;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Kms, KmsError};

/// Which KMS backend to run, as written in the config file (`type = "local"` ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum KmsBackendConfig {
    /// Coffer's own keystore in RocksDB.
    Local {
        /// Directory of the keystore DB.
        path: PathBuf,
        /// File holding the root key (base64 of 32 bytes; mode 0600 or stricter).
        root_key_file: Option<PathBuf>,
        /// Environment variable holding the root key (base64 of 32 bytes).
        root_key_env: Option<String>,
        /// Region used in key ARNs.
        region: String,
        /// 12-digit account ID used in key ARNs.
        account_id: String,
    },
    /// Any service speaking the AWS KMS API (AWS KMS itself, or an emulator such as moto),
    /// through aws-sdk-kms (cargo feature `aws-kms`, on by default).
    AwsKms(AwsKmsConfig),
    /// A HashiCorp Vault / OpenBao Transit secrets engine over HTTP (keys `derived`, Coffer's
    /// key records in a KV v2 mount of the same server).
    Transit(transit::TransitConfig),
}

/// Settings of the `aws-kms` backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsKmsConfig {
    /// Endpoint URL (`http://127.0.0.1:5000`); AWS's own endpoint for `region` when absent.
    pub endpoint: Option<String>,
    /// AWS region, e.g. `eu-west-1`.
    pub region: String,
    /// Access key ID; `AWS_ACCESS_KEY_ID` when absent.
    pub access_key_id: Option<String>,
    /// Secret access key; `AWS_SECRET_ACCESS_KEY` when absent.
    pub secret_access_key: Option<crate::secrets::SecretString>,
    /// Session token of temporary credentials; `AWS_SESSION_TOKEN` when absent (and the keys
    /// come from the environment too).
    pub session_token: Option<crate::secrets::SecretString>,
    /// Timeout of one attempt of a call, in milliseconds (default 5000); also the connect
    /// timeout.
    pub attempt_timeout_ms: Option<u64>,
    /// Attempts per call, the first included (default 3). Throttling, 5xx answers, timeouts
    /// and connection failures are retried with a short backoff.
    pub max_attempts: Option<u32>,
}

/// Builds the configured backend.
pub async fn open(cfg: &KmsBackendConfig) -> Result<Arc<dyn Kms>, KmsError> {
    match cfg {
        KmsBackendConfig::Local {
            path,
            root_key_file,
            root_key_env,
            region,
            account_id,
        } => {
            let root =
                crate::secrets::load_root_key(root_key_file.as_deref(), root_key_env.as_deref())?;
            Ok(Arc::new(local::LocalKms::open(
                path, root, region, account_id,
            )?))
        }
        #[cfg(feature = "aws-kms")]
        KmsBackendConfig::AwsKms(c) => Ok(Arc::new(aws::AwsKms::connect(c)?)),
        #[cfg(not(feature = "aws-kms"))]
        KmsBackendConfig::AwsKms(_) => Err(KmsError::Validation(
            "this build has no aws-kms backend (cargo feature `aws-kms` of coffer-kms)".into(),
        )),
        KmsBackendConfig::Transit(c) => Ok(Arc::new(transit::TransitKms::open(c).await?)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use base64::Engine;

    use super::*;

    #[tokio::test]
    async fn local_from_tagged_config() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var(
            "COFFER_TEST_BACKEND_ROOT_KEY",
            base64::engine::general_purpose::STANDARD.encode([6u8; 32]),
        );
        let cfg: KmsBackendConfig = serde_json::from_value(serde_json::json!({
            "type": "local",
            "path": dir.path().join("kms"),
            "root_key_env": "COFFER_TEST_BACKEND_ROOT_KEY",
            "region": "ap-south-1",
            "account_id": "000011112222",
        }))
        .unwrap();
        let kms = open(&cfg).await.unwrap();
        let k = kms.create_key(Default::default()).await.unwrap();
        assert!(
            k.arn
                .starts_with("arn:aws:kms:ap-south-1:000011112222:key/"),
            "{}",
            k.arn
        );
        drop(kms);

        // The same keystore from a root key file; a group-readable file is refused.
        let key_file = dir.path().join("root.key");
        std::fs::write(
            &key_file,
            base64::engine::general_purpose::STANDARD.encode([6u8; 32]),
        )
        .unwrap();
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let from_file = KmsBackendConfig::Local {
            path: dir.path().join("kms"),
            root_key_file: Some(key_file.clone()),
            root_key_env: None,
            region: "ap-south-1".into(),
            account_id: "000011112222".into(),
        };
        let err = open(&from_file)
            .await
            .err()
            .expect("group-readable root key file");
        assert!(err.message().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let kms = open(&from_file).await.unwrap();
        assert_eq!(kms.describe_key(&k.key_id).await.unwrap().arn, k.arn);
    }
}
