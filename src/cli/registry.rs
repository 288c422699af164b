//! The CI/CD steps after training: `engine gate` (a metric against a threshold), `engine
//! register` (the run's model becomes a registry version, in Staging) and `engine promote`
//! (a version goes to Production, the previous one is archived, the `champion` alias follows).
//! The rules themselves are the library's (`engine::gate`).

use std::process::ExitCode;

use clap::Args;
use engine::analysis::Direction;
use engine::experiment::{self, CHAMPION, Promoted, Registered};
use engine::gate::{Gate, GateError};
use engine::tracking::{RunHandle, TrackingConfig};

use super::TrackingArgs;

#[derive(Args)]
pub struct GateArgs {
    /// The run to check (local or MLflow run id, or a unique prefix of at least 4 characters).
    #[arg(long)]
    pub run_id: String,
    /// The metric to check; its evaluation value (`eval_<metric>`) wins over the training one.
    #[arg(long, default_value = "test_accuracy")]
    pub metric: String,
    /// The value the metric must reach; accuracies and F1 scores are fractions (0.88, not 88).
    #[arg(long, allow_negative_numbers = true)]
    pub threshold: Option<f64>,
    /// Also compare with this model's run, e.g. the one in production: models:/NAME@champion,
    /// models:/NAME/VERSION or a run id (no champion yet: only the threshold counts).
    #[arg(long, value_name = "MODEL_URI")]
    pub baseline: Option<String>,
    /// How much worse than the baseline the run may be and still pass (in the metric's units).
    #[arg(long, default_value_t = 0.0)]
    pub tolerance: f64,
    /// Whether larger (max) or smaller (min) values are better [default: min for losses, errors
    /// and times, max otherwise].
    #[arg(long, value_parser = super::choice::<Direction>(), ignore_case = true)]
    pub direction: Option<Direction>,
    /// Print the decision as one JSON object on stdout (the text goes to stderr).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tracking: TrackingArgs,
}

/// When a registry step accepts a run, by its recorded gate decision.
#[derive(Args)]
pub struct GateRequirement {
    /// Also refuse runs that were never gated (a failed gate is always refused).
    #[arg(long, env = "ENGINE_REQUIRE_GATE")]
    pub require_gate: bool,
    /// Register or promote despite a failed or missing gate; recorded on the run as the tag
    /// `engine.gate.forced`.
    #[arg(long)]
    pub force: bool,
}

/// The flags `engine register` and `engine promote` share.
#[derive(Args)]
pub struct RegistryStepArgs {
    #[command(flatten)]
    pub requirement: GateRequirement,
    /// Print the outcome as one JSON object on stdout (the text goes to stderr).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tracking: TrackingArgs,
}

#[derive(Args)]
pub struct RegisterArgs {
    /// The run whose model to register (it must be on the server: `engine sync` pushes local runs).
    #[arg(long)]
    pub run_id: String,
    /// Registered model name.
    #[arg(long, default_value = "fashion-mlp")]
    pub name: String,
    #[command(flatten)]
    pub step: RegistryStepArgs,
}

#[derive(Args)]
pub struct PromoteArgs {
    /// Registered model name.
    #[arg(long, default_value = "fashion-mlp")]
    pub name: String,
    /// The version to move to Production (as `engine register` printed it).
    #[arg(long)]
    pub version: String,
    #[command(flatten)]
    pub step: RegistryStepArgs,
}

/// Exit 0 (passed), 1 (failed) or, through the caller, 2 (no decision). The decision is
/// printed once it is recorded on the run; one that could not be recorded says so and counts
/// as no decision.
pub fn gate(args: GateArgs) -> anyhow::Result<ExitCode> {
    if args.threshold.is_none() && args.baseline.is_none() {
        return Err(GateError::NothingToCheck.into());
    }
    let rule = Gate::new(&args.metric, args.threshold, args.tolerance, args.direction)?;
    let tracking = args.tracking.config(None);
    let outcome = experiment::gate_run(&tracking, &args.run_id, &rule, args.baseline.as_deref())?;
    for note in &outcome.notes {
        eprintln!("note: {note}");
    }
    let decision = &outcome.decision;
    let baseline = decision.baseline.as_ref().map(
        |b| serde_json::json!({"model": b.label, "value": b.value, "tolerance": rule.tolerance, "passed": b.passed}),
    );
    report(
        args.json,
        &outcome.line,
        serde_json::json!({"run_id": args.run_id, "metric": decision.key, "value": decision.value,
            "threshold": rule.threshold, "direction": rule.direction.as_str(), "baseline": baseline,
            "decision": decision.verdict(), "failed_check": decision.failure().map(|f| f.as_str())}),
    );
    Ok(if decision.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Refuses a run whose gate failed (or never ran, when required) unless forced, and records a
/// forced override on the run.
fn check_gate(
    tracking: &TrackingConfig,
    found: &RunHandle,
    run_id: &str,
    requirement: &GateRequirement,
) -> anyhow::Result<()> {
    let warning = experiment::require_gate(tracking, found, run_id, requirement.require_gate, requirement.force)?;
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

pub fn register(args: RegisterArgs) -> anyhow::Result<ExitCode> {
    let tracking = args.step.tracking.config(None);
    let found = RunHandle::find(&tracking, &args.run_id)?;
    check_gate(&tracking, &found, &args.run_id, &args.step.requirement)?;
    let registered = experiment::register_model(&tracking, &found, &args.name)?;
    let Registered { name, version, stage, run_id, source } = registered;
    let line = format!("registered {name} version {version} from run {run_id} ({source}), now in {stage}");
    report(
        args.step.json,
        &line,
        serde_json::json!({"name": name, "version": version, "stage": stage, "run_id": run_id, "source": source}),
    );
    Ok(ExitCode::SUCCESS)
}

pub fn promote(args: PromoteArgs) -> anyhow::Result<ExitCode> {
    let tracking = args.step.tracking.config(None);
    let promotion = experiment::prepare_promotion(&tracking, &args.name, &args.version)?;
    let run_id = promotion.run.run_id().to_string();
    check_gate(&tracking, &promotion.run, &run_id, &args.step.requirement)?;
    let Promoted { name, version, stage, archived } = promotion.complete()?;
    let archived_text = if archived.is_empty() { "none".to_string() } else { archived.join(", ") };
    let line = format!("promoted {name} version {version} to {stage} with alias {CHAMPION}; archived: {archived_text}");
    report(
        args.step.json,
        &line,
        serde_json::json!({"name": name, "version": version, "stage": stage, "archived": archived}),
    );
    Ok(ExitCode::SUCCESS)
}

/// The outcome: `line` on stdout, or with `--json` the object alone on stdout and `line` on
/// stderr, so that stdout is one JSON document.
fn report(json: bool, line: &str, outcome: serde_json::Value) {
    if json {
        eprintln!("{line}");
        println!("{outcome}");
    } else {
        println!("{line}");
    }
}
