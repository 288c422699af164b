//! `engine sweep` against a real MLflow server: three tiny runs nested under one parent
//! (`mlflow.parentRunId`, as MLflow's client nests runs) on the server and in the local store,
//! each with its cost recorded, and the final comparison naming the best run.

#[path = "common/mlflow.rs"]
mod mlflow;

#[path = "common/cli.rs"]
mod cli;

#[path = "common/halving.rs"]
mod halving;

use std::process::Command;

use engine::tracking::{Auth, LocalStore, MlflowClient, RetryPolicy};

#[test]
fn a_sweep_nests_one_child_run_per_grid_point_under_a_parent() {
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("engine-sweep");
    let store = dir.join("store");
    let output = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args([
            "sweep",
            "--device",
            "cpu",
            "--lr",
            "1e-2,1e-3,1e-4",
            "--train-limit",
            "1000",
            "--epochs",
            "1",
            "--hidden",
            "32",
            "--experiment",
            "sweep-tests",
            "--run-name",
            "lr-sweep",
            "--output-dir",
            dir.join("out").to_str().unwrap(),
            "--json",
        ])
        .env("ENGINE_LOCAL_STORE", &store)
        .env("MLFLOW_TRACKING_URI", server.uri())
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        .env_remove("ENGINE_DATA_DIR")
        .env_remove("MLFLOW_EXPERIMENT_NAME")
        .output()
        .expect("the engine binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    let parent_id = summary["parent_run_id"].as_str().unwrap().to_string();
    assert_eq!(summary["runs"].as_array().unwrap().len(), 3);

    // On the server: a FINISHED parent with the grid as params, three children pointing at it.
    let client = MlflowClient::new(server.uri(), Auth::None, RetryPolicy::default()).unwrap();
    let experiment = client.get_experiment_by_name("sweep-tests").unwrap().expect("the experiment exists");
    let runs = client.search_runs(&[&experiment.experiment_id], "", &[], 100).unwrap();
    assert_eq!(runs.len(), 4, "a parent and three children");
    let parent = client.get_run(&parent_id).unwrap();
    assert_eq!(parent.info.status, "FINISHED");
    assert_eq!(parent.info.run_name, "lr-sweep");
    assert_eq!(parent.param("sweep_learning_rate"), Some("0.01,0.001,0.0001"));
    assert_eq!(parent.param("sweep_runs"), Some("3"));
    assert_eq!(parent.tag("engine.best_run_id"), summary["best"].as_str());
    let children: Vec<_> = runs.iter().filter(|r| r.tag("mlflow.parentRunId") == Some(parent_id.as_str())).collect();
    assert_eq!(children.len(), 3);
    let mut rates: Vec<&str> = children.iter().filter_map(|c| c.param("learning_rate")).collect();
    rates.sort();
    assert_eq!(rates, ["0.0001", "0.001", "0.01"]);
    for child in &children {
        assert_eq!(child.info.status, "FINISHED");
        assert_eq!(child.param("hidden"), Some("32"));
        let has = |key: &str| child.data.metrics.iter().any(|m| m.key == key && m.value > 0.0);
        for key in [
            "test_accuracy",
            "train_seconds",
            "samples_per_second",
            "parameter_count",
            "inference_ms_batch_64",
            "inference_ms_batch_1000",
            "peak_rss_mb",
        ] {
            assert!(has(key), "child {} lacks {key}", child.info.run_id);
        }
        let params = child.data.metrics.iter().find(|m| m.key == "parameter_count").map(|m| m.value);
        assert_eq!(params, Some((784 * 32 + 32 + 32 * 10 + 10) as f64));
    }

    // In the local store: the same four runs, the children tagged with the same parent.
    let local = LocalStore::open(&store).unwrap().list_runs(Some("sweep-tests")).unwrap();
    assert_eq!(local.len(), 4);
    let local_children =
        local.iter().filter(|r| r.tags.get("mlflow.parentRunId").map(String::as_str) == Some(&parent_id)).count();
    assert_eq!(local_children, 3);

    // runs compare --parent reads the sweep back from the server.
    let output = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["runs", "compare", "--experiment", "sweep-tests", "--parent", &parent_id, "--json"])
        .env("ENGINE_LOCAL_STORE", dir.join("empty-store"))
        .env("MLFLOW_TRACKING_URI", server.uri())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let compared: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(compared["runs"].as_array().unwrap().len(), 3);
    assert_eq!(compared["best"], summary["best"]);

    // runs analyze on a run that is only on the server: the checklist is uploaded to the run.
    let best = summary["best"].as_str().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(["runs", "analyze", best, "--output-dir", dir.join("analysis").to_str().unwrap()])
        .env("ENGINE_LOCAL_STORE", dir.join("empty-store"))
        .env("MLFLOW_TRACKING_URI", server.uri())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let md = std::fs::read_to_string(dir.join("analysis/analysis.md")).unwrap();
    assert!(md.contains("best of 3 runs with test_accuracy"), "{md}");
    assert!(md.contains(" predicted as "), "the confusions come from the run's artifact: {md}");
    let files: Vec<String> = client.list_artifacts(best, "").unwrap().into_iter().map(|f| f.path).collect();
    assert!(files.contains(&"analysis.md".to_string()), "{files:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_halving_search_on_the_server_holds_its_rungs_budget_and_pruned_trials() {
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("engine-halving");
    let store = dir.join("store");
    let engine = |args: &[&str]| {
        let output = cli::engine(args, &store, Some(server.uri()));
        assert!(output.status.success(), "{args:?}: {}", cli::stderr(&output));
        cli::stdout(&output)
    };
    let out = dir.join("out").to_str().unwrap().to_string();
    let search = halving::tiny_halving("0", "500");
    let mut args: Vec<&str> = vec!["sweep", "--workers", "2", "--experiment", "halving-tests", "--run-name", "halving"];
    args.extend(search.iter().map(String::as_str));
    args.extend(["--output-dir", &out, "--json"]);
    let stdout = engine(&args);
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    let parent_id = summary["parent_run_id"].as_str().unwrap();

    let client = MlflowClient::new(server.uri(), Auth::None, RetryPolicy::default()).unwrap();
    let parent = client.get_run(parent_id).unwrap();
    assert_eq!(parent.info.status, "FINISHED");
    assert_eq!(parent.param("search_strategy"), Some("halving"));
    assert_eq!(parent.param("search_space"), Some("lr=loguniform(0.001,0.3) dropout=uniform(0,0.4)"));
    assert_eq!((parent.param("search_eta"), parent.param("search_rung_epochs")), (Some("3"), Some("1,3")));
    assert_eq!(parent.param("search_metric"), Some("val_loss"));
    let metric =
        |run: &engine::tracking::Run, key: &str| run.data.metrics.iter().find(|m| m.key == key).map(|m| m.value);
    assert_eq!(metric(&parent, "budget_epochs"), Some(10.0));
    assert!(metric(&parent, "budget_train_seconds").is_some_and(|s| s > 0.0));
    let best = parent.tag("engine.best_run_id").unwrap();
    let best_name = client.get_run(best).unwrap().info.run_name;
    assert_eq!(parent.tag("engine.best_trial"), Some(best_name.as_str()));
    assert!(parent.tag("engine.best_config").is_some_and(|c| c.contains("learning_rate=")));

    let experiment = client.get_experiment_by_name("halving-tests").unwrap().unwrap();
    let runs = client.search_runs(&[&experiment.experiment_id], "", &[], 100).unwrap();
    let children: Vec<_> = runs.iter().filter(|r| r.tag("mlflow.parentRunId") == Some(parent_id)).collect();
    assert_eq!(children.len(), 6 + 2);
    for child in &children {
        let rung = metric(child, "rung").expect("each run logs its rung");
        let epochs = child.param("epochs").unwrap();
        assert_eq!(epochs, if rung == 1.0 { "3" } else { "1" });
        // Numeric params, so the UI's parallel coordinates chart places each trial.
        for key in ["learning_rate", "dropout", "batch_size", "epochs"] {
            assert!(child.param(key).unwrap().parse::<f64>().is_ok(), "{key}");
        }
        let promoted =
            children.iter().any(|c| c.info.run_name == child.info.run_name && metric(c, "rung") == Some(1.0));
        assert_eq!(child.tag("engine.pruned").is_some(), !promoted, "{}", child.info.run_name);
    }

    // runs compare shows the rung each run reached.
    let table = engine(&["runs", "compare", "--experiment", "halving-tests", "--parent", parent_id]);
    let header = table.lines().next().unwrap();
    assert!(header.contains(" EPOCHS  RUNG "), "{table}");
    // runs analyze counts each trial once, by its furthest rung.
    let analysis = dir.join("analysis");
    engine(&["runs", "analyze", best, "--output-dir", analysis.to_str().unwrap()]);
    let md = std::fs::read_to_string(analysis.join("analysis.md")).unwrap();
    assert!(md.contains("best of 6 runs with test_accuracy"), "{md}");
    let _ = std::fs::remove_dir_all(&dir);
}
