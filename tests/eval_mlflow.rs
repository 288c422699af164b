//! Train -> log the model to a real MLflow server -> evaluate on another "machine" (an empty
//! local store) by run id: the same accuracy, every file, the evaluation logged back, through
//! the library. Also: the weights read by Python's safetensors + NumPy give the engine's
//! predictions, and each bad input to `engine eval` fails with a clear error.

#[path = "common/mlflow.rs"]
mod mlflow;

#[path = "common/cli.rs"]
mod cli;

#[path = "common/library.rs"]
mod library;

use std::path::{Path, PathBuf};
use std::process::Command;

use cli::{engine, stderr};
use engine::experiment::RunSpec;
use engine::tracking::{Auth, MlflowClient, RetryPolicy};
use engine::train::TrainConfig;
use library::{evaluate_and_log, finished_run, on_server, tiny_spec};

struct Trained {
    run_id: String,
    accuracy: f64,
    output_dir: PathBuf,
}

/// One epoch of a 64-unit MLP on 2,000 images, tracked at `uri` with `dir/store-a` as the
/// local store.
fn train(dir: &Path, uri: &str) -> Trained {
    let out = dir.join("train-out");
    let config = TrainConfig { epochs: 1, train_limit: Some(2000), hidden: vec![64], ..TrainConfig::default() };
    let tracking = on_server(uri, &dir.join("store-a"), "eval-tests");
    let spec = RunSpec { output_dir: Some(out.clone()), ..RunSpec::new(config, tracking) };
    let (run_id, summary) = finished_run(&spec);
    Trained { run_id, accuracy: summary["test_accuracy"].as_f64().unwrap(), output_dir: out }
}

#[test]
fn eval_by_run_id_from_the_server_matches_training_and_logs_back() {
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("engine-eval");
    let trained = train(&dir, server.uri());

    // The run's model is a LoggedModel, ready, linked to the run as an output.
    let client = MlflowClient::new(server.uri(), Auth::None, RetryPolicy::default()).unwrap();
    let model = client.find_run_model(&trained.run_id).unwrap().expect("the run has a logged model");
    let logged = client.get_json(&format!("logged-models/{}", model.model_id), &[]).unwrap();
    assert_eq!(logged["model"]["info"]["status"], "LOGGED_MODEL_READY");

    // Another machine: an empty local store, so the model must come from the server.
    let eval_out = dir.join("eval-out");
    let tracking = on_server(server.uri(), &dir.join("store-b"), engine::tracking::DEFAULT_EXPERIMENT);
    let evaluated = evaluate_and_log(&tracking, &trained.run_id, &eval_out, &[], None);
    assert_eq!(evaluated.eval.accuracy, trained.accuracy, "eval must reproduce training's accuracy");
    for file in [
        "classification_report.json",
        "confusion_matrix.png",
        "misclassified_examples.png",
        "predictions.csv",
        "metrics.json",
    ] {
        assert!(eval_out.join(file).is_file(), "{file} missing");
    }
    let csv = std::fs::read_to_string(eval_out.join("predictions.csv")).unwrap();
    assert_eq!(csv.lines().count(), 10_001);
    assert!(csv.starts_with("index,true_label,predicted_label,probability\n0,9,"));

    let run = client.get_run(&trained.run_id).unwrap();
    let logged_accuracy = run.data.metrics.iter().find(|m| m.key == "eval_test_accuracy").map(|m| m.value);
    assert_eq!(logged_accuracy, Some(trained.accuracy));
    let files: Vec<String> =
        client.list_artifacts(&trained.run_id, "evaluation").unwrap().into_iter().map(|f| f.path).collect();
    assert!(files.contains(&"evaluation/predictions.csv".to_string()), "{files:?}");

    numpy_forward_matches(&trained.output_dir.join("model/model.safetensors"), &csv);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Python reads the weights with safetensors and runs the MLP in NumPy on 100 test images.
fn numpy_forward_matches(weights: &Path, predictions_csv: &str) {
    let python = mlflow::mlflow_bin().unwrap().with_file_name("python");
    let script = r#"
import gzip, sys, numpy as np
from safetensors.numpy import load_file
w = load_file(sys.argv[1])
raw = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()
x = np.frombuffer(raw, dtype=np.uint8, offset=16)[: 100 * 784].reshape(100, 784).astype(np.float32)
x = (x / 255.0 - 0.2860) / 0.3530
layers = sorted({int(k.split(".")[0]) for k in w})
for i, k in enumerate(layers):
    x = x @ w[f"{k}.weight"].T + w[f"{k}.bias"]
    if i < len(layers) - 1:
        x = np.maximum(x, 0)
print(",".join(str(int(p)) for p in x.argmax(axis=1)))
"#;
    let output = Command::new(python).arg("-c").arg(script).arg(weights).output().expect("python runs");
    assert!(output.status.success(), "{}", stderr(&output));
    let numpy: Vec<String> = String::from_utf8_lossy(&output.stdout).trim().split(',').map(String::from).collect();
    let ours: Vec<String> =
        predictions_csv.lines().skip(1).take(100).map(|l| l.split(',').nth(2).unwrap().to_string()).collect();
    assert_eq!(numpy, ours, "NumPy's forward pass disagrees with the engine's predictions");
}

#[test]
fn bad_inputs_fail_clearly_and_leave_the_output_directory_alone() {
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("engine-eval-bad");
    let store = dir.join("store");
    let out = dir.join("out");

    // Unknown run id, on the server and in the local store.
    let output = engine(
        &["eval", "--run-id", &"0".repeat(32), "--output-dir", out.to_str().unwrap()],
        &store,
        Some(server.uri()),
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("0000000000"), "{}", stderr(&output));
    let output = engine(&["eval", "--run-id", "nope"], &store, None);
    assert!(stderr(&output).contains("unknown run id nope"), "{}", stderr(&output));

    // A server that is down.
    let down = format!("http://127.0.0.1:{}", mlflow::free_port());
    let output =
        engine(&["eval", "--run-id", &"1".repeat(32), "--output-dir", out.to_str().unwrap()], &store, Some(&down));
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("127.0.0.1"), "{}", stderr(&output));

    // A model whose weights fail the checksum, then one that is truncated.
    let trained = train(&dir, server.uri());
    let model_dir = trained.output_dir.join("model");
    let weights = model_dir.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&weights, &bytes).unwrap();
    let args = ["eval", "--model-uri", model_dir.to_str().unwrap(), "--output-dir", out.to_str().unwrap()];
    let output = engine(&args, &store, None);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("SHA-256"), "{}", stderr(&output));
    std::fs::write(&weights, &bytes[..middle]).unwrap();
    assert!(stderr(&engine(&args, &store, None)).contains("SHA-256"));

    // A run without a model.
    let local = dir.join("store-empty-model");
    let (run_id, _) = finished_run(&tiny_spec(&local, &dir.join("o2")));
    let model_artifacts =
        std::fs::read_dir(local.join("fashion-mnist")).unwrap().next().unwrap().unwrap().path().join("artifacts/model");
    std::fs::remove_dir_all(model_artifacts).unwrap();
    let output = engine(&["eval", "--run-id", &run_id, "--output-dir", out.to_str().unwrap()], &local, None);
    assert!(stderr(&output).contains("has no model"), "{}", stderr(&output));

    assert!(!out.exists(), "a failed evaluation must not create its output directory");
    let _ = std::fs::remove_dir_all(&dir);
}
