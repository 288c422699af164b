//! Evaluation reports: the classification report, the confusion matrix and the pictures that
//! a person opens in the MLflow UI to judge a model. They work on plain slices (labels,
//! probabilities, CHW pixels of any shape) so they do not depend on the tensor code, their numbers match
//! scikit-learn's exactly (so they can be compared with any Python baseline), and the pictures
//! are drawn with an embedded font so that they look the same on every machine.

mod canvas;
mod metrics;
mod plot;

use std::path::{Path, PathBuf};

pub use metrics::{AverageRow, ClassificationReport, ConfusionMatrix};
pub use plot::{
    EpochPoint, GridLayout, HeatmapLayout, Predictions, Rect, confusion_matrix_layout, confusion_matrix_normalized_png,
    confusion_matrix_png, misclassified_images_png, misclassified_layout, misclassified_layout_for, misclassified_png,
    training_curves_png,
};

pub use crate::nn::ImageShape;

/// The FashionMNIST class names, indexed by label (their home is the dataset's contract).
pub use crate::data::FASHION_MNIST_CLASSES as CLASS_NAMES;

/// Why a report could not be computed or written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Two inputs that must describe the same samples (or classes) differ in length.
    #[error("{what} has {actual} entries, expected {expected}")]
    LengthMismatch {
        /// The input whose length is wrong.
        what: &'static str,
        /// The length it should have.
        expected: usize,
        /// The length it has.
        actual: usize,
    },
    /// A label is not one of the classes.
    #[error("{which}[{index}] = {label} is outside 0..{n_classes}")]
    LabelOutOfRange {
        /// `y_true` or `y_pred`.
        which: &'static str,
        /// Position of the first bad label.
        index: usize,
        /// The bad label.
        label: u8,
        /// Number of classes.
        n_classes: usize,
    },
    /// Nothing to report on.
    #[error("empty {what}")]
    Empty {
        /// What was empty.
        what: &'static str,
    },
    /// The pixel buffer is not `n * channels * height * width` bytes.
    #[error("image buffer has {actual} bytes, expected {expected} (n * {shape})")]
    ImageBufferSize {
        /// `n * channels * height * width`.
        expected: usize,
        /// The buffer's length.
        actual: usize,
        /// The image shape, as `CxHxW`.
        shape: String,
    },
    /// The images can be drawn neither grey (one channel) nor in colour (three).
    #[error("cannot draw images of {channels} channels: only 1 (grey) or 3 (RGB) can be drawn")]
    UnsupportedChannels {
        /// The channel count given.
        channels: usize,
    },
    /// The embedded font could not be read.
    #[error("embedded font: {0}")]
    Font(String),
    /// Encoding a PNG failed.
    #[error("encoding {path}: {source}")]
    Encode {
        /// The file being written.
        path: PathBuf,
        /// The encoder's error.
        source: image::ImageError,
    },
    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What [`write_evaluation_reports`] needs: one entry per test sample.
#[derive(Debug, Clone, Copy)]
pub struct EvaluationInputs<'a> {
    /// True labels, indices into `class_names`.
    pub y_true: &'a [u8],
    /// Predicted labels, indices into `class_names`.
    pub y_pred: &'a [u8],
    /// The model's probability for the class it predicted.
    pub prob_of_pred: &'a [f32],
    /// `n * shape.pixels()` bytes, each image in CHW order (channel planes, each row-major).
    pub images: &'a [u8],
    /// The shape of one image in `images`.
    pub shape: ImageShape,
    /// The class names, indexed by label; their count is the class count.
    pub class_names: &'a [String],
}

/// Writes `classification_report.json`, `confusion_matrix.json`, `confusion_matrix.png`,
/// `confusion_matrix_normalized.png` and `misclassified_examples.png` into `dir` (created if
/// missing) and returns their paths. All inputs are checked before anything is written.
pub fn write_evaluation_reports(dir: &Path, eval: &EvaluationInputs) -> Result<Vec<PathBuf>, ReportError> {
    let names: Vec<&str> = eval.class_names.iter().map(String::as_str).collect();
    let report = ClassificationReport::new(eval.y_true, eval.y_pred, &names)?;
    let cm = ConfusionMatrix::new(eval.y_true, eval.y_pred, names.len())?.with_class_names(&names)?;
    plot::validate_examples(eval.images, eval.shape, eval.y_true, eval.y_pred, eval.prob_of_pred, names.len())?;
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io { path: dir.to_path_buf(), source })?;

    let path = |name: &str| dir.join(name);
    let written = vec![
        path("classification_report.json"),
        path("confusion_matrix.json"),
        path("confusion_matrix.png"),
        path("confusion_matrix_normalized.png"),
        path("misclassified_examples.png"),
    ];
    write_json(&written[0], &report.to_json())?;
    write_json(&written[1], &cm.to_json())?;
    confusion_matrix_png(&cm, &written[2])?;
    confusion_matrix_normalized_png(&cm, &written[3])?;
    let predictions = Predictions { y_true: eval.y_true, y_pred: eval.y_pred, prob_of_pred: eval.prob_of_pred };
    misclassified_images_png(eval.images, eval.shape, &predictions, &names, &written[4])?;
    Ok(written)
}

/// Pretty-printed JSON with a trailing newline, written atomically.
fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), ReportError> {
    let mut bytes =
        serde_json::to_vec_pretty(value).map_err(|e| ReportError::Io { path: path.to_path_buf(), source: e.into() })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Writes a report whole or not at all (see [`crate::files::write_atomic`]).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    crate::files::write_atomic(path, bytes).map_err(|source| ReportError::Io { path: path.to_path_buf(), source })
}
