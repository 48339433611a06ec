//! Test harness: starts a real `coffer dev` (or another role, [`Process`]) on loopback ports
//! chosen by the OS and hands out real clients. No fixed ports, no sleeps: the process writes a
//! ready file after it has bound its listeners, and the harness waits for it with a deadline.

pub mod cluster;
use std::ffi::OsString;
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
    extra_args: Vec<String>,
}

impl Coffer {
    /// Starts a new process on a fresh data directory.
    pub fn start() -> Coffer {
        Coffer::start_with(&[])
    }

    /// Starts a new process on a fresh data directory with extra `coffer dev` arguments (kept
    /// for restarts).
    pub fn start_with(extra_args: &[&str]) -> Coffer {
        let tmp = tempfile::Builder::new()
            .prefix("coffer-e2e-")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let (child, ready) = spawn(&dir, 0, &extra_args);
        Coffer {
            child: Some(child),
            dir,
            _tmp: Some(tmp),
            ready,
            restarts: 0,
            extra_args,
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
        let (child, ready) = spawn(&self.dir, self.restarts, &self.extra_args);
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

fn spawn(dir: &Path, generation: u32, extra_args: &[String]) -> (Child, ReadyInfo) {
    let mut args: Vec<OsString> = vec!["dev".into(), "--data-dir".into(), dir.join("data").into()];
    args.extend(
        ["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]
            .iter()
            .map(OsString::from),
    );
    args.extend(extra_args.iter().map(OsString::from));
    let (child, v) = spawn_ready(dir, &generation.to_string(), &args);
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    let ready = ReadyInfo {
        s3: s("s3"),
        admin: s("admin"),
        default_kms_key_arn: s("default_kms_key_arn"),
    };
    (child, ready)
}

/// Spawns `coffer <args> --ready-file <dir>/ready-<tag>.json` with the test credentials, its
/// output in `<dir>/stdout-<tag>.log` and `<dir>/stderr-<tag>.log`, and waits (60 s deadline)
/// until the ready file holds JSON. Panics with the stderr log if the process exits first.
pub fn spawn_ready(dir: &Path, tag: &str, args: &[OsString]) -> (Child, serde_json::Value) {
    spawn_ready_with_env(dir, tag, args, &[])
}

/// [`spawn_ready`] with extra environment variables (e.g. `COFFER_JOBS_*` tuning).
pub fn spawn_ready_with_env(
    dir: &Path,
    tag: &str,
    args: &[OsString],
    env: &[(String, String)],
) -> (Child, serde_json::Value) {
    let ready_file = dir.join(format!("ready-{tag}.json"));
    let _ = std::fs::remove_file(&ready_file);
    let stderr_path = dir.join(format!("stderr-{tag}.log"));
    let stdout = std::fs::File::create(dir.join(format!("stdout-{tag}.log"))).expect("log");
    let stderr = std::fs::File::create(&stderr_path).expect("log");
    let mut child = Command::new(coffer_bin())
        .args(args)
        .arg("--ready-file")
        .arg(&ready_file)
        .env("COFFER_ACCESS_KEY_ID", ACCESS_KEY)
        .env("COFFER_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("COFFER_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("spawn coffer");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready_file) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                return (child, v);
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            panic!("coffer {args:?} exited early with {status}:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "coffer {args:?} did not become ready within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Any `coffer` role started with [`spawn_ready`] in a directory the caller owns; killed on drop.
pub struct Process {
    child: Option<Child>,
    /// What its ready file said.
    pub ready: serde_json::Value,
}

impl Process {
    /// Starts `coffer <args>` (see [`spawn_ready`]).
    pub fn start(dir: &Path, tag: &str, args: &[OsString]) -> Process {
        Process::start_with_env(dir, tag, args, &[])
    }

    /// Starts `coffer <args>` with extra environment variables (see [`spawn_ready_with_env`]).
    pub fn start_with_env(
        dir: &Path,
        tag: &str,
        args: &[OsString],
        env: &[(String, String)],
    ) -> Process {
        let (child, ready) = spawn_ready_with_env(dir, tag, args, env);
        Process {
            child: Some(child),
            ready,
        }
    }

    /// A string field of the ready file ("" when absent).
    pub fn ready_str(&self, key: &str) -> String {
        self.ready[key].as_str().unwrap_or_default().to_string()
    }

    /// Sends `signal` and waits for the process to exit.
    pub fn kill_with(&mut self, signal: i32) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The configuration of a test client: the test credentials, `us-east-1`, `endpoint`.
fn s3_config(endpoint: &str, path_style: bool) -> aws_sdk_s3::config::Builder {
    let creds =
        aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "coffer-test");
    aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .force_path_style(path_style)
}

/// An aws-sdk-s3 client with the test credentials.
pub async fn s3_client(endpoint: &str, path_style: bool) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(s3_config(endpoint, path_style).build())
}

/// A path-style client that does not retry, so the time to the first error is the server's.
pub fn s3_client_no_retry(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = s3_config(endpoint, true)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The whole body of `GET bucket/key`; panics on an error.
pub async fn get_bytes(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {key}: {e:?}"))
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
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

/// The status code of a plain `GET path` to `addr` (`host:port`), e.g. a health endpoint.
pub fn http_status(addr: &str, path: &str) -> u16 {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).expect("status line");
    let line = String::from_utf8_lossy(&head);
    line[9..12]
        .parse()
        .unwrap_or_else(|_| panic!("not an HTTP status line: {line:?}"))
}

/// Command-line arguments for [`Process::start`].
pub fn os_args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

/// Starts `coffer kms` on the local keystore in `<dir>/kms-data`, both APIs on port 0.
pub fn start_kms(dir: &Path) -> Process {
    let data = dir.join("kms-data");
    Process::start(
        dir,
        "kms",
        &os_args(&[
            "kms",
            "--data-dir",
            &data.to_string_lossy(),
            "--grpc-listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
        ]),
    )
}

/// Starts a single-member `coffer meta` group in `<dir>/meta-data`; returns it and its address.
pub fn start_single_meta(dir: &Path) -> (Process, String) {
    let addr = cluster::reserve_port();
    let data = dir.join("meta-data");
    let meta = Process::start(
        dir,
        "meta",
        &os_args(&[
            "meta",
            "--id",
            "1",
            "--data-dir",
            &data.to_string_lossy(),
            "--listen",
            &addr,
            "--initial-members",
            &format!("1={addr}"),
        ]),
    );
    (meta, addr)
}
