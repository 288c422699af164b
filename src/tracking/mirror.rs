//! The mirrored tracker: every run goes to the local store and, while it answers, to MLflow.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::client::MlflowClient;
use super::error::TrackingError;
use super::local::{LocalTracker, RemoteRef};
use super::models::LoggedModel;
use super::uplink::{Job, NewRun, RemoteRun, SYNC_HINT, Started, Uplink};
use super::util::{self, now_ms};
use super::{DatasetInput, LOCAL_RUN_ID_TAG, MODEL_ARTIFACT_DIR, Metric, RunStatus, Tracker, TrackingConfig};

/// Default longest time metric points wait in memory before going to the server.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Default longest time the end of a run waits for the server to take what is queued
/// (`ENGINE_TRACKING_DRAIN_SECONDS`).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest time the start of a run waits for the server to name it. A server that refuses the
/// connection is known at once; one that never answers costs this much, then the run starts
/// under a local id and reaches the server if it answers later.
pub const START_WAIT: Duration = Duration::from_secs(3);

/// Records a run in the local store and on an MLflow server at the same time.
///
/// The local store is written first, in the caller's thread, so it always holds the whole run.
/// Everything for the server leaves through an `Uplink`: a bounded queue drained by a
/// background thread, so the training loop never waits for the server. Starting the run waits
/// at most `START_WAIT` for the server to create it, so that a live server's id names the run;
/// past that (or at once when the server refuses the connection) the run starts under a local
/// id, and the uplink creates it on the server when it answers. Reserving the model waits for
/// one request of a live server, as its answer names the model. Metric points go out in
/// batches, at most once per flush interval. Server failures never fail the training: the server
/// is left alone for the rest of the run, which stays marked unsynced for [`super::sync`]. The
/// end of the run waits for the queue to drain, at most the drain timeout. Only local-store
/// failures are returned as errors.
pub struct MirroredTracker {
    local: LocalTracker,
    client: MlflowClient,
    remote: Option<RemoteRun>,
    uplink: Option<Uplink>,
    /// Set when the run could not be started on the server at all.
    start_error: Option<String>,
    /// The LoggedModel reserved by `begin_model`, waiting for its files.
    pending_model: Option<LoggedModel>,
    flush_interval: Duration,
    drain_timeout: Duration,
}

impl std::fmt::Debug for MirroredTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirroredTracker")
            .field("client", &self.client)
            .field("run_id", &self.local.local_run().map(|r| r.run_id()))
            .field("server_live", &self.is_server_live())
            .field("in_sync", &self.is_in_sync())
            .finish()
    }
}

impl MirroredTracker {
    /// A tracker for `config` sending to `client`'s server (nothing is contacted until `start_run`).
    pub fn new(config: TrackingConfig, client: MlflowClient) -> Result<Self, TrackingError> {
        let drain_timeout = std::env::var("ENGINE_TRACKING_DRAIN_SECONDS")
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map_or(DEFAULT_DRAIN_TIMEOUT, Duration::from_secs_f64);
        Ok(MirroredTracker {
            local: LocalTracker::new(config)?,
            client,
            remote: None,
            uplink: None,
            start_error: None,
            pending_model: None,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            drain_timeout,
        })
    }

    /// How long metric points may wait in memory before they are sent (zero: send at once).
    /// Takes effect for runs started afterwards.
    pub fn set_flush_interval(&mut self, interval: Duration) {
        self.flush_interval = interval;
    }

    /// How long the end of a run (and `flush`) waits for the server.
    pub fn set_drain_timeout(&mut self, timeout: Duration) {
        self.drain_timeout = timeout;
    }

    /// Metric points logged locally but not yet sent.
    pub fn pending_points(&self) -> usize {
        self.uplink.as_ref().map_or(0, |u| u.state.pending_points.load(Ordering::SeqCst))
    }

    pub fn client(&self) -> &MlflowClient {
        &self.client
    }
    pub fn local(&self) -> &LocalTracker {
        &self.local
    }
    /// True while the run is being sent to the server (it exists there and the server was not
    /// given up on).
    pub fn is_server_live(&self) -> bool {
        let created = |u: &Uplink| self.remote.is_some() || u.state.remote.lock().is_ok_and(|r| r.is_some());
        self.uplink.as_ref().is_some_and(|u| created(u) && !u.state.disabled.load(Ordering::SeqCst))
    }
    /// True when everything so far reached the server.
    pub fn is_in_sync(&self) -> bool {
        self.uplink.as_ref().is_some_and(|u| !u.state.dirty.load(Ordering::SeqCst))
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
    pub fn last_server_error(&self) -> Option<String> {
        let from_uplink = self.uplink.as_ref().and_then(|u| u.state.last_error.lock().ok().and_then(|e| e.clone()));
        from_uplink.or_else(|| self.start_error.clone())
    }

    fn local_dir(&self) -> String {
        self.local
            .local_run()
            .map(|r| r.dir().display().to_string())
            .unwrap_or_else(|| self.local.store().root().display().to_string())
    }

    /// Queues a job for the server, if the run is on one.
    fn send(&self, job: Job) {
        if let Some(uplink) = &self.uplink {
            uplink.send(job);
        }
    }

    /// A synchronous request's failure: recorded like the uplink's, so the run ends unsynced.
    fn request_failed(&mut self, what: &str, err: TrackingError) {
        let where_local = self.local_dir();
        match &self.uplink {
            Some(uplink) => uplink.state.failed(what, &err, &where_local),
            None => {
                eprintln!(
                    "warning: {what}: {err}; the run goes on in the local store {where_local} (unsynced); {SYNC_HINT}"
                );
                self.start_error = Some(err.to_string());
            }
        }
    }
}

impl MirroredTracker {
    /// Waits at most [`START_WAIT`] for the uplink's first news of the server run: the run, or
    /// `None` (the server did not answer in time or refused it) after saying so.
    fn first_news(&mut self, news: &std::sync::mpsc::Receiver<Started>) -> Option<RemoteRun> {
        let uri = util::redact_uri(self.client.tracking_uri());
        let waiting = match news.recv_timeout(START_WAIT) {
            Ok(Started::Created(remote)) => return Some(remote),
            Ok(Started::Refused) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
            Ok(Started::NotYet(why)) => why,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                format!("no answer within {:.0} s", START_WAIT.as_secs_f64())
            }
        };
        eprintln!(
            "warning: MLflow {uri} is not answering ({waiting}); training starts now, recorded in the local store; \
             the run goes to the server if it answers while the run lasts, else {SYNC_HINT}"
        );
        self.start_error = Some(waiting);
        None
    }

    /// Notes the server's run in the local run, so that `sync` continues it.
    fn record_remote(&mut self, r: &RemoteRun) -> Result<(), TrackingError> {
        let remote_ref = RemoteRef {
            tracking_uri: self.client.tracking_uri().to_string(),
            experiment_id: r.experiment_id.clone(),
            run_id: r.run_id.clone(),
            artifact_uri: r.artifact_uri.clone(),
            synced: false,
            synced_at: None,
        };
        match self.local.local_run_mut() {
            Some(run) => run.add_remote(remote_ref),
            None => Ok(()),
        }
    }

    /// Takes up the server run the uplink created after the start stopped waiting for it.
    fn adopt_late_remote(&mut self) -> Result<(), TrackingError> {
        if self.remote.is_some() {
            return Ok(());
        }
        let late = self.uplink.as_ref().and_then(|u| u.state.remote.lock().ok().and_then(|r| r.clone()));
        if let Some(remote) = late {
            self.record_remote(&remote)?;
            self.remote = Some(remote);
        }
        Ok(())
    }

    /// True while the server has not answered yet and may still take the run.
    fn is_server_pending(&self) -> bool {
        self.remote.is_none() && self.uplink.as_ref().is_some_and(|u| !u.state.disabled.load(Ordering::SeqCst))
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
        let new_run = NewRun {
            experiment: config.experiment.clone(),
            name: name.clone(),
            start_ms: start,
            user,
            tags: create_tags,
        };
        let (uplink, first_news) = Uplink::start(self.client.clone(), new_run, self.flush_interval, self.local_dir());
        self.remote = self.first_news(&first_news);
        let run_id = self.remote.as_ref().map_or(provisional, |r| r.run_id.clone());
        let uri = self.client.tracking_uri().to_string();
        let started = self.local.start_with(run_id.clone(), name, start, params, &all_tags, Some(uri));
        if let Err(e) = started {
            // Don't leave a RUNNING run on the server for a run we cannot record.
            match &self.remote {
                Some(r) => {
                    let _ = self.client.update_run(&r.run_id, RunStatus::Failed, now_ms());
                }
                None => uplink.send(Job::End { status: RunStatus::Failed, end_ms: now_ms() }),
            }
            return Err(e);
        }
        uplink.state.set_where_local(self.local_dir());
        self.uplink = Some(uplink);
        if let Some(remote) = self.remote.clone() {
            self.record_remote(&remote)?;
        }
        // The run is known locally under this id: say so in the tag.
        self.send(Job::Params(params.to_vec()));
        self.send(Job::Tags(vec![(LOCAL_RUN_ID_TAG.to_string(), run_id.clone())]));
        Ok(run_id)
    }

    fn log_metrics(&mut self, metrics: &[Metric]) -> Result<(), TrackingError> {
        self.local.log_metrics(metrics)?;
        self.send(Job::Metrics(metrics.to_vec()));
        Ok(())
    }

    /// Waits until what was logged so far reached the server (at most the drain timeout).
    fn flush(&mut self) -> Result<(), TrackingError> {
        if let Some(uplink) = &self.uplink {
            uplink.drain(self.drain_timeout);
        }
        Ok(())
    }

    fn log_params(&mut self, params: &[(String, String)]) -> Result<(), TrackingError> {
        self.local.log_params(params)?;
        if !params.is_empty() {
            self.send(Job::Params(params.to_vec()));
        }
        Ok(())
    }

    fn set_tags(&mut self, tags: &[(String, String)]) -> Result<(), TrackingError> {
        self.local.set_tags(tags)?;
        if !tags.is_empty() {
            self.send(Job::Tags(tags.to_vec()));
        }
        Ok(())
    }

    fn log_inputs(&mut self, inputs: &[DatasetInput]) -> Result<(), TrackingError> {
        self.local.log_inputs(inputs)?;
        self.send(Job::Inputs(inputs.to_vec()));
        Ok(())
    }

    fn log_artifact(&mut self, local_path: &Path, artifact_dir: &str) -> Result<(), TrackingError> {
        if !self.local.is_active() {
            return Err(TrackingError::NoActiveRun);
        }
        let run = self.local.local_run_mut().ok_or(TrackingError::NoActiveRun)?;
        let rel = run.log_artifact(local_path, artifact_dir)?;
        // The local copy is what goes up: it stays as it is while the upload waits its turn.
        let path = run.artifact_path(&rel)?;
        self.send(Job::Artifact { rel, path });
        Ok(())
    }

    fn begin_model(&mut self, params: &[(String, String)]) -> Result<Option<String>, TrackingError> {
        self.adopt_late_remote()?;
        if self.remote.is_none() && self.is_server_pending() {
            // The model's metrics name a LoggedModel, which needs the server's run: without
            // it they cannot go there, and `engine sync` sends the run with its model later.
            let err = TrackingError::Unreachable {
                uri: util::redact_uri(self.client.tracking_uri()),
                detail: "it has not created the run by the time its model is recorded".into(),
                attempts: 1,
            };
            self.request_failed("MLflow create logged model", err);
        }
        let (Some(run_id), Some(experiment_id)) = (self.server_run_id(), self.experiment_id()) else {
            return Ok(None);
        };
        if !self.is_server_live() {
            return Ok(None);
        }
        let (run_id, experiment_id) = (run_id.to_string(), experiment_id.to_string());
        match self.client.create_logged_model(&experiment_id, &run_id, MODEL_ARTIFACT_DIR, params) {
            Ok(model) => {
                let id = model.model_id.clone();
                self.pending_model = Some(model);
                Ok(Some(id))
            }
            // A server without the LoggedModel API: the model goes to the run's artifacts only.
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => {
                self.request_failed("MLflow create logged model", e);
                Ok(None)
            }
        }
    }

    fn finish_model(&mut self, model_id: Option<&str>, dir: &Path, files: &[&str]) -> Result<(), TrackingError> {
        super::log_model_artifacts(self, model_id, dir, files)?;
        if let Some(model) = self.pending_model.take().filter(|m| Some(m.model_id.as_str()) == model_id) {
            // From the run's local copy, like every other artifact.
            let copy = self.local.local_run().map(|r| r.artifact_path(MODEL_ARTIFACT_DIR)).transpose()?;
            let dir = copy.unwrap_or_else(|| dir.to_path_buf());
            let files = files.iter().map(|f| f.to_string()).collect();
            self.send(Job::Model { model, dir, files });
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
        self.adopt_late_remote()?;
        // A server that has not answered once during the whole run is waited for briefly.
        let never_answered = self.remote.is_none();
        let mut wait = if never_answered { self.drain_timeout.min(START_WAIT) } else { self.drain_timeout };
        let Some(uplink) = &self.uplink else { return Ok(()) };
        uplink.send(Job::End { status, end_ms: end });
        let mut drained = uplink.drain(wait);
        // The server answered meanwhile: it gets the rest of the drain timeout.
        let answered = uplink.state.remote.lock().is_ok_and(|r| r.is_some());
        if !drained && wait < self.drain_timeout && answered && !uplink.state.disabled.load(Ordering::SeqCst) {
            drained = uplink.drain(self.drain_timeout - wait);
            wait = self.drain_timeout;
        }
        if !drained {
            uplink.state.dirty.store(true, Ordering::SeqCst);
            eprintln!(
                "warning: the MLflow server did not take the run within {:.0} s; it stays unsynced in the local store {}; {SYNC_HINT}",
                wait.as_secs_f64(),
                self.local_dir()
            );
        }
        self.adopt_late_remote()?;
        if self.remote.is_some() && self.is_in_sync() {
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
        let uri = util::redact_uri(self.client.tracking_uri());
        match &self.remote {
            None if self.local.is_active() && self.is_server_pending() => format!(
                "local store {} (MLflow {uri} not answering yet: the run goes there once it does, else {SYNC_HINT})",
                self.local_dir()
            ),
            Some(r) if self.is_server_live() => format!(
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
