//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Coffer: an S3-compatible object store with envelope encryption all the way down.
#[derive(Debug, Parser)]
#[command(name = "coffer", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The roles and tools.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every role in one process on one data directory (single-node Raft, local blobs, local KMS).
    Dev(DevArgs),
}

/// `coffer dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Data directory (metadata, blobs, keystore, generated credentials).
    #[arg(long, default_value = "./coffer-data", env = "COFFER_DATA_DIR")]
    pub data_dir: PathBuf,
    /// S3 (and KMS JSON API) listen address; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9000", env = "COFFER_LISTEN")]
    pub listen: SocketAddr,
    /// Admin listen address (`/health/live`, `/health/ready`, `/metrics`).
    #[arg(long, default_value = "127.0.0.1:9001", env = "COFFER_ADMIN_LISTEN")]
    pub admin_listen: SocketAddr,
    /// Written after the listeners are bound: JSON with the bound addresses.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Region this endpoint serves.
    #[arg(long, default_value = "us-east-1", env = "COFFER_REGION")]
    pub region: String,
    /// 12-digit account ID that owns the buckets and keys.
    #[arg(long, default_value = "000000000000", env = "COFFER_ACCOUNT_ID")]
    pub account_id: String,
    /// Base domains for virtual-host-style requests (`<bucket>.<domain>`).
    #[arg(long = "domain", default_values_t = vec!["localhost".to_string(), "s3.localhost".to_string()])]
    pub domains: Vec<String>,
    /// Plaintext chunk size of new objects, in bytes.
    #[arg(long, default_value_t = coffer_crypto::DEFAULT_CHUNK_SIZE)]
    pub chunk_size: u32,
}
