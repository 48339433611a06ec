//! The `aws-kms` backend: any service speaking the AWS KMS API (AWS KMS itself, or an emulator
//! such as moto for tests), through the official SDK (aws-sdk-kms).
//!
//! The remote KMS owns the keys, their state, deletion windows and rotations; this backend
//! translates [`Kms`] calls and AWS's exceptions. What it adds on top of the wire API:
//! - Parameter bounds are checked before sending (the shared [`validate`] rules, AWS's own
//!   bounds and messages), so a lax emulator answers as AWS would.
//! - Calls that AWS only accepts with a key ID or key ARN (EnableKey, DisableKey,
//!   Schedule/CancelKeyDeletion, rotation calls, ListAliases' filter) also take an alias or
//!   alias ARN, as the trait promises: the alias is resolved with DescribeKey first.
//! - DescribeKey adds the rotation settings (GetKeyRotationStatus), which AWS's KeyMetadata
//!   lacks.
//! - Key material versions: AWS exposes no counter (only opaque key material IDs), so
//!   [`KeyMetadata::current_material_version`] is reported as 0 ("unknown"). ListKeyRotations
//!   numbers its entries from their position (the first rotation made version 2), carrying
//!   the offset in the page marker.
//! - Connection failures, timeouts, throttling and 5xx answers are retried a bounded number
//!   of times, then reported as [`KmsError::Unavailable`].
//!
//! `CreateKey` with `aws_managed` creates a customer managed key: AWS creates its managed keys
//! itself (DescribeKey of `alias/aws/s3` creates that one on first use), and reserved
//! `alias/aws/` aliases cannot be created, so `create_reserved_alias` keeps the trait's refusal.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::config::{Credentials, Region};
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::{Blob, DateTime};
use aws_sdk_kms::types::{self as aws, KeySpec, KeyUsageType, Tag};
use aws_sdk_kms::Client;
use zeroize::Zeroizing;

use super::AwsKmsConfig;
use crate::arn::{self, KeyRef};
use crate::kms::*;
use crate::validate;
use crate::KmsError;

/// Default timeout of one attempt (and of connecting).
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default attempts per call, the first included.
const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Upper bound on configured attempts, so a call always ends in bounded time.
const MAX_ATTEMPTS_LIMIT: u32 = 10;

/// A [`Kms`] over a remote AWS KMS API endpoint.
pub struct AwsKms {
    client: Client,
    endpoint: Option<String>,
    region: String,
}

impl std::fmt::Debug for AwsKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsKms")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl AwsKms {
    /// Builds the client. Nothing is sent yet: a KMS that is down at start makes the calls
    /// fail with [`KmsError::Unavailable`], not the start.
    pub fn connect(cfg: &AwsKmsConfig) -> Result<AwsKms, KmsError> {
        if cfg.region.is_empty() {
            return Err(KmsError::Validation("aws-kms: region must be set".into()));
        }
        if let Some(e) = &cfg.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(KmsError::Validation(format!(
                    "aws-kms: endpoint {e:?} must be an http:// or https:// URL"
                )));
            }
        }
        let attempt = cfg
            .attempt_timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_ATTEMPT_TIMEOUT)
            .max(Duration::from_millis(1));
        let attempts = cfg
            .max_attempts
            .unwrap_or(DEFAULT_MAX_ATTEMPTS)
            .clamp(1, MAX_ATTEMPTS_LIMIT);
        let max_backoff = Duration::from_millis(500);
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(attempt)
            .operation_attempt_timeout(attempt)
            // Every attempt plus the backoffs between them.
            .operation_timeout((attempt + max_backoff) * attempts)
            .build();
        let retry = RetryConfig::standard()
            .with_max_attempts(attempts)
            .with_initial_backoff(Duration::from_millis(50))
            .with_max_backoff(max_backoff);
        let mut b = aws_sdk_kms::Config::builder()
            .region(Region::new(cfg.region.clone()))
            .credentials_provider(credentials(cfg)?)
            .timeout_config(timeouts)
            .retry_config(retry);
        if let Some(e) = &cfg.endpoint {
            b = b.endpoint_url(e);
        }
        tracing::info!(
            region = %cfg.region,
            endpoint = cfg.endpoint.as_deref().unwrap_or("AWS"),
            "aws-kms backend"
        );
        Ok(AwsKms {
            client: Client::from_conf(b.build()),
            endpoint: cfg.endpoint.clone(),
            region: cfg.region.clone(),
        })
    }

    /// The key ID or ARN to send where AWS accepts no alias: aliases are resolved to the key
    /// ARN; anything else goes as it is (the KMS judges it).
    async fn key_only(&self, key_id: &str) -> Result<String, KmsError> {
        if is_alias(key_id) {
            Ok(self
                .describe_raw(key_id)
                .await?
                .arn()
                .unwrap_or(key_id)
                .to_owned())
        } else {
            Ok(key_id.to_owned())
        }
    }

    async fn describe_raw(&self, key_id: &str) -> Result<aws::KeyMetadata, KmsError> {
        let out = self
            .client
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeKey", e))?;
        out.key_metadata
            .ok_or_else(|| missing("DescribeKey", "KeyMetadata"))
    }

    async fn rotation_raw(&self, key_id: &str) -> Result<RotationStatus, KmsError> {
        let out = self
            .client
            .get_key_rotation_status()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| sdk_error("GetKeyRotationStatus", e))?;
        Ok(RotationStatus {
            key_id: out.key_id().unwrap_or(key_id).to_owned(),
            enabled: out.key_rotation_enabled(),
            rotation_period_in_days: out.rotation_period_in_days().and_then(to_u32),
            next_rotation_date: out.next_rotation_date().map(DateTime::secs),
            on_demand_rotation_start_date: out.on_demand_rotation_start_date().map(DateTime::secs),
        })
    }

    /// DescribeKey plus the rotation settings.
    async fn describe_full(&self, key_id: &str) -> Result<KeyMetadata, KmsError> {
        let (meta, rotation) = if is_alias(key_id) {
            let meta = self.describe_raw(key_id).await?;
            let rotation = self.rotation_raw(meta.key_id()).await;
            (meta, rotation)
        } else {
            let (meta, rotation) =
                tokio::join!(self.describe_raw(key_id), self.rotation_raw(key_id));
            (meta?, rotation)
        };
        let rotation = match rotation {
            Ok(r) => Some(r),
            // Keys whose rotation cannot be managed (e.g. imported material) report none.
            Err(KmsError::Validation(m)) if m.starts_with("UnsupportedOperationException") => None,
            Err(e) => return Err(e),
        };
        key_metadata(&meta, rotation.as_ref())
    }
}

#[async_trait]
impl Kms for AwsKms {
    async fn create_key(&self, req: CreateKeyRequest) -> Result<KeyMetadata, KmsError> {
        if req.aws_managed {
            tracing::debug!(
                "aws-kms: AWS managed keys cannot be created; creating a customer managed key"
            );
        }
        let tags = req
            .tags
            .iter()
            .map(|(k, v)| {
                Tag::builder()
                    .tag_key(k)
                    .tag_value(v)
                    .build()
                    .map_err(|e| KmsError::Validation(format!("tag {k}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .create_key()
            .description(req.description)
            .key_spec(KeySpec::SymmetricDefault)
            .key_usage(KeyUsageType::EncryptDecrypt)
            .set_tags((!tags.is_empty()).then_some(tags))
            .send()
            .await
            .map_err(|e| sdk_error("CreateKey", e))?;
        let meta = out
            .key_metadata
            .ok_or_else(|| missing("CreateKey", "KeyMetadata"))?;
        // A new key never rotates automatically.
        key_metadata(&meta, None)
    }

    async fn describe_key(&self, key_id: &str) -> Result<KeyMetadata, KmsError> {
        self.describe_full(key_id).await
    }

    async fn list_keys(
        &self,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<KeyListEntry>, KmsError> {
        let limit = validate::limit(limit)?;
        let out = self
            .client
            .list_keys()
            .limit(limit as i32)
            .set_marker(marker.map(str::to_owned))
            .send()
            .await
            .map_err(|e| sdk_error("ListKeys", e))?;
        let items = out
            .keys()
            .iter()
            .filter_map(|k| {
                Some(KeyListEntry {
                    key_id: k.key_id()?.to_owned(),
                    key_arn: k.key_arn()?.to_owned(),
                })
            })
            .collect();
        Ok(Page {
            items,
            next_marker: next_marker(out.truncated(), out.next_marker()),
        })
    }

    async fn create_alias(&self, alias_name: &str, target_key_id: &str) -> Result<(), KmsError> {
        arn::validate_alias_name(alias_name, false)?;
        check_alias_target(target_key_id)?;
        self.client
            .create_alias()
            .alias_name(alias_name)
            .target_key_id(target_key_id)
            .send()
            .await
            .map_err(|e| sdk_error("CreateAlias", e))?;
        Ok(())
    }

    async fn update_alias(&self, alias_name: &str, target_key_id: &str) -> Result<(), KmsError> {
        arn::validate_alias_name(alias_name, false)?;
        check_alias_target(target_key_id)?;
        self.client
            .update_alias()
            .alias_name(alias_name)
            .target_key_id(target_key_id)
            .send()
            .await
            .map_err(|e| sdk_error("UpdateAlias", e))?;
        Ok(())
    }

    async fn delete_alias(&self, alias_name: &str) -> Result<(), KmsError> {
        self.client
            .delete_alias()
            .alias_name(alias_name)
            .send()
            .await
            .map_err(|e| sdk_error("DeleteAlias", e))?;
        Ok(())
    }

    async fn list_aliases(
        &self,
        key_id: Option<&str>,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<AliasEntry>, KmsError> {
        let limit = validate::limit(limit)?;
        let key = match key_id {
            Some(k) => Some(self.key_only(k).await?),
            None => None,
        };
        let out = self
            .client
            .list_aliases()
            .set_key_id(key)
            .limit(limit as i32)
            .set_marker(marker.map(str::to_owned))
            .send()
            .await
            .map_err(|e| sdk_error("ListAliases", e))?;
        let items = out
            .aliases()
            .iter()
            // AWS lists its predefined aliases (`alias/aws/...`) before their key exists,
            // without a target: those name no key yet.
            .filter_map(|a| {
                Some(AliasEntry {
                    alias_name: a.alias_name()?.to_owned(),
                    alias_arn: a.alias_arn()?.to_owned(),
                    target_key_id: a.target_key_id()?.to_owned(),
                    creation_date: a.creation_date().map(DateTime::secs).unwrap_or(0),
                })
            })
            .collect();
        Ok(Page {
            items,
            next_marker: next_marker(out.truncated(), out.next_marker()),
        })
    }

    async fn enable_key(&self, key_id: &str) -> Result<(), KmsError> {
        let key = self.key_only(key_id).await?;
        self.client
            .enable_key()
            .key_id(key)
            .send()
            .await
            .map_err(|e| sdk_error("EnableKey", e))?;
        Ok(())
    }

    async fn disable_key(&self, key_id: &str) -> Result<(), KmsError> {
        let key = self.key_only(key_id).await?;
        self.client
            .disable_key()
            .key_id(key)
            .send()
            .await
            .map_err(|e| sdk_error("DisableKey", e))?;
        Ok(())
    }

    async fn schedule_key_deletion(
        &self,
        key_id: &str,
        pending_window_in_days: Option<u32>,
    ) -> Result<KeyMetadata, KmsError> {
        let window = validate::pending_window(pending_window_in_days)?;
        let key = self.key_only(key_id).await?;
        let out = self
            .client
            .schedule_key_deletion()
            .key_id(&key)
            .pending_window_in_days(window as i32)
            .send()
            .await
            .map_err(|e| sdk_error("ScheduleKeyDeletion", e))?;
        let mut m = self.describe_full(out.key_id().unwrap_or(&key)).await?;
        // DescribeKey reports the window only for multi-Region replicas; AWS answers it here
        // and, when it does not, it is the window that was asked for.
        m.pending_deletion_window_in_days = Some(
            out.pending_window_in_days()
                .and_then(to_u32)
                .unwrap_or(window),
        );
        if m.deletion_date.is_none() {
            m.deletion_date = out.deletion_date().map(DateTime::secs);
        }
        Ok(m)
    }

    async fn cancel_key_deletion(&self, key_id: &str) -> Result<KeyMetadata, KmsError> {
        let key = self.key_only(key_id).await?;
        let out = self
            .client
            .cancel_key_deletion()
            .key_id(&key)
            .send()
            .await
            .map_err(|e| sdk_error("CancelKeyDeletion", e))?;
        self.describe_full(out.key_id().unwrap_or(&key)).await
    }

    async fn enable_key_rotation(
        &self,
        key_id: &str,
        rotation_period_in_days: Option<u32>,
    ) -> Result<(), KmsError> {
        let period = validate::rotation_period(rotation_period_in_days)?;
        let key = self.key_only(key_id).await?;
        self.client
            .enable_key_rotation()
            .key_id(key)
            .rotation_period_in_days(period as i32)
            .send()
            .await
            .map_err(|e| sdk_error("EnableKeyRotation", e))?;
        Ok(())
    }

    async fn disable_key_rotation(&self, key_id: &str) -> Result<(), KmsError> {
        let key = self.key_only(key_id).await?;
        self.client
            .disable_key_rotation()
            .key_id(key)
            .send()
            .await
            .map_err(|e| sdk_error("DisableKeyRotation", e))?;
        Ok(())
    }

    async fn get_key_rotation_status(&self, key_id: &str) -> Result<RotationStatus, KmsError> {
        let key = self.key_only(key_id).await?;
        self.rotation_raw(&key).await
    }

    async fn rotate_key_on_demand(&self, key_id: &str) -> Result<String, KmsError> {
        let key = self.key_only(key_id).await?;
        let out = self
            .client
            .rotate_key_on_demand()
            .key_id(&key)
            .send()
            .await
            .map_err(|e| sdk_error("RotateKeyOnDemand", e))?;
        Ok(out.key_id().unwrap_or(&key).to_owned())
    }

    async fn list_key_rotations(
        &self,
        key_id: &str,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<RotationEntry>, KmsError> {
        let limit = validate::limit(limit)?;
        let (offset, remote_marker) = match marker {
            None => (0u32, None),
            Some(m) => {
                let bad = || KmsError::InvalidMarker(format!("Invalid marker '{m}'"));
                let (offset, rest) = m.split_once(':').ok_or_else(bad)?;
                (
                    offset.parse::<u32>().map_err(|_| bad())?,
                    Some(rest.to_owned()),
                )
            }
        };
        let key = self.key_only(key_id).await?;
        let out = self
            .client
            .list_key_rotations()
            .key_id(&key)
            .limit(limit as i32)
            .set_marker(remote_marker)
            .send()
            .await
            .map_err(|e| sdk_error("ListKeyRotations", e))?;
        let items: Vec<RotationEntry> = out
            .rotations()
            .iter()
            .zip(offset..)
            .map(|(r, i)| RotationEntry {
                key_id: r.key_id().unwrap_or(&key).to_owned(),
                // Rotations are listed oldest first; rotation n made key material n + 1.
                material_version: i.saturating_add(2),
                rotation_date: r.rotation_date().map(DateTime::secs).unwrap_or(0),
                rotation_type: r
                    .rotation_type()
                    .map(|t| t.as_str().to_owned())
                    .unwrap_or_default(),
            })
            .collect();
        let next = offset.saturating_add(items.len() as u32);
        Ok(Page {
            next_marker: next_marker(out.truncated(), out.next_marker())
                .map(|m| format!("{next}:{m}")),
            items,
        })
    }

    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Encrypted, KmsError> {
        validate::plaintext(plaintext)?;
        let out = self
            .client
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(plaintext))
            .set_encryption_context(aws_context(context))
            .send()
            .await
            .map_err(|e| sdk_error("Encrypt", e))?;
        Ok(Encrypted {
            key_id: out
                .key_id()
                .ok_or_else(|| missing("Encrypt", "KeyId"))?
                .to_owned(),
            ciphertext_blob: out
                .ciphertext_blob
                .ok_or_else(|| missing("Encrypt", "CiphertextBlob"))?
                .into_inner(),
        })
    }

    async fn decrypt(
        &self,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
        key_id: Option<&str>,
    ) -> Result<Decrypted, KmsError> {
        validate::ciphertext(ciphertext_blob)?;
        let out = self
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(ciphertext_blob))
            .set_encryption_context(aws_context(context))
            .set_key_id(key_id.map(str::to_owned))
            .send()
            .await
            .map_err(|e| sdk_error("Decrypt", e))?;
        let plaintext = Zeroizing::new(
            out.plaintext
                .ok_or_else(|| missing("Decrypt", "Plaintext"))?
                .into_inner(),
        );
        Ok(Decrypted {
            key_id: out.key_id.ok_or_else(|| missing("Decrypt", "KeyId"))?,
            plaintext,
        })
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
        let out = self
            .client
            .re_encrypt()
            .ciphertext_blob(Blob::new(ciphertext_blob))
            .set_source_encryption_context(aws_context(source_context))
            .set_source_key_id(source_key_id.map(str::to_owned))
            .destination_key_id(destination_key_id)
            .set_destination_encryption_context(aws_context(destination_context))
            .send()
            .await
            .map_err(|e| sdk_error("ReEncrypt", e))?;
        Ok(ReEncrypted {
            source_key_id: out
                .source_key_id
                .ok_or_else(|| missing("ReEncrypt", "SourceKeyId"))?,
            key_id: out.key_id.ok_or_else(|| missing("ReEncrypt", "KeyId"))?,
            ciphertext_blob: out
                .ciphertext_blob
                .ok_or_else(|| missing("ReEncrypt", "CiphertextBlob"))?
                .into_inner(),
        })
    }

    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
        number_of_bytes: usize,
    ) -> Result<GeneratedDataKey, KmsError> {
        validate::data_key_bytes(number_of_bytes)?;
        let out = self
            .client
            .generate_data_key()
            .key_id(key_id)
            .number_of_bytes(number_of_bytes as i32)
            .set_encryption_context(aws_context(context))
            .send()
            .await
            .map_err(|e| sdk_error("GenerateDataKey", e))?;
        let plaintext = Zeroizing::new(
            out.plaintext
                .ok_or_else(|| missing("GenerateDataKey", "Plaintext"))?
                .into_inner(),
        );
        Ok(GeneratedDataKey {
            key_id: out
                .key_id
                .ok_or_else(|| missing("GenerateDataKey", "KeyId"))?,
            plaintext: Some(plaintext),
            ciphertext_blob: out
                .ciphertext_blob
                .ok_or_else(|| missing("GenerateDataKey", "CiphertextBlob"))?
                .into_inner(),
        })
    }

    async fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        context: &EncryptionContext,
        number_of_bytes: usize,
    ) -> Result<GeneratedDataKey, KmsError> {
        validate::data_key_bytes(number_of_bytes)?;
        const OP: &str = "GenerateDataKeyWithoutPlaintext";
        let out = self
            .client
            .generate_data_key_without_plaintext()
            .key_id(key_id)
            .number_of_bytes(number_of_bytes as i32)
            .set_encryption_context(aws_context(context))
            .send()
            .await
            .map_err(|e| sdk_error(OP, e))?;
        Ok(GeneratedDataKey {
            key_id: out.key_id.ok_or_else(|| missing(OP, "KeyId"))?,
            plaintext: None,
            ciphertext_blob: out
                .ciphertext_blob
                .ok_or_else(|| missing(OP, "CiphertextBlob"))?
                .into_inner(),
        })
    }

    async fn generate_random(&self, number_of_bytes: usize) -> Result<Vec<u8>, KmsError> {
        validate::random_bytes(number_of_bytes)?;
        let out = self
            .client
            .generate_random()
            .number_of_bytes(number_of_bytes as i32)
            .send()
            .await
            .map_err(|e| sdk_error("GenerateRandom", e))?;
        Ok(out
            .plaintext
            .ok_or_else(|| missing("GenerateRandom", "Plaintext"))?
            .into_inner())
    }

    fn is_secure(&self) -> bool {
        true
    }
}

/// Credentials from the config, else from the standard AWS environment variables.
fn credentials(cfg: &AwsKmsConfig) -> Result<Credentials, KmsError> {
    const SOURCE: &str = "coffer-kms-config";
    match (&cfg.access_key_id, &cfg.secret_access_key) {
        (Some(id), Some(secret)) => Ok(Credentials::new(
            id,
            secret.expose(),
            cfg.session_token.as_ref().map(|t| t.expose().to_owned()),
            None,
            SOURCE,
        )),
        (Some(_), None) | (None, Some(_)) => Err(KmsError::Validation(
            "aws-kms: set both access_key_id and secret_access_key, or neither (to use \
             AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
                .into(),
        )),
        (None, None) => {
            let id = std::env::var("AWS_ACCESS_KEY_ID").ok();
            let secret = std::env::var("AWS_SECRET_ACCESS_KEY")
                .ok()
                .map(Zeroizing::new);
            match (id, secret) {
                (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
                    let token = std::env::var("AWS_SESSION_TOKEN")
                        .ok()
                        .filter(|t| !t.is_empty());
                    Ok(Credentials::new(
                        id,
                        secret.as_str(),
                        token,
                        None,
                        "environment",
                    ))
                }
                _ => Err(KmsError::Validation(
                    "aws-kms: no credentials: set access_key_id and secret_access_key in the \
                     config, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                        .into(),
                )),
            }
        }
    }
}

/// `alias/x` or `arn:...:alias/x`.
fn is_alias(key_id: &str) -> bool {
    key_id.starts_with("alias/") || (key_id.starts_with("arn:") && key_id.contains(":alias/"))
}

/// CreateAlias/UpdateAlias point at keys, never at other aliases (AWS: ValidationException).
fn check_alias_target(target: &str) -> Result<(), KmsError> {
    if matches!(
        KeyRef::parse(target),
        Ok(KeyRef::Alias(_) | KeyRef::AliasArn { .. })
    ) {
        return Err(KmsError::Validation(format!(
            "{target} is an alias; the target must be a key ID or key ARN"
        )));
    }
    Ok(())
}

fn aws_context(c: &EncryptionContext) -> Option<HashMap<String, String>> {
    (!c.is_empty()).then(|| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn to_u32(v: i32) -> Option<u32> {
    u32::try_from(v).ok()
}

fn next_marker(truncated: bool, marker: Option<&str>) -> Option<String> {
    marker
        .filter(|m| truncated && !m.is_empty())
        .map(str::to_owned)
}

fn missing(op: &str, field: &str) -> KmsError {
    KmsError::Internal(format!("{op}: the KMS answered without {field}"))
}

/// Converts AWS's KeyMetadata; `rotation` from GetKeyRotationStatus (none: rotation off).
fn key_metadata(
    m: &aws::KeyMetadata,
    rotation: Option<&RotationStatus>,
) -> Result<KeyMetadata, KmsError> {
    let arn = m
        .arn()
        .ok_or_else(|| missing("DescribeKey", "Arn"))?
        .to_owned();
    let account = match m.aws_account_id() {
        Some(a) => a.to_owned(),
        None => arn.split(':').nth(4).unwrap_or_default().to_owned(),
    };
    let key_state = match m.key_state() {
        Some(aws::KeyState::Enabled) | Some(aws::KeyState::Updating) => KeyState::Enabled,
        Some(aws::KeyState::PendingDeletion) | Some(aws::KeyState::PendingReplicaDeletion) => {
            KeyState::PendingDeletion
        }
        // Disabled, Unavailable, PendingImport, Creating and states added later: the key
        // refuses cryptographic operations, which is what `Disabled` means here.
        _ => KeyState::Disabled,
    };
    let rotation_enabled = rotation.is_some_and(|r| r.enabled);
    Ok(KeyMetadata {
        key_id: m.key_id().to_owned(),
        arn,
        aws_account_id: account,
        creation_date: m.creation_date().map(DateTime::secs).unwrap_or(0),
        enabled: m.enabled(),
        description: m.description().unwrap_or_default().to_owned(),
        key_state,
        key_manager: match m.key_manager() {
            Some(aws::KeyManagerType::Aws) => KeyManager::Aws,
            _ => KeyManager::Customer,
        },
        deletion_date: m.deletion_date().map(DateTime::secs),
        pending_deletion_window_in_days: m.pending_deletion_window_in_days().and_then(to_u32),
        rotation_enabled,
        rotation_period_in_days: rotation
            .filter(|r| r.enabled)
            .and_then(|r| r.rotation_period_in_days),
        // AWS KMS exposes no material version counter; 0 says "unknown".
        current_material_version: 0,
    })
}

/// Maps an SDK error to the AWS exception it carries; unreachable, timed out, throttled or
/// failing (5xx) services become [`KmsError::Unavailable`].
fn sdk_error<E>(op: &'static str, err: SdkError<E, HttpResponse>) -> KmsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let e = match &err {
        SdkError::TimeoutError(_) => {
            KmsError::Unavailable(format!("{op}: the KMS did not answer in time"))
        }
        SdkError::DispatchFailure(_) => KmsError::Unavailable(format!(
            "{op}: cannot reach the KMS: {}",
            DisplayErrorContext(&err)
        )),
        SdkError::ResponseError(r) if r.raw().status().is_server_error() => {
            KmsError::Unavailable(format!(
                "{op}: the KMS failed with HTTP {}",
                r.raw().status().as_u16()
            ))
        }
        SdkError::ServiceError(s) => from_code(
            op,
            err.code(),
            err.message().unwrap_or_default(),
            s.raw().status().as_u16(),
        ),
        _ => KmsError::Internal(format!("{op}: {}", DisplayErrorContext(&err))),
    };
    tracing::debug!(op, error = %e, "KMS call failed");
    e
}

/// An AWS KMS exception by its code (`__type`); codes the trait has no name for keep the code
/// in the message.
fn from_code(op: &str, code: Option<&str>, message: &str, status: u16) -> KmsError {
    let Some(code) = code else {
        let m = format!("{op}: HTTP {status} without an error code: {message}");
        return if status >= 500 {
            KmsError::Unavailable(m)
        } else {
            KmsError::Internal(m)
        };
    };
    if let Some(e) = KmsError::from_aws_name(code, message) {
        return e;
    }
    let m = format!("{code}: {message}");
    match code {
        "InvalidAliasNameException"
        | "InvalidKeyUsageException"
        | "UnsupportedOperationException"
        | "InvalidGrantTokenException"
        | "InvalidGrantIdException"
        | "MalformedPolicyDocumentException"
        | "TagException" => KmsError::Validation(m),
        "KeyUnavailableException"
        | "ThrottlingException"
        | "ThrottledException"
        | "RequestLimitExceeded"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "InternalFailure"
        | "RequestTimeout"
        | "RequestTimeoutException" => KmsError::Unavailable(m),
        _ => {
            tracing::warn!(op, code, "KMS exception without a Coffer equivalent");
            KmsError::Internal(m)
        }
    }
}

#[cfg(test)]
#[path = "aws_tests.rs"]
mod tests;
