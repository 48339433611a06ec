//! A whole cluster of split roles for fault tests: three `coffer meta` members (one Raft group)
//! on reserved loopback ports, `coffer kms`, `coffer blob` and one or more `coffer gateway`s,
//! each a real process. Members can be killed (SIGKILL), frozen (SIGSTOP), thawed (SIGCONT) and
//! restarted on the same data directory and port; gateways can be killed and restarted (on new
//! ports); `coffer admin cluster` reads the group's status and the members' state digests.
//!
//! Every method blocks (processes are spawned and waited for): from an async test call them
//! inside `tokio::task::block_in_place`.

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{coffer_bin, os_args, s3_client, Process, ACCESS_KEY, SECRET_KEY};

/// The blob node's data directory, in the cluster's directory.
const BLOB_DATA: &str = "blob-data";

/// How long a `coffer admin cluster` command may take before the harness gives up on it.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Reserves a loopback port (see [`reserve_ports`]).
pub fn reserve_port() -> String {
    reserve_ports(1).remove(0)
}

/// Reserves `n` distinct loopback ports: binds `127.0.0.1:0` `n` times, notes the ports and
/// frees them together, so processes started right after can bind them (and bind them again
/// when they are restarted).
pub fn reserve_ports(n: usize) -> Vec<String> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local_addr").to_string())
        .collect()
}

/// Waits (at most 10 s) until `addr` can be bound, e.g. while an outgoing connection that
/// happened to get the port as its local one is still open.
fn wait_bindable(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Err(e) = TcpListener::bind(addr) {
        assert!(
            Instant::now() < deadline,
            "{addr} cannot be bound again: {e}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Settings of a [`Cluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `coffer meta --snapshot-logs`: entries applied between two snapshots.
    pub snapshot_logs: u64,
    /// `coffer meta --snapshot-keep-logs`: entries kept in the log before the last snapshot.
    pub snapshot_keep_logs: u64,
    /// How many gateways to start (at least one).
    pub gateways: usize,
    /// Extra environment of every gateway (e.g. `COFFER_JOBS_*` tuning of the job runner).
    pub gateway_env: Vec<(String, String)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            snapshot_logs: 200,
            snapshot_keep_logs: 100,
            gateways: 1,
            gateway_env: Vec::new(),
        }
    }
}

/// One `coffer meta` member.
pub struct Member {
    /// Raft node id (1, 2, 3).
    pub id: u64,
    /// The reserved address it listens on, across restarts.
    pub addr: String,
    data_dir: PathBuf,
    process: Option<Process>,
    generation: u32,
    frozen: bool,
}

impl Member {
    /// Whether a process runs for this member (possibly frozen).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// The pid of the running process.
    fn pid(&self) -> u64 {
        let p = self
            .process
            .as_ref()
            .unwrap_or_else(|| panic!("meta member {} is not running", self.id));
        p.ready["pid"]
            .as_u64()
            .unwrap_or_else(|| panic!("meta member {}: no pid in {:?}", self.id, p.ready))
    }
}

/// One `coffer gateway`; a restart gets new ports.
pub struct Gateway {
    process: Option<Process>,
    generation: u32,
}

impl Gateway {
    fn running(&self, index: usize) -> &Process {
        self.process
            .as_ref()
            .unwrap_or_else(|| panic!("gateway {index} is not running"))
    }
}

/// The output of a `coffer admin cluster` command.
#[derive(Debug)]
pub struct AdminOutput {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl AdminOutput {
    /// Standard output as JSON; panics with the whole output when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("`coffer admin cluster` printed no JSON ({e}): {self:?}"))
    }
}

/// A member's line of `coffer admin cluster status --json`.
#[derive(Debug, Clone)]
pub struct MemberStatus {
    /// Node id.
    pub id: u64,
    /// "leader", "follower", "learner", ... (lower case).
    pub role: String,
    /// Whether the member answered.
    pub reachable: bool,
    /// The whole JSON object (term, indexes, snapshot, ...).
    pub raw: Value,
}

/// The three meta members, KMS, blob store and the gateways, in one temporary directory that
/// is kept (and printed) when the test panics.
pub struct Cluster {
    /// The meta members, `members[i].id == i + 1`.
    pub members: Vec<Member>,
    /// `coffer kms`.
    pub kms: Process,
    /// `coffer blob`.
    pub blob: Process,
    /// The `coffer gateway`s (`ClusterOptions::gateways` of them).
    pub gateways: Vec<Gateway>,
    /// ARN of the KMS's `alias/coffer-default` key.
    pub default_key_arn: String,
    /// Directory holding every process's data and logs.
    pub dir: PathBuf,
    options: ClusterOptions,
    tmp: Option<tempfile::TempDir>,
}

impl Cluster {
    /// Starts every role and waits until the gateway serves and the group has a leader.
    pub fn start(options: ClusterOptions) -> Cluster {
        let tmp = tempfile::Builder::new()
            .prefix("coffer-cluster-")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let members: Vec<Member> = (1..=3u64)
            .zip(reserve_ports(3))
            .map(|(id, addr)| Member {
                id,
                addr,
                data_dir: dir.join(format!("meta-{id}")),
                process: None,
                generation: 0,
                frozen: false,
            })
            .collect();
        let initial: Vec<String> = members
            .iter()
            .map(|m| format!("{}={}", m.id, m.addr))
            .collect();
        let initial = initial.join(",");
        let mut members = members;
        for m in &mut members {
            let args = meta_args(m, &initial, &options);
            m.process = Some(Process::start(&dir, &format!("meta-{}-0", m.id), &args));
        }

        let kms = crate::start_kms(&dir);
        let default_key_arn = kms.ready_str("default_kms_key_arn");
        let blob = Process::start(
            &dir,
            "blob",
            &os_args(&[
                "blob",
                "--data-dir",
                &dir.join(BLOB_DATA).to_string_lossy(),
                "--listen",
                "127.0.0.1:0",
            ]),
        );
        let gateways = (0..options.gateways.max(1))
            .map(|_| Gateway {
                process: None,
                generation: 0,
            })
            .collect();
        let mut cluster = Cluster {
            members,
            kms,
            blob,
            gateways,
            default_key_arn,
            dir,
            options,
            tmp: Some(tmp),
        };
        for i in 0..cluster.gateways.len() {
            cluster.start_gateway(i);
        }
        cluster.wait_leader(Duration::from_secs(30));
        cluster
    }

    /// Starts gateway `index` (log tag `gateway-<index>-<generation>`) on new ports.
    fn start_gateway(&mut self, index: usize) {
        let args = os_args(&[
            "gateway",
            "--meta",
            &self.meta_addrs(),
            "--kms",
            &format!("http://{}", self.kms.ready_str("grpc")),
            "--blob",
            &format!("http://{}", self.blob.ready_str("listen")),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ]);
        let g = &self.gateways[index];
        assert!(g.process.is_none(), "gateway {index} is still running");
        let tag = format!("gateway-{index}-{}", g.generation);
        let p = Process::start_with_env(&self.dir, &tag, &args, &self.options.gateway_env);
        self.gateways[index].process = Some(p);
    }

    /// SIGKILLs gateway `index` and waits for it to exit.
    pub fn kill_gateway(&mut self, index: usize) {
        let mut p = self.gateways[index]
            .process
            .take()
            .unwrap_or_else(|| panic!("gateway {index} is not running"));
        p.kill_with(9);
    }

    /// Starts a killed gateway again (new ports: read them with [`Cluster::gateway_endpoint`]).
    pub fn restart_gateway(&mut self, index: usize) {
        self.gateways[index].generation += 1;
        self.start_gateway(index);
    }

    /// Whether gateway `index` runs.
    pub fn gateway_running(&self, index: usize) -> bool {
        self.gateways[index].process.is_some()
    }

    /// Gateway `index`'s S3 endpoint URL.
    pub fn gateway_endpoint(&self, index: usize) -> String {
        let p = self.gateways[index].running(index);
        format!("http://{}", p.ready_str("s3"))
    }

    /// Gateway `index`'s admin listener (`host:port`).
    pub fn gateway_admin(&self, index: usize) -> String {
        self.gateways[index].running(index).ready_str("admin")
    }

    /// The stderr log of gateway `index`'s current (or last) process, without terminal colours.
    pub fn gateway_log(&self, index: usize) -> String {
        let g = &self.gateways[index];
        let path = self
            .dir
            .join(format!("stderr-gateway-{index}-{}.log", g.generation));
        strip_ansi(&std::fs::read_to_string(&path).unwrap_or_default())
    }

    /// The blob node's data directory.
    pub fn blob_data_dir(&self) -> PathBuf {
        self.dir.join(BLOB_DATA)
    }

    /// `host:port,host:port,host:port` of the meta members.
    pub fn meta_addrs(&self) -> String {
        let addrs: Vec<&str> = self.members.iter().map(|m| m.addr.as_str()).collect();
        addrs.join(",")
    }

    /// The (first) gateway's S3 endpoint URL.
    pub fn endpoint(&self) -> String {
        self.gateway_endpoint(0)
    }

    /// An aws-sdk-s3 client (path-style, the SDK's default retries) for the first gateway.
    pub async fn s3(&self) -> aws_sdk_s3::Client {
        s3_client(&self.endpoint(), true).await
    }

    /// The member with this id.
    pub fn member(&self, id: u64) -> &Member {
        self.members
            .iter()
            .find(|m| m.id == id)
            .unwrap_or_else(|| panic!("no meta member {id}"))
    }

    fn member_mut(&mut self, id: u64) -> &mut Member {
        self.members
            .iter_mut()
            .find(|m| m.id == id)
            .unwrap_or_else(|| panic!("no meta member {id}"))
    }

    /// SIGKILLs member `id` and waits for it to exit.
    pub fn kill(&mut self, id: u64) {
        let m = self.member_mut(id);
        let mut p = m
            .process
            .take()
            .unwrap_or_else(|| panic!("meta member {id} is not running"));
        p.kill_with(9);
        m.frozen = false;
    }

    /// Freezes member `id` with SIGSTOP: its sockets stay open but it answers nothing.
    pub fn freeze(&mut self, id: u64) {
        let pid = self.member(id).pid();
        signal(pid, "STOP");
        self.member_mut(id).frozen = true;
    }

    /// Thaws a frozen member with SIGCONT.
    pub fn thaw(&mut self, id: u64) {
        let pid = self.member(id).pid();
        signal(pid, "CONT");
        self.member_mut(id).frozen = false;
    }

    /// Starts a killed member again on its data directory and address (the membership comes
    /// from its log; `--initial-members` is passed again and does nothing).
    pub fn restart(&mut self, id: u64) {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.id, m.addr))
            .collect();
        let initial = initial.join(",");
        let options = self.options.clone();
        let dir = self.dir.clone();
        let m = self.member_mut(id);
        assert!(m.process.is_none(), "meta member {id} is still running");
        m.generation += 1;
        let args = meta_args(m, &initial, &options);
        wait_bindable(&m.addr);
        let tag = format!("meta-{id}-{}", m.generation);
        m.process = Some(Process::start(&dir, &tag, &args));
    }

    /// The stderr log of member `id`'s current (or last) process, without terminal colours.
    pub fn member_log(&self, id: u64) -> String {
        let m = self.member(id);
        let path = self
            .dir
            .join(format!("stderr-meta-{id}-{}.log", m.generation));
        strip_ansi(&std::fs::read_to_string(&path).unwrap_or_default())
    }

    /// Runs `coffer admin cluster --meta <members> --json <sub...>` with a deadline.
    pub fn admin(&self, sub: &[&str]) -> AdminOutput {
        let addrs = self.meta_addrs();
        let mut args = vec!["admin", "cluster", "--meta", addrs.as_str(), "--json"];
        args.extend_from_slice(sub);
        run_with_deadline(&self.dir, &args, ADMIN_TIMEOUT)
    }

    /// `coffer admin cluster status`, parsed; `None` when the command failed.
    pub fn status(&self) -> Option<Vec<MemberStatus>> {
        let out = self.admin(&["status"]);
        if out.code != 0 {
            return None;
        }
        let v = out.json();
        let list = v
            .get("members")
            .cloned()
            .unwrap_or_else(|| v.clone())
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("status --json: no member list: {v}"));
        Some(
            list.into_iter()
                .map(|m| MemberStatus {
                    id: m["id"]
                        .as_u64()
                        .unwrap_or_else(|| panic!("status --json: member without id: {m}")),
                    role: m["role"].as_str().unwrap_or_default().to_ascii_lowercase(),
                    reachable: m["reachable"].as_bool().unwrap_or(false),
                    raw: m,
                })
                .collect(),
        )
    }

    /// The leader's id if the reachable members know one.
    pub fn leader(&self) -> Option<u64> {
        self.status()?
            .into_iter()
            .find(|m| m.reachable && m.role == "leader")
            .map(|m| m.id)
    }

    /// Polls `status` until a member says it leads; panics after `timeout`.
    pub fn wait_leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(id) = self.leader() {
                return id;
            }
            assert!(
                Instant::now() < deadline,
                "no meta leader within {timeout:?}; last status: {:?}",
                self.admin(&["status"])
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Some running, unfrozen member that is not `leader`.
    pub fn follower_of(&self, leader: u64) -> u64 {
        self.members
            .iter()
            .find(|m| m.id != leader && m.is_running() && !m.frozen)
            .map(|m| m.id)
            .expect("no running follower")
    }

    /// `coffer admin cluster digest --json`.
    pub fn digest(&self) -> (AdminOutput, Option<Value>) {
        let out = self.admin(&["digest"]);
        let v = serde_json::from_str(&out.stdout).ok();
        (out, v)
    }

    /// Polls `digest` until all three members answer with one digest at one applied index
    /// (and the command exits 0 saying so); returns that JSON. Panics after `timeout` with the
    /// last answer.
    pub fn wait_identical(&self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (out, v) = self.digest();
            if let Some(v) = &v {
                if out.code == 0 && digests_agree(v, self.members.len()) {
                    return v.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "the members' state digests did not become identical within {timeout:?}: {out:?}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Creates a customer managed key through the KMS JSON API and returns its ARN.
    pub fn create_kms_key(&self, description: &str) -> String {
        let endpoint = format!("http://{}", self.kms.ready_str("http"));
        let out = run_with_deadline(
            &self.dir,
            &[
                "admin",
                "--endpoint",
                &endpoint,
                "--json",
                "key",
                "create",
                "--description",
                description,
            ],
            ADMIN_TIMEOUT,
        );
        assert_eq!(out.code, 0, "coffer admin key create: {out:?}");
        out.json()["Arn"]
            .as_str()
            .unwrap_or_else(|| panic!("no Arn in {out:?}"))
            .to_string()
    }
}

/// Whether a `digest --json` answer has `members` digests, all present and equal, at one
/// applied index, and says `identical`.
pub fn digests_agree(v: &Value, members: usize) -> bool {
    let Some(list) = v["members"].as_array() else {
        return false;
    };
    let digests: Vec<String> = list
        .iter()
        .filter_map(|m| m["digest"].as_str().map(str::to_string))
        .collect();
    let applied: Vec<Option<u64>> = list.iter().map(|m| m["applied"].as_u64()).collect();
    v["identical"].as_bool() == Some(true)
        && list.len() == members
        && digests.len() == members
        && digests.windows(2).all(|w| w[0] == w[1])
        && applied.iter().all(|a| a.is_some() && *a == applied[0])
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A frozen process cannot exit on SIGKILL until it runs again; SIGKILL does wake it, but
        // thaw first so nothing lingers in the stopped state.
        for m in &mut self.members {
            if m.frozen {
                if let Some(p) = &m.process {
                    if let Some(pid) = p.ready["pid"].as_u64() {
                        signal(pid, "CONT");
                    }
                }
            }
            m.process.take();
        }
        if std::thread::panicking() {
            if let Some(tmp) = self.tmp.take() {
                let kept = tmp.keep();
                eprintln!("cluster data and logs kept in {}", kept.display());
            }
        }
    }
}

/// `text` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn meta_args(m: &Member, initial: &str, options: &ClusterOptions) -> Vec<OsString> {
    os_args(&[
        "meta",
        "--id",
        &m.id.to_string(),
        "--data-dir",
        &m.data_dir.to_string_lossy(),
        "--listen",
        &m.addr,
        "--initial-members",
        initial,
        "--snapshot-logs",
        &options.snapshot_logs.to_string(),
        "--snapshot-keep-logs",
        &options.snapshot_keep_logs.to_string(),
    ])
}

/// Sends `SIG<name>` to `pid` with kill(1).
fn signal(pid: u64, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Runs `coffer <args>` with the test credentials; kills it and panics after `timeout`.
fn run_with_deadline(dir: &Path, args: &[&str], timeout: Duration) -> AdminOutput {
    use std::sync::atomic::{AtomicU64, Ordering};
    static RUN: AtomicU64 = AtomicU64::new(0);
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    let out_path = dir.join(format!("admin-{n}.stdout"));
    let err_path = dir.join(format!("admin-{n}.stderr"));
    let stdout = std::fs::File::create(&out_path).expect("admin stdout");
    let stderr = std::fs::File::create(&err_path).expect("admin stderr");
    let mut child = Command::new(coffer_bin())
        .args(args)
        .env("COFFER_ACCESS_KEY_ID", ACCESS_KEY)
        .env("COFFER_SECRET_ACCESS_KEY", SECRET_KEY)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("spawn coffer admin");
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for coffer admin") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "coffer {args:?} did not finish within {timeout:?}: {}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = AdminOutput {
        code: status.code().unwrap_or(-1),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    };
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    out
}
