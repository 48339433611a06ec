//! The `Kms` trait: the part of the AWS KMS API that S3 needs, and its request/response types.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::KmsError;
use crate::validate;

/// An encryption context: bound to a ciphertext as AAD; decrypting needs the same map.
pub type EncryptionContext = BTreeMap<String, String>;

/// Who manages a key, as `KeyManager` in DescribeKey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyManager {
    /// `AWS`: an AWS-managed-style key such as `alias/aws/s3` or the SSE-S3 key.
    Aws,
    /// `CUSTOMER`: created by a user.
    Customer,
}

/// `KeyState` as AWS KMS reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    /// Usable.
    Enabled,
    /// Refuses cryptographic operations until enabled again.
    Disabled,
    /// Scheduled for deletion; refuses cryptographic operations.
    PendingDeletion,
}

impl KeyState {
    /// The AWS spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
        }
    }
}

/// Parameters of CreateKey (symmetric `SYMMETRIC_DEFAULT`, `ENCRYPT_DECRYPT` keys only).
#[derive(Debug, Clone, Default)]
pub struct CreateKeyRequest {
    /// `Description`.
    pub description: String,
    /// Creates an AWS-managed-style key (KeyManager `AWS`) when true.
    pub aws_managed: bool,
    /// Tags, kept and returned by DescribeKey's callers that want them.
    pub tags: BTreeMap<String, String>,
}

/// `KeyMetadata` of DescribeKey / CreateKey.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyMetadata {
    /// The key ID (a UUID).
    pub key_id: String,
    /// `arn:aws:kms:<region>:<account>:key/<key_id>`.
    pub arn: String,
    /// The 12-digit account ID.
    pub aws_account_id: String,
    /// Seconds since the Unix epoch.
    pub creation_date: i64,
    /// True only in state `Enabled`.
    pub enabled: bool,
    /// `Description`.
    pub description: String,
    /// `KeyState`.
    pub key_state: KeyState,
    /// `KeyManager`.
    pub key_manager: KeyManager,
    /// Seconds since the epoch when a pending deletion completes.
    pub deletion_date: Option<i64>,
    /// `PendingDeletionWindowInDays` while pending deletion.
    pub pending_deletion_window_in_days: Option<u32>,
    /// Automatic rotation on.
    pub rotation_enabled: bool,
    /// The rotation period in days when rotation is on.
    pub rotation_period_in_days: Option<u32>,
    /// The current key material version (1 for a new key, +1 per rotation).
    pub current_material_version: u32,
}

/// An entry of ListKeys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyListEntry {
    /// Key ID.
    pub key_id: String,
    /// Key ARN.
    pub key_arn: String,
}

/// An entry of ListAliases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasEntry {
    /// `alias/<name>`.
    pub alias_name: String,
    /// `arn:aws:kms:<region>:<account>:alias/<name>`.
    pub alias_arn: String,
    /// The key it points at.
    pub target_key_id: String,
    /// Seconds since the epoch.
    pub creation_date: i64,
}

/// An entry of ListKeyRotations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RotationEntry {
    /// Key ID.
    pub key_id: String,
    /// The key material version this rotation created.
    pub material_version: u32,
    /// Seconds since the epoch.
    pub rotation_date: i64,
    /// `AUTOMATIC` or `ON_DEMAND`.
    pub rotation_type: String,
}

/// GetKeyRotationStatus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RotationStatus {
    /// Key ID.
    pub key_id: String,
    /// `KeyRotationEnabled`.
    pub enabled: bool,
    /// `RotationPeriodInDays`.
    pub rotation_period_in_days: Option<u32>,
    /// `NextRotationDate`, seconds since the epoch.
    pub next_rotation_date: Option<i64>,
    /// `OnDemandRotationStartDate`, seconds since the epoch.
    pub on_demand_rotation_start_date: Option<i64>,
}

/// A page of a list call: the items, and the marker of the next page if truncated.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// Items.
    pub items: Vec<T>,
    /// `NextMarker`; `None` when not truncated.
    pub next_marker: Option<String>,
}

/// Result of Encrypt.
#[derive(Debug, Clone)]
pub struct Encrypted {
    /// The ARN of the key used.
    pub key_id: String,
    /// The ciphertext blob.
    pub ciphertext_blob: Vec<u8>,
}

/// Result of Decrypt. The plaintext zeroizes on drop.
pub struct Decrypted {
    /// The ARN of the key that decrypted.
    pub key_id: String,
    /// The plaintext.
    pub plaintext: Zeroizing<Vec<u8>>,
}

/// Result of GenerateDataKey (plaintext present) and GenerateDataKeyWithoutPlaintext (absent).
pub struct GeneratedDataKey {
    /// The ARN of the key that wraps the data key.
    pub key_id: String,
    /// The plaintext data key; zeroizes on drop.
    pub plaintext: Option<Zeroizing<Vec<u8>>>,
    /// The wrapped data key.
    pub ciphertext_blob: Vec<u8>,
}

/// Result of ReEncrypt.
#[derive(Debug, Clone)]
pub struct ReEncrypted {
    /// The ARN of the key that had encrypted the source.
    pub source_key_id: String,
    /// The ARN of the destination key.
    pub key_id: String,
    /// The new ciphertext blob.
    pub ciphertext_blob: Vec<u8>,
}

/// One ReEncrypt of a batch ([`Kms::re_encrypt_batch`]): the arguments of [`Kms::re_encrypt`].
#[derive(Debug, Clone)]
pub struct ReEncryptItem {
    /// The ciphertext blob to re-encrypt.
    pub ciphertext_blob: Vec<u8>,
    /// The context it was encrypted under.
    pub source_context: EncryptionContext,
    /// When given, must name the key that encrypted (else `IncorrectKeyException`).
    pub source_key_id: Option<String>,
    /// The key to encrypt under.
    pub destination_key_id: String,
    /// The context to bind to the new blob.
    pub destination_context: EncryptionContext,
}

/// Most items in one [`Kms::re_encrypt_batch`] call (more: [`KmsError::Validation`]).
pub const MAX_REENCRYPT_BATCH: usize = 1000;

/// What [`Kms::run_maintenance`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Keys deleted because their deletion window ended.
    pub keys_deleted: usize,
    /// Keys whose automatic rotation was due and done.
    pub keys_rotated: usize,
}

/// The AWS KMS operations S3 needs. Every `key_id` argument accepts a key ID, key ARN,
/// alias name (`alias/x`) or alias ARN unless documented otherwise. Returned `key_id`s are ARNs.
#[async_trait]
pub trait Kms: Send + Sync + 'static {
    /// CreateKey.
    async fn create_key(&self, req: CreateKeyRequest) -> Result<KeyMetadata, KmsError>;
    /// DescribeKey.
    async fn describe_key(&self, key_id: &str) -> Result<KeyMetadata, KmsError>;
    /// ListKeys.
    async fn list_keys(
        &self,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<KeyListEntry>, KmsError>;
    /// CreateAlias: `alias_name` is `alias/<name>`; `target_key_id` a key ID or ARN.
    async fn create_alias(&self, alias_name: &str, target_key_id: &str) -> Result<(), KmsError>;
    /// UpdateAlias.
    async fn update_alias(&self, alias_name: &str, target_key_id: &str) -> Result<(), KmsError>;
    /// DeleteAlias.
    async fn delete_alias(&self, alias_name: &str) -> Result<(), KmsError>;
    /// ListAliases, optionally only those of one key.
    async fn list_aliases(
        &self,
        key_id: Option<&str>,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<AliasEntry>, KmsError>;
    /// EnableKey.
    async fn enable_key(&self, key_id: &str) -> Result<(), KmsError>;
    /// DisableKey.
    async fn disable_key(&self, key_id: &str) -> Result<(), KmsError>;
    /// ScheduleKeyDeletion, window 7–30 days (default 30). Returns the updated metadata.
    async fn schedule_key_deletion(
        &self,
        key_id: &str,
        pending_window_in_days: Option<u32>,
    ) -> Result<KeyMetadata, KmsError>;
    /// CancelKeyDeletion: the key returns to `Disabled`, as in AWS.
    async fn cancel_key_deletion(&self, key_id: &str) -> Result<KeyMetadata, KmsError>;
    /// EnableKeyRotation (period 90–2560 days, default 365).
    async fn enable_key_rotation(
        &self,
        key_id: &str,
        rotation_period_in_days: Option<u32>,
    ) -> Result<(), KmsError>;
    /// DisableKeyRotation.
    async fn disable_key_rotation(&self, key_id: &str) -> Result<(), KmsError>;
    /// GetKeyRotationStatus.
    async fn get_key_rotation_status(&self, key_id: &str) -> Result<RotationStatus, KmsError>;
    /// RotateKeyOnDemand: new key material; the old stays for Decrypt. Returns the key ID.
    async fn rotate_key_on_demand(&self, key_id: &str) -> Result<String, KmsError>;
    /// ListKeyRotations.
    async fn list_key_rotations(
        &self,
        key_id: &str,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<RotationEntry>, KmsError>;
    /// Encrypt (plaintext up to 4096 bytes).
    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Encrypted, KmsError>;
    /// Decrypt. `key_id`, when given, must match the key that encrypted (else IncorrectKeyException).
    async fn decrypt(
        &self,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
        key_id: Option<&str>,
    ) -> Result<Decrypted, KmsError>;
    /// ReEncrypt under `destination_key_id` with `destination_context`, never exposing the plaintext.
    async fn re_encrypt(
        &self,
        ciphertext_blob: &[u8],
        source_context: &EncryptionContext,
        source_key_id: Option<&str>,
        destination_key_id: &str,
        destination_context: &EncryptionContext,
    ) -> Result<ReEncrypted, KmsError>;
    /// ReEncrypt of up to [`MAX_REENCRYPT_BATCH`] items in one call: one result per item, in
    /// order, each failing on its own exactly as [`Kms::re_encrypt`] of that item would. The
    /// call as a whole fails only for the batch itself (too many items, the KMS unreachable).
    /// The default runs the items one by one through `re_encrypt`; backends that can share key
    /// lookups across items, or save round trips, override it.
    async fn re_encrypt_batch(
        &self,
        items: Vec<ReEncryptItem>,
    ) -> Result<Vec<Result<ReEncrypted, KmsError>>, KmsError> {
        validate::re_encrypt_batch(items.len())?;
        let mut out = Vec::with_capacity(items.len());
        for it in &items {
            out.push(
                self.re_encrypt(
                    &it.ciphertext_blob,
                    &it.source_context,
                    it.source_key_id.as_deref(),
                    &it.destination_key_id,
                    &it.destination_context,
                )
                .await,
            );
        }
        Ok(out)
    }
    /// GenerateDataKey of `number_of_bytes` (1–1024; S3 uses 32).
    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
        number_of_bytes: usize,
    ) -> Result<GeneratedDataKey, KmsError>;
    /// GenerateDataKeyWithoutPlaintext.
    async fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        context: &EncryptionContext,
        number_of_bytes: usize,
    ) -> Result<GeneratedDataKey, KmsError>;
    /// GenerateRandom (1–1024 bytes).
    async fn generate_random(&self, number_of_bytes: usize) -> Result<Vec<u8>, KmsError>;
    /// CreateAlias allowing the reserved `alias/aws/` prefix, for Coffer's own AWS-managed-style
    /// keys (e.g. `alias/aws/s3`). Backends that cannot create such aliases refuse.
    async fn create_reserved_alias(
        &self,
        alias_name: &str,
        target_key_id: &str,
    ) -> Result<(), KmsError> {
        let _ = target_key_id;
        Err(KmsError::Validation(format!(
            "this KMS backend cannot create the reserved alias {alias_name}"
        )))
    }
    /// Periodic housekeeping the caller runs every few minutes: deletes keys whose deletion
    /// window ended and performs due automatic rotations. A no-op where the backend (or the
    /// remote KMS) does this itself.
    async fn run_maintenance(&self) -> Result<MaintenanceReport, KmsError> {
        Ok(MaintenanceReport::default())
    }
    /// Whether this backend is fit for production (TiKV's `is_secure`); test keystores say false.
    fn is_secure(&self) -> bool {
        true
    }
}
