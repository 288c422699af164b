//! Commands of the `engine` binary.

mod progress;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "engine",
    version,
    about = "Train and evaluate FashionMNIST models on a from-scratch engine, tracked in MLflow"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train an MLP on FashionMNIST, then evaluate it on the test set.
    Train(Box<train::TrainArgs>),
    /// List the compute devices this build can use.
    Devices,
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Train(args) => train::run(*args),
        Command::Devices => {
            println!("cpu\t{} threads (rayon)", rayon::current_num_threads());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A usage problem found after parsing (e.g. inconsistent hyperparameters): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn exit_code_for(error: &anyhow::Error) -> ExitCode {
    if error.is::<UsageError>() {
        ExitCode::from(2)
    } else if matches!(error.downcast_ref(), Some(engine::train::TrainError::Interrupted)) {
        ExitCode::from(130)
    } else {
        ExitCode::FAILURE
    }
}
