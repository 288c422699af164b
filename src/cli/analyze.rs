//! `engine runs analyze RUN`: the evaluation checklist answered with one run's numbers, printed,
//! written as `analysis.md` next to the run's reports and logged as an artifact of the run, so
//! the answer to "can we ship this model?" lives with the run in the MLflow UI.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use engine::analysis::{self, AnalysisInputs, ClassScore, ConfusionCounts, RunSummary};
use engine::tracking::{
    self, LocalStore, MlflowClient, Push, Pushed, Run, RunAdditions, RunHandle, RunRecord, TrackingConfig,
};
use serde_json::Value;

use super::{TrackingArgs, UsageError};

const REPORT: &str = "classification_report.json";
const CONFUSION: &str = "confusion_matrix.json";
const ANALYSIS: &str = "analysis.md";

#[derive(Args)]
pub struct AnalyzeArgs {
    /// A run id (local store, else the configured MLflow server), or a unique prefix (local).
    pub run: String,
    /// The accuracy the business needs, in [0, 1].
    #[arg(long, default_value_t = 0.85)]
    pub baseline: f64,
    /// Test accuracy within which a cheaper run counts as just as good.
    #[arg(long, default_value_t = analysis::DEFAULT_TOLERANCE)]
    pub tolerance: f64,
    /// Epochs of rising validation loss that count as overfitting.
    #[arg(long, default_value_t = analysis::DEFAULT_OVERFIT_EPOCHS)]
    pub overfit_epochs: usize,
    /// Where analysis.md goes [default: the run's output directory, else runs/<run id>].
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Print the analysis as one JSON object (analysis.md is written all the same).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tracking: TrackingArgs,
}

/// A run and what the checklist needs from around it.
struct Gathered {
    run: RunSummary,
    experiment: Vec<RunSummary>,
    scores: Option<Vec<ClassScore>>,
    confusion: Option<ConfusionCounts>,
    /// The run's output directory as recorded in its metrics.json, when it still exists here.
    recorded_output_dir: Option<PathBuf>,
}

pub fn run(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    check_args(&args)?;
    let config = args.tracking.config(None);
    let (gathered, home) = gather(&args.run, &config)?;
    let inputs = AnalysisInputs {
        run: &gathered.run,
        experiment: &gathered.experiment,
        class_scores: gathered.scores.as_deref(),
        confusion: gathered.confusion.as_ref(),
        baseline: args.baseline,
        tolerance: args.tolerance,
        overfit_epochs: args.overfit_epochs,
    };
    let result = analysis::analyze(&inputs);
    let markdown = result.to_markdown();
    let dir = match args.output_dir.clone().or(gathered.recorded_output_dir.clone()) {
        Some(dir) => dir,
        None => tracking::paths::join_component(Path::new("runs"), &gathered.run.run_id)
            .context("the run id cannot name a directory under runs/ (pass --output-dir)")?,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(ANALYSIS);
    engine::model::write_atomic(&path, markdown.as_bytes())?;
    log_artifact(&home, &config, &path)?;
    if args.json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        print!("{markdown}");
    }
    eprintln!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}

fn check_args(args: &AnalyzeArgs) -> Result<(), UsageError> {
    if !(0.0..=1.0).contains(&args.baseline) {
        return Err(UsageError(format!("--baseline must be an accuracy in [0, 1], got {}", args.baseline)));
    }
    if !(args.tolerance >= 0.0 && args.tolerance.is_finite()) {
        return Err(UsageError(format!("--tolerance must be a number >= 0, got {}", args.tolerance)));
    }
    if args.overfit_epochs == 0 {
        return Err(UsageError("--overfit-epochs must be at least 1".into()));
    }
    Ok(())
}

/// Reads the run from the local store, else from the server.
fn gather(run_id: &str, config: &TrackingConfig) -> anyhow::Result<(Gathered, RunHandle)> {
    let home = RunHandle::find(config, run_id)?;
    let gathered = match &home {
        RunHandle::Local { store, record } => gather_local(store, record)?,
        RunHandle::Server { client, run } => gather_server(client, run)?,
    };
    Ok((gathered, home))
}

fn gather_local(store: &LocalStore, record: &RunRecord) -> anyhow::Result<Gathered> {
    let run = tracking::summary_from_record(record);
    let experiment = tracking::Source::Local(store.clone()).experiment_runs(&record.experiment)?;
    let artifacts = record.dir.join("artifacts");
    let read = |name: &str| -> Option<Value> {
        // the training run's reports, else those of a later `engine eval --log-mlflow`
        [artifacts.join(name), artifacts.join("evaluation").join(name)]
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
    };
    let recorded_output_dir = read("metrics.json")
        .and_then(|m| m.get("output_dir").and_then(Value::as_str).map(PathBuf::from))
        .filter(|d| d.is_dir());
    Ok(Gathered {
        run,
        experiment,
        scores: parse_reports(read(REPORT), REPORT, analysis::class_scores_from_json),
        confusion: parse_reports(read(CONFUSION), CONFUSION, analysis::confusion_from_json),
        recorded_output_dir,
    })
}

fn gather_server(client: &MlflowClient, run: &Run) -> anyhow::Result<Gathered> {
    let summary = tracking::summary_from_server(client, run)?;
    let experiment = client.get_experiment(&run.info.experiment_id)?;
    let experiment_runs = tracking::Source::Server(client.clone()).experiment_runs(&experiment.name)?;
    let read = |name: &str| -> Option<Value> {
        let bytes = client.download_artifact(&run.info.artifact_uri, name).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    Ok(Gathered {
        run: summary,
        experiment: experiment_runs,
        scores: parse_reports(read(REPORT), REPORT, analysis::class_scores_from_json),
        confusion: parse_reports(read(CONFUSION), CONFUSION, analysis::confusion_from_json),
        recorded_output_dir: None,
    })
}

/// Parses an optional report; a malformed one is reported and treated as missing.
fn parse_reports<T>(value: Option<Value>, name: &str, parse: impl Fn(&Value) -> Result<T, String>) -> Option<T> {
    let value = value?;
    match parse(&value) {
        Ok(parsed) => Some(parsed),
        Err(why) => {
            eprintln!("warning: ignoring the run's {name}: {why}");
            None
        }
    }
}

/// Adds analysis.md to the run's artifacts (and sends a local run's addition to its server).
fn log_artifact(home: &RunHandle, config: &TrackingConfig, path: &Path) -> anyhow::Result<()> {
    let additions = RunAdditions { artifacts: vec![(path.to_path_buf(), String::new())], ..Default::default() };
    if let Pushed::Failed(_, e) = home.add(config, &additions, Push::IfMirrored)? {
        eprintln!("warning: analysis.md stays in the local store until `engine sync`: {e}");
    }
    Ok(())
}
