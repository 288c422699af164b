//! Experiment tracking: MLflow over REST, a local store as the default, nothing lost.
//!
//! * [`open`] gives the tracker a training loop uses: a [`LocalTracker`] (runs recorded under
//!   `<local_root>/<experiment>/<run_id>/`, see `docs/local-store.md`) when no server is
//!   configured, else a [`MirroredTracker`] that writes every run to the local store *and*
//!   sends it to the MLflow server. If the server is unreachable or goes away, training goes on
//!   and the run stays in the local store marked unsynced; [`sync`] pushes it later, idempotently.
//! * [`LocalStore`] reads the local store back ([`RunRecord`]).
//! * [`RunHandle`] is one recorded run found locally or on the server, to add to and sync.
//! * [`MlflowClient`] is the low-level REST client (tracking API, artifact proxy) that the
//!   model-registry, eval and sync code builds on.
//! * [`MlflowServer`] runs MLflow's own server over a store in the project directory, and
//!   [`StoreWatcher`] pushes the local store's runs to a server as they change (`engine ui`).

mod client;
mod error;
mod inputs;
mod local;
mod mirror;
mod mlflow_bin;
mod mlflow_server;
pub mod model_uri;
mod models;
pub mod paths;
mod registry;
mod run_handle;
mod summaries;
mod sync;
mod uplink;
pub mod util;
mod watch;
mod wire;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use client::{
    Auth, MAX_ARTIFACT_DEPTH, MAX_ARTIFACT_DIRS, MAX_ARTIFACT_ENTRIES, MAX_HISTORY_PAGES, MAX_RESPONSE_BYTES,
    MlflowClient, Retry, RetryPolicy, artifact_proxy_path, check_artifact_rel_path, normalize_tracking_uri,
    retry_class_for_post,
};
pub use error::{ApiError, TrackingError};
pub use inputs::{Dataset, DatasetInput};
pub use local::{ArtifactEntry, LocalRun, LocalStore, LocalTracker, RecordStatus, RemoteRef, RunMeta, RunRecord};
pub use mirror::{DEFAULT_DRAIN_TIMEOUT, DEFAULT_FLUSH_INTERVAL, MirroredTracker};
pub use mlflow_bin::{MLFLOW_REQUIREMENT, PROJECT_VENV, ServerError, find_mlflow};
pub use mlflow_server::{MlflowServer, ServerOptions, die_with_parent, group_alive, kill_started_servers};
pub use model_uri::{ModelUri, ModelUriError, Stage, VersionSelector};
pub use models::LoggedModel;
pub use registry::ModelVersion;
pub use run_handle::{FindRunError, Push, Pushed, RunAdditions, RunHandle};
pub use summaries::{Source, series, summary_from_record, summary_from_server};
pub use sync::{SyncOptions, SyncOutcome, SyncReport, SyncedRun, push_live, sync, sync_run_now, sync_to, sync_with};
pub use watch::StoreWatcher;
pub use wire::{
    Batch, Experiment, FileInfo, KeyValue, MAX_BATCH_BYTES, MAX_ENTITIES_PER_BATCH, MAX_METRICS_PER_BATCH,
    MAX_PARAM_VALUE_CHARS, MAX_PARAMS_PER_BATCH, MAX_TAG_VALUE_CHARS, MAX_TAGS_PER_BATCH, Run, RunData, RunInfo,
    chunk_batches,
};

/// Default experiment name when neither a flag nor `MLFLOW_EXPERIMENT_NAME` gives one.
pub const DEFAULT_EXPERIMENT: &str = "fashion-mnist";
/// Default local store root when `ENGINE_LOCAL_STORE` is unset.
pub const DEFAULT_LOCAL_ROOT: &str = "./mlruns-local";
/// The tag MLflow's client nests a run under its parent with.
pub const PARENT_RUN_ID_TAG: &str = "mlflow.parentRunId";
/// Tag naming the logged model a run produced.
pub const MODEL_ID_TAG: &str = "engine.model_id";
/// Where a run's model directory sits among its artifacts.
pub const MODEL_ARTIFACT_DIR: &str = "model";
/// Tag carrying the local store's id of a run on the server (lets `sync` find runs it created).
pub const LOCAL_RUN_ID_TAG: &str = "engine.local_run_id";

/// The longest experiment name MLflow stores (`experiments.name`).
pub const MAX_EXPERIMENT_NAME_CHARS: usize = 256;
/// The longest run name MLflow stores (`runs.name`).
pub const MAX_RUN_NAME_CHARS: usize = 250;

/// Where and how runs are tracked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackingConfig {
    /// MLflow server (`http(s)://host:port`); `None` = local store only.
    pub tracking_uri: Option<String>,
    pub experiment: String,
    /// Run name; `None` = generated (`adjective-noun-123`).
    pub run_name: Option<String>,
    /// Root of the local store (default `./mlruns-local`).
    pub local_root: PathBuf,
}

impl TrackingConfig {
    /// Flags win over `MLFLOW_TRACKING_URI` / `MLFLOW_EXPERIMENT_NAME`; the experiment defaults
    /// to `fashion-mnist`; the local root comes from `ENGINE_LOCAL_STORE`, else `./mlruns-local`.
    /// Empty strings count as unset.
    pub fn from_env(tracking_uri: Option<String>, experiment: Option<String>, run_name: Option<String>) -> Self {
        Self::from_lookup(tracking_uri, experiment, run_name, |k| std::env::var(k).ok())
    }

    /// Like [`from_env`](Self::from_env), with any source of variables.
    pub fn from_lookup(
        tracking_uri: Option<String>,
        experiment: Option<String>,
        run_name: Option<String>,
        get: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let nonempty = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        TrackingConfig {
            tracking_uri: nonempty(tracking_uri).or_else(|| nonempty(get("MLFLOW_TRACKING_URI"))),
            experiment: nonempty(experiment)
                .or_else(|| nonempty(get("MLFLOW_EXPERIMENT_NAME")))
                .unwrap_or_else(|| DEFAULT_EXPERIMENT.to_string()),
            run_name: nonempty(run_name),
            local_root: nonempty(get("ENGINE_LOCAL_STORE"))
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_LOCAL_ROOT)),
        }
    }

    /// Checks the names against what an MLflow server stores (its database columns), so that a
    /// run never starts that could not reach the server.
    pub fn validate(&self) -> Result<(), String> {
        let too_long = |flag: &str, value: &str, max: usize| {
            let chars = value.chars().count();
            (chars > max).then(|| format!("{flag} is {chars} characters long; MLflow stores at most {max}"))
        };
        let problem = too_long("--experiment", &self.experiment, MAX_EXPERIMENT_NAME_CHARS)
            .or_else(|| too_long("--run-name", self.run_name.as_deref().unwrap_or_default(), MAX_RUN_NAME_CHARS));
        problem.map_or(Ok(()), Err)
    }

    /// A local-only configuration rooted at `local_root`.
    pub fn local(local_root: impl Into<PathBuf>, experiment: &str) -> Self {
        TrackingConfig {
            tracking_uri: None,
            experiment: experiment.to_string(),
            run_name: None,
            local_root: local_root.into(),
        }
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Finished,
    Failed,
    /// Interrupted (Ctrl-C).
    Killed,
}

impl RunStatus {
    /// MLflow's name for it: `FINISHED`, `FAILED`, `KILLED`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Finished => "FINISHED",
            RunStatus::Failed => "FAILED",
            RunStatus::Killed => "KILLED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "FINISHED" => Some(RunStatus::Finished),
            "FAILED" => Some(RunStatus::Failed),
            "KILLED" => Some(RunStatus::Killed),
            _ => None,
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One metric point. Serialized as MLflow does: `{"key","value","step","timestamp"}`, with
/// non-finite values as `"NaN"`/`"Infinity"`/`"-Infinity"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub key: String,
    #[serde(serialize_with = "wire::ser_lenient_f64", deserialize_with = "wire::de_lenient_f64")]
    pub value: f64,
    #[serde(default)]
    pub step: i64,
    #[serde(rename = "timestamp", default)]
    pub timestamp_ms: i64,
    /// The model and dataset the value describes (MLflow 3 shows it on the model's page).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub about: Option<MetricSubject>,
}

/// What a metric measured: a LoggedModel, on a dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricSubject {
    pub model_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_digest: Option<String>,
}

impl Metric {
    /// A point stamped now.
    pub fn new(key: impl Into<String>, value: f64, step: i64) -> Self {
        Metric { key: key.into(), value, step, timestamp_ms: util::now_ms(), about: None }
    }

    /// The same point, as a measure of `model_id` on `dataset` (name, digest).
    pub fn of_model(mut self, model_id: &str, dataset: Option<&Dataset>) -> Self {
        self.about = Some(MetricSubject {
            model_id: model_id.to_string(),
            dataset_name: dataset.map(|d| d.name.clone()),
            dataset_digest: dataset.map(|d| d.digest.clone()),
        });
        self
    }
}

/// What a training loop records a run through.
pub trait Tracker {
    /// Starts the run; returns its id (the MLflow run id when a server is used, else a local id
    /// of the same form: 32 lowercase hex chars).
    fn start_run(&mut self, params: &[(String, String)], tags: &[(String, String)]) -> Result<String, TrackingError>;
    fn log_metrics(&mut self, metrics: &[Metric]) -> Result<(), TrackingError>;
    fn log_params(&mut self, params: &[(String, String)]) -> Result<(), TrackingError>;
    fn set_tags(&mut self, tags: &[(String, String)]) -> Result<(), TrackingError>;
    /// Records the datasets the run used.
    fn log_inputs(&mut self, inputs: &[DatasetInput]) -> Result<(), TrackingError>;
    /// Uploads one local file under `artifact_dir` ("" = root) of the run's artifacts.
    fn log_artifact(&mut self, local_path: &Path, artifact_dir: &str) -> Result<(), TrackingError>;
    fn end_run(&mut self, status: RunStatus) -> Result<(), TrackingError>;
    fn run_id(&self) -> Option<&str>;
    /// Human description of where the run went ("local store ./mlruns-local/..." or "MLflow http://...").
    fn describe(&self) -> String;
    /// Sends whatever is buffered for the server now (the local store is always up to date).
    /// `end_run` flushes too.
    fn flush(&mut self) -> Result<(), TrackingError> {
        Ok(())
    }
    /// Reserves a logged model for this run and returns its id: an MLflow 3 LoggedModel, pending
    /// until `finish_model`, on a server that has them; `None` otherwise.
    fn begin_model(&mut self, _params: &[(String, String)]) -> Result<Option<String>, TrackingError> {
        Ok(None)
    }
    /// Records a model directory: its `files` under `model/` of the run's artifacts (always,
    /// so the local store and servers without LoggedModels have it), the id as the run's
    /// `engine.model_id` tag, and, where `begin_model` reserved one, as that LoggedModel.
    fn finish_model(&mut self, model_id: Option<&str>, dir: &Path, files: &[&str]) -> Result<(), TrackingError> {
        log_model_artifacts(self, model_id, dir, files)
    }
}

/// The part of `finish_model` every tracker does: the files under `model/` of the run's
/// artifacts and the model id as a tag.
fn log_model_artifacts<T: Tracker + ?Sized>(
    tracker: &mut T,
    model_id: Option<&str>,
    dir: &Path,
    files: &[&str],
) -> Result<(), TrackingError> {
    for file in files {
        tracker.log_artifact(&paths::safe_join(dir, file)?, MODEL_ARTIFACT_DIR)?;
    }
    if let Some(id) = model_id {
        tracker.set_tags(&[(MODEL_ID_TAG.to_string(), id.to_string())])?;
    }
    Ok(())
}

/// The tracker for `config`: a [`MirroredTracker`] (local store + MLflow) when a tracking URI is
/// configured, else a [`LocalTracker`]. Nothing is contacted until `start_run`.
pub fn open(config: &TrackingConfig) -> Result<Box<dyn Tracker>, TrackingError> {
    match &config.tracking_uri {
        Some(uri) => {
            let client = MlflowClient::from_env(uri)?;
            Ok(Box::new(MirroredTracker::new(config.clone(), client)?))
        }
        None => Ok(Box::new(LocalTracker::new(config.clone())?)),
    }
}

/// A tracker that records nothing (for tests of the training loop).
#[derive(Debug, Default)]
pub struct NoopTracker {
    run_id: Option<String>,
}

impl NoopTracker {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Tracker for NoopTracker {
    fn start_run(&mut self, _params: &[(String, String)], _tags: &[(String, String)]) -> Result<String, TrackingError> {
        let id = util::new_run_id();
        self.run_id = Some(id.clone());
        Ok(id)
    }
    fn log_metrics(&mut self, _metrics: &[Metric]) -> Result<(), TrackingError> {
        Ok(())
    }
    fn log_params(&mut self, _params: &[(String, String)]) -> Result<(), TrackingError> {
        Ok(())
    }
    fn set_tags(&mut self, _tags: &[(String, String)]) -> Result<(), TrackingError> {
        Ok(())
    }
    fn log_inputs(&mut self, _inputs: &[DatasetInput]) -> Result<(), TrackingError> {
        Ok(())
    }
    fn log_artifact(&mut self, _local_path: &Path, _artifact_dir: &str) -> Result<(), TrackingError> {
        Ok(())
    }
    fn end_run(&mut self, _status: RunStatus) -> Result<(), TrackingError> {
        Ok(())
    }
    fn run_id(&self) -> Option<&str> {
        self.run_id.as_deref()
    }
    fn describe(&self) -> String {
        "nowhere (tracking disabled)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_flags_win_over_env() {
        let env = |k: &str| match k {
            "MLFLOW_TRACKING_URI" => Some("http://env:5000".to_string()),
            "MLFLOW_EXPERIMENT_NAME" => Some("env-exp".to_string()),
            "ENGINE_LOCAL_STORE" => Some("/tmp/store".to_string()),
            _ => None,
        };
        let c = TrackingConfig::from_lookup(Some("http://flag:1".into()), None, Some("r".into()), env);
        assert_eq!(c.tracking_uri.as_deref(), Some("http://flag:1"));
        assert_eq!(c.experiment, "env-exp");
        assert_eq!(c.run_name.as_deref(), Some("r"));
        assert_eq!(c.local_root, PathBuf::from("/tmp/store"));
        let c = TrackingConfig::from_lookup(None, Some("x".into()), None, env);
        assert_eq!(c.tracking_uri.as_deref(), Some("http://env:5000"));
        assert_eq!(c.experiment, "x");
        let c = TrackingConfig::from_lookup(Some(" ".into()), None, Some(String::new()), |_| None);
        assert_eq!(c.tracking_uri, None);
        assert_eq!(c.experiment, DEFAULT_EXPERIMENT);
        assert_eq!(c.run_name, None);
        assert_eq!(c.local_root, PathBuf::from(DEFAULT_LOCAL_ROOT));
    }

    #[test]
    fn statuses() {
        for s in [RunStatus::Finished, RunStatus::Failed, RunStatus::Killed] {
            assert_eq!(RunStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(RunStatus::parse("RUNNING"), None);
    }

    #[test]
    fn noop_tracker_does_nothing() {
        let mut t = NoopTracker::new();
        assert!(t.run_id().is_none());
        let id = t.start_run(&[], &[]).unwrap();
        assert!(util::is_run_id(&id));
        t.log_metrics(&[Metric::new("loss", 1.0, 0)]).unwrap();
        t.end_run(RunStatus::Finished).unwrap();
        assert_eq!(t.run_id(), Some(id.as_str()));
    }

    #[test]
    fn trackers_and_clients_can_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<MlflowClient>();
        send::<LocalTracker>();
        send::<MirroredTracker>();
        send::<NoopTracker>();
        send_sync::<TrackingError>();
    }

    #[test]
    fn open_rejects_non_http_uris() {
        let mut c = TrackingConfig::local("/nonexistent-root", "x");
        c.tracking_uri = Some("sqlite:///mlflow.db".into());
        assert!(matches!(open(&c), Err(TrackingError::Config(_))));
    }
}
