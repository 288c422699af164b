//! Dynamic batching: the requests of many connections share one forward pass. One inference
//! thread owns the model; handlers queue their images and await the answer. The thread takes
//! what is queued (up to `max_rows` images) and runs it at once. It waits for more, at most
//! `max_wait`, only while other requests are still being read and parsed, so a lone client is
//! never delayed and a busy server fills its batches from the requests that arrive while the
//! previous batch runs. A new model is swapped in between two batches: no request is dropped,
//! and each answer names the model that computed it.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::model::{ModelInfo, ServedModel};
use super::protocol::Images;

/// How batches are formed and run.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Most images in one forward pass; a larger request runs alone.
    pub max_rows: usize,
    /// Longest wait for requests still being read before a batch runs.
    pub max_wait: Duration,
    /// Threads of the CPU matmul inside a forward pass.
    pub threads: usize,
    /// How often to log the batch sizes while requests come in (`None`: only at shutdown).
    pub log_every: Option<Duration>,
}

/// A request's answer.
#[derive(Debug)]
pub struct Prediction {
    /// `[rows, classes]` probabilities, row-major.
    pub probabilities: Vec<f32>,
    /// The model that computed them.
    pub model: Arc<ModelInfo>,
}

/// Why a request got no prediction.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PredictError {
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("inference failed: {0}")]
    Failed(String),
    /// The request was read for a model whose rows have another length than the one now
    /// answering (a swap came between them).
    #[error("{0}")]
    WrongShape(String),
}

struct Job {
    images: Images,
    reply: oneshot::Sender<Result<Prediction, PredictError>>,
}

enum Message {
    Predict(Job),
    Swap(Box<ServedModel>),
    Stop,
}

/// The inference thread; [`Batcher::handle`] gives what handlers use.
pub struct Batcher {
    handle: BatchHandle,
    worker: Option<JoinHandle<()>>,
}

/// Queues requests and model swaps; cheap to clone.
#[derive(Clone)]
pub struct BatchHandle {
    queue: mpsc::Sender<Message>,
    arriving: Arc<AtomicUsize>,
    current: Arc<RwLock<Arc<ModelInfo>>>,
}

/// A request being read: while any exists, a batch may wait for it (see the module docs).
pub struct Arrival(Arc<AtomicUsize>);

impl Drop for Arrival {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Batcher {
    /// Starts the inference thread with `model`.
    pub fn start(model: ServedModel, config: BatchConfig) -> std::io::Result<Batcher> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads.max(1))
            .thread_name(|i| format!("engine-infer-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        let (queue, inbox) = mpsc::channel();
        let arriving = Arc::new(AtomicUsize::new(0));
        let current = Arc::new(RwLock::new(model.info().clone()));
        let worker = Worker {
            inbox,
            arriving: arriving.clone(),
            current: current.clone(),
            model,
            stats: Stats::new(config.log_every),
            config,
        };
        // The loop runs inside the pool, so the matmul's rayon calls use its threads and a
        // one-thread pool runs every batch on this same thread, with no hand-off.
        let worker =
            std::thread::Builder::new().name("engine-batcher".into()).spawn(move || pool.install(|| worker.run()))?;
        Ok(Batcher { handle: BatchHandle { queue, arriving, current }, worker: Some(worker) })
    }

    pub fn handle(&self) -> BatchHandle {
        self.handle.clone()
    }

    /// Answers everything queued, logs the batch sizes and stops the thread.
    pub fn shutdown(mut self) {
        let _ = self.handle.queue.send(Message::Stop);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl BatchHandle {
    /// Marks a request as arriving; pass the guard to [`BatchHandle::predict`].
    pub fn arrival(&self) -> Arrival {
        self.arriving.fetch_add(1, Ordering::AcqRel);
        Arrival(self.arriving.clone())
    }

    /// Queues `images` and waits for their probabilities.
    pub async fn predict(&self, images: Images, arrival: Arrival) -> Result<Prediction, PredictError> {
        let (reply, answer) = oneshot::channel();
        let queued = self.queue.send(Message::Predict(Job { images, reply }));
        // Queued first, then no longer arriving: the batcher never sees it as neither.
        drop(arrival);
        queued.map_err(|_| PredictError::ShuttingDown)?;
        answer.await.map_err(|_| PredictError::ShuttingDown)?
    }

    /// Serves `model` from the next batch on.
    pub fn swap(&self, model: ServedModel) -> Result<(), PredictError> {
        self.queue.send(Message::Swap(Box::new(model))).map_err(|_| PredictError::ShuttingDown)
    }

    /// The model answering now.
    pub fn current(&self) -> Arc<ModelInfo> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// What ends a batch besides reaching `max_rows` or running out of requests.
enum Next {
    Nothing,
    /// A request that would overflow the batch: it starts the next one.
    Carry(Job),
    Swap(Box<ServedModel>),
    Stop,
}

struct Worker {
    inbox: mpsc::Receiver<Message>,
    arriving: Arc<AtomicUsize>,
    current: Arc<RwLock<Arc<ModelInfo>>>,
    model: ServedModel,
    config: BatchConfig,
    stats: Stats,
}

impl Worker {
    fn run(mut self) {
        let mut carried = None;
        loop {
            let first = match carried.take() {
                Some(job) => job,
                None => match self.inbox.recv() {
                    Ok(Message::Predict(job)) => job,
                    Ok(Message::Swap(model)) => {
                        self.swap(*model);
                        continue;
                    }
                    Ok(Message::Stop) | Err(_) => break,
                },
            };
            let (jobs, next) = self.gather(first);
            self.run_batch(jobs);
            match next {
                Next::Nothing => {}
                Next::Carry(job) => carried = Some(job),
                Next::Swap(model) => self.swap(*model),
                Next::Stop => break,
            }
        }
        self.stats.log_total();
    }

    /// `first` and whatever joins it in one batch.
    fn gather(&self, first: Job) -> (Vec<Job>, Next) {
        let deadline = Instant::now() + self.config.max_wait;
        let mut rows = first.images.rows;
        let mut jobs = vec![first];
        while rows < self.config.max_rows {
            let message = match self.inbox.try_recv() {
                Ok(message) => message,
                Err(TryRecvError::Disconnected) => return (jobs, Next::Stop),
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if self.arriving.load(Ordering::Acquire) == 0 || now >= deadline {
                        break;
                    }
                    match self.inbox.recv_timeout(deadline - now) {
                        Ok(message) => message,
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return (jobs, Next::Stop),
                    }
                }
            };
            match message {
                Message::Predict(job) if rows + job.images.rows <= self.config.max_rows => {
                    rows += job.images.rows;
                    jobs.push(job);
                }
                Message::Predict(job) => return (jobs, Next::Carry(job)),
                Message::Swap(model) => return (jobs, Next::Swap(model)),
                Message::Stop => return (jobs, Next::Stop),
            }
        }
        (jobs, Next::Nothing)
    }

    fn run_batch(&mut self, jobs: Vec<Job>) {
        let started = Instant::now();
        let inputs = self.model.inputs();
        let (jobs, stale): (Vec<Job>, Vec<Job>) =
            jobs.into_iter().partition(|job| Some(job.images.pixels.len()) == job.images.rows.checked_mul(inputs));
        for job in stale {
            let values = job.images.pixels.len() / job.images.rows.max(1);
            let message = format!("the rows have {values} values, but the model now answering takes {inputs}");
            let _ = job.reply.send(Err(PredictError::WrongShape(message)));
        }
        if jobs.is_empty() {
            return;
        }
        let rows: usize = jobs.iter().map(|j| j.images.rows).sum();
        let mut replies = Vec::with_capacity(jobs.len());
        let mut pixels: Vec<f32> = Vec::new();
        for job in jobs {
            if pixels.is_empty() {
                // The first request's buffer becomes the batch's: one request is never copied.
                pixels = job.images.pixels;
                pixels.reserve((rows * self.model.inputs()).saturating_sub(pixels.len()));
            } else {
                pixels.extend_from_slice(&job.images.pixels);
            }
            replies.push((job.images.rows, job.reply));
        }
        // A panic in a kernel must cost this batch, not the server.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| self.model.predict(pixels, rows)));
        let outcome = match result {
            Ok(Ok(p)) if p.iter().all(|v| v.is_finite()) => Ok(p),
            Ok(Ok(_)) => Err("the model computed a non-finite probability".to_string()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(panic) => Err(panic_message(panic.as_ref())),
        };
        match outcome {
            Ok(probabilities) => {
                let mut chunks = probabilities.chunks((probabilities.len() / rows.max(1)).max(1));
                for (n, reply) in replies {
                    let mine: Vec<f32> = chunks.by_ref().take(n).flatten().copied().collect();
                    let _ = reply.send(Ok(Prediction { probabilities: mine, model: self.model.info().clone() }));
                }
            }
            Err(message) => {
                eprintln!("serve: a batch of {rows} images failed: {message}");
                for (_, reply) in replies {
                    let _ = reply.send(Err(PredictError::Failed(message.clone())));
                }
            }
        }
        self.stats.record(rows, started.elapsed());
    }

    fn swap(&mut self, model: ServedModel) {
        let info = model.info().clone();
        self.model = model;
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = info.clone();
        eprintln!("serve: now serving {}", describe(&info));
    }
}

/// "fashion version 3 (run 0123abcd)" or the URI, for logs.
pub fn describe(info: &ModelInfo) -> String {
    let mut text = match (&info.name, &info.version) {
        (Some(name), Some(version)) => format!("{name} version {version}"),
        _ => info.model_uri.clone(),
    };
    if let Some(run) = &info.run_id {
        text.push_str(&format!(" (run {run})"));
    }
    text
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
    format!("panicked: {}", text.unwrap_or_default())
}

/// Batch sizes over a logging interval and since the start.
struct Stats {
    log_every: Option<Duration>,
    window: Window,
    total: Window,
}

/// Counts of batches by size: 1, 2-3, 4-7, ..., 256 and more.
#[derive(Clone)]
struct Window {
    since: Instant,
    batches: u64,
    rows: u64,
    largest: usize,
    busy: Duration,
    by_size: [u64; 9],
}

impl Window {
    fn new() -> Self {
        Window { since: Instant::now(), batches: 0, rows: 0, largest: 0, busy: Duration::ZERO, by_size: [0; 9] }
    }

    fn record(&mut self, rows: usize, busy: Duration) {
        self.batches += 1;
        self.rows += rows as u64;
        self.largest = self.largest.max(rows);
        self.busy += busy;
        let bucket = (usize::BITS - rows.max(1).leading_zeros() - 1) as usize;
        self.by_size[bucket.min(self.by_size.len() - 1)] += 1;
    }

    fn line(&self, what: &str) -> String {
        let elapsed = self.since.elapsed().as_secs_f64();
        let sizes: Vec<String> = self
            .by_size
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(i, n)| match i {
                0 => format!("1: {n}"),
                8 => format!("256+: {n}"),
                _ => format!("{}-{}: {n}", 1 << i, (2 << i) - 1),
            })
            .collect();
        format!(
            "serve: batches {what}: {} batches of {} images, {:.1} per batch (largest {}), sizes {{{}}}, inference busy {:.0}% of {elapsed:.1} s",
            self.batches,
            self.rows,
            self.rows as f64 / self.batches.max(1) as f64,
            self.largest,
            sizes.join(", "),
            100.0 * self.busy.as_secs_f64() / elapsed.max(1e-9),
        )
    }
}

impl Stats {
    fn new(log_every: Option<Duration>) -> Self {
        Stats { log_every, window: Window::new(), total: Window::new() }
    }

    fn record(&mut self, rows: usize, busy: Duration) {
        self.window.record(rows, busy);
        self.total.record(rows, busy);
        if let Some(every) = self.log_every
            && self.window.since.elapsed() >= every
        {
            eprintln!("{}", self.window.line("lately"));
            self.window = Window::new();
        }
    }

    fn log_total(&self) {
        if self.total.batches > 0 {
            eprintln!("{}", self.total.line("in all"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_sizes_fall_in_power_of_two_buckets() {
        let mut window = Window::new();
        for rows in [1, 2, 3, 4, 8, 300] {
            window.record(rows, Duration::ZERO);
        }
        assert_eq!(window.by_size, [1, 2, 1, 1, 0, 0, 0, 0, 1]);
        let line = window.line("x");
        assert!(line.contains("1: 1, 2-3: 2, 4-7: 1, 8-15: 1, 256+: 1"), "{line}");
        assert!(line.contains("6 batches of 318 images"), "{line}");
    }
}
