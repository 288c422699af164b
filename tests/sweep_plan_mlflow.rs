//! A sweep split across processes ends as a one-process sweep of the same grid does: planned,
//! its points run through `xargs -P 2` from another "machine" (its own local store), then
//! summarized; and `--workers 2` in one command.

#[path = "common/mlflow.rs"]
mod mlflow;

#[path = "common/cli.rs"]
mod cli;

use std::path::Path;
use std::process::{Command, Output};

use cli::{clean_env, engine, json_line, text};
use engine::tracking::{Auth, MlflowClient, RetryPolicy, Run};

const GRID: [&str; 14] = [
    "--device",
    "cpu",
    "--lr",
    "0.2,0.05,0.01",
    "--epochs",
    "1",
    "--train-limit",
    "600",
    "--hidden",
    "8",
    "--no-system-metrics",
    "--tolerance",
    "0.005",
    "--json",
];

fn sweep(extra: &[&str], store: &Path, uri: &str) -> Output {
    engine(&[&["sweep"][..], &GRID, extra].concat(), store, Some(uri))
}

/// Key-value pairs, sorted.
type Pairs = Vec<(String, String)>;

/// The parent's status, metrics and tags, with run ids replaced by the names of the runs they
/// point at; the seconds spent differ from sweep to sweep and are left out.
fn outcome(c: &MlflowClient, parent_id: &str) -> (String, Pairs, Pairs) {
    let parent = c.get_run(parent_id).unwrap();
    let name_of = |id: &str| c.get_run(id).map(|r: Run| r.info.run_name).unwrap_or_default();
    let timed = |key: &str| key.ends_with("_seconds");
    let metrics = parent.data.metrics.iter().filter(|m| !timed(&m.key));
    let mut metrics: Pairs = metrics.map(|m| (m.key.clone(), format!("{:.6}", m.value))).collect();
    metrics.sort();
    let tags = ["engine.best_run_id", "engine.recommended_run_id"]
        .iter()
        .filter_map(|k| parent.tag(k).map(|id| (k.to_string(), name_of(id))))
        .collect();
    (parent.info.status.clone(), metrics, tags)
}

#[test]
fn a_planned_sweep_ends_as_a_one_process_sweep() {
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("sweep-plan");
    let c = MlflowClient::new(server.uri(), Auth::None, RetryPolicy::default()).unwrap();

    let one = json_line(&sweep(&["--experiment", "plan-one", "--run-name", "one"], &dir.join("a"), server.uri()));
    let reference = outcome(&c, one["parent_run_id"].as_str().unwrap());
    assert_eq!(reference.0, "FINISHED");

    // Planned on one machine, run on another (its own store), summarized on the first.
    let plan = dir.join("plan.json");
    let planned = sweep(
        &["--experiment", "plan-split", "--run-name", "split", "--plan", plan.to_str().unwrap()],
        &dir.join("a"),
        server.uri(),
    );
    assert!(planned.status.success(), "{}", text(&planned));
    let mut xargs = Command::new("sh");
    let script =
        format!("printf '0\\n1\\n2\\n' | xargs -P 2 -I{{}} \"$ENGINE\" sweep --plan {} --index {{}}", plan.display());
    let workers = clean_env(xargs.args(["-c", &script]), &dir.join("b"), Some(server.uri())).output().unwrap();
    assert!(workers.status.success(), "{}", text(&workers));
    let summary = engine(
        &["sweep", "--plan", plan.to_str().unwrap(), "--summarize", "--json"],
        &dir.join("a"),
        Some(server.uri()),
    );
    let split = outcome(&c, json_line(&summary)["parent_run_id"].as_str().unwrap());
    assert_eq!(split, reference);

    let workers = json_line(&sweep(
        &["--experiment", "plan-workers", "--run-name", "w", "--workers", "2"],
        &dir.join("c"),
        server.uri(),
    ));
    assert_eq!(outcome(&c, workers["parent_run_id"].as_str().unwrap()), reference);
}
