//! The evaluation checklist a practitioner walks through before trusting a run, answered with
//! the run's own numbers: better than chance and than the business baseline? best of its
//! experiment? overfitting? which class is weak, what gets confused, and is there a cheaper run
//! that does as well?

use std::fmt::Write as _;

use serde_json::Value;

use super::curves::{Overfitting, detect_overfitting, lowest_point};
use super::rungs::{SearchRungs, search_rungs};
use super::{Direction, RunSummary, cheaper_within, format_seconds, group_thousands, keys, rank, short_id};

/// One class's row of a classification report.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClassScore {
    pub name: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: f64,
}

/// The per-class rows of a scikit-learn style `classification_report.json`
/// (`{"<class>": {"precision", "recall", "f1-score", "support"}, "accuracy", "macro avg", ...}`).
pub fn class_scores_from_json(report: &Value) -> Result<Vec<ClassScore>, String> {
    let object = report.as_object().ok_or("the classification report is not a JSON object")?;
    let mut scores = Vec::new();
    for (name, row) in object {
        if matches!(name.as_str(), "accuracy" | "macro avg" | "weighted avg" | "micro avg") {
            continue;
        }
        let field = |key: &str| {
            row.get(key).and_then(Value::as_f64).ok_or_else(|| format!("class {name:?} has no numeric {key:?}"))
        };
        scores.push(ClassScore {
            name: name.clone(),
            precision: field("precision")?,
            recall: field("recall")?,
            f1: field("f1-score")?,
            support: field("support")?,
        });
    }
    if scores.is_empty() {
        return Err("the classification report has no class rows".into());
    }
    Ok(scores)
}

/// The class with the lowest F1 (the first such on ties).
pub fn weakest_class(scores: &[ClassScore]) -> Option<&ClassScore> {
    scores.iter().fold(None, |weakest: Option<&ClassScore>, s| match weakest {
        Some(w) if w.f1 <= s.f1 => Some(w),
        _ => Some(s),
    })
}

/// A confusion matrix: `counts[true][predicted]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfusionCounts {
    pub class_names: Vec<String>,
    pub counts: Vec<Vec<u64>>,
}

/// Reads `confusion_matrix.json` (`{"class_names": [...], "counts": [[...]]}`, rows = true class).
pub fn confusion_from_json(value: &Value) -> Result<ConfusionCounts, String> {
    let names = value.get("class_names").and_then(Value::as_array).ok_or("the confusion matrix has no class_names")?;
    let class_names: Vec<String> = names
        .iter()
        .map(|n| n.as_str().map(String::from).ok_or("a class name is not a string"))
        .collect::<Result<_, _>>()?;
    let rows = value.get("counts").and_then(Value::as_array).ok_or("the confusion matrix has no counts")?;
    let counts: Vec<Vec<u64>> = rows
        .iter()
        .map(|row| {
            let cells = row.as_array().ok_or("a row of counts is not an array")?;
            cells.iter().map(|c| c.as_u64().ok_or("a count is not a non-negative integer")).collect()
        })
        .collect::<Result<_, _>>()?;
    let n = class_names.len();
    if n == 0 || counts.len() != n || counts.iter().any(|r| r.len() != n) {
        return Err(format!("the confusion matrix is not {n} x {n} like its class names"));
    }
    Ok(ConfusionCounts { class_names, counts })
}

/// One off-diagonal cell: how often `true_class` was predicted as `predicted`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Confusion {
    pub true_class: String,
    pub predicted: String,
    pub count: u64,
}

impl std::fmt::Display for Confusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} predicted as {}: {}", self.true_class, self.predicted, self.count)
    }
}

/// The `n` largest non-zero off-diagonal cells, largest first (ties in row, then column order).
pub fn top_confusions(matrix: &ConfusionCounts, n: usize) -> Vec<Confusion> {
    let mut cells: Vec<(u64, usize, usize)> = Vec::new();
    for (t, row) in matrix.counts.iter().enumerate() {
        for (p, &count) in row.iter().enumerate() {
            if t != p && count > 0 {
                cells.push((count, t, p));
            }
        }
    }
    cells.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    cells
        .into_iter()
        .take(n)
        .map(|(count, t, p)| Confusion {
            true_class: matrix.class_names[t].clone(),
            predicted: matrix.class_names[p].clone(),
            count,
        })
        .collect()
}

/// How an answer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The answer is what one hopes for.
    Good,
    /// Something to look at.
    Concern,
    /// A number to know, neither good nor bad.
    Info,
    /// The run lacks what the question needs.
    Unknown,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Good => "ok",
            Verdict::Concern => "concern",
            Verdict::Info => "info",
            Verdict::Unknown => "unknown",
        }
    }
}

/// One question of the checklist with its answer.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CheckItem {
    pub question: String,
    pub answer: String,
    pub verdict: Verdict,
}

/// What the checklist is computed from.
#[derive(Clone, Copy, Debug)]
pub struct AnalysisInputs<'a> {
    pub run: &'a RunSummary,
    /// The runs of the run's experiment (the run itself may be among them); of a halving trial's
    /// runs, only its furthest rung counts.
    pub experiment: &'a [RunSummary],
    pub class_scores: Option<&'a [ClassScore]>,
    pub confusion: Option<&'a ConfusionCounts>,
    /// The accuracy the business needs.
    pub baseline: f64,
    /// Accuracy within which a cheaper run counts as just as good.
    pub tolerance: f64,
    /// Rising validation-loss epochs that count as overfitting.
    pub overfit_epochs: usize,
}

/// The answered checklist.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Analysis {
    pub run_id: String,
    pub run_name: String,
    pub items: Vec<CheckItem>,
    pub weakest_class: Option<ClassScore>,
    pub top_confusions: Vec<Confusion>,
    pub overfitting: Option<Overfitting>,
    /// `(epoch, value)` of the lowest validation loss.
    pub lowest_val_loss: Option<(i64, f64)>,
    /// Run ids of cheaper runs within the tolerance, cheapest first.
    pub cheaper_runs: Vec<String>,
    /// The successive-halving search the run is the parent or a trial of.
    pub search: Option<SearchRungs>,
}

/// Per-class F1 spread (max - min) up to which performance counts as balanced.
pub const BALANCED_F1_SPREAD: f64 = 0.10;

/// Answers the checklist for `inputs.run`.
pub fn analyze(inputs: &AnalysisInputs) -> Analysis {
    let run = inputs.run;
    // A halving trial's earlier rungs are not rivals of its last.
    let experiment = with_run(&super::furthest_rungs(inputs.experiment), run);
    let overfitting = detect_overfitting(&run.train_loss, &run.val_loss, inputs.overfit_epochs);
    let lowest_val_loss = lowest_point(&run.val_loss);
    let weakest = inputs.class_scores.and_then(weakest_class).cloned();
    let confusions = inputs.confusion.map(|c| top_confusions(c, 3)).unwrap_or_default();
    let cheaper: Vec<String> = cheaper_within(run, &experiment, keys::TEST_ACCURACY, Direction::Max, inputs.tolerance)
        .iter()
        .map(|r| r.run_id.clone())
        .collect();
    let n_classes = inputs.class_scores.map(<[ClassScore]>::len).or(inputs.confusion.map(|c| c.class_names.len()));
    let items = vec![
        beats_random(run, n_classes.unwrap_or(10)),
        beats_baseline(run, inputs.baseline),
        best_in_experiment(run, &experiment, keys::TEST_ACCURACY),
        best_in_experiment(run, &experiment, keys::TEST_LOSS),
        loss_gap(run),
        turned_upward(run, overfitting.as_ref(), lowest_val_loss, inputs.overfit_epochs),
        balance(inputs.class_scores, weakest.as_ref()),
        confusion_item(&confusions),
        cost_item(run, &experiment, inputs.tolerance),
    ];
    Analysis {
        run_id: run.run_id.clone(),
        run_name: run.run_name.clone(),
        items,
        weakest_class: weakest,
        top_confusions: confusions,
        overfitting,
        lowest_val_loss,
        cheaper_runs: cheaper,
        search: search_rungs(run, inputs.experiment),
    }
}

/// The experiment's runs with `run` among them exactly once (as given).
fn with_run(experiment: &[RunSummary], run: &RunSummary) -> Vec<RunSummary> {
    let mut all: Vec<RunSummary> = experiment.iter().filter(|r| r.run_id != run.run_id).cloned().collect();
    all.push(run.clone());
    all
}

fn item(question: impl Into<String>, answer: impl Into<String>, verdict: Verdict) -> CheckItem {
    CheckItem { question: question.into(), answer: answer.into(), verdict }
}

fn yes_no(good: bool) -> (&'static str, Verdict) {
    if good { ("Yes", Verdict::Good) } else { ("No", Verdict::Concern) }
}

fn beats_random(run: &RunSummary, n_classes: usize) -> CheckItem {
    let chance = 1.0 / n_classes.max(1) as f64;
    let question = format!("Does test accuracy beat random guessing ({:.0}%)?", chance * 100.0);
    match run.metric(keys::TEST_ACCURACY) {
        Some(acc) => {
            let (word, verdict) = yes_no(acc > chance);
            item(question, format!("{word}: {} against {} by chance.", pct(acc), pct(chance)), verdict)
        }
        None => item(question, "Unknown: the run has no test_accuracy.", Verdict::Unknown),
    }
}

fn beats_baseline(run: &RunSummary, baseline: f64) -> CheckItem {
    let question = format!("Does it beat the business baseline ({})?", pct(baseline));
    match run.metric(keys::TEST_ACCURACY) {
        Some(acc) => {
            let (word, verdict) = yes_no(acc >= baseline);
            let margin = (acc - baseline) * 100.0;
            item(question, format!("{word}: {} ({margin:+.2} points).", pct(acc)), verdict)
        }
        None => item(question, "Unknown: the run has no test_accuracy.", Verdict::Unknown),
    }
}

/// "Is it the best run of its experiment by `metric`" (accuracy: highest; loss: lowest).
fn best_in_experiment(run: &RunSummary, experiment: &[RunSummary], metric: &str) -> CheckItem {
    let direction = Direction::for_metric(metric);
    let question = match direction {
        Direction::Max => format!("Is it the best run in its experiment by {metric}?"),
        Direction::Min => format!("Is its {metric} the lowest in its experiment?"),
    };
    let Some(value) = run.metric(metric) else {
        return item(question, format!("Unknown: the run has no {metric}."), Verdict::Unknown);
    };
    let ranking = rank(experiment, metric, direction, 0.0);
    let position = ranking.order.iter().position(|&i| experiment[i].run_id == run.run_id).unwrap_or(0) + 1;
    let total = ranking.order.len();
    let best = ranking.best.map(|b| &experiment[b]);
    match best {
        Some(b) if b.run_id != run.run_id && direction.better(b.metric(metric).unwrap_or(value), value) => item(
            question,
            format!(
                "No: {} of {total} runs with {metric} ({value:.4}); the best is {} ({}) with {:.4}.",
                ordinal(position),
                short_id(&b.run_id),
                b.run_name,
                b.metric(metric).unwrap_or(f64::NAN)
            ),
            Verdict::Concern,
        ),
        _ => item(question, format!("Yes: {value:.4}, best of {total} runs with {metric}."), Verdict::Good),
    }
}

/// Last epoch's training and validation loss (from the curves, else the final metrics).
fn last_losses(run: &RunSummary) -> Option<(i64, f64, f64)> {
    let (epoch, val) = *run.val_loss.last()?;
    let train = run.train_loss.iter().find(|(e, _)| *e == epoch).map(|(_, v)| *v)?;
    Some((epoch, train, val))
}

fn loss_gap(run: &RunSummary) -> CheckItem {
    let question = "How far apart are validation and training loss?";
    match last_losses(run) {
        Some((epoch, train, val)) => {
            let gap = val - train;
            let relative = if train > 0.0 {
                format!(" ({:+.0}% of the training loss)", gap / train * 100.0)
            } else {
                String::new()
            };
            item(
                question,
                format!("At epoch {epoch}: validation {val:.4}, training {train:.4}, gap {gap:+.4}{relative}."),
                Verdict::Info,
            )
        }
        None => item(
            question,
            "Unknown: the run has no validation loss curve (trained with --val-split 0?).",
            Verdict::Unknown,
        ),
    }
}

fn turned_upward(
    run: &RunSummary,
    overfitting: Option<&Overfitting>,
    lowest: Option<(i64, f64)>,
    k: usize,
) -> CheckItem {
    let question = "Did validation loss turn upward (overfitting)?";
    let early = early_stopping_note(run);
    if let Some(o) = overfitting {
        return item(
            question,
            format!("Yes, from epoch {}: {}.{early}", o.best_epoch + 1, o.describe()),
            Verdict::Concern,
        );
    }
    let (Some((best_epoch, best)), Some(&(last_epoch, last))) = (lowest, run.val_loss.last()) else {
        return item(question, "Unknown: the run has no validation loss curve.", Verdict::Unknown);
    };
    if best_epoch == last_epoch {
        return item(
            question,
            format!("No: validation loss was lowest at the last epoch ({last_epoch}).{early}"),
            Verdict::Good,
        );
    }
    item(
        question,
        format!(
            "Not for {k} epochs in a row: validation loss was lowest at epoch {best_epoch} ({best:.4}) and ended at {last:.4} (epoch {last_epoch}).{early}"
        ),
        Verdict::Info,
    )
}

fn early_stopping_note(run: &RunSummary) -> String {
    match (run.metric(keys::BEST_EPOCH), run.metric(keys::STOPPED_EPOCH)) {
        (Some(best), Some(stopped)) => {
            format!(" Early stopping ended training at epoch {stopped:.0} and kept the weights of epoch {best:.0}.")
        }
        _ => String::new(),
    }
}

fn balance(scores: Option<&[ClassScore]>, weakest: Option<&ClassScore>) -> CheckItem {
    let question = "Which class is weakest, and is performance balanced across classes?";
    let (Some(scores), Some(weakest)) = (scores, weakest) else {
        return item(question, "Unknown: no classification_report.json for this run.", Verdict::Unknown);
    };
    let strongest = scores.iter().fold(weakest, |s, c| if c.f1 > s.f1 { c } else { s });
    let spread = strongest.f1 - weakest.f1;
    let balanced = spread <= BALANCED_F1_SPREAD;
    let answer = format!(
        "{} has the lowest F1 ({:.4}; precision {:.4}, recall {:.4}); the highest is {} ({:.4}). {}: the F1 spread is {spread:.4} ({} {BALANCED_F1_SPREAD}).",
        weakest.name,
        weakest.f1,
        weakest.precision,
        weakest.recall,
        strongest.name,
        strongest.f1,
        if balanced { "Balanced" } else { "Not balanced" },
        if balanced { "within" } else { "over" }
    );
    item(question, answer, if balanced { Verdict::Good } else { Verdict::Concern })
}

fn confusion_item(confusions: &[Confusion]) -> CheckItem {
    let question = "Which classes are confused most?";
    if confusions.is_empty() {
        return item(question, "Unknown: no confusion_matrix.json for this run (or no mistakes).", Verdict::Unknown);
    }
    let list: Vec<String> = confusions.iter().map(Confusion::to_string).collect();
    item(question, list.join("; ") + ".", Verdict::Info)
}

fn cost_item(run: &RunSummary, experiment: &[RunSummary], tolerance: f64) -> CheckItem {
    let question = format!("Is a cheaper run in the experiment within {tolerance} of its test accuracy?");
    if run.metric(keys::TEST_ACCURACY).is_none() {
        return item(question, "Unknown: the run has no test_accuracy.", Verdict::Unknown);
    }
    let cheaper = cheaper_within(run, experiment, keys::TEST_ACCURACY, Direction::Max, tolerance);
    let Some(c) = cheaper.first() else {
        return item(
            question,
            format!("No: none is cheaper at comparable accuracy ({}).", cost_text(run)),
            Verdict::Good,
        );
    };
    item(
        question,
        format!(
            "Yes: {} ({}) reaches {:.4} with {} against this run's {}{}.",
            short_id(&c.run_id),
            c.run_name,
            c.metric(keys::TEST_ACCURACY).unwrap_or(f64::NAN),
            cost_text(c),
            cost_text(run),
            if cheaper.len() > 1 {
                format!("; {} more cheaper runs qualify", cheaper.len() - 1)
            } else {
                String::new()
            }
        ),
        Verdict::Concern,
    )
}

fn cost_text(run: &RunSummary) -> String {
    let (seconds, params) = run.cost();
    let mut parts = Vec::new();
    if seconds.is_finite() {
        parts.push(format!("{} s of training", format_seconds(seconds)));
    }
    if params.is_finite() {
        parts.push(format!("{} parameters", group_thousands(params)));
    }
    if parts.is_empty() { "cost unknown".into() } else { parts.join(", ") }
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

impl Analysis {
    /// The checklist as the `analysis.md` a person reads.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Evaluation checklist: {} ({})\n", self.run_name, self.run_id);
        if let Some(search) = &self.search {
            let _ = writeln!(out, "{}\n", search.describe());
        }
        let _ = writeln!(out, "| # | question | verdict |\n| --- | --- | --- |");
        for (i, it) in self.items.iter().enumerate() {
            let _ = writeln!(out, "| {} | {} | {} |", i + 1, it.question, it.verdict.label());
        }
        for (i, it) in self.items.iter().enumerate() {
            let _ = writeln!(out, "\n## {}. {}\n\n{}", i + 1, it.question, it.answer);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores() -> Vec<ClassScore> {
        [("A", 0.9), ("B", 0.6), ("C", 0.95), ("D", 0.6)]
            .into_iter()
            .map(|(n, f1)| ClassScore { name: n.into(), precision: f1, recall: f1, f1, support: 10.0 })
            .collect()
    }

    #[test]
    fn weakest_class_is_the_first_lowest_f1() {
        assert_eq!(weakest_class(&scores()).unwrap().name, "B");
        assert!(weakest_class(&[]).is_none());
    }

    #[test]
    fn top_confusions_are_the_largest_off_diagonal_cells() {
        let m = ConfusionCounts {
            class_names: vec!["T-shirt/top".into(), "Trouser".into(), "Shirt".into()],
            counts: vec![vec![900, 5, 80], vec![3, 990, 7], vec![123, 7, 700]],
        };
        let top = top_confusions(&m, 3);
        let text: Vec<String> = top.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "Shirt predicted as T-shirt/top: 123",
                "T-shirt/top predicted as Shirt: 80",
                "Trouser predicted as Shirt: 7"
            ]
        );
    }

    #[test]
    fn reads_the_report_files() {
        let report = serde_json::json!({
            "A": {"precision": 1.0, "recall": 0.5, "f1-score": 0.6667, "support": 2.0},
            "accuracy": 0.5,
            "macro avg": {"precision": 1.0, "recall": 0.5, "f1-score": 0.6667, "support": 2.0}
        });
        let s = class_scores_from_json(&report).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].f1, 0.6667);
        assert!(class_scores_from_json(&serde_json::json!([])).is_err());
        assert!(class_scores_from_json(&serde_json::json!({"A": {"precision": 1}})).is_err());
        let cm = serde_json::json!({"class_names": ["a", "b"], "counts": [[1, 2], [3, 4]]});
        assert_eq!(confusion_from_json(&cm).unwrap().counts[1][0], 3);
        assert!(confusion_from_json(&serde_json::json!({"class_names": ["a"], "counts": [[1, 2]]})).is_err());
        assert!(confusion_from_json(&serde_json::json!({"class_names": ["a"], "counts": [[-1]]})).is_err());
    }

    #[test]
    fn ordinals() {
        assert_eq!(
            [1, 2, 3, 4, 11, 12, 13, 21, 22].map(ordinal),
            ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd"]
        );
    }
}
