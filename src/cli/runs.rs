//! `engine runs list|show|compare|analyze` read the recorded runs; `engine sync` pushes the
//! local store to a server.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use engine::tracking::{self, LocalStore, SyncOptions};

use super::TrackingArgs;
use super::analyze::AnalyzeArgs;
use super::compare::CompareArgs;

#[derive(Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first, with their status and sync state.
    List {
        /// Only this experiment.
        #[arg(long)]
        experiment: Option<String>,
        /// Print one JSON array instead of the table: per run its id, experiment, name, status,
        /// sync state, start time and the latest value of each metric.
        #[arg(long)]
        json: bool,
    },
    /// Show one run: params, tags, metric histories, artifacts, and an overfitting flag.
    Show {
        /// A run id (local or MLflow), or a unique prefix of at least 4 characters.
        run: String,
        /// Print one JSON object instead of the text: params, tags, every metric point,
        /// artifacts, and `overfitting` (null when not flagged).
        #[arg(long)]
        json: bool,
    },
    /// Rank runs by a metric with their cost; mark the best and recommend the cheapest comparable one.
    Compare(Box<CompareArgs>),
    /// Answer the evaluation checklist for one run; write and log analysis.md.
    Analyze(Box<AnalyzeArgs>),
}

#[derive(Args)]
pub struct SyncArgs {
    /// MLflow server, e.g. http://127.0.0.1:5000 [env: MLFLOW_TRACKING_URI].
    #[arg(long)]
    tracking_uri: Option<String>,
    /// Only the runs of this experiment [default: every experiment in the local store].
    #[arg(long)]
    experiment: Option<String>,
    /// End runs whose process died (unfinished) as KILLED, locally and on the server.
    #[arg(long)]
    close_unfinished: bool,
}

pub fn run(command: RunsCommand) -> anyhow::Result<ExitCode> {
    let root = TrackingArgs { tracking_uri: None, experiment: None }.config(None).local_root;
    let text = match command {
        RunsCommand::List { experiment, json: false } => super::render::runs_list(&root, experiment.as_deref())?,
        RunsCommand::List { experiment, json: true } => {
            format!("{}\n", super::render::runs_list_json(&root, experiment.as_deref())?)
        }
        RunsCommand::Show { run, json: false } => show(&root, &run)?,
        RunsCommand::Show { run, json: true } => show_json(&root, &run)?,
        RunsCommand::Compare(args) => return super::compare::run(*args),
        RunsCommand::Analyze(args) => return super::analyze::run(*args),
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// `runs show`, with a last line flagging overfitting.
fn show(root: &std::path::Path, run: &str) -> anyhow::Result<String> {
    let record = LocalStore::open(root)?.load_run(run)?;
    let mut text = super::render::format_run_show(&record);
    if let Some(o) = tracking::summary_from_record(&record).overfitting() {
        text.push_str(&format!("\noverfitting  {} ({})\n", o.describe(), o.flag()));
    }
    Ok(text)
}

/// `runs show --json`: one JSON object.
fn show_json(root: &std::path::Path, run: &str) -> anyhow::Result<String> {
    let record = LocalStore::open(root)?.load_run(run)?;
    let overfitting = tracking::summary_from_record(&record).overfitting();
    Ok(format!("{}\n", super::render::run_show_json(&record, overfitting.as_ref())))
}

pub fn sync(args: SyncArgs) -> anyhow::Result<ExitCode> {
    let tracking = TrackingArgs { tracking_uri: args.tracking_uri, experiment: args.experiment };
    let config = tracking.config(None);
    if config.tracking_uri.is_none() {
        anyhow::bail!("engine sync needs a server: --tracking-uri http://HOST:PORT or MLFLOW_TRACKING_URI");
    }
    let options = SyncOptions {
        mark_unfinished: args.close_unfinished.then_some(tracking::RunStatus::Killed),
        experiment: tracking.experiment.clone(),
        ..SyncOptions::default()
    };
    let report = tracking::sync_with(&config.local_root, &config, &options)?;
    print!("{report}");
    if report.failed() > 0 {
        eprintln!(
            "error: {} run(s) could not be synced (listed above); fix the cause and run `engine sync` again",
            report.failed()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
