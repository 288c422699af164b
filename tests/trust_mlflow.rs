//! What the README's "When things fail" promises with a server, against a real MLflow server:
//! `eval --log-mlflow` reaches it before returning; a model whose upload failed is never
//! registered, promoted or evaluated until `engine sync` completes it; runs recorded during an
//! outage get their LoggedModel when synced; `engine sync` tries every run, filters by
//! experiment and exits non-zero when any failed. A fault-injecting proxy stands in front of the
//! server only where the server cannot fail on its own.

#[path = "common/mlflow.rs"]
mod mlflow;

#[path = "common/cli.rs"]
mod cli;

#[path = "common/proxy.rs"]
mod proxy;

use std::path::Path;
use std::process::Output;

use cli::{engine, json_line, stderr, text};
use engine::tracking::{Auth, LocalStore, MlflowClient, RetryPolicy};

fn client(uri: &str) -> MlflowClient {
    MlflowClient::new(uri, Auth::None, RetryPolicy::default()).unwrap()
}

/// A tiny run tracked at `uri` (possibly down or failing); its run id.
fn train(dir: &Path, store: &Path, uri: &str, experiment: &str) -> String {
    let out = dir.join(format!("out-{}", engine::tracking::util::new_run_id()));
    let args = [
        "train",
        "--device",
        "cpu",
        "--epochs",
        "1",
        "--train-limit",
        "500",
        "--hidden",
        "8",
        "--experiment",
        experiment,
        "--json",
        "--output-dir",
        out.to_str().unwrap(),
    ];
    json_line(&engine(&args, store, Some(uri)))["run_id"].as_str().unwrap().to_string()
}

fn sync(store: &Path, uri: &str, extra: &[&str]) -> Output {
    engine(&[&["sync"], extra].concat(), store, Some(uri))
}

/// A URI where nothing listens.
fn dead_uri() -> String {
    format!("http://127.0.0.1:{}", mlflow::free_port())
}

#[test]
fn eval_log_mlflow_reaches_the_server_before_it_returns() {
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("trust-eval-sync");
    let store = dir.join("store");
    let run_id = train(&dir, &store, server.uri(), "trust-eval");
    let out = dir.join("eval-out");
    let args = ["eval", "--device", "cpu", "--run-id", &run_id, "--log-mlflow", "--output-dir", out.to_str().unwrap()];
    let output = engine(&args, &store, Some(server.uri()));
    assert!(output.status.success(), "{}", text(&output));
    let c = client(server.uri());
    let run = c.get_run(&run_id).unwrap();
    assert!(run.data.metrics.iter().any(|m| m.key == "eval_test_accuracy"), "{:?}", run.data.metrics);
    let files: Vec<String> = c.list_artifacts(&run_id, "evaluation").unwrap().into_iter().map(|f| f.path).collect();
    assert!(files.contains(&"evaluation/predictions.csv".to_string()), "{files:?}");

    // A run another process is recording cannot be synced: the command says so and fails.
    let run_dir = LocalStore::open(&store).unwrap().find_run_dir(&run_id).unwrap();
    let lock = std::fs::File::open(run_dir.join("lock")).or_else(|_| std::fs::File::open(run_dir.join(".lock")));
    let lock = lock.expect("the run's lock file");
    lock.try_lock().unwrap();
    let output = engine(&args, &store, Some(server.uri()));
    assert_ne!(output.status.code(), Some(0), "{}", text(&output));
    assert!(!stderr(&output).contains("synced run"), "{}", stderr(&output));
    assert!(stderr(&output).contains("another process"), "{}", stderr(&output));
}

#[test]
fn a_model_whose_upload_failed_is_refused_until_sync_completes_it() {
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("trust-pending-model");
    let store = dir.join("store");
    let port = server.uri().rsplit(':').next().unwrap().parse().unwrap();
    let uploads_fail = proxy::FaultProxy::start(Some(port), |r| {
        (r.method == "PUT" && r.path.contains("/mlflow-artifacts/artifacts/")).then_some(503)
    });
    let run_id = train(&dir, &store, &uploads_fail.uri(), "trust-pending");
    assert!(uploads_fail.injected() > 0);
    let c = client(server.uri());
    let model = c.find_run_model(&run_id).unwrap().expect("a LoggedModel was created");
    assert!(!model.is_ready(), "its files never arrived: {}", model.status);

    let name = format!("trust-pending-{}", &run_id[..8]);
    let register = ["register", "--run-id", &run_id, "--name", &name];
    let refused = engine(&register, &store, Some(server.uri()));
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(stderr(&refused).contains("engine sync"), "{}", stderr(&refused));
    assert!(c.model_versions(&name).unwrap_or_default().is_empty(), "nothing registered");

    let synced = sync(&store, server.uri(), &[]);
    assert!(synced.status.success(), "{}", text(&synced));
    let model = c.get_logged_model(&model.model_id).unwrap();
    assert!(model.is_ready(), "{}", model.status);
    let registered = engine(&register, &store, Some(server.uri()));
    assert!(registered.status.success(), "{}", text(&registered));
    let out = dir.join("eval");
    let uri = format!("models:/{name}/1");
    let args = ["eval", "--device", "cpu", "--model-uri", &uri, "--output-dir", out.to_str().unwrap()];
    let eval = engine(&args, &dir.join("other-store"), Some(server.uri()));
    assert!(eval.status.success(), "{}", text(&eval));
}

#[test]
fn versions_of_unready_models_are_neither_promoted_nor_evaluated() {
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("trust-unready-version");
    let store = dir.join("store");
    let run_id = train(&dir, &store, server.uri(), "trust-unready");
    let c = client(server.uri());
    let run = c.get_run(&run_id).unwrap();
    let pending = c.create_logged_model(&run.info.experiment_id, &run_id, "model", &[]).unwrap();
    let name = format!("trust-unready-{}", &run_id[..8]);
    c.ensure_registered_model(&name).unwrap();
    let source = format!("models:/{}", pending.model_id);
    let version = c.create_model_version(&name, &source, Some(&pending.model_id), &run_id).unwrap();

    let promote = engine(&["promote", "--name", &name, "--version", &version.version], &store, Some(server.uri()));
    assert_eq!(promote.status.code(), Some(1), "{}", text(&promote));
    assert!(stderr(&promote).contains("LOGGED_MODEL_PENDING"), "{}", stderr(&promote));
    assert!(c.get_model_version(&name, &version.version).unwrap().aliases.is_empty());
    let uri = format!("models:/{name}/{}", version.version);
    let out = dir.join("eval");
    let eval =
        engine(&["eval", "--model-uri", &uri, "--output-dir", out.to_str().unwrap()], &store, Some(server.uri()));
    assert_eq!(eval.status.code(), Some(1), "{}", text(&eval));
    assert!(stderr(&eval).contains("LOGGED_MODEL_PENDING"), "{}", stderr(&eval));
    assert!(!out.exists());
}

#[test]
fn runs_recorded_during_an_outage_get_their_logged_model_when_synced() {
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("trust-outage-model");
    let store = dir.join("store");
    let local_id = train(&dir, &store, &dead_uri(), "trust-outage");
    let synced = sync(&store, server.uri(), &[]);
    assert!(synced.status.success(), "{}", text(&synced));
    let record = LocalStore::open(&store).unwrap().load_run(&local_id).unwrap();
    let server_id = record.server_run_id().expect("synced").to_string();
    let c = client(server.uri());
    let model = c.find_run_model(&server_id).unwrap().expect("a LoggedModel linked to the run");
    assert!(model.is_ready(), "{}", model.status);
    assert_eq!(c.get_run(&server_id).unwrap().tag("engine.model_id"), Some(model.model_id.as_str()));
    assert_eq!(record.tags.get("engine.model_id"), Some(&model.model_id), "the local tag follows");
    let files: Vec<String> =
        c.get_json(&format!("logged-models/{}/artifacts/directories", model.model_id), &[]).unwrap()["files"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["path"].as_str().map(String::from))
            .collect();
    assert!(files.contains(&"model.safetensors".to_string()), "{files:?}");
    // The metrics that describe the model point at its server id; the datasets came along.
    let logged = c.get_json(&format!("logged-models/{}", model.model_id), &[]).unwrap();
    let on_model = logged["model"]["data"]["metrics"].as_array().cloned().unwrap_or_default();
    assert!(on_model.iter().any(|m| m["key"] == "test_accuracy"), "{on_model:?}");
    let inputs = c.get_run(&server_id).unwrap().inputs["dataset_inputs"].as_array().cloned().unwrap_or_default();
    assert_eq!(inputs.len(), 2, "{inputs:?}");
    let again = sync(&store, server.uri(), &[]);
    assert!(again.status.success());
    assert_eq!(c.find_run_model(&server_id).unwrap().unwrap().model_id, model.model_id, "no second model");
}

#[test]
fn sync_tries_every_run_filters_by_experiment_and_fails_loudly() {
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("trust-sync-scope");
    let store = dir.join("store");
    let dead = dead_uri();
    let a = train(&dir, &store, &dead, "trust-scope-a");
    let b = train(&dir, &store, &dead, "trust-scope-b");

    let only_a = sync(&store, server.uri(), &["--experiment", "trust-scope-a"]);
    assert!(only_a.status.success(), "{}", text(&only_a));
    let local = LocalStore::open(&store).unwrap();
    assert!(local.load_run(&a).unwrap().server_run_id().is_some());
    assert!(local.load_run(&b).unwrap().server_run_id().is_none(), "--experiment filters");

    // A server refusing every request: each run is tried, listed, and the exit code says so.
    let refusing = proxy::FaultProxy::start(None, |_| Some(401));
    let refused = sync(&store, &refusing.uri(), &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(cli::stdout(&refused).contains(&b), "{}", cli::stdout(&refused));

    // A run whose files are broken fails alone; the others still sync.
    let c = train(&dir, &store, &dead, "trust-scope-b");
    std::fs::write(local.find_run_dir(&b).unwrap().join("params.json"), b"{not json").unwrap();
    let partly = sync(&store, server.uri(), &[]);
    assert_eq!(partly.status.code(), Some(1), "{}", text(&partly));
    assert!(cli::stdout(&partly).contains("FAILED"), "{}", cli::stdout(&partly));
    assert!(local.load_run(&c).unwrap().server_run_id().is_some(), "the good run synced");
}

#[test]
fn a_slow_server_never_holds_up_training_and_a_late_run_is_completed_by_sync() {
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("trust-slow-server");
    let store = dir.join("store");
    let port = server.uri().rsplit(':').next().unwrap().parse().unwrap();
    let slow = proxy::FaultProxy::start_slow(Some(port), std::time::Duration::from_millis(500), |_| None);
    let out = dir.join("out");
    let args = [
        "train",
        "--device",
        "cpu",
        "--epochs",
        "3",
        "--train-limit",
        "500",
        "--hidden",
        "8",
        "--experiment",
        "trust-slow",
        "--json",
        "--output-dir",
        out.to_str().unwrap(),
    ];
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_engine"));
    cli::clean_env(command.args(args), &store, Some(&slow.uri())).env("ENGINE_TRACKING_DRAIN_SECONDS", "1");
    let output = command.output().unwrap();
    let run_id = json_line(&output)["run_id"].as_str().unwrap().to_string();
    assert!(stderr(&output).contains("did not take the run within 1 s"), "{}", stderr(&output));
    let record = LocalStore::open(&store).unwrap().load_run(&run_id).unwrap();
    assert_eq!(record.sync_state(), "unsynced");

    let synced = sync(&store, server.uri(), &[]);
    assert!(synced.status.success(), "{}", text(&synced));
    let run = client(server.uri()).get_run(&run_id).unwrap();
    assert_eq!(run.info.status, "FINISHED");
    assert!(run.data.metrics.iter().any(|m| m.key == "test_accuracy"));
    // (Synced to the server itself, not through the slow proxy the run was started with.)
    let record = LocalStore::open(&store).unwrap().load_run(&run_id).unwrap();
    assert!(record.remotes.iter().any(|r| r.tracking_uri == server.uri() && r.synced), "{}", text(&synced));
}
