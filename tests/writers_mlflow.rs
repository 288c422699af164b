//! Many trainers writing to one MLflow server at once, and the server restarted while they run:
//! after `engine sync` every run is complete on the server (params, each metric point once,
//! artifacts, a ready model) and nothing is duplicated. `scripts/test.sh` runs it against a
//! PostgreSQL-backed server as well as the sqlite one.

#[path = "common/mlflow.rs"]
mod mlflow;

#[path = "common/cli.rs"]
mod cli;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cli::{clean_env, text};
use engine::tracking::{Auth, LocalStore, MlflowClient, RecordStatus, RetryPolicy};

const WRITERS: usize = 16;

#[test]
fn sixteen_trainers_and_a_server_restart_end_complete_after_sync() {
    let Some(bin) = mlflow::mlflow_or_skip() else { return };
    let dir = mlflow::scratch_dir("engine-writers");
    std::fs::create_dir_all(dir.join("server")).unwrap();
    let mut server = mlflow::MlflowServer::start_with(bin, dir.join("server"), mlflow::free_port()).unwrap();
    let store = dir.join("store");
    let trainers: Vec<Child> = (0..WRITERS)
        .map(|i| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
            let args = ["train", "--device", "cpu", "--epochs", "2", "--train-limit", "300", "--hidden", "8"];
            clean_env(command.args(args), &store, Some(server.uri()))
                .args(["--experiment", "writers", "--run-name", &format!("writer-{i}"), "--no-system-metrics"])
                .arg("--output-dir")
                .arg(dir.join(format!("out-{i}")))
                .env("RAYON_NUM_THREADS", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the engine starts")
        })
        .collect();
    // Restart while the trainers are logging.
    std::thread::sleep(Duration::from_secs(3));
    server.restart().unwrap();
    for trainer in trainers {
        let output = trainer.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", text(&output));
    }

    let synced = cli::engine(&["sync"], &store, Some(server.uri()));
    assert!(synced.status.success(), "{}", text(&synced));
    let c = MlflowClient::new(server.uri(), Auth::None, RetryPolicy::default()).unwrap();
    let experiment = c.get_experiment_by_name("writers").unwrap().expect("the experiment");
    let runs = c.search_runs(&[experiment.experiment_id.as_str()], "", &[], 1000).unwrap();
    assert_eq!(runs.len(), WRITERS, "one server run per trainer, no duplicates");

    let local = LocalStore::open(&store).unwrap().list_runs(Some("writers")).unwrap();
    assert_eq!(local.len(), WRITERS);
    for record in &local {
        assert_eq!(record.status, RecordStatus::Finished);
        assert_eq!(record.sync_state(), "synced", "{}", record.run_id);
        let id = record.server_run_id().expect("on the server");
        let run = c.get_run(id).unwrap();
        assert_eq!(run.info.status, "FINISHED");
        assert_eq!(run.data.params.len(), record.params.len(), "params of {id}");
        // Each point once: the server's histories equal the local ones.
        for key in record.metric_keys() {
            let count = |points: &[engine::tracking::Metric]| {
                let mut by_step: BTreeMap<i64, usize> = BTreeMap::new();
                points.iter().for_each(|p| *by_step.entry(p.step).or_default() += 1);
                by_step
            };
            let server_points = c.get_metric_history(id, &key).unwrap();
            assert_eq!(count(&server_points), count(&record.metric_history(&key)), "{key} of {id}");
        }
        let files: Vec<String> = c.list_artifacts_recursive(id).unwrap().into_iter().map(|f| f.path).collect();
        for artifact in &record.artifacts {
            assert!(files.contains(&artifact.path), "{} of {id} missing: {files:?}", artifact.path);
        }
        let model = c.find_run_model(id).unwrap().expect("a model");
        assert!(model.is_ready(), "{}", model.status);
    }
}
