//! The quality gate between training and the registry: whether a run's metric is good enough,
//! and what registering or promoting a run requires of the decision recorded on it. `engine
//! gate`, `engine register`, `engine promote` and `scripts/pipeline.sh` apply these rules; they
//! are decided nowhere else.

use std::collections::BTreeMap;

use crate::analysis::Direction;

/// The tag holding a run's gate decision: `passed` or `failed`.
pub const DECISION_TAG: &str = "engine.gate.decision";
/// Tags written beside the decision: what was checked, its value, the threshold and direction.
pub const DETAIL_TAGS: [&str; 4] =
    ["engine.gate.metric", "engine.gate.value", "engine.gate.threshold", "engine.gate.direction"];
/// Set on a run registered or promoted with `--force` despite its gate: who overrode it is in
/// the run's history.
pub const FORCED_TAG: &str = "engine.gate.forced";

/// Why a gate cannot decide, or why a registry step refuses a run.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("threshold {threshold} is outside the range of {metric} ({low} to {high}){hint}")]
    ThresholdOutOfRange { metric: String, threshold: f64, low: f64, high: f64, hint: &'static str },
    #[error("run {run_id} has no metric {metric} (nor eval_{metric}); it has: {}", available.join(", "))]
    UnknownMetric { run_id: String, metric: String, available: Vec<String> },
    #[error(
        "run {run_id} failed its quality gate ({detail}): it is not registered or promoted; \
         pass --force to override (recorded on the run as {FORCED_TAG})"
    )]
    Failed { run_id: String, detail: String },
    #[error(
        "run {run_id} was never gated and a gate is required: run `engine gate --run-id {run_id} ...` first, \
         or pass --force (recorded on the run as {FORCED_TAG})"
    )]
    NotGated { run_id: String },
}

/// A rule: `metric` must be at least (`Max`) or at most (`Min`) `threshold`.
#[derive(Clone, Debug, PartialEq)]
pub struct Gate {
    pub metric: String,
    pub threshold: f64,
    pub direction: Direction,
}

/// What the gate found for one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The metric checked: `eval_<metric>` when the run was evaluated, else `<metric>`.
    pub key: String,
    pub value: f64,
    pub passed: bool,
}

impl Gate {
    /// A gate on `metric`, its direction given or else following the metric's name (losses,
    /// errors and times lower-is-better, like `engine runs compare`). A threshold the metric
    /// can never reach or always passes (an accuracy of 88 instead of 0.88) is refused.
    pub fn new(metric: &str, threshold: f64, direction: Option<Direction>) -> Result<Gate, GateError> {
        if let Some((low, high)) = metric_range(metric)
            && !(low..=high).contains(&threshold)
        {
            let hint =
                if high == 1.0 && (1.0..=100.0).contains(&threshold) { "; give a fraction, e.g. 0.88" } else { "" };
            return Err(GateError::ThresholdOutOfRange { metric: metric.to_string(), threshold, low, high, hint });
        }
        let direction = direction.unwrap_or_else(|| Direction::for_metric(metric));
        Ok(Gate { metric: metric.to_string(), threshold, direction })
    }

    /// Decides on a run's latest metrics: its evaluation value (`eval_<metric>`) wins over the
    /// training one.
    pub fn decide(&self, run_id: &str, metrics: &BTreeMap<String, f64>) -> Result<Decision, GateError> {
        let eval_key = format!("eval_{}", self.metric);
        let (key, value) = [eval_key.as_str(), self.metric.as_str()]
            .into_iter()
            .find_map(|k| metrics.get(k).map(|&v| (k.to_string(), v)))
            .ok_or_else(|| GateError::UnknownMetric {
                run_id: run_id.to_string(),
                metric: self.metric.clone(),
                available: metrics.keys().filter(|k| !k.starts_with("system/")).cloned().collect(),
            })?;
        Ok(Decision { passed: self.direction.within(value, self.threshold, 0.0), key, value })
    }

    /// `>=`, `<`, `<=` or `>`: how a value stood to the threshold.
    pub fn relation(&self, passed: bool) -> &'static str {
        match (self.direction, passed) {
            (Direction::Max, true) => ">=",
            (Direction::Max, false) => "<",
            (Direction::Min, true) => "<=",
            (Direction::Min, false) => ">",
        }
    }

    /// The tags that record `decision` on the run.
    pub fn tags(&self, decision: &Decision) -> Vec<(String, String)> {
        let verdict = if decision.passed { "passed" } else { "failed" };
        let details =
            [decision.key.clone(), decision.value.to_string(), self.threshold.to_string(), self.direction.to_string()];
        std::iter::once((DECISION_TAG.to_string(), verdict.to_string()))
            .chain(DETAIL_TAGS.iter().map(|k| k.to_string()).zip(details))
            .collect()
    }
}

/// The values a metric can take, when its name says: fractions for accuracies and F1 scores,
/// non-negative numbers for losses, times and sizes.
pub fn metric_range(metric: &str) -> Option<(f64, f64)> {
    let key = metric.to_ascii_lowercase();
    if ["accuracy", "f1", "precision", "recall"].iter().any(|w| key.contains(w)) {
        Some((0.0, 1.0))
    } else if Direction::for_metric(&key) == Direction::Min {
        Some((0.0, f64::INFINITY))
    } else {
        None
    }
}

/// Whether a run with these tags may be registered or promoted: never after a failed gate, and
/// not without a gate when one is required, unless forced.
pub fn check_registrable(
    run_id: &str,
    tags: &BTreeMap<String, String>,
    require_gate: bool,
    force: bool,
) -> Result<(), GateError> {
    if force {
        return Ok(());
    }
    match tags.get(DECISION_TAG).map(String::as_str) {
        Some("passed") => Ok(()),
        Some(_) => {
            let detail = |k: &str| tags.get(k).map(String::as_str).unwrap_or("?");
            let detail = format!(
                "{} = {} against threshold {}",
                detail(DETAIL_TAGS[0]),
                detail(DETAIL_TAGS[1]),
                detail(DETAIL_TAGS[2])
            );
            Err(GateError::Failed { run_id: run_id.to_string(), detail })
        }
        None if require_gate => Err(GateError::NotGated { run_id: run_id.to_string() }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
    }

    #[test]
    fn losses_are_lower_is_better_unless_told() {
        let gate = Gate::new("test_loss", 0.5, None).unwrap();
        assert_eq!(gate.direction, Direction::Min);
        assert!(gate.decide("r", &metrics(&[("test_loss", 0.4)])).unwrap().passed);
        assert!(!gate.decide("r", &metrics(&[("test_loss", 0.6)])).unwrap().passed);
        let told = Gate::new("test_loss", 0.5, Some(Direction::Max)).unwrap();
        assert!(told.decide("r", &metrics(&[("test_loss", 0.6)])).unwrap().passed);
        assert_eq!(Gate::new("test_accuracy", 0.8, None).unwrap().direction, Direction::Max);
    }

    #[test]
    fn thresholds_outside_the_metric_range_are_refused() {
        let error = Gate::new("test_accuracy", 88.0, None).unwrap_err().to_string();
        assert!(error.contains("0 to 1") && error.contains("0.88"), "{error}");
        assert!(Gate::new("macro_f1", -0.1, None).is_err());
        assert!(Gate::new("test_loss", -1.0, None).is_err());
        assert!(Gate::new("test_accuracy", 1.0, None).is_ok());
        assert!(Gate::new("custom_score", 88.0, None).is_ok());
    }

    #[test]
    fn the_evaluation_value_wins_and_an_unknown_metric_lists_those_that_exist() {
        let gate = Gate::new("test_accuracy", 0.8, None).unwrap();
        let run = metrics(&[("test_accuracy", 0.9), ("eval_test_accuracy", 0.7), ("system/cpu", 1.0)]);
        let decision = gate.decide("r", &run).unwrap();
        assert_eq!((decision.key.as_str(), decision.passed), ("eval_test_accuracy", false));
        let error = Gate::new("f1", 0.5, None).unwrap().decide("r", &run).unwrap_err().to_string();
        assert!(error.contains("eval_test_accuracy, test_accuracy") && !error.contains("system/"), "{error}");
    }

    #[test]
    fn a_failed_or_missing_gate_blocks_registration_unless_forced() {
        let gate = Gate::new("test_accuracy", 0.8, None).unwrap();
        let failed = gate.decide("r", &metrics(&[("test_accuracy", 0.6)])).unwrap();
        let tags: BTreeMap<String, String> = gate.tags(&failed).into_iter().collect();
        let error = check_registrable("r", &tags, false, false).unwrap_err().to_string();
        assert!(error.contains("test_accuracy = 0.6 against threshold 0.8") && error.contains("--force"), "{error}");
        assert!(check_registrable("r", &tags, false, true).is_ok());
        assert!(check_registrable("r", &BTreeMap::new(), false, false).is_ok());
        assert!(matches!(check_registrable("r", &BTreeMap::new(), true, false), Err(GateError::NotGated { .. })));
        let passed: BTreeMap<String, String> =
            gate.tags(&gate.decide("r", &metrics(&[("test_accuracy", 0.9)])).unwrap()).into_iter().collect();
        assert!(check_registrable("r", &passed, true, false).is_ok());
    }
}
