//! Comparing runs: which is best, which is worth keeping, and what went wrong.
//!
//! Everything here works on plain data ([`RunSummary`]: params, final metrics and the loss
//! curves; per-class scores; confusion counts), never on files, servers or models, so the rules a
//! practitioner applies when comparing experiments (rank by the metric in the right direction,
//! prefer the cheaper model when accuracy is comparable, distrust a run whose validation loss
//! turned upward, stop training when it does) can be tested on crafted numbers. The CLI
//! (`engine runs compare|analyze`, `engine sweep`) reads the runs and prints what this decides;
//! the training loop uses [`EarlyStopping`].

mod checklist;
mod curves;
mod rungs;

use std::collections::BTreeMap;

pub use checklist::{
    Analysis, AnalysisInputs, CheckItem, ClassScore, Confusion, ConfusionCounts, Verdict, analyze,
    class_scores_from_json, confusion_from_json, top_confusions, weakest_class,
};
pub use curves::{EarlyStopping, Overfitting, StopDecision, detect_overfitting, lowest_point};
pub use rungs::{RungRecord, SearchRungs, TrialPlace, search_rungs};

/// Default number of epochs validation loss must rise for a run to be flagged as overfitting.
pub const DEFAULT_OVERFIT_EPOCHS: usize = 2;
/// Default accuracy tolerance within which a cheaper run is recommended over the best one.
pub const DEFAULT_TOLERANCE: f64 = 0.005;

/// Metric keys the comparison reads for a run's cost.
pub mod keys {
    pub const TRAIN_SECONDS: &str = "train_seconds";
    pub const PARAMETER_COUNT: &str = "parameter_count";
    pub const SAMPLES_PER_SECOND: &str = "samples_per_second";
    pub const INFERENCE_MS_64: &str = "inference_ms_batch_64";
    pub const INFERENCE_MS_1000: &str = "inference_ms_batch_1000";
    pub const PEAK_RSS_MB: &str = "peak_rss_mb";
    pub const TEST_ACCURACY: &str = "test_accuracy";
    pub const TEST_LOSS: &str = "test_loss";
    pub const TRAIN_LOSS: &str = "train_loss";
    pub const VAL_LOSS: &str = "val_loss";
    pub const BEST_EPOCH: &str = "best_epoch";
    pub const STOPPED_EPOCH: &str = "stopped_epoch";
}

/// A metric curve: `(epoch, value)` points in epoch order, one per epoch.
pub type Series = Vec<(i64, f64)>;

/// What the comparison knows about one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunSummary {
    pub run_id: String,
    pub run_name: String,
    /// `FINISHED`, `FAILED`, ...
    pub status: String,
    pub params: BTreeMap<String, String>,
    /// The latest value of each metric.
    pub metrics: BTreeMap<String, f64>,
    pub train_loss: Series,
    pub val_loss: Series,
    /// The run this one is nested under (MLflow's `mlflow.parentRunId` tag), e.g. its sweep.
    pub parent_run_id: Option<String>,
}

impl RunSummary {
    /// A finite metric value.
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.metrics.get(key).copied().filter(|v| v.is_finite())
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(String::as_str)
    }

    /// The run's cost as the recommendation orders it: training time, then parameter count;
    /// an unknown cost counts as infinite (never preferred).
    pub fn cost(&self) -> (f64, f64) {
        let or_inf = |v: Option<f64>| v.unwrap_or(f64::INFINITY);
        (or_inf(self.metric(keys::TRAIN_SECONDS)), or_inf(self.metric(keys::PARAMETER_COUNT)))
    }

    /// Its overfitting flag under the default rule.
    pub fn overfitting(&self) -> Option<Overfitting> {
        detect_overfitting(&self.train_loss, &self.val_loss, DEFAULT_OVERFIT_EPOCHS)
    }
}

/// Which way a metric improves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Higher is better (accuracy, F1).
    Max,
    /// Lower is better (losses, errors, times).
    Min,
}

crate::choice::choice!(Direction { Max => "max", Min => "min" });

impl Direction {
    /// The sensible default for a metric name: losses, errors, times, memory and sizes are
    /// minimised, everything else maximised.
    pub fn for_metric(key: &str) -> Direction {
        let key = key.to_ascii_lowercase();
        let lower_is_better = ["loss", "error", "seconds", "_ms", "rss", "parameter_count", "mse", "mae", "perplexity"];
        if lower_is_better.iter().any(|w| key.contains(w)) { Direction::Min } else { Direction::Max }
    }

    /// True when `a` is strictly better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Direction::Max => a > b,
            Direction::Min => a < b,
        }
    }

    /// True when `value` is no more than `tolerance` worse than `best`.
    pub fn within(self, value: f64, best: f64, tolerance: f64) -> bool {
        // a hair of slack so that a gap of exactly the tolerance counts despite rounding
        let slack = tolerance + 1e-12;
        match self {
            Direction::Max => value >= best - slack,
            Direction::Min => value <= best + slack,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Max => "max",
            Direction::Min => "min",
        }
    }
}

/// Runs ordered by a metric, with the best and the recommended one.
#[derive(Clone, Debug, PartialEq)]
pub struct Ranking {
    pub metric: String,
    pub direction: Direction,
    pub tolerance: f64,
    /// Indices into the input of the runs that have the metric, best first (ties: cheaper first,
    /// then by run id, so the order is stable).
    pub order: Vec<usize>,
    /// Indices of the runs without a finite value of the metric.
    pub missing: Vec<usize>,
    pub best: Option<usize>,
    pub recommended: Option<Recommendation>,
}

/// The run to keep, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Recommendation {
    pub index: usize,
    pub reason: String,
}

/// Ranks `runs` by `metric` in `direction`; recommends the cheapest run (by training time, then
/// parameter count) whose metric is within `tolerance` (absolute) of the best.
pub fn rank(runs: &[RunSummary], metric: &str, direction: Direction, tolerance: f64) -> Ranking {
    let (with, missing): (Vec<usize>, Vec<usize>) = (0..runs.len()).partition(|&i| runs[i].metric(metric).is_some());
    let mut order = with;
    order.sort_by(|&a, &b| {
        let (va, vb) = (runs[a].metric(metric).unwrap_or(f64::NAN), runs[b].metric(metric).unwrap_or(f64::NAN));
        let by_value = match direction {
            Direction::Max => vb.total_cmp(&va),
            Direction::Min => va.total_cmp(&vb),
        };
        by_value.then_with(|| cmp_cost(&runs[a], &runs[b])).then_with(|| runs[a].run_id.cmp(&runs[b].run_id))
    });
    let best = order.first().copied();
    let recommended = best.map(|b| recommend(runs, &order, b, metric, direction, tolerance));
    Ranking { metric: metric.to_string(), direction, tolerance, order, missing, best, recommended }
}

fn cmp_cost(a: &RunSummary, b: &RunSummary) -> std::cmp::Ordering {
    let ((ta, pa), (tb, pb)) = (a.cost(), b.cost());
    ta.total_cmp(&tb).then_with(|| pa.total_cmp(&pb))
}

/// The cheapest run of `order` within the tolerance of `best` (ties keep the better metric).
fn recommend(
    runs: &[RunSummary],
    order: &[usize],
    best: usize,
    metric: &str,
    direction: Direction,
    tolerance: f64,
) -> Recommendation {
    let best_value = runs[best].metric(metric).unwrap_or(f64::NAN);
    let mut pick = best;
    for &i in order {
        let value = runs[i].metric(metric).unwrap_or(f64::NAN);
        if direction.within(value, best_value, tolerance) && cmp_cost(&runs[i], &runs[pick]).is_lt() {
            pick = i;
        }
    }
    let reason = recommendation_reason(&runs[pick], &runs[best], pick == best, metric, tolerance);
    Recommendation { index: pick, reason }
}

fn recommendation_reason(pick: &RunSummary, best: &RunSummary, is_best: bool, metric: &str, tolerance: f64) -> String {
    let value = |r: &RunSummary| r.metric(metric).map_or_else(|| "-".to_string(), |v| format!("{v:.4}"));
    if is_best {
        return format!(
            "the best run is also the cheapest of the runs within {tolerance} of its {metric} ({})",
            value(best)
        );
    }
    let mut savings = Vec::new();
    let ((tp, pp), (tb, pb)) = (pick.cost(), best.cost());
    if tp.is_finite() && tb.is_finite() {
        savings.push(format!("{} s of training instead of {} s", format_seconds(tp), format_seconds(tb)));
    }
    if pp.is_finite() && pb.is_finite() && pp != pb {
        savings.push(format!("{} parameters instead of {}", group_thousands(pp), group_thousands(pb)));
    }
    format!(
        "its {metric} {} is within {tolerance} of the best ({}, run {}) and it is cheaper: {}",
        value(pick),
        value(best),
        short_id(&best.run_id),
        savings.join(", ")
    )
}

/// Seconds with two decimals below 10 s, one above: `0.04`, `12.3`.
pub fn format_seconds(seconds: f64) -> String {
    if seconds < 10.0 { format!("{seconds:.2}") } else { format!("{seconds:.1}") }
}

/// The first 8 characters of a run id (enough to pass to `engine runs show`).
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// `669706` as `669,706`.
pub fn group_thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 { format!("-{out}") } else { out }
}

/// The runs cheaper than `run` (by training time, then parameters) whose `metric` is within
/// `tolerance` of `run`'s, cheapest first.
pub fn cheaper_within<'a>(
    run: &RunSummary,
    others: &'a [RunSummary],
    metric: &str,
    direction: Direction,
    tolerance: f64,
) -> Vec<&'a RunSummary> {
    let Some(value) = run.metric(metric) else {
        return Vec::new();
    };
    let mut out: Vec<&RunSummary> = others
        .iter()
        .filter(|o| o.run_id != run.run_id)
        .filter(|o| o.metric(metric).is_some_and(|v| direction.within(v, value, tolerance)))
        .filter(|o| cmp_cost(o, run).is_lt())
        .collect();
    out.sort_by(|a, b| cmp_cost(a, b));
    out
}

/// The runs without those a later rung of the same trial went on from: a successive-halving
/// search records each rung of a trial as a run (same parent, same name, a higher
/// [`crate::search::RUNG_METRIC`]), and only the furthest is the trial's model to compare.
pub fn furthest_rungs(runs: &[RunSummary]) -> Vec<RunSummary> {
    let rung = |r: &RunSummary| r.metric(crate::search::RUNG_METRIC);
    let continued = |run: &RunSummary| {
        let Some(reached) = rung(run) else { return false };
        runs.iter().any(|o| {
            o.parent_run_id.is_some()
                && o.parent_run_id == run.parent_run_id
                && o.run_name == run.run_name
                && rung(o).is_some_and(|r| r > reached)
        })
    };
    runs.iter().filter(|r| !continued(r)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn run(id: &str, acc: f64, seconds: f64, params: f64) -> RunSummary {
        let mut r = RunSummary { run_id: id.to_string(), run_name: format!("run-{id}"), ..Default::default() };
        r.metrics.insert("test_accuracy".into(), acc);
        r.metrics.insert("test_loss".into(), 1.0 - acc);
        r.metrics.insert("train_seconds".into(), seconds);
        r.metrics.insert("parameter_count".into(), params);
        r
    }

    #[test]
    fn a_trial_continued_by_a_later_rung_counts_once() {
        let in_search = |id: &str, name: &str, rung: f64| {
            let mut r = run(id, 0.8, 1.0, 1.0);
            (r.run_name, r.parent_run_id) = (name.to_string(), Some("p".to_string()));
            r.metrics.insert("rung".into(), rung);
            r
        };
        let mut elsewhere = in_search("e", "lr=0.1", 0.0);
        elsewhere.parent_run_id = Some("q".into());
        let runs = vec![
            in_search("a0", "lr=0.1", 0.0),
            in_search("a1", "lr=0.1", 1.0),
            in_search("b0", "lr=0.2", 0.0),
            elsewhere,
            run("plain", 0.9, 1.0, 1.0),
        ];
        let ids: Vec<String> = furthest_rungs(&runs).into_iter().map(|r| r.run_id).collect();
        assert_eq!(ids, ["a1", "b0", "e", "plain"]);
    }

    #[test]
    fn direction_defaults_by_name() {
        assert_eq!(Direction::for_metric("test_accuracy"), Direction::Max);
        assert_eq!(Direction::for_metric("macro_f1"), Direction::Max);
        assert_eq!(Direction::for_metric("test_loss"), Direction::Min);
        assert_eq!(Direction::for_metric("val_loss"), Direction::Min);
        assert_eq!(Direction::for_metric("train_seconds"), Direction::Min);
        assert_eq!(Direction::for_metric("inference_ms_batch_64"), Direction::Min);
    }

    #[test]
    fn ranks_by_the_metric_and_recommends_the_cheapest_within_tolerance() {
        let runs = vec![
            run("a", 0.880, 10.0, 1000.0),
            run("b", 0.884, 40.0, 9000.0), // best
            run("c", 0.881, 12.0, 2000.0), // within 0.005, cheaper than b, dearer than a
            run("d", 0.870, 1.0, 10.0),    // cheapest, but outside the tolerance
        ];
        let r = rank(&runs, "test_accuracy", Direction::Max, 0.005);
        assert_eq!(r.order, [1, 2, 0, 3]);
        assert_eq!(r.best, Some(1));
        let rec = r.recommended.unwrap();
        assert_eq!(rec.index, 0, "a is within 0.004 of the best and the cheapest such run");
        assert!(rec.reason.contains("10.0 s of training instead of 40.0 s"), "{}", rec.reason);
        assert!(rec.reason.contains("1,000 parameters instead of 9,000"), "{}", rec.reason);

        // With a tighter tolerance only c qualifies.
        let r = rank(&runs, "test_accuracy", Direction::Max, 0.003);
        assert_eq!(r.recommended.unwrap().index, 2);
        // With none, the best is recommended.
        let r = rank(&runs, "test_accuracy", Direction::Max, 0.0);
        assert_eq!(r.recommended.as_ref().unwrap().index, 1);
        assert!(r.recommended.unwrap().reason.contains("the best run is also the cheapest"));
    }

    #[test]
    fn loss_metrics_are_minimised() {
        let runs = vec![run("a", 0.80, 5.0, 10.0), run("b", 0.90, 50.0, 10.0), run("c", 0.85, 6.0, 10.0)];
        let r = rank(&runs, "test_loss", Direction::Min, 0.06);
        assert_eq!(r.order, [1, 2, 0]);
        assert_eq!(r.best, Some(1));
        assert_eq!(r.recommended.unwrap().index, 2, "c's loss 0.15 is within 0.06 of 0.10 and it is cheaper");
    }

    #[test]
    fn ties_on_time_go_to_fewer_parameters_and_missing_values_are_set_aside() {
        let mut runs = vec![run("a", 0.9, 10.0, 5000.0), run("b", 0.9, 10.0, 100.0), run("c", 0.0, 1.0, 1.0)];
        runs[2].metrics.remove("test_accuracy");
        runs.push(run("d", f64::NAN, 1.0, 1.0));
        let r = rank(&runs, "test_accuracy", Direction::Max, 0.005);
        assert_eq!(r.order, [1, 0]);
        assert_eq!(r.missing, [2, 3]);
        assert_eq!(r.recommended.unwrap().index, 1);
        assert!(rank(&[], "test_accuracy", Direction::Max, 0.0).best.is_none());
    }

    #[test]
    fn unknown_cost_is_never_preferred() {
        let mut runs = vec![run("a", 0.9, 10.0, 100.0), run("b", 0.899, 1.0, 1.0)];
        runs[1].metrics.remove("train_seconds");
        runs[1].metrics.remove("parameter_count");
        assert_eq!(rank(&runs, "test_accuracy", Direction::Max, 0.01).recommended.unwrap().index, 0);
    }

    #[test]
    fn cheaper_runs_within_tolerance_of_a_given_run() {
        let runs = vec![run("a", 0.880, 10.0, 1000.0), run("b", 0.884, 40.0, 9000.0), run("c", 0.870, 1.0, 10.0)];
        let found = cheaper_within(&runs[1], &runs, "test_accuracy", Direction::Max, 0.005);
        assert_eq!(found.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(), ["a"]);
        assert!(cheaper_within(&runs[0], &runs, "test_accuracy", Direction::Max, 0.005).is_empty());
    }

    #[test]
    fn thousands() {
        assert_eq!(group_thousands(669706.0), "669,706");
        assert_eq!(group_thousands(100.0), "100");
        assert_eq!(group_thousands(1000.0), "1,000");
        assert_eq!(short_id("0123456789abcdef"), "01234567");
        assert_eq!(short_id("ab"), "ab");
        assert_eq!((format_seconds(0.041), format_seconds(12.34)), ("0.04".to_string(), "12.3".to_string()));
    }
}
