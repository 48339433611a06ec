//! The aws-kms backend against moto's KMS emulator (a real `moto_server` process), and against
//! a KMS that is down.

use std::future::Future;
use std::net::TcpListener;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures::FutureExt;

use super::*;
use crate::backend::{self, KmsBackendConfig};
use crate::secrets::SecretString;
use crate::test_servers::{free_port, MotoServer};
use crate::testing::{self, assert_err, Profile};

/// Where moto 5.2.5 is laxer than AWS KMS (each flag checked by
/// [`moto_profile_relaxes_only_what_moto_lacks`]).
const MOTO: Profile = Profile {
    // Encrypt, Decrypt, GenerateDataKey, ReEncrypt and RotateKeyOnDemand work on Disabled and
    // PendingDeletion keys; EnableKey, DisableKey, ScheduleKeyDeletion, CancelKeyDeletion and
    // CreateAlias never check the key state.
    enforces_key_state: false,
    // Not moto's fault: AWS KMS has no material version counter either (only opaque key
    // material IDs), so this backend reports 0 in DescribeKey.
    tracks_material_versions: false,
    // ListKeys ignores Marker (and Limit), so no marker is ever invalid.
    validates_markers: false,
    // Decrypt with another key's KeyId fails with AccessDeniedException instead of
    // IncorrectKeyException, and ReEncrypt ignores SourceKeyId.
    checks_decrypt_key_id: false,
    // EnableKeyRotation ignores RotationPeriodInDays; GetKeyRotationStatus answers only
    // KeyRotationEnabled.
    reports_rotation_period: false,
    // ListKeys and ListAliases answer everything in one page whatever the Limit.
    paginates_lists: false,
    // The AAD is the keys and values concatenated, so {"a": "bc"} and {"ab": "c"} collide.
    binds_context_unambiguously: false,
    ..Profile::STRICT
};

const REGION: &str = "us-east-1";

/// The aws-kms backend's view of a [`MotoServer`].
trait MotoExt {
    fn config(&self) -> AwsKmsConfig;
    fn kms(&self) -> AwsKms;
}

impl MotoExt for MotoServer {
    fn config(&self) -> AwsKmsConfig {
        self.aws_kms_config(REGION)
    }

    fn kms(&self) -> AwsKms {
        AwsKms::connect(&self.config()).expect("connect")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_against_moto() {
    let moto = MotoServer::start();
    let kms = moto.kms();
    testing::suite_with(&kms, MOTO).await;
}

type SubTest = for<'a> fn(&'a dyn Kms, Profile) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Each relaxed flag is needed: with it strict again, a sub-test that checks it fails. When
/// a newer moto starts enforcing something, this test says which flag to drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_profile_relaxes_only_what_moto_lacks() {
    let moto = MotoServer::start();
    let kms = moto.kms();
    let disabled: SubTest = |k, p| Box::pin(testing::disabled_key(k, p));
    let pending: SubTest = |k, p| Box::pin(testing::pending_deletion(k, p));
    let metadata: SubTest = |k, p| Box::pin(testing::keys_and_metadata(k, p));
    let listing: SubTest = |k, p| Box::pin(testing::listing(k, p));
    let wrong_key: SubTest = |k, p| Box::pin(testing::wrong_key(k, p));
    let rotation: SubTest = |k, p| Box::pin(testing::rotation(k, p));
    let context: SubTest = |k, p| Box::pin(testing::context_binding(k, p));
    let cases: [(&str, fn(&mut Profile), Vec<SubTest>); 7] = [
        (
            "enforces_key_state",
            |p| p.enforces_key_state = true,
            vec![disabled, pending],
        ),
        (
            "tracks_material_versions",
            |p| p.tracks_material_versions = true,
            vec![metadata],
        ),
        (
            "validates_markers",
            |p| p.validates_markers = true,
            vec![listing],
        ),
        (
            "checks_decrypt_key_id",
            |p| p.checks_decrypt_key_id = true,
            vec![wrong_key],
        ),
        (
            "reports_rotation_period",
            |p| p.reports_rotation_period = true,
            vec![rotation],
        ),
        (
            "paginates_lists",
            |p| p.paginates_lists = true,
            vec![listing],
        ),
        (
            "binds_context_unambiguously",
            |p| p.binds_context_unambiguously = true,
            vec![context],
        ),
    ];
    let mut needless = Vec::new();
    for (flag, strict, subtests) in cases {
        let mut p = MOTO;
        strict(&mut p);
        assert_ne!(p, MOTO, "{flag} is relaxed in MOTO");
        let mut failed = false;
        for t in subtests {
            failed |= AssertUnwindSafe(t(&kms, p)).catch_unwind().await.is_err();
        }
        if !failed {
            needless.push(flag);
        }
    }
    assert!(
        needless.is_empty(),
        "moto passes these checks now; make them strict in MOTO: {needless:?}"
    );
}

/// The gateway's `alias/aws/s3` flow: DescribeKey of the alias creates AWS's managed key (moto
/// does this too); reserved aliases cannot be created through the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_managed_alias_and_reserved_aliases() {
    let moto = MotoServer::start();
    let kms = moto.kms();
    let s3 = kms
        .describe_key("alias/aws/s3")
        .await
        .expect("alias/aws/s3");
    assert!(s3.arn.starts_with("arn:aws:kms:us-east-1:"), "{}", s3.arn);
    assert_eq!(kms.describe_key("alias/aws/s3").await.unwrap().arn, s3.arn);
    let k = kms
        .create_key(CreateKeyRequest {
            description: "sse-s3".into(),
            aws_managed: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        k.key_manager,
        KeyManager::Customer,
        "AWS managed keys cannot be created"
    );
    assert_err(
        kms.create_reserved_alias("alias/aws/coffer-test", &k.key_id)
            .await,
        "ValidationException",
        "reserved alias",
    );
    assert!(kms.is_secure());
    // Aliases work where AWS itself wants a key ID or ARN.
    kms.create_alias("alias/coffer-rotating", &k.key_id)
        .await
        .unwrap();
    kms.enable_key_rotation("alias/coffer-rotating", None)
        .await
        .unwrap();
    let st = kms
        .get_key_rotation_status("alias/coffer-rotating")
        .await
        .unwrap();
    assert!(st.enabled);
    assert!(
        kms.describe_key(&k.arn).await.unwrap().rotation_enabled,
        "DescribeKey carries the rotation setting"
    );
}

/// `backend::open` builds it from the tagged config; credentials can come from the
/// environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_from_tagged_config() {
    let moto = MotoServer::start();
    let cfg: KmsBackendConfig = serde_json::from_value(serde_json::json!({
        "type": "aws-kms",
        "endpoint": moto.endpoint,
        "region": REGION,
        "access_key_id": "testing",
        "secret_access_key": "s3cr3t-for-moto",
    }))
    .unwrap();
    assert!(!format!("{cfg:?}").contains("s3cr3t"), "{cfg:?}");
    let kms = backend::open(&cfg).await.unwrap();
    let k = kms.create_key(Default::default()).await.unwrap();
    let enc = kms
        .encrypt(&k.key_id, b"via open", &Default::default())
        .await
        .unwrap();
    assert_eq!(
        &kms.decrypt(&enc.ciphertext_blob, &Default::default(), None)
            .await
            .unwrap()
            .plaintext[..],
        b"via open"
    );

    // From the standard environment variables (this process only: nextest runs each test in
    // its own process).
    let no_creds = AwsKmsConfig {
        access_key_id: None,
        secret_access_key: None,
        ..moto.config()
    };
    std::env::remove_var("AWS_ACCESS_KEY_ID");
    std::env::remove_var("AWS_SECRET_ACCESS_KEY");
    let err = AwsKms::connect(&no_creds).err().expect("no credentials");
    assert!(err.message().contains("AWS_ACCESS_KEY_ID"), "{err}");
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    let kms = AwsKms::connect(&no_creds).unwrap();
    kms.describe_key(&k.arn).await.unwrap();

    let half = AwsKmsConfig {
        secret_access_key: None,
        ..moto.config()
    };
    assert_err(
        AwsKms::connect(&half),
        "ValidationException",
        "half credentials",
    );
    let bad_url = AwsKmsConfig {
        endpoint: Some("127.0.0.1:1".into()),
        ..moto.config()
    };
    assert_err(AwsKms::connect(&bad_url), "ValidationException", "endpoint");
}

fn down_config(endpoint: String, attempt_timeout_ms: Option<u64>) -> AwsKmsConfig {
    AwsKmsConfig {
        endpoint: Some(endpoint),
        region: REGION.into(),
        access_key_id: Some("testing".into()),
        secret_access_key: Some(SecretString::new("testing")),
        session_token: None,
        attempt_timeout_ms,
        max_attempts: Some(2),
    }
}

/// A KMS that refuses connections, or accepts them and never answers, makes calls fail with
/// Unavailable (DependencyTimeoutException) within the configured bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_quickly_when_the_kms_is_down() {
    // Refused: nothing listens on the port.
    let port = free_port();
    let kms = AwsKms::connect(&down_config(format!("http://127.0.0.1:{port}"), None)).unwrap();
    let t = Instant::now();
    assert_err(
        kms.generate_data_key("alias/x", &Default::default(), 32)
            .await,
        "DependencyTimeoutException",
        "connection refused",
    );
    assert_err(
        kms.describe_key("alias/x").await,
        "DependencyTimeoutException",
        "connection refused",
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "refused connections took {:?}",
        t.elapsed()
    );

    // Silent: the kernel accepts connections into the backlog, nobody answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let kms = AwsKms::connect(&down_config(format!("http://{addr}"), Some(300))).unwrap();
    let t = Instant::now();
    assert_err(
        kms.encrypt("alias/x", b"x", &Default::default()).await,
        "DependencyTimeoutException",
        "no answer",
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "silent KMS took {took:?}"
    );
    drop(silent);
}
