//! Evaluating a trained model (by run id, model URI or directory) on a dataset's test set (one
//! whose input contract the model takes): its reports, predictions and metrics written to a
//! directory, then optionally added to the model's run (`eval_*` metrics, the test set as an
//! input, files under `evaluation/`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::datasets::{evaluation_input, load_data};
use super::error::io;
use super::locate::{Located, locate_model};
use super::results::class_names;
use super::{ExperimentError, NOTE_TAG};
use crate::data::{DataSource, InputContract};
use crate::report::{self, ClassificationReport, EvaluationInputs};
use crate::tracking::{self, DatasetInput, Metric, Push, Pushed, RunAdditions, RunHandle, TrackingConfig};
use crate::train::{self, Evaluation};
use crate::{Device, model};

type Result<T> = std::result::Result<T, ExperimentError>;

/// Which model to evaluate, on what, and where the files go.
pub struct EvalSpec<'a> {
    /// The run whose model to evaluate (local store, else the configured server)...
    pub run_id: Option<&'a str>,
    /// ...or any model URI [`tracking::ModelUri`] reads (wins over `run_id`).
    pub model_uri: Option<&'a str>,
    /// Examples per forward pass (at least 1).
    pub batch_size: usize,
    /// Where the files go; `None`: `runs/<run id>/evaluation`.
    pub output_dir: Option<PathBuf>,
    /// The dataset whose test set the model is evaluated on.
    pub data: &'a DataSource,
    pub tracking: &'a TrackingConfig,
}

/// A finished evaluation: where the model was found, what it scored, the files written.
pub struct Evaluated {
    /// Where the model was found (and its run, when found through it).
    pub located: Located,
    /// Loss, accuracy and every prediction on the test set.
    pub eval: Evaluation,
    /// Per-class precision, recall and F1 of those predictions.
    pub report: ClassificationReport,
    /// The test set, as the evaluation's input.
    pub input: DatasetInput,
    /// The files written, under `output_dir`, sorted.
    pub files: Vec<PathBuf>,
    pub output_dir: PathBuf,
}

/// Finds, verifies and evaluates the model. Every file is written to a scratch directory
/// first and published only when all of them are: a failure leaves nothing in the output
/// directory. A model recorded under one run but trained by another is refused.
pub fn evaluate(spec: &EvalSpec, device: &Device) -> Result<Evaluated> {
    let staging = std::env::temp_dir().join(format!("engine-eval-{}", tracking::util::new_run_id()));
    std::fs::create_dir_all(&staging).map_err(io("create", &staging))?;
    let outcome = evaluate_into(spec, device, &staging).and_then(|(located, eval, report, input)| {
        let output_dir = match spec.output_dir.clone() {
            Some(dir) => dir,
            None => default_output_dir(spec.model_uri, &located)?,
        };
        let files = publish(&staging, &output_dir)?;
        Ok(Evaluated { located, eval, report, input, files, output_dir })
    });
    let _ = std::fs::remove_dir_all(&staging);
    outcome
}

/// The model found, its evaluation and report, and the test set as an input; files in `staging`.
fn evaluate_into(
    spec: &EvalSpec,
    device: &Device,
    staging: &Path,
) -> Result<(Located, Evaluation, ClassificationReport, DatasetInput)> {
    let download = staging.join("downloaded-model");
    let located = locate_model(spec.run_id, spec.model_uri, spec.tracking, &download)?;
    let (network, meta) = model::load_model_dir(&located.dir, device)?;
    let run_ids = located.run_ids();
    if let Some(trained_by) = meta.run_id.as_deref().filter(|_| !run_ids.is_empty())
        && !run_ids.iter().any(|id| id == trained_by)
    {
        return Err(ExperimentError::Failed(format!(
            "the model recorded under run {} was trained by run {trained_by}; evaluate that run instead (were two runs given one --output-dir?)",
            located.run_id.as_deref().unwrap_or_default()
        )));
    }
    let (dataset, _) = load_data(spec.data)?;
    let contract = meta.input_contract();
    refuse_other_inputs(&contract, &dataset.contract, spec.data)?;
    let indices: Vec<usize> = (0..dataset.test.len()).collect();
    let inputs = (&contract, meta.normalize);
    let eval = train::evaluate(&network, &dataset.test, &indices, inputs, spec.batch_size, device)?;
    let _ = std::fs::remove_dir_all(&download);

    let inputs = EvaluationInputs {
        y_true: &eval.labels,
        y_pred: &eval.predictions,
        prob_of_pred: &eval.prob_of_pred,
        images: &dataset.test.pixels,
        shape: train::image_shape(&contract),
        class_names: &contract.class_names,
    };
    report::write_evaluation_reports(staging, &inputs)?;
    let report = ClassificationReport::new(&eval.labels, &eval.predictions, &class_names(&contract))?;
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

/// Refuses data whose examples the model cannot read (another shape or channel count) or whose
/// labels mean other classes (another class count), naming both contracts.
fn refuse_other_inputs(model: &InputContract, data: &InputContract, source: &DataSource) -> Result<()> {
    let describe =
        |c: &InputContract| format!("{}x{}x{} images of {} classes", c.channels, c.height, c.width, c.classes());
    let same_shape = (model.channels, model.height, model.width) == (data.channels, data.height, data.width);
    if same_shape && model.classes() == data.classes() {
        return Ok(());
    }
    Err(ExperimentError::Refused(format!(
        "the model takes {} but {source} has {}: evaluate it on data like its training data (--data)",
        describe(model),
        describe(data)
    )))
}

/// `runs/<run id>/evaluation`, named by the resolved run id (a prefix or URI resolves to the
/// full id); a model of no known run by its URI. The run id may come from a server, so it must
/// name a single directory under runs/.
fn default_output_dir(model_uri: Option<&str>, located: &Located) -> Result<PathBuf> {
    let name = match &located.run_id {
        Some(id) => id.clone(),
        None => tracking::paths::sanitize_component(model_uri.unwrap_or("model")),
    };
    let dir = tracking::paths::join_component(Path::new("runs"), &name).map_err(|e| {
        ExperimentError::Failed(format!("the run id cannot name a directory under runs/ (pass --output-dir): {e}"))
    })?;
    Ok(dir.join("evaluation"))
}

/// Copies every file of `staging` into `output_dir`, each through a temporary name; returns
/// their final paths.
fn publish(staging: &Path, output_dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(output_dir).map_err(io("create", output_dir))?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(staging).map_err(io("read", staging))? {
        let entry = entry.map_err(io("read", staging))?;
        if entry.file_type().map_err(io("read", &entry.path()))?.is_file() {
            let target = output_dir.join(entry.file_name());
            let bytes = std::fs::read(entry.path()).map_err(io("read", &entry.path()))?;
            model::write_atomic(&target, &bytes)?;
            files.push(target);
        }
    }
    files.sort();
    Ok(files)
}

/// Where [`log_evaluation`] recorded the evaluation.
pub struct Logged {
    /// The run the evaluation was added to.
    pub run_id: String,
    /// "in the local store" or "on" and the server's URI.
    pub place: String,
    /// The server a local run was then sent to.
    pub synced_to: Option<String>,
}

/// Adds the evaluation to the model's run: `eval_*` metrics (measures of the run's model on
/// the test set), the test set as an input, `tags`, the `description` added to the run's note,
/// and the files under `evaluation/`. A local run is then sent to the configured server; if
/// that fails, the error says the evaluation stays in the local store.
pub fn log_evaluation(
    tracking: &TrackingConfig,
    evaluated: &Evaluated,
    tags: &[(String, String)],
    description: Option<&str>,
) -> Result<Logged> {
    let located = &evaluated.located;
    let run_id = located
        .run_id
        .as_deref()
        .ok_or_else(|| ExperimentError::Failed("--log-mlflow needs a model that belongs to a run".to_string()))?;
    let found;
    let run = match &located.run {
        Some(run) => run,
        None => {
            found = RunHandle::on_server(tracking, run_id)?;
            &found
        }
    };
    let mut all_tags = tags.to_vec();
    if let Some(text) = description {
        let note = match run.tags().get(NOTE_TAG).filter(|n| !n.is_empty()) {
            Some(before) => format!("{before}\n\nEvaluation: {text}"),
            None => text.to_string(),
        };
        all_tags.push((NOTE_TAG.to_string(), note));
    }
    let additions = RunAdditions {
        metrics: eval_metrics(evaluated, run.model_id().as_deref()),
        inputs: vec![evaluated.input.clone()],
        tags: all_tags,
        artifacts: evaluated.files.iter().map(|f| (f.clone(), "evaluation".to_string())).collect(),
        end: None,
    };
    let synced_to = match run.add(tracking, &additions, Push::Always)? {
        Pushed::NotNeeded => None,
        Pushed::Synced(uri) => Some(uri),
        Pushed::Failed(uri, e) => {
            return Err(ExperimentError::from(e).after(format!(
                "the evaluation is recorded in the local store but not on {uri}; `engine sync` sends it later"
            )));
        }
    };
    Ok(Logged { run_id: run_id.to_string(), place: run.place(), synced_to })
}

/// The `eval_*` metrics, as measures of the model `model_id` (when known) on the test set.
fn eval_metrics(evaluated: &Evaluated, model_id: Option<&str>) -> Vec<Metric> {
    let values = [
        ("eval_test_accuracy", evaluated.eval.accuracy),
        ("eval_test_loss", evaluated.eval.loss),
        ("eval_macro_f1", evaluated.report.macro_f1()),
        ("eval_weighted_f1", evaluated.report.weighted_f1()),
    ];
    let dataset = &evaluated.input.dataset;
    values
        .into_iter()
        .map(|(key, value)| match model_id {
            Some(id) => Metric::new(key, value, 0).of_model(id, Some(dataset)),
            None => Metric::new(key, value, 0),
        })
        .collect()
}
