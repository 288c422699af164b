//! One recorded run, found where it lives: in the local store (perhaps mirrored to a server) or
//! only on the MLflow server. Commands that add to a finished run (an evaluation, a gate's
//! decision, an analysis) find it, write to it, release the local run's lock and send the
//! addition to the server through this one handle, so the order of those steps is kept once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{DatasetInput, LocalStore, Metric, MlflowClient, Run, RunRecord, RunStatus, TrackingConfig, TrackingError};

/// A run in the local store, or one only on the server.
pub enum RunHandle {
    /// In the local store; `record` was read when the run was found.
    Local { store: LocalStore, record: Box<RunRecord> },
    /// Only on the server, with a client of that server.
    Server { client: MlflowClient, run: Box<Run> },
}

/// Why [`RunHandle::find`] found no run.
#[derive(Debug, thiserror::Error)]
pub enum FindRunError {
    /// Not in the local store, and no server is configured.
    #[error(
        "unknown run id {run_id}: it is not in the local store {}; if it was logged to a server, pass \
         --tracking-uri or set MLFLOW_TRACKING_URI",
        root.display()
    )]
    NotLocal { run_id: String, root: PathBuf },
    /// Neither in the local store nor on the configured server.
    #[error("unknown run id {run_id}: neither in the local store {} nor on {server}", root.display())]
    Unknown { run_id: String, root: PathBuf, server: String },
    /// The server could not be asked (unreachable, an error other than "no such run").
    #[error("cannot read run {run_id} from {server}: {source}")]
    Server {
        run_id: String,
        server: String,
        #[source]
        source: TrackingError,
    },
    /// The local store itself cannot be opened.
    #[error(transparent)]
    Store(#[from] TrackingError),
}

/// What to add to a run: every part may be empty.
#[derive(Default)]
pub struct RunAdditions {
    pub metrics: Vec<Metric>,
    pub inputs: Vec<DatasetInput>,
    pub tags: Vec<(String, String)>,
    /// Files to log, each with the artifact directory it goes under (`""`: the root).
    pub artifacts: Vec<(PathBuf, String)>,
    /// End the run with this status, after the rest is written (a sweep's parent).
    pub end: Option<RunStatus>,
}

/// When a local run's addition is sent to the configured server.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Push {
    /// Only when the run already has a copy there (the addition must not create one).
    IfMirrored,
    /// Whenever a server is configured: a run that never reached it is sent whole.
    Always,
}

/// Whether an addition reached the server.
pub enum Pushed {
    /// Written on the server directly, or no push was due.
    NotNeeded,
    /// The local run (with the addition) was sent to the server at this URI.
    Synced(String),
    /// Recorded in the local store, but sending it to the server at this URI failed.
    Failed(String, TrackingError),
}

impl RunHandle {
    /// Looks in the local store first (a run id or unique prefix), then on the configured server.
    pub fn find(config: &TrackingConfig, run_id: &str) -> Result<RunHandle, FindRunError> {
        let store = LocalStore::open(&config.local_root)?;
        if let Ok(record) = store.load_run(run_id) {
            return Ok(RunHandle::Local { store, record: Box::new(record) });
        }
        match RunHandle::on_server(config, run_id) {
            Err(FindRunError::Server { run_id, server, source })
                if source.is_not_found() || source.http_status() == Some(400) =>
            {
                Err(FindRunError::Unknown { run_id, root: config.local_root.clone(), server })
            }
            found => found,
        }
    }

    /// The run on the configured server only (a model's run named by the registry).
    pub fn on_server(config: &TrackingConfig, run_id: &str) -> Result<RunHandle, FindRunError> {
        let Some(server) = &config.tracking_uri else {
            return Err(FindRunError::NotLocal { run_id: run_id.to_string(), root: config.local_root.clone() });
        };
        let client = MlflowClient::from_env(server)?;
        match client.get_run(run_id) {
            Ok(run) => Ok(RunHandle::Server { client, run: Box::new(run) }),
            Err(source) => Err(FindRunError::Server { run_id: run_id.to_string(), server: server.clone(), source }),
        }
    }

    /// The run's id where it was found (the full local id for a prefix).
    pub fn run_id(&self) -> &str {
        match self {
            RunHandle::Local { record, .. } => &record.run_id,
            RunHandle::Server { run, .. } => &run.info.run_id,
        }
    }

    /// The run's id on the server, if it has a copy there.
    pub fn server_run_id(&self) -> Option<String> {
        match self {
            RunHandle::Local { record, .. } => record.server_run_id().map(String::from),
            RunHandle::Server { run, .. } => Some(run.info.run_id.clone()),
        }
    }

    /// Every id the run goes by: its own, and its copy's on the other side (server or local).
    pub fn all_ids(&self) -> Vec<String> {
        let other = match self {
            RunHandle::Local { record, .. } => record.server_run_id(),
            RunHandle::Server { run, .. } => run.tag(super::LOCAL_RUN_ID_TAG),
        };
        std::iter::once(self.run_id().to_string()).chain(other.map(String::from)).collect()
    }

    /// The latest value of every metric.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        match self {
            RunHandle::Local { record, .. } => record.latest_metrics().into_iter().map(|(k, m)| (k, m.value)).collect(),
            RunHandle::Server { run, .. } => run.data.metrics.iter().map(|m| (m.key.clone(), m.value)).collect(),
        }
    }

    /// The run's tags as they were when it was found.
    pub fn tags(&self) -> BTreeMap<String, String> {
        match self {
            RunHandle::Local { record, .. } => record.tags.clone(),
            RunHandle::Server { run, .. } => run.data.tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect(),
        }
    }

    /// The run's model id (its `engine.model_id` tag); on a server only if that model exists.
    pub fn model_id(&self) -> Option<String> {
        let id = self.tags().get(super::MODEL_ID_TAG).cloned()?;
        match self {
            RunHandle::Local { .. } => Some(id),
            RunHandle::Server { client, .. } => client.get_logged_model(&id).is_ok().then_some(id),
        }
    }

    /// Where the run is, in words: "in the local store", or "on" and the server's URI.
    pub fn place(&self) -> String {
        match self {
            RunHandle::Local { .. } => "in the local store".to_string(),
            RunHandle::Server { client, .. } => format!("on {}", client.tracking_uri()),
        }
    }

    /// Writes `additions` to the run, then (for a local run, its lock released first, or the
    /// sync would skip it) sends the run to the configured server as `push` says. An error means
    /// nothing reached the local store or the server; a failed push is reported in [`Pushed`].
    pub fn add(&self, config: &TrackingConfig, additions: &RunAdditions, push: Push) -> Result<Pushed, TrackingError> {
        match self {
            RunHandle::Local { store, record } => {
                write_local(store, &record.run_id, additions)?;
                let Some(uri) = &config.tracking_uri else { return Ok(Pushed::NotNeeded) };
                if push == Push::IfMirrored && record.server_run_id().is_none() {
                    return Ok(Pushed::NotNeeded);
                }
                Ok(match super::sync_run_now(&config.local_root, config, &record.run_id) {
                    Ok(_) => Pushed::Synced(uri.clone()),
                    Err(e) => Pushed::Failed(uri.clone(), e),
                })
            }
            RunHandle::Server { client, run } => {
                write_server(client, run, additions)?;
                Ok(Pushed::NotNeeded)
            }
        }
    }
}

/// Writes to the local run, holding its lock only for the writes.
fn write_local(store: &LocalStore, run_id: &str, additions: &RunAdditions) -> Result<(), TrackingError> {
    let mut run = store.reopen_run(run_id)?;
    if !additions.metrics.is_empty() {
        run.log_metrics(&additions.metrics)?;
    }
    if !additions.inputs.is_empty() {
        run.log_inputs(&additions.inputs)?;
    }
    if !additions.tags.is_empty() {
        run.set_tags(&additions.tags)?;
    }
    for (file, dir) in &additions.artifacts {
        run.log_artifact(file, dir)?;
    }
    if let Some(status) = additions.end {
        run.finish(status, super::util::now_ms())?;
    }
    Ok(())
}

fn write_server(client: &MlflowClient, run: &Run, additions: &RunAdditions) -> Result<(), TrackingError> {
    let run_id = &run.info.run_id;
    if !additions.metrics.is_empty() || !additions.tags.is_empty() {
        client.log_batch(run_id, &additions.metrics, &[], &additions.tags)?;
    }
    if !additions.inputs.is_empty() {
        client.log_inputs(run_id, &additions.inputs)?;
    }
    for (file, dir) in &additions.artifacts {
        client.upload_artifact_file(&run.info.artifact_uri, &artifact_path(file, dir), file)?;
    }
    if let Some(status) = additions.end {
        client.update_run(run_id, status, super::util::now_ms())?;
    }
    Ok(())
}

/// `dir/name` (or `name` at the root) for a file logged under `dir`.
fn artifact_path(file: &Path, dir: &str) -> String {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if dir.is_empty() { name } else { format!("{}/{name}", dir.trim_end_matches('/')) }
}
