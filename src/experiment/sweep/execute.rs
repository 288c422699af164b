//! Running a plan: each rung's trials not yet trained, then the promotion to the next rung, until
//! the last rung is trained. What is done is read from what the runs logged, so a sweep stopped
//! at any point and resumed trains each missing trial once, and a scheduler's array job for a
//! rung followed by [`promote`] decides the same promotions as one process would.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::plan::Plan;
use super::summary::update_run;
use crate::analysis::RunSummary;
use crate::experiment::{Bench, Event, ExperimentError, RunSpec, claim_output_dir, tracked_run};
use crate::search::schedule::ScheduleError;
use crate::search::{PRUNED_TAG, RUNG_METRIC};
use crate::tracking::{self, LocalStore, Metric, PARENT_RUN_ID_TAG, RunStatus, TrackingConfig};
use crate::train::{CheckpointPaths, TrainConfig};

type Result<T> = std::result::Result<T, ExperimentError>;

/// Progress of a sweep, in the order it happens.
pub enum SweepEvent<'a> {
    /// A halving rung starts: `pending` of its `size` trials still to train to `epochs`.
    Rung { rung: usize, pending: usize, size: usize, epochs: usize },
    /// Trial `trial` (from 0) of `trials` starts, trained to `epochs`.
    Trial { trial: usize, trials: usize, label: &'a str, epochs: usize },
    /// The trial's run, as [`tracked_run`] reports it.
    Run(Event<'a>),
    /// The trial's run did not finish, and why.
    TrialFailed { trial: usize, label: &'a str, why: &'a str },
    /// Interrupted: `remaining` trials of the rung were not started.
    Stopped { remaining: usize },
    /// Trials whose runs another live process on this machine is recording (the workers of a
    /// sweep stopped before this resume): waited for, not trained twice.
    Waiting { labels: Vec<&'a str> },
    /// A rung was ranked by `metric`: the trials `kept` go on, `pruned` of them stop.
    Promoted { rung: usize, metric: &'a str, kept: Vec<&'a str>, pruned: usize },
}

/// How one trial's run went.
pub struct TrialResult {
    pub label: String,
    pub status: RunStatus,
    pub error: Option<String>,
    /// The run as recorded, once it is.
    pub summary: Option<RunSummary>,
}

/// Every run nested under the plan's parent: from the local store (every run made on this
/// machine is there), and from the server (runs made elsewhere).
pub fn logged_runs(plan: &Plan) -> Result<Vec<RunSummary>> {
    let parent = Some(plan.parent_run_id.as_str());
    let tracking = plan.tracking();
    let mut found = local_runs(plan)?;
    if tracking.tracking_uri.is_some() {
        let server = tracking::Source::open(&tracking)?.experiment_runs(&plan.experiment)?;
        // A run recorded here and mirrored to the server counts once.
        let new: Vec<RunSummary> = server
            .into_iter()
            .filter(|r| r.parent_run_id.as_deref() == parent && !found.iter().any(|f| f.run_id == r.run_id))
            .collect();
        found.extend(new);
    }
    Ok(found)
}

/// The runs nested under the plan's parent in this machine's local store.
fn local_runs(plan: &Plan) -> Result<Vec<RunSummary>> {
    let parent = Some(plan.parent_run_id.as_str());
    Ok(LocalStore::open(&plan.tracking().local_root)?
        .list_runs(Some(&plan.experiment))?
        .iter()
        .map(tracking::summary_from_record)
        .filter(|r| r.parent_run_id.as_deref() == parent)
        .collect())
}

/// The current rung's trials whose run a live process on this machine is recording (the
/// workers of a sweep killed before this resume): waited for, not trained twice. Only the local
/// store's lock tells a live run from a dead one; a run on the server alone may be either.
fn recording_here(plan: &Plan) -> Result<Vec<usize>> {
    let (local, rung) = (local_runs(plan)?, plan.schedule.rung());
    let live = |t: usize| run_at(plan, &local, t, rung).is_some_and(|r| r.status == "RUNNING");
    Ok(plan.schedule.current_trials().iter().copied().filter(|&t| live(t)).collect())
}

/// The run of `trial` at rung `rung` (named by the trial, trained to that rung's epochs); of
/// several, the one that went furthest (finished, then killed).
pub fn run_at<'a>(plan: &Plan, runs: &'a [RunSummary], trial: usize, rung: usize) -> Option<&'a RunSummary> {
    attempts(plan, runs, trial, rung).max_by_key(|r| (r.status == "FINISHED", r.status == "KILLED"))
}

/// Every run of `trial` at rung `rung`.
fn attempts<'a>(
    plan: &Plan,
    runs: &'a [RunSummary],
    trial: usize,
    rung: usize,
) -> impl Iterator<Item = &'a RunSummary> {
    let (label, epochs) = (plan.points[trial].label.clone(), plan.epochs_of(trial, rung).to_string());
    runs.iter().filter(move |r| r.run_name == label && r.param("epochs") == Some(epochs.as_str()))
}

/// A trial trained again after its run died (a sweep or worker killed) takes over the output
/// directory that run left, which would otherwise stop it: the dead run never finished. The
/// directory of a run that finished, failed or is still recording stays refused.
fn clear_dead_attempt(plan: &Plan, dir: &Path, trial: usize, rung: usize) -> Result<()> {
    let runs = logged_runs(plan)?;
    let mut tried = attempts(plan, &runs, trial, rung).peekable();
    let dead = |r: &RunSummary| r.status == "unfinished" || r.status == "KILLED";
    if tried.peek().is_some() && tried.all(dead) {
        claim_output_dir(dir, true)?;
    }
    Ok(())
}

/// The current rung's trials that still need a run: those without one that finished or failed
/// (a failure is a result, ranked last; a killed or missing run is trained again).
fn pending(plan: &Plan, runs: &[RunSummary]) -> Vec<usize> {
    let rung = plan.schedule.rung();
    let done = |t: usize| run_at(plan, runs, t, rung).is_some_and(|r| r.status == "FINISHED" || r.status == "FAILED");
    plan.schedule.current_trials().iter().copied().filter(|&t| !done(t)).collect()
}

/// Trains the plan at `path` to its end: each rung's missing trials through `train` (which
/// returns false when interrupted), waiting for those another process is recording, then the
/// promotion, rung after rung. Returns early (leaving the plan where it stopped) when `train`
/// says so or `cancel` is raised.
pub fn drive<E: From<ExperimentError>>(
    plan: &mut Plan,
    path: &Path,
    cancel: &AtomicBool,
    observe: &mut dyn FnMut(SweepEvent),
    mut train: impl FnMut(&Plan, &[usize]) -> std::result::Result<bool, E>,
) -> std::result::Result<(), E> {
    let mut waited: Option<Vec<usize>> = None;
    loop {
        let busy = recording_here(plan)?;
        let todo: Vec<usize> = pending(plan, &logged_runs(plan)?).into_iter().filter(|t| !busy.contains(t)).collect();
        let (rung, epochs, size) =
            (plan.schedule.rung(), plan.schedule.current_epochs(), plan.schedule.current_trials().len());
        if plan.schedule.halving.is_some() && (!todo.is_empty() || waited.is_none()) {
            observe(SweepEvent::Rung { rung, pending: todo.len(), size, epochs });
        }
        let completed = train(plan, &todo)?;
        if !completed || cancel.load(Ordering::SeqCst) {
            return Ok(());
        }
        if !busy.is_empty() {
            if waited.as_ref() != Some(&busy) {
                observe(SweepEvent::Waiting { labels: busy.iter().map(|&t| plan.points[t].label.as_str()).collect() });
            }
            waited = Some(busy);
            std::thread::sleep(std::time::Duration::from_millis(500));
            continue;
        }
        waited = None;
        if plan.schedule.halving.is_none() || plan.schedule.is_last_rung() {
            return Ok(());
        }
        promote(plan, path, observe)?;
    }
}

/// Ranks the current rung from what its runs logged, tags the pruned trials' runs, and writes the
/// plan with the next rung. The tags come first: a promotion repeated after a crash finds the
/// same results and tags the same runs again.
pub fn promote(plan: &mut Plan, path: &Path, observe: &mut dyn FnMut(SweepEvent)) -> Result<()> {
    let runs = logged_runs(plan)?;
    let rung = plan.schedule.rung();
    let metric = plan.schedule.halving.as_ref().map(|h| h.metric.clone()).unwrap_or_default();
    let results: Vec<(usize, Option<f64>)> = plan
        .schedule
        .current_trials()
        .iter()
        .filter_map(|&t| {
            let run = run_at(plan, &runs, t, rung)?;
            let ended = run.status == "FINISHED" || run.status == "FAILED";
            ended.then(|| (t, run.metric(&metric).filter(|_| run.status == "FINISHED")))
        })
        .collect();
    let mut next = plan.schedule.clone();
    let pruned = next.promote(&results).map_err(|e| match e {
        ScheduleError::Incomplete { .. } => {
            ExperimentError::Failed(format!("{e}: train them first (--index, or --resume)"))
        }
        other => ExperimentError::Refused(other.to_string()),
    })?;
    for &t in &pruned {
        if let Some(run) = run_at(plan, &runs, t, rung) {
            update_run(plan, &run.run_id, &[], &[(PRUNED_TAG.to_string(), format!("rung {rung}"))], None)?;
        }
    }
    plan.schedule = next;
    plan.write(path)?;
    let kept: Vec<&str> = plan.schedule.current_trials().iter().map(|&t| plan.points[t].label.as_str()).collect();
    observe(SweepEvent::Promoted { rung, metric: &metric, kept, pruned: pruned.len() });
    Ok(())
}

/// `trials` of the current rung in turn in this process; false when interrupted.
pub fn run_trials(
    plan: &Plan,
    path: &Path,
    bench: &Bench,
    trials: &[usize],
    cancel: &AtomicBool,
    observe: &mut dyn FnMut(SweepEvent),
) -> bool {
    for (i, &trial) in trials.iter().enumerate() {
        if run_trial(plan, path, bench, trial, cancel, observe).status == RunStatus::Killed {
            observe(SweepEvent::Stopped { remaining: trials.len() - i - 1 });
            return false;
        }
    }
    true
}

/// Trains `trial` to the current rung's epochs as a child of the plan's parent; a halving trial
/// past rung 0 continues from its checkpoint of the rung before.
pub fn run_trial(
    plan: &Plan,
    path: &Path,
    bench: &Bench,
    trial: usize,
    cancel: &AtomicBool,
    observe: &mut dyn FnMut(SweepEvent),
) -> TrialResult {
    let (point, rung) = (&plan.points[trial], plan.schedule.rung());
    let label = point.label.clone();
    let epochs = plan.epochs_of(trial, rung);
    observe(SweepEvent::Trial { trial, trials: plan.points.len(), label: &label, epochs });
    let halving = plan.schedule.halving.is_some();
    let checkpoint = halving.then(|| CheckpointPaths {
        from: rung.checked_sub(1).map(|before| plan.checkpoint_path(path, trial, before)),
        to: plan.checkpoint_path(path, trial, rung),
        planned_epochs: Some(point.config.epochs),
    });
    let name = if halving { format!("{label} rung {rung}") } else { label.clone() };
    let output_dir = plan.output_dir.as_ref().map(|d| child_dir(d, trial, &name));
    let prepared = checkpoint.as_ref().and_then(|c| c.to.parent()).map_or(Ok(()), std::fs::create_dir_all);
    let prepared = prepared.map_err(|e| e.to_string()).and_then(|()| match &output_dir {
        Some(dir) => clear_dead_attempt(plan, dir, trial, rung).map_err(|e| chain(&e)),
        None => Ok(()),
    });
    if let Err(error) = prepared {
        return TrialResult { label, status: RunStatus::Failed, error: Some(error), summary: None };
    }
    let mut tags = vec![(PARENT_RUN_ID_TAG.to_string(), plan.parent_run_id.clone())];
    tags.extend(plan.tags.iter().cloned());
    let spec = RunSpec {
        tags,
        output_dir,
        system_metrics: plan.system_metrics_seconds.map(std::time::Duration::from_secs_f64),
        checkpoint,
        start_metrics: if halving { vec![Metric::new(RUNG_METRIC, rung as f64, 0)] } else { Vec::new() },
        ..RunSpec::new(
            TrainConfig { epochs, ..point.config.clone() },
            TrackingConfig { run_name: Some(label.clone()), ..plan.tracking() },
        )
    };
    let (status, error) = match tracked_run(bench, &spec, cancel, &mut |event| observe(SweepEvent::Run(event))) {
        Ok(outcome) => (outcome.status, outcome.result.err().map(|e| chain(&e))),
        Err(e) => (RunStatus::Failed, Some(chain(&e))),
    };
    if let Some(why) = &error {
        observe(SweepEvent::TrialFailed { trial, label: &label, why });
    }
    TrialResult { label, status, error, summary: None }
}

/// An error and its causes, `: `-separated (as `anyhow` shows them with `{:#}`).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text = format!("{text}: {e}");
        cause = e.source();
    }
    text
}

/// `<output dir>/01-lr=0.01_bs=64_hidden=256`: one safe name, a long label cut to a prefix
/// and a hash.
pub fn child_dir(base: &Path, index: usize, label: &str) -> std::path::PathBuf {
    base.join(crate::tracking::paths::sanitize_keeping(&format!("{:02}-{label}", index + 1), "=,"))
}
