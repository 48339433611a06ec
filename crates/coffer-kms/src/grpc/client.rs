//! The gRPC client: a [`Kms`] backed by a remote `coffer kms`.
//!
//! One lazily connected channel is shared by every call (HTTP/2 multiplexing), so a gateway
//! starts while the KMS is down. Each call has a deadline covering all its attempts; only
//! `Unavailable` is retried, a bounded number of times with doubling backoff, and never for
//! CreateKey (not idempotent). When the KMS is down, calls fail fast with
//! [`KmsError::Unavailable`]. A ReEncryptBatch gets one deadline per
//! [`BATCH_ITEMS_PER_DEADLINE`] items, so a full batch to a slow backend is not cut short at
//! the deadline of a single call.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use coffer_proto::kms as pb;
use coffer_proto::kms::kms_client::KmsClient;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};
use zeroize::Zeroizing;

use super::convert::{batch_result_from_pb, count_to_pb, error_from_status};
use super::MAX_MESSAGE_BYTES;
use crate::kms::*;
use crate::validate;
use crate::KmsError;

/// Items of a ReEncryptBatch covered by one [`ClientConfig::timeout`]: a batch of 1000 has
/// ten times a single call's deadline.
pub const BATCH_ITEMS_PER_DEADLINE: usize = 100;

/// The deadline of a ReEncryptBatch of `items` items: `timeout` per started
/// [`BATCH_ITEMS_PER_DEADLINE`].
fn batch_deadline(timeout: Duration, items: usize) -> Duration {
    let shares = items.div_ceil(BATCH_ITEMS_PER_DEADLINE).max(1);
    timeout.saturating_mul(u32::try_from(shares).unwrap_or(u32::MAX))
}

/// Settings of a [`GrpcKmsClient`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientConfig {
    /// The KMS endpoint, e.g. `http://kms.internal:9100`.
    pub endpoint: String,
    /// Deadline of one call, all retries included (default 5 s).
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// TCP connect timeout of one attempt (default 1 s).
    #[serde(with = "millis")]
    pub connect_timeout: Duration,
    /// Retries after an `Unavailable` failure (default 2).
    pub retries: u32,
    /// First backoff between attempts, doubled each retry (default 50 ms).
    #[serde(with = "millis")]
    pub backoff: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoint: "http://127.0.0.1:9100".into(),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            retries: 2,
            backoff: Duration::from_millis(50),
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// A [`Kms`] over gRPC. Cheap to clone; clones share the channel.
#[derive(Clone)]
pub struct GrpcKmsClient {
    client: KmsClient<Channel>,
    cfg: ClientConfig,
}

impl std::fmt::Debug for GrpcKmsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcKmsClient")
            .field("endpoint", &self.cfg.endpoint)
            .finish()
    }
}

impl GrpcKmsClient {
    /// Creates the client without connecting; the first call connects.
    pub fn connect_lazy(cfg: ClientConfig) -> Result<Self, KmsError> {
        let endpoint = Endpoint::from_shared(cfg.endpoint.clone())
            .map_err(|e| {
                KmsError::Validation(format!("invalid KMS endpoint '{}': {e}", cfg.endpoint))
            })?
            // No channel-wide timeout: each call sets its own deadline (see `call_within`).
            .connect_timeout(cfg.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        Ok(GrpcKmsClient {
            client: KmsClient::new(endpoint.connect_lazy())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            cfg,
        })
    }

    /// Runs one rpc with the deadline and retry policy of the module doc.
    async fn call<Req, Resp, F, Fut>(&self, req: Req, retry: bool, f: F) -> Result<Resp, KmsError>
    where
        Req: Clone,
        F: Fn(KmsClient<Channel>, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        self.call_within(self.cfg.timeout, req, retry, f).await
    }

    /// [`Self::call`] with a deadline of `timeout`, all attempts included.
    async fn call_within<Req, Resp, F, Fut>(
        &self,
        timeout: Duration,
        req: Req,
        retry: bool,
        f: F,
    ) -> Result<Resp, KmsError>
    where
        Req: Clone,
        F: Fn(KmsClient<Channel>, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let deadline = Instant::now() + timeout;
        let mut backoff = self.cfg.backoff;
        let mut attempt = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let mut r = Request::new(req.clone());
            r.set_timeout(remaining);
            let res = match tokio::time::timeout(remaining, f(self.client.clone(), r)).await {
                Ok(res) => res,
                Err(_) => Err(Status::deadline_exceeded("KMS call deadline exceeded")),
            };
            match res {
                Ok(resp) => return Ok(resp.into_inner()),
                Err(s) if retry && s.code() == Code::Unavailable && attempt < self.cfg.retries => {
                    attempt += 1;
                    if Instant::now() + backoff >= deadline {
                        return Err(error_from_status(&s));
                    }
                    tracing::debug!(attempt, error = %s.message(), "KMS unavailable, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(s) => return Err(error_from_status(&s)),
            }
        }
    }
}

fn page<T, U: Into<T>>(items: Vec<U>, next_marker: Option<String>) -> Page<T> {
    Page {
        items: items.into_iter().map(Into::into).collect(),
        next_marker,
    }
}

fn key(key_id: &str) -> pb::KeyIdRequest {
    pb::KeyIdRequest {
        key_id: key_id.to_owned(),
    }
}

#[async_trait]
impl Kms for GrpcKmsClient {
    async fn create_key(&self, req: CreateKeyRequest) -> Result<KeyMetadata, KmsError> {
        let r = pb::CreateKeyRequest {
            description: req.description,
            aws_managed: req.aws_managed,
            tags: req.tags,
        };
        self.call(r, false, |mut c, r| async move { c.create_key(r).await })
            .await?
            .try_into()
    }

    async fn describe_key(&self, key_id: &str) -> Result<KeyMetadata, KmsError> {
        self.call(key(key_id), true, |mut c, r| async move {
            c.describe_key(r).await
        })
        .await?
        .try_into()
    }

    async fn list_keys(
        &self,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<KeyListEntry>, KmsError> {
        let r = pb::ListKeysRequest {
            limit,
            marker: marker.map(str::to_owned),
        };
        let p = self
            .call(r, true, |mut c, r| async move { c.list_keys(r).await })
            .await?;
        Ok(page(p.keys, p.next_marker))
    }

    async fn create_alias(&self, alias_name: &str, target_key_id: &str) -> Result<(), KmsError> {
        let r = pb::AliasRequest {
            alias_name: alias_name.into(),
            target_key_id: target_key_id.into(),
        };
        self.call(r, true, |mut c, r| async move { c.create_alias(r).await })
            .await
            .map(drop)
    }

    async fn update_alias(&self, alias_name: &str, target_key_id: &str) -> Result<(), KmsError> {
        let r = pb::AliasRequest {
            alias_name: alias_name.into(),
            target_key_id: target_key_id.into(),
        };
        self.call(r, true, |mut c, r| async move { c.update_alias(r).await })
            .await
            .map(drop)
    }

    async fn delete_alias(&self, alias_name: &str) -> Result<(), KmsError> {
        let r = pb::DeleteAliasRequest {
            alias_name: alias_name.into(),
        };
        self.call(r, true, |mut c, r| async move { c.delete_alias(r).await })
            .await
            .map(drop)
    }

    async fn list_aliases(
        &self,
        key_id: Option<&str>,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<AliasEntry>, KmsError> {
        let r = pb::ListAliasesRequest {
            key_id: key_id.map(str::to_owned),
            limit,
            marker: marker.map(str::to_owned),
        };
        let p = self
            .call(r, true, |mut c, r| async move { c.list_aliases(r).await })
            .await?;
        Ok(page(p.aliases, p.next_marker))
    }

    async fn enable_key(&self, key_id: &str) -> Result<(), KmsError> {
        self.call(key(key_id), true, |mut c, r| async move {
            c.enable_key(r).await
        })
        .await
        .map(drop)
    }

    async fn disable_key(&self, key_id: &str) -> Result<(), KmsError> {
        self.call(key(key_id), true, |mut c, r| async move {
            c.disable_key(r).await
        })
        .await
        .map(drop)
    }

    async fn schedule_key_deletion(
        &self,
        key_id: &str,
        pending_window_in_days: Option<u32>,
    ) -> Result<KeyMetadata, KmsError> {
        let r = pb::ScheduleKeyDeletionRequest {
            key_id: key_id.into(),
            pending_window_in_days,
        };
        self.call(r, true, |mut c, r| async move {
            c.schedule_key_deletion(r).await
        })
        .await?
        .try_into()
    }

    async fn cancel_key_deletion(&self, key_id: &str) -> Result<KeyMetadata, KmsError> {
        self.call(key(key_id), true, |mut c, r| async move {
            c.cancel_key_deletion(r).await
        })
        .await?
        .try_into()
    }

    async fn enable_key_rotation(
        &self,
        key_id: &str,
        rotation_period_in_days: Option<u32>,
    ) -> Result<(), KmsError> {
        let r = pb::EnableKeyRotationRequest {
            key_id: key_id.into(),
            rotation_period_in_days,
        };
        self.call(
            r,
            true,
            |mut c, r| async move { c.enable_key_rotation(r).await },
        )
        .await
        .map(drop)
    }

    async fn disable_key_rotation(&self, key_id: &str) -> Result<(), KmsError> {
        self.call(key(key_id), true, |mut c, r| async move {
            c.disable_key_rotation(r).await
        })
        .await
        .map(drop)
    }

    async fn get_key_rotation_status(&self, key_id: &str) -> Result<RotationStatus, KmsError> {
        Ok(self
            .call(key(key_id), true, |mut c, r| async move {
                c.get_key_rotation_status(r).await
            })
            .await?
            .into())
    }

    async fn rotate_key_on_demand(&self, key_id: &str) -> Result<String, KmsError> {
        // A retried rotation could rotate twice; harmless (old material stays) but not retried.
        Ok(self
            .call(key(key_id), false, |mut c, r| async move {
                c.rotate_key_on_demand(r).await
            })
            .await?
            .key_id)
    }

    async fn list_key_rotations(
        &self,
        key_id: &str,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<RotationEntry>, KmsError> {
        let r = pb::ListKeyRotationsRequest {
            key_id: key_id.into(),
            limit,
            marker: marker.map(str::to_owned),
        };
        let p = self
            .call(
                r,
                true,
                |mut c, r| async move { c.list_key_rotations(r).await },
            )
            .await?;
        Ok(page(p.rotations, p.next_marker))
    }

    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Encrypted, KmsError> {
        let r = pb::EncryptRequest {
            key_id: key_id.into(),
            plaintext: plaintext.to_vec(),
            encryption_context: context.clone(),
        };
        let e = self
            .call(r, true, |mut c, r| async move { c.encrypt(r).await })
            .await?;
        Ok(Encrypted {
            key_id: e.key_id,
            ciphertext_blob: e.ciphertext_blob,
        })
    }

    async fn decrypt(
        &self,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
        key_id: Option<&str>,
    ) -> Result<Decrypted, KmsError> {
        let r = pb::DecryptRequest {
            ciphertext_blob: ciphertext_blob.to_vec(),
            encryption_context: context.clone(),
            key_id: key_id.map(str::to_owned),
        };
        let d = self
            .call(r, true, |mut c, r| async move { c.decrypt(r).await })
            .await?;
        Ok(Decrypted {
            key_id: d.key_id,
            plaintext: Zeroizing::new(d.plaintext),
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
        let r = pb::ReEncryptRequest {
            ciphertext_blob: ciphertext_blob.to_vec(),
            source_encryption_context: source_context.clone(),
            source_key_id: source_key_id.map(str::to_owned),
            destination_key_id: destination_key_id.into(),
            destination_encryption_context: destination_context.clone(),
        };
        Ok(self
            .call(r, true, |mut c, r| async move { c.re_encrypt(r).await })
            .await?
            .into())
    }

    async fn re_encrypt_batch(
        &self,
        items: Vec<ReEncryptItem>,
    ) -> Result<Vec<Result<ReEncrypted, KmsError>>, KmsError> {
        // Refused here too, so an oversized batch costs no round trip.
        validate::re_encrypt_batch(items.len())?;
        let n = items.len();
        let r = pb::ReEncryptBatchRequest {
            items: items.iter().map(Into::into).collect(),
        };
        let resp = self
            .call_within(
                batch_deadline(self.cfg.timeout, n),
                r,
                true,
                |mut c, r| async move { c.re_encrypt_batch(r).await },
            )
            .await?;
        if resp.results.len() != n {
            return Err(KmsError::Internal(format!(
                "ReEncryptBatch of {n} items answered with {} results",
                resp.results.len()
            )));
        }
        Ok(resp.results.into_iter().map(batch_result_from_pb).collect())
    }

    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
        number_of_bytes: usize,
    ) -> Result<GeneratedDataKey, KmsError> {
        let r = pb::GenerateDataKeyRequest {
            key_id: key_id.into(),
            encryption_context: context.clone(),
            number_of_bytes: count_to_pb(number_of_bytes),
        };
        let g = self
            .call(
                r,
                true,
                |mut c, r| async move { c.generate_data_key(r).await },
            )
            .await?;
        let plaintext = g.plaintext.map(Zeroizing::new).ok_or_else(|| {
            KmsError::Internal("GenerateDataKey response has no plaintext".into())
        })?;
        Ok(GeneratedDataKey {
            key_id: g.key_id,
            plaintext: Some(plaintext),
            ciphertext_blob: g.ciphertext_blob,
        })
    }

    async fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        context: &EncryptionContext,
        number_of_bytes: usize,
    ) -> Result<GeneratedDataKey, KmsError> {
        let r = pb::GenerateDataKeyRequest {
            key_id: key_id.into(),
            encryption_context: context.clone(),
            number_of_bytes: count_to_pb(number_of_bytes),
        };
        let g = self
            .call(r, true, |mut c, r| async move {
                c.generate_data_key_without_plaintext(r).await
            })
            .await?;
        Ok(GeneratedDataKey {
            key_id: g.key_id,
            plaintext: None,
            ciphertext_blob: g.ciphertext_blob,
        })
    }

    async fn generate_random(&self, number_of_bytes: usize) -> Result<Vec<u8>, KmsError> {
        let r = pb::GenerateRandomRequest {
            number_of_bytes: count_to_pb(number_of_bytes),
        };
        Ok(self
            .call(
                r,
                true,
                |mut c, r| async move { c.generate_random(r).await },
            )
            .await?
            .plaintext)
    }

    async fn create_reserved_alias(
        &self,
        alias_name: &str,
        target_key_id: &str,
    ) -> Result<(), KmsError> {
        let r = pb::AliasRequest {
            alias_name: alias_name.into(),
            target_key_id: target_key_id.into(),
        };
        self.call(r, true, |mut c, r| async move {
            c.create_reserved_alias(r).await
        })
        .await
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_gets_one_deadline_per_hundred_items() {
        let t = Duration::from_secs(5);
        assert_eq!(batch_deadline(t, 0), t);
        assert_eq!(batch_deadline(t, 1), t);
        assert_eq!(batch_deadline(t, 100), t);
        assert_eq!(batch_deadline(t, 101), 2 * t);
        assert_eq!(batch_deadline(t, crate::MAX_REENCRYPT_BATCH), 10 * t);
    }
}
