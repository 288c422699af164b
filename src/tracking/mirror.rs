//! The mirrored tracker: every run goes to the local store and, while it answers, to MLflow.

use std::path::Path;
use std::time::{Duration, Instant};

use super::client::MlflowClient;
use super::error::TrackingError;
use super::local::{LocalTracker, RemoteRef};
use super::models::LoggedModel;
use super::util::{self, now_ms};
use super::{LOCAL_RUN_ID_TAG, MODEL_ARTIFACT_DIR, Metric, RunStatus, Tracker, TrackingConfig};

/// Default longest time metric points wait in memory before going to the server.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// What to tell a user whose run did not reach the server.
pub const SYNC_HINT: &str = "push it later with `engine sync`";

struct RemoteRun {
    experiment_id: String,
    run_id: String,
    artifact_uri: String,
}

/// Records a run in the local store and on an MLflow server at the same time.
///
/// The local store is written first, so it always holds the whole run. Metric points go to the
/// server in batches: at most once per flush interval (1 s by default), when 1000 are waiting,
/// and before anything else is sent (params, tags, artifacts, end of run), so a loop logging
/// every step costs one request a second, not one per step. Server failures never
/// fail the training: when the server cannot be reached (after the client's bounded retries),
/// a one-line warning goes to stderr, the server is left alone for the rest of the run, and the
/// run stays marked unsynced for [`super::sync`]. Only local-store failures are returned as errors.
pub struct MirroredTracker {
    local: LocalTracker,
    client: MlflowClient,
    remote: Option<RemoteRun>,
    /// The server is given up on for this run.
    disabled: bool,
    /// Something did not reach the server.
    dirty: bool,
    warned_unavailable: bool,
    warned_rejected: bool,
    last_error: Option<String>,
    /// Metric points logged locally but not yet sent.
    pending: Vec<Metric>,
    /// The LoggedModel reserved by `begin_model`, waiting for its files.
    pending_model: Option<LoggedModel>,
    last_flush: Instant,
    flush_interval: Duration,
}

impl std::fmt::Debug for MirroredTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirroredTracker")
            .field("client", &self.client)
            .field("run_id", &self.local.local_run().map(|r| r.run_id()))
            .field("server_live", &self.is_server_live())
            .field("dirty", &self.dirty)
            .finish()
    }
}

impl MirroredTracker {
    /// A tracker for `config` sending to `client`'s server (nothing is contacted until `start_run`).
    pub fn new(config: TrackingConfig, client: MlflowClient) -> Result<Self, TrackingError> {
        Ok(MirroredTracker {
            local: LocalTracker::new(config)?,
            client,
            remote: None,
            disabled: false,
            dirty: false,
            warned_unavailable: false,
            warned_rejected: false,
            last_error: None,
            pending: Vec::new(),
            pending_model: None,
            last_flush: Instant::now(),
            flush_interval: DEFAULT_FLUSH_INTERVAL,
        })
    }

    /// How long metric points may wait in memory before they are sent (zero: send at once).
    pub fn set_flush_interval(&mut self, interval: Duration) {
        self.flush_interval = interval;
    }

    /// Metric points waiting to be sent.
    pub fn pending_points(&self) -> usize {
        self.pending.len()
    }

    fn send_pending(&mut self) {
        self.last_flush = Instant::now();
        if self.pending.is_empty() {
            return;
        }
        let points = std::mem::take(&mut self.pending);
        if let Some((id, _)) = self.live()
            && let Err(e) = self.client.log_batch(&id, &points, &[], &[])
        {
            self.server_failed("MLflow log metrics", e);
        }
    }

    pub fn client(&self) -> &MlflowClient {
        &self.client
    }
    pub fn local(&self) -> &LocalTracker {
        &self.local
    }
    /// True while the run is being sent to the server.
    pub fn is_server_live(&self) -> bool {
        self.remote.is_some() && !self.disabled
    }
    /// True when everything so far reached the server.
    pub fn is_in_sync(&self) -> bool {
        self.remote.is_some() && !self.dirty
    }
    pub fn server_run_id(&self) -> Option<&str> {
        self.remote.as_ref().map(|r| r.run_id.as_str())
    }
    pub fn experiment_id(&self) -> Option<&str> {
        self.remote.as_ref().map(|r| r.experiment_id.as_str())
    }
    pub fn artifact_uri(&self) -> Option<&str> {
        self.remote.as_ref().map(|r| r.artifact_uri.as_str())
    }
    /// The last server error, if any.
    pub fn last_server_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    fn local_dir(&self) -> String {
        self.local
            .local_run()
            .map(|r| r.dir().display().to_string())
            .unwrap_or_else(|| self.local.store().root().display().to_string())
    }

    fn server_failed(&mut self, what: &str, err: TrackingError) {
        self.dirty = true;
        self.last_error = Some(err.to_string());
        if err.is_server_unavailable() {
            self.disabled = true;
            if !self.warned_unavailable {
                self.warned_unavailable = true;
                eprintln!(
                    "warning: {what}: {err}; the run goes on in the local store {} (unsynced); {SYNC_HINT}",
                    self.local_dir()
                );
            }
        } else if !self.warned_rejected {
            self.warned_rejected = true;
            eprintln!("warning: {what}: {err}; kept in the local store {} (unsynced)", self.local_dir());
        }
    }

    fn live(&self) -> Option<(String, String)> {
        if self.disabled {
            return None;
        }
        self.remote.as_ref().map(|r| (r.run_id.clone(), r.artifact_uri.clone()))
    }
}

impl Tracker for MirroredTracker {
    fn start_run(&mut self, params: &[(String, String)], tags: &[(String, String)]) -> Result<String, TrackingError> {
        if self.local.local_run().is_some() {
            return Err(TrackingError::InvalidArgument(
                "start_run called twice on one tracker; open a new tracker for a new run".into(),
            ));
        }
        let config = self.local.config().clone();
        let name = LocalTracker::pick_run_name(&config);
        let all_tags = LocalTracker::initial_tags(&name, tags);
        let start = now_ms();
        let user = util::current_user();
        // The id the run gets locally if the server does not answer. It goes out as a tag with
        // the create, so that if the server did create the run but the answer was lost, `sync`
        // finds that run instead of making a second one.
        let provisional = util::new_run_id();
        let mut create_tags = all_tags.clone();
        create_tags.push((LOCAL_RUN_ID_TAG.to_string(), provisional.clone()));
        let created = self
            .client
            .get_or_create_experiment(&config.experiment)
            .and_then(|exp| self.client.create_run(&exp, &name, start, &user, &create_tags).map(|info| (exp, info)));
        let run_id = match created {
            Ok((exp, info)) => {
                let id = info.run_id.clone();
                self.remote =
                    Some(RemoteRun { experiment_id: exp, run_id: info.run_id, artifact_uri: info.artifact_uri });
                id
            }
            Err(e) => {
                self.server_failed("MLflow start run", e);
                provisional
            }
        };
        let uri = self.client.tracking_uri().to_string();
        let started = self.local.start_with(run_id.clone(), name, start, params, &all_tags, Some(uri.clone()));
        if let Err(e) = started {
            // Don't leave a RUNNING run on the server for a run we cannot record.
            if let Some(r) = &self.remote {
                let _ = self.client.update_run(&r.run_id, RunStatus::Failed, now_ms());
            }
            return Err(e);
        }
        if let Some(r) = &self.remote {
            let remote_ref = RemoteRef {
                tracking_uri: uri,
                experiment_id: r.experiment_id.clone(),
                run_id: r.run_id.clone(),
                artifact_uri: r.artifact_uri.clone(),
                synced: false,
                synced_at: None,
            };
            if let Some(run) = self.local.local_run_mut() {
                run.add_remote(remote_ref)?;
            }
            // The run is known locally under the server's id: say so in the tag.
            let id_tag = [(LOCAL_RUN_ID_TAG.to_string(), run_id.clone())];
            if let Err(e) = self.client.log_batch(&run_id, &[], params, &id_tag) {
                self.server_failed("MLflow log params", e);
            }
        }
        Ok(run_id)
    }

    fn log_metrics(&mut self, metrics: &[Metric]) -> Result<(), TrackingError> {
        self.local.log_metrics(metrics)?;
        if self.live().is_some() {
            self.pending.extend_from_slice(metrics);
            if self.pending.len() >= super::MAX_METRICS_PER_BATCH || self.last_flush.elapsed() >= self.flush_interval {
                self.send_pending();
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TrackingError> {
        self.send_pending();
        Ok(())
    }

    fn log_params(&mut self, params: &[(String, String)]) -> Result<(), TrackingError> {
        self.local.log_params(params)?;
        self.send_pending();
        if let Some((id, _)) = self.live()
            && !params.is_empty()
            && let Err(e) = self.client.log_batch(&id, &[], params, &[])
        {
            self.server_failed("MLflow log params", e);
        }
        Ok(())
    }

    fn set_tags(&mut self, tags: &[(String, String)]) -> Result<(), TrackingError> {
        self.local.set_tags(tags)?;
        self.send_pending();
        if let Some((id, _)) = self.live()
            && !tags.is_empty()
            && let Err(e) = self.client.log_batch(&id, &[], &[], tags)
        {
            self.server_failed("MLflow set tags", e);
        }
        Ok(())
    }

    fn log_artifact(&mut self, local_path: &Path, artifact_dir: &str) -> Result<(), TrackingError> {
        if !self.local.is_active() {
            return Err(TrackingError::NoActiveRun);
        }
        let run = self.local.local_run_mut().ok_or(TrackingError::NoActiveRun)?;
        let rel = run.log_artifact(local_path, artifact_dir)?;
        let copy = run.artifact_path(&rel);
        self.send_pending();
        if let Some((_, uri)) = self.live()
            && let Err(e) = self.client.upload_artifact_file(&uri, &rel, &copy)
        {
            self.server_failed("MLflow upload artifact", e);
        }
        Ok(())
    }

    fn begin_model(&mut self, params: &[(String, String)]) -> Result<Option<String>, TrackingError> {
        let (Some((run_id, _)), Some(experiment_id)) = (self.live(), self.experiment_id().map(String::from)) else {
            return Ok(None);
        };
        self.send_pending();
        match self.client.create_logged_model(&experiment_id, &run_id, MODEL_ARTIFACT_DIR, params) {
            Ok(model) => {
                let id = model.model_id.clone();
                self.pending_model = Some(model);
                Ok(Some(id))
            }
            // A server without the LoggedModel API: the model goes to the run's artifacts only.
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => {
                self.server_failed("MLflow create logged model", e);
                Ok(None)
            }
        }
    }

    fn finish_model(&mut self, model_id: Option<&str>, dir: &Path, files: &[&str]) -> Result<(), TrackingError> {
        super::log_model_artifacts(self, model_id, dir, files)?;
        let model = self.pending_model.take().filter(|m| Some(m.model_id.as_str()) == model_id);
        if let (Some(model), Some((run_id, _))) = (model, self.live())
            && let Err(e) = self.client.upload_logged_model(&model, &run_id, dir, files, 0)
        {
            self.server_failed("MLflow upload logged model", e);
        }
        Ok(())
    }

    fn end_run(&mut self, status: RunStatus) -> Result<(), TrackingError> {
        if !self.local.is_active() {
            return Err(TrackingError::NoActiveRun);
        }
        let end = now_ms();
        let run = self.local.local_run_mut().ok_or(TrackingError::NoActiveRun)?;
        run.finish(status, end)?;
        self.local.mark_ended();
        self.send_pending();
        if let Some((id, _)) = self.live() {
            match self.client.update_run(&id, status, end) {
                Ok(_) => {}
                Err(e) => self.server_failed("MLflow end run", e),
            }
        }
        if self.remote.is_some() && !self.dirty {
            let uri = self.client.tracking_uri().to_string();
            if let Some(run) = self.local.local_run_mut() {
                run.set_synced(&uri, true)?;
            }
        }
        Ok(())
    }

    fn run_id(&self) -> Option<&str> {
        self.local.run_id()
    }

    fn describe(&self) -> String {
        let uri = self.client.tracking_uri();
        match &self.remote {
            Some(r) if !self.disabled => format!(
                "MLflow {uri}/#/experiments/{}/runs/{} (mirrored in local store {})",
                r.experiment_id,
                r.run_id,
                self.local_dir()
            ),
            _ if self.local.local_run().is_some() => {
                format!("local store {} (MLflow {uri} unavailable: unsynced, {SYNC_HINT})", self.local_dir())
            }
            _ => format!("MLflow {uri} (mirrored in local store {})", self.local_dir()),
        }
    }
}

impl Drop for MirroredTracker {
    /// A run dropped during a panic is ended as FAILED (locally and on the server).
    fn drop(&mut self) {
        if std::thread::panicking() && self.local.is_active() {
            let _ = self.end_run(RunStatus::Failed);
        }
    }
}
