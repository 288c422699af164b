//! Sweeps: one tracked run per point of a grid or per trial drawn from a search space, or
//! successive halving over such trials, nested under a parent run the way MLflow's client nests
//! runs (`mlflow.parentRunId` on each child). Every strategy ends in a [`Plan`] of points and a
//! schedule of rungs, so workers, schedulers, resuming and the summary do not know which chose
//! them: [`drive`] trains a plan rung by rung, [`run_trial`] trains one entry (a worker's or an
//! array job's), [`promote`] decides the next rung, and [`summarize`] ranks the runs and ends
//! the parent. Progress arrives as [`SweepEvent`]s.

mod execute;
mod plan;
mod summary;

pub use execute::{SweepEvent, TrialResult, child_dir, drive, logged_runs, promote, run_at, run_trial, run_trials};
pub use plan::{Plan, PlannedPoint};
pub use summary::{SweepSummary, summarize, update_run};

/// Tag marking a sweep's parent run.
pub const SWEEP_TAG: &str = "engine.sweep";
