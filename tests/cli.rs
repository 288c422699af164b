//! The `engine` binary: bad flags exit with code 2 and name the flag; a missing data
//! directory explains how to provide the data; a short real training run on FashionMNIST beats
//! an accuracy floor and writes its model and reports.

#[path = "common/cli.rs"]
mod cli;

use std::process::{Command, Output};

use cli::{stderr, unused_path as temp_dir};

/// `engine ARGS` with a local store shared by this binary's tests (which run concurrently, so
/// it is never emptied).
fn engine(args: &[&str]) -> Output {
    let store = std::env::temp_dir().join(format!("engine-cli-store-{}", std::process::id()));
    cli::engine(args, &store, None)
}

#[test]
fn bad_hyperparameters_exit_2_naming_the_flag() {
    let cases: [(&[&str], &str); 10] = [
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
