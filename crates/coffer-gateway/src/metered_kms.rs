//! A [`Kms`] that counts every call by operation into the gateway's metrics
//! (`coffer_s3_kms_calls_total{op}`), so operators (and tests) see what S3 traffic costs in KMS
//! requests — e.g. that S3 Bucket Keys turn N uploads into a handful of GenerateDataKey calls.

use std::sync::Arc;

use async_trait::async_trait;
use coffer_kms::{
    AliasEntry, CreateKeyRequest, Decrypted, Encrypted, EncryptionContext, GeneratedDataKey,
    KeyListEntry, KeyMetadata, Kms, KmsError, MaintenanceReport, Page, ReEncryptItem, ReEncrypted,
    RotationEntry, RotationStatus,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::metrics::OpLabels;

/// Counts calls, then forwards them to the wrapped KMS.
pub struct MeteredKms {
    inner: Arc<dyn Kms>,
    calls: Family<OpLabels, Counter>,
}

impl MeteredKms {
    /// Wraps `inner`, counting into `calls` (normally `Metrics::kms_calls`).
    pub fn new(inner: Arc<dyn Kms>, calls: Family<OpLabels, Counter>) -> Self {
        MeteredKms { inner, calls }
    }

    fn count(&self, op: &str) {
        self.calls
            .get_or_create(&OpLabels { op: op.to_string() })
            .inc();
    }
}

/// Counts the call under its AWS operation name, then forwards it.
macro_rules! forward {
    ($self:ident, $op:literal, $method:ident($($arg:expr),*)) => {{
        $self.count($op);
        $self.inner.$method($($arg),*).await
    }};
}

#[async_trait]
impl Kms for MeteredKms {
    async fn create_key(&self, req: CreateKeyRequest) -> Result<KeyMetadata, KmsError> {
        forward!(self, "CreateKey", create_key(req))
    }
    async fn describe_key(&self, key_id: &str) -> Result<KeyMetadata, KmsError> {
        forward!(self, "DescribeKey", describe_key(key_id))
    }
    async fn list_keys(
        &self,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<KeyListEntry>, KmsError> {
        forward!(self, "ListKeys", list_keys(limit, marker))
    }
    async fn create_alias(&self, alias_name: &str, target_key_id: &str) -> Result<(), KmsError> {
        forward!(self, "CreateAlias", create_alias(alias_name, target_key_id))
    }
    async fn update_alias(&self, alias_name: &str, target_key_id: &str) -> Result<(), KmsError> {
        forward!(self, "UpdateAlias", update_alias(alias_name, target_key_id))
    }
    async fn delete_alias(&self, alias_name: &str) -> Result<(), KmsError> {
        forward!(self, "DeleteAlias", delete_alias(alias_name))
    }
    async fn list_aliases(
        &self,
        key_id: Option<&str>,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<AliasEntry>, KmsError> {
        forward!(self, "ListAliases", list_aliases(key_id, limit, marker))
    }
    async fn enable_key(&self, key_id: &str) -> Result<(), KmsError> {
        forward!(self, "EnableKey", enable_key(key_id))
    }
    async fn disable_key(&self, key_id: &str) -> Result<(), KmsError> {
        forward!(self, "DisableKey", disable_key(key_id))
    }
    async fn schedule_key_deletion(
        &self,
        key_id: &str,
        pending_window_in_days: Option<u32>,
    ) -> Result<KeyMetadata, KmsError> {
        forward!(
            self,
            "ScheduleKeyDeletion",
            schedule_key_deletion(key_id, pending_window_in_days)
        )
    }
    async fn cancel_key_deletion(&self, key_id: &str) -> Result<KeyMetadata, KmsError> {
        forward!(self, "CancelKeyDeletion", cancel_key_deletion(key_id))
    }
    async fn enable_key_rotation(
        &self,
        key_id: &str,
        rotation_period_in_days: Option<u32>,
    ) -> Result<(), KmsError> {
        forward!(
            self,
            "EnableKeyRotation",
            enable_key_rotation(key_id, rotation_period_in_days)
        )
    }
    async fn disable_key_rotation(&self, key_id: &str) -> Result<(), KmsError> {
        forward!(self, "DisableKeyRotation", disable_key_rotation(key_id))
    }
    async fn get_key_rotation_status(&self, key_id: &str) -> Result<RotationStatus, KmsError> {
        forward!(
            self,
            "GetKeyRotationStatus",
            get_key_rotation_status(key_id)
        )
    }
    async fn rotate_key_on_demand(&self, key_id: &str) -> Result<String, KmsError> {
        forward!(self, "RotateKeyOnDemand", rotate_key_on_demand(key_id))
    }
    async fn list_key_rotations(
        &self,
        key_id: &str,
        limit: Option<u32>,
        marker: Option<&str>,
    ) -> Result<Page<RotationEntry>, KmsError> {
        forward!(
            self,
            "ListKeyRotations",
            list_key_rotations(key_id, limit, marker)
        )
    }
    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &[u8],
        context: &EncryptionContext,
    ) -> Result<Encrypted, KmsError> {
        forward!(self, "Encrypt", encrypt(key_id, plaintext, context))
    }
    async fn decrypt(
        &self,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
        key_id: Option<&str>,
    ) -> Result<Decrypted, KmsError> {
        forward!(self, "Decrypt", decrypt(ciphertext_blob, context, key_id))
    }
    async fn re_encrypt(
        &self,
        ciphertext_blob: &[u8],
        source_context: &EncryptionContext,
        source_key_id: Option<&str>,
        destination_key_id: &str,
        destination_context: &EncryptionContext,
    ) -> Result<ReEncrypted, KmsError> {
        forward!(
            self,
            "ReEncrypt",
            re_encrypt(
                ciphertext_blob,
                source_context,
                source_key_id,
                destination_key_id,
                destination_context
            )
        )
    }
    async fn re_encrypt_batch(
        &self,
        items: Vec<ReEncryptItem>,
    ) -> Result<Vec<Result<ReEncrypted, KmsError>>, KmsError> {
        // Forwarded whole: the default would loop over re_encrypt, one KMS call per item.
        forward!(self, "ReEncryptBatch", re_encrypt_batch(items))
    }
    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &EncryptionContext,
        number_of_bytes: usize,
    ) -> Result<GeneratedDataKey, KmsError> {
        forward!(
            self,
            "GenerateDataKey",
            generate_data_key(key_id, context, number_of_bytes)
        )
    }
    async fn generate_data_key_without_plaintext(
        &self,
        key_id: &str,
        context: &EncryptionContext,
        number_of_bytes: usize,
    ) -> Result<GeneratedDataKey, KmsError> {
        forward!(
            self,
            "GenerateDataKeyWithoutPlaintext",
            generate_data_key_without_plaintext(key_id, context, number_of_bytes)
        )
    }
    async fn generate_random(&self, number_of_bytes: usize) -> Result<Vec<u8>, KmsError> {
        forward!(self, "GenerateRandom", generate_random(number_of_bytes))
    }
    async fn create_reserved_alias(
        &self,
        alias_name: &str,
        target_key_id: &str,
    ) -> Result<(), KmsError> {
        forward!(
            self,
            "CreateAlias",
            create_reserved_alias(alias_name, target_key_id)
        )
    }
    async fn run_maintenance(&self) -> Result<MaintenanceReport, KmsError> {
        self.inner.run_maintenance().await
    }
    fn is_secure(&self) -> bool {
        self.inner.is_secure()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[tokio::test]
    async fn counts_by_operation_and_forwards() {
        let dir = tempfile::tempdir().unwrap();
        let local = coffer_kms::backend::local::LocalKms::open(
            &dir.path().join("kms"),
            zeroize::Zeroizing::new([3u8; 32]),
            "us-east-1",
            "000000000000",
        )
        .unwrap();
        let metrics = Metrics::default();
        let kms = MeteredKms::new(Arc::new(local), metrics.kms_calls.clone());
        let key = kms.create_key(Default::default()).await.unwrap();
        for _ in 0..3 {
            kms.generate_data_key(&key.key_id, &Default::default(), 32)
                .await
                .unwrap();
        }
        // Failures count too: they were calls.
        assert!(kms.describe_key("alias/nope").await.is_err());
        // A batch is one call, whatever its size; its items are not counted as ReEncrypts.
        let blob = kms
            .encrypt(&key.key_id, b"dek", &Default::default())
            .await
            .unwrap()
            .ciphertext_blob;
        let item = ReEncryptItem {
            ciphertext_blob: blob,
            source_context: Default::default(),
            source_key_id: None,
            destination_key_id: key.key_id.clone(),
            destination_context: Default::default(),
        };
        let results = kms.re_encrypt_batch(vec![item; 4]).await.unwrap();
        assert_eq!(results.len(), 4);
        assert!(results.iter().all(Result::is_ok));
        let text = metrics.render();
        assert!(
            text.contains("coffer_s3_kms_calls_total{op=\"GenerateDataKey\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("coffer_s3_kms_calls_total{op=\"CreateKey\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("coffer_s3_kms_calls_total{op=\"DescribeKey\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("coffer_s3_kms_calls_total{op=\"ReEncryptBatch\"} 1"),
            "{text}"
        );
        assert!(!text.contains("op=\"ReEncrypt\""), "{text}");
    }
}
