//! A tracked training run: start it, train with each epoch logged, evaluate on the test set,
//! save the model and reports, log them, and end the run FINISHED, FAILED (with the reason in
//! the `engine.error` tag) or KILLED (its cancellation flag was raised before the model was
//! recorded). Progress reaches the caller as [`Event`]s; nothing is printed here.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::output_dir::{claim_output_dir, lock_output_dir};
use super::results::{self, Cost, RunResults, class_names};
use super::{Datasets, ExperimentError};
use crate::Device;
use crate::data::{DataError, DataSource, DataSplit};
use crate::model;
use crate::report::ClassificationReport;
use crate::sysmetrics::Sampler;
use crate::tracking::{self, Metric, RunStatus, Tracker, TrackingConfig};
use crate::train::{self, CheckpointPaths, TrainConfig, TrainError};

type Result<T> = std::result::Result<T, ExperimentError>;

/// The tag holding why a run failed.
pub const ERROR_TAG: &str = "engine.error";

/// What stays the same between the runs of one process: the device and the loaded dataset.
pub struct Bench {
    pub device: Device,
    /// The device in words, recorded as the run's `device` param.
    pub device_name: String,
    /// The dataset as selected (what a sweep plan records).
    pub source: DataSource,
    /// The dataset as loaded: both sets and their input contract.
    pub data: DataSplit,
    /// Where the dataset came from in words, recorded as the run's `data_source` param.
    pub data_origin: String,
    /// The dataset as MLflow records it.
    pub datasets: Datasets,
}

impl Bench {
    /// Loads `source` (described once here) for runs on `device`.
    pub fn load(device: Device, device_name: String, source: DataSource) -> std::result::Result<Bench, DataError> {
        let (data, data_origin) = super::datasets::load_data(&source)?;
        let datasets = Datasets::describe(&data);
        Ok(Bench { device, device_name, source, data, data_origin, datasets })
    }
}

/// One tracked training run: its hyperparameters, where it is tracked (with which extra tags,
/// e.g. a sweep's `mlflow.parentRunId`), and where its files go.
pub struct RunSpec {
    pub config: TrainConfig,
    pub tracking: TrackingConfig,
    pub tags: Vec<(String, String)>,
    /// Where its model and reports go; `None`: `runs/<run id>`.
    pub output_dir: Option<PathBuf>,
    /// Replace another run's model and reports found in the output directory (else the run
    /// fails with [`ExperimentError::Refused`]).
    pub overwrite: bool,
    /// Sample system metrics this often (`None`: not at all).
    pub system_metrics: Option<std::time::Duration>,
    /// Continue from a checkpoint and save one after training (a search's promoted trial).
    pub checkpoint: Option<CheckpointPaths>,
    /// Metrics known before training, logged when the run starts (e.g. a search's rung).
    pub start_metrics: Vec<Metric>,
}

impl RunSpec {
    /// A run of `config` recorded by `tracking`, with no tags, the default output directory,
    /// no system metrics and no checkpoint.
    pub fn new(config: TrainConfig, tracking: TrackingConfig) -> RunSpec {
        RunSpec {
            config,
            tracking,
            tags: Vec::new(),
            output_dir: None,
            overwrite: false,
            system_metrics: None,
            checkpoint: None,
            start_metrics: Vec::new(),
        }
    }
}

/// How a started run ended.
pub struct RunOutcome {
    /// The run's id, as the tracker's `start_run` gave it.
    pub run_id: String,
    pub status: RunStatus,
    /// The summary written to `metrics.json` when the run finished, else why it did not.
    pub result: Result<serde_json::Value>,
}

/// Progress of a tracked run, in the order it happens.
pub enum Event<'a> {
    /// The run started; `tracking` says where it is recorded.
    Started { run_id: &'a str, tracking: String },
    /// The output directory held another run's model and reports, now replaced.
    Replacing { owner: &'a str, dir: &'a Path },
    /// An epoch started, a step ended, an epoch ended.
    Training(train::Event<'a>),
    /// Early stopping ended training at `stopped` of `epochs`, keeping epoch `best`'s weights.
    EarlyStopped { best: usize, stopped: usize, epochs: usize },
    /// The trained model's result on the test set.
    Tested { loss: f64, accuracy: f64, report: &'a ClassificationReport },
    /// The model and reports are written to `output_dir` and logged.
    Recorded { output_dir: &'a Path },
    /// Something that did not stop the run but was not done (e.g. system metrics not logged).
    Warning(String),
    /// Something the caller should know, e.g. that a cancel came too late to stop the run.
    Notice(String),
}

/// Starts a run, trains and reports, and ends the run FINISHED, FAILED or KILLED. `cancel` is
/// polled between steps: raised before the model is recorded, the run ends KILLED and the result
/// is [`ExperimentError::is_interrupted`]. An error means the run could not be started; a run
/// that started and failed is an `Ok` outcome whose `result` says why.
pub fn tracked_run(
    bench: &Bench,
    spec: &RunSpec,
    cancel: &AtomicBool,
    observe: &mut dyn FnMut(Event),
) -> Result<RunOutcome> {
    let mut tracker = tracking::open(&spec.tracking)?;
    let mut params = spec.config.params();
    params.extend([
        ("device".to_string(), bench.device_name.clone()),
        ("engine_version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ("data_source".to_string(), bench.data_origin.clone()),
    ]);
    let run_id = tracker.start_run(&params, &spec.tags)?;
    observe(Event::Started { run_id: &run_id, tracking: tracker.describe() });
    crate::cost::reset_peak_rss();
    let sampler = spec.system_metrics.map(Sampler::start);
    let inputs = bench.datasets.for_training(&bench.data, spec.config.train_limit);
    let logged = tracker.log_inputs(&inputs).and_then(|()| tracker.log_metrics(&spec.start_metrics));
    let result = logged.map_err(ExperimentError::from).and_then(|()| {
        let mut run = Running { bench, spec, tracker: tracker.as_mut(), run_id: &run_id, cancel, observe };
        run.train_and_report(sampler.as_ref())
    });
    if let Some(sampler) = sampler
        && let Err(e) = tracker.log_metrics(&sampler.finish())
    {
        observe(Event::Warning(format!("could not record the system metrics of run {run_id}: {e}")));
    }
    let status = match &result {
        Ok(_) => RunStatus::Finished,
        Err(e) if e.is_interrupted() => RunStatus::Killed,
        Err(_) => RunStatus::Failed,
    };
    if let Err(e) = &result
        && status == RunStatus::Failed
    {
        // Why it failed, on the run itself (best effort: the failure may be a full disk).
        let reason = tracking::util::truncate_chars(&e.to_string(), tracking::MAX_TAG_VALUE_CHARS).to_string();
        let _ = tracker.set_tags(&[(ERROR_TAG.to_string(), reason)]);
    }
    if let Err(e) = tracker.end_run(status) {
        observe(Event::Warning(format!("could not record the end of run {run_id}: {e}")));
    }
    if status == RunStatus::Finished && cancel.load(Ordering::SeqCst) {
        observe(Event::Notice(format!("the interrupt came after the model was recorded: run {run_id} ended FINISHED")));
    }
    Ok(RunOutcome { run_id, status, result })
}

/// Where a run's model and reports go.
fn output_dir(spec: &RunSpec, run_id: &str) -> Result<PathBuf> {
    match &spec.output_dir {
        Some(dir) => Ok(dir.clone()),
        None => Ok(tracking::paths::join_component(Path::new("runs"), run_id)?),
    }
}

/// A started run between its start and its end.
struct Running<'r> {
    bench: &'r Bench,
    spec: &'r RunSpec,
    tracker: &'r mut dyn Tracker,
    run_id: &'r str,
    cancel: &'r AtomicBool,
    observe: &'r mut dyn FnMut(Event<'_>),
}

impl Running<'_> {
    /// Stops with an interrupt once `cancel` is raised: checked between the steps after training
    /// too, so a cancel at any point before the model is recorded ends the run without a model.
    fn check_cancel(&self) -> Result<()> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(TrainError::Interrupted.into());
        }
        Ok(())
    }

    /// Everything between the start and the end, holding the output directory; returns the
    /// run's summary. Only a finished run leaves a model there.
    fn train_and_report(&mut self, sampler: Option<&Sampler>) -> Result<serde_json::Value> {
        let output_dir = output_dir(self.spec, self.run_id)?;
        let _output_lock = lock_output_dir(&output_dir)?;
        if let Some(owner) = claim_output_dir(&output_dir, self.spec.overwrite)? {
            (self.observe)(Event::Replacing { owner: &owner, dir: &output_dir });
        }
        let result = self.train_and_record(&output_dir, sampler);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(output_dir.join("model"));
        }
        result
    }

    fn train_and_record(&mut self, output_dir: &Path, sampler: Option<&Sampler>) -> Result<serde_json::Value> {
        let (config, device, data) = (&self.spec.config, &self.bench.device, &self.bench.data);
        let contract = &data.contract;
        let trained = self.fit_logged(sampler)?;
        let test_indices: Vec<usize> = (0..data.test.len()).collect();
        let inputs = (contract, config.normalize);
        let test = train::evaluate(&trained.model, &data.test, &test_indices, inputs, 1000, device)?;
        let report = ClassificationReport::new(&test.labels, &test.predictions, &class_names(contract))?;
        (self.observe)(Event::Tested { loss: test.loss, accuracy: test.accuracy, report: &report });

        self.check_cancel()?;
        let model_dir = output_dir.join("model");
        let model_id = self.tracker.begin_model(&config.params())?;
        let model_id = model_id.unwrap_or_else(|| format!("m-{}", tracking::util::new_run_id()));
        // The first test image shows Python users what an input looks like (a blank one if none).
        let blank = vec![0; contract.pixels()];
        let example = data.test.pixels.get(..contract.pixels()).unwrap_or(&blank);
        let hyperparameters = serde_json::to_value(config)?;
        let run_id = Some(self.run_id);
        model::save_model_dir(
            &model_dir,
            &trained.model,
            Some(contract),
            config.normalize,
            hyperparameters,
            example,
            run_id,
            Some(&model_id),
        )?;
        let mut written = results::write_reports(output_dir, data, &test, &trained.history)?;
        let cost = Cost::measure(&trained.model, self.bench, config.normalize)?;
        self.check_cancel()?;

        let results = RunResults { trained: &trained, test: &test, report: &report, cost: &cost, model_id: &model_id };
        let summary = results.summary(self.run_id, output_dir, &self.bench.device_name, config);
        let metrics_path = output_dir.join("metrics.json");
        model::write_atomic(&metrics_path, serde_json::to_string_pretty(&summary)?.as_bytes())?;
        written.push(metrics_path);
        self.tracker.log_metrics(&results.metrics(&self.bench.datasets.test))?;
        self.tracker.log_params(&[
            ("train_examples".to_string(), trained.train_examples.to_string()),
            ("val_examples".to_string(), trained.val_examples.to_string()),
        ])?;
        for path in &written {
            self.tracker.log_artifact(path, "")?;
        }
        // The last moment a cancel stops the run: from here on the model is recorded.
        self.check_cancel()?;
        self.tracker.finish_model(Some(&model_id), &model_dir, &model::MODEL_FILES)?;
        (self.observe)(Event::Recorded { output_dir });
        Ok(summary)
    }

    /// Trains with each epoch's metrics and the system metrics logged as they come, every event
    /// passed on, and the cancellation flag checked between steps.
    fn fit_logged(&mut self, sampler: Option<&Sampler>) -> Result<train::Trained> {
        let (config, tracker, cancel) = (&self.spec.config, &mut *self.tracker, self.cancel);
        let observe = &mut *self.observe;
        let mut on_event = |event: train::Event| -> std::result::Result<(), TrainError> {
            if cancel.load(Ordering::SeqCst) {
                return Err(TrainError::Interrupted);
            }
            let system = sampler.map(Sampler::take).unwrap_or_default();
            if !system.is_empty() {
                tracker.log_metrics(&system).map_err(|e| TrainError::Observer(e.to_string()))?;
            }
            if let train::Event::EpochEnd(m) = &event {
                tracker.log_metrics(&results::epoch_metrics(m)).map_err(|e| TrainError::Observer(e.to_string()))?;
            }
            observe(Event::Training(event));
            Ok(())
        };
        let (data, device) = (&self.bench.data, &self.bench.device);
        let trained = match &self.spec.checkpoint {
            None => train::fit(config, &data.train, &data.contract, device, &mut on_event)?,
            Some(paths) => train::fit_checkpointed(config, &data.train, &data.contract, device, paths, &mut on_event)?,
        };
        if let (Some(best), Some(stopped)) = (trained.best_epoch, trained.stopped_epoch) {
            (self.observe)(Event::EarlyStopped { best, stopped, epochs: config.epochs });
        }
        Ok(trained)
    }
}
