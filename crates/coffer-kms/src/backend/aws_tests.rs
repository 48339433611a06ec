//! The aws-kms backend against moto's KMS emulator (a real `moto_server` process), and against
//! a KMS that is down.

use std::future::Future;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::FutureExt;

use super::*;
use crate::backend::{self, KmsBackendConfig};
use crate::secrets::SecretString;
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

/// A `moto_server` child process on a free port of 127.0.0.1, killed on drop.
struct MotoServer {
    child: Child,
    endpoint: String,
    _log_dir: tempfile::TempDir,
}

impl MotoServer {
    /// Starts moto and waits until it accepts connections.
    fn start() -> MotoServer {
        let bin = moto_server_binary();
        let mut last_err = String::new();
        // The port is free when picked but could be taken before moto binds it: retry.
        for _ in 0..3 {
            let port = free_port();
            let log_dir = tempfile::tempdir().expect("tempdir");
            let log_path = log_dir.path().join("moto.log");
            let log = std::fs::File::create(&log_path).expect("moto log file");
            let child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log fd"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut server = MotoServer {
                child,
                endpoint: format!("http://127.0.0.1:{port}"),
                _log_dir: log_dir,
            };
            match server.wait_ready(port, Duration::from_secs(60)) {
                Ok(()) => return server,
                Err(e) => {
                    last_err = format!(
                        "{e}; moto log:\n{}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
            }
        }
        panic!("moto_server did not start: {last_err}");
    }

    /// Polls until moto accepts a TCP connection, the process exits, or `deadline` passes.
    fn wait_ready(&mut self, port: u16, deadline: Duration) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("moto_server exited with {status}"));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if start.elapsed() > deadline {
                return Err(format!("moto_server not listening after {deadline:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn config(&self) -> AwsKmsConfig {
        AwsKmsConfig {
            endpoint: Some(self.endpoint.clone()),
            region: REGION.into(),
            access_key_id: Some("testing".into()),
            secret_access_key: Some(SecretString::new("testing")),
            session_token: None,
            attempt_timeout_ms: None,
            max_attempts: None,
        }
    }

    fn kms(&self) -> AwsKms {
        AwsKms::connect(&self.config()).expect("connect")
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pinned moto of the test venv first (tests/run-all.sh installs moto[server]==5.2.5
/// there and exports COFFER_TEST_VENV), then any `moto_server` on PATH. None found fails the
/// test: it must not pass silently without running.
fn moto_server_binary() -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(v) = std::env::var_os("COFFER_TEST_VENV") {
        candidates.push(Path::new(&v).join("bin/moto_server"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cache/coffer-venvs/py/bin/moto_server"));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("moto_server")));
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "moto_server not found (looked in $COFFER_TEST_VENV/bin, \
                 ~/.cache/coffer-venvs/py/bin and PATH): run tests/run-all.sh, or \
                 pip install 'moto[server]==5.2.5'"
            )
        })
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
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
