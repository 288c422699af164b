//! `engine ui`: MLflow's UI over this project's runs in one command. It starts MLflow's own
//! server on a store in the project directory (`mlflow ui`'s defaults: `mlflow.db` and
//! `mlartifacts/`), pushes every local run into it, then keeps pushing runs as they are recorded,
//! a training in another terminal epoch by epoch, until Ctrl-C or SIGTERM, which stop the server
//! it started and nothing else. With `--tracking-uri` it syncs into that server instead.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use engine::tracking::{
    self, MlflowClient, MlflowServer, ServerError, ServerOptions, StoreWatcher, SyncOutcome, SyncedRun,
};

use super::UsageError;

#[derive(Args)]
pub struct UiArgs {
    /// Port of the MLflow server to start.
    #[arg(long, default_value_t = 5000)]
    port: u16,
    /// Address the server listens on (0.0.0.0: every interface).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Where the server keeps runs (MLflow's default; a relative path is in this directory).
    #[arg(long, default_value = "sqlite:///mlflow.db")]
    backend_store_uri: String,
    /// Where the server keeps artifacts and models (MLflow's default).
    #[arg(long, default_value = "mlartifacts")]
    artifacts_destination: PathBuf,
    /// Server worker processes (MLflow's default is 4; one serves one person and starts faster).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    workers: u32,
    /// The mlflow executable [default: ./.venv-mlflow/bin/mlflow, else mlflow on the PATH].
    #[arg(long, env = "ENGINE_MLFLOW", value_name = "PATH")]
    mlflow: Option<PathBuf>,
    /// Sync into this running MLflow server instead of starting one [env: MLFLOW_TRACKING_URI].
    #[arg(long, value_name = "URL")]
    tracking_uri: Option<String>,
    /// Open the UI in a browser (xdg-open or open).
    #[arg(long)]
    open: bool,
    /// Seconds between looks at the local store for new or changed runs.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    poll_interval: f64,
    /// Seconds to wait for the server to answer after starting it.
    #[arg(long, default_value_t = 180, value_name = "SECONDS")]
    start_timeout: u64,
}

pub fn run(args: UiArgs) -> anyhow::Result<ExitCode> {
    if !(args.poll_interval.is_finite() && args.poll_interval > 0.0) {
        return Err(UsageError(format!(
            "--poll-interval must be a positive number of seconds, got {}",
            args.poll_interval
        ))
        .into());
    }
    let interrupted = super::interrupt::install_with_message(
        "interrupt: stopping the MLflow server and exiting (Ctrl-C again to exit now)",
    );
    let config = tracking::TrackingConfig::from_env(args.tracking_uri.clone(), None, None);
    let project_dir = std::env::current_dir().context("cannot read the current directory")?;
    let (mut server, uri) = match config.tracking_uri.clone() {
        Some(uri) => (None, uri),
        None => match start_server(&args, &project_dir, &interrupted) {
            Ok(server) => {
                let url = server.url().to_string();
                (Some(server), url)
            }
            Err(ServerError::Interrupted) => return Ok(ExitCode::from(130)),
            Err(e @ (ServerError::NotFound { .. } | ServerError::NotExecutable { .. })) => {
                return Err(UsageError(e.to_string()).into());
            }
            Err(e) => return Err(e.into()),
        },
    };
    let client = MlflowClient::from_env(&uri)?;
    if server.is_none() {
        client.health().with_context(|| {
            format!(
                "no MLflow server answers at {uri}: start it, or leave out --tracking-uri and MLFLOW_TRACKING_URI to have engine ui start one"
            )
        })?;
    }
    let mut watcher = StoreWatcher::new(&config.local_root, client)?;
    let pushed = watcher.poll().with_context(|| format!("cannot sync the local store into {uri}"))?;
    print_pushed(&pushed);
    println!("MLflow UI: {uri}");
    println!("following {} (new runs appear within seconds); Ctrl-C to stop", config.local_root.display());
    if args.open {
        open_browser(&uri);
    }
    let interval = Duration::from_secs_f64(args.poll_interval);
    let result = watch(&mut watcher, server.as_mut(), &interrupted, interval);
    if let Some(mut server) = server.take() {
        server.stop();
        eprintln!("stopped the MLflow server (pid {})", server.pid());
    }
    result.map(|()| ExitCode::SUCCESS)
}

/// Finds `mlflow`, starts it on a store in `project_dir`, and says where it is.
fn start_server(args: &UiArgs, project_dir: &Path, interrupted: &AtomicBool) -> Result<MlflowServer, ServerError> {
    let path_var = std::env::var_os("PATH");
    let mlflow = tracking::find_mlflow(args.mlflow.as_deref(), project_dir, path_var.as_deref())?;
    let options = ServerOptions {
        mlflow,
        host: args.host.clone(),
        port: args.port,
        backend_store_uri: args.backend_store_uri.clone(),
        artifacts_destination: project_dir.join(&args.artifacts_destination),
        workers: args.workers,
        project_dir: project_dir.to_path_buf(),
        start_timeout: Duration::from_secs(args.start_timeout),
    };
    eprintln!(
        "starting {} server (store {}, artifacts {}) ...",
        options.mlflow.display(),
        options.backend_store_uri,
        options.artifacts_destination.display()
    );
    let server = MlflowServer::start(&options, interrupted)?;
    eprintln!("MLflow server (pid {}) answers at {}", server.pid(), server.url());
    Ok(server)
}

/// Looks at the local store every `interval` until interrupted; fails when the server it
/// started dies. A server that cannot be reached is reported once and tried again.
fn watch(
    watcher: &mut StoreWatcher,
    mut server: Option<&mut MlflowServer>,
    interrupted: &AtomicBool,
    interval: Duration,
) -> anyhow::Result<()> {
    let mut last_error: Option<String> = None;
    loop {
        if sleep_unless_interrupted(interval, interrupted) {
            return Ok(());
        }
        if let Some(server) = server.as_deref_mut()
            && let Some(status) = server.exit_status()
        {
            server.stop();
            let log = server.log_tail();
            return Err(ServerError::Exited { status, when: "while engine ui was running", log }.into());
        }
        match watcher.poll() {
            Ok(pushed) => {
                if last_error.take().is_some() {
                    eprintln!("{} answers again", watcher.tracking_uri());
                }
                print_pushed(&pushed);
            }
            Err(e) => {
                let message = e.to_string();
                if last_error.as_ref() != Some(&message) {
                    eprintln!("warning: cannot sync: {message} (trying again every {} s)", interval.as_secs_f64());
                    last_error = Some(message);
                }
            }
        }
    }
}

/// Sleeps `interval` in short slices; true as soon as an interrupt arrived.
fn sleep_unless_interrupted(interval: Duration, interrupted: &AtomicBool) -> bool {
    let until = Instant::now() + interval;
    while Instant::now() < until {
        if interrupted.load(Ordering::SeqCst) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50).min(until.saturating_duration_since(Instant::now())));
    }
    interrupted.load(Ordering::SeqCst)
}

/// One line per run that was pushed or failed.
fn print_pushed(runs: &[SyncedRun]) {
    for run in runs {
        let short = run.local_run_id.get(..8).unwrap_or(&run.local_run_id);
        let server = run.server_run_id.as_deref().unwrap_or("-");
        let what = match &run.outcome {
            SyncOutcome::Failed(e) => {
                eprintln!("warning: run {short} {} could not be synced: {e}", run.run_name);
                continue;
            }
            SyncOutcome::PushedLive => "running",
            SyncOutcome::PushedUnfinished => "unfinished (its process died)",
            _ => "synced",
        };
        let mut sent = format!("{} metric points", run.metrics_sent);
        if run.artifacts_sent > 0 {
            sent.push_str(&format!(", {} artifacts", run.artifacts_sent));
        }
        if run.model_synced {
            sent.push_str(", the model");
        }
        let created = if run.created { "new, " } else { "" };
        println!("run {short} {:<24} -> {server}: {created}{what}, {sent}", run.run_name);
    }
}

/// Opens `url` in the desktop's browser; a failure is only a warning.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let spawned =
        Command::new(opener).arg(url).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
    match spawned {
        Ok(mut child) => {
            let url = url.to_string();
            std::thread::spawn(move || {
                if let Ok(status) = child.wait()
                    && !status.success()
                {
                    eprintln!("warning: {opener} {url} failed ({status}); open the URL yourself");
                }
            });
        }
        Err(e) => eprintln!("warning: cannot run {opener} to open a browser ({e}); open {url} yourself"),
    }
}
