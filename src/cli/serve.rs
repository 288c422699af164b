//! `engine serve`: a model behind MLflow's scoring protocol (see `engine::serve`). The model is
//! found like `engine eval` finds one, verified and loaded before the port opens; with `--watch`
//! an alias is followed ([`watch`]). SIGTERM or Ctrl-C stops accepting connections and lets the
//! requests in flight finish.

mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use engine::Device;
use engine::serve::{
    BatchConfig, BatchHandle, Batcher, HttpConfig, ModelSource, ReportSources, ServedModel, batcher, http,
};
use engine::tracking::{ModelUri, TrackingConfig, VersionSelector};

use super::TrackingArgs;
use super::device::{DeviceChoice, open_device};
use super::locate::{locate, pinned, resolve_version};

/// How long a request body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Args)]
pub struct ServeArgs {
    /// The model: models:/NAME@ALIAS, models:/NAME/VERSION, models:/NAME/STAGE,
    /// models:/NAME/latest, models:/<model id>, runs:/RUN_ID/model, a run id, or a model directory.
    #[arg(long)]
    pub model_uri: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port; the address is printed at start).
    #[arg(long, default_value_t = 5001)]
    pub port: u16,
    /// Where the model runs.
    #[arg(long, value_enum, ignore_case = true, default_value_t = DeviceChoice::Cpu)]
    pub device: DeviceChoice,
    /// Follow the alias of a models:/NAME@ALIAS URI: poll the registry and, when the alias
    /// moves, load that version and swap it in without dropping a request.
    #[arg(long)]
    pub watch: bool,
    /// Seconds between two polls of the registry with --watch.
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    pub watch_interval: f64,
    /// Most images in one forward pass (a larger request runs alone).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_batch: u64,
    /// Longest wait, in milliseconds, for requests still being received before a batch runs.
    #[arg(long, default_value_t = 1.0, value_parser = seconds)]
    pub max_wait_ms: f64,
    /// Threads of each forward pass [default: half the cores, at least one; the others read
    /// and parse requests].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub threads: Option<u64>,
    /// Largest request body, in bytes; a larger one is answered 413.
    #[arg(long, default_value_t = 32 << 20, value_parser = clap::value_parser!(u64).range(1..=1 << 32))]
    pub max_body_bytes: u64,
    /// Log one line per request on stderr.
    #[arg(long)]
    pub access_log: bool,
    /// Seconds between two logs of the batch sizes while requests come in (0: only at shutdown).
    #[arg(long, default_value_t = 60.0, value_parser = seconds)]
    pub batch_log_interval: f64,
    /// Seconds to let requests in flight finish after SIGTERM or Ctrl-C.
    #[arg(long, default_value_t = 30.0, value_parser = seconds)]
    pub shutdown_timeout: f64,
    #[command(flatten)]
    pub tracking: TrackingArgs,
}

/// A non-negative, finite number of seconds (or milliseconds).
fn seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && (0.0..=1e6).contains(&value) => Ok(value),
        _ => Err(format!("'{text}' is not a number from 0 to 1000000")),
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let uri = ModelUri::parse(&args.model_uri)?;
    let follows_alias = matches!(&uri, ModelUri::Registered { selector: VersionSelector::Alias(_), .. });
    if args.watch && !follows_alias {
        return Err(super::UsageError(format!(
            "--watch follows an alias: --model-uri must be models:/NAME@ALIAS, not {} (read as {})",
            args.model_uri,
            uri.describe()
        ))
        .into());
    }
    let tracking = args.tracking.config(None);
    let reports = report_sources(&uri, &tracking);
    let (device, device_name) = open_device(args.device)?;
    let model = load(&args.model_uri, &uri, &tracking, &device, &device_name)?;
    eprintln!("serve: loaded {}", batcher::describe(model.info()));
    let version = model.info().version.clone();
    let threads = args.threads.map_or_else(default_threads, |t| t as usize);
    let config = BatchConfig {
        max_rows: args.max_batch as usize,
        max_wait: Duration::from_secs_f64(args.max_wait_ms / 1e3),
        threads,
        log_every: (args.batch_log_interval > 0.0).then(|| Duration::from_secs_f64(args.batch_log_interval)),
    };
    let batcher = Batcher::start(model, config).context("cannot start the inference thread")?;
    let watcher = match (args.watch, version) {
        (true, Some(version)) => {
            let interval = Duration::from_secs_f64(args.watch_interval.max(0.05));
            let loader =
                Loader { input: args.model_uri.clone(), uri, tracking, device, device_name: device_name.clone() };
            Some(watch::start(loader, version, interval, batcher.handle())?)
        }
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("engine-http")
        .build()
        .context("cannot start the HTTP runtime")?;
    let description =
        format!("{device_name}, {threads} inference thread(s), batches of up to {} images", args.max_batch);
    let served = runtime.block_on(serve_until_signal(&args, batcher.handle(), reports, &description));
    if let Some(watcher) = watcher {
        watcher.stop();
    }
    batcher.shutdown();
    // Connections still open past the shutdown timeout are dropped here.
    runtime.shutdown_timeout(Duration::from_millis(100));
    served?;
    eprintln!("serve: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Half the cores, at least one: the other half read and parse requests.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// Serves until SIGTERM or Ctrl-C, then for at most `--shutdown-timeout` while the requests in
/// flight finish.
async fn serve_until_signal(
    args: &ServeArgs,
    batcher: BatchHandle,
    reports: ReportSources,
    description: &str,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let address = listener.local_addr()?;
    let config = HttpConfig {
        max_body_bytes: usize::try_from(args.max_body_bytes).unwrap_or(usize::MAX),
        body_timeout: BODY_TIMEOUT,
        access_log: args.access_log,
        reports,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, http::router(batcher, config), async {
        let _ = stopped.await;
    }));
    eprintln!("serve: listening on http://{address} ({description})");
    let mut server = server;
    tokio::select! {
        finished = &mut server => {
            return match finished {
                Ok(result) => result.context("the HTTP server stopped"),
                Err(e) => bail!("the HTTP server failed: {e}"),
            };
        }
        signal = shutdown_signal() => eprintln!("serve: {signal}: finishing the requests in flight"),
    }
    let _ = stop.send(());
    let grace = Duration::from_secs_f64(args.shutdown_timeout);
    match tokio::time::timeout(grace, server).await {
        Ok(Ok(result)) => result.context("the HTTP server stopped"),
        Ok(Err(e)) => bail!("the HTTP server failed: {e}"),
        Err(_) => {
            eprintln!("serve: requests still open after {} s; closing them", grace.as_secs_f64());
            Ok(())
        }
    }
}

/// Where the page's model card looks for test reports: training's output directory when the
/// model is a directory in it, and the local store's copy of the run.
fn report_sources(uri: &ModelUri, tracking: &TrackingConfig) -> ReportSources {
    let model_parent = match uri {
        ModelUri::Directory(dir) => dir.canonicalize().ok().and_then(|d| d.parent().map(PathBuf::from)),
        _ => None,
    };
    ReportSources { model_parent, local_store: Some(tracking.local_root.clone()) }
}

/// Waits for SIGTERM or Ctrl-C (SIGINT); says which.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "interrupted",
                _ = terminate.recv() => "terminated",
            },
            Err(_) => tokio::signal::ctrl_c().await.map_or("signal handling failed", |()| "interrupted"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_or("signal handling failed", |()| "interrupted")
    }
}

/// Loads the model a URI names, now: for an alias, the version it points to at this moment.
pub struct Loader {
    /// The URI as given.
    input: String,
    uri: ModelUri,
    tracking: TrackingConfig,
    device: Device,
    device_name: String,
}

impl Loader {
    /// Registered version `version` of the alias's model.
    fn load_version(&self, version: &str) -> anyhow::Result<ServedModel> {
        let ModelUri::Registered { name, .. } = &self.uri else { bail!("{} names no registered model", self.input) };
        let source =
            ModelSource { model_uri: self.input.clone(), name: Some(name.clone()), version: Some(version.to_string()) };
        load_from(&self.input, &pinned(name, version), source, &self.tracking, &self.device, &self.device_name)
    }
}

/// The model `uri` (read from `input`) names, verified and on `device`: a registry URI is
/// resolved to its version once, so the version served is the version named.
fn load(
    input: &str,
    uri: &ModelUri,
    tracking: &TrackingConfig,
    device: &Device,
    device_name: &str,
) -> anyhow::Result<ServedModel> {
    if let ModelUri::Registered { .. } = uri {
        let (_, version) = resolve_version(input, uri, tracking)?;
        let source = ModelSource {
            model_uri: input.to_string(),
            name: Some(version.name.clone()),
            version: Some(version.version.clone()),
        };
        return load_from(input, &pinned(&version.name, &version.version), source, tracking, device, device_name);
    }
    let source = ModelSource { model_uri: input.to_string(), ..ModelSource::default() };
    load_from(input, uri, source, tracking, device, device_name)
}

/// Finds (downloading into a scratch directory when it is on a server) and loads `uri`.
fn load_from(
    input: &str,
    uri: &ModelUri,
    source: ModelSource,
    tracking: &TrackingConfig,
    device: &Device,
    device_name: &str,
) -> anyhow::Result<ServedModel> {
    let scratch = scratch_dir();
    let loaded = locate(input, uri, tracking, &scratch)
        .and_then(|located| Ok(ServedModel::load(&located.dir, device, device_name, source)?));
    let _ = std::fs::remove_dir_all(&scratch);
    loaded.context("cannot load the model")
}

/// A directory name of this process's own for one download (not created here).
fn scratch_dir() -> PathBuf {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("engine-serve-{}-{n}", std::process::id()))
}
