//! KMS backends, chosen at start from a tagged config by [`open`].

pub mod local;

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
    }
}
