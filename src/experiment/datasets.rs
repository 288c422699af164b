//! FashionMNIST as MLflow datasets: what a tracked run and an evaluation log as the run's
//! inputs, named and digested as `mlflow.data` names a NumPy dataset.

use crate::data::Dataset;
use crate::data::fashion_mnist::FashionMnist;
use crate::tracking::{self, DatasetInput};
use serde_json::json;

/// The training and test sets of a loaded FashionMNIST, described once per process.
pub struct Datasets {
    /// The whole training set (`fashion-mnist-train`).
    pub train: tracking::Dataset,
    /// The test set (`fashion-mnist-test`), which every evaluation names.
    pub test: tracking::Dataset,
}

impl Datasets {
    /// Describes both sets (digesting every image once).
    pub fn describe(data: &FashionMnist) -> Datasets {
        let source = source(data);
        Datasets {
            train: describe("fashion-mnist-train", &data.train, data.train.len(), &source),
            test: describe("fashion-mnist-test", &data.test, data.test.len(), &source),
        }
    }

    /// A training run's inputs: the training set (its first `limit` images with
    /// `--train-limit`), and the test set it is evaluated on.
    pub fn for_training(&self, data: &FashionMnist, limit: Option<usize>) -> Vec<DatasetInput> {
        let train = match limit.filter(|&n| n < data.train.len()) {
            Some(n) => describe(&format!("fashion-mnist-train[:{n}]"), &data.train, n, &source(data)),
            None => self.train.clone(),
        };
        vec![
            DatasetInput { dataset: train, context: "training".into() },
            DatasetInput { dataset: self.test.clone(), context: "evaluation".into() },
        ]
    }
}

/// The test set, as an evaluation's input.
pub fn evaluation_input(data: &FashionMnist) -> DatasetInput {
    DatasetInput {
        dataset: describe("fashion-mnist-test", &data.test, data.test.len(), &source(data)),
        context: "evaluation".into(),
    }
}

fn source(data: &FashionMnist) -> String {
    json!({"uri": data.source.dir().display().to_string()}).to_string()
}

/// The first `n` examples of a set: images `[n, 28, 28]` uint8 and labels `[n]` uint8, as
/// MLflow's tensor specs; the digest is the first 8 hex digits of a SHA-256 of the bytes.
fn describe(name: &str, set: &Dataset, n: usize, source: &str) -> tracking::Dataset {
    let pixels = &set.pixels[..n * 784];
    let spec = |shape: serde_json::Value| {
        json!([{"type": "tensor", "tensor-spec": {"dtype": "uint8", "shape": shape}}]).to_string()
    };
    let schema = json!({"mlflow_tensorspec": {"features": spec(json!([-1, 28, 28])), "targets": spec(json!([-1]))}});
    let profile = json!({
        "features_shape": [n, 28, 28], "features_size": pixels.len(), "features_nbytes": pixels.len(),
        "targets_shape": [n], "targets_size": n, "targets_nbytes": n,
    });
    tracking::Dataset {
        name: name.to_string(),
        digest: set.digest(n),
        source_type: "local".into(),
        source: source.to_string(),
        schema: schema.to_string(),
        profile: profile.to_string(),
    }
}
