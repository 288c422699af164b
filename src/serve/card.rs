//! The model card the page shows: what the served model is (name, version, run, input, classes)
//! and how well it did on its test set (accuracy, per-class F1, confusion matrix), read from the
//! reports its training run wrote. Reports that cannot be found or read leave those fields
//! empty: a card never fails.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use super::ModelInfo;
use crate::tracking::LocalStore;

/// Where a model's reports may be: a directory beside the served model, and the local store.
#[derive(Debug, Clone, Default)]
pub struct ReportSources {
    /// The directory that holds the model directory (training's output directory).
    pub model_parent: Option<PathBuf>,
    /// The local store, whose runs keep their reports as artifacts.
    pub local_store: Option<PathBuf>,
}

/// The card, as `GET /model-card` answers it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelCard {
    pub model_uri: String,
    pub name: Option<String>,
    pub version: Option<String>,
    pub run_id: Option<String>,
    pub format: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub classes: Vec<String>,
    /// Where the metrics below were read, or `None` when no report was found.
    pub reports_from: Option<String>,
    pub test_accuracy: Option<f64>,
    /// Per class, in class order.
    pub f1: Option<Vec<f64>>,
    /// `[true][predicted]` counts.
    pub confusion_matrix: Option<Vec<Vec<u64>>>,
}

impl ModelCard {
    /// The card of `info`, with the metrics of the first report directory found for it.
    pub fn gather(info: &ModelInfo, sources: &ReportSources) -> ModelCard {
        let contract = &info.contract;
        let mut card = ModelCard {
            model_uri: info.model_uri.clone(),
            name: info.name.clone(),
            version: info.version.clone(),
            run_id: info.run_id.clone(),
            format: info.format.clone(),
            channels: contract.channels,
            height: contract.height,
            width: contract.width,
            classes: contract.class_names.clone(),
            reports_from: None,
            test_accuracy: None,
            f1: None,
            confusion_matrix: None,
        };
        for dir in report_dirs(info, sources) {
            if card.read_reports(&dir) {
                card.reports_from = Some(dir.display().to_string());
                break;
            }
        }
        card
    }

    /// Fills the metrics from `dir`'s reports; whether any was there.
    fn read_reports(&mut self, dir: &Path) -> bool {
        let read = |name: &str| -> Option<Value> { serde_json::from_slice(&std::fs::read(dir.join(name)).ok()?).ok() };
        let (report, confusion) = (read("classification_report.json"), read("confusion_matrix.json"));
        if report.is_none() && confusion.is_none() {
            return false;
        }
        if let Some(report) = report {
            self.test_accuracy =
                report["accuracy"].as_f64().or_else(|| read("metrics.json")?["test_accuracy"].as_f64());
            let f1: Option<Vec<f64>> = self.classes.iter().map(|c| report[c.as_str()]["f1-score"].as_f64()).collect();
            self.f1 = f1;
        }
        let counts = confusion.and_then(|c| serde_json::from_value::<Vec<Vec<u64>>>(c["counts"].clone()).ok());
        let n = self.classes.len();
        self.confusion_matrix = counts.filter(|rows| rows.len() == n && rows.iter().all(|r| r.len() == n));
        true
    }
}

/// The directories that may hold the reports of `info`'s run, nearest first: training's output
/// directory when it records the same run, then the run's artifacts in the local store.
fn report_dirs(info: &ModelInfo, sources: &ReportSources) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(parent) = &sources.model_parent {
        let metrics: Option<Value> =
            std::fs::read(parent.join("metrics.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let recorded = metrics.as_ref().and_then(|m| m["run_id"].as_str());
        if recorded == info.run_id.as_deref() || (recorded.is_none() && info.run_id.is_none()) {
            dirs.push(parent.clone());
        }
    }
    // A run id from a model file is not trusted as a path: only a plain id is looked up.
    let plain = |id: &&String| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if let (Some(root), Some(run_id)) = (&sources.local_store, info.run_id.as_ref().filter(plain))
        && root.is_dir()
        && let Ok(run_dir) = LocalStore::open(root).and_then(|store| store.find_run_dir(run_id))
    {
        dirs.push(run_dir.join("artifacts"));
    }
    dirs
}
