//! Shared gateway state and the per-request context handlers receive.

use std::sync::Arc;

use coffer_blob::BlobStore;
use coffer_kms::Kms;
use coffer_meta::MetaClient;
use zeroize::Zeroizing;

use crate::metrics::Metrics;
use crate::router::Endpoint;
use crate::sigv4::{CredentialProvider, Verified};

/// Gateway settings, filled by the binary's configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The region this endpoint serves (`us-east-1` by default).
    pub region: String,
    /// The 12-digit account that owns every bucket here.
    pub account_id: String,
    /// Base domains for virtual-host-style addressing (`<bucket>.<domain>`).
    pub domains: Vec<String>,
    /// Plaintext chunk size of new objects.
    pub chunk_size: u32,
    /// Maximum size of a single PUT (5 GiB in S3).
    pub max_put_size: u64,
    /// ARN of the S3-managed key that wraps SSE-S3 data keys.
    pub sse_s3_key_arn: String,
    /// Create general purpose buckets with SSE-C allowed, as S3 did before April 2026; off by
    /// default: a new bucket blocks SSE-C writes (`BlockedEncryptionTypes` = `SSE-C`) until
    /// PutBucketEncryption sets `NONE`. Read at CreateBucket only: the setting is recorded in the
    /// bucket, so changing this option later leaves existing buckets as they are.
    pub allow_sse_c_on_new_buckets: bool,
}

impl GatewayConfig {
    /// The canonical user ID of the account (64 hex characters, as S3's are).
    pub fn owner_id(&self) -> String {
        let d = ring::digest::digest(
            &ring::digest::SHA256,
            format!("coffer-owner:{}", self.account_id).as_bytes(),
        );
        hex::encode(d.as_ref())
    }

    /// The owner's display name.
    pub fn owner_display_name(&self) -> &str {
        "coffer"
    }
}

/// One access key pair.
pub struct StaticCredentials {
    /// Access key ID.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Zeroizing<String>,
}

impl CredentialProvider for StaticCredentials {
    fn secret_key(&self, access_key_id: &str) -> Option<Zeroizing<String>> {
        (access_key_id == self.access_key_id).then(|| self.secret_access_key.clone())
    }
}

/// Everything a handler can reach.
pub struct AppState {
    /// Metadata role.
    pub meta: Arc<dyn MetaClient>,
    /// Blob role.
    pub blobs: Arc<dyn BlobStore>,
    /// KMS role.
    pub kms: Arc<dyn Kms>,
    /// Who may sign requests.
    pub creds: Arc<dyn CredentialProvider>,
    /// Settings.
    pub config: GatewayConfig,
    /// Metrics.
    pub metrics: Metrics,
    /// S3 Bucket Keys in use.
    pub bucket_keys: crate::bucket_keys::BucketKeyCache,
    /// Directory bucket sessions (CreateSession).
    pub sessions: crate::directory::Sessions,
    /// The ARN behind `alias/aws/s3` once known: resolved (or created) on first use instead of
    /// a KMS DescribeKey on every SSE-KMS request without a key ID. Users cannot retarget the
    /// reserved alias.
    pub aws_managed_s3_key: tokio::sync::OnceCell<String>,
}

impl AppState {
    /// The state of a gateway over these roles; KMS calls are counted into the metrics
    /// (`coffer_s3_kms_calls_total{op}`).
    pub fn new(
        meta: Arc<dyn MetaClient>,
        blobs: Arc<dyn BlobStore>,
        kms: Arc<dyn Kms>,
        creds: Arc<dyn CredentialProvider>,
        config: GatewayConfig,
    ) -> Self {
        let metrics = Metrics::default();
        let kms = Arc::new(crate::metered_kms::MeteredKms::new(
            kms,
            metrics.kms_calls.clone(),
        ));
        AppState {
            meta,
            blobs,
            kms,
            creds,
            config,
            metrics,
            bucket_keys: Default::default(),
            sessions: Default::default(),
            aws_managed_s3_key: tokio::sync::OnceCell::new(),
        }
    }
}

/// The context of one authenticated request.
pub struct ReqCtx {
    /// Shared state.
    pub state: Arc<AppState>,
    /// `x-amz-request-id`.
    pub request_id: String,
    /// The routed endpoint.
    pub endpoint: Endpoint,
    /// The verified signature, its payload mode and the caller's key.
    pub auth: Verified,
    /// Request head.
    pub parts: http::request::Parts,
}

impl ReqCtx {
    /// The bucket name (routing guarantees it for bucket and object operations).
    pub fn bucket(&self) -> &str {
        self.endpoint.bucket.as_deref().unwrap_or_default()
    }

    /// The object key (routing guarantees it for object operations).
    pub fn key(&self) -> &str {
        self.endpoint.key.as_deref().unwrap_or_default()
    }

    /// A request header as a string, if present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.endpoint.query.get(name)
    }
}
