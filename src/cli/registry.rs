//! The CI/CD steps after training: `engine gate` (a metric against a threshold), `engine
//! register` (the run's model becomes a registry version, in Staging) and `engine promote`
//! (a version goes to Production, the previous one is archived, the `champion` alias follows).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use engine::tracking::{self, LocalStore, MlflowClient, RunRecord, TrackingConfig};

use super::TrackingArgs;

/// Tag keys written on a run by `engine gate`.
const GATE_TAGS: [&str; 4] =
    ["engine.gate.decision", "engine.gate.metric", "engine.gate.value", "engine.gate.threshold"];
/// The alias that marks the production model.
pub const CHAMPION: &str = "champion";

#[derive(Args)]
pub struct GateArgs {
    #[arg(long)]
    pub run_id: String,
    /// The metric to check; its evaluation value (`eval_<metric>`) wins over the training one.
    #[arg(long, default_value = "test_accuracy")]
    pub metric: String,
    #[arg(long, allow_negative_numbers = true)]
    pub threshold: f64,
    /// Whether larger (max) or smaller (min) values are better.
    #[arg(long, value_enum, default_value_t = Direction::Max)]
    pub direction: Direction,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tracking: TrackingArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Direction {
    Max,
    Min,
}

#[derive(Args)]
pub struct RegisterArgs {
    #[arg(long)]
    pub run_id: String,
    /// Registered model name.
    #[arg(long, default_value = "fashion-mlp")]
    pub name: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tracking: TrackingArgs,
}

#[derive(Args)]
pub struct PromoteArgs {
    #[arg(long, default_value = "fashion-mlp")]
    pub name: String,
    #[arg(long)]
    pub version: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tracking: TrackingArgs,
}

/// Where a run was found: the local store (possibly mirrored to a server) or only a server.
enum FoundRun {
    Local(Box<RunRecord>),
    Server(MlflowClient, Box<tracking::Run>),
}

impl FoundRun {
    fn metric(&self, key: &str) -> Option<f64> {
        match self {
            FoundRun::Local(record) => record.latest_metrics().get(key).map(|m| m.value),
            FoundRun::Server(_, run) => run.data.metrics.iter().find(|m| m.key == key).map(|m| m.value),
        }
    }

    /// The run's id on the server at `uri`, if it has one there.
    fn server_run_id(&self) -> Option<String> {
        match self {
            FoundRun::Local(record) => record.server_run_id().map(String::from),
            FoundRun::Server(_, run) => Some(run.info.run_id.clone()),
        }
    }
}

/// Looks in the local store first, then on the configured server.
fn find_run(tracking: &TrackingConfig, run_id: &str) -> anyhow::Result<FoundRun> {
    if let Ok(record) = LocalStore::open(&tracking.local_root)?.load_run(run_id) {
        return Ok(FoundRun::Local(Box::new(record)));
    }
    let Some(uri) = &tracking.tracking_uri else {
        bail!(
            "unknown run id {run_id}: not in the local store {}; pass --tracking-uri for a server",
            tracking.local_root.display()
        );
    };
    let client = MlflowClient::from_env(uri)?;
    let run = client.get_run(run_id).with_context(|| format!("cannot read run {run_id} from {uri}"))?;
    Ok(FoundRun::Server(client, Box::new(run)))
}

pub fn gate(args: GateArgs) -> anyhow::Result<ExitCode> {
    let tracking = args.tracking.config(None);
    let found = find_run(&tracking, &args.run_id)?;
    let eval_key = format!("eval_{}", args.metric);
    let (key, value) = [eval_key.as_str(), args.metric.as_str()]
        .into_iter()
        .find_map(|k| found.metric(k).map(|v| (k.to_string(), v)))
        .with_context(|| format!("run {} has no metric {} (nor {eval_key})", args.run_id, args.metric))?;
    let passed = match args.direction {
        Direction::Max => value >= args.threshold,
        Direction::Min => value <= args.threshold,
    };
    let (decision, relation) = match (passed, args.direction) {
        (true, Direction::Max) => ("passed", ">="),
        (true, Direction::Min) => ("passed", "<="),
        (false, Direction::Max) => ("failed", "<"),
        (false, Direction::Min) => ("failed", ">"),
    };
    println!("gate {decision}: {key} = {value:.4} {relation} threshold {:.4} (run {})", args.threshold, args.run_id);
    let values = [decision.to_string(), key.clone(), value.to_string(), args.threshold.to_string()];
    let tags: Vec<(String, String)> = GATE_TAGS.iter().map(|k| k.to_string()).zip(values).collect();
    tag_run(&tracking, &found, &args.run_id, &tags)?;
    if passed {
        require_ready_model(&tracking, &found)?;
    }
    print_json(
        args.json,
        serde_json::json!({"run_id": args.run_id, "metric": key, "value": value, "threshold": args.threshold, "decision": decision}),
    );
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn tag_run(tracking: &TrackingConfig, found: &FoundRun, run_id: &str, tags: &[(String, String)]) -> anyhow::Result<()> {
    match found {
        FoundRun::Local(record) => {
            let mut run = LocalStore::open(&tracking.local_root)?.reopen_run(&record.run_id)?;
            run.set_tags(tags)?;
            drop(run);
            if tracking.tracking_uri.is_some() && record.server_run_id().is_some() {
                tracking::sync_run_now(&tracking.local_root, tracking, &record.run_id)
                    .context("cannot send the gate's tags")?;
            }
        }
        FoundRun::Server(client, _) => client.log_batch(run_id, &[], &[], tags)?,
    }
    Ok(())
}

/// A passing run must have a model that can be registered: on a server, a LoggedModel with all
/// its files (the gate's sync just above uploads what it can).
fn require_ready_model(tracking: &TrackingConfig, found: &FoundRun) -> anyhow::Result<()> {
    let (client, run_id) = match found {
        FoundRun::Server(client, run) => (client.clone(), run.info.run_id.clone()),
        FoundRun::Local(record) => match (&tracking.tracking_uri, record.server_run_id()) {
            (Some(uri), Some(id)) => (MlflowClient::from_env(uri)?, id.to_string()),
            _ => return Ok(()),
        },
    };
    if let Some(model) = client.find_run_model(&run_id)? {
        model.require_ready()?;
    }
    Ok(())
}

fn registry(tracking: &TrackingConfig) -> anyhow::Result<MlflowClient> {
    match &tracking.tracking_uri {
        Some(uri) => Ok(MlflowClient::from_env(uri)?),
        None => bail!("the model registry lives on an MLflow server: pass --tracking-uri or set MLFLOW_TRACKING_URI"),
    }
}

pub fn register(args: RegisterArgs) -> anyhow::Result<ExitCode> {
    let tracking = args.tracking.config(None);
    let client = registry(&tracking)?;
    let found = find_run(&tracking, &args.run_id)?;
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
    println!(
        "registered {} version {} from run {run_id} ({source}), now in {}",
        args.name, staged.version, staged.stage
    );
    print_json(
        args.json,
        serde_json::json!({"name": args.name, "version": staged.version, "stage": staged.stage, "run_id": run_id, "source": source}),
    );
    Ok(ExitCode::SUCCESS)
}

pub fn promote(args: PromoteArgs) -> anyhow::Result<ExitCode> {
    let tracking = args.tracking.config(None);
    let client = registry(&tracking)?;
    let before: Vec<String> = client
        .model_versions(&args.name)?
        .into_iter()
        .filter(|v| v.stage == "Production" && v.version != args.version)
        .map(|v| v.version)
        .collect();
    client.require_ready_version(&client.get_model_version(&args.name, &args.version)?)?;
    let promoted = client.transition_stage(&args.name, &args.version, "Production", true)?;
    client.set_alias(&args.name, CHAMPION, &args.version)?;
    let archived = if before.is_empty() { "none".to_string() } else { before.join(", ") };
    println!(
        "promoted {} version {} to {} with alias {CHAMPION}; archived: {archived}",
        args.name, promoted.version, promoted.stage
    );
    print_json(
        args.json,
        serde_json::json!({"name": args.name, "version": promoted.version, "stage": promoted.stage, "archived": before}),
    );
    Ok(ExitCode::SUCCESS)
}

/// With `--json`, the outcome as one JSON line after the text.
fn print_json(wanted: bool, outcome: serde_json::Value) {
    if wanted {
        println!("{outcome}");
    }
}
