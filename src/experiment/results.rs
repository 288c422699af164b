//! What a finished run measured: its cost, its summary (`metrics.json`), its final metrics, its
//! per-epoch metrics, and its report files.

use std::path::{Path, PathBuf};

use super::Bench;
use crate::cost;
use crate::data::{self, Normalization};
use crate::nn::Network;
use crate::report::{self, EpochPoint, EvaluationInputs, ReportError};
use crate::tracking::{self, Metric};
use crate::train::{self, TrainConfig};

/// What the trained model costs to run, measured after training.
pub(super) struct Cost {
    inference_ms_batch_64: f64,
    inference_ms_batch_1000: f64,
    peak_rss_mb: Option<f64>,
}

impl Cost {
    pub(super) fn measure(model: &Network, bench: &Bench, normalize: Normalization) -> crate::Result<Cost> {
        let (test, inputs) = (&bench.data.test, (&bench.data.contract, normalize));
        let inference_ms_batch_64 = cost::inference_ms_per_batch(model, test, inputs, 64, &bench.device)?;
        let inference_ms_batch_1000 = cost::inference_ms_per_batch(model, test, inputs, 1000, &bench.device)?;
        Ok(Cost { inference_ms_batch_64, inference_ms_batch_1000, peak_rss_mb: cost::peak_rss_mb() })
    }
}

/// What a finished run measured, for its summary file and its final metrics.
pub(super) struct RunResults<'a> {
    pub(super) trained: &'a train::Trained,
    pub(super) test: &'a train::Evaluation,
    pub(super) report: &'a report::ClassificationReport,
    pub(super) cost: &'a Cost,
    pub(super) model_id: &'a str,
}

impl RunResults<'_> {
    /// `metrics.json`, also the `--json` line.
    pub(super) fn summary(
        &self,
        run_id: &str,
        output_dir: &Path,
        device: &str,
        config: &TrainConfig,
    ) -> serde_json::Value {
        let (trained, cost) = (self.trained, self.cost);
        let mut summary = serde_json::json!({
            "run_id": run_id,
            "output_dir": output_dir,
            "device": device,
            "test_accuracy": self.test.accuracy,
            "test_loss": self.test.loss,
            "macro_f1": self.report.macro_f1(),
            "model_id": self.model_id,
            "train_seconds": trained.train_seconds,
            "train_examples": trained.train_examples,
            "val_examples": trained.val_examples,
            "parameters": trained.model.parameter_count(),
            "config": config,
            "epochs": trained.history,
            "inference_ms_batch_64": cost.inference_ms_batch_64,
            "inference_ms_batch_1000": cost.inference_ms_batch_1000,
            "peak_rss_mb": cost.peak_rss_mb,
        });
        if let (Some(best), Some(stopped)) = (trained.best_epoch, trained.stopped_epoch) {
            summary["best_epoch"] = best.into();
            summary["stopped_epoch"] = stopped.into();
        }
        summary
    }

    /// Summaries are one value each, logged at step 0 (per-epoch series use the epoch), and
    /// describe the model: its page in MLflow lists them; the quality ones name the test set.
    pub(super) fn metrics(&self, test_set: &tracking::Dataset) -> Vec<Metric> {
        let on_test = |key: &str, value: f64| Metric::new(key, value, 0).of_model(self.model_id, Some(test_set));
        let of_model = |key: &str, value: f64| Metric::new(key, value, 0).of_model(self.model_id, None);
        let (trained, cost) = (self.trained, self.cost);
        let mut metrics = vec![
            on_test("test_loss", self.test.loss),
            on_test("test_accuracy", self.test.accuracy),
            on_test("macro_f1", self.report.macro_f1()),
            on_test("weighted_f1", self.report.weighted_f1()),
            of_model("train_seconds", trained.train_seconds),
            of_model("parameter_count", trained.model.parameter_count() as f64),
            of_model("inference_ms_batch_64", cost.inference_ms_batch_64),
            of_model("inference_ms_batch_1000", cost.inference_ms_batch_1000),
        ];
        metrics.extend(cost.peak_rss_mb.map(|mb| of_model("peak_rss_mb", mb)));
        metrics.extend(trained.best_epoch.map(|e| of_model("best_epoch", e as f64)));
        metrics.extend(trained.stopped_epoch.map(|e| of_model("stopped_epoch", e as f64)));
        metrics
    }
}

/// An epoch's metrics, at the epoch as their step.
pub(super) fn epoch_metrics(m: &train::EpochMetrics) -> Vec<Metric> {
    let step = m.epoch as i64;
    let mut metrics = vec![
        Metric::new("train_loss", m.train_loss, step),
        Metric::new("epoch_seconds", m.seconds, step),
        Metric::new("samples_per_second", m.samples_per_second, step),
        // Not `learning_rate`: that is the configured peak, a param.
        Metric::new("lr", m.learning_rate, step),
    ];
    metrics.extend(m.val_loss.map(|v| Metric::new("val_loss", v, step)));
    metrics.extend(m.val_accuracy.map(|v| Metric::new("val_accuracy", v, step)));
    metrics
}

/// Writes the evaluation reports and the training curves; returns the files written.
pub(super) fn write_reports(
    dir: &Path,
    data: &data::DataSplit,
    test: &train::Evaluation,
    history: &[train::EpochMetrics],
) -> Result<Vec<PathBuf>, ReportError> {
    let inputs = EvaluationInputs {
        y_true: &test.labels,
        y_pred: &test.predictions,
        prob_of_pred: &test.prob_of_pred,
        images: &data.test.pixels,
        shape: train::image_shape(&data.contract),
        class_names: &data.contract.class_names,
    };
    let mut written = report::write_evaluation_reports(dir, &inputs)?;
    let points: Vec<EpochPoint> = history
        .iter()
        .map(|m| EpochPoint {
            epoch: m.epoch,
            train_loss: m.train_loss,
            val_loss: m.val_loss.unwrap_or(f64::NAN),
            val_accuracy: m.val_accuracy.unwrap_or(f64::NAN),
        })
        .collect();
    let curves = dir.join("training_curves.png");
    report::training_curves_png(&points, &curves)?;
    written.push(curves);
    Ok(written)
}

/// The contract's class names, as the reports take them.
pub(super) fn class_names(contract: &data::InputContract) -> Vec<&str> {
    contract.class_names.iter().map(String::as_str).collect()
}
