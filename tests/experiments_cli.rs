//! `engine runs compare|show|analyze` on a local store of crafted runs: the ranking, the best
//! and recommended runs, the overfitting flag, and the checklist written and logged as
//! `analysis.md`; bad flags exit with code 2.

#[path = "common/cli.rs"]
mod cli;

use std::path::Path;
use std::process::{Command, Output};

use cli::{empty_dir as scratch, stderr, stdout};
use engine::tracking::{LocalStore, LocalTracker, Metric, RunStatus, Tracker, TrackingConfig};
use serde_json::{Value, json};

/// `engine ARGS` run in `cwd`, where `runs analyze` writes by default.
fn engine(args: &[&str], store: &Path, cwd: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    cli::clean_env(command.args(args).current_dir(cwd), store, None).output().expect("the engine binary runs")
}

/// A finished run with the given params, final metrics, loss curves and JSON artifacts.
struct Crafted<'a> {
    name: &'a str,
    lr: &'a str,
    hidden: &'a str,
    finals: &'a [(&'a str, f64)],
    train_loss: &'a [f64],
    val_loss: &'a [f64],
    artifacts: &'a [(&'a str, Value)],
}

fn record(root: &Path, run: &Crafted) -> String {
    let mut config = TrackingConfig::local(root, "fashion-mnist");
    config.run_name = Some(run.name.to_string());
    let mut tracker = LocalTracker::new(config).unwrap();
    let params: Vec<(String, String)> = [("learning_rate", run.lr), ("hidden", run.hidden), ("batch_size", "128")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let id = tracker.start_run(&params, &[]).unwrap();
    for (i, (t, v)) in run.train_loss.iter().zip(run.val_loss).enumerate() {
        let epoch = i as i64 + 1;
        tracker.log_metrics(&[Metric::new("train_loss", *t, epoch), Metric::new("val_loss", *v, epoch)]).unwrap();
    }
    let last = run.train_loss.len() as i64;
    let finals: Vec<Metric> = run.finals.iter().map(|(k, v)| Metric::new(*k, *v, last)).collect();
    tracker.log_metrics(&finals).unwrap();
    let files = root.with_extension(format!("files-{}", run.name));
    std::fs::create_dir_all(&files).unwrap();
    for (name, value) in run.artifacts {
        let path = files.join(name);
        std::fs::write(&path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
        tracker.log_artifact(&path, "").unwrap();
    }
    tracker.end_run(RunStatus::Finished).unwrap();
    id
}

const FALLING: [f64; 4] = [0.9, 0.6, 0.45, 0.35];
const STEADY: [f64; 4] = [0.8, 0.6, 0.5, 0.45];
const TURNING: [f64; 4] = [0.8, 0.55, 0.6, 0.7];

/// Three runs: "big" is the most accurate, "small" is 0.003 behind and 5x cheaper, "tiny" is
/// cheaper still but 0.05 behind; "big" overfits from epoch 2.
fn crafted_store(root: &Path) -> [String; 3] {
    let big = record(
        root,
        &Crafted {
            name: "big",
            lr: "0.01",
            hidden: "512,512",
            finals: &[
                ("test_accuracy", 0.8870),
                ("test_loss", 0.33),
                ("train_seconds", 100.0),
                ("parameter_count", 669_706.0),
            ],
            train_loss: &FALLING,
            val_loss: &TURNING,
            artifacts: &[],
        },
    );
    let small = record(
        root,
        &Crafted {
            name: "small",
            lr: "0.001",
            hidden: "128",
            finals: &[
                ("test_accuracy", 0.8840),
                ("test_loss", 0.32),
                ("train_seconds", 20.0),
                ("parameter_count", 101_770.0),
            ],
            train_loss: &FALLING,
            val_loss: &STEADY,
            artifacts: &[],
        },
    );
    let tiny = record(
        root,
        &Crafted {
            name: "tiny",
            lr: "0.0001",
            hidden: "16",
            finals: &[
                ("test_accuracy", 0.8370),
                ("test_loss", 0.45),
                ("train_seconds", 5.0),
                ("parameter_count", 12_730.0),
            ],
            train_loss: &FALLING,
            val_loss: &STEADY,
            artifacts: &[],
        },
    );
    [big, small, tiny]
}

#[test]
fn compare_ranks_marks_the_best_and_recommends_the_cheapest_within_tolerance() {
    let dir = scratch("compare");
    let store = dir.join("store");
    let [big, small, tiny] = crafted_store(&store);

    let output = engine(&["runs", "compare", "--json"], &store, &dir);
    assert!(output.status.success(), "{}", stderr(&output));
    let v: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    let ids: Vec<&str> = v["runs"].as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [big.as_str(), small.as_str(), tiny.as_str()]);
    assert_eq!(v["best"], json!(big));
    assert_eq!(v["recommended"]["run_id"], json!(small));
    assert!(v["recommended"]["reason"].as_str().unwrap().contains("20.0 s of training instead of 100.0 s"));
    assert_eq!(v["runs"][0]["overfitting"]["best_epoch"], 2);
    assert!(v["runs"][1]["overfitting"].is_null());
    assert_eq!(v["direction"], "max");

    // The table: best and recommended marked, overfitting flagged, the reason printed.
    let output = engine(&["runs", "compare"], &store, &dir);
    let text = stdout(&output);
    let line = |name: &str| text.lines().find(|l| l.contains(&format!(" {name} "))).unwrap_or_default().to_string();
    assert!(line("big").contains("best") && line("big").contains("overfit@2"), "{text}");
    assert!(line("small").contains("recommended"), "{text}");
    assert!(line("small").contains("101,770"), "{text}");
    assert!(
        text.contains(&format!("recommended: {} small: its test_accuracy 0.8840 is within 0.005", &small[..8])),
        "{text}"
    );

    // A tighter tolerance recommends the best; a loss is minimised; --top cuts the list.
    let v: Value =
        serde_json::from_str(&stdout(&engine(&["runs", "compare", "--json", "--tolerance", "0.001"], &store, &dir)))
            .unwrap();
    assert_eq!(v["recommended"]["run_id"], json!(big));
    let v: Value = serde_json::from_str(&stdout(&engine(
        &["runs", "compare", "--json", "--metric", "test_loss", "--top", "2", "--tolerance", "0.02"],
        &store,
        &dir,
    )))
    .unwrap();
    assert_eq!(v["direction"], "min");
    let ids: Vec<&str> = v["runs"].as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [small.as_str(), big.as_str()]);
    assert_eq!(v["recommended"]["run_id"], json!(small));

    // runs show flags the overfitting run only.
    let shown = stdout(&engine(&["runs", "show", &big], &store, &dir));
    assert!(shown.contains("overfitting  validation loss rose for the last 2 epochs"), "{shown}");
    assert!(!stdout(&engine(&["runs", "show", &tiny], &store, &dir)).contains("overfitting"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_flags_are_usage_errors() {
    let dir = scratch("usage");
    let store = dir.join("store");
    for args in [
        &["runs", "compare", "--tolerance", "-1"][..],
        &["runs", "compare", "--direction", "up"],
        &["runs", "compare", "--top", "0"],
        &["runs", "analyze", "0123", "--baseline", "2"],
        &["sweep", "--lr", "0.1,-1", "--data-dir", "/nonexistent"],
        &["sweep", "--hidden", "64|0", "--data-dir", "/nonexistent"],
        &["sweep", "--model", "cnn", "--hidden", "64|128", "--data-dir", "/nonexistent"],
        &["sweep", "--model", "cnn", "--hidden", "256", "--data-dir", "/nonexistent"],
        &["train", "--early-stop-patience", "2", "--val-split", "0", "--data-dir", "/nonexistent"],
    ] {
        let output = engine(args, &store, &dir);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
    }
    let output = engine(&["runs", "analyze", "feedbeef"], &store, &dir);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("feedbeef"), "{}", stderr(&output));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn analyze_writes_and_logs_the_checklist_with_the_runs_numbers() {
    let dir = scratch("analyze");
    let store = dir.join("store");
    let [_, small, _] = crafted_store(&store);
    let report = json!({
        "T-shirt/top": {"precision": 0.8, "recall": 0.85, "f1-score": 0.824, "support": 1000.0},
        "Trouser": {"precision": 0.98, "recall": 0.97, "f1-score": 0.975, "support": 1000.0},
        "Shirt": {"precision": 0.7, "recall": 0.6, "f1-score": 0.646, "support": 1000.0},
        "accuracy": 0.8,
        "macro avg": {"precision": 0.83, "recall": 0.81, "f1-score": 0.815, "support": 3000.0},
        "weighted avg": {"precision": 0.83, "recall": 0.81, "f1-score": 0.815, "support": 3000.0}
    });
    let cm = json!({
        "class_names": ["T-shirt/top", "Trouser", "Shirt"],
        "rows": "true label", "columns": "predicted label",
        "counts": [[850, 27, 123], [10, 970, 20], [230, 170, 600]]
    });
    let overfit = record(
        &store,
        &Crafted {
            name: "overfit",
            lr: "0.05",
            hidden: "256",
            finals: &[
                ("test_accuracy", 0.8860),
                ("test_loss", 0.34),
                ("train_seconds", 60.0),
                ("parameter_count", 203_530.0),
            ],
            train_loss: &[1.0, 0.7, 0.5, 0.4, 0.3],
            val_loss: &[0.9, 0.6, 0.5, 0.55, 0.6],
            artifacts: &[("classification_report.json", report), ("confusion_matrix.json", cm)],
        },
    );
    let out = dir.join("out");
    let output = engine(&["runs", "analyze", &overfit[..10], "--output-dir", out.to_str().unwrap()], &store, &dir);
    assert!(output.status.success(), "{}", stderr(&output));
    let md = std::fs::read_to_string(out.join("analysis.md")).unwrap();
    assert_eq!(stdout(&output), md);
    for needle in [
        "# Evaluation checklist: overfit",
        "Does test accuracy beat random guessing (33%)?",
        "Yes: 88.60% against 33.33% by chance",
        "Yes: 88.60% (+3.60 points)",
        "No: 2nd of 4 runs with test_accuracy (0.8860)",
        "Yes, from epoch 4: validation loss rose for the last 2 epochs (from 0.5000 at epoch 3 to 0.6000 at epoch 5)",
        "Shirt has the lowest F1 (0.6460",
        "Shirt predicted as T-shirt/top: 230; Shirt predicted as Trouser: 170; T-shirt/top predicted as Shirt: 123.",
        &format!("Yes: {} (small) reaches 0.8840 with 20.0 s of training", &small[..8]),
    ] {
        assert!(md.contains(needle), "missing {needle:?} in:\n{md}");
    }
    // Logged as an artifact of the run in the local store.
    let run = LocalStore::open(&store).unwrap().load_run(&overfit).unwrap();
    assert!(run.artifacts.iter().any(|a| a.path == "analysis.md"), "{:?}", run.artifacts);
    assert_eq!(std::fs::read_to_string(run.dir.join("artifacts/analysis.md")).unwrap(), md);

    // --json gives the same answers to scripts.
    let output = engine(&["runs", "analyze", &overfit, "--json", "--output-dir", out.to_str().unwrap()], &store, &dir);
    let v: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(v["weakest_class"]["name"], "Shirt");
    assert_eq!(v["overfitting"]["best_epoch"], 3);
    assert_eq!(v["top_confusions"][0]["count"], 230);
    let _ = std::fs::remove_dir_all(&dir);
}
