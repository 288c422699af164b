//! The workflow through the library, without the `engine` binary: a tracked run ends FINISHED,
//! FAILED with its reason, or KILLED without a model when cancelled at any point before the model
//! is recorded; an evaluation, gate decisions and the checklist are recorded on the run, and a
//! failed gate keeps the run from the registry unless forced.

#[path = "common/cli.rs"]
mod cli;

#[path = "common/library.rs"]
mod library;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use cli::empty_dir;
use engine::experiment::{self, AnalyzeSpec, EvalSpec, Event, ExperimentError, RunOutcome, RunSpec};
use engine::gate::{DECISION_TAG, FORCED_TAG, Gate, GateError};
use engine::tracking::{LocalStore, RecordStatus, RunHandle, RunRecord, RunStatus, TrackingConfig};
use engine::train::{self, TrainConfig};
use library::bench;

/// A one-epoch run on 500 images, recorded in `dir/store`, its files in `dir/out`.
fn spec(dir: &Path, config: TrainConfig) -> RunSpec {
    let tracking = TrackingConfig::local(dir.join("store"), "library");
    RunSpec { output_dir: Some(dir.join("out")), ..RunSpec::new(config, tracking) }
}

fn tiny() -> TrainConfig {
    TrainConfig { epochs: 2, hidden: vec![8], train_limit: Some(500), ..TrainConfig::default() }
}

/// Runs `spec`, raising the cancellation flag when `cancel_at` says so of an event; returns the
/// outcome and whether a notice was given.
fn run_until(spec: &RunSpec, cancel_at: impl Fn(&Event) -> bool) -> (RunOutcome, Vec<String>) {
    let cancel = AtomicBool::new(false);
    let mut notices = Vec::new();
    let mut observe = |event: Event| {
        if cancel_at(&event) {
            cancel.store(true, Ordering::SeqCst);
        }
        if let Event::Notice(text) = event {
            notices.push(text);
        }
    };
    let outcome = experiment::tracked_run(bench(), spec, &cancel, &mut observe).expect("the run starts");
    (outcome, notices)
}

fn record(spec: &RunSpec, run_id: &str) -> RunRecord {
    LocalStore::open(&spec.tracking.local_root).unwrap().load_run(run_id).unwrap()
}

#[test]
fn a_diverged_run_records_why_it_failed() {
    let dir = empty_dir("library-diverged");
    let spec = spec(&dir, TrainConfig { lr: 1e6, epochs: 1, train_limit: Some(500), ..TrainConfig::default() });
    let (outcome, _) = run_until(&spec, |_| false);
    assert_eq!(outcome.status, RunStatus::Failed);
    assert!(matches!(outcome.result, Err(ExperimentError::Train(train::TrainError::NonFiniteLoss { .. }))));
    let run = record(&spec, &outcome.run_id);
    assert_eq!(run.status, RecordStatus::Failed);
    let reason = run.tags.get(experiment::ERROR_TAG).expect("a reason");
    assert!(reason.contains("epoch") && reason.contains("step"), "{reason}");
    assert!(!dir.join("out/model").exists());
}

/// Whether to cancel the run on this event.
type CancelPoint = fn(&Event) -> bool;

#[test]
fn a_cancel_before_the_model_is_recorded_ends_the_run_killed_without_a_model() {
    let points: [(&str, CancelPoint); 3] = [
        ("the first step", |e| matches!(e, Event::Training(train::Event::Step { .. }))),
        ("the last epoch's end", |e| matches!(e, Event::Training(train::Event::EpochEnd(m)) if m.epoch == 2)),
        ("the test evaluation", |e| matches!(e, Event::Tested { .. })),
    ];
    for (point, cancel_at) in points {
        let dir = empty_dir("library-cancelled");
        let spec = spec(&dir, tiny());
        let (outcome, _) = run_until(&spec, cancel_at);
        assert_eq!(outcome.status, RunStatus::Killed, "cancelled at {point}");
        assert!(outcome.result.as_ref().is_err_and(ExperimentError::is_interrupted), "cancelled at {point}");
        let run = record(&spec, &outcome.run_id);
        assert_eq!(run.status, RecordStatus::Killed, "cancelled at {point}");
        assert!(!run.tags.contains_key(experiment::ERROR_TAG), "a cancel is no failure: {point}");
        assert!(!dir.join("out/model").exists(), "a model after a cancel at {point}");
        assert!(run.artifacts.iter().all(|a| !a.path.starts_with("model/")), "{point}: {:?}", run.artifacts);
    }

    // Once the model is recorded, a cancel no longer stops the run: it says so.
    let dir = empty_dir("library-cancelled-late");
    let spec = spec(&dir, tiny());
    let (outcome, notices) = run_until(&spec, |e| matches!(e, Event::Recorded { .. }));
    assert_eq!(outcome.status, RunStatus::Finished);
    assert!(dir.join("out/model/MLmodel").is_file());
    assert!(notices.iter().any(|n| n.contains("ended FINISHED")), "{notices:?}");
}

#[test]
fn an_evaluation_and_a_gate_decision_are_recorded_on_the_run() {
    let dir = empty_dir("library-evaluated");
    let spec = spec(&dir, tiny());
    let (outcome, _) = run_until(&spec, |_| false);
    let summary = outcome.result.expect("the run finishes");
    let run_id = outcome.run_id;
    let tracking = &spec.tracking;

    let eval_spec = EvalSpec {
        run_id: Some(&run_id[..8]),
        model_uri: None,
        batch_size: 256,
        output_dir: Some(dir.join("evaluation")),
        data: &bench().source,
        tracking,
    };
    let evaluated = experiment::evaluate(&eval_spec, &bench().device).expect("the model evaluates");
    assert_eq!(evaluated.located.run_id.as_deref(), Some(run_id.as_str()), "a prefix names the whole run");
    assert_eq!(Some(evaluated.eval.accuracy), summary["test_accuracy"].as_f64(), "the same model, the same data");
    assert!(evaluated.files.contains(&dir.join("evaluation/predictions.csv")), "{:?}", evaluated.files);
    let logged = experiment::log_evaluation(tracking, &evaluated, &[], Some("checked")).expect("logged");
    assert_eq!((logged.place.as_str(), logged.synced_to), ("in the local store", None));
    let run = record(&spec, &run_id);
    assert_eq!(run.latest_metrics()["eval_test_accuracy"].value, evaluated.eval.accuracy);
    assert!(run.artifacts.iter().any(|a| a.path == "evaluation/predictions.csv"), "{:?}", run.artifacts);
    assert_eq!(run.tags.get(experiment::NOTE_TAG).map(String::as_str), Some("checked"));

    // The evaluation's value is the one gated; a failed gate keeps the run from the registry.
    let unreachable = Gate::new("test_accuracy", Some(0.99), 0.0, None).unwrap();
    let gated = experiment::gate_run(tracking, &run_id, &unreachable, None).expect("a decision");
    assert!(!gated.decision.passed());
    assert_eq!(gated.decision.key, "eval_test_accuracy");
    let found = RunHandle::find(tracking, &run_id).unwrap();
    assert_eq!(found.tags().get(DECISION_TAG).map(String::as_str), Some("failed"));
    let refused = experiment::require_gate(tracking, &found, &run_id, false, false);
    assert!(matches!(refused, Err(ExperimentError::Gate(GateError::Failed { .. }))));
    let warning = experiment::require_gate(tracking, &found, &run_id, false, true).expect("forced");
    assert!(warning.is_some_and(|w| w.contains(FORCED_TAG)));
    assert_eq!(record(&spec, &run_id).tags.get(FORCED_TAG).map(String::as_str), Some("true"));

    let reachable = Gate::new("test_accuracy", Some(0.1), 0.0, None).unwrap();
    assert!(experiment::gate_run(tracking, &run_id, &reachable, None).unwrap().decision.passed());
    assert_eq!(record(&spec, &run_id).tags.get(DECISION_TAG).map(String::as_str), Some("passed"));

    // The checklist is written beside the run's reports and logged with the run.
    let checklist = AnalyzeSpec { baseline: 0.5, tolerance: 0.01, overfit_epochs: 3, output_dir: None };
    let analyzed = experiment::analyze_run(tracking, &run_id, &checklist).expect("an analysis");
    assert_eq!(analyzed.path, dir.join("out/analysis.md"), "the run's output directory, from its metrics.json");
    assert_eq!(std::fs::read_to_string(&analyzed.path).unwrap(), analyzed.markdown);
    assert!(record(&spec, &run_id).artifacts.iter().any(|a| a.path == "analysis.md"));
    let impossible = AnalyzeSpec { baseline: 88.0, ..checklist };
    assert!(experiment::analyze_run(tracking, &run_id, &impossible).is_err_and(|e| e.is_refusal()));
}
