//! `coffer`: one binary for every role of the Coffer object store.
//!
//! # Layout
//! - [`cli`]: the command line (clap derive).
//! - `cmd/dev.rs`: `coffer dev`, every role in one process on one data directory.
//! - `cmd/kms.rs`: `coffer kms`, the key-management role alone (gRPC + AWS KMS JSON API).
//! - `cmd/meta.rs`: `coffer meta`, one member of the metadata Raft group.
//! - `cmd/blob.rs`: `coffer blob`, a blob node serving sealed chunks over gRPC.
//! - `cmd/gateway.rs`: `coffer gateway`, a stateless S3 gateway over remote meta, KMS and blob
//!   roles.
//! - `cmd/admin.rs`: `coffer admin`, key and alias management over the AWS KMS JSON API.
//! - `cmd/common.rs`: pieces shared by the roles (signals, ready files, secrets on disk,
//!   credentials, the local keystore's config, the default key, a gateway's startup).

mod cli;
mod cmd;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COFFER_LOG")
                // openraft logs its whole state at info on every start.
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coffer: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coffer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
