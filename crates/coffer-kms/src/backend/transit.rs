//! `transit`: keys held by a HashiCorp Vault / OpenBao Transit secrets engine, over HTTP.
//!
//! # Mapping
//! - Each Coffer key (a UUID, ARN `arn:aws:kms:<region>:<account>:key/<uuid>`) is one transit
//!   key `<prefix>-<uuid>` of type `aes256-gcm96` with `derived: true`. The derivation `context`
//!   of every call is the canonical encoding of the encryption context
//!   ([`crate::context::canonical_context`], base64); the empty context encodes to four zero
//!   bytes, so it is never the empty string transit refuses for derived keys.
//! - Coffer's bookkeeping lives in a KV v2 mount of the same server, so every Coffer instance
//!   pointed at the server sees the same keys: one record per key at
//!   `<kv_mount>/data/<prefix>/keys/<uuid>` (transit key name, state, deletion date,
//!   description, creation date, key manager, rotation settings, tags) and one table of all
//!   aliases at `<kv_mount>/data/<prefix>/aliases`. Every read-modify-write uses KV's
//!   check-and-set, retried on a conflict, so concurrent instances do not lose updates.
//! - Key states are Coffer's: transit has no "disabled", so a key record's state is checked
//!   before every cryptographic call (`DisabledException`, `KMSInvalidStateException`).
//! - Key material versions are transit's key versions: `current_material_version` is
//!   `latest_version`, ListKeyRotations lists versions 2.. with transit's creation times (the
//!   record remembers which versions automatic rotation made). RotateKeyOnDemand and automatic
//!   rotation (in [`Kms::run_maintenance`]) call transit `rotate`.
//! - Ciphertext blobs use Coffer's v1 blob layout ([`crate::ciphertext`]): the header names the
//!   key and the transit key version, followed by transit's raw `nonce ‖ ciphertext ‖ tag`
//!   (the base64 of `vault:v<N>:…`). Decrypt therefore needs no key ID, and a KeyId naming
//!   another key is `IncorrectKeyException`. The header is not AAD here; it is bound anyway:
//!   another key ID or version selects other key material, which fails authentication.
//! - ReEncrypt within one key and context is transit `rewrap`; otherwise decrypt + encrypt in
//!   Coffer's memory (zeroized); a ReEncrypt batch runs a few items at a time. GenerateDataKey of 16, 32 or 64 bytes is transit
//!   `datakey/plaintext` (`datakey/wrapped` without plaintext); other sizes are random bytes
//!   encrypted. GenerateRandom is transit `random`.
//! - ScheduleKeyDeletion only marks the record; when the window has ended the key reads as not
//!   found, and [`Kms::run_maintenance`] removes its aliases, sets `deletion_allowed` on the
//!   transit key, deletes it and then the record.

mod vault;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use futures::stream::{self, StreamExt};
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;
use zeroize::Zeroizing;

use self::vault::Vault;
use crate::arn::{self, KeyRef};
use crate::ciphertext::{self, BlobHeader};
use crate::clock::{Clock, SystemClock};
use crate::context::canonical_context;
use crate::kms::*;
use crate::secrets::SecretString;
use crate::validate;
use crate::wrap;
use crate::KmsError;

const DAY: i64 = 86_400;
/// Format marker of the KV records.
const RECORD_V1: u32 = 1;
/// Check-and-set attempts of one read-modify-write before giving up.
const CAS_ATTEMPTS: usize = 16;
/// Concurrent record reads while listing.
const LIST_READ_CONCURRENCY: usize = 8;
/// Items of a ReEncrypt batch in flight at once.
const REENCRYPT_BATCH_CONCURRENCY: usize = 8;
/// Data key sizes transit's `datakey` endpoint makes (in bytes; it takes bits).
const DATAKEY_SIZES: [usize; 3] = [16, 32, 64];

/// Configuration of the `transit` backend (`type = "transit"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitConfig {
    /// The Vault / OpenBao address, `http://host:port`.
    pub address: String,
    /// The Vault token. Prefer `token_env`: a token in the config file is a secret at rest.
    #[serde(default)]
    pub token: Option<SecretString>,
    /// The environment variable holding the Vault token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Mount path of the Transit engine.
    #[serde(default = "default_mount")]
    pub mount: String,
    /// Mount path of the KV version 2 engine holding Coffer's key records.
    #[serde(default = "default_kv_mount")]
    pub kv_mount: String,
    /// Transit keys are named `<prefix>-<uuid>`; KV records live under `<prefix>/`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// The Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`), if any.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Enables the Transit and KV v2 mounts at start when they are missing (the token needs
    /// `sys/mounts` rights). Meant for development servers.
    #[serde(default)]
    pub create_mounts: bool,
    /// Timeout of each HTTP call to Vault, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Region used in key ARNs.
    pub region: String,
    /// 12-digit account ID used in key ARNs.
    pub account_id: String,
}

fn default_mount() -> String {
    "transit".into()
}

fn default_kv_mount() -> String {
    "secret".into()
}

fn default_prefix() -> String {
    "coffer".into()
}

fn default_timeout_ms() -> u64 {
    10_000
}

impl TransitConfig {
    /// A config with the defaults for everything but the address, token and ARN parts.
    pub fn new(address: &str, token: &str, region: &str, account_id: &str) -> Self {
        TransitConfig {
            address: address.into(),
            token: Some(SecretString::new(token)),
            token_env: None,
            mount: default_mount(),
            kv_mount: default_kv_mount(),
            prefix: default_prefix(),
            namespace: None,
            create_mounts: false,
            timeout_ms: default_timeout_ms(),
            region: region.into(),
            account_id: account_id.into(),
        }
    }

    fn load_token(&self) -> Result<Zeroizing<String>, KmsError> {
        match (&self.token, &self.token_env) {
            (Some(t), None) => Ok(Zeroizing::new(t.expose().to_owned())),
            (None, Some(var)) => std::env::var(var).map(Zeroizing::new).map_err(|_| {
                KmsError::Validation(format!("environment variable {var} is not set"))
            }),
            _ => Err(KmsError::Validation(
                "exactly one of token and token_env must be set".into(),
            )),
        }
    }
}

/// Checks a mount path: `[A-Za-z0-9._-]` segments separated by `/`.
fn mount_path(what: &str, m: &str) -> Result<String, KmsError> {
    let m = m.trim_matches('/');
    let ok = !m.is_empty()
        && m.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if !ok {
        return Err(KmsError::Validation(format!("invalid {what} '{m}'")));
    }
    Ok(m.to_owned())
}

/// A key, as stored in KV (v1).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyRecord {
    format: u32,
    transit_key: String,
    description: String,
    creation_date: i64,
    state: KeyState,
    key_manager: KeyManager,
    deletion_date: Option<i64>,
    pending_window_days: Option<u32>,
    /// `Some(period)` while automatic rotation is on.
    rotation_period_days: Option<u32>,
    next_rotation_date: Option<i64>,
    /// Transit key versions made by automatic rotation (the others are on demand).
    #[serde(default)]
    automatic_versions: Vec<u32>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

impl KeyRecord {
    fn expired(&self, now: i64) -> bool {
        self.state == KeyState::PendingDeletion && self.deletion_date.is_some_and(|d| d <= now)
    }

    /// The error a cryptographic operation on this key gets, if any.
    fn check_usable(&self, arn: &str) -> Result<(), KmsError> {
        match self.state {
            KeyState::Enabled => Ok(()),
            KeyState::Disabled => Err(KmsError::Disabled(format!("{arn} is disabled."))),
            KeyState::PendingDeletion => Err(KmsError::InvalidState(format!(
                "{arn} is pending deletion."
            ))),
        }
    }
}

/// All aliases, as stored in KV (v1): one record, so ListAliases is one read.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AliasTable {
    format: u32,
    aliases: BTreeMap<String, AliasRecord>,
}

impl Default for AliasTable {
    fn default() -> Self {
        AliasTable {
            format: RECORD_V1,
            aliases: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AliasRecord {
    target: Uuid,
    creation_date: i64,
    last_updated_date: i64,
}

/// What transit reports about a key (`GET <mount>/keys/<name>`).
#[derive(Debug, Deserialize)]
struct TransitKeyInfo {
    latest_version: u32,
    /// Version → creation time (seconds since the epoch).
    #[serde(default)]
    keys: BTreeMap<String, i64>,
}

/// `data` of a KV v2 read.
#[derive(Deserialize)]
struct KvData<T> {
    data: T,
    metadata: KvMetadata,
}

#[derive(Deserialize)]
struct KvMetadata {
    version: u64,
}

#[derive(Deserialize)]
struct KvList {
    keys: Vec<String>,
}

#[derive(Deserialize)]
struct CiphertextData {
    ciphertext: String,
}

/// Holds a plaintext only long enough to wrap it in [`Zeroizing`].
#[derive(Deserialize)]
struct PlaintextData {
    plaintext: String,
}

#[derive(Deserialize)]
struct DataKeyData {
    ciphertext: String,
    #[serde(default)]
    plaintext: Option<String>,
}

#[derive(Deserialize)]
struct RandomData {
    random_bytes: String,
}

fn invalid_ciphertext() -> KmsError {
    KmsError::InvalidCiphertext(
        "The ciphertext is invalid or does not match the encryption context".into(),
    )
}

/// Decodes base64 of secret bytes into a zeroizing buffer (the string is zeroized too).
fn decode_secret(b64: String) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let b64 = Zeroizing::new(b64);
    B64.decode(b64.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| KmsError::Internal("Vault returned a plaintext that is not base64".into()))
}

/// The derivation context of transit calls: base64 of the canonical encryption context.
fn derivation_context(ctx: &EncryptionContext) -> String {
    B64.encode(canonical_context(ctx))
}

/// Builds a Coffer blob from transit's `vault:v<N>:<base64>` for key `id`.
fn blob_from_vault(id: &Uuid, vault_ct: &str) -> Result<Vec<u8>, KmsError> {
    let bad = || KmsError::Internal("Vault returned a ciphertext Coffer cannot parse".into());
    let rest = vault_ct.strip_prefix("vault:v").ok_or_else(bad)?;
    let (version, b64) = rest.split_once(':').ok_or_else(bad)?;
    let material_version: u32 = version.parse().map_err(|_| bad())?;
    let raw = B64.decode(b64).map_err(|_| bad())?;
    let header = BlobHeader {
        key_id: *id,
        material_version,
    }
    .encode();
    let mut blob = Vec::with_capacity(header.len() + raw.len());
    blob.extend_from_slice(&header);
    blob.extend_from_slice(&raw);
    // Check the blob reads back (transit's AES-GCM output is nonce ‖ ciphertext ‖ tag).
    ciphertext::parse(&blob).map_err(|_| bad())?;
    Ok(blob)
}

/// The transit ciphertext string of a parsed blob.
fn vault_ciphertext(h: &BlobHeader, sealed: &[u8]) -> String {
    format!("vault:v{}:{}", h.material_version, B64.encode(sealed))
}

/// Keys held by a Vault / OpenBao Transit engine (see the module doc). Cheap to clone.
#[derive(Clone)]
pub struct TransitKms {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TransitKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitKms")
            .field("mount", &self.inner.mount)
            .field("kv_mount", &self.inner.kv_mount)
            .field("prefix", &self.inner.prefix)
            .field("region", &self.inner.region)
            .field("account", &self.inner.account)
            .finish()
    }
}

struct Inner {
    vault: Vault,
    mount: String,
    kv_mount: String,
    prefix: String,
    region: String,
    account: String,
    clock: Arc<dyn Clock>,
}

impl TransitKms {
    /// Connects with the system clock: checks the token (`auth/token/lookup-self`) and, when
    /// configured, enables the mounts. An unreachable Vault is `Unavailable`.
    pub async fn open(cfg: &TransitConfig) -> Result<Self, KmsError> {
        Self::open_with_clock(cfg, Arc::new(SystemClock)).await
    }

    /// [`TransitKms::open`] with an injected clock (deletion windows, rotation periods).
    pub async fn open_with_clock(
        cfg: &TransitConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, KmsError> {
        let region = &cfg.region;
        if region.is_empty()
            || !region
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(KmsError::Validation(format!("invalid region '{region}'")));
        }
        if !arn::is_account_id(&cfg.account_id) {
            return Err(KmsError::Validation(format!(
                "account_id must be 12 digits, got '{}'",
                cfg.account_id
            )));
        }
        let prefix = &cfg.prefix;
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(KmsError::Validation(format!(
                "invalid prefix '{prefix}': use letters, digits, '-' and '_'"
            )));
        }
        let mount = mount_path("transit mount", &cfg.mount)?;
        let kv_mount = mount_path("kv mount", &cfg.kv_mount)?;
        if mount == kv_mount {
            return Err(KmsError::Validation(
                "mount and kv_mount must be different mounts".into(),
            ));
        }
        if cfg.timeout_ms == 0 {
            return Err(KmsError::Validation("timeout_ms must be positive".into()));
        }
        let token = cfg.load_token()?;
        let vault = Vault::new(
            &cfg.address,
            &token,
            cfg.namespace.as_deref(),
            Duration::from_millis(cfg.timeout_ms),
        )?;
        drop(token);
        let inner = Inner {
            vault,
            mount,
            kv_mount,
            prefix: prefix.clone(),
            region: region.clone(),
            account: cfg.account_id.clone(),
            clock,
        };
        let r = inner.vault.get("auth/token/lookup-self").await?;
        match r.status {
            s if s.is_success() => {}
            StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
                return Err(KmsError::Validation(format!(
                    "Vault at {} rejected the token: {}",
                    cfg.address,
                    r.errors()
                )))
            }
            _ => return Err(r.unexpected("token lookup")),
        }
        if cfg.create_mounts {
            inner
                .enable_mount(&inner.mount, json!({"type": "transit"}))
                .await?;
            inner
                .enable_mount(
                    &inner.kv_mount,
                    json!({"type": "kv", "options": {"version": "2"}}),
                )
                .await?;
        }
        tracing::info!(address = %cfg.address, mount = %inner.mount, kv_mount = %inner.kv_mount,
            "connected to Vault transit");
        Ok(TransitKms {
            inner: Arc::new(inner),
        })
    }
}

impl Inner {
    fn arn(&self, id: &Uuid) -> String {
        arn::key_arn(&self.region, &self.account, id)
    }

    fn key_path(&self, id: &Uuid) -> String {
        format!(
            "{}/data/{}/keys/{}",
            self.kv_mount,
            self.prefix,
            id.hyphenated()
        )
    }

    fn aliases_path(&self) -> String {
        format!("{}/data/{}/aliases", self.kv_mount, self.prefix)
    }

    async fn enable_mount(&self, path: &str, body: serde_json::Value) -> Result<(), KmsError> {
        let r = self
            .vault
            .post(&format!("sys/mounts/{path}"), &body)
            .await?;
        if r.ok() {
            tracing::info!(mount = path, "enabled Vault mount");
            return Ok(());
        }
        if r.status == StatusCode::BAD_REQUEST && r.errors().contains("already in use") {
            return Ok(());
        }
        Err(r.unexpected(&format!("enabling mount {path}")))
    }

    // ---- KV v2 records ----

    /// Reads a KV record and its version; `None` if absent.
    async fn kv_read<T: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
    ) -> Result<Option<(T, u64)>, KmsError> {
        let r = self.vault.get(path).await?;
        if r.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !r.ok() {
            return Err(r.unexpected(&format!("reading {path}")));
        }
        let d: KvData<T> = r.data()?;
        Ok(Some((d.data, d.metadata.version)))
    }

    /// Writes a KV record if its version is still `cas` (0: if absent). False on a conflict.
    async fn kv_write<T: Serialize>(
        &self,
        path: &str,
        value: &T,
        cas: u64,
    ) -> Result<bool, KmsError> {
        let r = self
            .vault
            .post(path, &json!({"options": {"cas": cas}, "data": value}))
            .await?;
        if r.ok() {
            return Ok(true);
        }
        if r.status == StatusCode::BAD_REQUEST && r.errors().contains("check-and-set") {
            return Ok(false);
        }
        Err(r.unexpected(&format!("writing {path}")))
    }

    /// Lists the key IDs that have a record, sorted.
    async fn key_ids(&self) -> Result<Vec<Uuid>, KmsError> {
        let path = format!("{}/metadata/{}/keys/?list=true", self.kv_mount, self.prefix);
        let r = self.vault.get(&path).await?;
        if r.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !r.ok() {
            return Err(r.unexpected("listing keys"));
        }
        let mut ids: Vec<Uuid> = r
            .data::<KvList>()?
            .keys
            .iter()
            .filter_map(|k| arn::parse_key_id(k))
            .collect();
        ids.sort();
        Ok(ids)
    }

    async fn read_key(&self, id: &Uuid) -> Result<Option<(KeyRecord, u64)>, KmsError> {
        self.kv_read(&self.key_path(id)).await
    }

    /// Loads a live key: a key past its deletion window reads as not found (run_maintenance
    /// deletes it).
    async fn load(&self, id: &Uuid) -> Result<(KeyRecord, u64), KmsError> {
        let not_found = || KmsError::NotFound(format!("Key '{}' does not exist", self.arn(id)));
        let (rec, version) = self.read_key(id).await?.ok_or_else(not_found)?;
        if rec.expired(self.clock.now()) {
            return Err(not_found());
        }
        Ok((rec, version))
    }

    /// Read-modify-write of one key record with check-and-set. `f` may run more than once.
    async fn update<T>(
        &self,
        key_id: &str,
        f: impl Fn(&Self, &Uuid, &mut KeyRecord) -> Result<T, KmsError>,
    ) -> Result<(Uuid, KeyRecord, T), KmsError> {
        let id = self.resolve(key_id).await?;
        for _ in 0..CAS_ATTEMPTS {
            let (mut rec, version) = self.load(&id).await?;
            let out = f(self, &id, &mut rec)?;
            if self.kv_write(&self.key_path(&id), &rec, version).await? {
                return Ok((id, rec, out));
            }
        }
        Err(KmsError::Internal(format!(
            "too many concurrent updates of {}",
            self.arn(&id)
        )))
    }

    async fn read_aliases(&self) -> Result<(AliasTable, u64), KmsError> {
        Ok(self
            .kv_read(&self.aliases_path())
            .await?
            .unwrap_or_default())
    }

    /// Read-modify-write of the alias table with check-and-set. `f` may run more than once.
    async fn update_aliases<T>(
        &self,
        f: impl Fn(&mut AliasTable) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        for _ in 0..CAS_ATTEMPTS {
            let (mut table, version) = self.read_aliases().await?;
            let out = f(&mut table)?;
            if self.kv_write(&self.aliases_path(), &table, version).await? {
                return Ok(out);
            }
        }
        Err(KmsError::Internal(
            "too many concurrent updates of the alias table".into(),
        ))
    }

    // ---- key names ----

    fn check_home(&self, region: &str, account: &str, s: &str) -> Result<(), KmsError> {
        if region != self.region || account != self.account {
            return Err(KmsError::NotFound(format!("Key '{s}' does not exist")));
        }
        Ok(())
    }

    /// Resolves any of the four forms to a key ID (the key itself may not exist).
    async fn resolve(&self, s: &str) -> Result<Uuid, KmsError> {
        match KeyRef::parse(s)? {
            KeyRef::KeyId(id) => Ok(id),
            KeyRef::KeyArn {
                region,
                account,
                id,
            } => {
                self.check_home(&region, &account, s)?;
                Ok(id)
            }
            KeyRef::Alias(alias) => self.alias_target(&alias, s).await,
            KeyRef::AliasArn {
                region,
                account,
                alias,
            } => {
                self.check_home(&region, &account, s)?;
                self.alias_target(&alias, s).await
            }
        }
    }

    /// Resolves a key ID or key ARN only (CreateAlias/UpdateAlias targets).
    async fn resolve_key_only(&self, s: &str) -> Result<Uuid, KmsError> {
        if !KeyRef::parse(s)?.is_key() {
            return Err(KmsError::Validation(format!(
                "{s} is an alias; the target must be a key ID or key ARN"
            )));
        }
        self.resolve(s).await
    }

    async fn alias_target(&self, alias: &str, s: &str) -> Result<Uuid, KmsError> {
        self.read_aliases()
            .await?
            .0
            .aliases
            .get(alias)
            .map(|a| a.target)
            .ok_or_else(|| KmsError::NotFound(format!("Alias {s} is not found.")))
    }

    // ---- metadata ----

    async fn key_info(&self, rec: &KeyRecord) -> Result<TransitKeyInfo, KmsError> {
        let r = self
            .vault
            .get(&format!("{}/keys/{}", self.mount, rec.transit_key))
            .await?;
        if !r.ok() {
            return Err(r.unexpected(&format!("reading transit key {}", rec.transit_key)));
        }
        r.data()
    }

    fn metadata(&self, id: &Uuid, rec: &KeyRecord, version: u32) -> KeyMetadata {
        KeyMetadata {
            key_id: id.hyphenated().to_string(),
            arn: self.arn(id),
            aws_account_id: self.account.clone(),
            creation_date: rec.creation_date,
            enabled: rec.state == KeyState::Enabled,
            description: rec.description.clone(),
            key_state: rec.state,
            key_manager: rec.key_manager,
            deletion_date: rec.deletion_date,
            pending_deletion_window_in_days: rec.pending_window_days,
            rotation_enabled: rec.rotation_period_days.is_some(),
            rotation_period_in_days: rec.rotation_period_days,
            current_material_version: version,
        }
    }

    async fn describe(&self, id: &Uuid, rec: &KeyRecord) -> Result<KeyMetadata, KmsError> {
        let info = self.key_info(rec).await?;
        Ok(self.metadata(id, rec, info.latest_version))
    }

    fn not_aws_managed(&self, id: &Uuid, rec: &KeyRecord, op: &str) -> Result<(), KmsError> {
        if rec.key_manager == KeyManager::Aws {
            return Err(KmsError::Validation(format!(
                "{op} is not allowed on AWS managed key {}",
                self.arn(id)
            )));
        }
        Ok(())
    }

    fn pending_deletion(&self, id: &Uuid) -> KmsError {
        KmsError::InvalidState(format!("{} is pending deletion.", self.arn(id)))
    }

    // ---- key management ----

    async fn create_key(&self, req: CreateKeyRequest) -> Result<KeyMetadata, KmsError> {
        if req.description.len() > 8192 {
            return Err(KmsError::Validation(
                "Description must be at most 8192 characters".into(),
            ));
        }
        let id = Uuid::new_v4();
        let transit_key = format!("{}-{}", self.prefix, id.hyphenated());
        let r = self
            .vault
            .post(
                &format!("{}/keys/{transit_key}", self.mount),
                &json!({"type": "aes256-gcm96", "derived": true, "exportable": false}),
            )
            .await?;
        if !r.ok() {
            return Err(r.unexpected(&format!("creating transit key {transit_key}")));
        }
        let now = self.clock.now();
        let rec = KeyRecord {
            format: RECORD_V1,
            transit_key,
            description: req.description,
            creation_date: now,
            state: KeyState::Enabled,
            key_manager: if req.aws_managed {
                KeyManager::Aws
            } else {
                KeyManager::Customer
            },
            deletion_date: None,
            pending_window_days: None,
            // AWS managed keys rotate every year, always.
            rotation_period_days: req.aws_managed.then_some(365),
            next_rotation_date: req.aws_managed.then_some(now + 365 * DAY),
            automatic_versions: Vec::new(),
            tags: req.tags,
        };
        if !self.kv_write(&self.key_path(&id), &rec, 0).await? {
            return Err(KmsError::Internal(format!(
                "a record for the new key {} already exists",
                self.arn(&id)
            )));
        }
        tracing::info!(key = %self.arn(&id), transit_key = %rec.transit_key, "created key");
        Ok(self.metadata(&id, &rec, 1))
    }

    async fn list_keys(
        &self,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<KeyListEntry>, KmsError> {
        let limit = validate::limit(limit)?;
        // The marker is the ID of the first key of the next page.
        let from = marker
            .map(|m| {
                arn::parse_key_id(m)
                    .ok_or_else(|| KmsError::InvalidMarker(format!("Invalid marker '{m}'")))
            })
            .transpose()?;
        let ids = self.key_ids().await?;
        let now = self.clock.now();
        let mut reads = stream::iter(ids.into_iter().filter(|id| from.is_none_or(|f| *id >= f)))
            .map(|id| async move { (id, self.read_key(&id).await) })
            .buffered(LIST_READ_CONCURRENCY);
        let mut items = Vec::new();
        let mut next_marker = None;
        while let Some((id, rec)) = reads.next().await {
            // Gone since the listing, or past its deletion window: not listed.
            if rec?.is_none_or(|(r, _)| r.expired(now)) {
                continue;
            }
            if items.len() == limit {
                next_marker = Some(id.hyphenated().to_string());
                break;
            }
            items.push(KeyListEntry {
                key_id: id.hyphenated().to_string(),
                key_arn: self.arn(&id),
            });
        }
        Ok(Page { items, next_marker })
    }

    async fn create_alias(
        &self,
        alias: &str,
        target: &str,
        allow_reserved: bool,
    ) -> Result<(), KmsError> {
        arn::validate_alias_name(alias, allow_reserved)?;
        let id = self.resolve_key_only(target).await?;
        let (rec, _) = self.load(&id).await?;
        if rec.state == KeyState::PendingDeletion {
            return Err(self.pending_deletion(&id));
        }
        let now = self.clock.now();
        self.update_aliases(|t| {
            if t.aliases.contains_key(alias) {
                return Err(KmsError::AlreadyExists(format!(
                    "An alias with the name {} already exists",
                    arn::alias_arn(&self.region, &self.account, alias)
                )));
            }
            t.aliases.insert(
                alias.to_owned(),
                AliasRecord {
                    target: id,
                    creation_date: now,
                    last_updated_date: now,
                },
            );
            Ok(())
        })
        .await
    }

    async fn update_alias(&self, alias: &str, target: &str) -> Result<(), KmsError> {
        arn::validate_alias_name(alias, true)?;
        let not_found = || KmsError::NotFound(format!("Alias {alias} is not found."));
        if !self.read_aliases().await?.0.aliases.contains_key(alias) {
            return Err(not_found());
        }
        if alias.starts_with("alias/aws/") {
            return Err(KmsError::Validation(format!(
                "{alias} is reserved for an AWS managed key"
            )));
        }
        let id = self.resolve_key_only(target).await?;
        let (rec, _) = self.load(&id).await?;
        if rec.state == KeyState::PendingDeletion {
            return Err(self.pending_deletion(&id));
        }
        let now = self.clock.now();
        self.update_aliases(|t| {
            let a = t.aliases.get_mut(alias).ok_or_else(not_found)?;
            a.target = id;
            a.last_updated_date = now;
            Ok(())
        })
        .await
    }

    async fn delete_alias(&self, alias: &str) -> Result<(), KmsError> {
        arn::validate_alias_name(alias, true)?;
        self.update_aliases(|t| {
            if !t.aliases.contains_key(alias) {
                return Err(KmsError::NotFound(format!("Alias {alias} is not found.")));
            }
            if alias.starts_with("alias/aws/") {
                return Err(KmsError::Validation(format!(
                    "{alias} is reserved for an AWS managed key"
                )));
            }
            t.aliases.remove(alias);
            Ok(())
        })
        .await
    }

    async fn list_aliases(
        &self,
        key_id: Option<&str>,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<AliasEntry>, KmsError> {
        let limit = validate::limit(limit)?;
        let filter = match key_id {
            Some(k) => {
                let id = self.resolve_key_only(k).await?;
                self.load(&id).await?;
                Some(id)
            }
            None => None,
        };
        if let Some(m) = marker {
            if !m.starts_with("alias/") {
                return Err(KmsError::InvalidMarker(format!("Invalid marker '{m}'")));
            }
        }
        let (table, _) = self.read_aliases().await?;
        let now = self.clock.now();
        // Whether each target is live; an alias of a key past its deletion window is gone
        // with the key.
        let mut live: HashMap<Uuid, bool> = HashMap::new();
        if let Some(f) = filter {
            live.insert(f, true);
        }
        let mut items = Vec::new();
        let mut next_marker = None;
        for (name, a) in table.aliases {
            if marker.is_some_and(|m| name.as_str() < m) || filter.is_some_and(|f| f != a.target) {
                continue;
            }
            let is_live = match live.get(&a.target) {
                Some(l) => *l,
                None => {
                    let l = self
                        .read_key(&a.target)
                        .await?
                        .is_some_and(|(r, _)| !r.expired(now));
                    live.insert(a.target, l);
                    l
                }
            };
            if !is_live {
                continue;
            }
            if items.len() == limit {
                next_marker = Some(name);
                break;
            }
            items.push(AliasEntry {
                alias_arn: arn::alias_arn(&self.region, &self.account, &name),
                alias_name: name,
                target_key_id: a.target.hyphenated().to_string(),
                creation_date: a.creation_date,
            });
        }
        Ok(Page { items, next_marker })
    }

    async fn set_enabled(&self, key_id: &str, enabled: bool) -> Result<(), KmsError> {
        self.update(key_id, |s, id, rec| {
            s.not_aws_managed(id, rec, if enabled { "EnableKey" } else { "DisableKey" })?;
            if rec.state == KeyState::PendingDeletion {
                return Err(s.pending_deletion(id));
            }
            rec.state = if enabled {
                KeyState::Enabled
            } else {
                KeyState::Disabled
            };
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn schedule_deletion(
        &self,
        key_id: &str,
        days: Option<u32>,
    ) -> Result<KeyMetadata, KmsError> {
        let days = validate::pending_window(days)?;
        let now = self.clock.now();
        let (id, rec, ()) = self
            .update(key_id, |s, id, rec| {
                s.not_aws_managed(id, rec, "ScheduleKeyDeletion")?;
                if rec.state == KeyState::PendingDeletion {
                    return Err(s.pending_deletion(id));
                }
                rec.state = KeyState::PendingDeletion;
                rec.deletion_date = Some(now + i64::from(days) * DAY);
                rec.pending_window_days = Some(days);
                Ok(())
            })
            .await?;
        tracing::info!(key = %self.arn(&id), days, "scheduled key deletion");
        self.describe(&id, &rec).await
    }

    async fn cancel_deletion(&self, key_id: &str) -> Result<KeyMetadata, KmsError> {
        let (id, rec, ()) = self
            .update(key_id, |s, id, rec| {
                if rec.state != KeyState::PendingDeletion {
                    return Err(KmsError::InvalidState(format!(
                        "{} is not pending deletion.",
                        s.arn(id)
                    )));
                }
                rec.state = KeyState::Disabled;
                rec.deletion_date = None;
                rec.pending_window_days = None;
                Ok(())
            })
            .await?;
        self.describe(&id, &rec).await
    }

    async fn set_rotation(
        &self,
        key_id: &str,
        period: Option<Option<u32>>,
    ) -> Result<(), KmsError> {
        let now = self.clock.now();
        self.update(key_id, |s, id, rec| {
            s.not_aws_managed(id, rec, "Changing key rotation")?;
            rec.check_usable(&s.arn(id))?;
            match period {
                Some(p) => {
                    let p = validate::rotation_period(p)?;
                    rec.rotation_period_days = Some(p);
                    rec.next_rotation_date = Some(now + i64::from(p) * DAY);
                }
                None => {
                    rec.rotation_period_days = None;
                    rec.next_rotation_date = None;
                }
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    async fn rotation_status(&self, key_id: &str) -> Result<RotationStatus, KmsError> {
        let id = self.resolve(key_id).await?;
        let (rec, _) = self.load(&id).await?;
        Ok(RotationStatus {
            key_id: self.arn(&id),
            enabled: rec.rotation_period_days.is_some(),
            rotation_period_in_days: rec.rotation_period_days,
            next_rotation_date: rec.next_rotation_date,
            on_demand_rotation_start_date: None,
        })
    }

    /// Transit `rotate`: a new key version; the older ones stay for decryption. Returns the
    /// new latest version.
    async fn transit_rotate(&self, rec: &KeyRecord) -> Result<u32, KmsError> {
        let path = format!("{}/keys/{}/rotate", self.mount, rec.transit_key);
        let r = self.vault.post(&path, &json!({})).await?;
        if !r.ok() {
            return Err(r.unexpected(&format!("rotating transit key {}", rec.transit_key)));
        }
        // Vault answers with the key's info; older servers answer 204 without a body.
        let version = match r.data::<TransitKeyInfo>() {
            Ok(info) => info.latest_version,
            Err(_) => self.key_info(rec).await?.latest_version,
        };
        Ok(version)
    }

    async fn rotate_on_demand(&self, key_id: &str) -> Result<String, KmsError> {
        let id = self.resolve(key_id).await?;
        let (rec, _) = self.load(&id).await?;
        self.not_aws_managed(&id, &rec, "RotateKeyOnDemand")?;
        rec.check_usable(&self.arn(&id))?;
        let version = self.transit_rotate(&rec).await?;
        tracing::info!(key = %self.arn(&id), version, "rotated key on demand");
        Ok(id.hyphenated().to_string())
    }

    async fn list_rotations(
        &self,
        key_id: &str,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<RotationEntry>, KmsError> {
        let limit = validate::limit(limit)?;
        let id = self.resolve(key_id).await?;
        let (rec, _) = self.load(&id).await?;
        let from = marker
            .map(|m| {
                m.parse::<u32>()
                    .map_err(|_| KmsError::InvalidMarker(format!("Invalid marker '{m}'")))
            })
            .transpose()?
            .unwrap_or(0);
        let info = self.key_info(&rec).await?;
        // Version 1 is the key's creation; every later version is a rotation.
        let mut versions: Vec<(u32, i64)> = info
            .keys
            .iter()
            .filter_map(|(v, date)| Some((v.parse::<u32>().ok()?, *date)))
            .filter(|(v, _)| *v >= 2 && *v >= from)
            .collect();
        versions.sort_unstable();
        let mut it = versions.into_iter();
        let items: Vec<RotationEntry> = it
            .by_ref()
            .take(limit)
            .map(|(v, date)| RotationEntry {
                key_id: self.arn(&id),
                material_version: v,
                rotation_date: date,
                rotation_type: if rec.automatic_versions.contains(&v) {
                    "AUTOMATIC"
                } else {
                    "ON_DEMAND"
                }
                .to_owned(),
            })
            .collect();
        Ok(Page {
            items,
            next_marker: it.next().map(|(v, _)| v.to_string()),
        })
    }

    // ---- cryptography ----

    /// Resolves and loads a key that must be usable for cryptography.
    async fn usable(&self, key_id: &str) -> Result<(Uuid, KeyRecord), KmsError> {
        let id = self.resolve(key_id).await?;
        let (rec, _) = self.load(&id).await?;
        rec.check_usable(&self.arn(&id))?;
        Ok((id, rec))
    }

    async fn transit_encrypt(
        &self,
        id: &Uuid,
        rec: &KeyRecord,
        pt: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<Vec<u8>, KmsError> {
        let plaintext = Zeroizing::new(B64.encode(pt));
        let path = format!("{}/encrypt/{}", self.mount, rec.transit_key);
        let r = self
            .vault
            .post(
                &path,
                &json!({"plaintext": plaintext.as_str(), "context": derivation_context(ctx)}),
            )
            .await?;
        if !r.ok() {
            return Err(r.unexpected(&format!("encrypting with {}", rec.transit_key)));
        }
        blob_from_vault(id, &r.data::<CiphertextData>()?.ciphertext)
    }

    /// Decrypts the sealed part of a blob of `rec`'s key.
    async fn transit_decrypt(
        &self,
        rec: &KeyRecord,
        h: &BlobHeader,
        sealed: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let path = format!("{}/decrypt/{}", self.mount, rec.transit_key);
        let r = self
            .vault
            .post(
                &path,
                &json!({
                    "ciphertext": vault_ciphertext(h, sealed),
                    "context": derivation_context(ctx),
                }),
            )
            .await?;
        // Transit answers 400 for a wrong context, a tampered ciphertext or an unknown version.
        if r.status == StatusCode::BAD_REQUEST {
            return Err(invalid_ciphertext());
        }
        if !r.ok() {
            return Err(r.unexpected(&format!("decrypting with {}", rec.transit_key)));
        }
        decode_secret(r.data::<PlaintextData>()?.plaintext)
    }

    /// Checks an optional caller-given key against the key a blob names.
    async fn check_key_id(&self, named: &Uuid, key_id: Option<&str>) -> Result<(), KmsError> {
        if let Some(k) = key_id {
            if self.resolve(k).await? != *named {
                return Err(KmsError::IncorrectKey(
                    "The key ID in the request does not identify a CMK that can perform this operation.".into(),
                ));
            }
        }
        Ok(())
    }

    async fn encrypt(
        &self,
        key_id: &str,
        pt: &[u8],
        ctx: &EncryptionContext,
    ) -> Result<Encrypted, KmsError> {
        let (id, rec) = self.usable(key_id).await?;
        let blob = self.transit_encrypt(&id, &rec, pt, ctx).await?;
        Ok(Encrypted {
            key_id: self.arn(&id),
            ciphertext_blob: blob,
        })
    }

    async fn decrypt(
        &self,
        blob: &[u8],
        ctx: &EncryptionContext,
        key_id: Option<&str>,
    ) -> Result<Decrypted, KmsError> {
        let (h, _, sealed) = ciphertext::parse(blob)?;
        self.check_key_id(&h.key_id, key_id).await?;
        let (rec, _) = self.load(&h.key_id).await?;
        let arn = self.arn(&h.key_id);
        rec.check_usable(&arn)?;
        let plaintext = self.transit_decrypt(&rec, &h, sealed, ctx).await?;
        Ok(Decrypted {
            key_id: arn,
            plaintext,
        })
    }

    async fn re_encrypt(
        &self,
        blob: &[u8],
        source_ctx: &EncryptionContext,
        source_key_id: Option<&str>,
        destination_key_id: &str,
        destination_ctx: &EncryptionContext,
    ) -> Result<ReEncrypted, KmsError> {
        let (h, _, sealed) = ciphertext::parse(blob)?;
        self.check_key_id(&h.key_id, source_key_id).await?;
        let (src, _) = self.load(&h.key_id).await?;
        src.check_usable(&self.arn(&h.key_id))?;
        let (dst_id, dst) = self.usable(destination_key_id).await?;
        let ciphertext_blob = if dst_id == h.key_id && source_ctx == destination_ctx {
            // Same key and context: transit rewraps onto the latest version inside Vault.
            let path = format!("{}/rewrap/{}", self.mount, src.transit_key);
            let r = self
                .vault
                .post(
                    &path,
                    &json!({
                        "ciphertext": vault_ciphertext(&h, sealed),
                        "context": derivation_context(source_ctx),
                    }),
                )
                .await?;
            if r.status == StatusCode::BAD_REQUEST {
                return Err(invalid_ciphertext());
            }
            if !r.ok() {
                return Err(r.unexpected(&format!("rewrapping with {}", src.transit_key)));
            }
            blob_from_vault(&dst_id, &r.data::<CiphertextData>()?.ciphertext)?
        } else {
            let pt = self.transit_decrypt(&src, &h, sealed, source_ctx).await?;
            self.transit_encrypt(&dst_id, &dst, &pt, destination_ctx)
                .await?
        };
        Ok(ReEncrypted {
            source_key_id: self.arn(&h.key_id),
            key_id: self.arn(&dst_id),
            ciphertext_blob,
        })
    }

    async fn generate_data_key(
        &self,
        key_id: &str,
        ctx: &EncryptionContext,
        n: usize,
        with_plaintext: bool,
    ) -> Result<GeneratedDataKey, KmsError> {
        validate::data_key_bytes(n)?;
        let (id, rec) = self.usable(key_id).await?;
        if !DATAKEY_SIZES.contains(&n) {
            // Transit's datakey makes only 128, 256 and 512 bits: encrypt fresh random bytes.
            let mut dk = Zeroizing::new(vec![0u8; n]);
            wrap::fill_random(&mut dk)?;
            let blob = self.transit_encrypt(&id, &rec, &dk, ctx).await?;
            return Ok(GeneratedDataKey {
                key_id: self.arn(&id),
                plaintext: with_plaintext.then_some(dk),
                ciphertext_blob: blob,
            });
        }
        let kind = if with_plaintext {
            "plaintext"
        } else {
            "wrapped"
        };
        let path = format!("{}/datakey/{kind}/{}", self.mount, rec.transit_key);
        let r = self
            .vault
            .post(
                &path,
                &json!({"bits": n * 8, "context": derivation_context(ctx)}),
            )
            .await?;
        if !r.ok() {
            return Err(r.unexpected(&format!("generating a data key with {}", rec.transit_key)));
        }
        let d: DataKeyData = r.data()?;
        let plaintext = match (with_plaintext, d.plaintext) {
            (true, Some(p)) => {
                let p = decode_secret(p)?;
                if p.len() != n {
                    return Err(KmsError::Internal(format!(
                        "Vault returned a {}-byte data key, expected {n}",
                        p.len()
                    )));
                }
                Some(p)
            }
            (true, None) => {
                return Err(KmsError::Internal(
                    "Vault returned no plaintext data key".into(),
                ))
            }
            (false, p) => {
                drop(p.map(Zeroizing::new));
                None
            }
        };
        Ok(GeneratedDataKey {
            key_id: self.arn(&id),
            plaintext,
            ciphertext_blob: blob_from_vault(&id, &d.ciphertext)?,
        })
    }

    async fn generate_random(&self, n: usize) -> Result<Vec<u8>, KmsError> {
        validate::random_bytes(n)?;
        let r = self
            .vault
            .post(
                &format!("{}/random/{n}", self.mount),
                &json!({"format": "base64"}),
            )
            .await?;
        if !r.ok() {
            return Err(r.unexpected("generating random bytes"));
        }
        let bytes = decode_secret(r.data::<RandomData>()?.random_bytes)?;
        if bytes.len() != n {
            return Err(KmsError::Internal(format!(
                "Vault returned {} random bytes, expected {n}",
                bytes.len()
            )));
        }
        Ok(bytes.to_vec())
    }

    // ---- maintenance ----

    /// Deletes a key whose deletion window ended: its aliases, the transit key (after setting
    /// `deletion_allowed`), then its record. Each step tolerates a previous partial run.
    async fn delete_key(&self, id: &Uuid, rec: &KeyRecord) -> Result<(), KmsError> {
        self.update_aliases(|t| {
            t.aliases.retain(|_, a| a.target != *id);
            Ok(())
        })
        .await?;
        let key_path = format!("{}/keys/{}", self.mount, rec.transit_key);
        let r = self.vault.get(&key_path).await?;
        if r.ok() {
            let r = self
                .vault
                .post(
                    &format!("{key_path}/config"),
                    &json!({"deletion_allowed": true}),
                )
                .await?;
            if !r.ok() {
                return Err(r.unexpected(&format!("allowing deletion of {}", rec.transit_key)));
            }
            let r = self.vault.delete(&key_path).await?;
            if !r.ok() {
                return Err(r.unexpected(&format!("deleting transit key {}", rec.transit_key)));
            }
        } else if r.status != StatusCode::NOT_FOUND {
            return Err(r.unexpected(&format!("reading transit key {}", rec.transit_key)));
        }
        let meta = format!(
            "{}/metadata/{}/keys/{}",
            self.kv_mount,
            self.prefix,
            id.hyphenated()
        );
        let r = self.vault.delete(&meta).await?;
        if !r.ok() && r.status != StatusCode::NOT_FOUND {
            return Err(r.unexpected(&format!("deleting the record of {}", self.arn(id))));
        }
        tracing::info!(key = %self.arn(id), transit_key = %rec.transit_key,
            "deleted key after its deletion window");
        Ok(())
    }

    /// Rotates a key whose automatic rotation is due, then records the new version as
    /// automatic. A crash in between leaves the version listed as on demand and the rotation
    /// due again, never a lost rotation.
    async fn rotate_due(&self, id: &Uuid, rec: &KeyRecord, now: i64) -> Result<(), KmsError> {
        let version = self.transit_rotate(rec).await?;
        self.update(&id.hyphenated().to_string(), |_, _, r| {
            if !r.automatic_versions.contains(&version) {
                r.automatic_versions.push(version);
            }
            r.next_rotation_date = r.rotation_period_days.map(|p| now + i64::from(p) * DAY);
            Ok(())
        })
        .await?;
        tracing::info!(key = %self.arn(id), version, "rotated key automatically");
        Ok(())
    }

    async fn run_maintenance(&self) -> Result<MaintenanceReport, KmsError> {
        let now = self.clock.now();
        let mut report = MaintenanceReport::default();
        let mut first_err = None;
        for id in self.key_ids().await? {
            let Some((rec, _)) = self.read_key(&id).await? else {
                continue;
            };
            let due =
                rec.state == KeyState::Enabled && rec.next_rotation_date.is_some_and(|d| d <= now);
            let res = if rec.expired(now) {
                self.delete_key(&id, &rec)
                    .await
                    .map(|()| report.keys_deleted += 1)
            } else if due {
                self.rotate_due(&id, &rec, now)
                    .await
                    .map(|()| report.keys_rotated += 1)
            } else {
                Ok(())
            };
            // One failing key does not stop the others; the first error is returned.
            if let Err(e) = res {
                tracing::warn!(key = %self.arn(&id), error = %e, "KMS maintenance failed for a key");
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }
}

#[async_trait]
impl Kms for TransitKms {
    async fn create_key(&self, req: CreateKeyRequest) -> Result<KeyMetadata, KmsError> {
        self.inner.create_key(req).await
    }

    async fn describe_key(&self, key_id: &str) -> Result<KeyMetadata, KmsError> {
        let id = self.inner.resolve(key_id).await?;
        let (rec, _) = self.inner.load(&id).await?;
        self.inner.describe(&id, &rec).await
    }

    async fn list_keys(
        &self,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<KeyListEntry>, KmsError> {
        self.inner.list_keys(limit, marker).await
    }

    async fn create_alias(&self, alias_name: &str, target_key_id: &str) -> Result<(), KmsError> {
        self.inner
            .create_alias(alias_name, target_key_id, false)
            .await
    }

    async fn update_alias(&self, alias_name: &str, target_key_id: &str) -> Result<(), KmsError> {
        self.inner.update_alias(alias_name, target_key_id).await
    }

    async fn delete_alias(&self, alias_name: &str) -> Result<(), KmsError> {
        self.inner.delete_alias(alias_name).await
    }

    async fn list_aliases(
        &self,
        key_id: Option<&str>,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<AliasEntry>, KmsError> {
        self.inner.list_aliases(key_id, limit, marker).await
    }

    async fn enable_key(&self, key_id: &str) -> Result<(), KmsError> {
        self.inner.set_enabled(key_id, true).await
    }

    async fn disable_key(&self, key_id: &str) -> Result<(), KmsError> {
        self.inner.set_enabled(key_id, false).await
    }

    async fn schedule_key_deletion(
        &self,
        key_id: &str,
        pending_window_in_days: Option<u32>,
    ) -> Result<KeyMetadata, KmsError> {
        self.inner
            .schedule_deletion(key_id, pending_window_in_days)
            .await
    }

    async fn cancel_key_deletion(&self, key_id: &str) -> Result<KeyMetadata, KmsError> {
        self.inner.cancel_deletion(key_id).await
    }

    async fn enable_key_rotation(
        &self,
        key_id: &str,
        rotation_period_in_days: Option<u32>,
    ) -> Result<(), KmsError> {
        self.inner
            .set_rotation(key_id, Some(rotation_period_in_days))
            .await
    }

    async fn disable_key_rotation(&self, key_id: &str) -> Result<(), KmsError> {
        self.inner.set_rotation(key_id, None).await
    }

    async fn get_key_rotation_status(&self, key_id: &str) -> Result<RotationStatus, KmsError> {
        self.inner.rotation_status(key_id).await
    }

    async fn rotate_key_on_demand(&self, key_id: &str) -> Result<String, KmsError> {
        self.inner.rotate_on_demand(key_id).await
    }

    async fn list_key_rotations(
        &self,
        key_id: &str,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<RotationEntry>, KmsError> {
        self.inner.list_rotations(key_id, limit, marker).await
    }

    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Encrypted, KmsError> {
        validate::plaintext(plaintext)?;
        self.inner.encrypt(key_id, plaintext, context).await
    }

    async fn decrypt(
        &self,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
        key_id: Option<&str>,
    ) -> Result<Decrypted, KmsError> {
        validate::ciphertext(ciphertext_blob)?;
        self.inner.decrypt(ciphertext_blob, context, key_id).await
    }

    async fn re_encrypt(
        &self,
        ciphertext_blob: &[u8],
        source_context: &EncryptionContext,
        source_key_id: Option<&str>,
        destination_key_id: &str,
        destination_context: &EncryptionContext,
    ) -> Result<ReEncrypted, KmsError> {
        validate::ciphertext(ciphertext_blob)?;
        self.inner
            .re_encrypt(
                ciphertext_blob,
                source_context,
                source_key_id,
                destination_key_id,
                destination_context,
            )
            .await
    }

    async fn re_encrypt_batch(
        &self,
        items: Vec<ReEncryptItem>,
    ) -> Result<Vec<Result<ReEncrypted, KmsError>>, KmsError> {
        validate::re_encrypt_batch(items.len())?;
        // Each item is a few HTTP calls to the server: several items in flight, results in order.
        Ok(stream::iter(items)
            .map(|it| async move {
                Kms::re_encrypt(
                    self,
                    &it.ciphertext_blob,
                    &it.source_context,
                    it.source_key_id.as_deref(),
                    &it.destination_key_id,
                    &it.destination_context,
                )
                .await
            })
            .buffered(REENCRYPT_BATCH_CONCURRENCY)
            .collect()
            .await)
    }

    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
        number_of_bytes: usize,
    ) -> Result<GeneratedDataKey, KmsError> {
        self.inner
            .generate_data_key(key_id, context, number_of_bytes, true)
            .await
    }

    async fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        context: &EncryptionContext,
        number_of_bytes: usize,
    ) -> Result<GeneratedDataKey, KmsError> {
        self.inner
            .generate_data_key(key_id, context, number_of_bytes, false)
            .await
    }

    async fn generate_random(&self, number_of_bytes: usize) -> Result<Vec<u8>, KmsError> {
        self.inner.generate_random(number_of_bytes).await
    }

    async fn create_reserved_alias(
        &self,
        alias_name: &str,
        target_key_id: &str,
    ) -> Result<(), KmsError> {
        self.inner
            .create_alias(alias_name, target_key_id, true)
            .await
    }

    async fn run_maintenance(&self) -> Result<MaintenanceReport, KmsError> {
        self.inner.run_maintenance().await
    }
}

#[cfg(test)]
#[path = "transit_tests.rs"]
mod tests;
