//! Checkpoints: everything [`super::fit_from`] needs to go on training where an earlier call
//! stopped, as if it had never stopped: the parameters, the optimizer's state, the order of the
//! training examples, the random streams of shuffling and dropout, and the epochs the whole
//! training is planned for, which a cosine learning rate anneals over. Training 2 epochs of a
//! planned 3, saving, and continuing to 3 gives the bits of training 3 epochs at once, whatever
//! the schedule. The file is a JSON header and the numbers as little-endian `f32`, written
//! atomically.

use std::path::{Path, PathBuf};

use super::{EpochMetrics, TrainConfig};
use crate::optim::OptimizerState;
use crate::rng::Rng;

/// The training state after some epochs.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The run's config; `epochs` is the number trained so far.
    pub config: TrainConfig,
    /// The epochs of the whole training, of which this is a part: the learning-rate schedule
    /// spans them, so a continuation must plan the same.
    pub planned_epochs: usize,
    /// The model's parameters in [`crate::nn::Network::parameters`] order, flattened.
    pub params: Vec<Vec<f32>>,
    pub optimizer: OptimizerState,
    /// The training examples in the order the last epoch shuffled them into.
    pub train_order: Vec<usize>,
    pub shuffle_rng: Rng,
    pub dropout_rng: Rng,
    /// The metrics of the epochs trained so far.
    pub history: Vec<EpochMetrics>,
}

/// Why a checkpoint cannot be read or used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot write checkpoint {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("{path} is not a training checkpoint: {why}")]
    Format { path: String, why: String },
    #[error("the checkpoint was trained with other settings ({field} differs); it cannot continue this run")]
    Mismatch { field: String },
    #[error("the training is planned for {planned} epochs, fewer than the {epochs} this run trains")]
    PlannedTooShort { planned: usize, epochs: usize },
}

/// Where a run's training state comes from and goes, for a training done in parts (the rungs of
/// a successive-halving trial).
#[derive(Debug, Clone)]
pub struct CheckpointPaths {
    /// The state to continue from (`None`: train from scratch).
    pub from: Option<PathBuf>,
    /// Where the state after training is saved.
    pub to: PathBuf,
    /// The epochs of the whole training the parts make up (`None`: this run's epochs): a cosine
    /// learning rate anneals over them, so each part follows the curve of one run that long.
    pub planned_epochs: Option<usize>,
}

const MAGIC: &[u8; 8] = b"ENGCKPT1";

/// The header: everything but the numbers, and how many numbers each buffer holds.
#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    config: TrainConfig,
    planned_epochs: usize,
    param_lens: Vec<usize>,
    optimizer_steps: u64,
    optimizer_lens: Vec<usize>,
    train_order: Vec<usize>,
    shuffle_rng: Rng,
    dropout_rng: Rng,
    history: Vec<EpochMetrics>,
}

impl Checkpoint {
    /// Epochs trained so far.
    pub fn epochs_done(&self) -> usize {
        self.history.len()
    }

    /// Refuses to continue `config`, planned for `planned_epochs` in all, from this checkpoint
    /// when anything but the number of epochs differs (a different model, optimizer, seed, split
    /// or plan would continue another run).
    pub fn check_continues(&self, config: &TrainConfig, planned_epochs: usize) -> Result<(), CheckpointError> {
        if planned_epochs != self.planned_epochs {
            return Err(CheckpointError::Mismatch { field: "planned epochs".into() });
        }
        let as_map = |c: &TrainConfig| match serde_json::to_value(TrainConfig { epochs: 0, ..c.clone() }) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        let (ours, theirs) = (as_map(&self.config), as_map(config));
        let keys = ours.keys().chain(theirs.keys());
        match keys.into_iter().find(|k| ours.get(*k) != theirs.get(*k)) {
            Some(field) => Err(CheckpointError::Mismatch { field: field.clone() }),
            None => Ok(()),
        }
    }

    /// Writes the checkpoint to `path` atomically (a reader sees the old file or the new one).
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let header = Header {
            config: self.config.clone(),
            planned_epochs: self.planned_epochs,
            param_lens: self.params.iter().map(Vec::len).collect(),
            optimizer_steps: self.optimizer.steps,
            optimizer_lens: self.optimizer.buffers.iter().map(Vec::len).collect(),
            train_order: self.train_order.clone(),
            shuffle_rng: self.shuffle_rng.clone(),
            dropout_rng: self.dropout_rng.clone(),
            history: self.history.clone(),
        };
        let write_error = |source| CheckpointError::Write { path: path.display().to_string(), source };
        let header = serde_json::to_vec(&header).map_err(|e| write_error(std::io::Error::other(e)))?;
        let mut bytes = MAGIC.to_vec();
        bytes.extend((header.len() as u64).to_le_bytes());
        bytes.extend(header);
        for buffer in self.params.iter().chain(&self.optimizer.buffers) {
            bytes.extend(buffer.iter().flat_map(|x| x.to_le_bytes()));
        }
        crate::files::write_atomic(path, &bytes).map_err(write_error)
    }

    /// Reads a checkpoint [`Checkpoint::save`] wrote.
    pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let bytes =
            std::fs::read(path).map_err(|source| CheckpointError::Read { path: path.display().to_string(), source })?;
        let format = |why: &str| CheckpointError::Format { path: path.display().to_string(), why: why.to_string() };
        let rest = bytes.strip_prefix(MAGIC).ok_or_else(|| format("it does not start with the checkpoint mark"))?;
        let (len, rest) = rest.split_first_chunk::<8>().ok_or_else(|| format("it ends in its header"))?;
        let len = usize::try_from(u64::from_le_bytes(*len)).map_err(|_| format("its header length is too large"))?;
        let (header, mut data) = (rest.get(..len), rest.get(len..).unwrap_or_default());
        let header = header.ok_or_else(|| format("it ends in its header"))?;
        let header: Header = serde_json::from_slice(header).map_err(|e| format(&format!("its header: {e}")))?;
        let mut take = |n: usize| -> Result<Vec<f32>, CheckpointError> {
            let bytes =
                n.checked_mul(4).filter(|&b| b <= data.len()).ok_or_else(|| format("it ends in its numbers"))?;
            let (these, after) = data.split_at(bytes);
            data = after;
            Ok(these.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        };
        let params = header.param_lens.iter().map(|&n| take(n)).collect::<Result<_, _>>()?;
        let buffers = header.optimizer_lens.iter().map(|&n| take(n)).collect::<Result<_, _>>()?;
        if !data.is_empty() {
            return Err(format("it has numbers after its last buffer"));
        }
        Ok(Checkpoint {
            config: header.config,
            planned_epochs: header.planned_epochs,
            params,
            optimizer: OptimizerState { steps: header.optimizer_steps, buffers },
            train_order: header.train_order,
            shuffle_rng: header.shuffle_rng,
            dropout_rng: header.dropout_rng,
            history: header.history,
        })
    }
}
