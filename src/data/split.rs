//! What every source yields: a training and a test set with their input contract, what was
//! skipped on the way, whether a cache served it, and a description of each set for the run's
//! dataset inputs (name, digest, source, shape).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Dataset, InputContract};

/// What to do with an input that cannot be used (a corrupt image, a label past the classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BadInput {
    /// Stop with an error naming the file.
    #[default]
    Fail,
    /// Leave the example out and count it in [`DataSplit::skipped`].
    Skip,
}

crate::choice::choice!(BadInput { Fail => "fail", Skip => "skip" });

/// An example left out under [`BadInput::Skip`], and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

/// How the decoded set relates to the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheUse {
    /// This source is not cached (IDX files read as fast as a cache would).
    Off,
    /// Read from this cache file.
    Hit(PathBuf),
    /// Decoded and written to this cache file.
    Written(PathBuf),
    /// Decoded, but the cache could not be written; the data is still complete.
    NotWritten { path: PathBuf, reason: String },
}

/// A loaded dataset: training and test sets that share one contract.
#[derive(Debug, Clone)]
pub struct DataSplit {
    /// Short name for logs and dataset inputs: `fashion-mnist`, or the directory's name.
    pub name: String,
    /// The directory read (for a cache hit, the directory the cache was built from).
    pub location: PathBuf,
    pub train: Dataset,
    pub test: Dataset,
    pub contract: InputContract,
    pub skipped: Vec<Skipped>,
    pub cache: CacheUse,
}

/// One set as MLflow's dataset inputs record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDescription {
    /// `<name>-train`, `<name>-test`, or `<name>-train[:n]` for a prefix.
    pub name: String,
    /// The first 8 hex digits of a SHA-256 of the pixels and labels.
    pub digest: String,
    /// A JSON object `{"uri": <directory>}`.
    pub source: String,
    /// `[n, channels, height, width]` of the `u8` images.
    pub shape: [usize; 4],
}

/// Which set of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Train,
    Test,
}

impl DataSplit {
    /// The training or test set, or its first `limit` examples, as a dataset input.
    pub fn describe(&self, part: Part, limit: Option<usize>) -> SetDescription {
        let (set, suffix) = match part {
            Part::Train => (&self.train, "train"),
            Part::Test => (&self.test, "test"),
        };
        let n = limit.map_or(set.len(), |l| l.min(set.len()));
        let name = match n < set.len() {
            true => format!("{}-{suffix}[:{n}]", self.name),
            false => format!("{}-{suffix}", self.name),
        };
        let c = &self.contract;
        SetDescription {
            name,
            digest: set.digest(n),
            source: serde_json::json!({"uri": self.location.display().to_string()}).to_string(),
            shape: [n, c.channels, c.height, c.width],
        }
    }
}
