//! The PNG pictures: confusion-matrix heat maps (`heatmap`), a grid of misclassified images
//! (`grid`) and training curves (`curves`). Layouts are computed by public functions so that tests
//! (and callers) can find where each part of a picture is.

use std::io::Cursor;
use std::path::Path;

use super::canvas::{Canvas, Fonts, Style};
use super::{ReportError, write_atomic};

mod curves;
mod grid;
mod heatmap;

pub use curves::{EpochPoint, training_curves_png};
pub(crate) use grid::validate_examples;
pub use grid::{
    GridLayout, Predictions, misclassified_images_png, misclassified_layout, misclassified_layout_for,
    misclassified_png,
};
pub use heatmap::{HeatmapLayout, confusion_matrix_layout, confusion_matrix_normalized_png, confusion_matrix_png};

const MARGIN: u32 = 20;
const TICK_SIZE: f32 = 14.0;
const AXIS_TITLE_SIZE: f32 = 16.0;
const TITLE_SIZE: f32 = 20.0;

/// A rectangle in pixel coordinates of a picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub w: u32,
    /// Height.
    pub h: u32,
}

impl Rect {
    fn right(&self) -> u32 {
        self.x + self.w
    }
    fn bottom(&self) -> u32 {
        self.y + self.h
    }
}

/// `text` cut short with an ellipsis until it fits in `max_width` pixels.
fn shorten(fonts: &Fonts, text: &str, style: Style, max_width: u32) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let mut out = text.to_string();
    while fonts.measure(&out, style).0 > max_width && chars.len() > 1 {
        chars.pop();
        out = chars.iter().collect::<String>() + "…";
    }
    out
}

fn save_png(cv: &Canvas, path: &Path) -> Result<(), ReportError> {
    let mut bytes = Cursor::new(Vec::new());
    cv.img
        .write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|source| ReportError::Encode { path: path.to_path_buf(), source })?;
    write_atomic(path, bytes.get_ref())
}

/// Tick positions covering a range, at a round step (1, 2 or 5 times a power of ten).
struct Ticks {
    lo: f64,
    hi: f64,
    step: f64,
    values: Vec<f64>,
}

impl Ticks {
    fn format(&self, v: f64) -> String {
        let decimals = (-self.step.log10().floor()).max(0.0) as usize;
        format!("{v:.decimals$}")
    }
}

/// Round ticks around `lo..=hi`, about `target` of them; `integer` keeps the step >= 1.
fn nice_ticks(lo: f64, hi: f64, target: usize, integer: bool) -> Ticks {
    let raw = ((hi - lo) / target as f64).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    let mut step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|&s| s >= raw).unwrap_or(10.0 * magnitude);
    if integer {
        step = step.max(1.0).round();
    }
    let first = (lo / step).floor();
    let last = (hi / step).ceil();
    let values = (0..=(last - first) as i64).map(|k| (first + k as f64) * step).collect();
    Ticks { lo: first * step, hi: last * step, step, values }
}
