//! The training and evaluation loops. They know nothing of terminals or MLflow: they emit
//! `Event`s, and the caller decides what to show and what to log.

use std::time::Instant;

use crate::analysis::{EarlyStopping, StopDecision};
use crate::data::{self, CLASSES, Dataset, IMAGE_PIXELS, InputContract, Normalization};
use crate::nn::{Architecture, Description, ImageShape, Network};
use crate::optim::{Adam, Optimizer, Sgd};
use crate::rng::Rng;
use crate::tensor::{Device, RunningLoss, ScalarRead, Tensor};

mod batches;
mod checkpoint;
mod infer;

use batches::BatchSource;
pub use checkpoint::{Checkpoint, CheckpointError, CheckpointPaths};
pub use infer::{Evaluation, evaluate, infer_batches};

/// Which optimizer updates the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    Adamw,
    Sgd,
}

crate::choice::choice!(OptimizerKind { Adam => "adam", Adamw => "adamw", Sgd => "sgd" });

/// How the learning rate moves during training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    Constant,
    /// Cosine annealing to zero over all steps of the planned training (`CosineAnnealingLR`
    /// stepped per batch): a run's own epochs, or those of the whole training it is a part of.
    Cosine,
}

crate::choice::choice!(LrSchedule { Constant => "constant", Cosine => "cosine" });

/// Everything that defines a training run.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub optimizer: OptimizerKind,
    pub momentum: f64,
    pub weight_decay: f64,
    pub dropout: f64,
    pub lr_schedule: LrSchedule,
    pub normalize: Normalization,
    /// Which network; written by every release since the CNN, an MLP before.
    #[serde(default)]
    pub model: Architecture,
    /// The MLP's hidden layer widths; empty for the CNN, whose widths are fixed ([`Description::CNN_WIDTHS`]).
    pub hidden: Vec<usize>,
    pub seed: u64,
    pub val_split: f64,
    pub train_limit: Option<usize>,
    /// Stop after this many epochs without a new lowest validation loss and keep the weights
    /// of the best epoch (`None`: train every epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop_patience: Option<usize>,
}

/// The MLP's hidden layers when none are given.
pub const DEFAULT_HIDDEN: [usize; 2] = [512, 512];

/// The settings `engine train` uses when no flag changes them: 10 epochs of SGD (momentum 0.9)
/// in batches of 128 at a peak learning rate of 0.05 on a cosine schedule, an MLP of two hidden
/// layers of 512, inputs standardised, 10% of the training set held out for validation.
impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            epochs: 10,
            batch_size: 128,
            lr: 0.05,
            optimizer: OptimizerKind::Sgd,
            momentum: 0.9,
            weight_decay: 0.0,
            dropout: 0.0,
            lr_schedule: LrSchedule::Cosine,
            normalize: Normalization::Meanstd,
            model: Architecture::Mlp,
            hidden: DEFAULT_HIDDEN.to_vec(),
            seed: 0,
            val_split: 0.1,
            train_limit: None,
            early_stop_patience: None,
        }
    }
}

impl TrainConfig {
    /// Checks every hyperparameter, and that the model's training memory can be addressed at
    /// all; the message names the flag and the accepted range. Pure: [`Self::validate_within`]
    /// (Self::validate_within) also weighs the memory against what the system has.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (self.epochs == 0, "--epochs must be at least 1".to_string()),
            (self.batch_size == 0, "--batch-size must be at least 1".to_string()),
            (!(self.lr > 0.0 && self.lr.is_finite()), format!("--lr must be a positive number, got {}", self.lr)),
            (!(0.0..1.0).contains(&self.momentum), format!("--momentum must be in [0, 1), got {}", self.momentum)),
            (
                self.weight_decay.is_nan() || self.weight_decay < 0.0,
                format!("--weight-decay must be >= 0, got {}", self.weight_decay),
            ),
            (!(0.0..1.0).contains(&self.dropout), format!("--dropout must be in [0, 1), got {}", self.dropout)),
            (
                self.model == Architecture::Mlp && (self.hidden.is_empty() || self.hidden.contains(&0)),
                format!("--hidden needs positive sizes like 512,512, got {:?}", self.hidden),
            ),
            (!(0.0..1.0).contains(&self.val_split), format!("--val-split must be in [0, 1), got {}", self.val_split)),
            (self.train_limit == Some(0), "--train-limit must be at least 1".to_string()),
            (self.early_stop_patience == Some(0), "--early-stop-patience must be at least 1".to_string()),
            (
                self.early_stop_patience.is_some() && self.val_split == 0.0,
                "--early-stop-patience needs a validation set: use --val-split > 0".to_string(),
            ),
        ];
        if let Some((_, message)) = checks.into_iter().find(|(bad, _)| *bad) {
            return Err(message);
        }
        self.check_memory(None)
    }

    /// [`validate`](Self::validate), then [`check_memory`](Self::check_memory) against
    /// `available` bytes ([`crate::sysmetrics::available_memory_bytes`] where training runs).
    pub fn validate_within(&self, available: Option<u64>) -> Result<(), String> {
        self.validate()?;
        self.check_memory(available)
    }

    /// Refuses a model or batch whose training memory exceeds `available` bytes (or overflows),
    /// before any allocation could abort the process.
    pub fn check_memory(&self, available: Option<u64>) -> Result<(), String> {
        let gib = |bytes: u64| bytes as f64 / (1u64 << 30) as f64;
        let (model, smaller) = match self.model {
            Architecture::Mlp => (format!("--hidden {:?}", self.hidden), "smaller --hidden sizes or --batch-size"),
            Architecture::Cnn => ("--model cnn".to_string(), "a smaller --batch-size"),
        };
        match (self.training_memory_bytes(), available) {
            (None, _) => Err(format!(
                "{model} with --batch-size {}: the model is too large to address in memory",
                self.batch_size
            )),
            (Some(need), Some(have)) if need > have => Err(format!(
                "{model} with --batch-size {}: training needs about {:.1} GiB but {:.1} GiB of memory is available; use {smaller}",
                self.batch_size,
                gib(need),
                gib(have)
            )),
            _ => Ok(()),
        }
    }

    /// A lower bound of the bytes training holds: each parameter as weight, gradient and two
    /// optimizer slots, and each activation of a batch as value, mask and gradient (f32).
    pub fn training_memory_bytes(&self) -> Option<u64> {
        let (parameters, activations_per_example) = match self.model {
            Architecture::Mlp => {
                let widths: Vec<u64> = std::iter::once(784)
                    .chain(self.hidden.iter().map(|&h| h as u64))
                    .chain(std::iter::once(10))
                    .collect();
                let parameters = widths
                    .windows(2)
                    .try_fold(0u64, |sum, w| w[0].checked_add(1)?.checked_mul(w[1])?.checked_add(sum))?;
                (parameters, widths.iter().try_fold(0u64, |sum, &w| sum.checked_add(w))?)
            }
            Architecture::Cnn => {
                let [c1, c2, hidden] = Description::CNN_WIDTHS.map(|w| w as u64);
                let (pixels, classes) = (IMAGE_PIXELS as u64, CLASSES as u64);
                let parameters = 10 * c1 + (9 * c1 + 1) * c2 + (c2 * pixels / 16 + 1) * hidden + (hidden + 1) * classes;
                // The input; each convolution's output, its relu and its pooling (a quarter);
                // the dense layers.
                let (side1, side2) = (pixels, pixels / 4);
                let activations = pixels + c1 * side1 * 9 / 4 + c2 * side2 * 9 / 4 + hidden + classes;
                (parameters, activations)
            }
        };
        let activations = activations_per_example.checked_mul(self.batch_size as u64)?;
        parameters.checked_mul(4 * 4)?.checked_add(activations.checked_mul(4 * 3)?)
    }

    /// The hyperparameters as `(name, value)` pairs, for logging. `hidden` only for an MLP: a
    /// CNN's run would show layers it does not have.
    pub fn params(&self) -> Vec<(String, String)> {
        let hidden: Vec<String> = self.hidden.iter().map(usize::to_string).collect();
        let hidden = (self.model == Architecture::Mlp).then(|| ("hidden", hidden.join(",")));
        [
            ("epochs", self.epochs.to_string()),
            ("batch_size", self.batch_size.to_string()),
            ("learning_rate", self.lr.to_string()),
            ("optimizer", self.optimizer.to_string()),
            ("momentum", self.momentum.to_string()),
            ("train_limit", self.train_limit.map_or_else(|| "none".into(), |n| n.to_string())),
            ("weight_decay", self.weight_decay.to_string()),
            ("dropout", self.dropout.to_string()),
            ("lr_schedule", self.lr_schedule.to_string()),
            ("normalize", self.normalize.to_string()),
            ("model", self.model.to_string()),
            ("seed", self.seed.to_string()),
            ("val_split", self.val_split.to_string()),
        ]
        .into_iter()
        .chain(hidden)
        .chain(self.early_stop_patience.map(|k| ("early_stop_patience", k.to_string())))
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// Why training stopped early.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("the loss became {loss} at epoch {epoch}, step {step}: training diverged; try a smaller --lr")]
    NonFiniteLoss { epoch: usize, step: usize, loss: f32 },
    #[error("training was interrupted")]
    Interrupted,
    #[error("the training set is empty after --train-limit and --val-split")]
    EmptyTrainingSet,
    #[error(transparent)]
    Engine(#[from] crate::Error),
    #[error("{0}")]
    Observer(String),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// Results of one epoch.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub train_loss: f64,
    /// `None` without a validation split.
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub seconds: f64,
    pub samples_per_second: f64,
    pub learning_rate: f64,
}

/// What the loop reports while it runs.
pub enum Event<'a> {
    EpochStart { epoch: usize, steps: usize },
    Step { step: usize, loss: f32, samples_per_second: f64 },
    EpochEnd(&'a EpochMetrics),
}

/// A trained model and how it got there.
pub struct Trained {
    pub model: Network,
    pub history: Vec<EpochMetrics>,
    pub train_seconds: f64,
    pub train_examples: usize,
    pub val_examples: usize,
    /// With early stopping: the epoch whose weights the model has (lowest validation loss).
    pub best_epoch: Option<usize>,
    /// With early stopping: the last epoch trained (before `epochs` when it stopped early).
    pub stopped_epoch: Option<usize>,
}

/// The shape of the images `contract` describes, as networks take them.
pub fn image_shape(contract: &InputContract) -> ImageShape {
    ImageShape { channels: contract.channels, height: contract.height, width: contract.width }
}

/// The untrained network `config` describes for inputs and classes of `contract`, initialised
/// from `rng`.
pub fn build_network(
    config: &TrainConfig,
    contract: &InputContract,
    rng: &mut Rng,
    device: &Device,
) -> crate::Result<Network> {
    let dropout = config.dropout as f32;
    let input = image_shape(contract);
    let classes = contract.classes();
    let description = match config.model {
        Architecture::Mlp => Description::mlp(input, &config.hidden, classes)?,
        Architecture::Cnn => Description::cnn(input, Description::CNN_WIDTHS, classes)?,
    };
    Network::new(description, dropout, rng, device)
}

/// Trains the network `config` describes on `train` (after `--train-limit` and the validation
/// split), whose examples `contract` describes, calling `observe` on every event; an error from
/// `observe` (e.g. an interrupt) stops training.
pub fn fit(
    config: &TrainConfig,
    train: &Dataset,
    contract: &InputContract,
    device: &Device,
    observe: &mut dyn FnMut(Event) -> Result<(), TrainError>,
) -> Result<Trained, TrainError> {
    let mut session = Session::start(config, train, contract, device, None)?;
    let run = session.run_epochs(Vec::new(), observe)?;
    session.finish(run)
}

/// [`fit`] that goes on from `start` (trained with the same config but fewer epochs) to
/// `config.epochs`, and also returns the state to go on from later. The training is one part of
/// `planned_epochs` in all (`None`: `config.epochs`), which the learning-rate schedule spans, so
/// the parts together train as one run of `planned_epochs` would; `start` must have planned the
/// same. `observe` sees the new epochs only; the returned history holds every epoch. With early
/// stopping, the checkpoint holds the last epoch's state and the model the best epoch's weights.
pub fn fit_from(
    config: &TrainConfig,
    train: &Dataset,
    contract: &InputContract,
    device: &Device,
    start: Option<Checkpoint>,
    planned_epochs: Option<usize>,
    observe: &mut dyn FnMut(Event) -> Result<(), TrainError>,
) -> Result<(Trained, Checkpoint), TrainError> {
    let mut session = Session::start(config, train, contract, device, planned_epochs)?;
    let history = match start {
        Some(checkpoint) => session.restore_checkpoint(checkpoint)?,
        None => Vec::new(),
    };
    let run = session.run_epochs(history, observe)?;
    let checkpoint = session.checkpoint(&run.history)?;
    Ok((session.finish(run)?, checkpoint))
}

/// [`fit_from`] the checkpoint at `paths.from` (from scratch without one), saving the state
/// after training to `paths.to`.
pub fn fit_checkpointed(
    config: &TrainConfig,
    train: &Dataset,
    contract: &InputContract,
    device: &Device,
    paths: &CheckpointPaths,
    observe: &mut dyn FnMut(Event) -> Result<(), TrainError>,
) -> Result<Trained, TrainError> {
    let start = paths.from.as_deref().map(Checkpoint::load).transpose()?;
    let (trained, state) = fit_from(config, train, contract, device, start, paths.planned_epochs, observe)?;
    state.save(&paths.to)?;
    Ok(trained)
}

/// The epochs a session trained, and what early stopping decided.
struct EpochsRun {
    history: Vec<EpochMetrics>,
    stopper: Option<EarlyStopping<crate::Result<Vec<Tensor>>>>,
    seconds: f64,
}

/// What [`fit`] carries from epoch to epoch: the split, the model and its optimizer, the random
/// streams of shuffling and dropout, and the batches' source.
struct Session<'a> {
    config: &'a TrainConfig,
    train: &'a Dataset,
    contract: &'a InputContract,
    device: &'a Device,
    train_idx: Vec<usize>,
    val_idx: Vec<usize>,
    model: Network,
    optimizer: Box<dyn Optimizer>,
    shuffle_rng: Rng,
    dropout_rng: Rng,
    batches: BatchSource<'a>,
    steps_per_epoch: usize,
    /// The epochs of the whole training, which the learning-rate schedule spans.
    planned_epochs: usize,
    /// Steps between two reads of the loss.
    read_every: usize,
}

impl<'a> Session<'a> {
    /// Splits the examples, then builds the network and its optimizer, all from `config.seed`.
    fn start(
        config: &'a TrainConfig,
        train: &'a Dataset,
        contract: &'a InputContract,
        device: &'a Device,
        planned_epochs: Option<usize>,
    ) -> Result<Session<'a>, TrainError> {
        let planned_epochs = planned_epochs.unwrap_or(config.epochs);
        if planned_epochs < config.epochs {
            return Err(CheckpointError::PlannedTooShort { planned: planned_epochs, epochs: config.epochs }.into());
        }
        let mut rng = Rng::new(config.seed);
        let n = config.train_limit.map_or(train.len(), |l| l.min(train.len()));
        let (train_idx, val_idx) = data::split_indices(n, config.val_split, rng.next_u64());
        if train_idx.is_empty() {
            return Err(TrainError::EmptyTrainingSet);
        }
        let model = build_network(config, contract, &mut rng.fork(), device)?;
        let optimizer = make_optimizer(config, &model);
        let (shuffle_rng, dropout_rng) = (rng.fork(), rng.fork());
        let steps_per_epoch = train_idx.len().div_ceil(config.batch_size);
        let affine = contract.affine(config.normalize);
        let batches = BatchSource::new(&train.pixels, &train.labels, contract.pixels(), &affine, device)?;
        // Reading the loss waits for the device: a GPU keeps running ahead between reads.
        let read_every = if *device == Device::Cpu { 1 } else { GPU_LOSS_READ_INTERVAL };
        Ok(Session {
            config,
            train,
            contract,
            device,
            train_idx,
            val_idx,
            model,
            optimizer,
            shuffle_rng,
            dropout_rng,
            batches,
            steps_per_epoch,
            planned_epochs,
            read_every,
        })
    }

    /// The epochs after those of `history` up to `config.epochs` (or early stopping's end).
    fn run_epochs(
        &mut self,
        mut history: Vec<EpochMetrics>,
        observe: &mut dyn FnMut(Event) -> Result<(), TrainError>,
    ) -> Result<EpochsRun, TrainError> {
        let mut stopper = self.config.early_stop_patience.map(EarlyStopping::<crate::Result<Vec<Tensor>>>::new);
        let started = Instant::now();
        for epoch in history.len() + 1..=self.config.epochs {
            let metrics = self.epoch(epoch, observe)?;
            let decision = match (stopper.as_mut(), metrics.val_loss) {
                (Some(stopper), Some(loss)) => stopper.observe(epoch, loss, || snapshot(&self.model)),
                _ => StopDecision::Wait,
            };
            observe(Event::EpochEnd(&metrics))?;
            history.push(metrics);
            if decision == StopDecision::Stop {
                break;
            }
        }
        Ok(EpochsRun { history, stopper, seconds: started.elapsed().as_secs_f64() })
    }

    /// The trained model, with early stopping's best weights put back.
    fn finish(self, run: EpochsRun) -> Result<Trained, TrainError> {
        let stopped_epoch = run.stopper.as_ref().map(|_| run.history.len());
        let best_epoch = run.stopper.as_ref().and_then(|s| s.best_epoch());
        if let Some(weights) = run.stopper.and_then(|s| s.into_best_state()) {
            restore(&self.model, weights?);
        }
        Ok(Trained {
            model: self.model,
            history: run.history,
            train_seconds: run.seconds,
            train_examples: self.train_idx.len(),
            val_examples: self.val_idx.len(),
            best_epoch,
            stopped_epoch,
        })
    }

    /// The state after the epochs of `history`.
    fn checkpoint(&self, history: &[EpochMetrics]) -> Result<Checkpoint, TrainError> {
        Ok(Checkpoint {
            config: TrainConfig { epochs: history.len(), ..self.config.clone() },
            planned_epochs: self.planned_epochs,
            params: self.model.parameters().iter().map(Tensor::to_vec).collect::<crate::Result<_>>()?,
            optimizer: self.optimizer.state()?,
            train_order: self.train_idx.clone(),
            shuffle_rng: self.shuffle_rng.clone(),
            dropout_rng: self.dropout_rng.clone(),
            history: history.to_vec(),
        })
    }

    /// Puts a checkpoint's state in place of the fresh one; its history.
    fn restore_checkpoint(&mut self, checkpoint: Checkpoint) -> Result<Vec<EpochMetrics>, TrainError> {
        checkpoint.check_continues(self.config, self.planned_epochs)?;
        let mut order = checkpoint.train_order.clone();
        order.sort_unstable();
        let mut ours = self.train_idx.clone();
        ours.sort_unstable();
        if order != ours {
            return Err(CheckpointError::Mismatch { field: "training examples".into() }.into());
        }
        let params = self.model.parameters();
        if params.len() != checkpoint.params.len() {
            return Err(CheckpointError::Mismatch { field: "parameters".into() }.into());
        }
        let weights = params
            .iter()
            .zip(checkpoint.params)
            .map(|(p, data)| Tensor::from_vec(data, p.shape(), self.device))
            .collect::<crate::Result<Vec<_>>>()?;
        restore(&self.model, weights);
        self.optimizer.load_state(checkpoint.optimizer)?;
        self.train_idx = checkpoint.train_order;
        (self.shuffle_rng, self.dropout_rng) = (checkpoint.shuffle_rng, checkpoint.dropout_rng);
        Ok(checkpoint.history)
    }

    /// One epoch: its steps, then the validation set; its metrics.
    fn epoch(
        &mut self,
        epoch: usize,
        observe: &mut dyn FnMut(Event) -> Result<(), TrainError>,
    ) -> Result<EpochMetrics, TrainError> {
        observe(Event::EpochStart { epoch, steps: self.steps_per_epoch })?;
        let epoch_start = Instant::now();
        let loss_sum = self.train_steps(epoch, epoch_start, observe)?;
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let val = (!self.val_idx.is_empty())
            .then(|| {
                let inputs = (self.contract, self.config.normalize);
                evaluate(&self.model, self.train, &self.val_idx, inputs, 1000, self.device)
            })
            .transpose()?;
        Ok(EpochMetrics {
            epoch,
            train_loss: loss_sum / self.train_idx.len() as f64,
            val_loss: val.as_ref().map(|v| v.loss),
            val_accuracy: val.as_ref().map(|v| v.accuracy),
            seconds: epoch_start.elapsed().as_secs_f64(),
            samples_per_second: self.train_idx.len() as f64 / train_seconds,
            learning_rate: self.optimizer.learning_rate() as f64,
        })
    }

    /// The optimizer steps of epoch `epoch` over a new shuffle of the training examples, with a
    /// progress event at every read of the loss; the epoch's summed loss (weighted by batch size).
    fn train_steps(
        &mut self,
        epoch: usize,
        epoch_start: Instant,
        observe: &mut dyn FnMut(Event) -> Result<(), TrainError>,
    ) -> Result<f64, TrainError> {
        let config = self.config;
        let total_steps = self.steps_per_epoch * self.planned_epochs;
        self.shuffle_rng.shuffle(&mut self.train_idx);
        self.batches.set_order(&self.train_idx)?;
        let mut loss_sum = 0.0f64;
        let mut window = LossWindow::new(self.device)?;
        // A GPU's window is read while the next one runs: checked one window late.
        let mut in_flight: Option<WindowRead> = None;
        for step in 0..self.steps_per_epoch {
            let (first, examples) = (step * config.batch_size, self.train_idx.len());
            let len = config.batch_size.min(examples - first);
            let global_step = (epoch - 1) * self.steps_per_epoch + step;
            self.optimizer.set_learning_rate(learning_rate(config, global_step, total_steps));
            let loss = self.batch_loss(first, len, window.running(len))?;
            let grads = loss.backward()?;
            crate::no_grad(|| self.optimizer.step(&grads))?;
            let last = step + 1 == self.steps_per_epoch;
            if (step + 1) % self.read_every == 0 || last {
                let seen = (first + len) as f64;
                let read = window.start_read(step + 1, seen / epoch_start.elapsed().as_secs_f64())?;
                if let Some(previous) = in_flight.replace(read) {
                    loss_sum += previous.finish(epoch, observe)?;
                }
                if *self.device == Device::Cpu || last {
                    loss_sum += in_flight.take().map_or(Ok(0.0), |read| read.finish(epoch, observe))?;
                }
            }
        }
        Ok(loss_sum)
    }

    /// The training loss of the batch at entries `first..first + len` of the epoch's order, put
    /// into `running`; on a GPU the batch is gathered inside the first layer's product.
    fn batch_loss(&mut self, first: usize, len: usize, running: RunningLoss) -> crate::Result<Tensor> {
        let layer_one = match self.model.first_linear() {
            Some((weights, relu)) => self.batches.first_layer(first, len, weights, relu)?,
            None => None,
        };
        let rng = &mut self.dropout_rng;
        match layer_one {
            Some((h, y)) => self.model.training_loss_after(1, &h, &y, rng, Some(running)),
            None => {
                let (x, y) = self.batches.batch(first, len)?;
                self.model.training_loss(&x, &y, rng, Some(running))
            }
        }
    }
}

/// Copies of the model's parameters (for early stopping's best weights).
fn snapshot(model: &Network) -> crate::Result<Vec<Tensor>> {
    model.parameters().iter().map(Tensor::detach).collect()
}

/// Puts a [`snapshot`] back into the model's parameters.
fn restore(model: &Network, weights: Vec<Tensor>) {
    for (param, saved) in model.parameters().iter().zip(&weights) {
        std::mem::swap(&mut *param.storage_mut(), &mut *saved.storage_mut());
    }
}

/// Steps between two reads of the loss on a GPU (and so between progress updates and NaN checks).
const GPU_LOSS_READ_INTERVAL: usize = 32;

/// The batch losses since the last read, summed where they were computed (weighted by batch
/// size) by the ops that compute them, so reading them costs one transfer and no op.
struct LossWindow {
    /// One element, kept from window to window: a window's first loss replaces the last sum.
    sum: Tensor,
    examples: usize,
}

impl LossWindow {
    fn new(device: &Device) -> crate::Result<LossWindow> {
        // An upload, not a fill: no dispatch of its own.
        Ok(LossWindow { sum: Tensor::from_vec(vec![0.0], &[], device)?, examples: 0 })
    }

    /// Where the loss of a step of `examples` examples goes.
    fn running(&mut self, examples: usize) -> RunningLoss<'_> {
        let restart = self.examples == 0;
        self.examples += examples;
        RunningLoss { sum: &self.sum, scale: examples as f32, restart }
    }

    /// Starts reading the summed loss of the window that ends at `step`; the window starts
    /// again empty.
    fn start_read(&mut self, step: usize, samples_per_second: f64) -> crate::Result<WindowRead> {
        let sum = if self.examples == 0 { ScalarRead::Ready(0.0) } else { self.sum.start_scalar_read()? };
        Ok(WindowRead { sum, examples: std::mem::take(&mut self.examples), step, samples_per_second })
    }
}

/// A window's summed loss on its way to the host, with what its progress event reports.
struct WindowRead {
    sum: ScalarRead,
    examples: usize,
    step: usize,
    samples_per_second: f64,
}

impl WindowRead {
    /// The window's summed loss, after checking that it is finite and reporting the progress.
    fn finish(self, epoch: usize, observe: &mut dyn FnMut(Event) -> Result<(), TrainError>) -> Result<f64, TrainError> {
        let sum = self.sum.finish()? as f64;
        if !sum.is_finite() {
            return Err(TrainError::NonFiniteLoss { epoch, step: self.step, loss: sum as f32 });
        }
        let loss = (sum / self.examples.max(1) as f64) as f32;
        observe(Event::Step { step: self.step, loss, samples_per_second: self.samples_per_second })?;
        Ok(sum)
    }
}

fn make_optimizer(config: &TrainConfig, model: &Network) -> Box<dyn Optimizer> {
    let params = model.parameters();
    let (lr, momentum, weight_decay) = (config.lr as f32, config.momentum as f32, config.weight_decay as f32);
    match config.optimizer {
        OptimizerKind::Sgd => Box::new(Sgd::new(params, lr, momentum, weight_decay)),
        OptimizerKind::Adam => Box::new(Adam::new(params, lr, weight_decay)),
        OptimizerKind::Adamw => Box::new(Adam::adamw(params, lr, weight_decay)),
    }
}

fn learning_rate(config: &TrainConfig, step: usize, total_steps: usize) -> f32 {
    match config.lr_schedule {
        LrSchedule::Constant => config.lr as f32,
        LrSchedule::Cosine => {
            let progress = step as f64 / total_steps.max(1) as f64;
            (config.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())) as f32
        }
    }
}
