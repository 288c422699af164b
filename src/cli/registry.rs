//! The CI/CD steps after training: `engine gate` (a metric against a threshold), `engine
//! register` (the run's model becomes a registry version, in Staging) and `engine promote`
//! (a version goes to Production, the previous one is archived, the `champion` alias follows).
//! The rules themselves are the library's (`engine::gate`).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use engine::analysis::Direction;
use engine::experiment::{self, gate::registry};
use engine::gate::{Gate, GateError};
use engine::tracking::{self, RunHandle, TrackingConfig};

use super::TrackingArgs;

/// The alias that marks the production model.
pub const CHAMPION: &str = "champion";

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
    let client = registry(&tracking)?;
    let run_id = found
        .server_run_id()
        .with_context(|| format!("run {} is only in the local store: push it with `engine sync` first", args.run_id))?;
    let (source, model_id) = match client.find_run_model(&run_id)? {
        Some(model) => {
            let model = model.require_ready()?;
            (format!("models:/{}", model.model_id), Some(model.model_id))
        }
        None => {
            let run = client.get_run(&run_id)?;
            (format!("{}/{}", run.info.artifact_uri.trim_end_matches('/'), tracking::MODEL_ARTIFACT_DIR), None)
        }
    };
    client.ensure_registered_model(&args.name)?;
    let created = client.create_model_version(&args.name, &source, model_id.as_deref(), &run_id)?;
    client.wait_until_ready(&args.name, &created.version, Duration::from_secs(300))?;
    let staged = client.transition_stage(&args.name, &created.version, "Staging", false)?;
    let line = format!(
        "registered {} version {} from run {run_id} ({source}), now in {}",
        args.name, staged.version, staged.stage
    );
    report(
        args.step.json,
        &line,
        serde_json::json!({"name": args.name, "version": staged.version, "stage": staged.stage, "run_id": run_id, "source": source}),
    );
    Ok(ExitCode::SUCCESS)
}

pub fn promote(args: PromoteArgs) -> anyhow::Result<ExitCode> {
    let tracking = args.step.tracking.config(None);
    let client = registry(&tracking)?;
    let before: Vec<String> = client
        .model_versions(&args.name)?
        .into_iter()
        .filter(|v| v.stage == "Production" && v.version != args.version)
        .map(|v| v.version)
        .collect();
    let version = client.get_model_version(&args.name, &args.version)?;
    client.require_ready_version(&version)?;
    let run_id = version.run_id.with_context(|| {
        format!("{} version {} names no run, so its gate cannot be checked", args.name, args.version)
    })?;
    let run =
        client.get_run(&run_id).with_context(|| format!("cannot read run {run_id}, the source of the version"))?;
    check_gate(
        &tracking,
        &RunHandle::Server { client: client.clone(), run: Box::new(run) },
        &run_id,
        &args.step.requirement,
    )?;
    let promoted = client.transition_stage(&args.name, &args.version, "Production", true)?;
    client.set_alias(&args.name, CHAMPION, &args.version)?;
    let archived = if before.is_empty() { "none".to_string() } else { before.join(", ") };
    let line = format!(
        "promoted {} version {} to {} with alias {CHAMPION}; archived: {archived}",
        args.name, promoted.version, promoted.stage
    );
    report(
        args.step.json,
        &line,
        serde_json::json!({"name": args.name, "version": promoted.version, "stage": promoted.stage, "archived": before}),
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
