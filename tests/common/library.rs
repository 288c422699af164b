//! Running the workflow through the library in tests, without the `engine` binary: FashionMNIST
//! on the CPU, loaded once per test binary, tracked runs that must finish, and evaluations
//! logged back to their runs.
//!
//! ```ignore
//! #[path = "common/library.rs"]
//! mod library;
//! ```
#![allow(dead_code)] // each test binary uses a different part

use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use engine::experiment::{self, Bench, EvalSpec, Evaluated, RunSpec};
use engine::tracking::TrackingConfig;
use engine::train::TrainConfig;

/// FashionMNIST on the CPU (what `--device auto` picks beside a software GPU), loaded once.
pub fn bench() -> &'static Bench {
    static BENCH: OnceLock<Bench> = OnceLock::new();
    BENCH.get_or_init(|| {
        let fashion_mnist = engine::data::DataSource::default();
        Bench::load(engine::Device::Cpu, "cpu".into(), fashion_mnist)
            .expect("FashionMNIST (Debian's dataset-fashion-mnist)")
    })
}

/// Runs `spec` to its end, uncancelled: the run's id and its summary (what `engine train --json`
/// prints). A run that fails fails the test.
pub fn finished_run(spec: &RunSpec) -> (String, serde_json::Value) {
    let outcome = experiment::tracked_run(bench(), spec, &AtomicBool::new(false), &mut |_| {}).expect("the run starts");
    match outcome.result {
        Ok(summary) => (outcome.run_id, summary),
        Err(e) => panic!("run {} ended {:?}: {e}", outcome.run_id, outcome.status),
    }
}

/// Tracking on the server at `uri`, with `store` as the local store (as `MLFLOW_TRACKING_URI`
/// and `ENGINE_LOCAL_STORE` set it for the binary).
pub fn on_server(uri: &str, store: &Path, experiment: &str) -> TrackingConfig {
    TrackingConfig { tracking_uri: Some(uri.to_string()), ..TrackingConfig::local(store, experiment) }
}

/// One epoch of an 8-unit MLP on 500 images, as `cli::train_tiny` trains it, recorded in the
/// local store `store` under the default experiment, its files in `output_dir`.
pub fn tiny_spec(store: &Path, output_dir: &Path) -> RunSpec {
    let config = TrainConfig { epochs: 1, train_limit: Some(500), hidden: vec![8], ..TrainConfig::default() };
    let tracking = TrackingConfig::local(store, engine::tracking::DEFAULT_EXPERIMENT);
    RunSpec { output_dir: Some(output_dir.to_path_buf()), ..RunSpec::new(config, tracking) }
}

/// Evaluates run `run_id`'s model on the test set into `output_dir` in batches of 64, then logs
/// the evaluation to the run with `tags` and `description`: `engine eval --log-mlflow`.
pub fn evaluate_and_log(
    tracking: &TrackingConfig,
    run_id: &str,
    output_dir: &Path,
    tags: &[(String, String)],
    description: Option<&str>,
) -> Evaluated {
    let spec = EvalSpec {
        run_id: Some(run_id),
        model_uri: None,
        batch_size: 64,
        output_dir: Some(output_dir.to_path_buf()),
        data: &bench().source,
        tracking,
    };
    let evaluated = experiment::evaluate(&spec, &bench().device).expect("the model evaluates");
    experiment::log_evaluation(tracking, &evaluated, tags, description).expect("the evaluation is logged");
    evaluated
}
