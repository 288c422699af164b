//! A tracked training run, its evaluation and its quality gate, through the library alone:
//! one epoch on the first 3,000 FashionMNIST images, recorded in a local store in a temporary
//! directory.
//!
//! `cargo run --release --example tracked_run` (FashionMNIST from `ENGINE_DATA_DIR`, the cache,
//! or Debian's `dataset-fashion-mnist` package).

use std::sync::atomic::AtomicBool;

use engine::data::DataSource;
use engine::experiment::{self, Bench, EvalSpec, Event, RunSpec};
use engine::gate::Gate;
use engine::tracking::TrackingConfig;
use engine::train::TrainConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = std::env::temp_dir().join(format!("engine-example-{}", std::process::id()));
    let tracking = TrackingConfig::local(scratch.join("store"), "example");
    // FashionMNIST; `DataSource::parse("folder:DIR", &DataFlags::default())` trains on a folder.
    let dir = std::env::var_os("ENGINE_DATA_DIR").map(std::path::PathBuf::from);
    let data = DataSource::FashionMnist { dir };
    let bench = Bench::load(engine::Device::Cpu, "cpu".into(), data.clone())?;
    let config = TrainConfig { epochs: 1, hidden: vec![128], train_limit: Some(3000), ..TrainConfig::default() };
    let spec = RunSpec { output_dir: Some(scratch.join("run")), ..RunSpec::new(config, tracking.clone()) };
    let mut show = |event: Event| match event {
        Event::Training(engine::train::Event::EpochEnd(m)) => {
            println!("epoch {}: train_loss {:.4}", m.epoch, m.train_loss)
        }
        Event::Tested { accuracy, .. } => println!("test accuracy {accuracy:.4}"),
        _ => {}
    };
    let outcome = experiment::tracked_run(&bench, &spec, &AtomicBool::new(false), &mut show)?;
    outcome.result?;
    println!("run {} ended {}", outcome.run_id, outcome.status);

    let eval_spec = EvalSpec {
        run_id: Some(&outcome.run_id),
        model_uri: None,
        batch_size: 1000,
        output_dir: Some(scratch.join("evaluation")),
        data: &data,
        tracking: &tracking,
    };
    let evaluated = experiment::evaluate(&eval_spec, &bench.device)?;
    println!("evaluation: accuracy {:.4}, macro F1 {:.4}", evaluated.eval.accuracy, evaluated.report.macro_f1());
    experiment::log_evaluation(&tracking, &evaluated, &[], Some("evaluated by the example"))?;

    let rule = Gate::new("test_accuracy", Some(0.6), 0.0, None)?;
    let gated = experiment::gate_run(&tracking, &outcome.run_id, &rule, None)?;
    println!("{}", gated.line);
    std::fs::remove_dir_all(&scratch)?;
    if !gated.decision.passed() {
        return Err("the model did not pass the gate".into());
    }
    Ok(())
}
