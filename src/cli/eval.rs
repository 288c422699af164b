//! `engine eval`: find a trained model (by run id, `models:/` URI or directory), verify it,
//! evaluate it on the FashionMNIST test set, and write (and optionally log) the reports.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use engine::data;
use engine::model;
use engine::report::{self, EvaluationInputs};
use engine::tracking::{self, DatasetInput, LocalStore, Metric, TrackingConfig};
use engine::train::{self, Evaluation};

use super::datasets::evaluation_input;
use super::device::{DeviceChoice, open_device};
use super::locate::{Located, locate_model, server};
use super::render::say;
use super::{NOTE_TAG, NoteArgs, TrackingArgs};

#[derive(Args)]
pub struct EvalArgs {
    /// The run whose model to evaluate (local store, else the configured MLflow server).
    #[arg(long, required_unless_present = "model_uri", conflicts_with = "model_uri")]
    pub run_id: Option<String>,
    /// Instead of a run: models:/NAME/VERSION, models:/NAME/STAGE, models:/NAME/latest,
    /// models:/NAME@ALIAS, models:/<model id>, runs:/RUN_ID/model, or a local model directory.
    #[arg(long)]
    pub model_uri: Option<String>,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Log the evaluation metrics (eval_*) and files (under evaluation/) to the model's run.
    #[arg(long)]
    pub log_mlflow: bool,
    #[arg(long, value_enum, ignore_case = true, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Where the reports go [default: runs/<run id>/evaluation].
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Directory holding the FashionMNIST files.
    #[arg(long, env = "ENGINE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print the results as one JSON object, alone on stdout (the report goes to stderr).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tracking: TrackingArgs,
    /// With --log-mlflow: tags for the run, and a description added to its note.
    #[command(flatten)]
    pub notes: NoteArgs,
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let tracking = args.tracking.config(None);
    let (device, device_name) = open_device(args.device)?;
    // Everything is written to a scratch directory first: a failure leaves no trace in runs/.
    let staging = staging_dir()?;
    let result = evaluate_into(&args, &tracking, &device, &staging);
    let outcome = result.and_then(|(located, eval, report, input)| {
        let output_dir = match args.output_dir.clone() {
            Some(dir) => dir,
            None => default_output_dir(&args, &located)?,
        };
        let files = publish(&staging, &output_dir)?;
        Ok((located, eval, report, input, files, output_dir))
    });
    let _ = std::fs::remove_dir_all(&staging);
    let (located, eval, report, input, files, output_dir) = outcome?;

    say(args.json, &report.render_text());
    say(args.json, &format!("test_loss {:.4}  test_accuracy {:.4}  ({device_name})", eval.loss, eval.accuracy));
    if args.log_mlflow {
        let run_id = located.run_id.as_deref().context("--log-mlflow needs a model that belongs to a run")?;
        let additions = RunAdditions { eval: &eval, report: &report, files: &files, input, notes: &args.notes };
        log_to_run(&tracking, run_id, located.local_run, &additions)?;
    }
    eprintln!("wrote the evaluation to {}", output_dir.display());
    if args.json {
        let summary = serde_json::json!({
            "run_id": located.run_id,
            "test_accuracy": eval.accuracy,
            "test_loss": eval.loss,
            "macro_f1": report.macro_f1(),
            "weighted_f1": report.weighted_f1(),
            "output_dir": output_dir,
            "device": device_name,
        });
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Finds, verifies and evaluates the model, writing every output file into `staging`.
fn evaluate_into(
    args: &EvalArgs,
    tracking: &TrackingConfig,
    device: &engine::Device,
    staging: &Path,
) -> anyhow::Result<(Located, Evaluation, report::ClassificationReport, DatasetInput)> {
    let download = staging.join("downloaded-model");
    let located = locate_model(args.run_id.as_deref(), args.model_uri.as_deref(), tracking, &download)?;
    let (network, meta) = model::load_model_dir(&located.dir, device)?;
    if let Some(trained_by) = meta.run_id.as_deref().filter(|_| !located.run_ids.is_empty())
        && !located.run_ids.iter().any(|id| id == trained_by)
    {
        bail!(
            "the model recorded under run {} was trained by run {trained_by}; evaluate that run instead (were two runs given one --output-dir?)",
            located.run_id.as_deref().unwrap_or_default()
        );
    }
    let dataset = data::load(args.data_dir.as_deref())?;
    let indices: Vec<usize> = (0..dataset.test.len()).collect();
    let eval = train::evaluate(&network, &dataset.test, &indices, meta.normalize, args.batch_size as usize, device)?;
    let _ = std::fs::remove_dir_all(&download);

    let inputs = EvaluationInputs {
        y_true: &eval.labels,
        y_pred: &eval.predictions,
        prob_of_pred: &eval.prob_of_pred,
        images: &dataset.test.pixels,
    };
    report::write_evaluation_reports(staging, &inputs)?;
    let report = report::ClassificationReport::new(&eval.labels, &eval.predictions, &report::CLASS_NAMES)?;
    let mut csv = String::from("index,true_label,predicted_label,probability\n");
    for (i, ((t, p), prob)) in eval.labels.iter().zip(&eval.predictions).zip(&eval.prob_of_pred).enumerate() {
        let _ = writeln!(csv, "{i},{t},{p},{prob}");
    }
    model::write_atomic(&staging.join("predictions.csv"), csv.as_bytes())?;
    let metrics = serde_json::json!({
        "run_id": located.run_id,
        "model_id": meta.model_id,
        "test_loss": eval.loss,
        "test_accuracy": eval.accuracy,
        "macro_f1": report.macro_f1(),
        "weighted_f1": report.weighted_f1(),
        "examples": eval.labels.len(),
    });
    model::write_atomic(&staging.join("metrics.json"), serde_json::to_string_pretty(&metrics)?.as_bytes())?;
    Ok((located, eval, report, evaluation_input(&dataset)))
}

/// A fresh scratch directory for this evaluation's files.
fn staging_dir() -> anyhow::Result<PathBuf> {
    let staging = std::env::temp_dir().join(format!("engine-eval-{}", tracking::util::new_run_id()));
    std::fs::create_dir_all(&staging).with_context(|| format!("cannot create {}", staging.display()))?;
    Ok(staging)
}

/// `runs/<run id>/evaluation`, named by the resolved run id (a prefix or URI given on the
/// command line resolves to the full id); a model of no known run by its URI.
/// The run id may come from a server, so it must name a single directory under runs/.
fn default_output_dir(args: &EvalArgs, located: &Located) -> anyhow::Result<PathBuf> {
    let name = match &located.run_id {
        Some(id) => id.clone(),
        None => tracking::paths::sanitize_component(args.model_uri.as_deref().unwrap_or("model")),
    };
    let dir = tracking::paths::join_component(Path::new("runs"), &name)
        .context("the run id cannot name a directory under runs/ (pass --output-dir)")?;
    Ok(dir.join("evaluation"))
}

/// Copies every file of `staging` into `output_dir`, each through a temporary name; returns
/// their final paths.
fn publish(staging: &Path, output_dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(output_dir).with_context(|| format!("cannot create {}", output_dir.display()))?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(staging)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            let target = output_dir.join(entry.file_name());
            let bytes = std::fs::read(entry.path())?;
            model::write_atomic(&target, &bytes)?;
            files.push(target);
        }
    }
    files.sort();
    Ok(files)
}

/// What `--log-mlflow` adds to the evaluated run.
struct RunAdditions<'a> {
    eval: &'a Evaluation,
    report: &'a report::ClassificationReport,
    files: &'a [PathBuf],
    /// The test set, as the evaluation's input.
    input: DatasetInput,
    notes: &'a NoteArgs,
}

impl RunAdditions<'_> {
    /// The `eval_*` metrics, as measures of the run's model (named by its `engine.model_id` tag)
    /// on the test set.
    fn metrics(&self, model_id: Option<&str>) -> Vec<Metric> {
        let values = [
            ("eval_test_accuracy", self.eval.accuracy),
            ("eval_test_loss", self.eval.loss),
            ("eval_macro_f1", self.report.macro_f1()),
            ("eval_weighted_f1", self.report.weighted_f1()),
        ];
        values
            .into_iter()
            .map(|(key, value)| {
                let metric = Metric::new(key, value, 0);
                match model_id {
                    Some(id) => metric.of_model(id, Some(&self.input.dataset)),
                    None => metric,
                }
            })
            .collect()
    }

    /// The user's tags, and the description added to the run's note.
    fn tags(&self, note: Option<&str>) -> Vec<(String, String)> {
        let mut tags = self.notes.tags.clone();
        if let Some(text) = &self.notes.description {
            let note = match note.filter(|n| !n.is_empty()) {
                Some(before) => format!("{before}\n\nEvaluation: {text}"),
                None => text.clone(),
            };
            tags.push((NOTE_TAG.to_string(), note));
        }
        tags
    }
}

/// Adds the evaluation to the run: `eval_*` metrics, the test set as an input, tags, and the
/// files under `evaluation/`.
fn log_to_run(tracking: &TrackingConfig, run_id: &str, local_run: bool, add: &RunAdditions) -> anyhow::Result<()> {
    if local_run {
        {
            // The reopened run holds its lock: release it before syncing, or sync skips the run.
            let mut run = LocalStore::open(&tracking.local_root)?.reopen_run(run_id)?;
            let model_id = run.tags().get(tracking::MODEL_ID_TAG).cloned();
            run.log_metrics(&add.metrics(model_id.as_deref()))?;
            run.log_inputs(std::slice::from_ref(&add.input))?;
            let tags = add.tags(run.tags().get(NOTE_TAG).map(String::as_str));
            run.set_tags(&tags)?;
            for file in add.files {
                run.log_artifact(file, "evaluation")?;
            }
        }
        eprintln!("logged the evaluation to run {run_id} in the local store");
        if let Some(uri) = &tracking.tracking_uri {
            tracking::sync_run_now(&tracking.local_root, tracking, run_id).with_context(|| {
                format!("the evaluation is recorded in the local store but not on {uri}; `engine sync` sends it later")
            })?;
            eprintln!("synced run {run_id} to {uri}");
        }
        return Ok(());
    }
    let client = server(tracking, "the run")?;
    let run = client.get_run(run_id)?;
    let model_id = run.tag(tracking::MODEL_ID_TAG).filter(|id| client.get_logged_model(id).is_ok());
    client.log_batch(run_id, &add.metrics(model_id), &[], &add.tags(run.tag(NOTE_TAG)))?;
    client.log_inputs(run_id, std::slice::from_ref(&add.input))?;
    for file in add.files {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        client.upload_artifact_file(&run.info.artifact_uri, &format!("evaluation/{name}"), file)?;
    }
    eprintln!("logged the evaluation to run {run_id} on {}", client.tracking_uri());
    Ok(())
}
