//! `coffer admin cluster`: the metadata Raft group seen from outside. `status` asks every member
//! for its own view, `add-learner`/`promote`/`remove` change the membership through the leader
//! (coffer-raft's [`RaftAdminClient`]), and `digest` compares the members' states
//! ([`GrpcMetaClient::node_digest`]) once they have applied the same log.
//!
//! Exit status: 0 on success, 1 on an error, and for `digest` 3 when the reachable members'
//! states differ.

use std::io::Write;
use std::time::Duration;

use coffer_blob::grpc::{GrpcBlobConfig, GrpcBlobStore};
use coffer_meta::{GrpcMetaClient, GrpcMetaConfig, StateDigest};
use coffer_raft::admin::{ClusterStatus, MemberStatus, NodeStatus, Role};
use coffer_raft::{AdminConfig, NodeId, RaftAdminClient};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::admin::{render, Output};
use super::blob::ALIVE_WITHIN_MS;
use super::CmdError;
use crate::cli::{ClusterArgs, ClusterCommand};

/// How long `digest` waits for the members to apply the same log index.
const DIGEST_PATIENCE: Duration = Duration::from_secs(10);

/// The exit status of `digest` when the members differ.
const EXIT_DIFFER: i32 = 3;

/// Runs `coffer admin cluster`.
pub async fn run(args: &ClusterArgs, as_json: bool) -> Result<(), CmdError> {
    let admin = RaftAdminClient::new(args.meta.clone(), AdminConfig::default())?;
    let out = match &args.command {
        ClusterCommand::Status => {
            let mut out = status_output(&admin.cluster_status().await?);
            // The blob nodes registered in the group (`coffer blob --meta`).
            let blobs = blob_nodes_output(&args.meta).await;
            if let (Output::Rows(_, _, v), Output::Rows(_, _, b)) = (&mut out, &blobs) {
                v["blob_nodes"] = b.clone();
            }
            print!("{}", render(&out, as_json)?);
            if !as_json {
                print!("\n{}", render(&blobs, false)?);
            }
            return Ok(());
        }
        ClusterCommand::AddLearner { id, addr } => {
            let index = admin.add_learner(*id, addr).await?;
            changed(&admin, "added as a learner (caught up)", *id, index).await?
        }
        ClusterCommand::Promote { id } => {
            let index = admin.promote(*id).await?;
            changed(&admin, "promoted to voter", *id, index).await?
        }
        ClusterCommand::Remove { id } => {
            let index = admin.remove(*id).await?;
            changed(&admin, "removed", *id, index).await?
        }
        ClusterCommand::Digest => {
            let digests = digests(&admin).await?;
            let identical = digests.identical();
            print!("{}", render(&digests.output(), as_json)?);
            if !as_json {
                println!(
                    "{}",
                    if identical {
                        "The reachable members are identical."
                    } else {
                        "The reachable members DIFFER."
                    }
                );
            }
            if !identical {
                std::io::stdout().flush()?;
                std::process::exit(EXIT_DIFFER);
            }
            return Ok(());
        }
    };
    print!("{}", render(&out, as_json)?);
    Ok(())
}

/// The result of a membership change: what was done, and the membership now.
async fn changed(
    admin: &RaftAdminClient,
    what: &str,
    id: NodeId,
    index: u64,
) -> Result<Output, CmdError> {
    let status = admin.cluster_status().await?;
    let m = &status.membership;
    let ids = |s: std::collections::BTreeSet<NodeId>| {
        s.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    Ok(Output::Record(
        vec![
            ("Node", id.to_string()),
            ("Done", what.to_string()),
            ("MembershipIndex", index.to_string()),
            ("Voters", ids(m.voters())),
            ("Learners", ids(m.learners())),
        ],
        json!({
            "id": id,
            "done": what,
            "membership_index": index,
            "voters": m.voters(),
            "learners": m.learners(),
        }),
    ))
}

/// The blob nodes registered in the metadata group at `meta`, for `coffer admin cluster
/// status`: id, address, heartbeat age, and whether the node answers a Stat from here. Bounded
/// (a few seconds) so that a status of a group without quorum still prints its members.
async fn blob_nodes_output(meta: &[String]) -> Output {
    let headers = vec!["BLOB NODE", "ADDRESS", "HEARTBEAT", "STATUS"];
    let client = GrpcMetaClient::new(
        meta.to_vec(),
        GrpcMetaConfig {
            call_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(3),
            max_attempts: 4,
            ..Default::default()
        },
    );
    let records = match client {
        Ok(c) => super::blob::registered_nodes(&c).await,
        Err(e) => Err(e),
    };
    let records = match records {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("cannot read the registered blob nodes: {e}");
            return Output::Rows(
                headers,
                vec![vec![
                    String::new(),
                    String::new(),
                    String::new(),
                    msg.clone(),
                ]],
                serde_json::json!({ "error": msg }),
            );
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    // Probed in parallel: each for at most 2 s.
    let probes: Vec<_> = records
        .iter()
        .map(|r| {
            let endpoint = r.addr.clone();
            tokio::spawn(async move {
                GrpcBlobStore::connect_lazy(GrpcBlobConfig {
                    endpoint,
                    call_timeout: Duration::from_secs(2),
                    retries: 0,
                    ..Default::default()
                })?
                .stat()
                .await
                .map(|s| s.version)
            })
        })
        .collect();
    let mut results = Vec::with_capacity(probes.len());
    for p in probes {
        results.push(match p.await {
            Ok(r) => r,
            Err(e) => Err(coffer_blob::BlobError::Io(std::io::Error::other(e))),
        });
    }
    let mut rows = Vec::new();
    let mut nodes = Vec::new();
    for (r, probe) in records.iter().zip(results) {
        let age_ms = now.saturating_sub(r.last_heartbeat_ms);
        let alive = age_ms <= ALIVE_WITHIN_MS;
        let status = match &probe {
            Ok(_) if alive => "ok".to_string(),
            Ok(_) => "reachable, heartbeat stale".to_string(),
            Err(e) => format!("unreachable: {e}"),
        };
        rows.push(vec![
            r.id.clone(),
            r.addr.clone(),
            format!("{:.1} s ago", age_ms as f64 / 1000.0),
            status,
        ]);
        nodes.push(serde_json::json!({
            "id": r.id,
            "addr": r.addr,
            "last_heartbeat_ms": r.last_heartbeat_ms,
            "heartbeat_age_ms": age_ms,
            "alive": alive,
            "reachable": probe.is_ok(),
            "version": probe.as_ref().ok(),
        }));
    }
    Output::Rows(headers, rows, serde_json::Value::Array(nodes))
}

fn opt(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// `status`: one row per member of the membership.
fn status_output(status: &ClusterStatus) -> Output {
    let leader = status.leader_status();
    let mut rows = Vec::new();
    let mut members = Vec::new();
    for m in &status.members {
        let matched = leader.and_then(|l| l.matched(m.id));
        let own = m.status.as_ref().ok();
        rows.push(vec![
            m.id.to_string(),
            m.addr.clone(),
            own.map(|s| s.role.as_str().to_string()).unwrap_or_default(),
            if m.voter { "yes" } else { "no" }.to_string(),
            own.map(|s| s.term.to_string()).unwrap_or_default(),
            opt(own.and_then(|s| s.last_log_index)),
            opt(own.and_then(|s| s.last_applied_index)),
            opt(matched),
            match &m.status {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("unreachable: {e}"),
            },
        ]);
        members.push(member_json(m, matched));
    }
    let m = &status.membership;
    Output::Rows(
        vec![
            "ID", "ADDRESS", "ROLE", "VOTER", "TERM", "LAST LOG", "APPLIED", "MATCHED", "STATUS",
        ],
        rows,
        json!({
            "leader": status.leader,
            "leader_addr": status.leader_addr(),
            "membership_index": m.log_index,
            "voters": m.voters(),
            "learners": m.learners(),
            "joint": m.is_joint(),
            "members": members,
        }),
    )
}

fn member_json(m: &MemberStatus, matched: Option<u64>) -> Value {
    let own: Option<&NodeStatus> = m.status.as_ref().ok();
    json!({
        "id": m.id,
        "addr": m.addr,
        "voter": m.voter,
        "reachable": own.is_some(),
        "role": own.map(|s| s.role.as_str()),
        "term": own.map(|s| s.term),
        "leader": own.and_then(|s| s.leader.as_ref().map(|(id, _)| *id)),
        "last_log_index": own.and_then(|s| s.last_log_index),
        "applied_index": own.and_then(|s| s.last_applied_index),
        "committed_index": own.and_then(|s| s.committed_index),
        "snapshot_index": own.and_then(|s| s.snapshot_index),
        "purged_index": own.and_then(|s| s.purged_index),
        "matched_index": matched,
        "error": m.status.as_ref().err(),
    })
}

/// Each member's digest, or why it could not be had.
struct Digests(Vec<(NodeId, String, Result<StateDigest, String>)>);

impl Digests {
    /// Whether every reachable member has the same digest.
    fn identical(&self) -> bool {
        let mut ok = self.0.iter().filter_map(|(_, _, d)| d.as_ref().ok());
        match ok.next() {
            None => false,
            Some(first) => ok.all(|d| d == first),
        }
    }

    fn output(&self) -> Output {
        let rows = self
            .0
            .iter()
            .map(|(id, addr, d)| match d {
                Ok(d) => vec![
                    id.to_string(),
                    addr.clone(),
                    d.last_applied.to_string(),
                    d.entries.to_string(),
                    d.sha256.clone(),
                ],
                Err(e) => vec![
                    id.to_string(),
                    addr.clone(),
                    String::new(),
                    String::new(),
                    format!("unreachable: {e}"),
                ],
            })
            .collect();
        let members: Vec<Value> = self
            .0
            .iter()
            .map(|(id, addr, d)| {
                let ok = d.as_ref().ok();
                json!({
                    "id": id,
                    "addr": addr,
                    "reachable": ok.is_some(),
                    "applied": ok.map(|d| d.last_applied),
                    "entries": ok.map(|d| d.entries),
                    "digest": ok.map(|d| d.sha256.clone()),
                    "error": d.as_ref().err(),
                })
            })
            .collect();
        Output::Rows(
            vec!["ID", "ADDRESS", "APPLIED", "ENTRIES", "DIGEST"],
            rows,
            json!({ "members": members, "identical": self.identical() }),
        )
    }
}

/// The members' digests once every reachable member has applied the leader's commit index
/// (waiting at most [`DIGEST_PATIENCE`]), so that they are comparable.
async fn digests(admin: &RaftAdminClient) -> Result<Digests, CmdError> {
    let deadline = Instant::now() + DIGEST_PATIENCE;
    loop {
        let status = admin.cluster_status().await?;
        let why = match comparable_index(&status) {
            Err(why) => why,
            Ok(_) => {
                let meta = GrpcMetaClient::new(
                    status.members.iter().map(|m| m.addr.clone()).collect(),
                    GrpcMetaConfig::default(),
                )?;
                let found = member_digests(&meta, &status).await;
                let applied: Vec<u64> = found
                    .iter()
                    .filter_map(|(_, _, d)| d.as_ref().ok().map(|d| d.last_applied))
                    .collect();
                // The state's own applied index counts the application's entries only (not
                // Raft's blank and membership entries): equal ones mean the same log was applied.
                if !applied.is_empty() && applied.iter().all(|a| *a == applied[0]) {
                    return Ok(Digests(found));
                }
                format!("the members moved on while being read (applied indexes {applied:?})")
            }
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "the members did not reach the same applied index within {DIGEST_PATIENCE:?}: \
                 {why}"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The leader's commit index, once every reachable member has applied exactly it; else why not.
fn comparable_index(status: &ClusterStatus) -> Result<u64, String> {
    let leader = status
        .leader_status()
        .ok_or_else(|| "no leader answered".to_string())?;
    let target = leader
        .committed_index
        .or(leader.last_applied_index)
        .unwrap_or(0);
    let behind: Vec<String> = status
        .members
        .iter()
        .filter_map(|m| m.status.as_ref().ok())
        .filter(|s| s.last_applied_index.unwrap_or(0) != target)
        .map(|s| format!("{} at {}", s.id, opt(s.last_applied_index)))
        .collect();
    if behind.is_empty() {
        Ok(target)
    } else {
        Err(format!(
            "leader {} committed {target}; {}",
            leader.id,
            behind.join(", ")
        ))
    }
}

/// Every member's digest, one after the other; a member that did not answer its status, or
/// whose Raft is shut down, is not asked.
async fn member_digests(
    meta: &GrpcMetaClient,
    status: &ClusterStatus,
) -> Vec<(NodeId, String, Result<StateDigest, String>)> {
    let mut out = Vec::new();
    for m in &status.members {
        let d = match &m.status {
            Err(e) => Err(e.clone()),
            Ok(s) if s.role == Role::Shutdown => Err("raft is shut down".to_string()),
            Ok(_) => meta.node_digest(&m.addr).await.map_err(|e| e.to_string()),
        };
        out.push((m.id, m.addr.clone(), d));
    }
    out
}
