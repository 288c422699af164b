//! The background thread that sends one run to an MLflow server, so that a slow or failing
//! server never holds up the training loop.
//!
//! Jobs arrive through a bounded queue and are sent in order. Metric points are batched: at most
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
    warned: AtomicBool,
}

impl UplinkState {
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
    where_local: String,
}

impl Uplink {
    /// Starts the thread sending to run `run_id` (artifacts under `artifact_uri`).
    pub fn start(
        client: MlflowClient,
        run_id: String,
        artifact_uri: String,
        flush_interval: Duration,
        where_local: String,
    ) -> Uplink {
        let (queue, jobs) = mpsc::sync_channel(QUEUE_CAPACITY);
        let state = Arc::new(UplinkState::default());
        let sender = Sender {
            client,
            run_id,
            artifact_uri,
            state: state.clone(),
            flush_interval,
            where_local: where_local.clone(),
            batch: Vec::new(),
        };
        let spawned = std::thread::Builder::new().name("mlflow-uplink".into()).spawn(move || sender.run(jobs));
        if let Err(e) = spawned {
            // Without the thread every send finds the queue disconnected: the run stays local.
            state.failed("MLflow uplink", &TrackingError::Config(e.to_string()), &where_local);
        }
        Uplink { queue, state, where_local }
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
                self.state.failed("MLflow uplink", &err, &self.where_local);
            }
        }
    }

    /// Waits until everything queued so far was sent (or given up on), at most `timeout`.
    /// False on timeout.
    pub fn drain(&self, timeout: Duration) -> bool {
        let (done, wait) = mpsc::channel();
        if self.queue.send(Job::Barrier(done)).is_err() {
            return true; // the thread is gone: nothing more will be sent
        }
        wait.recv_timeout(timeout).is_ok()
    }
}

/// The uplink thread's side.
struct Sender {
    client: MlflowClient,
    run_id: String,
    artifact_uri: String,
    state: Arc<UplinkState>,
    flush_interval: Duration,
    where_local: String,
    batch: Vec<Metric>,
}

impl Sender {
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
            self.state.failed(what, &e, &self.where_local);
        }
    }
}
