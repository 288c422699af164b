//! Classification metrics computed from label slices, numerically matching scikit-learn.

use serde_json::{Map, Value, json};

use super::ReportError;

/// Checks that `y_true` and `y_pred` are a usable, non-empty pair of label vectors for
/// `n_classes` classes. Shared by every entry point so that all of them fail the same way.
pub(crate) fn validate_labels(y_true: &[u8], y_pred: &[u8], n_classes: usize) -> Result<(), ReportError> {
    if y_true.len() != y_pred.len() {
        return Err(ReportError::LengthMismatch { what: "y_pred", expected: y_true.len(), actual: y_pred.len() });
    }
    if y_true.is_empty() {
        return Err(ReportError::Empty { what: "labels" });
    }
    if n_classes == 0 {
        return Err(ReportError::Empty { what: "class list" });
    }
    for (which, labels) in [("y_true", y_true), ("y_pred", y_pred)] {
        if let Some(index) = labels.iter().position(|&l| usize::from(l) >= n_classes) {
            return Err(ReportError::LabelOutOfRange { which, index, label: labels[index], n_classes });
        }
    }
    Ok(())
}

/// Counts of (true class, predicted class) pairs: rows are the true class, columns the
/// predicted one, as in scikit-learn's `confusion_matrix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfusionMatrix {
    counts: Vec<Vec<u64>>,
    class_names: Vec<String>,
}

impl ConfusionMatrix {
    /// Counts every (true, predicted) pair. Classes are named by their indices until
    /// [`Self::with_class_names`] names them: ten classes are not always FashionMNIST's.
    pub fn new(y_true: &[u8], y_pred: &[u8], n_classes: usize) -> Result<Self, ReportError> {
        validate_labels(y_true, y_pred, n_classes)?;
        let mut counts = vec![vec![0u64; n_classes]; n_classes];
        for (&t, &p) in y_true.iter().zip(y_pred) {
            counts[usize::from(t)][usize::from(p)] += 1;
        }
        let class_names = (0..n_classes).map(|i| i.to_string()).collect();
        Ok(Self { counts, class_names })
    }

    /// Replaces the class names used by [`Self::to_json`]; there must be one per class.
    pub fn with_class_names(mut self, class_names: &[&str]) -> Result<Self, ReportError> {
        check_class_names(class_names, self.n_classes())?;
        self.class_names = class_names.iter().map(|s| s.to_string()).collect();
        Ok(self)
    }

    /// Number of classes (rows and columns).
    pub fn n_classes(&self) -> usize {
        self.counts.len()
    }

    /// The matrix, one row per true class, one column per predicted class.
    pub fn counts(&self) -> &[Vec<u64>] {
        &self.counts
    }

    /// Class names attached to the rows and columns.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Number of samples counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// The fraction of samples on the diagonal (a matrix counts at least one).
    pub fn accuracy(&self) -> f64 {
        let correct: u64 = self.counts.iter().enumerate().map(|(i, row)| row[i]).sum();
        correct as f64 / self.total() as f64
    }

    /// Each row divided by its sum (the recall view); rows of classes without samples are zero.
    pub fn normalized_rows(&self) -> Vec<Vec<f64>> {
        self.counts
            .iter()
            .map(|row| {
                let sum: u64 = row.iter().sum();
                row.iter().map(|&c| if sum == 0 { 0.0 } else { c as f64 / sum as f64 }).collect()
            })
            .collect()
    }

    /// `{"class_names": [...], "rows": "true label", "columns": "predicted label", "counts": [[...]]}`.
    pub fn to_json(&self) -> Value {
        json!({
            "class_names": self.class_names,
            "rows": "true label",
            "columns": "predicted label",
            "counts": self.counts,
        })
    }
}

fn check_class_names(class_names: &[&str], n_classes: usize) -> Result<(), ReportError> {
    if class_names.len() != n_classes {
        return Err(ReportError::LengthMismatch {
            what: "class_names",
            expected: n_classes,
            actual: class_names.len(),
        });
    }
    Ok(())
}

/// One averaged row of the report (`macro avg` or `weighted avg`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AverageRow {
    /// Averaged precision.
    pub precision: f64,
    /// Averaged recall.
    pub recall: f64,
    /// Averaged F1 score.
    pub f1: f64,
    /// Total number of samples.
    pub support: u64,
}

/// Per-class precision, recall, F1 and support plus accuracy and averages, with the same
/// numbers, key order and text layout as scikit-learn's `classification_report`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationReport {
    class_names: Vec<String>,
    precision: Vec<f64>,
    recall: Vec<f64>,
    f1: Vec<f64>,
    support: Vec<u64>,
    accuracy: f64,
    macro_avg: AverageRow,
    weighted_avg: AverageRow,
}

/// `num / den`, or 0.0 where scikit-learn's default `zero_division` would warn and use 0.
fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 { 0.0 } else { num as f64 / den as f64 }
}

impl ClassificationReport {
    /// Computes the report for labels `0..class_names.len()`, like
    /// `classification_report(y_true, y_pred, labels=range(n), target_names=class_names)`.
    pub fn new(y_true: &[u8], y_pred: &[u8], class_names: &[&str]) -> Result<Self, ReportError> {
        let n = class_names.len();
        let cm = ConfusionMatrix::new(y_true, y_pred, n)?;
        let counts = cm.counts();
        let mut precision = Vec::with_capacity(n);
        let mut recall = Vec::with_capacity(n);
        let mut f1 = Vec::with_capacity(n);
        let mut support = Vec::with_capacity(n);
        for k in 0..n {
            let tp = counts[k][k];
            let true_k: u64 = counts[k].iter().sum();
            let pred_k: u64 = counts.iter().map(|row| row[k]).sum();
            precision.push(ratio(tp, pred_k));
            recall.push(ratio(tp, true_k));
            // sklearn's F-beta form 2tp / (2tp + fp + fn) = 2tp / (predicted + true): it is 0
            // (not NaN) when the class is neither present nor predicted, as sklearn reports.
            f1.push(ratio(2 * tp, pred_k + true_k));
            support.push(true_k);
        }
        let total: u64 = support.iter().sum();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / n as f64;
        let weighted = |v: &[f64]| v.iter().zip(&support).map(|(x, &s)| x * s as f64).sum::<f64>() / total as f64;
        let macro_avg =
            AverageRow { precision: mean(&precision), recall: mean(&recall), f1: mean(&f1), support: total };
        let weighted_avg = AverageRow {
            precision: weighted(&precision),
            recall: weighted(&recall),
            f1: weighted(&f1),
            support: total,
        };
        Ok(Self {
            class_names: class_names.iter().map(|s| s.to_string()).collect(),
            precision,
            recall,
            f1,
            support,
            accuracy: cm.accuracy(),
            macro_avg,
            weighted_avg,
        })
    }

    /// Fraction of predictions that were right.
    pub fn accuracy(&self) -> f64 {
        self.accuracy
    }

    /// Unweighted mean of the per-class F1 scores.
    pub fn macro_f1(&self) -> f64 {
        self.macro_avg.f1
    }

    /// Mean of the per-class F1 scores weighted by support.
    pub fn weighted_f1(&self) -> f64 {
        self.weighted_avg.f1
    }

    /// Per-class F1 scores, in class order.
    pub fn f1_scores(&self) -> &[f64] {
        &self.f1
    }

    /// Per-class precision, in class order.
    pub fn precision(&self) -> &[f64] {
        &self.precision
    }

    /// Per-class recall, in class order.
    pub fn recall(&self) -> &[f64] {
        &self.recall
    }

    /// Per-class number of true samples, in class order.
    pub fn support(&self) -> &[u64] {
        &self.support
    }

    /// Class names, in class order.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// The `macro avg` row.
    pub fn macro_avg(&self) -> AverageRow {
        self.macro_avg
    }

    /// The `weighted avg` row.
    pub fn weighted_avg(&self) -> AverageRow {
        self.weighted_avg
    }

    /// The report as scikit-learn's `output_dict=True` gives it, keys in the same order:
    /// one object per class, then `accuracy`, `macro avg`, `weighted avg`; supports are floats.
    pub fn to_json(&self) -> Value {
        let row =
            |p: f64, r: f64, f: f64, s: u64| json!({"precision": p, "recall": r, "f1-score": f, "support": s as f64});
        let mut map = Map::new();
        for k in 0..self.class_names.len() {
            map.insert(
                self.class_names[k].clone(),
                row(self.precision[k], self.recall[k], self.f1[k], self.support[k]),
            );
        }
        map.insert("accuracy".into(), json!(self.accuracy));
        for (key, avg) in [("macro avg", self.macro_avg), ("weighted avg", self.weighted_avg)] {
            map.insert(key.into(), row(avg.precision, avg.recall, avg.f1, avg.support));
        }
        Value::Object(map)
    }

    /// The printed report, character for character as scikit-learn prints it with `digits=4`.
    pub fn render_text(&self) -> String {
        // Mirrors sklearn's format strings: names right-aligned to the longest name (at least
        // "weighted avg"), then 9-wide columns each preceded by a space.
        let width = self
            .class_names
            .iter()
            .map(|s| s.chars().count())
            .chain(std::iter::once("weighted avg".len()))
            .max()
            .unwrap_or(0);
        let mut out = format!("{:>width$} ", "");
        for header in ["precision", "recall", "f1-score", "support"] {
            out += &format!(" {header:>9}");
        }
        out += "\n\n";
        let row =
            |name: &str, p: f64, r: f64, f: f64, s: u64| format!("{name:>width$}  {p:>9.4} {r:>9.4} {f:>9.4} {s:>9}\n");
        for k in 0..self.class_names.len() {
            out += &row(&self.class_names[k], self.precision[k], self.recall[k], self.f1[k], self.support[k]);
        }
        out += "\n";
        let total = self.macro_avg.support;
        out += &format!("{:>width$}  {:>9} {:>9} {:>9.4} {:>9}\n", "accuracy", "", "", self.accuracy, total);
        for (name, avg) in [("macro avg", self.macro_avg), ("weighted avg", self.weighted_avg)] {
            out += &row(name, avg.precision, avg.recall, avg.f1, avg.support);
        }
        out
    }
}
