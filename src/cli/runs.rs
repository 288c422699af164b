//! `engine runs list|show` read the local store; `engine sync` pushes it to a server.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use engine::tracking::{self, SyncOptions};

use super::TrackingArgs;

#[derive(Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first, with their status and sync state.
    List {
        /// Only this experiment.
        #[arg(long)]
        experiment: Option<String>,
    },
    /// Show one run: params, tags, metric histories, artifacts.
    Show {
        /// A run id (local or MLflow), or a unique prefix of at least 4 characters.
        run: String,
    },
}

#[derive(Args)]
pub struct SyncArgs {
    #[command(flatten)]
    tracking: TrackingArgs,
    /// End runs whose process died (unfinished) as KILLED, locally and on the server.
    #[arg(long)]
    close_unfinished: bool,
}

pub fn run(command: RunsCommand) -> anyhow::Result<ExitCode> {
    let root = TrackingArgs { tracking_uri: None, experiment: None }.config(None).local_root;
    let text = match command {
        RunsCommand::List { experiment } => tracking::runs_list(&root, experiment.as_deref())?,
        RunsCommand::Show { run } => tracking::runs_show(&root, &run)?,
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

pub fn sync(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let config = args.tracking.config(None);
    if config.tracking_uri.is_none() {
        anyhow::bail!("engine sync needs a server: --tracking-uri http://HOST:PORT or MLFLOW_TRACKING_URI");
    }
    let options = SyncOptions {
        mark_unfinished: args.close_unfinished.then_some(tracking::RunStatus::Killed),
        ..SyncOptions::default()
    };
    let report = tracking::sync_with(&config.local_root, &config, &options)?;
    print!("{report}");
    Ok(ExitCode::SUCCESS)
}
