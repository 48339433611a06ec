//! `coffer admin cluster` (the real binary) against real `coffer meta` processes on reserved
//! loopback ports: a three-member group written to through `GrpcMetaClient`, a fourth member
//! that joins as a learner, its promotion, identical digests on four, a fifth added with
//! `add-learner` and removed again, a killed member shown unreachable and then removed while
//! the group keeps accepting writes, removals down to one voter and the refusal to remove the
//! last; and `status` against `coffer dev`.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use coffer_meta::{Command as MetaCommand, GrpcMetaClient, GrpcMetaConfig, MetaClient};
use coffer_tests::{coffer_bin, Process};
use serde_json::Value;

/// How long the group may take to settle (an election, a catch-up).
const PATIENCE: Duration = Duration::from_secs(30);

/// A loopback port the OS picked, free again for a process to bind.
fn reserve_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local_addr").to_string()
}

/// What one `coffer admin cluster` run gave.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("no JSON on stdout ({e}): {self:?}"))
    }
}

/// `coffer admin cluster --meta <meta> --json <sub...>`.
fn admin(meta: &str, sub: &[&str]) -> Run {
    let out = tokio::task::block_in_place(|| {
        Command::new(coffer_bin())
            .args(["admin", "cluster", "--meta", meta, "--json"])
            .args(sub)
            .env_remove("COFFER_META")
            .env("COFFER_LOG", "warn")
            .output()
            .expect("run coffer admin cluster")
    });
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `status --json`, once it satisfies `check`; panics after [`PATIENCE`] with the last answer.
fn status_until(meta: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let run = admin(meta, &["status"]);
        if run.code == 0 && check(&run.json()) {
            return run.json();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {run:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn member(status: &Value, id: u64) -> Option<&Value> {
    status["members"]
        .as_array()?
        .iter()
        .find(|m| m["id"].as_u64() == Some(id))
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

fn has_leader(s: &Value) -> bool {
    s["leader"].as_u64().is_some()
}

fn start_member(dir: &Path, id: u64, addr: &str, how: &[&str]) -> Process {
    let mut args: Vec<OsString> = vec![
        "meta".into(),
        "--id".into(),
        id.to_string().into(),
        "--data-dir".into(),
        dir.join(format!("meta-{id}")).into(),
        "--listen".into(),
        addr.into(),
    ];
    args.extend(how.iter().map(OsString::from));
    Process::start(dir, &format!("meta-{id}"), &args)
}

async fn write(client: &GrpcMetaClient, name: &str) {
    client
        .apply(MetaCommand::PutConfig {
            name: format!("cfg/{name}"),
            value: name.as_bytes().to_vec(),
        })
        .await
        .unwrap_or_else(|e| panic!("write {name}: {e}"));
}

/// Asserts `digest --json` says the `n` members are identical at one applied index.
fn assert_identical(meta: &str, n: usize) -> Value {
    let run = admin(meta, &["digest"]);
    assert_eq!(run.code, 0, "digest: {run:?}");
    let v = run.json();
    assert_eq!(v["identical"], Value::Bool(true), "{v}");
    let members = v["members"].as_array().expect("members");
    assert_eq!(members.len(), n, "{v}");
    for m in members {
        assert_eq!(m["digest"], members[0]["digest"], "{v}");
        assert_eq!(m["applied"], members[0]["applied"], "{v}");
        assert!(m["digest"].as_str().is_some_and(|d| d.len() == 64), "{v}");
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_admin_adds_promotes_compares_and_removes_members() {
    let tmp = tempfile::Builder::new()
        .prefix("coffer-cluster-admin-")
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    let addrs: Vec<String> = (0..4).map(|_| reserve_port()).collect();
    let initial = (1..=3)
        .map(|id| format!("{id}={}", addrs[id - 1]))
        .collect::<Vec<_>>()
        .join(",");
    let mut procs: Vec<Option<Process>> = (1..=3u64)
        .map(|id| {
            Some(start_member(
                dir,
                id,
                &addrs[id as usize - 1],
                &["--initial-members", &initial],
            ))
        })
        .collect();
    let meta = addrs[..3].join(",");

    let s = status_until(&meta, "a leader", has_leader);
    assert_eq!(ids(&s["voters"]), vec![1, 2, 3], "{s}");
    let client = GrpcMetaClient::new(addrs[..3].to_vec(), GrpcMetaConfig::default()).unwrap();
    for i in 0..20 {
        write(&client, &format!("before-{i}")).await;
    }

    // A fourth member joins as a learner.
    procs.push(Some(start_member(
        dir,
        4,
        &addrs[3],
        &["--join", &addrs[0]],
    )));
    // A member that started late may still be a candidate with an empty log while the other
    // two commit: wait until the three voters have settled and applied the writes.
    let s = status_until(&meta, "4 members, 4 a learner, 1-3 settled", |s| {
        s["members"].as_array().map(Vec::len) == Some(4)
            && member(s, 4).is_some_and(|m| m["reachable"] == true)
            && (1..=3).all(|id| {
                member(s, id).is_some_and(|m| {
                    ["leader", "follower"].contains(&m["role"].as_str().unwrap_or(""))
                        && m["applied_index"].as_u64().unwrap_or(0) >= 20
                })
            })
    });
    let m4 = member(&s, 4).unwrap();
    assert_eq!(m4["voter"], false, "{s}");
    assert_eq!(m4["role"], "learner", "{s}");
    assert_eq!(ids(&s["learners"]), vec![4], "{s}");
    for id in 1..=3 {
        let m = member(&s, id).unwrap();
        assert_eq!(m["reachable"], true, "{s}");
        assert_eq!(m["voter"], true, "{s}");
        assert!(
            ["leader", "follower"].contains(&m["role"].as_str().unwrap()),
            "{s}"
        );
        assert!(m["term"].as_u64().unwrap() >= 1, "{s}");
        assert!(m["applied_index"].as_u64().unwrap() >= 20, "{s}");
    }

    // Promoted to voter.
    let run = admin(&meta, &["promote", "4"]);
    assert_eq!(run.code, 0, "promote: {run:?}");
    assert_eq!(ids(&run.json()["voters"]), vec![1, 2, 3, 4], "{run:?}");
    let s = status_until(&meta, "4 a follower", |s| {
        member(s, 4).is_some_and(|m| m["voter"] == true && m["role"] == "follower")
    });
    assert!(ids(&s["learners"]).is_empty(), "{s}");
    // Promoting it again, or a stranger, is refused with a clear error.
    let run = admin(&meta, &["promote", "4"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("already a voter"), "{run:?}");
    let run = admin(&meta, &["promote", "9"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("not a learner"), "{run:?}");

    for i in 0..10 {
        write(&client, &format!("four-{i}")).await;
    }
    let v = assert_identical(&meta, 4);
    assert!(v["members"][0]["applied"].as_u64().unwrap() >= 30, "{v}");

    // add-learner: a fifth member started without --join is added and catches up; a node that
    // does not run is refused; a learner is removed again.
    let run = admin(&meta, &["add-learner", "5", &reserve_port()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("does not answer"), "{run:?}");
    let addr5 = reserve_port();
    let mut fifth = start_member(dir, 5, &addr5, &[]);
    let run = admin(&meta, &["add-learner", "5", &addr5]);
    assert_eq!(run.code, 0, "add-learner: {run:?}");
    assert_eq!(ids(&run.json()["learners"]), vec![5], "{run:?}");
    let s = admin(&meta, &["status"]).json();
    let m5 = member(&s, 5).unwrap();
    assert_eq!(m5["role"], "learner", "{s}");
    assert!(m5["applied_index"].as_u64().unwrap() >= 30, "{s}");
    let run = admin(&meta, &["remove", "5"]);
    assert_eq!(run.code, 0, "remove the learner: {run:?}");
    assert!(ids(&run.json()["learners"]).is_empty(), "{run:?}");
    fifth.kill_with(9);

    // A follower is killed: shown unreachable, still a voter.
    let leader = s["leader"].as_u64().unwrap();
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    procs[victim as usize - 1].take().unwrap().kill_with(9);
    let s = status_until(&meta, "the killed member unreachable", |s| {
        member(s, victim).is_some_and(|m| m["reachable"] == false)
    });
    let m = member(&s, victim).unwrap();
    assert_eq!(m["voter"], true, "{s}");
    assert_eq!(m["role"], Value::Null, "{s}");
    assert!(m["error"].as_str().is_some_and(|e| !e.is_empty()), "{s}");
    // Digest compares the reachable members and names the unreachable one.
    let run = admin(&meta, &["digest"]);
    assert_eq!(run.code, 0, "digest with a member down: {run:?}");
    let v = run.json();
    assert_eq!(v["identical"], true, "{v}");
    let down = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"].as_u64() == Some(victim))
        .unwrap();
    assert_eq!(down["digest"], Value::Null, "{v}");

    // It is removed: three voters, and the group still accepts writes.
    let run = admin(&meta, &["remove", &victim.to_string()]);
    assert_eq!(run.code, 0, "remove: {run:?}");
    let alive: Vec<u64> = (1..=4).filter(|id| *id != victim).collect();
    let s = status_until(&meta, "three voters", |s| {
        ids(&s["voters"]) == alive && has_leader(s)
    });
    assert!(member(&s, victim).is_none(), "{s}");
    assert_eq!(s["members"].as_array().unwrap().len(), 3, "{s}");
    for i in 0..5 {
        write(&client, &format!("three-{i}")).await;
    }
    let alive_meta = alive
        .iter()
        .map(|id| addrs[*id as usize - 1].clone())
        .collect::<Vec<_>>()
        .join(",");
    assert_identical(&alive_meta, 3);

    // Down to one voter; the last one cannot be removed.
    let mut voters = alive.clone();
    while voters.len() > 1 {
        let s = status_until(&alive_meta, "a leader", has_leader);
        let leader = s["leader"].as_u64().unwrap();
        let gone = *voters.iter().find(|id| **id != leader).unwrap();
        let run = admin(&alive_meta, &["remove", &gone.to_string()]);
        assert_eq!(run.code, 0, "remove {gone}: {run:?}");
        voters.retain(|id| *id != gone);
        status_until(&alive_meta, "the removal", |s| ids(&s["voters"]) == voters);
    }
    let last = voters[0];
    let run = admin(&alive_meta, &["remove", &last.to_string()]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("last voter"), "{run:?}");
    let s = status_until(&alive_meta, "the last voter leading", |s| {
        s["leader"].as_u64() == Some(last)
    });
    assert_eq!(ids(&s["voters"]), vec![last], "{s}");
    let solo = GrpcMetaClient::new(
        vec![addrs[last as usize - 1].clone()],
        GrpcMetaConfig::default(),
    )
    .unwrap();
    write(&solo, "alone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_works_against_coffer_dev() {
    let tmp = tempfile::Builder::new()
        .prefix("coffer-cluster-dev-")
        .tempdir()
        .unwrap();
    let args: Vec<OsString> = [
        "dev",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
    ]
    .iter()
    .map(OsString::from)
    .chain([tmp.path().join("data").into_os_string()])
    .collect();
    let dev = Process::start(tmp.path(), "dev", &args);
    let meta = dev.ready_str("meta");
    assert!(!meta.is_empty(), "no meta address in {}", dev.ready);
    let s = status_until(&meta, "a leader", has_leader);
    assert_eq!(ids(&s["voters"]), vec![1], "{s}");
    let m = member(&s, 1).unwrap();
    assert_eq!(m["role"], "leader", "{s}");
    assert_eq!(m["reachable"], true, "{s}");
    assert_identical(&meta, 1);
    // The table is printed without --json.
    let out = tokio::task::block_in_place(|| {
        Command::new(coffer_bin())
            .args(["admin", "cluster", "status"])
            .env("COFFER_META", &meta)
            .output()
            .unwrap()
    });
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(table.starts_with("ID  ADDRESS"), "{table}");
    assert!(table.contains("leader"), "{table}");
}
