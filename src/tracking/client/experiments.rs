//! Experiments: looked up by name or id, created when missing, restored when deleted.

use serde_json::json;

use super::MlflowClient;
use crate::tracking::error::TrackingError;
use crate::tracking::wire::Experiment;

impl MlflowClient {
    /// The experiment named `name`, or `None` when there is none.
    pub fn get_experiment_by_name(&self, name: &str) -> Result<Option<Experiment>, TrackingError> {
        let path = "experiments/get-by-name";
        match self.get_json(path, &[("experiment_name", name)]) {
            Ok(v) => Ok(Some(Self::decode(path, v["experiment"].clone())?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn get_experiment(&self, experiment_id: &str) -> Result<Experiment, TrackingError> {
        let path = "experiments/get";
        let v = self.get_json(path, &[("experiment_id", experiment_id)])?;
        Self::decode(path, v["experiment"].clone())
    }

    /// The id of the experiment named `name`: created when missing (tolerating a concurrent
    /// create), restored when it was deleted.
    pub fn get_or_create_experiment(&self, name: &str) -> Result<String, TrackingError> {
        if name.trim().is_empty() {
            return Err(TrackingError::Config("experiment name is empty".into()));
        }
        for _ in 0..3 {
            if let Some(exp) = self.get_experiment_by_name(name)? {
                if exp.lifecycle_stage == "deleted" {
                    self.post_json("experiments/restore", &json!({ "experiment_id": exp.experiment_id }))?;
                }
                return Ok(exp.experiment_id);
            }
            // The kind tag makes the MLflow UI open the experiment on its runs, as for model
            // training, not on the GenAI overview.
            let kind = json!({"key": "mlflow.experimentKind", "value": "custom_model_development"});
            match self.post_json("experiments/create", &json!({ "name": name, "tags": [kind] })) {
                Ok(v) => {
                    if let Some(id) = v["experiment_id"].as_str() {
                        return Ok(id.to_string());
                    }
                    return Err(TrackingError::Protocol {
                        endpoint: "/api/2.0/mlflow/experiments/create".into(),
                        detail: format!("no experiment_id in {v}"),
                    });
                }
                Err(e) if e.is_already_exists() => continue, // someone else created it: get again
                Err(e) => return Err(e),
            }
        }
        Err(TrackingError::Protocol {
            endpoint: "/api/2.0/mlflow/experiments/create".into(),
            detail: format!("experiment {name:?} exists but cannot be read back"),
        })
    }
}
