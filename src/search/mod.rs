//! Hyperparameter searches beyond a grid: the spaces trials are drawn from ([`SearchSpace`]),
//! successive halving's rungs and promotions ([`halving`]), and the schedule of a search, the
//! state a sweep plan keeps so that any process, scheduler or restart runs the same trials
//! ([`schedule`]). All pure: the sweep command trains and logs, this decides.

pub mod halving;
pub mod schedule;
mod space;

pub use space::*;

/// The metric each run of a halving search logs: the rung it trains (0 for the first); a trial's
/// last run holds the rung it reached.
pub const RUNG_METRIC: &str = "rung";

/// The tag on the last run of a trial that a halving search stopped: `rung R`, where it stopped.
pub const PRUNED_TAG: &str = "engine.pruned";
