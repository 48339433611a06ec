//! Unit-test support: a gateway state over real components in process (the local KMS,
//! LocalMeta, the local blob store) and object versions written straight to meta.

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_kms::backend::local::LocalKms;
use coffer_kms::{CreateKeyRequest, Kms};
use coffer_meta::{
    BucketRecord, Command, Envelope, LocalMeta, ObjectHeaders, ObjectVersion, Versioning,
};
use zeroize::Zeroizing;

use crate::state::{AppState, GatewayConfig, StaticCredentials};

/// The account of the test gateway.
pub(crate) const ACCOUNT: &str = "000000000000";

/// A new customer managed key; its ARN.
pub(crate) async fn new_key(kms: &dyn Kms) -> String {
    let req = CreateKeyRequest {
        description: "unit test key".into(),
        aws_managed: false,
        tags: BTreeMap::new(),
    };
    kms.create_key(req).await.unwrap().arn
}

/// A gateway state whose roles live under `dir`.
pub(crate) async fn gateway(dir: &std::path::Path) -> AppState {
    let kms: Arc<dyn Kms> = Arc::new(
        LocalKms::open(
            &dir.join("kms"),
            Zeroizing::new([7u8; 32]),
            "us-east-1",
            ACCOUNT,
        )
        .unwrap(),
    );
    let sse_s3_key_arn = new_key(kms.as_ref()).await;
    AppState::new(
        Arc::new(LocalMeta::open(dir.join("meta")).unwrap()),
        Arc::new(coffer_blob::local::LocalBlobStore::open(dir.join("blobs")).unwrap()),
        kms,
        Arc::new(StaticCredentials {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: Zeroizing::new("secret".into()),
        }),
        GatewayConfig {
            region: "us-east-1".into(),
            account_id: ACCOUNT.into(),
            domains: Vec::new(),
            chunk_size: 1 << 20,
            max_put_size: 1 << 30,
            sse_s3_key_arn,
            allow_sse_c_on_new_buckets: false,
        },
    )
}

/// Creates the versioned bucket `name`.
pub(crate) async fn create_bucket(state: &AppState, name: &str) {
    let bucket = BucketRecord {
        v: 1,
        name: name.into(),
        created_ms: 1,
        region: "us-east-1".into(),
        owner_id: state.config.owner_id(),
        versioning: Versioning::Enabled,
        object_lock_enabled: false,
        default_retention: None,
        encryption: None,
        directory: false,
    };
    state
        .meta
        .apply(Command::CreateBucket(bucket))
        .await
        .unwrap();
}

/// Writes an empty object version with `envelope` (its data is never read).
pub(crate) async fn put_version(
    state: &AppState,
    bucket: &str,
    key: &str,
    version_id: &str,
    envelope: Envelope,
) {
    let version = ObjectVersion {
        v: 1,
        key: key.into(),
        version_id: version_id.into(),
        seq: 0,
        delete_marker: false,
        size: 0,
        etag: "d41d8cd98f00b204e9800998ecf8427e".into(),
        last_modified_ms: 1,
        headers: ObjectHeaders::default(),
        checksum: None,
        parts: Vec::new(),
        envelope: Some(envelope),
        retention: None,
        legal_hold: false,
        multipart_parts: 0,
    };
    let cmd = Command::PutObject {
        bucket: bucket.into(),
        version,
        condition: None,
    };
    state.meta.apply(cmd).await.unwrap();
}
