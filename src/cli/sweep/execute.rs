//! Running a plan: the trials of the current rung in this process, or in `--workers` processes
//! each running `engine sweep --plan FILE --index I`, then the promotion to the next rung, until
//! the last rung is trained. What is done is read from what the runs logged, so a sweep stopped
//! at any point and resumed (`--resume`) trains each missing trial once, and a scheduler's array
//! job for a rung followed by `--promote` decides the same promotions as one process would.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::Context;
use engine::analysis::RunSummary;
use engine::search::schedule::ScheduleError;
use engine::search::{PRUNED_TAG, RUNG_METRIC};
use engine::tracking::{LocalStore, Metric, RunStatus, TrackingConfig};
use engine::train::TrainError;

use super::plan::Plan;
use super::summary::update_run;
use crate::cli::UsageError;
use crate::cli::compare::PARENT_RUN_ID_TAG;
use crate::cli::train::{Bench, RunSpec, tracked_run};
use engine::train::CheckpointPaths;

/// How one trial's run went.
pub struct ChildResult {
    pub label: String,
    pub status: RunStatus,
    pub error: Option<String>,
    /// The run as recorded, once it is.
    pub summary: Option<RunSummary>,
}

/// Every run nested under the plan's parent: from the local store (every run made on this
/// machine is there), and from the server (runs made elsewhere).
pub fn logged_runs(plan: &Plan) -> anyhow::Result<Vec<RunSummary>> {
    let parent = Some(plan.parent_run_id.as_str());
    let tracking = plan.tracking();
    let mut found = local_runs(plan)?;
    if tracking.tracking_uri.is_some() {
        let server = engine::tracking::Source::open(&tracking)?.experiment_runs(&plan.experiment)?;
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
fn local_runs(plan: &Plan) -> anyhow::Result<Vec<RunSummary>> {
    let parent = Some(plan.parent_run_id.as_str());
    Ok(LocalStore::open(&plan.tracking().local_root)?
        .list_runs(Some(&plan.experiment))?
        .iter()
        .map(engine::tracking::summary_from_record)
        .filter(|r| r.parent_run_id.as_deref() == parent)
        .collect())
}

/// The current rung's trials whose run a live process on this machine is recording (the
/// workers of a sweep killed before this resume): waited for, not trained twice. Only the local
/// store's lock tells a live run from a dead one; a run on the server alone may be either.
fn recording_here(plan: &Plan) -> anyhow::Result<Vec<usize>> {
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
fn clear_dead_attempt(plan: &Plan, dir: &Path, trial: usize, rung: usize) -> anyhow::Result<()> {
    let runs = logged_runs(plan)?;
    let mut tried = attempts(plan, &runs, trial, rung).peekable();
    let dead = |r: &RunSummary| r.status == "unfinished" || r.status == "KILLED";
    if tried.peek().is_some() && tried.all(dead) {
        engine::experiment::claim_output_dir(dir, true)?;
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

/// Trains the plan to its end: each rung's missing trials, then the promotion, rung after rung.
/// Returns early (leaving the plan where it stopped) when interrupted.
pub fn drive(plan: &mut Plan, path: &Path, workers: usize) -> anyhow::Result<()> {
    let interrupted = crate::cli::interrupt::install_interrupt_flag();
    let mut waited: Option<Vec<usize>> = None;
    loop {
        let busy = recording_here(plan)?;
        let todo: Vec<usize> = pending(plan, &logged_runs(plan)?).into_iter().filter(|t| !busy.contains(t)).collect();
        let (rung, epochs, size) =
            (plan.schedule.rung(), plan.schedule.current_epochs(), plan.schedule.current_trials().len());
        if plan.schedule.halving.is_some() && (!todo.is_empty() || waited.is_none()) {
            eprintln!("\n== rung {rung}: {} of {size} trials to train to {epochs} epochs", todo.len());
        }
        let completed =
            if workers > 1 { run_workers(plan, path, &todo, workers)? } else { run_in_process(plan, path, &todo)? };
        if !completed || interrupted.load(Ordering::SeqCst) {
            return Ok(());
        }
        if !busy.is_empty() {
            if waited.as_ref() != Some(&busy) {
                let names: Vec<&str> = busy.iter().map(|&t| plan.points[t].label.as_str()).collect();
                eprintln!("waiting for the trials another process is training: {}", names.join("; "));
            }
            waited = Some(busy);
            std::thread::sleep(std::time::Duration::from_millis(500));
            continue;
        }
        waited = None;
        if plan.schedule.halving.is_none() || plan.schedule.is_last_rung() {
            return Ok(());
        }
        promote(plan, path)?;
    }
}

/// Ranks the current rung from what its runs logged, tags the pruned trials' runs, and writes the
/// plan with the next rung. The tags come first: a promotion repeated after a crash finds the
/// same results and tags the same runs again.
pub fn promote(plan: &mut Plan, path: &Path) -> anyhow::Result<()> {
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
        ScheduleError::Incomplete { .. } => anyhow::anyhow!("{e}: train them first (--index, or --resume)"),
        other => UsageError(other.to_string()).into(),
    })?;
    for &t in &pruned {
        if let Some(run) = run_at(plan, &runs, t, rung) {
            update_run(plan, &run.run_id, &[], &[(PRUNED_TAG.to_string(), format!("rung {rung}"))], None)?;
        }
    }
    plan.schedule = next;
    plan.write(path)?;
    let kept: Vec<&str> = plan.schedule.current_trials().iter().map(|&t| plan.points[t].label.as_str()).collect();
    eprintln!("rung {rung} ranked by {metric}: {} promoted ({}), {} pruned", kept.len(), kept.join("; "), pruned.len());
    Ok(())
}

/// Trains entry `index` of the current rung as a child of the plan's parent.
pub fn run_planned(plan: &Plan, path: &Path, index: usize) -> anyhow::Result<ExitCode> {
    let trials = plan.schedule.current_trials();
    let Some(&trial) = trials.get(index) else {
        let rung = plan.schedule.rung();
        return Err(UsageError(format!(
            "--index {index}: rung {rung} of the plan has entries 0 to {}",
            trials.len() - 1
        ))
        .into());
    };
    let bench = plan.bench()?;
    let result = run_trial(plan, path, &bench, trial);
    match (result.status, &result.error) {
        (RunStatus::Finished, _) => Ok(ExitCode::SUCCESS),
        (RunStatus::Killed, _) => Err(TrainError::Interrupted.into()),
        (_, error) => anyhow::bail!("sweep run {index} ({}) failed: {}", result.label, error.as_deref().unwrap_or("?")),
    }
}

/// The trials in turn in this process; false when interrupted.
fn run_in_process(plan: &Plan, path: &Path, trials: &[usize]) -> anyhow::Result<bool> {
    if trials.is_empty() {
        return Ok(true);
    }
    let bench = plan.bench()?;
    for (i, &trial) in trials.iter().enumerate() {
        if run_trial(plan, path, &bench, trial).status == RunStatus::Killed {
            eprintln!("sweep interrupted: the remaining {} runs were not started", trials.len() - i - 1);
            return Ok(false);
        }
    }
    Ok(true)
}

/// `workers` trials at a time, each an `engine sweep --plan --index` process with its share of
/// the threads; false when interrupted.
fn run_workers(plan: &Plan, path: &Path, trials: &[usize], workers: usize) -> anyhow::Result<bool> {
    let threads = (rayon::current_num_threads() / workers).max(1);
    let exe = std::env::current_exe().context("cannot find the engine executable")?;
    let current = plan.schedule.current_trials();
    let mut next = 0;
    let mut running: Vec<std::process::Child> = Vec::new();
    let interrupted = crate::cli::interrupt::install_interrupt_flag();
    while next < trials.len() || !running.is_empty() {
        while running.len() < workers && next < trials.len() && !interrupted.load(Ordering::SeqCst) {
            let index = current.iter().position(|&t| t == trials[next]).unwrap_or_default();
            let mut command = std::process::Command::new(&exe);
            command.args(["sweep", "--plan"]).arg(path).args(["--index", &index.to_string()]);
            // A sweep killed outright stops its workers too (their runs end KILLED), rather than
            // leave them training beside the sweep that resumes it.
            engine::tracking::die_with_parent(&mut command);
            let child =
                command.env("RAYON_NUM_THREADS", threads.to_string()).spawn().context("cannot start a sweep worker")?;
            running.push(child);
            next += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        running.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        if interrupted.load(Ordering::SeqCst) && next < trials.len() {
            eprintln!("sweep interrupted: the remaining {} runs were not started", trials.len() - next);
            next = trials.len();
        }
    }
    Ok(!interrupted.load(Ordering::SeqCst))
}

/// Trains `trial` to the current rung's epochs as a child of the plan's parent; a halving trial
/// past rung 0 continues from its checkpoint of the rung before.
fn run_trial(plan: &Plan, path: &Path, bench: &Bench, trial: usize) -> ChildResult {
    let (point, rung) = (&plan.points[trial], plan.schedule.rung());
    let epochs = plan.epochs_of(trial, rung);
    eprintln!("\n== sweep run {}/{}: {} ({epochs} epochs)", trial + 1, plan.points.len(), point.label);
    let mut tags = vec![(PARENT_RUN_ID_TAG.to_string(), plan.parent_run_id.clone())];
    tags.extend(plan.tags.iter().cloned());
    let halving = plan.schedule.halving.is_some();
    let checkpoint = halving.then(|| CheckpointPaths {
        from: rung.checked_sub(1).map(|before| plan.checkpoint_path(path, trial, before)),
        to: plan.checkpoint_path(path, trial, rung),
        // The trial's learning rate anneals over its last rung, as a run that long would.
        planned_epochs: Some(point.config.epochs),
    });
    let name = if halving { format!("{} rung {rung}", point.label) } else { point.label.clone() };
    let output_dir = plan.output_dir.as_ref().map(|d| child_dir(d, trial, &name));
    let prepared = checkpoint.as_ref().and_then(|c| c.to.parent()).map_or(Ok(()), std::fs::create_dir_all);
    let prepared = prepared.map_err(anyhow::Error::from).and_then(|()| match &output_dir {
        Some(dir) => clear_dead_attempt(plan, dir, trial, rung),
        None => Ok(()),
    });
    if let Err(e) = prepared {
        let error = Some(format!("{e:#}"));
        return ChildResult { label: point.label.clone(), status: RunStatus::Failed, error, summary: None };
    }
    let spec = RunSpec {
        config: engine::train::TrainConfig { epochs, ..point.config.clone() },
        tracking: TrackingConfig { run_name: Some(point.label.clone()), ..plan.tracking() },
        tags,
        output_dir,
        json: false,
        system_metrics: plan.system_metrics_seconds.map(std::time::Duration::from_secs_f64),
        checkpoint,
        start_metrics: if halving { vec![Metric::new(RUNG_METRIC, rung as f64, 0)] } else { Vec::new() },
    };
    let (status, error) = match tracked_run(bench, &spec) {
        Ok(outcome) => (outcome.status, outcome.result.err().map(|e| format!("{e:#}"))),
        Err(e) => (RunStatus::Failed, Some(format!("{e:#}"))),
    };
    if let Some(why) = &error {
        eprintln!("sweep run {} ({}) did not finish: {why}", trial + 1, point.label);
    }
    ChildResult { label: point.label.clone(), status, error, summary: None }
}

/// `<output dir>/01-lr=0.01_bs=64_hidden=256`.
pub fn child_dir(base: &Path, index: usize, label: &str) -> std::path::PathBuf {
    let safe: String =
        label.chars().map(|c| if c.is_ascii_alphanumeric() || "=.,-".contains(c) { c } else { '_' }).collect();
    base.join(format!("{:02}-{safe}", index + 1))
}
