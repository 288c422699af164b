//! What `engine train`, `eval` and `runs` promise at the command line: one output directory
//! holds one run's files (and no lock once the run is over), `--json` leaves stdout to the JSON
//! document alone, and a tracking server that does not answer never holds up the start of
//! training nor the end of the command for long.

#[path = "common/cli.rs"]
mod cli;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cli::{clean_env, empty_dir, stderr, stdout, text};
use engine::tracking::{LocalStore, RecordStatus};
use serde_json::Value;

const TINY: [&str; 9] = ["train", "--device", "cpu", "--epochs", "1", "--train-limit", "500", "--hidden", "8"];

/// `engine ARGS` run in `cwd`, with the local store `cwd/store` and no server.
fn engine_in(cwd: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    clean_env(command.args(args).current_dir(cwd), &cwd.join("store"), None).output().expect("the engine runs")
}

/// Stdout parsed as one JSON document: nothing before it, nothing after it.
fn only_json(output: &Output) -> Value {
    assert!(output.status.success(), "failed: {}", text(output));
    let out = stdout(output);
    assert_eq!(out.trim_end().lines().count(), 1, "stdout holds more than the JSON document:\n{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{out}"))
}

/// The run id a model directory's `MLmodel` names.
fn mlmodel_run_id(model_dir: &Path) -> String {
    let mlmodel = std::fs::read_to_string(model_dir.join("MLmodel")).expect("an MLmodel");
    let line = mlmodel.lines().find_map(|l| l.strip_prefix("run_id:")).expect("MLmodel names its run");
    line.trim().trim_matches(|c| c == '\'' || c == '"').to_string()
}

fn runs_in(store: &Path) -> Vec<engine::tracking::RunRecord> {
    LocalStore::open(store).and_then(|s| s.list_runs(None)).unwrap_or_default()
}

#[test]
fn an_output_directory_holding_another_runs_model_is_refused_unless_overwrite() {
    let cwd = empty_dir("behaviour-one-dir-one-run");
    let first = only_json(&engine_in(&cwd, &[&TINY[..], &["--json", "--output-dir", "out"]].concat()));
    let first_id = first["run_id"].as_str().expect("a run id").to_string();
    assert!(!cwd.join("out/.engine.lock").exists(), "the lock outlives the run");

    let again = engine_in(&cwd, &[&TINY[..], &["--output-dir", "out"]].concat());
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(stderr(&again).contains(&first_id), "names the run the directory holds: {}", stderr(&again));
    assert!(stderr(&again).contains("--overwrite"), "{}", stderr(&again));
    assert_eq!(runs_in(&cwd.join("store")).len(), 1, "a refused directory starts no run");
    assert_eq!(mlmodel_run_id(&cwd.join("out/model")), first_id, "the first run's model is untouched");

    let replaced =
        only_json(&engine_in(&cwd, &[&TINY[..], &["--json", "--overwrite", "--output-dir", "out"]].concat()));
    let second_id = replaced["run_id"].as_str().expect("a run id");
    assert_ne!(second_id, first_id);
    assert_eq!(mlmodel_run_id(&cwd.join("out/model")), second_id);
    assert!(!cwd.join("out/.engine.lock").exists(), "the lock outlives the run");

    // The default directory, runs/<run id>, is the run's own and keeps no lock either.
    let default = only_json(&engine_in(&cwd, &[&TINY[..], &["--json"]].concat()));
    let dir = cwd.join("runs").join(default["run_id"].as_str().expect("a run id"));
    assert!(dir.join("model/MLmodel").is_file(), "{}", dir.display());
    assert!(!dir.join(".engine.lock").exists(), "the lock outlives the run");
}

#[test]
fn an_interrupted_run_leaves_no_empty_output_directory() {
    let cwd = empty_dir("behaviour-interrupted");
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    let args = ["train", "--device", "cpu", "--epochs", "50", "--train-limit", "20000"];
    let child = clean_env(command.args(args).current_dir(&cwd), &cwd.join("store"), None)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the engine starts");
    let runs = cwd.join("runs");
    let started = Instant::now();
    while std::fs::read_dir(&runs).map_or(true, |mut d| d.next().is_none())
        && started.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill runs").success());
    let output = child.wait_with_output().expect("the engine ends");
    assert_eq!(output.status.code(), Some(130), "{}", text(&output));
    let left: Vec<PathBuf> =
        std::fs::read_dir(&runs).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    assert!(left.is_empty(), "an interrupted run left {left:?}");
    let recorded = runs_in(&cwd.join("store"));
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].status, RecordStatus::Killed);
}

#[test]
fn json_output_is_the_only_thing_on_stdout() {
    let cwd = empty_dir("behaviour-json");
    let trained = only_json(&engine_in(&cwd, &[&TINY[..], &["--json", "--output-dir", "out"]].concat()));
    let run_id = trained["run_id"].as_str().expect("a run id").to_string();
    let train_err = stderr(&engine_in(&cwd, &[&TINY[..], &["--json", "--output-dir", "out2"]].concat()));
    assert!(train_err.contains("epoch   1/1") && train_err.contains("test_accuracy"), "{train_err}");

    let eval = engine_in(&cwd, &["eval", "--device", "cpu", "--json", "--model-uri", "out/model", "--output-dir", "e"]);
    let evaluated = only_json(&eval);
    assert_eq!(evaluated["test_accuracy"], trained["test_accuracy"]);
    assert!(stderr(&eval).contains("test_loss"), "the report goes to stderr: {}", stderr(&eval));

    let list = only_json(&engine_in(&cwd, &["runs", "list", "--json"]));
    let runs = list.as_array().expect("an array of runs");
    assert_eq!(runs.len(), 2);
    let entry = runs.iter().find(|r| r["run_id"] == run_id.as_str()).expect("the run is listed");
    assert_eq!(entry["experiment"], "fashion-mnist");
    assert_eq!(entry["status"], "FINISHED");
    assert_eq!(entry["sync"], "local");
    assert!(entry["start_time"].is_string() && entry["run_name"].is_string(), "{entry}");
    assert_eq!(entry["metrics"]["test_accuracy"], trained["test_accuracy"]);

    let shown = only_json(&engine_in(&cwd, &["runs", "show", "--json", &run_id[..8]]));
    assert_eq!(shown["run_id"], run_id.as_str());
    assert_eq!(shown["params"]["epochs"], "1");
    assert!(shown["tags"]["mlflow.runName"].is_string(), "{}", shown["tags"]);
    assert_eq!(shown["metric_history"]["train_loss"].as_array().map(Vec::len), Some(1));
    assert_eq!(shown["metric_history"]["train_loss"][0]["step"], 1);
    let artifacts = shown["artifacts"].as_array().expect("artifacts");
    assert!(artifacts.iter().any(|a| a["path"] == "model/MLmodel"), "{artifacts:?}");
    assert!(shown["overfitting"].is_null());
    assert!(
        only_json(&engine_in(&cwd, &["runs", "list", "--json", "--experiment", "none"])).as_array().unwrap().is_empty()
    );
}

/// A tiny training tracked to `uri`, with MLflow's client defaults for retries (five, backoff
/// factor 1: some 25 s of waiting for a server that refuses connections) and the end's wait at
/// 2 s: how long it took and what it printed.
fn train_against(cwd: &Path, uri: &str) -> (Duration, Output) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    clean_env(
        command.args([&TINY[..], &["--json", "--output-dir", "out"]].concat()).current_dir(cwd),
        &cwd.join("store"),
        Some(uri),
    )
    .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    .env("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    .env("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    .env("ENGINE_TRACKING_DRAIN_SECONDS", "2");
    let started = Instant::now();
    let output = command.output().expect("the engine runs");
    (started.elapsed(), output)
}

/// The run is complete in the local store, marked unsynced for `engine sync`.
fn assert_recorded_unsynced(cwd: &Path, output: &Output) {
    let run_id = only_json(output)["run_id"].as_str().expect("a run id").to_string();
    let run = LocalStore::open(cwd.join("store")).and_then(|s| s.load_run(&run_id)).expect("the run is recorded");
    assert_eq!(run.status, RecordStatus::Finished);
    assert_eq!(run.sync_state(), "unsynced");
    assert!(run.artifacts.iter().any(|a| a.path == "model/MLmodel"));
}

#[test]
fn a_server_that_refuses_connections_does_not_delay_training() {
    let cwd = empty_dir("behaviour-refused-server");
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let (took, output) = train_against(&cwd, &format!("http://127.0.0.1:{port}"));
    assert_recorded_unsynced(&cwd, &output);
    assert!(stderr(&output).contains("not answering"), "{}", stderr(&output));
    assert!(took < Duration::from_secs(15), "took {took:?}: {}", stderr(&output));
}

#[test]
fn a_server_that_never_answers_does_not_delay_training() {
    let cwd = empty_dir("behaviour-silent-server");
    // Connections complete in the listener's backlog, and no request is ever answered.
    let silent = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let port = silent.local_addr().expect("its address").port();
    let (took, output) = train_against(&cwd, &format!("http://127.0.0.1:{port}"));
    assert_recorded_unsynced(&cwd, &output);
    assert!(took < Duration::from_secs(20), "took {took:?}: {}", stderr(&output));
    drop(silent);
}

/// A host that drops connection attempts (a firewall, a machine that is off): here a listener
/// whose backlog is full, so the kernel drops further SYNs. The first contact gives up on the
/// connection within half a second instead of waiting out the start's 3 s.
#[cfg(target_os = "linux")]
#[test]
fn a_server_that_drops_connections_does_not_delay_training() {
    use std::os::fd::AsRawFd;
    let cwd = empty_dir("behaviour-dropping-server");
    let full = TcpListener::bind("127.0.0.1:0").expect("a listener");
    // SAFETY: `listen` on the listener's own open socket only changes its backlog.
    assert_eq!(unsafe { libc::listen(full.as_raw_fd(), 0) }, 0);
    let addr = full.local_addr().expect("its address");
    let _queued: Vec<_> =
        (0..3).filter_map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()).collect();
    let dropped = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300));
    assert!(dropped.is_err(), "the backlog still takes connections");
    let (took, output) = train_against(&cwd, &format!("http://{addr}"));
    assert_recorded_unsynced(&cwd, &output);
    let said = stderr(&output);
    assert!(said.contains("not answering") && said.contains("Connect"), "{said}");
    assert!(!said.contains("no answer within"), "the start waited for the server: {said}");
    assert!(took < Duration::from_secs(20), "took {took:?}: {said}");
}
