//! An engine run shows in MLflow what a Python run shows, read back over a real server's REST
//! API: system metrics under MLflow's names, the datasets as run inputs, the final and
//! evaluation metrics on the LoggedModel, who and what made the run and the model, the run's
//! description and tags, summaries at step 0 (a run trained and evaluated through the library),
//! and, through the binary, system metrics following the flag and MLflow's variable and sweep
//! children named by what varies.

#[path = "common/mlflow.rs"]
mod mlflow;

#[path = "common/cli.rs"]
mod cli;

#[path = "common/library.rs"]
mod library;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use cli::{clean_env, json_line, text};
use engine::experiment::{NOTE_TAG, RunSpec};
use engine::tracking::{Auth, MlflowClient, RetryPolicy, util};
use engine::train::TrainConfig;
use library::{evaluate_and_log, finished_run, on_server};
use serde_json::Value;

fn client(uri: &str) -> MlflowClient {
    MlflowClient::new(uri, Auth::None, RetryPolicy::default()).unwrap()
}

/// `engine ARGS` with system metrics sampled every 0.2 s.
fn engine(args: &[&str], store: &Path, uri: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    clean_env(command.args(args), store, Some(uri)).env("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("the engine runs")
}

fn train_args<'a>(out: &'a str, experiment: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--device",
        "cpu",
        "--epochs",
        "2",
        "--train-limit",
        "3000",
        "--hidden",
        "32",
        "--experiment",
        experiment,
        "--json",
        "--output-dir",
        out,
    ];
    args.extend_from_slice(extra);
    args
}

fn metric_keys(run: &engine::tracking::Run) -> BTreeSet<String> {
    run.data.metrics.iter().map(|m| m.key.clone()).collect()
}

#[test]
fn a_trained_and_evaluated_run_shows_what_a_python_run_shows() {
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("parity-run");
    let (store, out) = (dir.join("store"), dir.join("out"));
    let tracking = on_server(server.uri(), &store, "parity");
    let config = TrainConfig { epochs: 2, train_limit: Some(3000), hidden: vec![32], ..TrainConfig::default() };
    let tags = [(NOTE_TAG, "baseline for the parity check"), ("team", "vision"), ("purpose", "parity")];
    let spec = RunSpec {
        tags: tags.map(|(k, v)| (k.to_string(), v.to_string())).to_vec(),
        output_dir: Some(out),
        system_metrics: Some(Duration::from_millis(200)),
        ..RunSpec::new(config, tracking.clone())
    };
    let (run_id, _) = finished_run(&spec);
    let c = client(server.uri());
    let run = c.get_run(&run_id).unwrap();

    // System metrics, one step per sample.
    let keys = metric_keys(&run);
    for key in [
        "system/cpu_utilization_percentage",
        "system/system_memory_usage_megabytes",
        "system/system_memory_usage_percentage",
        "system/disk_usage_percentage",
        "system/disk_available_megabytes",
        "system/network_receive_megabytes",
    ] {
        assert!(keys.contains(key), "{key} missing: {keys:?}");
    }
    let memory = c.get_metric_history(&run_id, "system/system_memory_usage_megabytes").unwrap();
    let steps: BTreeSet<i64> = memory.iter().map(|m| m.step).collect();
    assert!(steps.len() >= 2 && steps.contains(&0) && steps.contains(&1), "{steps:?}");

    // Datasets as inputs, with their context.
    let inputs = run.inputs["dataset_inputs"].as_array().expect("dataset inputs");
    let described: BTreeSet<(String, String)> = inputs
        .iter()
        .map(|i| {
            let context = i["tags"].as_array().unwrap().iter().find(|t| t["key"] == "mlflow.data.context").unwrap();
            (i["dataset"]["name"].as_str().unwrap().to_string(), context["value"].as_str().unwrap().to_string())
        })
        .collect();
    let expected: BTreeSet<(String, String)> = [
        ("fashion-mnist-train[:3000]".to_string(), "training".to_string()),
        ("fashion-mnist-test".to_string(), "evaluation".to_string()),
    ]
    .into();
    assert_eq!(described, expected);
    assert!(inputs.iter().all(|i| i["dataset"]["digest"].as_str().unwrap().len() == 8));

    // Summaries at step 0; the per-epoch learning rate is `lr`, apart from the param.
    let history = c.get_metric_history(&run_id, "test_accuracy").unwrap();
    assert_eq!(history.iter().map(|m| m.step).collect::<Vec<_>>(), [0]);
    assert_eq!(c.get_metric_history(&run_id, "lr").unwrap().len(), 2);
    assert!(!keys.contains("learning_rate"));
    assert!(run.param("learning_rate").is_some());

    // Notes, tags, who and what.
    assert_eq!(run.tag("mlflow.note.content"), Some("baseline for the parity check"));
    assert_eq!(run.tag("team"), Some("vision"));
    assert_eq!(run.tag("engine.version"), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(run.tag("mlflow.source.git.commit"), util::build_commit());

    // The model page: its metrics (on the test set) and its tags.
    let model_id = run.tag("engine.model_id").unwrap().to_string();
    let model = c.get_json(&format!("logged-models/{model_id}"), &[]).unwrap();
    let model_metric = |key: &str| -> Option<Value> {
        model["model"]["data"]["metrics"].as_array()?.iter().find(|m| m["key"] == key).cloned()
    };
    let accuracy = model_metric("test_accuracy").expect("test_accuracy on the model");
    assert_eq!(accuracy["dataset_name"], "fashion-mnist-test");
    let model_tags: BTreeSet<String> = model["model"]["info"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap().to_string())
        .collect();
    for key in ["mlflow.user", "mlflow.source.name", "mlflow.source.type", "engine.version"] {
        assert!(model_tags.contains(key), "{key} missing on the model: {model_tags:?}");
    }

    // An evaluation adds its metrics to the model, its tags to the run, and to the note.
    let eval_tags = [("evaluated".to_string(), "yes".to_string())];
    evaluate_and_log(&tracking, &run_id, &dir.join("eval"), &eval_tags, Some("checked on the full test set"));
    let run = c.get_run(&run_id).unwrap();
    assert_eq!(run.tag("evaluated"), Some("yes"));
    let note = run.tag("mlflow.note.content").unwrap();
    assert!(note.starts_with("baseline") && note.ends_with("checked on the full test set"), "{note}");
    let model = c.get_json(&format!("logged-models/{model_id}"), &[]).unwrap();
    let keys: BTreeSet<&str> =
        model["model"]["data"]["metrics"].as_array().unwrap().iter().filter_map(|m| m["key"].as_str()).collect();
    assert!(keys.contains("eval_test_accuracy"), "{keys:?}");
}

#[test]
fn system_metrics_follow_the_flag_and_mlflows_variable() {
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("parity-system-off");
    let store = dir.join("store");
    let c = client(server.uri());
    let off_by_variable = [("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")];
    let cases = [(&["--no-system-metrics"][..], &[][..]), (&[][..], &off_by_variable[..])];
    for (i, (extra, env)) in cases.into_iter().enumerate() {
        let out = dir.join(format!("out-{i}"));
        let output = engine(&train_args(out.to_str().unwrap(), "parity-off", extra), &store, server.uri(), env);
        let run_id = json_line(&output)["run_id"].as_str().unwrap().to_string();
        let keys = metric_keys(&c.get_run(&run_id).unwrap());
        assert!(keys.iter().all(|k| !k.starts_with("system/")), "{extra:?} {env:?}: {keys:?}");
    }
}

#[test]
fn sweep_children_are_named_by_what_varies_and_carry_the_tags() {
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("parity-sweep");
    let store = dir.join("store");
    let args = [
        "sweep",
        "--device",
        "cpu",
        "--lr",
        "0.1,0.01",
        "--epochs",
        "1",
        "--train-limit",
        "500",
        "--hidden",
        "8",
        "--experiment",
        "parity-sweep",
        "--run-name",
        "lr-study",
        "--tag",
        "study=lr",
        "--description",
        "which learning rate",
        "--no-system-metrics",
    ];
    let output = engine(&args, &store, server.uri(), &[]);
    assert!(output.status.success(), "{}", text(&output));
    let c = client(server.uri());
    let experiment = c.get_experiment_by_name("parity-sweep").unwrap().unwrap();
    let runs = c.search_runs(&[experiment.experiment_id.as_str()], "", &[], 10).unwrap();
    let names: BTreeSet<&str> = runs.iter().map(|r| r.info.run_name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["lr-study", "lr=0.1", "lr=0.01"]));
    assert!(runs.iter().all(|r| r.tag("study") == Some("lr")));
    let parent = runs.iter().find(|r| r.info.run_name == "lr-study").unwrap();
    assert_eq!(parent.tag("mlflow.note.content"), Some("which learning rate"));
}
