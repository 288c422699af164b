//! The end of a sweep: each trial's furthest run ranked (from the local store, and the server for
//! runs made elsewhere), the search's outcome recorded on the parent run (best and recommended
//! runs, the best trial's config, the budget spent in epochs and seconds), the parent ended, and
//! the comparison printed.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use engine::analysis::{self, Direction, RunSummary, keys};
use engine::tracking::{self, LocalStore, Metric, RunStatus};
use engine::train::TrainError;

use super::execute::{ChildResult, logged_runs, run_at};
use super::plan::Plan;
use crate::cli::compare::{comparison_json, render_comparison};

/// Ranks the plan's runs, records the outcome on the parent, ends it, and prints the comparison.
/// A finished search's checkpoints (beside the plan at `path`) are removed.
pub fn summarize(plan: &Plan, path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let runs = logged_runs(plan)?;
    let children = plan_children(plan, &runs);
    let summaries: Vec<RunSummary> = children.iter().filter_map(|c| c.summary.clone()).collect();
    let ranking = analysis::rank(&summaries, keys::TEST_ACCURACY, Direction::Max, plan.tolerance);
    let mut status = sweep_status(&children);
    if plan.schedule.halving.is_some() && !plan.schedule.is_last_rung() && status == RunStatus::Finished {
        status = RunStatus::Killed; // stopped between rungs: `--resume` goes on
    }
    finish_parent(plan, &outcome(plan, &runs, &summaries, &ranking, &children), status)?;
    if status == RunStatus::Finished {
        plan.remove_checkpoints(path);
    }
    let parent_id = &plan.parent_run_id;
    if json {
        let mut value = comparison_json(&summaries, &ranking, None);
        value["parent_run_id"] = parent_id.clone().into();
        value["status"] = status.as_str().into();
        value["failed"] = failures(&children)
            .into_iter()
            .map(|(label, why)| serde_json::json!({"run": label, "error": why}))
            .collect();
        println!("{value}");
    } else {
        println!("\nsweep {} ({parent_id}): {} runs, {}", plan.parent_name, children.len(), status);
        print!("{}", render_comparison(&summaries, &ranking, None));
    }
    match status {
        RunStatus::Finished => Ok(ExitCode::SUCCESS),
        RunStatus::Killed => Err(TrainError::Interrupted.into()),
        RunStatus::Failed => {
            let failed = failures(&children);
            let list: Vec<String> = failed.iter().map(|(label, why)| format!("{label}: {why}")).collect();
            anyhow::bail!("{} of {} runs failed: {}", failed.len(), children.len(), list.join("; "))
        }
    }
}

/// Each trial's run at the furthest rung it was placed in; a trial with no run there failed.
fn plan_children(plan: &Plan, runs: &[RunSummary]) -> Vec<ChildResult> {
    (0..plan.points.len())
        .map(|trial| {
            let label = plan.points[trial].label.clone();
            let rung = plan.schedule.rung_reached(trial).unwrap_or(0);
            match run_at(plan, runs, trial, rung) {
                Some(run) => ChildResult {
                    label,
                    status: RunStatus::parse(&run.status).unwrap_or(RunStatus::Failed),
                    error: (run.status != "FINISHED").then(|| format!("ended {}", run.status)),
                    summary: Some(run.clone()),
                },
                None => ChildResult {
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
    children: &[ChildResult],
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

/// Records the outcome on the parent and ends it.
fn finish_parent(
    plan: &Plan,
    (metrics, tags): &(Vec<Metric>, Vec<(String, String)>),
    status: RunStatus,
) -> anyhow::Result<()> {
    update_run(plan, &plan.parent_run_id, metrics, tags, Some(status))
}

/// Logs metrics and tags on a run of the sweep, and ends it with `end`: in the local store when
/// the run was recorded here (then sent to the server), else on the server directly.
pub fn update_run(
    plan: &Plan,
    run_id: &str,
    metrics: &[Metric],
    tags: &[(String, String)],
    end: Option<RunStatus>,
) -> anyhow::Result<()> {
    let tracking = plan.tracking();
    let store = LocalStore::open(&tracking.local_root)?;
    if store.find_run_dir(run_id).is_ok() {
        {
            let mut run = store.reopen_run(run_id)?;
            run.log_metrics(metrics)?;
            run.set_tags(tags)?;
            if let Some(status) = end {
                run.finish(status, tracking::util::now_ms())?;
            }
        }
        if tracking.tracking_uri.is_some() {
            tracking::sync_run_now(&tracking.local_root, &tracking, run_id)
                .context("the sweep's results are in the local store; `engine sync` sends them")?;
        }
        return Ok(());
    }
    let client = crate::cli::locate::server(&tracking, "the sweep's runs")?;
    client.log_batch(run_id, metrics, &[], tags)?;
    if let Some(status) = end {
        client.update_run(run_id, status, tracking::util::now_ms())?;
    }
    Ok(())
}

/// KILLED when interrupted, FAILED when any run failed, else FINISHED.
fn sweep_status(children: &[ChildResult]) -> RunStatus {
    if children.iter().any(|c| c.status == RunStatus::Killed) {
        RunStatus::Killed
    } else if children.iter().any(|c| c.status != RunStatus::Finished) {
        RunStatus::Failed
    } else {
        RunStatus::Finished
    }
}

fn failures(children: &[ChildResult]) -> Vec<(String, String)> {
    children
        .iter()
        .filter(|c| c.status != RunStatus::Finished)
        .map(|c| (c.label.clone(), c.error.clone().unwrap_or_else(|| c.status.to_string())))
        .collect()
}
