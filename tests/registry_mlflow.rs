//! The CI/CD pipeline against a real MLflow server: a model that passes the gate ends in
//! Production with the alias champion and the previous one Archived; a model below the
//! threshold, or worse than the champion, changes nothing in the registry, each with its own
//! exit code; concurrent registrations get distinct versions; missing metrics, unknown runs and
//! an unreachable registry are clear errors.

#[path = "common/mlflow.rs"]
mod mlflow;

#[path = "common/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cli::text;
use engine::tracking::{Auth, MlflowClient, RetryPolicy};

fn engine(args: &[&str], store: &Path, uri: &str) -> Output {
    cli::engine(args, store, Some(uri))
}

/// The pipeline on a small MLP trained on `images` training images.
fn pipeline(threshold: &str, images: &str, name: &str, store: &Path, output: &Path, uri: &str) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pipeline.sh");
    let mut command = Command::new("bash");
    command.arg(script).args(["--threshold", threshold, "--name", name, "--output", output.to_str().unwrap(), "--"]);
    command.args([
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--train-limit",
        images,
        "--hidden",
        "32",
        "--experiment",
        "pipeline",
    ]);
    cli::clean_env(&mut command, store, Some(uri)).output().expect("the pipeline runs")
}

fn client(uri: &str) -> MlflowClient {
    MlflowClient::new(uri, Auth::None, RetryPolicy::default()).unwrap()
}

/// The pipeline's one-line summary, its last line.
fn summary(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    assert!(line.starts_with("pipeline: "), "no summary line in {stdout}");
    line.to_string()
}

/// The word after `before` in the summary: a run id, a path.
fn summary_word(output: &Output, before: &str) -> String {
    let line = summary(output);
    let rest = line.split_once(before).unwrap_or_else(|| panic!("no `{before}` in {line}")).1;
    rest.split([' ', ';', ')']).next().unwrap_or_default().to_string()
}

#[test]
fn passing_models_are_promoted_and_a_failing_one_changes_nothing() {
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("engine-pipeline");
    let (store, name) = (dir.join("store"), "fashion-mlp-pass");

    let output = dir.join("pipeline");
    let first = pipeline("0.1", "2000", name, &store, &output, server.uri());
    assert!(first.status.success(), "{}", text(&first));
    assert!(summary(&first).contains("promoted") && summary(&first).ends_with("(exit 0)"), "{}", text(&first));
    let reports = PathBuf::from(summary_word(&first, "reports in "));
    assert!(reports.join("confusion_matrix.png").is_file(), "{}", reports.display());
    // The same training again, into a directory of its own: as good as the champion, promoted.
    let second = pipeline("0.1", "2000", name, &store, &output, server.uri());
    assert!(second.status.success(), "{}", text(&second));
    assert_ne!(summary_word(&second, "reports in "), summary_word(&first, "reports in "));

    let registry = client(server.uri());
    let stage_of = |v: &str| registry.get_model_version(name, v).unwrap();
    assert_eq!(stage_of("2").stage, "Production");
    assert_eq!(stage_of("2").aliases, vec!["champion".to_string()]);
    assert_eq!(stage_of("1").stage, "Archived");
    assert_eq!(stage_of("2").run_id.as_deref(), Some(summary_word(&second, "from run ").as_str()));

    // A model below the threshold: exit 1, the registry as it was, the run tagged.
    let failing = pipeline("0.999", "2000", name, &store, &output, server.uri());
    assert_eq!(failing.status.code(), Some(1), "{}", text(&failing));
    assert!(summary(&failing).contains("gate failed"), "{}", text(&failing));
    assert_eq!(registry.model_versions(name).unwrap().len(), 2);
    assert_eq!(stage_of("2").stage, "Production");
    let run = registry.get_run(&summary_word(&failing, "gate failed: run ")).unwrap();
    assert_eq!(run.tag("engine.gate.decision"), Some("failed"));

    // Above the threshold but worse than the champion (trained on far fewer images): exit 3,
    // the champion stays, and nothing is registered, even by hand.
    let worse = pipeline("0.1", "300", name, &store, &output, server.uri());
    assert_eq!(worse.status.code(), Some(3), "{}", text(&worse));
    assert!(summary(&worse).contains("worse than the champion"), "{}", text(&worse));
    assert_eq!(registry.model_versions(name).unwrap().len(), 2);
    assert_eq!(stage_of("2").aliases, vec!["champion".to_string()]);
    let worse_run = summary_word(&worse, "not promoted: run ");
    assert!(registry.get_run(&worse_run).unwrap().tag("engine.gate.baseline_value").is_some());
    let by_hand = engine(&["register", "--run-id", &worse_run, "--name", name], &store, server.uri());
    assert_eq!(by_hand.status.code(), Some(1), "{}", text(&by_hand));
    assert!(text(&by_hand).contains("failed its quality gate"), "{}", text(&by_hand));
    // Registered anyway with --force (recorded on the run), it still cannot reach Production
    // without --force again.
    let forced =
        engine(&["register", "--run-id", &worse_run, "--name", name, "--force", "--json"], &store, server.uri());
    let version = cli::json_line(&forced)["version"].as_str().unwrap().to_string();
    assert_eq!(registry.get_run(&worse_run).unwrap().tag("engine.gate.forced"), Some("true"));
    let promoted = engine(&["promote", "--name", name, "--version", &version], &store, server.uri());
    assert_eq!(promoted.status.code(), Some(1), "{}", text(&promoted));
    assert!(text(&promoted).contains("failed its quality gate"), "{}", text(&promoted));
    assert_eq!(stage_of("2").aliases, vec!["champion".to_string()]);

    // A server that does not answer: exit 2, could not run, nothing trained.
    let down = format!("http://127.0.0.1:{}", mlflow::free_port());
    let broken = pipeline("0.1", "2000", name, &store, &dir.join("down"), &down);
    assert_eq!(broken.status.code(), Some(2), "{}", text(&broken));
    assert!(summary(&broken).contains("could not run"), "{}", text(&broken));
    assert!(!dir.join("down").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn concurrent_registrations_get_distinct_versions() {
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("engine-concurrent");
    let store = dir.join("store");
    let train = |i: usize| {
        let summary = cli::train_tiny(&dir.join(format!("t{i}")), &store, Some(server.uri()));
        summary["run_id"].as_str().unwrap().to_string()
    };
    let runs = [train(0), train(1)];
    let registrations: Vec<_> = runs
        .iter()
        .map(|run| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
            let args = ["register", "--run-id", run, "--name", "fashion-mlp-race", "--json"];
            cli::clean_env(command.args(args), &store, Some(server.uri()));
            command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let outputs: Vec<Output> = registrations.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for output in &outputs {
        assert!(output.status.success(), "{}", text(output));
    }
    let versions = client(server.uri()).model_versions("fashion-mlp-race").unwrap();
    let mut pairs: Vec<(String, String)> =
        versions.iter().map(|v| (v.version.clone(), v.run_id.clone().unwrap_or_default())).collect();
    pairs.sort();
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(), ["1", "2"]);
    let mut run_ids: Vec<&String> = pairs.iter().map(|p| &p.1).collect();
    run_ids.sort();
    let mut expected: Vec<&String> = runs.iter().collect();
    expected.sort();
    assert_eq!(run_ids, expected, "each version must point at its own run");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_metric_unknown_run_and_unreachable_registry_are_errors() {
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("engine-gate-errors");
    let store = dir.join("store");
    let trained = cli::train_tiny(&dir.join("t"), &store, Some(server.uri()));
    let run_id = trained["run_id"].as_str().unwrap().to_string();

    let missing =
        engine(&["gate", "--run-id", &run_id, "--metric", "bleu", "--threshold", "0.5"], &store, server.uri());
    assert_eq!(missing.status.code(), Some(2), "{}", text(&missing));
    assert!(text(&missing).contains("no metric bleu"), "{}", text(&missing));

    let unknown = engine(&["gate", "--run-id", &"a".repeat(32), "--threshold", "0.5"], &store, server.uri());
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));

    let down = format!("http://127.0.0.1:{}", mlflow::free_port());
    let unreachable = engine(&["register", "--run-id", &run_id, "--name", "x"], &store, &down);
    assert_eq!(unreachable.status.code(), Some(1), "{}", text(&unreachable));
    assert!(text(&unreachable).contains("127.0.0.1"), "{}", text(&unreachable));
    let _ = std::fs::remove_dir_all(&dir);
}
