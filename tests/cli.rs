//! The `engine` binary: bad flags exit with code 2 and name the flag; a missing data
//! directory explains how to provide the data; a short real training run on FashionMNIST beats
//! an accuracy floor and writes its model and reports. A tiny CNN (`--model cnn`) trains into a
//! CNN model directory, `engine eval` and `engine serve` read it and agree on its classes, and
//! `engine runs compare` shows it as a CNN with its parameter count.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/serve.rs"]
mod serve;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use cli::{stderr, stdout, unused_path as temp_dir};
use serde_json::{Value, json};

/// `engine ARGS` with a local store shared by this binary's tests (which run concurrently, so
/// it is never emptied).
fn engine(args: &[&str]) -> Output {
    let store = std::env::temp_dir().join(format!("engine-cli-store-{}", std::process::id()));
    cli::engine(args, &store, None)
}

#[test]
fn bad_hyperparameters_exit_2_naming_the_flag() {
    let cases: [(&[&str], &str); 12] = [
        (&["--model", "bogus"], "--model"),
        (&["--model", "cnn", "--hidden", "256"], "--hidden"),
        (&["--lr", "0"], "--lr"),
        (&["--lr", "-1"], "--lr"),
        (&["--batch-size", "0"], "--batch-size"),
        (&["--epochs", "0"], "--epochs"),
        (&["--hidden", ""], "--hidden"),
        (&["--hidden", "512,0"], "--hidden"),
        (&["--val-split", "1"], "--val-split"),
        (&["--val-split", "-0.1"], "--val-split"),
        (&["--dropout", "1.5"], "--dropout"),
        (&["--optimizer", "lbfgs"], "--optimizer"),
    ];
    for (flags, name) in cases {
        let output = engine(&[&["train", "--data-dir", "/nonexistent"], flags].concat());
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(name), "{flags:?} should name {name}: {}", stderr(&output));
    }
}

#[test]
fn a_missing_data_directory_explains_how_to_provide_the_data() {
    let output = engine(&["train", "--device", "cpu", "--data-dir", "/nonexistent/fashion"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    for hint in ["/nonexistent/fashion", "--data-dir", "apt-get install dataset-fashion-mnist", "downloaded"] {
        assert!(message.contains(hint), "missing '{hint}' in: {message}");
    }
}

#[test]
fn a_diverging_run_stops_with_the_epoch_and_step_and_writes_nothing() {
    let out = temp_dir("diverge");
    let output = engine(&[
        "train",
        "--device",
        "cpu",
        "--lr",
        "1e6",
        "--optimizer",
        "sgd",
        "--train-limit",
        "2000",
        "--epochs",
        "2",
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("epoch 1, step"), "{message}");
    assert!(!out.join("model").exists() && !out.join("metrics.json").exists());
}

#[test]
fn a_short_real_training_run_beats_the_accuracy_floor() {
    let out = temp_dir("train");
    let output = engine(&[
        "train",
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--train-limit",
        "6000",
        "--lr-schedule",
        "constant",
        "--json",
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let accuracy = summary["test_accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.75, "test accuracy {accuracy} is below the 75% floor");
    assert_eq!(summary["epochs"].as_array().unwrap().len(), 1);
    assert_eq!(summary["train_examples"], 5400);
    for key in ["run_id", "output_dir", "device", "test_loss", "train_seconds"] {
        assert!(!summary[key].is_null(), "--json lacks {key}");
    }
    for file in [
        "model/model.safetensors",
        "model/model.onnx",
        "model/MLmodel",
        "model/engine_model.json",
        "metrics.json",
        "classification_report.json",
        "confusion_matrix.png",
        "misclassified_examples.png",
        "training_curves.png",
    ] {
        assert!(out.join(file).is_file(), "{file} was not written");
    }
    let (model, meta) = engine::model::load_model_dir(&out.join("model"), &engine::Device::Cpu).unwrap();
    assert_eq!(model.sizes(), [784, 512, 512, 10]);
    assert_eq!(meta.run_id.as_deref(), summary["run_id"].as_str());
}

#[test]
fn ctrl_c_ends_the_run_as_killed_with_exit_code_130() {
    let store = temp_dir("killed-store");
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    cli::clean_env(&mut command, &store, None);
    let child = command
        .args(["train", "--device", "cpu", "--epochs", "50", "--train-limit", "20000", "--output-dir"])
        .arg(temp_dir("killed"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the run has started (its directory exists), then interrupt it.
    let started = std::time::Instant::now();
    while !store.join("fashion-mnist").exists() && started.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    let runs = engine::tracking::LocalStore::open(&store).unwrap().list_runs(None).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status.label(), "KILLED");
    assert!(runs[0].end_time_ms.is_some());
}

/// Parameters of the CNN `engine train --model cnn` builds: 32 and 64 channels, 128 hidden units.
const CNN_PARAMETERS: usize = (9 + 1) * 32 + (32 * 9 + 1) * 64 + (64 * 7 * 7 + 1) * 128 + (128 + 1) * 10;

/// The tiny CNN of the CNN tests, trained once (a few seconds) into a store of its own: its
/// output directory, the store and the `--json` summary.
struct TrainedCnn {
    out: PathBuf,
    store: PathBuf,
    summary: Value,
}

fn trained_cnn() -> &'static TrainedCnn {
    static TRAINED: OnceLock<TrainedCnn> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let (out, store) = (temp_dir("cnn"), temp_dir("cnn-store"));
        let args = [
            "train",
            "--model",
            "cnn",
            "--device",
            "cpu",
            "--epochs",
            "1",
            "--train-limit",
            "600",
            "--batch-size",
            "64",
            "--no-system-metrics",
            "--json",
            "--output-dir",
            out.to_str().unwrap(),
        ];
        let summary = cli::json_line(&cli::engine(&args, &store, None));
        TrainedCnn { out, store, summary }
    })
}

#[test]
fn a_tiny_cnn_trains_into_a_cnn_model_directory() {
    let t = trained_cnn();
    let accuracy = t.summary["test_accuracy"].as_f64().unwrap();
    assert!(accuracy >= 0.3, "test accuracy {accuracy} after 9 steps: the CNN does not learn");
    assert_eq!(t.summary["parameters"], CNN_PARAMETERS);
    assert_eq!((t.summary["train_examples"].as_u64(), t.summary["val_examples"].as_u64()), (Some(540), Some(60)));
    assert_eq!(t.summary["config"]["model"], "cnn");
    assert_eq!(t.summary["config"]["hidden"], json!([]), "no MLP layers recorded for a CNN");
    for file in ["model/model.safetensors", "model/model.onnx", "model/MLmodel", "metrics.json", "confusion_matrix.png"]
    {
        assert!(t.out.join(file).is_file(), "{file} was not written");
    }
    let (network, meta) = engine::model::load_model_dir(&t.out.join("model"), &engine::Device::Cpu).unwrap();
    assert_eq!(network.architecture(), engine::nn::Architecture::Cnn);
    assert_eq!(network.sizes(), [784, 32, 64, 128, 10]);
    assert_eq!(network.parameter_count(), CNN_PARAMETERS);
    assert_eq!(meta.format, engine::model::FORMAT_CNN);
    assert_eq!(meta.run_id.as_deref(), t.summary["run_id"].as_str());
    assert_eq!(meta.hyperparameters["model"], "cnn");
}

#[test]
fn engine_eval_and_engine_serve_read_a_cnn_and_agree_on_its_classes() {
    let t = trained_cnn();
    let (model, eval_dir) = (t.out.join("model"), temp_dir("cnn-eval"));
    let args = ["eval", "--device", "cpu", "--json", "--model-uri", model.to_str().unwrap(), "--output-dir"];
    let output = cli::engine(&[&args[..], &[eval_dir.to_str().unwrap()]].concat(), &t.store, None);
    let summary = cli::json_line(&output);
    // The network evaluates as it did after training (there in batches of 1000, here of 64).
    assert_eq!(summary["test_accuracy"], t.summary["test_accuracy"]);
    let loss_difference = summary["test_loss"].as_f64().unwrap() - t.summary["test_loss"].as_f64().unwrap();
    assert!(loss_difference.abs() < 1e-5, "test loss moved by {loss_difference}");
    assert_eq!(summary["run_id"], t.summary["run_id"]);
    let accuracy_line = format!("test_accuracy {:.4}", summary["test_accuracy"].as_f64().unwrap());
    // With --json the report goes to stderr: stdout holds the JSON document alone.
    assert!(stderr(&output).lines().any(|l| l.starts_with("test_loss ") && l.contains(&accuracy_line)));
    let predictions = cli::eval_predictions(&eval_dir);
    assert_eq!(predictions.len(), 10_000);

    let server = serve::EngineServer::start(&["--model-uri", model.to_str().unwrap()], &t.store, None);
    let client = serve::client();
    let rows = serve::test_rows(64);
    let probabilities =
        serve::post_json(&client, &server.url("/invocations"), &json!({ "inputs": rows })).probabilities();
    for (i, (row, class)) in probabilities.iter().zip(serve::argmax(&probabilities)).enumerate() {
        let (expected_class, expected_probability) = predictions[i];
        assert_eq!(class, expected_class, "image {i}: engine eval predicts {expected_class}");
        assert!(
            (row[class] - expected_probability).abs() < 1e-5,
            "image {i}: {} against {expected_probability}",
            row[class]
        );
    }
    let version = serve::get(&client, &server.url("/version")).json();
    assert_eq!(version["format"], engine::model::FORMAT_CNN);
    assert_eq!(version["sizes"], json!([784, 32, 64, 128, 10]));
    let _ = std::fs::remove_dir_all(&eval_dir);
}

#[test]
fn runs_compare_shows_the_cnn_with_its_model_and_parameter_count() {
    let t = trained_cnn();
    let run_id = t.summary["run_id"].as_str().unwrap();
    let compared: Value = serde_json::from_str(&stdout(&cli::engine(&["runs", "compare", "--json"], &t.store, None)))
        .expect("runs compare --json prints JSON");
    let run = compared["runs"].as_array().unwrap().iter().find(|r| r["run_id"] == run_id).expect("the CNN's run");
    assert_eq!(run["params"]["model"], "cnn");
    assert!(run["params"].get("hidden").is_none(), "a CNN logs no --hidden: {}", run["params"]);
    assert_eq!(run["metrics"]["parameter_count"], CNN_PARAMETERS as f64);

    // The table: the run's row under the MODEL, HIDDEN and PARAMS columns (names have no spaces).
    let table = stdout(&cli::engine(&["runs", "compare"], &t.store, None));
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    let row = lines.find(|l| l.split_whitespace().nth(1) == Some(&run_id[..8])).unwrap_or_else(|| panic!("{table}"));
    let cells: BTreeMap<&str, &str> = header.into_iter().zip(row.split_whitespace()).collect();
    assert_eq!((cells["MODEL"], cells["HIDDEN"], cells["PARAMS"]), ("cnn", "-", "421,642"), "{table}");
}
