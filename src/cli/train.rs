//! `engine train`: its flags, and the terminal view of [`engine::experiment::tracked_run`]
//! (progress bars, epoch lines, the test report; `--json` puts the summary alone on stdout).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use engine::data::{DataSource, Normalization};
use engine::experiment::{self, Event};
use engine::nn::Architecture;
use engine::train::{self, LrSchedule, OptimizerKind, TrainConfig};

use super::data::DataArgs;
use super::device::{DeviceChoice, open_device};
use super::progress::Progress;
use super::render::say;
use super::{NoteArgs, TrackingArgs, UsageError, choice};

#[derive(Args)]
pub struct TrainArgs {
    /// Examples per optimizer step.
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    pub batch_size: usize,
    /// Learning rate (the peak when --lr-schedule is cosine).
    #[arg(long, allow_negative_numbers = true, default_value_t = TrainConfig::default().lr)]
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
    #[arg(long, value_parser = choice::<Architecture>(), ignore_case = true, default_value_t = TrainConfig::default().model)]
    pub model: Architecture,
    /// Passes over the training set.
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    pub epochs: usize,
    #[arg(long, value_parser = choice::<OptimizerKind>(), ignore_case = true, default_value_t = TrainConfig::default().optimizer)]
    pub optimizer: OptimizerKind,
    /// SGD momentum (ignored by Adam).
    #[arg(long, allow_negative_numbers = true, default_value_t = TrainConfig::default().momentum)]
    pub momentum: f64,
    /// L2 penalty (Adam, SGD) or decoupled decay (AdamW).
    #[arg(long, allow_negative_numbers = true, default_value_t = TrainConfig::default().weight_decay)]
    pub weight_decay: f64,
    /// Dropout probability after each hidden layer while training.
    #[arg(long, allow_negative_numbers = true, default_value_t = TrainConfig::default().dropout)]
    pub dropout: f64,
    #[arg(long, value_parser = choice::<LrSchedule>(), ignore_case = true, default_value_t = TrainConfig::default().lr_schedule)]
    pub lr_schedule: LrSchedule,
    /// Input scaling: unit (pixel/255) or meanstd (standardised with the training set's statistics).
    #[arg(long, value_parser = choice::<Normalization>(), ignore_case = true, default_value_t = TrainConfig::default().normalize)]
    pub normalize: Normalization,
    /// Seed for initialisation, the validation split, shuffling and dropout.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
    /// Fraction of the training set held out for validation, in [0, 1).
    #[arg(long, allow_negative_numbers = true, default_value_t = TrainConfig::default().val_split)]
    pub val_split: f64,
    /// Stop after K epochs without a new lowest validation loss, keeping the best epoch's weights.
    #[arg(long, value_name = "K")]
    pub early_stop_patience: Option<usize>,
    #[command(flatten)]
    pub data: DataArgs,
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

pub use engine::train::DEFAULT_HIDDEN;

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

/// Opens the device, then loads (or finds, or downloads) the dataset once, saying where from.
pub fn open_bench(choice: DeviceChoice, source: DataSource) -> anyhow::Result<experiment::Bench> {
    let (device, device_name) = open_device(choice)?;
    let bench = experiment::Bench::load(device, device_name, source)?;
    eprintln!("data: {}", bench.data_origin);
    Ok(bench)
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
        experiment::claim_output_dir(dir, false)?;
    }
    let bench = open_bench(args.common.device, args.common.data.source()?)?;
    let spec = experiment::RunSpec {
        tags: args.common.notes.to_tags(),
        output_dir: args.common.output_dir.clone(),
        overwrite: args.overwrite,
        system_metrics: args.common.system_metrics(),
        ..experiment::RunSpec::new(config, tracking)
    };
    // Before the run starts, so that no interrupt falls between the two.
    let interrupted = super::interrupt::install_interrupt_flag();
    let json = args.common.json;
    let mut renderer = RunRenderer::new(json, spec.config.epochs);
    let outcome = experiment::tracked_run(&bench, &spec, &interrupted, &mut |event| renderer.show(event))?;
    let summary = outcome.result?;
    if json {
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Shows a run's progress: a bar per epoch, a line per epoch, the test result and report.
pub struct RunRenderer {
    json: bool,
    epochs: usize,
    progress: Progress,
}

impl RunRenderer {
    /// A renderer of a run of `epochs`; with `json`, only the summary goes to stdout.
    pub fn new(json: bool, epochs: usize) -> RunRenderer {
        RunRenderer { json, epochs, progress: Progress::new(json) }
    }

    pub fn show(&mut self, event: Event) {
        match event {
            Event::Started { tracking, .. } => eprintln!("tracking: {tracking}"),
            Event::Replacing { owner, dir } => {
                eprintln!("--overwrite: replacing the model and reports of {owner} in {}", dir.display())
            }
            Event::Training(train::Event::EpochStart { epoch, steps }) => {
                self.progress.start(format!("epoch {epoch}/{}", self.epochs), steps)
            }
            Event::Training(train::Event::Step { step, loss, samples_per_second }) => {
                self.progress.step(step, format!("loss {loss:.4} {samples_per_second:.0} samples/s"))
            }
            Event::Training(train::Event::EpochEnd(m)) => {
                self.progress.finish();
                let line = format!(
                    "epoch {:>3}/{}  train_loss {:.4}  val_loss {}  val_accuracy {}  {:.1}s",
                    m.epoch,
                    self.epochs,
                    m.train_loss,
                    optional(m.val_loss),
                    optional(m.val_accuracy),
                    m.seconds
                );
                say(self.json, &line);
            }
            Event::EarlyStopped { best, stopped, epochs } => {
                self.progress.finish();
                eprintln!(
                    "early stopping: trained {stopped} of {epochs} epochs, kept the weights of epoch {best} (lowest val_loss)"
                );
            }
            Event::Tested { loss, accuracy, report } => {
                self.progress.finish();
                say(self.json, &format!("test_loss {loss:.4}  test_accuracy {accuracy:.4}"));
                say(self.json, &format!("\n{}", report.render_text()));
            }
            Event::Recorded { output_dir } => eprintln!("wrote the model and reports to {}", output_dir.display()),
            Event::Warning(text) => eprintln!("warning: {text}"),
            Event::Notice(text) => eprintln!("{text}"),
        }
    }
}

fn optional(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}
