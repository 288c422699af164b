//! `engine train`: load the data, train, evaluate on the test set, write the model and reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::Args;
use engine::Device;
use engine::data::{self, Normalization};
use engine::model;
use engine::nn::Architecture;
use engine::report::{self, EpochPoint, EvaluationInputs};
use engine::train::{self, Event, LrSchedule, OptimizerKind, TrainConfig, TrainError};

use engine::tracking::{self, Metric, RunStatus, Tracker, TrackingConfig};

use super::datasets::Datasets;
use super::device::{DeviceChoice, open_device};
use super::progress::Progress;
use super::render::say;
use super::{NoteArgs, TrackingArgs, UsageError, choice};

#[derive(Args)]
pub struct TrainArgs {
    /// Examples per optimizer step.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Learning rate (the peak when --lr-schedule is cosine).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.05)]
    pub lr: f64,
    /// Hidden layer sizes of the MLP, comma-separated [default: 512,512]. The CNN's widths are
    /// fixed.
    #[arg(long, value_parser = parse_hidden)]
    pub hidden: Option<Hidden>,
    /// Train into an --output-dir that holds another run's model and reports, replacing them
    /// (without it such a directory is refused: one output directory, one run).
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub common: CommonTrainArgs,
}

/// The flags of `engine train` that `engine sweep` passes unchanged to each of its runs.
#[derive(Args)]
pub struct CommonTrainArgs {
    /// Where to train: cpu, gpu, or auto (a GPU if one is available, else the CPU).
    #[arg(long, value_enum, ignore_case = true, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// The network: mlp (layers set by --hidden) or cnn (two 3x3 convolutions of 32 and 64
    /// channels with 2x2 max pooling, then 128 hidden units: 421,642 parameters).
    #[arg(long, value_parser = choice::<Architecture>(), ignore_case = true, default_value_t = Architecture::Mlp)]
    pub model: Architecture,
    /// Passes over the training set.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, value_parser = choice::<OptimizerKind>(), ignore_case = true, default_value_t = OptimizerKind::Sgd)]
    pub optimizer: OptimizerKind,
    /// SGD momentum (ignored by Adam).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.9)]
    pub momentum: f64,
    /// L2 penalty (Adam, SGD) or decoupled decay (AdamW).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Dropout probability after each hidden layer while training.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    pub dropout: f64,
    #[arg(long, value_parser = choice::<LrSchedule>(), ignore_case = true, default_value_t = LrSchedule::Cosine)]
    pub lr_schedule: LrSchedule,
    /// Input scaling: unit (pixel/255) or meanstd (standardised with the training set's statistics).
    #[arg(long, value_parser = choice::<Normalization>(), ignore_case = true, default_value_t = Normalization::Meanstd)]
    pub normalize: Normalization,
    /// Seed for initialisation, the validation split, shuffling and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fraction of the training set held out for validation, in [0, 1).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.1)]
    pub val_split: f64,
    /// Stop after K epochs without a new lowest validation loss, keeping the best epoch's weights.
    #[arg(long, value_name = "K")]
    pub early_stop_patience: Option<usize>,
    /// Directory holding the FashionMNIST files (else the cache, Debian's package, or a download).
    #[arg(long, env = "ENGINE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where this run's model and reports go [default: runs/<run id>].
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Use only the first N training images (smoke tests, CI).
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Print the results as one JSON object, alone on stdout (progress, epochs and the report
    /// go to stderr).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tracking: TrackingArgs,
    /// Name of the run [default: generated, like MLflow's].
    #[arg(long)]
    pub run_name: Option<String>,
    #[command(flatten)]
    pub notes: NoteArgs,
    /// Sample CPU, memory, disk and network under MLflow's `system/` names every
    /// MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL seconds (10) [default: on, unless
    /// MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false].
    #[arg(long, overrides_with = "no_system_metrics")]
    pub system_metrics: bool,
    /// Do not sample system metrics (as MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false).
    #[arg(long, overrides_with = "system_metrics")]
    pub no_system_metrics: bool,
}

impl CommonTrainArgs {
    /// Whether and how often to sample system metrics, from the flags and the environment.
    pub fn system_metrics(&self) -> Option<std::time::Duration> {
        let flag = if self.system_metrics {
            Some(true)
        } else if self.no_system_metrics {
            Some(false)
        } else {
            None
        };
        engine::sysmetrics::settings_from_env(flag)
    }
}

/// Hidden layer sizes (a newtype so clap parses the whole list at once).
#[derive(Clone, Debug)]
pub struct Hidden(pub Vec<usize>);

pub fn parse_hidden(s: &str) -> Result<Hidden, String> {
    let sizes: Vec<usize> = s
        .split(',')
        .map(|part| match part.trim().parse::<usize>() {
            Ok(0) | Err(_) => Err(format!("'{part}' is not a positive layer size (expected e.g. 512,512)")),
            Ok(n) => Ok(n),
        })
        .collect::<Result<_, _>>()?;
    Ok(Hidden(sizes))
}

/// The MLP's hidden layers when --hidden is not given.
pub const DEFAULT_HIDDEN: [usize; 2] = [512, 512];

impl CommonTrainArgs {
    /// Refuses --hidden with --model cnn, whose widths are fixed: the flag would be ignored.
    pub fn refuse_hidden_for_cnn(&self, hidden_given: bool) -> Result<(), UsageError> {
        if self.model == Architecture::Cnn && hidden_given {
            return Err(UsageError(
                "--hidden sets the MLP's layers; --model cnn has fixed widths: drop --hidden".into(),
            ));
        }
        Ok(())
    }

    /// The hyperparameters, with the three that a sweep varies given. `hidden` is dropped for a
    /// CNN, so that its metadata and summary do not record layers it does not have.
    pub fn config(&self, lr: f64, batch_size: usize, hidden: &[usize]) -> TrainConfig {
        let hidden = if self.model == Architecture::Mlp { hidden.to_vec() } else { Vec::new() };
        TrainConfig {
            epochs: self.epochs,
            batch_size,
            lr,
            optimizer: self.optimizer,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            dropout: self.dropout,
            lr_schedule: self.lr_schedule,
            normalize: self.normalize,
            model: self.model,
            hidden,
            seed: self.seed,
            val_split: self.val_split,
            train_limit: self.train_limit,
            early_stop_patience: self.early_stop_patience,
        }
    }
}

/// What stays the same between the runs of one process: the device and the loaded dataset.
pub struct Bench {
    pub device: Device,
    pub device_name: String,
    pub dataset: data::fashion_mnist::FashionMnist,
    /// The dataset as MLflow records it.
    pub datasets: Datasets,
}

impl Bench {
    /// Opens the device, then loads (or finds, or downloads) FashionMNIST once.
    pub fn open(choice: DeviceChoice, data_dir: Option<&Path>) -> anyhow::Result<Bench> {
        let (device, device_name) = open_device(choice)?;
        let dataset = data::load(data_dir)?;
        eprintln!("data: {}", dataset.source);
        let datasets = Datasets::describe(&dataset);
        Ok(Bench { device, device_name, dataset, datasets })
    }
}

/// One tracked training run: its hyperparameters, where it is tracked (with which extra tags,
/// e.g. a sweep's `mlflow.parentRunId`), and where its files go.
pub struct RunSpec {
    pub config: TrainConfig,
    pub tracking: TrackingConfig,
    pub tags: Vec<(String, String)>,
    /// [default: runs/<run id>]
    pub output_dir: Option<PathBuf>,
    /// Print the JSON summary alone on stdout, and everything else on stderr.
    pub json: bool,
    /// Sample system metrics this often (`None`: not at all).
    pub system_metrics: Option<std::time::Duration>,
    /// Continue from a checkpoint and save one after training (a search's promoted trial).
    pub checkpoint: Option<train::CheckpointPaths>,
    /// Metrics known before training, logged when the run starts (e.g. a search's rung).
    pub start_metrics: Vec<Metric>,
}

/// How a started run ended.
pub struct RunOutcome {
    pub status: RunStatus,
    /// The summary written to `metrics.json` when the run finished, else why it did not.
    pub result: anyhow::Result<serde_json::Value>,
}

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    args.common.refuse_hidden_for_cnn(args.hidden.is_some())?;
    let hidden = args.hidden.map_or(DEFAULT_HIDDEN.to_vec(), |Hidden(sizes)| sizes);
    let config = args.common.config(args.lr, args.batch_size, &hidden);
    config.validate_within(engine::sysmetrics::available_memory_bytes()).map_err(UsageError)?;
    let tracking = args.common.tracking.config(args.common.run_name.clone());
    tracking.validate().map_err(UsageError)?;
    // Checked again once the run holds the directory; here so that no run starts.
    if let Some(dir) = &args.common.output_dir
        && !args.overwrite
    {
        claim_output_dir(dir, false)?;
    }
    let bench = Bench::open(args.common.device, args.common.data_dir.as_deref())?;
    let spec = RunSpec {
        config,
        tracking,
        tags: args.common.notes.to_tags(),
        output_dir: args.common.output_dir.clone(),
        json: args.common.json,
        system_metrics: args.common.system_metrics(),
        checkpoint: None,
        start_metrics: Vec::new(),
    };
    tracked_run_into(&bench, &spec, args.overwrite)?.result.map(|_| ExitCode::SUCCESS)
}

/// Starts a run, trains and reports, and ends the run FINISHED, FAILED or KILLED. An error
/// means the run could not be started; a run that started and failed is an `Ok` outcome. An
/// output directory holding another run's model or reports fails the run.
pub fn tracked_run(bench: &Bench, spec: &RunSpec) -> anyhow::Result<RunOutcome> {
    tracked_run_into(bench, spec, false)
}

/// [`tracked_run`]; with `overwrite`, another run's model and reports in the output directory
/// are replaced instead.
fn tracked_run_into(bench: &Bench, spec: &RunSpec, overwrite: bool) -> anyhow::Result<RunOutcome> {
    let mut tracker = tracking::open(&spec.tracking)?;
    let mut params = spec.config.params();
    params.extend([
        ("device".to_string(), bench.device_name.clone()),
        ("engine_version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
        ("data_source".to_string(), bench.dataset.source.to_string()),
    ]);
    // Before the run starts, so that no interrupt falls between the two.
    let interrupted = super::interrupt::install_interrupt_flag();
    let run_id = tracker.start_run(&params, &spec.tags)?;
    eprintln!("tracking: {}", tracker.describe());
    engine::cost::reset_peak_rss();
    let sampler = spec.system_metrics.map(engine::sysmetrics::Sampler::start);
    let inputs = bench.datasets.for_training(&bench.dataset, spec.config.train_limit);
    let logged = tracker.log_inputs(&inputs).and_then(|()| tracker.log_metrics(&spec.start_metrics));
    let result = logged.map_err(anyhow::Error::from).and_then(|()| {
        let tracker = tracker.as_mut();
        train_and_report(bench, spec, tracker, &run_id, &interrupted, sampler.as_ref(), overwrite)
    });
    if let Some(sampler) = sampler
        && let Err(e) = tracker.log_metrics(&sampler.finish())
    {
        eprintln!("warning: could not record the system metrics of run {run_id}: {e}");
    }
    let status = match &result {
        Ok(_) => RunStatus::Finished,
        Err(e) if matches!(e.downcast_ref(), Some(TrainError::Interrupted)) => RunStatus::Killed,
        Err(_) => RunStatus::Failed,
    };
    if let Err(e) = &result
        && status == RunStatus::Failed
    {
        // Why it failed, on the run itself (best effort: the failure may be a full disk).
        let reason = tracking::util::truncate_chars(&format!("{e:#}"), tracking::MAX_TAG_VALUE_CHARS).to_string();
        let _ = tracker.set_tags(&[(ERROR_TAG.to_string(), reason)]);
    }
    if let Err(e) = tracker.end_run(status) {
        eprintln!("warning: could not record the end of run {run_id}: {e}");
    }
    if status == RunStatus::Finished && interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        eprintln!("the interrupt came after the model was recorded: run {run_id} ended FINISHED");
    }
    Ok(RunOutcome { status, result })
}

/// Where a run's model and reports go.
fn output_dir(spec: &RunSpec, run_id: &str) -> Result<PathBuf, engine::tracking::TrackingError> {
    match &spec.output_dir {
        Some(dir) => Ok(dir.clone()),
        None => engine::tracking::paths::join_component(Path::new("runs"), run_id),
    }
}

/// The tag holding why a run failed.
pub const ERROR_TAG: &str = "engine.error";

/// Stops with [`TrainError::Interrupted`] once an interrupt arrived: checked between the steps
/// after training too, so an interrupt at any point before the model is recorded ends the run
/// KILLED without a model.
fn check_interrupt(interrupted: &AtomicBool) -> Result<(), TrainError> {
    if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(TrainError::Interrupted);
    }
    Ok(())
}

/// The lock file inside an output directory while a run writes it.
const LOCK_FILE: &str = ".engine.lock";

/// An output directory held by one run: a second run given the same `--output-dir` while the
/// first is writing it stops at once instead of mixing their files. Released when dropped: the
/// lock file is removed, and so are the directories the run created if it left them empty (a run
/// stopped before writing anything leaves no trace).
struct OutputDirLock {
    path: PathBuf,
    _file: std::fs::File,
    /// The directories this run created, innermost first.
    created: Vec<PathBuf>,
}

impl Drop for OutputDirLock {
    fn drop(&mut self) {
        // Removed while still locked: a run that opened the file meanwhile finds it replaced or
        // gone once it gets the lock, and opens it again (see `lock_output_dir`).
        let _ = std::fs::remove_file(&self.path);
        for dir in &self.created {
            if std::fs::remove_dir(dir).is_err() {
                break; // not empty: it holds the run's files
            }
        }
    }
}

/// Creates and locks `dir` for one run.
fn lock_output_dir(dir: &Path) -> anyhow::Result<OutputDirLock> {
    let created: Vec<PathBuf> =
        dir.ancestors().take_while(|d| !d.as_os_str().is_empty() && !d.exists()).map(Path::to_path_buf).collect();
    let path = dir.join(LOCK_FILE);
    // A run that ends removes its lock file (and the directory, if it left it empty); one that
    // opened the file just before gets a lock on a file no longer there, and tries again.
    for _ in 0..8 {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        match file.try_lock() {
            Ok(()) if is_same_file(&file, &path) => return Ok(OutputDirLock { path, _file: file, created }),
            Ok(()) => continue,
            Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                "output directory {} is being written by another run; give each concurrent run its own --output-dir",
                dir.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
    }
    anyhow::bail!("cannot lock {}: other runs keep replacing it", path.display())
}

/// Whether the open `file` is still the one at `path`.
#[cfg(unix)]
fn is_same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn is_same_file(_file: &std::fs::File, path: &Path) -> bool {
    path.exists()
}

/// The run whose model or reports `dir` holds, if any: named by `model/engine_model.json`,
/// `model/MLmodel` or `metrics.json`.
fn previous_run(dir: &Path) -> Option<String> {
    let from_json = |file: &str| -> Option<Option<String>> {
        let bytes = std::fs::read(dir.join(file)).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Some(value.get("run_id").and_then(|v| v.as_str()).map(str::to_string))
    };
    let from_mlmodel = || -> Option<Option<String>> {
        let text = std::fs::read_to_string(dir.join("model").join("MLmodel")).ok()?;
        let line = text.lines().find_map(|l| l.strip_prefix("run_id:"));
        Some(line.map(|id| id.trim().trim_matches(|c| c == '\'' || c == '"').to_string()))
    };
    let found = [from_json("model/engine_model.json"), from_mlmodel(), from_json("metrics.json")];
    let mut present = found.into_iter().flatten().peekable();
    present.peek()?;
    let named = present.flatten().find(|id| !id.is_empty());
    Some(named.map_or_else(|| "a run whose id cannot be read".to_string(), |id| format!("run {id}")))
}

/// Refuses an output directory that holds another run's model or reports, unless `overwrite`,
/// which removes them first (so that no file of the old run stays beside the new run's).
fn claim_output_dir(dir: &Path, overwrite: bool) -> anyhow::Result<()> {
    let Some(owner) = previous_run(dir) else { return Ok(()) };
    if !overwrite {
        return Err(UsageError(format!(
            "output directory {} holds the model and reports of {owner}; give this run its own --output-dir, or pass --overwrite to replace them",
            dir.display()
        ))
        .into());
    }
    eprintln!("--overwrite: replacing the model and reports of {owner} in {}", dir.display());
    let model = dir.join("model");
    if model.exists() {
        std::fs::remove_dir_all(&model).with_context(|| format!("cannot remove {}", model.display()))?;
    }
    let metrics = dir.join("metrics.json");
    if metrics.exists() {
        std::fs::remove_file(&metrics).with_context(|| format!("cannot remove {}", metrics.display()))?;
    }
    Ok(())
}

/// What the trained model costs to run, measured after training.
struct Cost {
    inference_ms_batch_64: f64,
    inference_ms_batch_1000: f64,
    peak_rss_mb: Option<f64>,
}

fn measure_cost(model: &engine::nn::Network, bench: &Bench, normalize: Normalization) -> anyhow::Result<Cost> {
    let test = &bench.dataset.test;
    let inference_ms_batch_64 = engine::cost::inference_ms_per_batch(model, test, normalize, 64, &bench.device)?;
    let inference_ms_batch_1000 = engine::cost::inference_ms_per_batch(model, test, normalize, 1000, &bench.device)?;
    Ok(Cost { inference_ms_batch_64, inference_ms_batch_1000, peak_rss_mb: engine::cost::peak_rss_mb() })
}

/// Everything between the start and the end of a tracked run, holding its output directory;
/// returns the run's summary. Only a finished run leaves a model there; `overwrite` replaces
/// another run's model and reports found there instead of refusing the directory.
fn train_and_report(
    bench: &Bench,
    spec: &RunSpec,
    tracker: &mut dyn Tracker,
    run_id: &str,
    interrupted: &AtomicBool,
    sampler: Option<&engine::sysmetrics::Sampler>,
    overwrite: bool,
) -> anyhow::Result<serde_json::Value> {
    let output_dir = output_dir(spec, run_id)?;
    let _output_lock = lock_output_dir(&output_dir)?;
    claim_output_dir(&output_dir, overwrite)?;
    let result = train_and_record(bench, spec, tracker, &output_dir, run_id, interrupted, sampler);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(output_dir.join("model"));
    }
    result
}

fn train_and_record(
    bench: &Bench,
    spec: &RunSpec,
    tracker: &mut dyn Tracker,
    output_dir: &Path,
    run_id: &str,
    interrupted: &AtomicBool,
    sampler: Option<&engine::sysmetrics::Sampler>,
) -> anyhow::Result<serde_json::Value> {
    let (config, device, dataset) = (&spec.config, &bench.device, &bench.dataset);
    let trained = fit_logged(bench, spec, tracker, interrupted, sampler)?;
    let test_indices: Vec<usize> = (0..dataset.test.len()).collect();
    let test = train::evaluate(&trained.model, &dataset.test, &test_indices, config.normalize, 1000, device)?;
    say(spec.json, &format!("test_loss {:.4}  test_accuracy {:.4}", test.loss, test.accuracy));
    let report = report::ClassificationReport::new(&test.labels, &test.predictions, &report::CLASS_NAMES)?;
    say(spec.json, &format!("\n{}", report.render_text()));

    check_interrupt(interrupted)?;
    let model_dir = output_dir.join("model");
    let model_id = tracker.begin_model(&config.params())?;
    let model_id = model_id.unwrap_or_else(|| format!("m-{}", tracking::util::new_run_id()));
    // The first test image shows Python users what an input looks like (a blank one if none).
    let example = dataset.test.pixels.get(..data::IMAGE_PIXELS).unwrap_or(&[0; data::IMAGE_PIXELS]);
    let hyperparameters = serde_json::to_value(config)?;
    model::save_model_dir(
        &model_dir,
        &trained.model,
        config.normalize,
        hyperparameters,
        example,
        Some(run_id),
        Some(&model_id),
    )?;
    let mut written = write_reports(output_dir, &dataset.test, &test, &trained.history)?;
    let cost = measure_cost(&trained.model, bench, config.normalize)?;
    check_interrupt(interrupted)?;

    let results = RunResults { trained: &trained, test: &test, report: &report, cost: &cost, model_id: &model_id };
    let summary = results.summary(run_id, output_dir, bench, config);
    let metrics_path = output_dir.join("metrics.json");
    model::write_atomic(&metrics_path, serde_json::to_string_pretty(&summary)?.as_bytes())?;
    written.push(metrics_path);
    tracker.log_metrics(&results.metrics(&bench.datasets.test))?;
    tracker.log_params(&[
        ("train_examples".to_string(), trained.train_examples.to_string()),
        ("val_examples".to_string(), trained.val_examples.to_string()),
    ])?;
    for path in &written {
        tracker.log_artifact(path, "")?;
    }
    // The last moment an interrupt stops the run: from here on the model is recorded.
    check_interrupt(interrupted)?;
    tracker.finish_model(Some(&model_id), &model_dir, &model::MODEL_FILES)?;
    eprintln!("wrote the model and reports to {}", output_dir.display());
    if spec.json {
        println!("{summary}");
    }
    Ok(summary)
}

/// Trains with progress on the terminal, each epoch's metrics and the system metrics logged as
/// they come, and the interrupt checked between steps.
fn fit_logged(
    bench: &Bench,
    spec: &RunSpec,
    tracker: &mut dyn Tracker,
    interrupted: &AtomicBool,
    sampler: Option<&engine::sysmetrics::Sampler>,
) -> anyhow::Result<train::Trained> {
    let config = &spec.config;
    let mut progress = Progress::new(spec.json);
    let mut observe = |event: Event| -> Result<(), TrainError> {
        check_interrupt(interrupted)?;
        let system = sampler.map(engine::sysmetrics::Sampler::take).unwrap_or_default();
        if !system.is_empty() {
            tracker.log_metrics(&system).map_err(|e| TrainError::Observer(e.to_string()))?;
        }
        match event {
            Event::EpochStart { epoch, steps } => progress.start(format!("epoch {epoch}/{}", config.epochs), steps),
            Event::Step { step, loss, samples_per_second } => {
                progress.step(step, format!("loss {loss:.4} {samples_per_second:.0} samples/s"))
            }
            Event::EpochEnd(m) => {
                progress.finish();
                let line = format!(
                    "epoch {:>3}/{}  train_loss {:.4}  val_loss {}  val_accuracy {}  {:.1}s",
                    m.epoch,
                    config.epochs,
                    m.train_loss,
                    optional(m.val_loss),
                    optional(m.val_accuracy),
                    m.seconds
                );
                say(spec.json, &line);
                tracker.log_metrics(&epoch_metrics(m)).map_err(|e| TrainError::Observer(e.to_string()))?;
            }
        }
        Ok(())
    };
    let (data, device) = (&bench.dataset.train, &bench.device);
    let trained = match &spec.checkpoint {
        None => train::fit(config, data, device, &mut observe)?,
        Some(paths) => train::fit_checkpointed(config, data, device, paths, &mut observe)?,
    };
    progress.finish();
    if let (Some(best), Some(stopped)) = (trained.best_epoch, trained.stopped_epoch) {
        eprintln!(
            "early stopping: trained {stopped} of {} epochs, kept the weights of epoch {best} (lowest val_loss)",
            config.epochs
        );
    }
    Ok(trained)
}

/// What a finished run measured, for its summary file and its final metrics.
struct RunResults<'a> {
    trained: &'a train::Trained,
    test: &'a train::Evaluation,
    report: &'a report::ClassificationReport,
    cost: &'a Cost,
    model_id: &'a str,
}

impl RunResults<'_> {
    /// `metrics.json`, also the `--json` line.
    fn summary(&self, run_id: &str, output_dir: &Path, bench: &Bench, config: &TrainConfig) -> serde_json::Value {
        let (trained, cost) = (self.trained, self.cost);
        let mut summary = serde_json::json!({
            "run_id": run_id,
            "output_dir": output_dir,
            "device": bench.device_name,
            "test_accuracy": self.test.accuracy,
            "test_loss": self.test.loss,
            "macro_f1": self.report.macro_f1(),
            "model_id": self.model_id,
            "train_seconds": trained.train_seconds,
            "train_examples": trained.train_examples,
            "val_examples": trained.val_examples,
            "parameters": trained.model.parameter_count(),
            "config": config,
            "epochs": trained.history,
            "inference_ms_batch_64": cost.inference_ms_batch_64,
            "inference_ms_batch_1000": cost.inference_ms_batch_1000,
            "peak_rss_mb": cost.peak_rss_mb,
        });
        if let (Some(best), Some(stopped)) = (trained.best_epoch, trained.stopped_epoch) {
            summary["best_epoch"] = best.into();
            summary["stopped_epoch"] = stopped.into();
        }
        summary
    }

    /// Summaries are one value each, logged at step 0 (per-epoch series use the epoch), and
    /// describe the model: its page in MLflow lists them; the quality ones name the test set.
    fn metrics(&self, test_set: &tracking::Dataset) -> Vec<Metric> {
        let on_test = |key: &str, value: f64| Metric::new(key, value, 0).of_model(self.model_id, Some(test_set));
        let of_model = |key: &str, value: f64| Metric::new(key, value, 0).of_model(self.model_id, None);
        let (trained, cost) = (self.trained, self.cost);
        let mut metrics = vec![
            on_test("test_loss", self.test.loss),
            on_test("test_accuracy", self.test.accuracy),
            on_test("macro_f1", self.report.macro_f1()),
            on_test("weighted_f1", self.report.weighted_f1()),
            of_model("train_seconds", trained.train_seconds),
            of_model("parameter_count", trained.model.parameter_count() as f64),
            of_model("inference_ms_batch_64", cost.inference_ms_batch_64),
            of_model("inference_ms_batch_1000", cost.inference_ms_batch_1000),
        ];
        metrics.extend(cost.peak_rss_mb.map(|mb| of_model("peak_rss_mb", mb)));
        metrics.extend(trained.best_epoch.map(|e| of_model("best_epoch", e as f64)));
        metrics.extend(trained.stopped_epoch.map(|e| of_model("stopped_epoch", e as f64)));
        metrics
    }
}

fn epoch_metrics(m: &train::EpochMetrics) -> Vec<Metric> {
    let step = m.epoch as i64;
    let mut metrics = vec![
        Metric::new("train_loss", m.train_loss, step),
        Metric::new("epoch_seconds", m.seconds, step),
        Metric::new("samples_per_second", m.samples_per_second, step),
        // Not `learning_rate`: that is the configured peak, a param.
        Metric::new("lr", m.learning_rate, step),
    ];
    metrics.extend(m.val_loss.map(|v| Metric::new("val_loss", v, step)));
    metrics.extend(m.val_accuracy.map(|v| Metric::new("val_accuracy", v, step)));
    metrics
}

/// Writes the evaluation reports and the training curves; returns the files written.
fn write_reports(
    dir: &Path,
    test_set: &data::Dataset,
    test: &train::Evaluation,
    history: &[train::EpochMetrics],
) -> anyhow::Result<Vec<PathBuf>> {
    let inputs = EvaluationInputs {
        y_true: &test.labels,
        y_pred: &test.predictions,
        prob_of_pred: &test.prob_of_pred,
        images: &test_set.pixels,
    };
    let mut written = report::write_evaluation_reports(dir, &inputs)?;
    let points: Vec<EpochPoint> = history
        .iter()
        .map(|m| EpochPoint {
            epoch: m.epoch,
            train_loss: m.train_loss,
            val_loss: m.val_loss.unwrap_or(f64::NAN),
            val_accuracy: m.val_accuracy.unwrap_or(f64::NAN),
        })
        .collect();
    let curves = dir.join("training_curves.png");
    report::training_curves_png(&points, &curves)?;
    written.push(curves);
    Ok(written)
}

fn optional(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}
