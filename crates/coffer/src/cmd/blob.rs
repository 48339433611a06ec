//! `coffer blob`: a blob node. Keeps sealed chunks as files under its data directory
//! (`coffer_blob::local`) and serves them to gateways over gRPC (`proto/blob.proto`). It only
//! ever sees ciphertext, and holds no key.

use std::time::Duration;

use coffer_blob::local::LocalBlobStore;
use serde::Serialize;
use tokio::net::TcpListener;

use super::common::{join_server, shutdown_signal, stopped, write_file_atomic};
use super::CmdError;
use crate::cli::BlobArgs;

/// How long open streams may finish after SIGINT/SIGTERM; a write cut off then keeps nothing.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the ready file says.
#[derive(Serialize)]
struct Ready {
    /// The bound gRPC address (`coffer gateway --blob http://<listen>`).
    listen: String,
    pid: u32,
}

/// Runs `coffer blob` until SIGINT/SIGTERM.
pub async fn run(args: BlobArgs) -> Result<(), CmdError> {
    std::fs::create_dir_all(&args.data_dir)?;
    let data = args.data_dir.canonicalize()?;
    // Removes the temp files of writes a crash interrupted.
    let store = LocalBlobStore::open(&data)?;
    let listener = TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(coffer_blob::grpc::serve(store, listener, stopped(stop_rx)));

    println!("Coffer blob node is running.");
    println!("  gRPC endpoint:     http://{addr}");
    println!("  Data directory:    {}", data.display());
    if let Some(path) = &args.ready_file {
        let r = Ready {
            listen: addr.to_string(),
            pid: std::process::id(),
        };
        write_file_atomic(path, serde_json::to_string_pretty(&r)?.as_bytes(), 0o644)?;
    }

    shutdown_signal().await;
    let _ = stop_tx.send(true);
    join_server("blob gRPC server", server, SHUTDOWN_GRACE).await
}
