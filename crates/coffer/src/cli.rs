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
    /// The key-management role alone: the KMS over gRPC (for gateways) and the AWS KMS JSON API.
    Kms(KmsArgs),
    /// One member of the metadata Raft group: Raft and the metadata gRPC API on one address.
    Meta(MetaArgs),
    /// A blob node: sealed chunks under a data directory, served to gateways over gRPC.
    Blob(BlobArgs),
    /// A stateless S3 gateway over remote meta, KMS and blob roles; several may run at once.
    Gateway(GatewayArgs),
    /// Manage KMS keys and aliases through the AWS KMS API of `coffer dev` or `coffer kms`.
    Admin(AdminArgs),
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
    /// Listen address of the single-member metadata group (Raft and the metadata gRPC API);
    /// port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0", env = "COFFER_META_LISTEN")]
    pub meta_listen: SocketAddr,
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
    /// Use the remote `coffer kms` at this gRPC endpoint (e.g. `http://127.0.0.1:9100`) instead
    /// of the local keystore in the data directory.
    #[arg(long, env = "COFFER_KMS_ENDPOINT")]
    pub kms_endpoint: Option<String>,
    /// Deadline of one call to the remote KMS, retries included, in milliseconds.
    #[arg(long, default_value_t = 5000, requires = "kms_endpoint")]
    pub kms_timeout_ms: u64,
    /// Create general purpose buckets with SSE-C allowed (S3 before April 2026). Off by default:
    /// new buckets block SSE-C writes until PutBucketEncryption sets BlockedEncryptionTypes to
    /// NONE. Only affects buckets created while it is set.
    #[arg(long, env = "COFFER_ALLOW_SSE_C_ON_NEW_BUCKETS")]
    pub allow_sse_c_on_new_buckets: bool,
}

/// `coffer kms`.
#[derive(Debug, Args)]
pub struct KmsArgs {
    /// Data directory (local keystore, its generated root key, generated credentials).
    #[arg(long, default_value = "./coffer-kms-data", env = "COFFER_KMS_DATA_DIR")]
    pub data_dir: PathBuf,
    /// gRPC listen address (the `Kms` trait, for gateways); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9100", env = "COFFER_KMS_GRPC_LISTEN")]
    pub grpc_listen: SocketAddr,
    /// AWS KMS JSON API listen address (`aws kms`, boto3, `coffer admin`); port 0 picks a free
    /// port.
    #[arg(long, default_value = "127.0.0.1:9101", env = "COFFER_KMS_LISTEN")]
    pub listen: SocketAddr,
    /// JSON file with the backend (`{"type": "local" | "aws-kms" | "transit", ...}`); without
    /// it, the local keystore in the data directory.
    #[arg(long, env = "COFFER_KMS_BACKEND_CONFIG")]
    pub backend_config: Option<PathBuf>,
    /// Written after the listeners are bound: JSON with the bound addresses.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Region of key ARNs (local keystore) and of the signing scope of the JSON API.
    #[arg(long, default_value = "us-east-1", env = "COFFER_REGION")]
    pub region: String,
    /// 12-digit account ID of key ARNs (local keystore).
    #[arg(long, default_value = "000000000000", env = "COFFER_ACCOUNT_ID")]
    pub account_id: String,
    /// Seconds between two maintenance runs (deletions due, automatic rotations).
    #[arg(long, default_value_t = 300)]
    pub maintenance_interval_secs: u64,
    /// Admin HTTP listen address (`/health/live`, `/health/ready`, `/metrics`); off when not
    /// given. Port 0 picks a free port.
    #[arg(long, env = "COFFER_KMS_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
}

/// `coffer meta`.
#[derive(Debug, Args)]
pub struct MetaArgs {
    /// This member's id: unique in the group, never reused for another member.
    #[arg(long)]
    pub id: u64,
    /// Data directory (the Raft log, the metadata state, snapshots).
    #[arg(
        long,
        default_value = "./coffer-meta-data",
        env = "COFFER_META_DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// Listen address of Raft and of the metadata gRPC API; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9200", env = "COFFER_META_LISTEN")]
    pub listen: SocketAddr,
    /// The address the other members and the gateways reach this member at (default: its
    /// address in `--initial-members`, else the bound address). It must not change.
    #[arg(long)]
    pub advertise: Option<String>,
    /// Bootstrap a new group whose voters are `1=host:port,2=host:port,...` (this member
    /// included). Harmless when the member restarts.
    #[arg(long, conflicts_with = "join")]
    pub initial_members: Option<String>,
    /// Join an existing group through any of its members (`host:port`): this member is added
    /// as a learner; a membership change makes it a voter.
    #[arg(long)]
    pub join: Option<String>,
    /// Written once the member runs (and has joined): JSON with its id and addresses.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Build a snapshot, and purge the log before it, every this many applied entries.
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_logs: u64,
    /// How many entries before the last snapshot stay in the log, so that a member slightly
    /// behind catches up from the log rather than by a snapshot.
    #[arg(long, default_value_t = 1_000)]
    pub snapshot_keep_logs: u64,
    /// Admin HTTP listen address (`/health/live`, `/health/ready`, `/metrics`); off when not
    /// given. Port 0 picks a free port.
    #[arg(long, env = "COFFER_META_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
}

/// `coffer blob`.
#[derive(Debug, Args)]
pub struct BlobArgs {
    /// Data directory (the blobs, and the temp files of writes in progress).
    #[arg(
        long,
        default_value = "./coffer-blob-data",
        env = "COFFER_BLOB_DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// gRPC listen address (`proto/blob.proto`, for gateways); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9300", env = "COFFER_BLOB_LISTEN")]
    pub listen: SocketAddr,
    /// Written after the listener is bound: JSON with the bound address and the pid.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// The metadata group's members (`host:port`, comma-separated): register there and
    /// heartbeat, so that gateways without `--blob` find this node. Without it the node does
    /// not register.
    #[arg(long, env = "COFFER_META", value_delimiter = ',')]
    pub meta: Vec<String>,
    /// This node's stable id in the cluster (required with `--meta`); blob placement hashes it,
    /// so keep it across restarts and address changes.
    #[arg(long, env = "COFFER_BLOB_ID")]
    pub id: Option<String>,
    /// The gRPC endpoint gateways reach this node at, `http://HOST:PORT` (default: the bound
    /// listen address, when it is not a wildcard).
    #[arg(long, env = "COFFER_BLOB_ADVERTISE")]
    pub advertise: Option<String>,
    /// Admin HTTP listen address (`/health/live`, `/health/ready`, `/metrics`); off when not
    /// given. Port 0 picks a free port.
    #[arg(long, env = "COFFER_BLOB_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Copies of each blob (R, as the gateways' `--replicas`): re-replication copies a blob to
    /// the alive nodes among its top R that lack it.
    #[arg(long, default_value_t = 3, env = "COFFER_BLOB_REPLICAS")]
    pub replicas: usize,
    /// Seconds from the end of one scrub pass (every blob's checksums verified) to the start
    /// of the next; 0 turns the scrub off.
    #[arg(
        long,
        default_value_t = 86_400,
        env = "COFFER_BLOB_SCRUB_INTERVAL_SECS"
    )]
    pub scrub_interval_secs: u64,
    /// Bytes per second the scrub reads at most; 0 for no bound.
    #[arg(long, default_value_t = 32 << 20, env = "COFFER_BLOB_SCRUB_BYTES_PER_SEC")]
    pub scrub_bytes_per_sec: u64,
    /// Seconds between re-replication passes (needs `--meta`); 0 turns them off.
    #[arg(
        long,
        default_value_t = 600,
        env = "COFFER_BLOB_REREPLICATE_INTERVAL_SECS"
    )]
    pub rereplicate_interval_secs: u64,
    /// Seconds between orphan sweeps (needs `--meta`): a blob no object version or upload
    /// part references, last written more than `--orphan-grace-secs` ago, is deleted. 0 turns
    /// the sweep off.
    #[arg(long, default_value_t = 900, env = "COFFER_BLOB_ORPHAN_INTERVAL_SECS")]
    pub orphan_interval_secs: u64,
    /// Age in seconds below which an unreferenced blob is kept: it must exceed the longest
    /// time from a gateway writing a blob to committing the metadata that names it.
    #[arg(long, default_value_t = 3_600, env = "COFFER_BLOB_ORPHAN_GRACE_SECS")]
    pub orphan_grace_secs: u64,
}

/// `coffer gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// The metadata group's members (`host:port`, comma-separated); any subset that includes
    /// a reachable member will do, the leader is found from there.
    #[arg(long, env = "COFFER_META", value_delimiter = ',', required = true)]
    pub meta: Vec<String>,
    /// The `coffer kms` gRPC endpoint, e.g. `http://127.0.0.1:9100`.
    #[arg(long, env = "COFFER_KMS_ENDPOINT")]
    pub kms: String,
    /// `coffer blob` gRPC endpoints, e.g. `http://127.0.0.1:9300` (comma-separated). One
    /// endpoint: every blob on that node. Several: each blob on `--replicas` of them, the
    /// endpoints serving as node ids. None: the blob nodes registered in meta.
    #[arg(long, env = "COFFER_BLOB_ENDPOINT", value_delimiter = ',')]
    pub blob: Vec<String>,
    /// Copies of each blob (R) with several blob nodes [default: 3].
    #[arg(long, env = "COFFER_REPLICAS")]
    pub replicas: Option<usize>,
    /// Copies durably written before a write is acknowledged (W, at most R) [default: 2].
    /// Writes answer 503 while fewer than W blob nodes are known or reachable.
    #[arg(long, env = "COFFER_WRITE_QUORUM")]
    pub write_quorum: Option<usize>,
    /// S3 listen address; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9000", env = "COFFER_LISTEN")]
    pub listen: SocketAddr,
    /// Admin listen address (`/health/live`, `/health/ready`, `/metrics`).
    #[arg(long, default_value = "127.0.0.1:9001", env = "COFFER_ADMIN_LISTEN")]
    pub admin_listen: SocketAddr,
    /// Written once the gateway serves: JSON with the bound addresses and the pid.
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
    /// Deadline of one call to the KMS, retries included, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub kms_timeout_ms: u64,
    /// Create general purpose buckets with SSE-C allowed (S3 before April 2026). Off by default:
    /// new buckets block SSE-C writes until PutBucketEncryption sets BlockedEncryptionTypes to
    /// NONE. Only affects buckets created while it is set.
    #[arg(long, env = "COFFER_ALLOW_SSE_C_ON_NEW_BUCKETS")]
    pub allow_sse_c_on_new_buckets: bool,
}

/// `coffer admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// AWS KMS API endpoint: a `coffer dev` S3 port or a `coffer kms --listen` port.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:9000",
        env = "COFFER_ENDPOINT"
    )]
    pub endpoint: String,
    /// Region the requests are signed for.
    #[arg(
        long,
        global = true,
        default_value = "us-east-1",
        env = "COFFER_REGION"
    )]
    pub region: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Data directory whose `credentials.json` is used when no key pair is in the environment.
    #[arg(
        long,
        global = true,
        default_value = "./coffer-data",
        env = "COFFER_DATA_DIR"
    )]
    pub data_dir: PathBuf,
    /// A gateway's admin listener (`coffer dev` / `coffer gateway` `--admin-listen`), for
    /// `reencrypt`, `key rotate --rewrap` and `key materials`.
    #[arg(
        long,
        global = true,
        default_value = "http://127.0.0.1:9001",
        env = "COFFER_ADMIN_ENDPOINT"
    )]
    pub admin_endpoint: String,
    /// What to manage.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// `coffer admin` subjects.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// KMS keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// KMS aliases.
    #[command(subcommand)]
    Alias(AliasCommand),
    /// The metadata Raft group: status, membership changes, state digests.
    Cluster(ClusterArgs),
    /// Bulk re-encryption and key rotation jobs, through a gateway's admin API.
    #[command(subcommand)]
    Reencrypt(ReencryptCommand),
}

/// `coffer admin reencrypt` commands.
#[derive(Debug, Subcommand)]
pub enum ReencryptCommand {
    /// Start a job that rewraps the data keys of a bucket's objects under a KMS key.
    Start(ReencryptStartArgs),
    /// List the jobs.
    List,
    /// Show a job: state, counts, skipped objects.
    Show {
        /// Job ID.
        id: String,
    },
    /// Pause a job (the runner stops at its next checkpoint).
    Pause {
        /// Job ID.
        id: String,
    },
    /// Resume a paused job.
    Resume {
        /// Job ID.
        id: String,
    },
    /// Cancel a job.
    Cancel {
        /// Job ID.
        id: String,
    },
    /// Follow a job with a progress bar until it ends, then print its summary.
    Watch {
        /// Job ID.
        id: String,
    },
}

/// `coffer admin reencrypt start`.
#[derive(Debug, Args)]
pub struct ReencryptStartArgs {
    /// Bucket.
    #[arg(long)]
    pub bucket: String,
    /// Only keys starting with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Current encryption to select: any, sse-s3, sse-kms or sse-kms:<key ARN>.
    #[arg(long, default_value = "any")]
    pub source: String,
    /// Every version, not only the current one of each key.
    #[arg(long)]
    pub all_versions: bool,
    /// Target SSE-KMS key ARN.
    #[arg(long)]
    pub target_key: String,
    /// Use an S3 Bucket Key for the rewrapped objects.
    #[arg(long, default_value = "off", value_parser = ["on", "off"])]
    pub bucket_key: String,
    /// Follow the job until it ends (progress bar, then summary).
    #[arg(long)]
    pub wait: bool,
}

/// `coffer admin key`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a customer managed symmetric key.
    Create {
        /// Description of the key.
        #[arg(long)]
        description: Option<String>,
    },
    /// List keys with their state and aliases.
    List,
    /// Show a key (key ID, key ARN, alias or alias ARN).
    Describe {
        /// The key.
        key: String,
    },
    /// Enable a key.
    Enable {
        /// The key.
        key: String,
    },
    /// Disable a key: it refuses to encrypt and decrypt until enabled again.
    Disable {
        /// The key.
        key: String,
    },
    /// Rotate a key's material now; older material still decrypts. With --rewrap, a job on the
    /// gateway (--admin-endpoint) then moves every bucket key and object data key wrapped under
    /// older material to the new one, and the key's materials report is printed.
    Rotate {
        /// The key.
        key: String,
        /// Rewrap what older material wraps, with a job on the gateway's admin API.
        #[arg(long)]
        rewrap: bool,
        /// Only this bucket (repeatable; default every bucket). Needs --rewrap.
        #[arg(long = "bucket", value_name = "BUCKET", requires = "rewrap")]
        buckets: Vec<String>,
        /// Start the rewrap job and print it, without following it. Needs --rewrap.
        #[arg(long, requires = "rewrap")]
        no_wait: bool,
    },
    /// Which material versions of a key the stored objects still need (through the gateway's
    /// admin API, --admin-endpoint): envelopes and bucket keys per version.
    Materials {
        /// The key.
        key: String,
    },
    /// Schedule a key's deletion after a waiting period.
    ScheduleDeletion {
        /// The key.
        key: String,
        /// Waiting period in days (7–30; default 30).
        #[arg(long)]
        days: Option<i32>,
    },
    /// Cancel a scheduled deletion (the key is left disabled).
    CancelDeletion {
        /// The key.
        key: String,
    },
}

/// `coffer admin alias`.
#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Create an alias (`alias/` is prepended when missing) for a key.
    Create {
        /// Alias name.
        name: String,
        /// Target key.
        key: String,
    },
    /// List aliases.
    List {
        /// Only the aliases of this key.
        #[arg(long)]
        key: Option<String>,
    },
    /// Delete an alias (`alias/` is prepended when missing).
    Delete {
        /// Alias name.
        name: String,
    },
}

/// `coffer admin cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Raft addresses of members of the metadata group (`host:port`, comma-separated; any
    /// reachable member will do): `coffer meta --listen`, or `meta` in `coffer dev`'s ready file.
    #[arg(
        long,
        global = true,
        env = "COFFER_META",
        value_delimiter = ',',
        default_value = "127.0.0.1:9200"
    )]
    pub meta: Vec<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// `coffer admin cluster` commands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Every member's own view: role, term, last log and applied index, reachability.
    Status,
    /// Add a member as a learner (it receives the log, does not vote) and wait until it has
    /// caught up. Start it first with `coffer meta --id ID` (without `--join`).
    AddLearner {
        /// Its node id (never reused).
        id: u64,
        /// The address the members reach it at (`host:port`).
        addr: String,
    },
    /// Make a learner a voter, once it has caught up with the leader.
    Promote {
        /// The learner's id.
        id: u64,
    },
    /// Remove a member from the voters and the learners (not the last voter).
    Remove {
        /// The member's id.
        id: u64,
    },
    /// Compare the members' state digests once they have applied the same log index; exit
    /// status 3 when they differ.
    Digest,
}
