//! The workflow around the engine, as a library: a tracked training run ([`tracked_run`]: start,
//! train, evaluate, save the model, log, end with the right status), evaluating a trained model
//! ([`evaluate`], [`log_evaluation`]), finding models by run id, model URI or directory
//! ([`locate`]), describing datasets the way MLflow records them ([`Datasets`]), and the quality
//! gate ([`gate_run`], [`require_gate`]) and the registry steps after it ([`register_model`],
//! [`prepare_promotion`]), a run's evaluation checklist ([`analyze_run`]), and sweeps: their
//! plan file, trial loop and summary ([`sweep`]).
//!
//! Nothing here prints, parses arguments or exits: progress arrives as [`Event`]s, results as
//! values, failures as [`ExperimentError`]; an interrupt is a raised cancellation flag. The
//! `engine` command line renders these; any other program can drive them the same way (see
//! `examples/tracked_run.rs`).

mod analyze;
mod datasets;
mod error;
mod eval;
pub mod gate;
pub mod locate;
mod output_dir;
pub mod registry;
mod results;
mod run;
pub mod sweep;

pub use analyze::{AnalyzeSpec, Analyzed, analyze_run};
pub use datasets::{Datasets, evaluation_input, load_data};
pub use error::ExperimentError;
pub use eval::{EvalSpec, Evaluated, Logged, evaluate, log_evaluation};
pub use gate::{GateOutcome, gate_run, require_gate};
pub use locate::{Located, locate_model};
pub use output_dir::claim_output_dir;
pub use registry::{CHAMPION, Promoted, Promotion, Registered, prepare_promotion, register_model};
pub use run::{Bench, ERROR_TAG, Event, RunOutcome, RunSpec, tracked_run};

/// The tag MLflow keeps a run's description in.
pub const NOTE_TAG: &str = "mlflow.note.content";
