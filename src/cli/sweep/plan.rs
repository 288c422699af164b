//! A sweep's plan from its flags ([`engine::experiment::sweep::Plan`] is the file): the points,
//! the parent run started with the grid's or the search's params (and the search space as an
//! artifact), and the bench a plan's runs train on.

use clap::ValueEnum;
use engine::experiment::Bench;
use engine::experiment::sweep::{Plan, PlannedPoint, SWEEP_TAG};
use engine::nn::Architecture;
use engine::search::Param;
use engine::search::schedule::Schedule;
use engine::tracking;

use super::SweepArgs;
use super::points::{Point, SpaceSearch, join, points};
use crate::cli::UsageError;
use crate::cli::device::DeviceChoice;
use crate::cli::train::open_bench;

/// The bench a plan's runs train on: its device, and its dataset loaded once.
pub fn bench(plan: &Plan) -> anyhow::Result<Bench> {
    let device = DeviceChoice::from_str(&plan.device, true).map_err(|e| anyhow::anyhow!("plan device: {e}"))?;
    open_bench(device, plan.data.clone())
}

/// Validates the points, creates the parent run (its params and tags reach the server before
/// this returns) and returns the plan; the parent stays RUNNING until the summary.
pub fn create_plan(args: &SweepArgs) -> anyhow::Result<Plan> {
    let (points, search, schedule) = points(args)?;
    let mut tracking = args.common.tracking.config(None);
    let parent_name = args.common.run_name.clone().unwrap_or_else(tracking::util::generate_run_name);
    tracking.run_name = Some(parent_name.clone());
    tracking.validate().map_err(UsageError)?;
    let bench = open_bench(args.common.device, args.common.data.source()?)?;
    let mut parent = tracking::open(&tracking)?;
    let mut parent_tags = vec![(SWEEP_TAG.to_string(), "true".to_string())];
    parent_tags.extend(args.common.notes.to_tags());
    let params = parent_params(args, &points, search.as_ref(), &schedule, &bench);
    let parent_run_id = parent.start_run(&params, &parent_tags)?;
    if let Some(search) = &search {
        log_search_space(parent.as_mut(), search, &parent_run_id)?;
    }
    let chosen = match &search {
        None => "a grid".to_string(),
        Some(s) if s.halving.is_some() => {
            format!(
                "successive halving of {} (seed {}), rungs of {} epochs",
                s.space,
                s.seed,
                join(&schedule.rung_epochs, ", ")
            )
        }
        Some(s) => format!("random trials of {} (seed {})", s.space, s.seed),
    };
    eprintln!(
        "sweep {parent_name}: parent run {parent_run_id}, {} runs, {chosen}; tracking: {}",
        points.len(),
        parent.describe()
    );
    parent.flush()?;
    let device = args.common.device.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
    Ok(Plan {
        parent_run_id,
        parent_name,
        tracking_uri: tracking.tracking_uri,
        experiment: tracking.experiment,
        device,
        data: bench.source.clone(),
        output_dir: args.common.output_dir.clone(),
        tags: args.common.notes.tags.clone(),
        system_metrics_seconds: args.common.system_metrics().map(|d| d.as_secs_f64()),
        tolerance: args.tolerance,
        points: points.into_iter().map(|p| PlannedPoint { label: p.label, config: p.config }).collect(),
        schedule,
        checkpoint_dir: args.checkpoint_dir.clone(),
    })
}

/// The parent run's params: the grid or the search, and the settings every run shares.
fn parent_params(
    args: &SweepArgs,
    points: &[Point],
    search: Option<&SpaceSearch>,
    schedule: &Schedule,
    bench: &Bench,
) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = Vec::new();
    let mut swept = vec!["learning_rate", "batch_size", "hidden"];
    match search {
        None => {
            params.push(("search_strategy".into(), "grid".into()));
            params.push(("sweep_learning_rate".into(), join(&args.lr, ",")));
            params.push(("sweep_batch_size".into(), join(&args.batch_size, ",")));
        }
        Some(search) => {
            swept = search.space.dims().iter().map(|(p, _)| p.config_key()).collect();
            if search.space.dims().iter().any(|(p, _)| *p == Param::Model) {
                swept.push("hidden");
            }
            let strategy = if search.halving.is_some() { "halving" } else { "random" };
            params.push(("search_strategy".into(), strategy.into()));
            params.push(("search_space".into(), search.space.to_string()));
            params.push(("search_trials".into(), search.trials.to_string()));
            params.push(("search_seed".into(), search.seed.to_string()));
        }
    }
    if let (Some(rule), Some(h)) = (&schedule.halving, search.and_then(|s| s.halving)) {
        swept.push("epochs");
        params.push(("search_eta".into(), rule.eta.to_string()));
        params.push(("search_min_epochs".into(), h.min_epochs.to_string()));
        params.push(("search_max_epochs".into(), h.max_epochs.to_string()));
        params.push(("search_rung_epochs".into(), join(&schedule.rung_epochs, ",")));
        params.push(("search_metric".into(), rule.metric.clone()));
        params.push(("search_planned_epochs".into(), h.planned_epochs(points.len()).to_string()));
    }
    params.extend([
        ("sweep_runs".into(), points.len().to_string()),
        ("device".into(), bench.device_name.clone()),
        ("engine_version".into(), env!("CARGO_PKG_VERSION").to_string()),
        ("data_source".into(), bench.data_origin.clone()),
    ]);
    if search.is_none() && args.common.model == Architecture::Mlp {
        params.push(("sweep_hidden".into(), args.hiddens().iter().map(|h| join(h, ",")).collect::<Vec<_>>().join("|")));
    }
    params.extend(points[0].config.params().into_iter().filter(|(k, _)| !swept.contains(&k.as_str())));
    params
}

/// The artifact of a search's parent run holding its space, in `--space-file` form.
pub const SEARCH_SPACE_ARTIFACT: &str = "search_space.json";

/// Logs the space as [`SEARCH_SPACE_ARTIFACT`] of the parent run.
fn log_search_space(parent: &mut dyn tracking::Tracker, search: &SpaceSearch, run_id: &str) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("engine-search-{}", tracking::paths::sanitize_component(run_id)));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(SEARCH_SPACE_ARTIFACT);
    std::fs::write(&path, serde_json::to_string_pretty(&search.space.to_json())?)?;
    let logged = parent.log_artifact(&path, "");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(logged?)
}
