//! The quality gate between training and the registry: whether a run's metric is good enough
//! (against a threshold, and against the model in production, the champion, within a
//! tolerance), and what registering or promoting a run requires of the decision recorded on it.
//! `engine gate`, `engine register`, `engine promote` and `scripts/pipeline.sh` apply these
//! rules; they are decided nowhere else.

use std::collections::BTreeMap;

use crate::analysis::Direction;

/// The tag holding a run's gate decision: `passed` or `failed`.
pub const DECISION_TAG: &str = "engine.gate.decision";
/// Tags written beside the decision: what was checked, its value, the threshold and direction.
pub const DETAIL_TAGS: [&str; 4] =
    ["engine.gate.metric", "engine.gate.value", "engine.gate.threshold", "engine.gate.direction"];
/// Tags written when the run was compared with a baseline: which, its value, the tolerance.
pub const BASELINE_TAGS: [&str; 3] = ["engine.gate.baseline", "engine.gate.baseline_value", "engine.gate.tolerance"];
/// Set on a run registered or promoted with `--force` despite its gate: who overrode it is in
/// the run's history.
pub const FORCED_TAG: &str = "engine.gate.forced";

/// Why a gate cannot decide, or why a registry step refuses a run.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("a gate needs a threshold, a baseline, or both (--threshold, --baseline)")]
    NothingToCheck,
    #[error("tolerance {0} must be a finite number >= 0")]
    BadTolerance(f64),
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

/// A rule: `metric` must be at least (`Max`) or at most (`Min`) `threshold`, and no more than
/// `tolerance` worse than the baseline's when one is given.
#[derive(Clone, Debug, PartialEq)]
pub struct Gate {
    pub metric: String,
    pub threshold: Option<f64>,
    pub tolerance: f64,
    pub direction: Direction,
}

/// The run a candidate is compared with (the champion), and its latest metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Baseline {
    /// How it was named, for messages and tags, e.g. `models:/fashion-mlp@champion (version 2)`.
    pub label: String,
    pub run_id: String,
    pub metrics: BTreeMap<String, f64>,
}

/// What the gate found for one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The metric checked: `eval_<metric>` when the run was evaluated, else `<metric>`.
    pub key: String,
    pub value: f64,
    /// Whether the value reached the threshold, when there is one.
    pub threshold_passed: Option<bool>,
    /// The comparison with the baseline, when there is one.
    pub baseline: Option<BaselineCheck>,
}

/// The candidate against the baseline, on the same metric.
#[derive(Clone, Debug, PartialEq)]
pub struct BaselineCheck {
    pub label: String,
    pub value: f64,
    pub passed: bool,
}

/// Which check a failed decision failed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Below the threshold.
    Threshold,
    /// Worse than the baseline by more than the tolerance.
    Baseline,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Threshold => "threshold",
            Failure::Baseline => "baseline",
        }
    }
}

impl Decision {
    pub fn passed(&self) -> bool {
        self.failure().is_none()
    }

    pub fn failure(&self) -> Option<Failure> {
        if self.threshold_passed == Some(false) {
            Some(Failure::Threshold)
        } else if self.baseline.as_ref().is_some_and(|b| !b.passed) {
            Some(Failure::Baseline)
        } else {
            None
        }
    }

    pub fn verdict(&self) -> &'static str {
        if self.passed() { "passed" } else { "failed" }
    }
}

impl Gate {
    /// A gate on `metric`, its direction given or else following the metric's name (losses,
    /// errors and times lower-is-better, like `engine runs compare`). A threshold the metric
    /// can never reach or always passes (an accuracy of 88 instead of 0.88) is refused.
    pub fn new(
        metric: &str,
        threshold: Option<f64>,
        tolerance: f64,
        direction: Option<Direction>,
    ) -> Result<Gate, GateError> {
        if let (Some(threshold), Some((low, high))) = (threshold, metric_range(metric))
            && !(low..=high).contains(&threshold)
        {
            let hint =
                if high == 1.0 && (1.0..=100.0).contains(&threshold) { "; give a fraction, e.g. 0.88" } else { "" };
            return Err(GateError::ThresholdOutOfRange { metric: metric.to_string(), threshold, low, high, hint });
        }
        if !(tolerance.is_finite() && tolerance >= 0.0) {
            return Err(GateError::BadTolerance(tolerance));
        }
        let direction = direction.unwrap_or_else(|| Direction::for_metric(metric));
        Ok(Gate { metric: metric.to_string(), threshold, tolerance, direction })
    }

    /// Decides on a run's latest metrics, its evaluation value (`eval_<metric>`) winning over
    /// the training one, against the threshold and the baseline's value of the same metric.
    /// Without a baseline run (no champion yet), only the threshold counts.
    pub fn decide(
        &self,
        run_id: &str,
        metrics: &BTreeMap<String, f64>,
        baseline: Option<&Baseline>,
    ) -> Result<Decision, GateError> {
        let (key, value) = self.value_of(run_id, metrics)?;
        let threshold_passed = self.threshold.map(|t| self.direction.within(value, t, 0.0));
        let baseline = match baseline {
            Some(b) => {
                let (_, best) = self.value_of(&b.run_id, &b.metrics)?;
                let passed = self.direction.within(value, best, self.tolerance);
                Some(BaselineCheck { label: b.label.clone(), value: best, passed })
            }
            None => None,
        };
        Ok(Decision { key, value, threshold_passed, baseline })
    }

    /// The metric's key and latest value in `metrics`, the evaluation's first.
    fn value_of(&self, run_id: &str, metrics: &BTreeMap<String, f64>) -> Result<(String, f64), GateError> {
        let eval_key = format!("eval_{}", self.metric);
        [eval_key.as_str(), self.metric.as_str()]
            .into_iter()
            .find_map(|k| metrics.get(k).map(|&v| (k.to_string(), v)))
            .ok_or_else(|| GateError::UnknownMetric {
                run_id: run_id.to_string(),
                metric: self.metric.clone(),
                available: metrics.keys().filter(|k| !k.starts_with("system/")).cloned().collect(),
            })
    }

    /// `>=`, `<`, `<=` or `>`: how a value stood to the bar it was held to.
    pub fn relation(&self, passed: bool) -> &'static str {
        match (self.direction, passed) {
            (Direction::Max, true) => ">=",
            (Direction::Max, false) => "<",
            (Direction::Min, true) => "<=",
            (Direction::Min, false) => ">",
        }
    }

    /// One line for people: `gate failed: eval_test_accuracy = 0.6454 >= threshold 0.6000, <
    /// baseline 0.8966 - 0.0050 (models:/fashion-mlp@champion (version 2)) (run …)`.
    pub fn describe(&self, decision: &Decision, run_id: &str) -> String {
        let mut checks = Vec::new();
        if let (Some(threshold), Some(passed)) = (self.threshold, decision.threshold_passed) {
            checks.push(format!("{} threshold {threshold:.4}", self.relation(passed)));
        }
        if let Some(b) = &decision.baseline {
            let sign = if self.direction == Direction::Max { '-' } else { '+' };
            let bar = format!("{:.4} {sign} {:.4}", b.value, self.tolerance);
            checks.push(format!("{} baseline {bar} ({})", self.relation(b.passed), b.label));
        }
        if checks.is_empty() {
            checks.push("(no champion yet: nothing to compare with)".to_string());
        }
        let (verdict, key, value) = (decision.verdict(), &decision.key, decision.value);
        format!("gate {verdict}: {key} = {value:.4} {} (run {run_id})", checks.join(", "))
    }

    /// The tags that record `decision` on the run.
    pub fn tags(&self, decision: &Decision) -> Vec<(String, String)> {
        let threshold = self.threshold.map(|t| t.to_string()).unwrap_or_default();
        let details = [decision.key.clone(), decision.value.to_string(), threshold, self.direction.to_string()];
        let mut tags: Vec<(String, String)> =
            std::iter::once((DECISION_TAG.to_string(), decision.verdict().to_string()))
                .chain(DETAIL_TAGS.iter().map(|k| k.to_string()).zip(details))
                .collect();
        if let Some(b) = &decision.baseline {
            let values = [b.label.clone(), b.value.to_string(), self.tolerance.to_string()];
            tags.extend(BASELINE_TAGS.iter().map(|k| k.to_string()).zip(values));
        }
        tags
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

    fn threshold(metric: &str, threshold: f64) -> Gate {
        Gate::new(metric, Some(threshold), 0.0, None).unwrap()
    }

    #[test]
    fn losses_are_lower_is_better_unless_told() {
        let gate = threshold("test_loss", 0.5);
        assert_eq!(gate.direction, Direction::Min);
        assert!(gate.decide("r", &metrics(&[("test_loss", 0.4)]), None).unwrap().passed());
        assert!(!gate.decide("r", &metrics(&[("test_loss", 0.6)]), None).unwrap().passed());
        let told = Gate::new("test_loss", Some(0.5), 0.0, Some(Direction::Max)).unwrap();
        assert!(told.decide("r", &metrics(&[("test_loss", 0.6)]), None).unwrap().passed());
        assert_eq!(threshold("test_accuracy", 0.8).direction, Direction::Max);
    }

    #[test]
    fn thresholds_outside_the_metric_range_are_refused() {
        let error = Gate::new("test_accuracy", Some(88.0), 0.0, None).unwrap_err().to_string();
        assert!(error.contains("0 to 1") && error.contains("0.88"), "{error}");
        assert!(Gate::new("macro_f1", Some(-0.1), 0.0, None).is_err());
        assert!(Gate::new("test_loss", Some(-1.0), 0.0, None).is_err());
        assert!(Gate::new("test_accuracy", Some(0.8), -0.1, None).is_err());
        assert!(Gate::new("test_accuracy", Some(1.0), 0.0, None).is_ok());
        assert!(Gate::new("custom_score", Some(88.0), 0.0, None).is_ok());
    }

    #[test]
    fn the_evaluation_value_wins_and_an_unknown_metric_lists_those_that_exist() {
        let gate = threshold("test_accuracy", 0.8);
        let run = metrics(&[("test_accuracy", 0.9), ("eval_test_accuracy", 0.7), ("system/cpu", 1.0)]);
        let decision = gate.decide("r", &run, None).unwrap();
        assert_eq!((decision.key.as_str(), decision.passed()), ("eval_test_accuracy", false));
        let error = threshold("f1", 0.5).decide("r", &run, None).unwrap_err().to_string();
        assert!(error.contains("eval_test_accuracy, test_accuracy") && !error.contains("system/"), "{error}");
    }

    #[test]
    fn a_candidate_worse_than_the_champion_beyond_the_tolerance_fails_on_the_baseline() {
        let gate = Gate::new("test_accuracy", Some(0.6), 0.005, None).unwrap();
        let champion = Baseline {
            label: "models:/m@champion (version 2)".into(),
            run_id: "c".into(),
            metrics: metrics(&[("eval_test_accuracy", 0.8966)]),
        };
        let worse = gate.decide("r", &metrics(&[("eval_test_accuracy", 0.6454)]), Some(&champion)).unwrap();
        assert_eq!(worse.failure(), Some(Failure::Baseline));
        let line = gate.describe(&worse, "r");
        assert!(line.contains(">= threshold 0.6000, < baseline 0.8966 - 0.0050"), "{line}");
        let close = gate.decide("r", &metrics(&[("eval_test_accuracy", 0.8920)]), Some(&champion)).unwrap();
        assert!(close.passed(), "within the tolerance");
        let below = gate.decide("r", &metrics(&[("eval_test_accuracy", 0.5)]), Some(&champion)).unwrap();
        assert_eq!(below.failure(), Some(Failure::Threshold));
        let tags: BTreeMap<String, String> = gate.tags(&worse).into_iter().collect();
        assert_eq!(tags.get(BASELINE_TAGS[0]).map(String::as_str), Some("models:/m@champion (version 2)"));
        assert_eq!(tags.get(DECISION_TAG).map(String::as_str), Some("failed"));
    }

    #[test]
    fn a_failed_or_missing_gate_blocks_registration_unless_forced() {
        let gate = threshold("test_accuracy", 0.8);
        let failed = gate.decide("r", &metrics(&[("test_accuracy", 0.6)]), None).unwrap();
        let tags: BTreeMap<String, String> = gate.tags(&failed).into_iter().collect();
        let error = check_registrable("r", &tags, false, false).unwrap_err().to_string();
        assert!(error.contains("test_accuracy = 0.6 against threshold 0.8") && error.contains("--force"), "{error}");
        assert!(check_registrable("r", &tags, false, true).is_ok());
        assert!(check_registrable("r", &BTreeMap::new(), false, false).is_ok());
        assert!(matches!(check_registrable("r", &BTreeMap::new(), true, false), Err(GateError::NotGated { .. })));
        let passing = gate.decide("r", &metrics(&[("test_accuracy", 0.9)]), None).unwrap();
        let passed: BTreeMap<String, String> = gate.tags(&passing).into_iter().collect();
        assert!(check_registrable("r", &passed, true, false).is_ok());
    }
}
