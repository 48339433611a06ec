//! The subcommands.

mod common;
mod dev;

use crate::cli::{Cli, Command};

/// An error that ends the process with a message.
pub type CmdError = Box<dyn std::error::Error + Send + Sync>;

/// Runs a subcommand.
pub async fn run(cli: Cli) -> Result<(), CmdError> {
    match cli.command {
        Command::Dev(args) => dev::run(args).await,
    }
}
