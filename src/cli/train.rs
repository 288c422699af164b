//! `engine train`: load the data, train, evaluate on the test set, write the model and reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use engine::Device;
use engine::data::{self, Normalization};
use engine::model;
use engine::report::{self, EpochPoint, EvaluationInputs};
use engine::train::{self, Event, LrSchedule, OptimizerKind, TrainConfig, TrainError};

use super::UsageError;
use super::progress::Progress;

#[derive(Args)]
pub struct TrainArgs {
    /// Where to train: cpu, gpu, or auto (a GPU if one is available, else the CPU).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Passes over the training set.
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    /// Examples per optimizer step.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Learning rate (the peak when --lr-schedule is cosine).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.05)]
    pub lr: f64,
    #[arg(long, value_enum, default_value_t = OptimizerKind::Sgd)]
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
    #[arg(long, value_enum, default_value_t = LrSchedule::Cosine)]
    pub lr_schedule: LrSchedule,
    /// Input scaling: unit (pixel/255) or meanstd (standardised with the training set's statistics).
    #[arg(long, value_enum, default_value_t = Normalization::Meanstd)]
    pub normalize: Normalization,
    /// Hidden layer sizes, comma-separated.
    #[arg(long, default_value = "512,512", value_parser = parse_hidden)]
    pub hidden: Hidden,
    /// Seed for initialisation, the validation split, shuffling and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fraction of the training set held out for validation, in [0, 1).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.1)]
    pub val_split: f64,
    /// Directory holding the FashionMNIST files (else the cache, Debian's package, or a download).
    #[arg(long, env = "ENGINE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where this run's model and reports go [default: runs/<run id>].
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Use only the first N training images (smoke tests, CI).
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Print one JSON object with the results as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    Cpu,
    Gpu,
    Auto,
}

/// Hidden layer sizes (a newtype so clap parses the whole list at once).
#[derive(Clone, Debug)]
pub struct Hidden(pub Vec<usize>);

fn parse_hidden(s: &str) -> Result<Hidden, String> {
    let sizes: Vec<usize> = s
        .split(',')
        .map(|part| match part.trim().parse::<usize>() {
            Ok(0) | Err(_) => Err(format!("'{part}' is not a positive layer size (expected e.g. 512,512)")),
            Ok(n) => Ok(n),
        })
        .collect::<Result<_, _>>()?;
    Ok(Hidden(sizes))
}

/// Picks the device; `gpu` without a GPU backend is an error, never a silent fallback.
pub fn open_device(choice: DeviceChoice) -> anyhow::Result<(Device, String)> {
    match choice {
        DeviceChoice::Cpu => Ok((Device::Cpu, cpu_description())),
        DeviceChoice::Gpu => anyhow::bail!(
            "--device gpu: no GPU backend is available in this build; use --device cpu (or --device auto)"
        ),
        DeviceChoice::Auto => {
            eprintln!("device: no GPU available, using the CPU");
            Ok((Device::Cpu, cpu_description()))
        }
    }
}

fn cpu_description() -> String {
    format!("cpu ({} threads)", rayon::current_num_threads())
}

impl TrainArgs {
    fn config(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            optimizer: self.optimizer,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            dropout: self.dropout,
            lr_schedule: self.lr_schedule,
            normalize: self.normalize,
            hidden: self.hidden.0.clone(),
            seed: self.seed,
            val_split: self.val_split,
            train_limit: self.train_limit,
        }
    }
}

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let config = args.config();
    config.validate().map_err(UsageError)?;
    let (device, device_name) = open_device(args.device)?;
    let dataset = data::load(args.data_dir.as_deref())?;
    eprintln!("data: {}", dataset.source);
    let run_id = new_run_id();
    let output_dir = args.output_dir.clone().unwrap_or_else(|| Path::new("runs").join(&run_id));

    let mut progress = Progress::new();
    let mut observe = |event: Event| -> Result<(), TrainError> {
        match event {
            Event::EpochStart { epoch, steps } => progress.start(format!("epoch {epoch}/{}", config.epochs), steps),
            Event::Step { step, loss, samples_per_second } => {
                progress.step(step, format!("loss {loss:.4} {samples_per_second:.0} samples/s"))
            }
            Event::EpochEnd(m) => {
                progress.finish();
                println!(
                    "epoch {:>3}/{}  train_loss {:.4}  val_loss {}  val_accuracy {}  {:.1}s",
                    m.epoch,
                    config.epochs,
                    m.train_loss,
                    optional(m.val_loss),
                    optional(m.val_accuracy),
                    m.seconds
                );
            }
        }
        Ok(())
    };
    let trained = train::fit(&config, &dataset.train, &device, &mut observe)?;
    progress.finish();

    let test_indices: Vec<usize> = (0..dataset.test.len()).collect();
    let test = train::evaluate(&trained.model, &dataset.test, &test_indices, config.normalize, 1000, &device)?;
    println!("test_loss {:.4}  test_accuracy {:.4}", test.loss, test.accuracy);

    std::fs::create_dir_all(&output_dir).with_context(|| format!("cannot create {}", output_dir.display()))?;
    let model_dir = output_dir.join("model");
    let hyperparameters = serde_json::to_value(&config)?;
    model::save_model_dir(&model_dir, &trained.model, config.normalize, hyperparameters, Some(&run_id), None)?;
    write_reports(&output_dir, &dataset.test, &test, &trained.history)?;

    let summary = serde_json::json!({
        "run_id": run_id,
        "output_dir": output_dir,
        "device": device_name,
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "train_seconds": trained.train_seconds,
        "train_examples": trained.train_examples,
        "val_examples": trained.val_examples,
        "parameters": trained.model.parameter_count(),
        "config": config,
        "epochs": trained.history,
    });
    model::write_atomically(&output_dir.join("metrics.json"), serde_json::to_string_pretty(&summary)?.as_bytes())?;
    eprintln!("wrote the model and reports to {}", output_dir.display());
    if args.json {
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

fn write_reports(
    dir: &Path,
    test_set: &data::Dataset,
    test: &train::Evaluation,
    history: &[train::EpochMetrics],
) -> anyhow::Result<()> {
    let inputs = EvaluationInputs {
        y_true: &test.labels,
        y_pred: &test.predictions,
        prob_of_pred: &test.prob_of_pred,
        images: &test_set.pixels,
    };
    report::write_evaluation_reports(dir, &inputs)?;
    let points: Vec<EpochPoint> = history
        .iter()
        .map(|m| EpochPoint {
            epoch: m.epoch,
            train_loss: m.train_loss,
            val_loss: m.val_loss.unwrap_or(f64::NAN),
            val_accuracy: m.val_accuracy.unwrap_or(f64::NAN),
        })
        .collect();
    report::training_curves_png(&points, &dir.join("training_curves.png"))?;
    let text = report::ClassificationReport::new(&test.labels, &test.predictions, &report::CLASS_NAMES)?.render_text();
    println!("\n{text}");
    Ok(())
}

fn optional(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

/// 32 lowercase hex characters, the form of an MLflow run id.
fn new_run_id() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut rng = engine::rng::Rng::new(nanos as u64 ^ (std::process::id() as u64) << 32);
    format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}
