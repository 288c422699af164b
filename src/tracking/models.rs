//! Models on an MLflow 3 server: LoggedModels (created pending, files uploaded under their own
//! artifact URI, marked ready, linked to the run as an output) and the lookups `engine eval`
//! needs to find a model again from a run id or a `models:/` URI.

use std::path::Path;

use serde_json::{Value, json};

use super::util::percent_encode;
use super::{MlflowClient, ModelVersion, TrackingError, paths};

/// A LoggedModel as the server describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedModel {
    pub model_id: String,
    /// `mlflow-artifacts:/<experiment>/models/<model_id>/artifacts`.
    pub artifact_uri: String,
    pub source_run_id: Option<String>,
    /// `LOGGED_MODEL_PENDING` until its files are uploaded, then `LOGGED_MODEL_READY` (or
    /// `LOGGED_MODEL_UPLOAD_FAILED`).
    pub status: String,
}

/// `model_type` of a LoggedModel this engine creates: `engine-mlp` or `engine-cnn`, by the
/// run's `model` param (runs from before the CNN have none; they trained MLPs).
fn model_type(params: &[(String, String)]) -> String {
    let model = params.iter().find(|(key, _)| key == "model").map_or("mlp", |(_, value)| value.as_str());
    format!("engine-{model}")
}

impl LoggedModel {
    /// Whether its files are all on the server.
    pub fn is_ready(&self) -> bool {
        self.status == READY
    }

    /// Fails unless the model is ready, saying how to finish it.
    pub fn require_ready(self) -> Result<LoggedModel, TrackingError> {
        if self.is_ready() {
            return Ok(self);
        }
        Err(TrackingError::InvalidArgument(format!(
            "model {} is {}, not {READY}: its files did not all reach the server; run `engine sync` from the \
             directory that trained it to upload them",
            self.model_id,
            if self.status.is_empty() { "of unknown status" } else { &self.status }
        )))
    }

    fn from_response(endpoint: &str, v: &Value) -> Result<LoggedModel, TrackingError> {
        let info = &v["model"]["info"];
        let field = |key: &str| info[key].as_str().map(String::from);
        match (field("model_id"), field("artifact_uri")) {
            (Some(model_id), Some(artifact_uri)) => {
                let status = field("status").unwrap_or_default();
                Ok(LoggedModel { model_id, artifact_uri, source_run_id: field("source_run_id"), status })
            }
            _ => Err(TrackingError::Protocol {
                endpoint: endpoint.to_string(),
                detail: "the response lacks model.info.model_id or artifact_uri".into(),
            }),
        }
    }
}

/// The status of a LoggedModel whose files are all uploaded.
const READY: &str = "LOGGED_MODEL_READY";

impl MlflowClient {
    /// Creates a pending LoggedModel for `run_id` in `experiment_id`.
    pub fn create_logged_model(
        &self,
        experiment_id: &str,
        run_id: &str,
        name: &str,
        params: &[(String, String)],
    ) -> Result<LoggedModel, TrackingError> {
        let params_json: Vec<Value> = params.iter().take(100).map(|(k, v)| json!({"key": k, "value": v})).collect();
        let tags: Vec<Value> =
            super::util::source_tags().into_iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
        let body = json!({
            "experiment_id": experiment_id, "name": name, "source_run_id": run_id,
            "model_type": model_type(params), "params": params_json, "tags": tags,
        });
        LoggedModel::from_response("logged-models", &self.post_json("logged-models", &body)?)
    }

    /// Uploads a model directory's `files` to a LoggedModel, marks it ready (or failed when an
    /// upload fails) and links it to its run as an output at `step`.
    pub fn upload_logged_model(
        &self,
        model: &LoggedModel,
        run_id: &str,
        dir: &Path,
        files: &[&str],
        step: i64,
    ) -> Result<(), TrackingError> {
        let uploaded = files
            .iter()
            .try_for_each(|f| self.upload_artifact_file(&model.artifact_uri, f, &paths::safe_join(dir, f)?));
        let status = if uploaded.is_ok() { READY } else { "LOGGED_MODEL_UPLOAD_FAILED" };
        // Encoded: a model id is the server's text and must not add path segments.
        let path = format!("logged-models/{}", percent_encode(&model.model_id, false));
        self.patch_json(&path, &json!({"model_id": model.model_id, "status": status}))?;
        uploaded?;
        let link = json!({"run_id": run_id, "models": [{"model_id": model.model_id, "step": step}]});
        self.post_json("runs/outputs", &link)?;
        Ok(())
    }

    pub fn get_logged_model(&self, model_id: &str) -> Result<LoggedModel, TrackingError> {
        let path = format!("logged-models/{}", percent_encode(model_id, false));
        LoggedModel::from_response(&path, &self.get_json(&path, &[])?)
    }

    /// The LoggedModel a run produced: the run's outputs, else a search by `source_run_id`.
    pub fn find_run_model(&self, run_id: &str) -> Result<Option<LoggedModel>, TrackingError> {
        let run = self.get_run(run_id)?;
        if let Some(id) =
            run.outputs["model_outputs"].as_array().and_then(|m| m.last()).and_then(|m| m["model_id"].as_str())
        {
            return self.get_logged_model(id).map(Some);
        }
        let body = json!({
            "experiment_ids": [run.info.experiment_id],
            "filter": format!("source_run_id = '{run_id}'"),
            "max_results": 1,
        });
        let found = self.post_json("logged-models/search", &body)?;
        match found["models"].as_array().and_then(|m| m.first()) {
            Some(m) => LoggedModel::from_response("logged-models/search", &json!({"model": m})).map(Some),
            None => Ok(None),
        }
    }

    /// The artifact URI of a registered model version, refusing a version whose LoggedModel is
    /// not ready.
    pub fn version_artifact_uri(&self, version: &ModelVersion) -> Result<String, TrackingError> {
        self.require_ready_version(version)?;
        let query = [("name", version.name.as_str()), ("version", version.version.as_str())];
        let v = self.get_json("model-versions/get-download-uri", &query)?;
        v["artifact_uri"].as_str().map(String::from).ok_or_else(|| TrackingError::Protocol {
            endpoint: "model-versions/get-download-uri".into(),
            detail: "no artifact_uri in the response".into(),
        })
    }

    /// The LoggedModel of a `models:/<model id>` URI, ready to download; an id the server does
    /// not know is an [`TrackingError::InvalidArgument`] saying what the other forms are.
    pub fn resolve_logged_model(&self, model_id: &str) -> Result<LoggedModel, TrackingError> {
        match self.get_logged_model(model_id) {
            // 404 for a well-formed id that is not there, 400 for text that is no id at all.
            Err(e) if e.is_not_found() || e.http_status() == Some(400) => {
                let looks_like_id = model_id
                    .strip_prefix("m-")
                    .is_some_and(|hex| !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()));
                let hint = if looks_like_id {
                    "it was deleted, or logged to another server".to_string()
                } else {
                    format!(
                        "a registered model needs a version, stage or alias: models:/{model_id}/1, \
                         models:/{model_id}/Production, models:/{model_id}@champion"
                    )
                };
                Err(TrackingError::InvalidArgument(format!(
                    "no logged model `{model_id}` on {}; {hint}",
                    self.tracking_uri()
                )))
            }
            found => found?.require_ready(),
        }
    }
}
