//! Running the `engine` binary from tests in a clean environment: no data directory, tracking
//! server or experiment leaks in from the caller's shell, and retries against a server are short.
//!
//! ```ignore
//! #[path = "common/cli.rs"]
//! mod cli;
//! ```
#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Sets up `command` (the engine, or a script that runs it as `$ENGINE`) with `store` as the
/// local store and `tracking_uri` as the MLflow server, if any.
pub fn clean_env<'a>(command: &'a mut Command, store: &Path, tracking_uri: Option<&str>) -> &'a mut Command {
    command
        .env("ENGINE", env!("CARGO_BIN_EXE_engine"))
        .env("ENGINE_LOCAL_STORE", store)
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        .env("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0.1")
        .env_remove("ENGINE_DATA_DIR")
        .env_remove("MLFLOW_EXPERIMENT_NAME");
    match tracking_uri {
        Some(uri) => command.env("MLFLOW_TRACKING_URI", uri),
        None => command.env_remove("MLFLOW_TRACKING_URI"),
    }
}

/// `engine ARGS`, run to completion.
pub fn engine(args: &[&str], store: &Path, tracking_uri: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    clean_env(command.args(args), store, tracking_uri).output().expect("the engine binary runs")
}

/// A tiny training run (one epoch, 500 images, 8 hidden units) writing to `output_dir`: its
/// `--json` summary.
pub fn train_tiny(output_dir: &Path, store: &Path, tracking_uri: Option<&str>) -> serde_json::Value {
    let args = ["train", "--epochs", "1", "--train-limit", "500", "--hidden", "8", "--json", "--output-dir"];
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    let output = clean_env(command.args(args).arg(output_dir), store, tracking_uri).output();
    json_line(&output.expect("the engine binary runs"))
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Both streams, for messages that may go to either.
pub fn text(output: &Output) -> String {
    stdout(output) + &stderr(output)
}

/// The JSON object a successful `--json` run prints as its last line.
pub fn json_line(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "failed: {}\n{}", stderr(output), stdout(output));
    serde_json::from_str(stdout(output).lines().last().unwrap_or_default()).expect("a JSON last line")
}

/// `(predicted class, its probability)` per test image, from the `predictions.csv` that
/// `engine eval` wrote to `eval_dir`.
pub fn eval_predictions(eval_dir: &Path) -> Vec<(usize, f64)> {
    let csv = std::fs::read_to_string(eval_dir.join("predictions.csv")).expect("engine eval wrote predictions.csv");
    csv.lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields[2].parse().unwrap(), fields[3].parse().unwrap())
        })
        .collect()
}

/// A path of this process's own under the temp directory, with nothing there yet.
pub fn unused_path(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("engine-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&path);
    path
}

/// An empty directory of this process's own.
pub fn empty_dir(name: &str) -> PathBuf {
    let dir = unused_path(name);
    std::fs::create_dir_all(&dir).expect("a temp directory");
    dir
}
