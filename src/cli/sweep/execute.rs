//! Running a plan from the command line: [`engine::experiment::sweep::drive`] with the trials of
//! each rung trained in this process or in `--workers` processes (each `engine sweep --plan FILE
//! --index I`), and the sweep's progress on the terminal.

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use engine::experiment::sweep::{self, Plan, SweepEvent};
use engine::experiment::{Bench, ExperimentError};
use engine::tracking::RunStatus;
use engine::train::TrainError;

use crate::cli::UsageError;
use crate::cli::train::RunRenderer;

/// Trains the plan to its end (see [`sweep::drive`]), `workers` trials at a time.
pub fn drive(plan: &mut Plan, path: &Path, workers: usize) -> anyhow::Result<()> {
    let interrupted = crate::cli::interrupt::install_interrupt_flag();
    let mut trial_view = SweepView::default();
    let mut bench: Option<Bench> = None;
    let train = |plan: &Plan, trials: &[usize]| -> anyhow::Result<bool> {
        if workers > 1 {
            return run_workers(plan, path, trials, workers, &interrupted);
        }
        if trials.is_empty() {
            return Ok(true);
        }
        let bench = match &mut bench {
            Some(bench) => bench,
            None => bench.insert(super::plan::bench(plan)?),
        };
        Ok(sweep::run_trials(plan, path, bench, trials, &interrupted, &mut |e| trial_view.show(e)))
    };
    let mut rung_view = SweepView::default();
    sweep::drive(plan, path, &interrupted, &mut |e| rung_view.show(e), train)
}

/// `--promote`: ranks the current rung and writes the next into the plan.
pub fn promote(plan: &mut Plan, path: &Path) -> Result<(), ExperimentError> {
    sweep::promote(plan, path, &mut |e| SweepView::default().show(e))
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
    let bench = super::plan::bench(plan)?;
    let interrupted = crate::cli::interrupt::install_interrupt_flag();
    let mut view = SweepView::default();
    let result = sweep::run_trial(plan, path, &bench, trial, &interrupted, &mut |e| view.show(e));
    match (result.status, &result.error) {
        (RunStatus::Finished, _) => Ok(ExitCode::SUCCESS),
        (RunStatus::Killed, _) => Err(TrainError::Interrupted.into()),
        (_, error) => anyhow::bail!("sweep run {index} ({}) failed: {}", result.label, error.as_deref().unwrap_or("?")),
    }
}

/// `workers` trials at a time, each an `engine sweep --plan --index` process with its share of
/// the threads; false when interrupted.
fn run_workers(
    plan: &Plan,
    path: &Path,
    trials: &[usize],
    workers: usize,
    interrupted: &AtomicBool,
) -> anyhow::Result<bool> {
    let threads = (rayon::current_num_threads() / workers).max(1);
    let exe = std::env::current_exe().context("cannot find the engine executable")?;
    let current = plan.schedule.current_trials();
    let mut next = 0;
    let mut running: Vec<std::process::Child> = Vec::new();
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

/// A sweep's progress on stderr, each trial's run shown as `engine train` shows it.
#[derive(Default)]
struct SweepView {
    run: Option<RunRenderer>,
}

impl SweepView {
    fn show(&mut self, event: SweepEvent) {
        match event {
            SweepEvent::Rung { rung, pending, size, epochs } => {
                eprintln!("\n== rung {rung}: {pending} of {size} trials to train to {epochs} epochs")
            }
            SweepEvent::Trial { trial, trials, label, epochs } => {
                eprintln!("\n== sweep run {}/{trials}: {label} ({epochs} epochs)", trial + 1);
                self.run = Some(RunRenderer::new(false, epochs));
            }
            SweepEvent::Run(event) => {
                if let Some(run) = &mut self.run {
                    run.show(event);
                }
            }
            SweepEvent::TrialFailed { trial, label, why } => {
                eprintln!("sweep run {} ({label}) did not finish: {why}", trial + 1)
            }
            SweepEvent::Waiting { labels } => {
                eprintln!("waiting for the trials another process is training: {}", labels.join("; "))
            }
            SweepEvent::Stopped { remaining } => {
                eprintln!("sweep interrupted: the remaining {remaining} runs were not started")
            }
            SweepEvent::Promoted { rung, metric, kept, pruned } => eprintln!(
                "rung {rung} ranked by {metric}: {} promoted ({}), {pruned} pruned",
                kept.len(),
                kept.join("; ")
            ),
        }
    }
}
