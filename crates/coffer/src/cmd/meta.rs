//! `coffer meta`: one member of the metadata Raft group. It serves Raft (`proto/raft.proto`)
//! and the metadata API gateways use (`proto/meta.proto`) on one address, and either
//! bootstraps the group (`--initial-members`) or asks an existing member to add it as a learner
//! (`--join`).

use std::collections::BTreeMap;
use std::time::Duration;

use coffer_meta::MetaNode;
use coffer_raft::{NodeId, RaftConfig};
use serde::Serialize;
use tokio::net::TcpListener;

use super::common::{shutdown_signal, write_file_atomic};
use super::CmdError;
use crate::cli::MetaArgs;

/// How long `--join` keeps trying while the group has no leader or is not reachable yet.
const JOIN_PATIENCE: Duration = Duration::from_secs(60);

/// What the ready file says.
#[derive(Serialize)]
struct Ready {
    id: NodeId,
    /// The bound address (Raft and the metadata API).
    listen: String,
    /// The address the group knows this member by.
    advertise: String,
    pid: u32,
}

/// Parses `--initial-members 1=host:port,2=host:port,...`.
pub fn parse_members(spec: &str) -> Result<BTreeMap<NodeId, String>, CmdError> {
    let mut members = BTreeMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("--initial-members: {item:?} is not ID=ADDR"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|e| format!("--initial-members: bad id {id:?}: {e}"))?;
        let addr = addr.trim();
        if addr.is_empty() {
            return Err(format!("--initial-members: no address for {id}").into());
        }
        if members.insert(id, addr.to_owned()).is_some() {
            return Err(format!("--initial-members: {id} is given twice").into());
        }
    }
    if members.is_empty() {
        return Err("--initial-members: no member".into());
    }
    Ok(members)
}

/// Runs `coffer meta` until SIGINT/SIGTERM.
pub async fn run(args: MetaArgs) -> Result<(), CmdError> {
    let members = args
        .initial_members
        .as_deref()
        .map(parse_members)
        .transpose()?;
    std::fs::create_dir_all(&args.data_dir)?;
    let data = args.data_dir.canonicalize()?;
    let listener = TcpListener::bind(args.listen).await?;
    let bound = listener.local_addr()?;
    let advertise = match (&args.advertise, &members) {
        (Some(a), _) => a.clone(),
        (None, Some(m)) => m
            .get(&args.id)
            .cloned()
            .ok_or_else(|| format!("--initial-members does not name this member ({})", args.id))?,
        (None, None) => bound.to_string(),
    };
    if let Some(m) = &members {
        if m.get(&args.id).is_some_and(|a| *a != advertise) {
            return Err(format!(
                "--initial-members names {} for member {}, --advertise says {advertise}",
                m[&args.id], args.id
            )
            .into());
        }
    }
    let config = RaftConfig {
        snapshot_logs_since_last: args.snapshot_logs,
        ..RaftConfig::default()
    };
    let node = MetaNode::start(args.id, &data, listener, config).await?;
    let joined = match (&members, &args.join) {
        (Some(m), _) => node.initialize(m.clone()).await.map(drop),
        (None, Some(via)) => node.join(via, &advertise, JOIN_PATIENCE).await.map(drop),
        // A restarted member: its membership is in its log.
        (None, None) => Ok(()),
    };
    if let Err(e) = joined {
        if let Err(stop) = node.shutdown().await {
            tracing::warn!(error = %stop, "stopping the meta node failed");
        }
        return Err(e.into());
    }

    println!("Coffer meta member {} is running.", args.id);
    println!("  Listening on:      {bound} (Raft and metadata gRPC)");
    println!("  Known as:          {advertise}");
    println!("  Data directory:    {}", data.display());
    if let Some(path) = &args.ready_file {
        let r = Ready {
            id: args.id,
            listen: bound.to_string(),
            advertise,
            pid: std::process::id(),
        };
        write_file_atomic(path, serde_json::to_string_pretty(&r)?.as_bytes(), 0o644)?;
    }

    shutdown_signal().await;
    node.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse() {
        let m = parse_members("1=127.0.0.1:7001, 2=h:7002,3=[::1]:7003").unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m[&3], "[::1]:7003");
        for bad in ["", "1", "x=a:1", "1=", "1=a:1,1=b:2"] {
            assert!(parse_members(bad).is_err(), "{bad:?}");
        }
    }
}
