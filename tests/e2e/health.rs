//! The admin listener (`--admin-listen`) of `coffer meta`, `coffer kms` and `coffer blob`, on
//! real processes: `/health/live`, `/health/ready` following what each role needs (a metadata
//! member: a leader with a quorum and its entries applied; the KMS: an answering backend; a
//! blob node: a writable data directory and its gRPC service), and `/metrics` in the
//! Prometheus text format with each role's gauges and counters.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coffer_tests::Process;

/// How long a role may take to become ready, or to notice what it lost.
const PATIENCE: Duration = Duration::from_secs(30);

/// A loopback port the OS picked, free again for a process that must come back on it.
fn reserve_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local_addr").to_string()
}

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

/// Status and body of a plain `GET path` to `addr`.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    conn.read_to_string(&mut raw).expect("response");
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {raw:?}"));
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {head:?}"));
    (status, body.to_owned())
}

/// Polls `GET path` until it answers `status`; returns the body. Panics after [`PATIENCE`]
/// with the last answer.
fn until_status(addr: &str, path: &str, status: u16) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (got, body) = get(addr, path);
        if got == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{addr}{path} still answers {got} {body:?}, not {status}, after {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The samples of a Prometheus text page, `name{labels}` to value. Panics on a line that is
/// neither a comment nor a sample.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("not a sample: {l:?}"));
            let value: f64 = value
                .parse()
                .unwrap_or_else(|e| panic!("bad value in {l:?}: {e}"));
            (series.to_owned(), value)
        })
        .collect()
}

/// `GET /metrics` of `admin`, parsed; panics unless it is 200 with a Prometheus content type.
pub(crate) fn metrics(admin: &str) -> BTreeMap<String, f64> {
    let (status, body) = get(admin, "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("# TYPE "), "{body}");
    samples(&body)
}

/// The value of `series`; panics with the page when absent.
fn value(page: &BTreeMap<String, f64>, series: &str) -> f64 {
    *page
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {page:#?}"))
}

fn start_member(dir: &Path, id: u64, addr: &str, initial: &str) -> Process {
    let data = dir.join(format!("meta-{id}"));
    let mut a = args(&["meta", "--id", &id.to_string(), "--listen", addr]);
    a.extend(args(&[
        "--initial-members",
        initial,
        "--admin-listen",
        "127.0.0.1:0",
    ]));
    a.extend(["--data-dir".into(), data.into()]);
    Process::start(dir, &format!("meta-{id}"), &a)
}

/// The admin addresses of the running members, by id.
fn admins(members: &BTreeMap<u64, Process>) -> BTreeMap<u64, String> {
    members
        .iter()
        .map(|(id, p)| (*id, p.ready_str("admin")))
        .collect()
}

/// Waits until every member is ready, then returns the leader's id (the one member saying
/// `is_leader 1`), after checking the gauges every member shows.
fn all_ready(members: &BTreeMap<u64, Process>) -> u64 {
    let admins = admins(members);
    for admin in admins.values() {
        assert_eq!(until_status(admin, "/health/ready", 200), "ready\n");
    }
    let mut leaders = Vec::new();
    let mut terms = Vec::new();
    for (id, admin) in &admins {
        let m = metrics(admin);
        assert_eq!(value(&m, "coffer_meta_raft_has_leader"), 1.0, "{m:#?}");
        assert_eq!(value(&m, "coffer_meta_raft_is_voter"), 1.0, "{m:#?}");
        assert_eq!(value(&m, "coffer_meta_raft_voters"), 3.0, "{m:#?}");
        assert_eq!(value(&m, "coffer_meta_raft_learners"), 0.0, "{m:#?}");
        let applied = value(&m, "coffer_meta_raft_applied_index");
        assert!(applied >= 1.0, "{m:#?}");
        assert!(
            value(&m, "coffer_meta_raft_last_log_index") >= applied,
            "{m:#?}"
        );
        assert!(
            value(&m, "coffer_meta_raft_committed_index") >= 1.0,
            "{m:#?}"
        );
        terms.push(value(&m, "coffer_meta_raft_term"));
        if value(&m, "coffer_meta_raft_is_leader") == 1.0 {
            assert!(
                value(&m, "coffer_meta_raft_seconds_since_quorum_ack") < 5.0,
                "{m:#?}"
            );
            leaders.push(*id);
        }
    }
    assert_eq!(leaders.len(), 1, "one leader: {leaders:?}");
    assert!(terms.iter().all(|t| *t >= 1.0), "{terms:?}");
    leaders[0]
}

/// Three `coffer meta` members with admin listeners: all ready once the group has a leader;
/// a follower left alone (the leader and the other follower killed) stops being ready, then
/// all are ready again once the two are back; a leader left alone stops being ready too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_ready_follows_the_quorum() {
    let tmp = tempfile::Builder::new()
        .prefix("coffer-health-meta-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let addrs: BTreeMap<u64, String> = (1..=3).map(|id| (id, reserve_port())).collect();
    let initial = addrs
        .iter()
        .map(|(id, a)| format!("{id}={a}"))
        .collect::<Vec<_>>()
        .join(",");
    let start = |id: u64| start_member(dir, id, &addrs[&id], &initial);
    let mut members: BTreeMap<u64, Process> = (1..=3).map(|id| (id, start(id))).collect();
    for p in members.values() {
        assert!(p.ready["admin"].is_string(), "{}", p.ready);
        assert_eq!(get(&p.ready_str("admin"), "/health/live").0, 200);
    }

    // A follower alone: it loses its leader and, as a candidate, knows none.
    let leader = all_ready(&members);
    let follower = *members.keys().find(|id| **id != leader).unwrap();
    let lone = *members
        .keys()
        .find(|id| **id != leader && **id != follower)
        .unwrap();
    for id in [leader, follower] {
        members.remove(&id).unwrap().kill_with(9);
    }
    let admin = members[&lone].ready_str("admin");
    let why = until_status(&admin, "/health/ready", 503);
    assert!(why.contains("no leader"), "{why:?}");
    assert_eq!(get(&admin, "/health/live").0, 200);
    assert_eq!(value(&metrics(&admin), "coffer_meta_raft_has_leader"), 0.0);

    // Back with the two: ready again.
    for id in [leader, follower] {
        members.insert(id, start(id));
    }
    let leader = all_ready(&members);

    // A leader alone: openraft keeps it leader, but no quorum acknowledges it any more.
    let followers: Vec<u64> = members.keys().copied().filter(|id| *id != leader).collect();
    for id in followers {
        members.remove(&id).unwrap().kill_with(9);
    }
    let admin = members[&leader].ready_str("admin");
    let why = until_status(&admin, "/health/ready", 503);
    assert!(why.contains("quorum"), "{why:?}");
    assert_eq!(get(&admin, "/health/live").0, 200);
}

/// `coffer kms` on the local keystore: ready, the ready file names the admin listener, and the
/// calls it served are counted by operation. Without `--admin-listen` the ready file is as
/// before and nothing else listens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_local_keystore_ready_and_metrics() {
    let tmp = tempfile::Builder::new()
        .prefix("coffer-health-kms-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let data = dir.join("kms-data");
    let mut base = args(&[
        "kms",
        "--grpc-listen",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
    ]);
    base.extend(["--data-dir".into(), data.into()]);

    let plain = Process::start(dir, "kms-plain", &base);
    assert!(plain.ready.get("admin").is_none(), "{}", plain.ready);
    drop(plain);

    let mut with_admin = base.clone();
    with_admin.extend(args(&["--admin-listen", "127.0.0.1:0"]));
    let kms = Process::start(dir, "kms", &with_admin);
    let admin = kms.ready_str("admin");
    assert_eq!(get(&admin, "/health/live"), (200, "OK\n".to_owned()));
    assert_eq!(get(&admin, "/health/ready"), (200, "ready\n".to_owned()));
    let m = metrics(&admin);
    assert_eq!(value(&m, "coffer_kms_backend_up"), 1.0, "{m:#?}");
    assert_eq!(value(&m, "coffer_kms_backend_secure"), 1.0, "{m:#?}");
    assert!(
        value(&m, "coffer_kms_backend_check_seconds") < 3.0,
        "{m:#?}"
    );
    // Startup looked the default key up (a restart on the same keystore finds it).
    assert!(
        value(&m, r#"coffer_kms_calls_total{op="DescribeKey"}"#) >= 1.0,
        "{m:#?}"
    );
}

/// A `moto_server` (AWS KMS emulator) from the test venv on a free loopback port; killed on
/// drop. Missing moto fails the test (run tests/run-all.sh to make the venv).
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start(dir: &Path) -> Moto {
        let bin = [
            std::env::var_os("COFFER_TEST_VENV").map(PathBuf::from),
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/coffer-venvs/py")),
        ]
        .into_iter()
        .flatten()
        .map(|venv| venv.join("bin/moto_server"))
        .find(|p| p.is_file())
        .expect("moto_server not in $COFFER_TEST_VENV/bin or ~/.cache/coffer-venvs/py/bin: run tests/run-all.sh");
        let addr = reserve_port();
        let (host, port) = addr.rsplit_once(':').unwrap();
        let log = std::fs::File::create(dir.join("moto.log")).expect("log");
        let mut child = Command::new(bin)
            .args(["-H", host, "-p", port])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start moto_server");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&addr).is_err() {
            assert!(child.try_wait().unwrap().is_none(), "moto_server exited");
            assert!(Instant::now() < deadline, "moto_server not up after 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto {
            child,
            endpoint: format!("http://{addr}"),
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill {sig}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `coffer kms` on the aws-kms backend (moto): ready while moto answers, 503 with the reason
/// while moto is frozen (SIGSTOP: calls time out), ready again once it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_ready_follows_its_backend() {
    let tmp = tempfile::Builder::new()
        .prefix("coffer-health-kms-aws-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let moto = Moto::start(dir);
    let config = dir.join("backend.json");
    let backend = serde_json::json!({
        "type": "aws-kms",
        "endpoint": moto.endpoint,
        "region": "us-east-1",
        "access_key_id": "testing",
        "secret_access_key": "testing",
        "attempt_timeout_ms": 1000,
        "max_attempts": 1,
    });
    std::fs::write(&config, backend.to_string()).unwrap();
    let mut a = args(&[
        "kms",
        "--grpc-listen",
        "127.0.0.1:0",
        "--listen",
        "127.0.0.1:0",
    ]);
    a.extend(args(&["--admin-listen", "127.0.0.1:0"]));
    a.extend(["--data-dir".into(), dir.join("kms-data").into()]);
    a.extend(["--backend-config".into(), config.into()]);
    let kms = Process::start(dir, "kms", &a);
    let admin = kms.ready_str("admin");
    assert_eq!(until_status(&admin, "/health/ready", 200), "ready\n");
    assert_eq!(value(&metrics(&admin), "coffer_kms_backend_up"), 1.0);

    moto.signal("-STOP");
    let why = until_status(&admin, "/health/ready", 503);
    assert!(why.contains("DescribeKey"), "{why:?}");
    assert_eq!(value(&metrics(&admin), "coffer_kms_backend_up"), 0.0);
    assert_eq!(get(&admin, "/health/live").0, 200);

    moto.signal("-CONT");
    assert_eq!(until_status(&admin, "/health/ready", 200), "ready\n");
}

/// `coffer blob`: ready with its counters on `/metrics`; not ready while its data directory
/// cannot take a write (its temp directory replaced by a file), ready again once it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_ready_follows_its_data_directory() {
    let tmp = tempfile::Builder::new()
        .prefix("coffer-health-blob-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let data = dir.join("blob-data");
    let mut a = args(&[
        "blob",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    a.extend(["--data-dir".into(), data.clone().into()]);
    let blob = Process::start(dir, "blob", &a);
    let admin = blob.ready_str("admin");
    assert_eq!(get(&admin, "/health/live"), (200, "OK\n".to_owned()));
    assert_eq!(get(&admin, "/health/ready"), (200, "ready\n".to_owned()));
    let m = metrics(&admin);
    assert_eq!(value(&m, "coffer_blob_serving"), 1.0, "{m:#?}");
    assert_eq!(value(&m, "coffer_blob_writes_in_progress"), 0.0, "{m:#?}");
    assert_eq!(
        value(&m, "coffer_blob_writes_committed_total"),
        0.0,
        "{m:#?}"
    );
    assert_eq!(value(&m, "coffer_blob_deletes_total"), 0.0, "{m:#?}");
    assert!(value(&m, "coffer_blob_uptime_seconds") < 60.0, "{m:#?}");

    let temp = data.join("tmp");
    std::fs::remove_dir(&temp).expect("the store's temp directory, empty");
    std::fs::write(&temp, b"not a directory").unwrap();
    let (status, why) = get(&admin, "/health/ready");
    assert_eq!(status, 503, "{why:?}");
    assert!(why.contains("not writable"), "{why:?}");
    assert_eq!(get(&admin, "/health/live").0, 200);

    std::fs::remove_file(&temp).unwrap();
    std::fs::create_dir(&temp).unwrap();
    assert_eq!(get(&admin, "/health/ready"), (200, "ready\n".to_owned()));
    let left: Vec<_> = std::fs::read_dir(&temp).unwrap().collect();
    assert!(left.is_empty(), "probe files left behind: {left:?}");
}
