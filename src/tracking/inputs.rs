//! The datasets a run used, logged as MLflow's `mlflow.data` logs them (`runs/log-inputs`), so
//! the runs table's Dataset column and filter show an engine run as they show a Python one.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{MlflowClient, TrackingError};

/// A dataset as MLflow records it; `source`, `schema` and `profile` are JSON texts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    pub name: String,
    /// A short hash of the data: the same name with another digest is other data.
    pub digest: String,
    /// `local`, `http`, ...
    pub source_type: String,
    pub source: String,
    pub schema: String,
    pub profile: String,
}

/// A dataset and what the run used it for: MLflow's `mlflow.data.context` (`training`,
/// `evaluation`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInput {
    pub dataset: Dataset,
    pub context: String,
}

/// The tag MLflow keeps a dataset's use in.
const CONTEXT_TAG: &str = "mlflow.data.context";

impl DatasetInput {
    fn to_json(&self) -> Value {
        let d = &self.dataset;
        json!({
            "tags": [{"key": CONTEXT_TAG, "value": self.context}],
            "dataset": {
                "name": d.name, "digest": d.digest, "source_type": d.source_type,
                "source": d.source, "schema": d.schema, "profile": d.profile,
            },
        })
    }

    /// Whether `server` (one entry of a run's `inputs.dataset_inputs`) is this input.
    fn is(&self, server: &Value) -> bool {
        let context = server["tags"]
            .as_array()
            .and_then(|tags| tags.iter().find(|t| t["key"] == CONTEXT_TAG))
            .and_then(|t| t["value"].as_str());
        server["dataset"]["name"] == self.dataset.name.as_str()
            && server["dataset"]["digest"] == self.dataset.digest.as_str()
            && context == Some(self.context.as_str())
    }
}

/// The inputs the server's run lacks, given its `inputs` as `runs/get` returns them.
pub(crate) fn missing_inputs(local: &[DatasetInput], server_inputs: &Value) -> Vec<DatasetInput> {
    let on_server = server_inputs["dataset_inputs"].as_array().map(Vec::as_slice).unwrap_or_default();
    local.iter().filter(|i| !on_server.iter().any(|s| i.is(s))).cloned().collect()
}

impl MlflowClient {
    /// Records that run `run_id` used these datasets.
    pub fn log_inputs(&self, run_id: &str, inputs: &[DatasetInput]) -> Result<(), TrackingError> {
        if inputs.is_empty() {
            return Ok(());
        }
        let datasets: Vec<Value> = inputs.iter().map(DatasetInput::to_json).collect();
        self.post_json("runs/log-inputs", &json!({"run_id": run_id, "datasets": datasets}))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_on_the_server_are_recognised() {
        let dataset = Dataset {
            name: "train".into(),
            digest: "abcd1234".into(),
            source_type: "local".into(),
            source: "{}".into(),
            schema: "{}".into(),
            profile: "{}".into(),
        };
        let input = DatasetInput { dataset, context: "training".into() };
        let server = json!({"dataset_inputs": [input.to_json()]});
        assert!(missing_inputs(std::slice::from_ref(&input), &server).is_empty());
        let other = DatasetInput { context: "evaluation".into(), ..input.clone() };
        assert_eq!(missing_inputs(&[input, other.clone()], &server), vec![other]);
        assert_eq!(missing_inputs(&[], &Value::Null), vec![]);
    }
}
