//! A run's data: loading the selected source once per process (with a line saying where it came
//! from), and its training and test sets as MLflow datasets, the run's inputs, named and
//! digested as `mlflow.data` names a NumPy dataset, with the split's source and shape.

use crate::data::{self, CacheUse, DataError, DataSource, DataSplit, Part, SetDescription};
use crate::tracking::{self, DatasetInput};
use serde_json::json;

/// Loads `source`; returns the split and where it came from in words (recorded as the run's
/// `data_source` param): FashionMNIST's directory and how it was found, or the directory of an
/// IDX set or image folder with the cache's part and the inputs skipped.
pub fn load_data(source: &DataSource) -> Result<(DataSplit, String), DataError> {
    if let DataSource::FashionMnist { dir } = source {
        let dataset = data::load(dir.as_deref())?;
        let origin = dataset.source.to_string();
        return Ok((DataSplit::from(dataset), origin));
    }
    let split = source.load()?;
    let cache = match &split.cache {
        CacheUse::Off => String::new(),
        CacheUse::Hit(path) => format!(", decoded set read from {}", path.display()),
        CacheUse::Written(path) => format!(", decoded and cached in {}", path.display()),
        CacheUse::NotWritten { path, reason } => format!(", decoded; not cached in {}: {reason}", path.display()),
    };
    let skipped = match split.skipped.len() {
        0 => String::new(),
        n => format!(", {n} bad input(s) skipped"),
    };
    let origin = format!("{source} ({} classes{cache}{skipped})", split.contract.classes());
    Ok((split, origin))
}

/// The training and test sets of a loaded split, described once per process.
pub struct Datasets {
    /// The whole training set (`<name>-train`).
    pub train: tracking::Dataset,
    /// The test set (`<name>-test`), which every evaluation names.
    pub test: tracking::Dataset,
}

impl Datasets {
    /// Describes both sets (digesting every image once).
    pub fn describe(split: &DataSplit) -> Datasets {
        Datasets {
            train: mlflow_dataset(&split.describe(Part::Train, None)),
            test: mlflow_dataset(&split.describe(Part::Test, None)),
        }
    }

    /// A training run's inputs: the training set (its first `limit` images with
    /// `--train-limit`), and the test set it is evaluated on.
    pub fn for_training(&self, split: &DataSplit, limit: Option<usize>) -> Vec<DatasetInput> {
        let train = match limit.filter(|&n| n < split.train.len()) {
            Some(n) => mlflow_dataset(&split.describe(Part::Train, Some(n))),
            None => self.train.clone(),
        };
        vec![
            DatasetInput { dataset: train, context: "training".into() },
            DatasetInput { dataset: self.test.clone(), context: "evaluation".into() },
        ]
    }
}

/// The test set, as an evaluation's input.
pub fn evaluation_input(split: &DataSplit) -> DatasetInput {
    DatasetInput { dataset: mlflow_dataset(&split.describe(Part::Test, None)), context: "evaluation".into() }
}

/// A set as MLflow's tensor specs: images `[n, height, width]` (gray) or `[n, channels, height,
/// width]` uint8, labels `[n]` uint8.
fn mlflow_dataset(set: &SetDescription) -> tracking::Dataset {
    let [n, channels, height, width] = set.shape;
    let image: Vec<usize> = if channels == 1 { vec![height, width] } else { vec![channels, height, width] };
    let bytes = n * channels * height * width;
    let spec = |shape: serde_json::Value| {
        json!([{"type": "tensor", "tensor-spec": {"dtype": "uint8", "shape": shape}}]).to_string()
    };
    let mut features = vec![-1i64];
    features.extend(image.iter().map(|&d| d as i64));
    let schema = json!({"mlflow_tensorspec": {"features": spec(json!(features)), "targets": spec(json!([-1]))}});
    let mut features_shape = vec![n];
    features_shape.extend(&image);
    let profile = json!({
        "features_shape": features_shape, "features_size": bytes, "features_nbytes": bytes,
        "targets_shape": [n], "targets_size": n, "targets_nbytes": n,
    });
    tracking::Dataset {
        name: set.name.clone(),
        digest: set.digest.clone(),
        source_type: "local".into(),
        source: set.source.clone(),
        schema: schema.to_string(),
        profile: profile.to_string(),
    }
}
