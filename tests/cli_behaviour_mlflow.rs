//! A server that answers the start of a run too late for training to wait: the run starts
//! under a local id, and `engine sync` completes it on the server run created late (no second
//! run), against a real MLflow server behind a proxy that holds up `runs/create`.

#[path = "common/mlflow.rs"]
mod mlflow;

#[path = "common/cli.rs"]
mod cli;

#[path = "common/proxy.rs"]
mod proxy;

use std::process::Command;
use std::time::{Duration, Instant};

use cli::{clean_env, json_line, stderr};
use engine::tracking::{Auth, LOCAL_RUN_ID_TAG, LocalStore, MlflowClient, RetryPolicy};

#[test]
fn a_run_created_late_on_the_server_is_linked_to_its_local_record() {
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("behaviour-late-create");
    let store = dir.join("store");
    let port = server.uri().rsplit(':').next().and_then(|p| p.parse().ok()).expect("the server's port");
    let late = proxy::FaultProxy::start(Some(port), |request| {
        if request.path.contains("runs/create") {
            std::thread::sleep(Duration::from_secs(5));
        }
        None
    });
    let args = ["train", "--device", "cpu", "--epochs", "1", "--train-limit", "500", "--hidden", "8", "--json"];
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    clean_env(command.args(args).args(["--experiment", "behaviour-late", "--output-dir"]), &store, Some(&late.uri()))
        .arg(dir.join("out"))
        .env("ENGINE_TRACKING_DRAIN_SECONDS", "60");
    let started = Instant::now();
    let output = command.output().expect("the engine runs");
    let run_id = json_line(&output)["run_id"].as_str().expect("a run id").to_string();
    assert!(stderr(&output).contains("not answering"), "{}", stderr(&output));
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());

    let record = LocalStore::open(&store).and_then(|s| s.load_run(&run_id)).expect("the local run");
    assert_eq!(record.sync_state(), "unsynced", "its model was recorded before the server named the run");

    let synced = cli::engine(&["sync"], &store, Some(&late.uri()));
    assert!(synced.status.success(), "{}", cli::text(&synced));
    let record = LocalStore::open(&store).and_then(|s| s.load_run(&run_id)).expect("the local run");
    assert_eq!(record.sync_state(), "synced", "{}", cli::text(&synced));
    let server_id = record.server_run_id().expect("linked to its server run").to_string();
    assert_ne!(server_id, run_id, "the run started before the server named it");
    let client = MlflowClient::new(server.uri(), Auth::None, RetryPolicy::default()).expect("a client");
    let run = client.get_run(&server_id).expect("the server run");
    assert_eq!(run.info.status, "FINISHED");
    assert_eq!(run.tag(LOCAL_RUN_ID_TAG), Some(run_id.as_str()));
    assert!(run.data.metrics.iter().any(|m| m.key == "test_accuracy"));
    assert!(run.data.params.iter().any(|p| p.key == "epochs"));
    let experiment = client.get_experiment_by_name("behaviour-late").ok().flatten().expect("the experiment");
    let runs = client.search_runs(&[experiment.experiment_id.as_str()], "", &[], 100).expect("its runs");
    assert_eq!(runs.len(), 1, "one server run, created late, and no second one");
}
