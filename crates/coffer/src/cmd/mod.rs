//! The subcommands.

mod admin;
mod blob;
mod cluster;
mod common;
mod dev;
mod gateway;
mod health;
mod kms;
mod meta;
mod reencrypt;

use crate::cli::{Cli, Command};

/// An error that ends the process with a message.
pub type CmdError = Box<dyn std::error::Error + Send + Sync>;

/// Runs a subcommand.
pub async fn run(cli: Cli) -> Result<(), CmdError> {
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Kms(args) => kms::run(args).await,
        Command::Meta(args) => meta::run(args).await,
        Command::Blob(args) => blob::run(args).await,
        Command::Gateway(args) => gateway::run(args).await,
        Command::Admin(args) => admin::run(args).await,
    }
}
