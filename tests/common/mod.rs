//! Test harness: starts a real `coffer dev` process on loopback ports chosen by the OS and
//! hands out real clients. No fixed ports, no sleeps: the process writes a ready file after
//! it has bound its listeners, and the harness waits for it with a deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Test credentials given to every process.
pub const ACCESS_KEY: &str = "COFFERTESTACCESSKEY1";
/// Test secret.
pub const SECRET_KEY: &str = "coffer-test-secret-key-0123456789abcdef";

/// The `coffer` binary: `COFFER_BIN`, else next to the test executable's directory
/// (`target/debug/coffer` when tests run from `target/debug/deps`).
pub fn coffer_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("COFFER_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("coffer");
    assert!(bin.exists(), "coffer binary not found at {} (build it with `cargo build --bin coffer` or set COFFER_BIN)", bin.display());
    bin
}

/// What the ready file says.
#[derive(Debug, Clone)]
pub struct ReadyInfo {
    /// S3 address.
    pub s3: String,
    /// Admin address.
    pub admin: String,
    /// Default KMS key ARN.
    pub default_kms_key_arn: String,
}

/// A running `coffer dev`. Dropping it kills the process; its logs stay in the data dir.
pub struct Coffer {
    child: Option<Child>,
    /// Data directory (kept across restarts).
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    /// Addresses of the current process.
    pub ready: ReadyInfo,
    restarts: u32,
}

impl Coffer {
    /// Starts a new process on a fresh data directory.
    pub fn start() -> Coffer {
        let tmp = tempfile::Builder::new()
            .prefix("coffer-e2e-")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let (child, ready) = spawn(&dir, 0);
        Coffer {
            child: Some(child),
            dir,
            _tmp: Some(tmp),
            ready,
            restarts: 0,
        }
    }

    /// The S3 endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.ready.s3)
    }

    /// The admin endpoint URL.
    pub fn admin(&self) -> String {
        format!("http://{}", self.ready.admin)
    }

    /// PID of the current process.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends `signal` and waits for the process to exit.
    pub fn kill_with(&mut self, signal: i32) {
        if let Some(mut c) = self.child.take() {
            // SAFETY-free: libc::kill via std is not available; use the `kill` command.
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }

    /// SIGKILL then start again on the same data directory.
    pub fn crash_and_restart(&mut self) {
        self.kill_with(9);
        self.restart();
    }

    /// Starts the process again on the same data directory (after it was stopped).
    pub fn restart(&mut self) {
        self.restarts += 1;
        let (child, ready) = spawn(&self.dir, self.restarts);
        self.child = Some(child);
        self.ready = ready;
    }

    /// An aws-sdk-s3 client (path-style) for this process.
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        s3_client(&self.endpoint(), true).await
    }
}

impl Drop for Coffer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            if let Some(tmp) = self._tmp.take() {
                let kept = tmp.keep();
                eprintln!("coffer logs kept in {}", kept.display());
            }
        }
    }
}

fn spawn(dir: &Path, generation: u32) -> (Child, ReadyInfo) {
    let ready_file = dir.join(format!("ready-{generation}.json"));
    let _ = std::fs::remove_file(&ready_file);
    let stdout = std::fs::File::create(dir.join(format!("stdout-{generation}.log"))).expect("log");
    let stderr = std::fs::File::create(dir.join(format!("stderr-{generation}.log"))).expect("log");
    let mut child = Command::new(coffer_bin())
        .arg("dev")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .arg("--ready-file")
        .arg(&ready_file)
        .env("COFFER_ACCESS_KEY_ID", ACCESS_KEY)
        .env("COFFER_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("COFFER_LOG", "info")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("spawn coffer");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready_file) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                return (
                    child,
                    ReadyInfo {
                        s3: s("s3"),
                        admin: s("admin"),
                        default_kms_key_arn: s("default_kms_key_arn"),
                    },
                );
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join(format!("stderr-{generation}.log")))
                .unwrap_or_default();
            panic!("coffer exited early with {status}:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "coffer did not become ready within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An aws-sdk-s3 client with the test credentials.
pub async fn s3_client(endpoint: &str, path_style: bool) -> aws_sdk_s3::Client {
    let creds =
        aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "coffer-test");
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .force_path_style(path_style)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Deterministic pseudo-random bytes for test bodies.
pub fn body_of(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A bucket name unique within the test run.
pub fn bucket_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Hex MD5.
pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}
