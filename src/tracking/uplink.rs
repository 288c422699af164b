//! The background thread that sends one run to an MLflow server, so that a slow or failing
//! server never holds up the training loop.
//!
//! The thread first creates the run on the server (and its experiment when missing): a first try
//! without retries tells the training side at once whether the server answers, and the retries
//! then go on in the background while the run is recorded locally. Jobs arrive through a bounded queue and are sent in order. Metric points are batched: at most
//! once per flush interval, when a full batch (1000) is waiting, and before any other job. When
//! the server cannot be reached (after the client's bounded retries) or the queue overflows, the
//! uplink gives up on the server for the rest of the run and marks it dirty: the local store has
//! everything, and `engine sync` sends it later.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::MlflowClient;
use super::error::TrackingError;
use super::models::LoggedModel;
use super::wire::MAX_METRICS_PER_BATCH;
use super::{DatasetInput, Metric, RunStatus};

/// Jobs that may wait in the queue; past this the server is too slow to keep up with the run.
const QUEUE_CAPACITY: usize = 4096;

/// What to tell a user whose run did not reach the server.
pub const SYNC_HINT: &str = "push it later with `engine sync`";

/// The server's run an uplink sends to.
#[derive(Clone, Debug)]
pub(crate) struct RemoteRun {
    pub experiment_id: String,
    pub run_id: String,
    pub artifact_uri: String,
}

/// What creating the run on the server takes.
pub(crate) struct NewRun {
    pub experiment: String,
    pub name: String,
    pub start_ms: i64,
    pub user: String,
    pub tags: Vec<(String, String)>,
}

/// The first news of the server run, for the training side.
pub(crate) enum Started {
    /// The server created the run.
    Created(RemoteRun),
    /// The server did not answer the first try; the uplink goes on trying in the background.
    NotYet(String),
    /// The server refused the run (already reported): it stays local.
    Refused,
}

/// One thing to send.
pub(crate) enum Job {
    Metrics(Vec<Metric>),
    Params(Vec<(String, String)>),
    Tags(Vec<(String, String)>),
    Inputs(Vec<DatasetInput>),
    /// A file under the run's artifacts, from its local copy.
    Artifact {
        rel: String,
        path: PathBuf,
    },
    /// A LoggedModel's files, then its status and its link to the run.
    Model {
        model: LoggedModel,
        dir: PathBuf,
        files: Vec<String>,
    },
    /// The run's final status and end time.
    End {
        status: RunStatus,
        end_ms: i64,
    },
    /// Answers once everything queued before it was sent.
    Barrier(mpsc::Sender<()>),
}

/// What the training side and the uplink thread both see.
#[derive(Debug, Default)]
pub(crate) struct UplinkState {
    /// The server is given up on for this run.
    pub disabled: AtomicBool,
    /// Something did not reach the server.
    pub dirty: AtomicBool,
    /// Metric points queued or batched but not yet sent.
    pub pending_points: AtomicUsize,
    pub last_error: Mutex<Option<String>>,
    /// The server's run, once created.
    pub remote: Mutex<Option<RemoteRun>>,
    /// Where the run is kept locally, for the warnings.
    where_local: Mutex<String>,
    warned: AtomicBool,
}

impl UplinkState {
    /// Where the run is kept locally: the store until the local run exists, then its directory.
    pub fn where_local(&self) -> String {
        self.where_local.lock().map(|w| w.clone()).unwrap_or_default()
    }

    pub fn set_where_local(&self, place: String) {
        if let Ok(mut w) = self.where_local.lock() {
            *w = place;
        }
    }

    /// Records a failed send; warns once. `where_local` says where the run is kept.
    pub fn failed(&self, what: &str, err: &TrackingError, where_local: &str) {
        self.dirty.store(true, Ordering::SeqCst);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(err.to_string());
        }
        let unavailable = err.is_server_unavailable();
        if unavailable {
            self.disabled.store(true, Ordering::SeqCst);
        }
        if !self.warned.swap(true, Ordering::SeqCst) {
            if unavailable {
                eprintln!(
                    "warning: {what}: {err}; the run goes on in the local store {where_local} (unsynced); {SYNC_HINT}"
                );
            } else {
                eprintln!("warning: {what}: {err}; kept in the local store {where_local} (unsynced)");
            }
        }
    }
}

/// The training side of the uplink.
pub(crate) struct Uplink {
    queue: SyncSender<Job>,
    pub state: Arc<UplinkState>,
}

impl Uplink {
    /// Starts the thread that creates `new_run` on the server, then sends it the queued jobs.
    /// The receiver hears how the first try went: at once when the server answers or refuses
    /// the connection, only after the request timeout when it never answers.
    pub fn start(
        client: MlflowClient,
        new_run: NewRun,
        flush_interval: Duration,
        where_local: String,
    ) -> (Uplink, Receiver<Started>) {
        let (queue, jobs) = mpsc::sync_channel(QUEUE_CAPACITY);
        let (started, first_news) = mpsc::channel();
        let state = Arc::new(UplinkState::default());
        state.set_where_local(where_local.clone());
        let sender = Sender {
            client,
            run_id: String::new(),
            artifact_uri: String::new(),
            state: state.clone(),
            flush_interval,
            batch: Vec::new(),
        };
        let spawned = std::thread::Builder::new().name("mlflow-uplink".into()).spawn(move || {
            let mut sender = sender;
            sender.create(new_run, &started);
            sender.run(jobs)
        });
        if let Err(e) = spawned {
            // Without the thread every send finds the queue disconnected: the run stays local.
            state.failed("MLflow uplink", &TrackingError::Config(e.to_string()), &where_local);
            state.disabled.store(true, Ordering::SeqCst);
        }
        (Uplink { queue, state }, first_news)
    }

    /// Queues a job without waiting: a full queue gives up on the server for this run.
    pub fn send(&self, job: Job) {
        if self.state.disabled.load(Ordering::SeqCst) {
            self.state.dirty.store(true, Ordering::SeqCst);
            return;
        }
        if let Job::Metrics(points) = &job {
            self.state.pending_points.fetch_add(points.len(), Ordering::SeqCst);
        }
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                if let Job::Metrics(points) = &job {
                    self.state.pending_points.fetch_sub(points.len(), Ordering::SeqCst);
                }
                let err = TrackingError::Unreachable {
                    uri: "the MLflow server".into(),
                    detail: "it does not keep up with the run".into(),
                    attempts: 1,
                };
                self.state.failed("MLflow uplink", &err, &self.state.where_local());
            }
        }
    }

    /// Waits until everything queued so far was sent (or given up on), at most `timeout`.
    /// False on timeout.
    pub fn drain(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (done, wait) = mpsc::channel();
        let mut barrier = Job::Barrier(done);
        // Never blocks on a full queue past the deadline (the thread may be stuck on the server).
        loop {
            match self.queue.try_send(barrier) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return true, // the thread is gone: nothing more will be sent
                Err(TrySendError::Full(job)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                    barrier = job;
                }
                Err(TrySendError::Full(_)) => return false,
            }
        }
        wait.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_ok()
    }
}

/// The uplink thread's side.
struct Sender {
    client: MlflowClient,
    run_id: String,
    artifact_uri: String,
    state: Arc<UplinkState>,
    flush_interval: Duration,
    batch: Vec<Metric>,
}

impl Sender {
    /// Creates the run on the server: one try first, whose outcome `started` hears, then the
    /// client's retries if the server did not answer. A run the server does not take stays
    /// local: every job after it is skipped and the run is marked unsynced.
    fn create(&mut self, new_run: NewRun, started: &mpsc::Sender<Started>) {
        let first = self.client.first_contact().get_or_create_experiment(&new_run.experiment);
        let experiment = match first {
            Err(e) if e.is_server_unavailable() => {
                let _ = started.send(Started::NotYet(e.to_string()));
                self.client.get_or_create_experiment(&new_run.experiment)
            }
            other => other,
        };
        let NewRun { name, start_ms, user, tags, .. } = &new_run;
        let created = experiment.and_then(|experiment_id| {
            let info = self.client.create_run(&experiment_id, name, *start_ms, user, tags)?;
            Ok(RemoteRun { experiment_id, run_id: info.run_id, artifact_uri: info.artifact_uri })
        });
        match created {
            Ok(remote) => {
                self.run_id = remote.run_id.clone();
                self.artifact_uri = remote.artifact_uri.clone();
                if let Ok(mut slot) = self.state.remote.lock() {
                    *slot = Some(remote.clone());
                }
                let _ = started.send(Started::Created(remote));
            }
            Err(e) => {
                self.state.failed("MLflow start run", &e, &self.state.where_local());
                self.state.disabled.store(true, Ordering::SeqCst);
                let _ = started.send(Started::Refused);
            }
        }
    }

    fn run(mut self, jobs: Receiver<Job>) {
        let mut last_flush = Instant::now();
        loop {
            let job = if self.batch.is_empty() {
                jobs.recv().ok()
            } else {
                match jobs.recv_timeout(self.flush_interval.saturating_sub(last_flush.elapsed())) {
                    Ok(job) => Some(job),
                    Err(RecvTimeoutError::Timeout) => {
                        self.send_batch();
                        last_flush = Instant::now();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                }
            };
            let Some(job) = job else {
                self.send_batch();
                return;
            };
            if let Job::Metrics(points) = job {
                self.batch.extend(points);
                if self.batch.len() >= MAX_METRICS_PER_BATCH || last_flush.elapsed() >= self.flush_interval {
                    self.send_batch();
                    last_flush = Instant::now();
                }
                continue;
            }
            self.send_batch();
            last_flush = Instant::now();
            self.perform(job);
        }
    }

    fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let points = std::mem::take(&mut self.batch);
        self.attempt("MLflow log metrics", |c, run| c.log_batch(run, &points, &[], &[]));
        self.state.pending_points.fetch_sub(points.len(), Ordering::SeqCst);
    }

    fn perform(&mut self, job: Job) {
        let artifact_uri = self.artifact_uri.clone();
        match job {
            Job::Metrics(_) => {}
            Job::Params(params) => {
                self.attempt("MLflow log params", |c, run| c.log_batch(run, &[], &params, &[]));
            }
            Job::Tags(tags) => {
                self.attempt("MLflow set tags", |c, run| c.log_batch(run, &[], &[], &tags));
            }
            Job::Inputs(inputs) => {
                self.attempt("MLflow log inputs", |c, run| c.log_inputs(run, &inputs));
            }
            Job::Artifact { rel, path } => {
                self.attempt("MLflow upload artifact", |c, _| c.upload_artifact_file(&artifact_uri, &rel, &path));
            }
            Job::Model { model, dir, files } => {
                let files: Vec<&str> = files.iter().map(String::as_str).collect();
                self.attempt("MLflow upload logged model", |c, run| {
                    c.upload_logged_model(&model, run, &dir, &files, 0)
                });
            }
            Job::End { status, end_ms } => {
                self.attempt("MLflow end run", |c, run| c.update_run(run, status, end_ms).map(|_| ()));
            }
            Job::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }

    /// Sends one request unless the server was given up on; a failure is recorded, not returned.
    fn attempt(&self, what: &str, send: impl FnOnce(&MlflowClient, &str) -> Result<(), TrackingError>) {
        if self.state.disabled.load(Ordering::SeqCst) {
            self.state.dirty.store(true, Ordering::SeqCst);
        } else if let Err(e) = send(&self.client, &self.run_id) {
            self.state.failed(what, &e, &self.state.where_local());
        }
    }
}
