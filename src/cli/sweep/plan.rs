//! The sweep plan: everything a run of the sweep needs from any process or machine (where it is
//! tracked, its parent run, the points) and the search's schedule, the state that changes as
//! rungs are promoted. One JSON file, written atomically, read by `--index` workers and array
//! jobs, rewritten by promotions, and reread by `--resume`. A file edited by hand into nonsense
//! is refused with the line at fault.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use engine::data::DataSource;
use engine::nn::Architecture;
use engine::search::Param;
use engine::search::schedule::Schedule;
use engine::tracking::{self, TrackingConfig};
use engine::train::TrainConfig;

use super::points::{Point, SpaceSearch, join, points};
use super::{SWEEP_TAG, SweepArgs};
use crate::cli::UsageError;
use crate::cli::device::DeviceChoice;
use crate::cli::train::Bench;

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Plan {
    pub parent_run_id: String,
    pub parent_name: String,
    pub tracking_uri: Option<String>,
    pub experiment: String,
    /// `cpu`, `gpu` or `auto`.
    pub device: String,
    /// The dataset every run trains on, with its options.
    #[serde(default)]
    pub data: DataSource,
    pub output_dir: Option<PathBuf>,
    /// The user's tags, set on every run.
    pub tags: Vec<(String, String)>,
    pub system_metrics_seconds: Option<f64>,
    pub tolerance: f64,
    pub points: Vec<PlannedPoint>,
    /// Which points each rung trains, for how long.
    pub schedule: Schedule,
    /// Where halving keeps the trials' checkpoints [default: beside the plan].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_dir: Option<PathBuf>,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct PlannedPoint {
    pub label: String,
    /// The point's config; with halving, the epochs are those of the last rung.
    pub config: TrainConfig,
}

impl Plan {
    /// Reads and checks a plan; a file that is not one, or was edited into one no sweep would
    /// write, is a usage error naming the line at fault.
    pub fn read(path: &Path) -> anyhow::Result<Plan> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UsageError(format!("cannot read the plan {}: {e}", path.display())))?;
        let plan: Plan = serde_json::from_str(&text)
            .map_err(|e| UsageError(format!("{} is not a sweep plan: {e}", path.display())))?;
        plan.check().map_err(|(field, why)| {
            let at = field_line(&text, &field).map_or_else(String::new, |n| format!(" line {n}"));
            UsageError(format!(
                "{}{at} ({field}): {why}; the plan was edited by hand? write it again with --plan",
                path.display()
            ))
        })?;
        Ok(plan)
    }

    /// What a plan must hold for its runs to make sense: `(field, why)` of the first problem.
    fn check(&self) -> Result<(), (String, String)> {
        if self.points.is_empty() {
            return Err(("points".into(), "lists no points".into()));
        }
        for (i, point) in self.points.iter().enumerate() {
            point.config.validate().map_err(|why| (format!("points[{i}].config"), why))?;
            if self.points[..i].iter().any(|p| p.label == point.label) {
                return Err((format!("points[{i}].label"), format!("'{}' names two points", point.label)));
            }
            let last_rung = self.schedule.rung_epochs.last().copied().unwrap_or(0);
            if self.schedule.halving.is_some() && point.config.epochs != last_rung {
                return Err((format!("points[{i}].config.epochs"), "differs from the last rung's epochs".into()));
            }
        }
        if !(self.tolerance >= 0.0 && self.tolerance.is_finite()) {
            return Err(("tolerance".into(), format!("must be a number >= 0, got {}", self.tolerance)));
        }
        self.schedule.check(self.points.len()).map_err(|e| match e {
            engine::search::schedule::ScheduleError::Invalid { field, why } => (format!("schedule.{field}"), why),
            other => ("schedule".into(), other.to_string()),
        })
    }

    /// Writes the plan atomically: a reader (a worker, a resumed sweep) sees the old plan or the
    /// new one, never half of one.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        engine::model::write_atomic(path, serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(())
    }

    /// The plan's server and experiment, with this machine's local store; `MLFLOW_TRACKING_URI`
    /// wins where this machine reaches the server by another address.
    pub fn tracking(&self) -> TrackingConfig {
        let here = TrackingConfig::from_env(None, Some(self.experiment.clone()), Some(self.parent_name.clone()));
        TrackingConfig { tracking_uri: here.tracking_uri.or_else(|| self.tracking_uri.clone()), ..here }
    }

    pub fn bench(&self) -> anyhow::Result<Bench> {
        let device = DeviceChoice::from_str(&self.device, true).map_err(|e| anyhow::anyhow!("plan device: {e}"))?;
        Bench::open(device, self.data.clone())
    }
}

/// The line (from 1) of a pretty-printed plan where `field` (`points[2].config`,
/// `schedule.rungs[1][1]`) starts: each name is looked for after the one before, skipping as many
/// of its kind as the index before it says.
fn field_line(text: &str, field: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let (mut at, mut skip) = (0, 0);
    for part in field.split('.') {
        let (name, index) = part.split_once('[').unwrap_or((part, ""));
        let key = format!("\"{name}\"");
        at = (at..lines.len()).filter(|&i| lines[i].trim_start().starts_with(&key)).nth(skip)?;
        skip = index.split(']').next().and_then(|i| i.parse().ok()).unwrap_or(0);
    }
    Some(at + 1)
}

impl Plan {
    /// The epochs `trial` trains to in rung `rung`: the rung's with halving, else the point's
    /// own (a random search may draw them).
    pub fn epochs_of(&self, trial: usize, rung: usize) -> usize {
        match &self.schedule.halving {
            Some(_) => self.schedule.epochs_of(rung),
            None => self.points[trial].config.epochs,
        }
    }

    /// Where halving keeps the trials' checkpoints: `--checkpoint-dir`, else beside the plan at
    /// `plan_path`, so that every process and array job that reads the plan finds them.
    pub fn checkpoint_dir(&self, plan_path: &Path) -> PathBuf {
        self.checkpoint_dir.clone().unwrap_or_else(|| plan_path.with_extension("checkpoints"))
    }

    /// Trial `trial`'s state after rung `rung`.
    pub fn checkpoint_path(&self, plan_path: &Path, trial: usize, rung: usize) -> PathBuf {
        self.checkpoint_dir(plan_path).join(format!("trial-{trial}-rung-{rung}.ckpt"))
    }

    /// Removes the checkpoints of a finished search (and their directory, once empty).
    pub fn remove_checkpoints(&self, plan_path: &Path) {
        let dir = self.checkpoint_dir(plan_path);
        for trial in 0..self.points.len() {
            for rung in 0..self.schedule.rung_epochs.len() {
                let _ = std::fs::remove_file(self.checkpoint_path(plan_path, trial, rung));
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
}

/// Validates the points, creates the parent run (its params and tags reach the server before
/// this returns) and returns the plan; the parent stays RUNNING until the summary.
pub fn create_plan(args: &SweepArgs) -> anyhow::Result<Plan> {
    let (points, search, schedule) = points(args)?;
    let mut tracking = args.common.tracking.config(None);
    let parent_name = args.common.run_name.clone().unwrap_or_else(tracking::util::generate_run_name);
    tracking.run_name = Some(parent_name.clone());
    tracking.validate().map_err(UsageError)?;
    let bench = Bench::open(args.common.device, args.common.data.source()?)?;
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
