//! The command line: `wgtrain <command>`. Each command's flags become a validated config here;
//! the work is done by the library.

mod progress;
mod train;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "wgtrain",
    version,
    about = "Train MLP classifiers and regressors on any GPU (WGSL compute shaders via wgpu), or on the CPU",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a model on a data set and report its accuracy on the test set.
    Train(Box<train::TrainArgs>),
}

/// Parses the command line and runs the command.
pub fn run() -> anyhow::Result<()> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).map_err(|e| e.exit())?;
    let sub = matches
        .subcommand()
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    match cli.command {
        Command::Train(args) => train::run(*args, &sub),
    }
}
