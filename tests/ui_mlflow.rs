//! `engine ui` with the real MLflow server (`tests/common/mlflow.rs` says how it is found): runs
//! recorded offline all reach the server it starts, a run recorded while it runs shows up epoch
//! by epoch, a signal stops the server's whole process group, and starting it again over the
//! same store duplicates nothing. The error paths (no MLflow, a port in use, a server that dies)
//! need no MLflow and always run.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/mlflow.rs"]
mod mlflow;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use engine::tracking::{
    Auth, LocalStore, LocalTracker, Metric, MlflowClient, RetryPolicy, Run, RunStatus, Tracker, TrackingConfig,
};
use serde_json::json;

/// How long a run may take to reach the server once recorded (the poll is every 2 s).
const SYNC_WAIT: Duration = Duration::from_secs(30);

/// A running `engine ui`, its output read line by line.
struct Ui {
    child: Child,
    lines: Receiver<String>,
    /// Everything it printed so far.
    output: Vec<String>,
    url: String,
    server_pid: u32,
}

impl Ui {
    /// Starts `engine ui` in `project` over `store` and waits until it prints its URL (the first
    /// sync is done by then).
    fn start(project: &Path, store: &Path, mlflow_bin: &Path, port: u16) -> Ui {
        let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
        command.args(["ui", "--port", &port.to_string(), "--mlflow"]).arg(mlflow_bin);
        let mut child = quiet_server(cli::clean_env(&mut command, store, None))
            .current_dir(project)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("engine ui starts");
        let (send, lines) = mpsc::channel();
        for pipe in [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as _),
        ]
        .into_iter()
        .flatten()
        {
            let send = send.clone();
            std::thread::spawn(move || {
                BufReader::new(pipe).lines().map_while(Result::ok).for_each(|l| drop(send.send(l)))
            });
        }
        let mut ui = Ui { child, lines, output: Vec::new(), url: String::new(), server_pid: 0 };
        let line = ui.wait_for_line(mlflow::DEFAULT_START_TIMEOUT, |l| l.starts_with("MLflow UI: "));
        ui.url = line.trim_start_matches("MLflow UI: ").trim().to_string();
        // stdout and stderr are read apart: the pid line (stderr) may come after the URL
        let is_pid = |l: &str| l.contains("MLflow server (pid ");
        let pid_line = match ui.output.iter().find(|l| is_pid(l)) {
            Some(line) => line.clone(),
            None => ui.wait_for_line(Duration::from_secs(5), is_pid),
        };
        ui.server_pid = pid_line
            .split("(pid ")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .and_then(|s| s.parse().ok())
            .expect("a pid");
        ui
    }

    /// The first line (from now on) that `matches`; panics with the output after `timeout`.
    fn wait_for_line(&mut self, timeout: Duration, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    self.output.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(_) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!("engine ui exited ({status}):\n{}", self.output.join("\n"));
                    }
                }
            }
        }
        panic!("engine ui did not print the expected line in {timeout:?}:\n{}", self.output.join("\n"));
    }

    /// Sends `signal`, waits for the exit and checks that the server's process group is gone and
    /// its port free.
    fn stop(mut self, signal: &str) -> ExitStatus {
        let port: u16 = self.url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port in the URL");
        let sent = Command::new("kill").args([format!("-{signal}"), self.child.id().to_string()]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{signal}");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status;
            }
            assert!(Instant::now() < deadline, "engine ui did not exit after SIG{signal}");
            std::thread::sleep(Duration::from_millis(100));
        };
        self.output.extend(self.lines.try_iter());
        assert!(
            !engine::tracking::group_alive(self.server_pid),
            "the MLflow server's process group outlived engine ui"
        );
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "port {port} still answers after engine ui stopped");
        status
    }
}

/// Server settings that make it start faster, as the test harness's own server has them.
fn quiet_server(command: &mut Command) -> &mut Command {
    command
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .env("DO_NOT_TRACK", "true")
        .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        .env_remove("ENGINE_MLFLOW")
}

fn client(url: &str) -> MlflowClient {
    let retry = RetryPolicy { max_retries: 2, backoff_factor: 0.1, ..RetryPolicy::default() };
    MlflowClient::new(url, Auth::None, retry).expect("a client")
}

/// `engine ARGS` (offline: the local store `store` only), which must succeed.
fn engine_ok(args: &[&str], store: &Path) -> String {
    let output = cli::engine(args, store, None);
    assert!(output.status.success(), "engine {args:?} failed:\n{}", cli::text(&output));
    cli::stdout(&output)
}

/// Every run of every experiment on the server, by the local id it carries.
fn server_runs(c: &MlflowClient) -> BTreeMap<String, Run> {
    let experiments = c.post_json("experiments/search", &json!({"max_results": 1000})).expect("experiments/search");
    let ids: Vec<String> = experiments["experiments"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e["experiment_id"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let runs = c.search_runs(&ids, "", &[], 10_000).expect("runs/search");
    let mut by_local = BTreeMap::new();
    for run in runs {
        let local = run.data.tags.iter().find(|t| t.key == "engine.local_run_id").map(|t| t.value.clone());
        let local = local.expect("every run the engine creates carries engine.local_run_id");
        assert!(by_local.insert(local.clone(), run).is_none(), "two server runs for local run {local}");
    }
    by_local
}

/// How many runs, logged models and dataset inputs the server holds.
fn counts(c: &MlflowClient) -> (usize, usize, usize) {
    let runs = server_runs(c);
    let experiments: BTreeSet<&str> = runs.values().map(|r| r.info.experiment_id.as_str()).collect();
    let models = c
        .post_json("logged-models/search", &json!({"experiment_ids": experiments, "max_results": 100}))
        .expect("logged-models/search");
    let models = models["models"].as_array().map_or(0, Vec::len);
    let inputs = runs.values().map(|r| r.inputs["dataset_inputs"].as_array().map_or(0, Vec::len)).sum();
    (runs.len(), models, inputs)
}

/// Waits until `check` holds for the server run of local run `local_id`.
fn wait_for_run(c: &MlflowClient, local_id: &str, what: &str, check: impl Fn(&Run) -> bool) -> Run {
    let deadline = Instant::now() + SYNC_WAIT;
    loop {
        if let Some(run) = server_runs(c).remove(local_id)
            && check(&run)
        {
            return run;
        }
        assert!(Instant::now() < deadline, "run {local_id} never reached the server {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The steps of a metric's history on the server.
fn steps(c: &MlflowClient, run: &Run, key: &str) -> Vec<i64> {
    let mut steps: Vec<i64> =
        c.get_metric_history(&run.info.run_id, key).expect("history").iter().map(|m| m.step).collect();
    steps.sort();
    steps
}

/// Everything of each local run is on the server: status, params, every metric point,
/// datasets, artifacts with their sizes, the model (ready), and a child's parent.
fn assert_store_on_server(c: &MlflowClient, store: &Path) {
    let on_server = server_runs(c);
    for rec in LocalStore::open(store).expect("store").list_runs(None).expect("runs") {
        let run = on_server.get(&rec.run_id).unwrap_or_else(|| panic!("run {} not on the server", rec.run_name));
        assert_eq!(run.info.status, "FINISHED", "{}", rec.run_name);
        let params: BTreeMap<String, String> =
            run.data.params.iter().map(|p| (p.key.clone(), p.value.clone())).collect();
        assert_eq!(params, rec.params, "params of {}", rec.run_name);
        for key in rec.metric_keys() {
            let local: Vec<i64> = rec.metric_history(&key).iter().map(|m| m.step).collect();
            assert_eq!(steps(c, run, &key).len(), local.len(), "{} history of {}", key, rec.run_name);
        }
        let inputs = run.inputs["dataset_inputs"].as_array().map_or(0, Vec::len);
        assert_eq!(inputs, rec.inputs.len(), "datasets of {}", rec.run_name);
        let files: BTreeMap<String, Option<i64>> = c
            .list_artifacts_recursive(&run.info.run_id)
            .expect("artifacts")
            .into_iter()
            .map(|f| (f.path, f.file_size))
            .collect();
        for a in &rec.artifacts {
            assert_eq!(files.get(&a.path), Some(&Some(a.size as i64)), "artifact {} of {}", a.path, rec.run_name);
        }
        if rec.artifacts.iter().any(|a| a.path == "model/engine_model.json") {
            let model_id = run.data.tags.iter().find(|t| t.key == "engine.model_id").map(|t| t.value.as_str());
            let model = c.get_logged_model(model_id.expect("a model tag")).expect("the logged model");
            assert_eq!(model.status, "LOGGED_MODEL_READY", "model of {}", rec.run_name);
        }
        if let Some(parent) = rec.tags.get("mlflow.parentRunId") {
            let parent_on_server = &on_server[parent].info.run_id;
            let tag = run.data.tags.iter().find(|t| t.key == "mlflow.parentRunId").map(|t| &t.value);
            assert_eq!(tag, Some(parent_on_server), "parent of {}", rec.run_name);
        }
    }
}

/// A run recorded by this process (another process to `engine ui`), epoch by epoch: each epoch
/// is on the server while the run is still RUNNING, and its end follows.
fn assert_recorded_run_follows(c: &MlflowClient, store: &Path) {
    let mut tracker = LocalTracker::new(TrackingConfig::local(store, "fashion-mnist")).expect("tracker");
    let run_id = tracker.start_run(&[("lr".into(), "0.1".into())], &[]).expect("start");
    for epoch in 1..=2 {
        let loss = Metric::new("val_loss", 1.0 / epoch as f64, epoch);
        tracker.log_metrics(&[loss]).expect("log");
        let run = wait_for_run(c, &run_id, &format!("with epoch {epoch}"), |r| {
            r.data.metrics.iter().any(|m| m.key == "val_loss" && m.step == epoch)
        });
        assert_eq!(run.info.status, "RUNNING", "a run still recorded stays RUNNING on the server");
        assert_eq!(steps(c, &run, "val_loss"), (1..=epoch).collect::<Vec<_>>());
    }
    // A child that ends while its parent is still recorded is nested under the parent's server
    // run, which only the server knows (the parent's files are its recorder's).
    let parent_on_server = server_runs(c)[&run_id].info.run_id.clone();
    let mut child = LocalTracker::new(TrackingConfig::local(store, "fashion-mnist")).expect("tracker");
    let child_id = child.start_run(&[], &[("mlflow.parentRunId".into(), run_id.clone())]).expect("start");
    child.end_run(RunStatus::Finished).expect("end");
    let child = wait_for_run(c, &child_id, "FINISHED", |r| r.info.status == "FINISHED");
    let parent_tag = child.data.tags.iter().find(|t| t.key == "mlflow.parentRunId").map(|t| t.value.clone());
    assert_eq!(parent_tag, Some(parent_on_server));
    tracker.end_run(RunStatus::Finished).expect("end");
    wait_for_run(c, &run_id, "FINISHED", |r| r.info.status == "FINISHED");
}

/// `engine ui` with MLFLOW_TRACKING_URI starts no server: it syncs into that one (here, with
/// everything there already, sending nothing) and stops on SIGTERM.
fn assert_syncs_into_a_running_server(project: &Path, store: &Path, url: &str) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    let mut child = cli::clean_env(command.arg("ui"), store, Some(url))
        .current_dir(project)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("engine ui starts");
    // kept open until it exits: a closed pipe would fail its next line
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let printed: Vec<String> =
        lines.by_ref().map_while(Result::ok).take_while(|l| !l.starts_with("MLflow UI: ")).collect();
    assert!(printed.is_empty(), "nothing to push: {printed:?}");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    assert!(child.wait().expect("exit").success());
    drop(lines);
}

#[test]
fn ui_syncs_every_run_follows_new_ones_and_stops_its_server() {
    let Some(bin) = mlflow::mlflow_or_skip() else { return };
    let project = mlflow::scratch_dir("engine-ui");
    let store = project.join("store");
    let out = |name: &str| project.join(name).display().to_string();
    engine_ok(
        &["train", "--epochs", "1", "--train-limit", "500", "--hidden", "8", "--output-dir", &out("mlp")],
        &store,
    );
    engine_ok(
        &["train", "--model", "cnn", "--epochs", "1", "--train-limit", "300", "--output-dir", &out("cnn")],
        &store,
    );
    let sweep = ["sweep", "--lr", "0.1,0.05", "--epochs", "1", "--train-limit", "300", "--hidden", "8"];
    engine_ok(&[&sweep[..], &["--run-name", "sweep", "--output-dir", &out("sweep")]].concat(), &store);

    let port = mlflow::free_port();
    let mut ui = Ui::start(&project, &store, &bin, port);
    assert_eq!(ui.url, format!("http://127.0.0.1:{port}"));
    assert!(project.join("mlflow.db").is_file() && project.join("mlartifacts").is_dir(), "the store is in the project");
    let c = client(&ui.url);
    assert_store_on_server(&c, &store);
    assert_recorded_run_follows(&c, &store);

    // A training in another process: its epochs reach the server, then its end and model.
    let train = ["train", "--epochs", "2", "--train-limit", "6000", "--hidden", "32", "--run-name", "live", "--json"];
    let trained = cli::json_line(&cli::engine(&[&train[..], &["--output-dir", &out("live")]].concat(), &store, None));
    let live_id = trained["run_id"].as_str().expect("a run id");
    let live = wait_for_run(&c, live_id, "FINISHED", |r| r.info.status == "FINISHED");
    assert_eq!(steps(&c, &live, "val_loss"), vec![1, 2]);
    ui.wait_for_line(SYNC_WAIT, |l| l.contains(&live_id[..8]) && l.contains("synced"));
    // A sweep meanwhile: its children end while the parent is still recorded, and must be
    // nested under the parent's server run all the same.
    engine_ok(&[&sweep[..], &["--run-name", "live-sweep", "--output-dir", &out("live-sweep")]].concat(), &store);
    for rec in LocalStore::open(&store).expect("store").list_runs(None).expect("runs") {
        wait_for_run(&c, &rec.run_id, "FINISHED", |r| r.info.status == "FINISHED");
    }
    assert_store_on_server(&c, &store);

    // Syncing by hand in between sends nothing new.
    let before = counts(&c);
    let by_hand = engine_ok(&["sync", "--tracking-uri", &ui.url], &store);
    assert!(by_hand.contains(" 0 created"), "{by_hand}");
    assert_eq!(counts(&c), before);
    let local_runs = LocalStore::open(&store).expect("store").list_runs(None).expect("runs").len();
    assert_eq!(before.0, local_runs, "one server run per local run");

    assert_syncs_into_a_running_server(&project, &store, &ui.url);
    assert_eq!(counts(&c), before);

    assert!(ui.stop("INT").success(), "engine ui exits 0 after Ctrl-C");
    // Again over the same store and port: nothing to push, nothing duplicated.
    let ui = Ui::start(&project, &store, &bin, port);
    assert!(!ui.output.iter().any(|l| l.starts_with("run ")), "nothing to push the second time: {:?}", ui.output);
    assert_eq!(counts(&client(&ui.url)), before);
    assert!(ui.stop("TERM").success(), "engine ui exits 0 after SIGTERM");
    let _ = std::fs::remove_dir_all(&project);
}

/// A stand-in `mlflow` that leaves a mark when run and then runs `script`.
fn fake_mlflow(dir: &Path, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("mlflow");
    std::fs::write(&bin, format!("#!/bin/sh\ntouch \"$(dirname \"$0\")/ran\"\n{script}\n")).expect("write");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    bin
}

/// `engine ui ARGS` in `project` with nothing on the PATH: (exit code, stderr).
fn ui_fails(project: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    command.arg("ui").args(args);
    let output = quiet_server(cli::clean_env(&mut command, &project.join("store"), None))
        .current_dir(project)
        .env("PATH", project.join("no-bin"))
        .output()
        .expect("engine runs");
    (output.status.code(), cli::stderr(&output))
}

#[test]
fn without_mlflow_ui_exits_2_with_the_install_line() {
    let project = mlflow::scratch_dir("engine-ui-none");
    let (code, stderr) = ui_fails(&project, &["--port", &mlflow::free_port().to_string()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("pip install mlflow==3.17.2"), "{stderr}");
    assert!(!project.join("mlflow.db").exists());
    let (code, stderr) = ui_fails(&project, &["--mlflow", "/no/such/mlflow"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("/no/such/mlflow"), "{stderr}");
    let _ = std::fs::remove_dir_all(&project);
}

#[test]
fn a_port_in_use_is_named_and_no_server_starts() {
    let project = mlflow::scratch_dir("engine-ui-port");
    let bin = fake_mlflow(&project, "sleep 60");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let (code, stderr) = ui_fails(&project, &["--port", &port, "--mlflow", &bin.display().to_string()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port} is already in use")) && stderr.contains("--port"), "{stderr}");
    assert!(!project.join("ran").exists(), "no server was started");
    let _ = std::fs::remove_dir_all(&project);
}

#[test]
fn a_server_that_dies_at_start_is_reported_with_its_output() {
    let project = mlflow::scratch_dir("engine-ui-dies");
    let bin = fake_mlflow(&project, "echo 'sqlite3.OperationalError: unable to open database file' >&2; exit 1");
    let port = mlflow::free_port().to_string();
    let (code, stderr) = ui_fails(&project, &["--port", &port, "--mlflow", &bin.display().to_string()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("the MLflow server exited"), "{stderr}");
    assert!(stderr.contains("unable to open database file"), "{stderr}");
    let (code, stderr) = ui_fails(
        &project,
        &[
            "--port",
            &port,
            "--mlflow",
            &bin.display().to_string(),
            "--backend-store-uri",
            "sqlite:///no/such/dir/mlflow.db",
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no/such/dir") && stderr.contains("does not exist"), "{stderr}");
    let _ = std::fs::remove_dir_all(&project);
}
