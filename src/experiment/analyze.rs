//! A run's evaluation checklist ("can we ship this model?"): the run, its experiment and its
//! reports gathered from the local store or the server, answered by [`crate::analysis`],
//! written as `analysis.md` next to the run's reports and logged as an artifact of the run.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ExperimentError;
use super::error::io;
use crate::analysis::{self, Analysis, AnalysisInputs, ClassScore, ConfusionCounts, RunSummary};
use crate::tracking::{
    self, LocalStore, MlflowClient, Push, Pushed, Run, RunAdditions, RunHandle, RunRecord, TrackingConfig,
};

type Result<T> = std::result::Result<T, ExperimentError>;

const REPORT: &str = "classification_report.json";
const CONFUSION: &str = "confusion_matrix.json";
const ANALYSIS: &str = "analysis.md";

/// What the checklist is measured against, and where `analysis.md` goes.
pub struct AnalyzeSpec {
    /// The accuracy the business needs, in [0, 1].
    pub baseline: f64,
    /// Test accuracy within which a cheaper run counts as just as good (>= 0).
    pub tolerance: f64,
    /// Epochs of rising validation loss that count as overfitting (>= 1).
    pub overfit_epochs: usize,
    /// `None`: the run's output directory when it still exists here, else `runs/<run id>`.
    pub output_dir: Option<PathBuf>,
}

/// The answered checklist and where it was written.
pub struct Analyzed {
    pub analysis: Analysis,
    /// `analysis.md`'s text.
    pub markdown: String,
    /// Where `analysis.md` was written.
    pub path: PathBuf,
    /// What was left out (a malformed report, an artifact not yet on the server).
    pub warnings: Vec<String>,
}

impl AnalyzeSpec {
    /// Refuses values the checklist cannot use.
    fn check(&self) -> Result<()> {
        let refuse = |why: String| Err(ExperimentError::Refused(why));
        if !(0.0..=1.0).contains(&self.baseline) {
            return refuse(format!("--baseline must be an accuracy in [0, 1], got {}", self.baseline));
        }
        if !(self.tolerance >= 0.0 && self.tolerance.is_finite()) {
            return refuse(format!("--tolerance must be a number >= 0, got {}", self.tolerance));
        }
        if self.overfit_epochs == 0 {
            return refuse("--overfit-epochs must be at least 1".into());
        }
        Ok(())
    }
}

/// Answers the checklist for `run_id` (local store, else the configured server), writes
/// `analysis.md` and adds it to the run (a local run's addition is sent to its server when it
/// has a copy there; if that fails, a warning says it stays local until a sync).
pub fn analyze_run(tracking: &TrackingConfig, run_id: &str, spec: &AnalyzeSpec) -> Result<Analyzed> {
    spec.check()?;
    let (gathered, home) = gather(run_id, tracking)?;
    let inputs = AnalysisInputs {
        run: &gathered.run,
        experiment: &gathered.experiment,
        class_scores: gathered.scores.as_deref(),
        confusion: gathered.confusion.as_ref(),
        baseline: spec.baseline,
        tolerance: spec.tolerance,
        overfit_epochs: spec.overfit_epochs,
    };
    let analysis = analysis::analyze(&inputs);
    let markdown = analysis.to_markdown();
    let dir = match spec.output_dir.clone().or(gathered.recorded_output_dir) {
        Some(dir) => dir,
        None => tracking::paths::join_component(Path::new("runs"), &gathered.run.run_id).map_err(|e| {
            ExperimentError::Failed(format!("the run id cannot name a directory under runs/ (pass --output-dir): {e}"))
        })?,
    };
    std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
    let path = dir.join(ANALYSIS);
    crate::model::write_atomic(&path, markdown.as_bytes())?;
    let mut warnings = gathered.warnings;
    let additions = RunAdditions { artifacts: vec![(path.clone(), String::new())], ..Default::default() };
    if let Pushed::Failed(_, e) = home.add(tracking, &additions, Push::IfMirrored)? {
        warnings.push(format!("analysis.md stays in the local store until `engine sync`: {e}"));
    }
    Ok(Analyzed { analysis, markdown, path, warnings })
}

/// A run and what the checklist needs from around it.
struct Gathered {
    /// Reports that could not be read, and why.
    warnings: Vec<String>,
    run: RunSummary,
    experiment: Vec<RunSummary>,
    scores: Option<Vec<ClassScore>>,
    confusion: Option<ConfusionCounts>,
    /// The run's output directory as recorded in its metrics.json, when it still exists here.
    recorded_output_dir: Option<PathBuf>,
}

/// Reads the run from the local store, else from the server.
fn gather(run_id: &str, config: &TrackingConfig) -> Result<(Gathered, RunHandle)> {
    let home = RunHandle::find(config, run_id)?;
    let gathered = match &home {
        RunHandle::Local { store, record } => gather_local(store, record)?,
        RunHandle::Server { client, run } => gather_server(client, run)?,
    };
    Ok((gathered, home))
}

fn gather_local(store: &LocalStore, record: &RunRecord) -> Result<Gathered> {
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
    let mut warnings = Vec::new();
    Ok(Gathered {
        run,
        experiment,
        scores: parse_reports(read(REPORT), REPORT, analysis::class_scores_from_json, &mut warnings),
        confusion: parse_reports(read(CONFUSION), CONFUSION, analysis::confusion_from_json, &mut warnings),
        recorded_output_dir,
        warnings,
    })
}

fn gather_server(client: &MlflowClient, run: &Run) -> Result<Gathered> {
    let summary = tracking::summary_from_server(client, run)?;
    let experiment = client.get_experiment(&run.info.experiment_id)?;
    let experiment_runs = tracking::Source::Server(client.clone()).experiment_runs(&experiment.name)?;
    let read = |name: &str| -> Option<Value> {
        let bytes = client.download_artifact(&run.info.artifact_uri, name).ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let mut warnings = Vec::new();
    Ok(Gathered {
        run: summary,
        experiment: experiment_runs,
        scores: parse_reports(read(REPORT), REPORT, analysis::class_scores_from_json, &mut warnings),
        confusion: parse_reports(read(CONFUSION), CONFUSION, analysis::confusion_from_json, &mut warnings),
        recorded_output_dir: None,
        warnings,
    })
}

/// Parses an optional report; a malformed one is noted in `warnings` and treated as missing.
fn parse_reports<T>(
    value: Option<Value>,
    name: &str,
    parse: impl Fn(&Value) -> std::result::Result<T, String>,
    warnings: &mut Vec<String>,
) -> Option<T> {
    let value = value?;
    match parse(&value) {
        Ok(parsed) => Some(parsed),
        Err(why) => {
            warnings.push(format!("ignoring the run's {name}: {why}"));
            None
        }
    }
}
