//! The end of a sweep: each trial's furthest run ranked (from the local store, and the server for
//! runs made elsewhere), the search's outcome recorded on the parent run (best and recommended
//! runs, the best trial's config, the budget spent in epochs and seconds), and the parent ended.

use std::path::Path;

use super::execute::{TrialResult, logged_runs, run_at};
use super::plan::Plan;
use crate::analysis::{self, Direction, RunSummary, keys};
use crate::experiment::ExperimentError;
use crate::tracking::{Metric, Push, Pushed, RunAdditions, RunHandle, RunStatus};

type Result<T> = std::result::Result<T, ExperimentError>;

/// A summarized sweep: its ranked runs and how it ended.
pub struct SweepSummary {
    /// The furthest run of each trial that has one.
    pub summaries: Vec<RunSummary>,
    /// Those runs ranked by test accuracy, within the plan's tolerance.
    pub ranking: analysis::Ranking,
    /// Each trial's result.
    pub children: Vec<TrialResult>,
    /// The parent's end: KILLED when interrupted (or stopped between rungs), FAILED when any
    /// run failed, else FINISHED.
    pub status: RunStatus,
}

impl SweepSummary {
    /// `(label, why)` of each trial that did not finish.
    pub fn failures(&self) -> Vec<(String, String)> {
        self.children
            .iter()
            .filter(|c| c.status != RunStatus::Finished)
            .map(|c| (c.label.clone(), c.error.clone().unwrap_or_else(|| c.status.to_string())))
            .collect()
    }
}

/// Ranks the plan's runs, records the outcome on the parent and ends it. A finished search's
/// checkpoints (beside the plan at `path`) are removed.
pub fn summarize(plan: &Plan, path: &Path) -> Result<SweepSummary> {
    let runs = logged_runs(plan)?;
    let children = plan_children(plan, &runs);
    let summaries: Vec<RunSummary> = children.iter().filter_map(|c| c.summary.clone()).collect();
    let ranking = analysis::rank(&summaries, keys::TEST_ACCURACY, Direction::Max, plan.tolerance);
    let mut status = sweep_status(&children);
    if plan.schedule.halving.is_some() && !plan.schedule.is_last_rung() && status == RunStatus::Finished {
        status = RunStatus::Killed; // stopped between rungs: `--resume` goes on
    }
    let (metrics, tags) = outcome(plan, &runs, &summaries, &ranking, &children);
    update_run(plan, &plan.parent_run_id, &metrics, &tags, Some(status))?;
    if status == RunStatus::Finished {
        plan.remove_checkpoints(path);
    }
    Ok(SweepSummary { summaries, ranking, children, status })
}

/// Each trial's run at the furthest rung it was placed in; a trial with no run there failed.
fn plan_children(plan: &Plan, runs: &[RunSummary]) -> Vec<TrialResult> {
    (0..plan.points.len())
        .map(|trial| {
            let label = plan.points[trial].label.clone();
            let rung = plan.schedule.rung_reached(trial).unwrap_or(0);
            match run_at(plan, runs, trial, rung) {
                Some(run) => TrialResult {
                    label,
                    status: RunStatus::parse(&run.status).unwrap_or(RunStatus::Failed),
                    error: (run.status != "FINISHED").then(|| format!("ended {}", run.status)),
                    summary: Some(run.clone()),
                },
                None => TrialResult {
                    label,
                    status: RunStatus::Failed,
                    error: Some("never ran (or is not synced yet: run `engine sync` where it ran)".into()),
                    summary: None,
                },
            }
        })
        .collect()
}

/// The parent's metrics and tags: runs finished and failed, the budget spent (epochs the
/// schedule trained, seconds every run of the sweep trained), the best run and its config, and
/// the recommended run.
fn outcome(
    plan: &Plan,
    runs: &[RunSummary],
    summaries: &[RunSummary],
    ranking: &analysis::Ranking,
    children: &[TrialResult],
) -> (Vec<Metric>, Vec<(String, String)>) {
    let finished = children.iter().filter(|c| c.status == RunStatus::Finished).count();
    let seconds: f64 = runs.iter().filter_map(|r| r.metric(keys::TRAIN_SECONDS)).sum();
    let mut metrics = vec![
        Metric::new("runs_finished", finished as f64, 0),
        Metric::new("runs_failed", (children.len() - finished) as f64, 0),
        Metric::new("budget_epochs", plan.schedule.epochs_planned() as f64, 0),
        Metric::new("budget_train_seconds", seconds, 0),
    ];
    let mut tags = Vec::new();
    if let Some(best) = ranking.best.map(|i| &summaries[i]) {
        metrics.extend(best.metric(keys::TEST_ACCURACY).map(|v| Metric::new("best_test_accuracy", v, 0)));
        tags.push(("engine.best_run_id".to_string(), best.run_id.clone()));
        tags.push(("engine.best_trial".to_string(), best.run_name.clone()));
        if let Some(point) = plan.points.iter().find(|p| p.label == best.run_name) {
            let config = point.config.params().into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>();
            tags.push(("engine.best_config".to_string(), config.join(" ")));
        }
    }
    if let Some(rec) = &ranking.recommended {
        tags.push(("engine.recommended_run_id".to_string(), summaries[rec.index].run_id.clone()));
        tags.push(("engine.recommendation".to_string(), rec.reason.clone()));
    }
    (metrics, tags)
}

/// Logs metrics and tags on a run of the sweep, and ends it with `end`: in the local store when
/// the run was recorded here (then sent to the server), else on the server directly.
pub fn update_run(
    plan: &Plan,
    run_id: &str,
    metrics: &[Metric],
    tags: &[(String, String)],
    end: Option<RunStatus>,
) -> Result<()> {
    let tracking = plan.tracking();
    let run = RunHandle::find(&tracking, run_id)?;
    let additions = RunAdditions { metrics: metrics.to_vec(), tags: tags.to_vec(), end, ..RunAdditions::default() };
    match run.add(&tracking, &additions, Push::Always)? {
        Pushed::NotNeeded | Pushed::Synced(_) => Ok(()),
        Pushed::Failed(_, e) => {
            Err(ExperimentError::from(e).after("the sweep's results are in the local store; `engine sync` sends them"))
        }
    }
}

/// KILLED when interrupted, FAILED when any run failed, else FINISHED.
fn sweep_status(children: &[TrialResult]) -> RunStatus {
    if children.iter().any(|c| c.status == RunStatus::Killed) {
        RunStatus::Killed
    } else if children.iter().any(|c| c.status != RunStatus::Finished) {
        RunStatus::Failed
    } else {
        RunStatus::Finished
    }
}
