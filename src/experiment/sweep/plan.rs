//! The sweep plan: everything a run of the sweep needs from any process or machine (where it is
//! tracked, its parent run, the dataset, the points) and the search's schedule, the state that
//! changes as rungs are promoted. One JSON file, written atomically, read by `--index` workers
//! and array jobs, rewritten by promotions, and reread by `--resume`. A file edited by hand into
//! nonsense is refused with the line at fault.

use std::path::{Path, PathBuf};

use crate::data::DataSource;
use crate::experiment::ExperimentError;
use crate::search::schedule::{Schedule, ScheduleError};
use crate::tracking::TrackingConfig;
use crate::train::TrainConfig;

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
    /// write, is refused naming the line at fault.
    pub fn read(path: &Path) -> Result<Plan, ExperimentError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ExperimentError::Refused(format!("cannot read the plan {}: {e}", path.display())))?;
        let plan: Plan = serde_json::from_str(&text)
            .map_err(|e| ExperimentError::Refused(format!("{} is not a sweep plan: {e}", path.display())))?;
        plan.check().map_err(|(field, why)| {
            let at = field_line(&text, &field).map_or_else(String::new, |n| format!(" line {n}"));
            ExperimentError::Refused(format!(
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
            ScheduleError::Invalid { field, why } => (format!("schedule.{field}"), why),
            other => ("schedule".into(), other.to_string()),
        })
    }

    /// Writes the plan atomically: a reader (a worker, a resumed sweep) sees the old plan or the
    /// new one, never half of one.
    pub fn write(&self, path: &Path) -> Result<(), ExperimentError> {
        crate::model::write_atomic(path, serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(())
    }

    /// The plan's server and experiment, with this machine's local store; `MLFLOW_TRACKING_URI`
    /// wins where this machine reaches the server by another address.
    pub fn tracking(&self) -> TrackingConfig {
        let here = TrackingConfig::from_env(None, Some(self.experiment.clone()), Some(self.parent_name.clone()));
        TrackingConfig { tracking_uri: here.tracking_uri.or_else(|| self.tracking_uri.clone()), ..here }
    }

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
