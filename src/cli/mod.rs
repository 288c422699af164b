//! Commands of the `engine` binary.

mod analyze;
mod compare;
mod data;
mod device;
mod eval;
mod export;
mod interrupt;
mod locate;
mod progress;
mod registry;
mod render;
mod runs;
mod serve;
mod sweep;
mod train;
mod ui;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use engine::choice::Choice;

#[derive(Parser)]
#[command(
    name = "engine",
    version,
    about = "Train and evaluate image classifiers (FashionMNIST or your own images) on a from-scratch engine, tracked in MLflow"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train an MLP (or, with --model cnn, a CNN) on FashionMNIST or --data, then evaluate it on the test set.
    Train(Box<train::TrainArgs>),
    /// Train one run per point of a grid (--lr, --batch-size, --hidden), nested under a parent run.
    Sweep(Box<sweep::SweepArgs>),
    /// Evaluate a trained model (by run id or model URI) on the test set.
    Eval(Box<eval::EvalArgs>),
    /// Write a trained model (by run id or model URI) as one ONNX or safetensors file.
    Export(export::ExportArgs),
    /// Check a run's metric against a threshold: exit 0 (pass), 1 (fail) or 2 (cannot decide).
    Gate(registry::GateArgs),
    /// Register a run's model as a new version in the MLflow Model Registry, in Staging.
    Register(registry::RegisterArgs),
    /// Move a registered version to Production (archiving the previous one) and alias it champion.
    Promote(registry::PromoteArgs),
    /// Serve a model over HTTP with MLflow's scoring protocol (POST /invocations), batching
    /// concurrent requests; with --watch, follow a registry alias.
    ///
    /// A request holds rows of the model's input contract, C·H·W values in [0, 1] each (784 for
    /// FashionMNIST; GET /version shows the contract), as JSON or CSV, or images (image/png,
    /// image/jpeg, several as multipart/form-data) resized and coloured as training prepared its
    /// own; the answer to images names the classes. GET / is a page to try the model.
    Serve(Box<serve::ServeArgs>),
    /// List the compute devices this build can use.
    Devices,
    /// Read, compare and analyze recorded runs (local store; compare and analyze also a server).
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Push local runs that have not reached the MLflow server yet (idempotent).
    Sync(runs::SyncArgs),
    /// Start MLflow's UI over this project's runs (mlflow.db, mlartifacts/) and sync runs into it as they are recorded.
    Ui(Box<ui::UiArgs>),
}

/// Where runs are tracked: an MLflow server, or the local store only.
#[derive(clap::Args, Clone)]
pub struct TrackingArgs {
    /// MLflow server, e.g. http://127.0.0.1:5000 [env: MLFLOW_TRACKING_URI; default: local store only].
    #[arg(long)]
    pub tracking_uri: Option<String>,
    /// Experiment name [env: MLFLOW_EXPERIMENT_NAME; default: fashion-mnist].
    #[arg(long)]
    pub experiment: Option<String>,
}

/// What a person says about a run: its description and tags.
#[derive(clap::Args, Clone, Default)]
pub struct NoteArgs {
    /// The run's description (its note in the MLflow UI, `mlflow.note.content`).
    #[arg(long)]
    pub description: Option<String>,
    /// A tag for the run, KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub tags: Vec<(String, String)>,
}

pub use engine::experiment::NOTE_TAG;

impl NoteArgs {
    /// The tags to set: the user's, and the description as the note.
    pub fn to_tags(&self) -> Vec<(String, String)> {
        let mut tags = self.tags.clone();
        tags.extend(self.description.iter().map(|d| (NOTE_TAG.to_string(), d.clone())));
        tags
    }
}

/// `KEY=VALUE` with a key MLflow accepts: 1-250 characters of letters, digits, `_ - . / ` and space.
fn parse_tag(s: &str) -> Result<(String, String), String> {
    let (key, value) = s.split_once('=').ok_or_else(|| format!("'{s}' is not KEY=VALUE"))?;
    let key = key.trim();
    let valid = |c: char| c.is_alphanumeric() || "_-./ ".contains(c);
    if key.is_empty() || key.chars().count() > 250 || !key.chars().all(valid) {
        return Err(format!("tag key '{key}' must be 1-250 letters, digits, '_', '-', '.', '/' or spaces"));
    }
    Ok((key.to_string(), value.to_string()))
}

impl TrackingArgs {
    pub fn config(&self, run_name: Option<String>) -> engine::tracking::TrackingConfig {
        engine::tracking::TrackingConfig::from_env(self.tracking_uri.clone(), self.experiment.clone(), run_name)
    }
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Train(args) => train::run(*args),
        Command::Sweep(args) => sweep::run(*args),
        Command::Serve(args) => serve::run(*args),
        Command::Devices => device::list(),
        Command::Runs(command) => runs::run(command),
        Command::Eval(args) => eval::run(*args),
        Command::Export(args) => export::run(args),
        // The gate's exit code 1 means "failed"; any error means it could not decide: 2.
        Command::Gate(args) => registry::gate(args).map_err(|e| UsageError(format!("{e:#}")).into()),
        Command::Register(args) => registry::register(args),
        Command::Promote(args) => registry::promote(args),
        Command::Sync(args) => runs::sync(args),
        Command::Ui(args) => ui::run(*args),
    }
}

/// Parses one of a [`Choice`]'s names, listing them in help and errors.
pub fn choice<T: Choice + Clone + Send + Sync>() -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(T::ALL.iter().map(|c| c.name()))
        .try_map(|name: String| T::from_name(&name).ok_or("not one of the possible values"))
}

/// A usage problem found after parsing (e.g. inconsistent hyperparameters): exit code 2, as is
/// a request the library refuses ([`engine::experiment::ExperimentError::Refused`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

pub fn exit_code_for(error: &anyhow::Error) -> ExitCode {
    let experiment_error = error.downcast_ref::<engine::experiment::ExperimentError>();
    let data_error = match experiment_error {
        Some(engine::experiment::ExperimentError::Data(e)) => Some(e),
        _ => error.downcast_ref::<engine::data::DataError>(),
    };
    if error.is::<UsageError>()
        || experiment_error.is_some_and(|e| e.is_refusal())
        || data_error.is_some_and(data::is_bad_input)
    {
        ExitCode::from(2)
    } else if matches!(error.downcast_ref(), Some(engine::train::TrainError::Interrupted))
        || experiment_error.is_some_and(|e| e.is_interrupted())
    {
        ExitCode::from(130)
    } else {
        ExitCode::FAILURE
    }
}
