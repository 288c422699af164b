//! The training curves: loss and validation accuracy per epoch, in two panels.

use std::path::Path;

use image::Rgb;

use super::{AXIS_TITLE_SIZE, Rect, TICK_SIZE, TITLE_SIZE, nice_ticks, save_png};
use crate::report::ReportError;
use crate::report::canvas::{Align, Canvas, Fonts, INK, Style, WHITE};

const GRID_LINE: Rgb<u8> = Rgb([220, 220, 220]);
/// One epoch of training history, as the training loop records it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochPoint {
    /// Epoch number (1-based by convention).
    pub epoch: usize,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Loss on the validation set after the epoch.
    pub val_loss: f64,
    /// Accuracy on the validation set after the epoch, in 0..=1.
    pub val_accuracy: f64,
}

/// A data range that is never empty, so single points and flat series still plot.
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.0, 1.0); // nothing finite to show
    }
    if hi - lo < 1e-12 {
        let pad = if lo.abs() > 1e-12 { lo.abs() * 0.1 } else { 0.1 };
        return (lo - pad, hi + pad);
    }
    // A little air so the extreme points do not sit on the frame.
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

struct Series<'a> {
    label: &'a str,
    color: Rgb<u8>,
    points: Vec<(f64, f64)>,
}

const TRAIN_BLUE: Rgb<u8> = Rgb([31, 119, 180]);
const VAL_ORANGE: Rgb<u8> = Rgb([230, 110, 0]);
const ACC_GREEN: Rgb<u8> = Rgb([34, 139, 34]);
const PANEL_W: u32 = 560;
const PANEL_H: u32 = 420;

/// Writes two panels side by side: training and validation loss per epoch, and validation
/// accuracy per epoch, with ticks, axis labels, titles and legends. One epoch is enough.
pub fn training_curves_png(history: &[EpochPoint], path: &Path) -> Result<(), ReportError> {
    if history.is_empty() {
        return Err(ReportError::Empty { what: "training history" });
    }
    let mut cv = Canvas::new(2 * PANEL_W, PANEL_H, Fonts::load()?);
    let xs =
        |f: fn(&EpochPoint) -> f64| -> Vec<(f64, f64)> { history.iter().map(|p| (p.epoch as f64, f(p))).collect() };
    let loss = [
        Series { label: "train", color: TRAIN_BLUE, points: xs(|p| p.train_loss) },
        Series { label: "validation", color: VAL_ORANGE, points: xs(|p| p.val_loss) },
    ];
    let accuracy = [Series { label: "validation", color: ACC_GREEN, points: xs(|p| p.val_accuracy) }];
    draw_panel(&mut cv, 0, "Loss", "loss", &loss);
    draw_panel(&mut cv, PANEL_W, "Validation accuracy", "accuracy", &accuracy);
    save_png(&cv, path)
}

fn draw_panel(cv: &mut Canvas, x0: u32, title: &str, y_label: &str, series: &[Series]) {
    let tick = Style::new(TICK_SIZE);
    let plot = Rect { x: x0 + 90, y: 56, w: PANEL_W - 90 - 30, h: PANEL_H - 56 - 70 };
    let all = || series.iter().flat_map(|s| s.points.iter());
    let (xlo, xhi) = padded_range(all().map(|p| p.0));
    // Half an epoch of air on each side keeps end points off the frame.
    let (xlo, xhi) = (xlo - 0.5, xhi + 0.5);
    let x_ticks = nice_ticks(xlo, xhi, 6, true);
    let (ylo, yhi) = padded_range(all().map(|p| p.1));
    let y_ticks = nice_ticks(ylo, yhi, 5, false);
    let (ylo, yhi) = (y_ticks.lo, y_ticks.hi);
    let to_px = |(x, y): (f64, f64)| {
        (
            f64::from(plot.x) + (x - xlo) / (xhi - xlo) * f64::from(plot.w),
            f64::from(plot.bottom()) - (y - ylo) / (yhi - ylo) * f64::from(plot.h),
        )
    };

    let center_x = f64::from(plot.x) + f64::from(plot.w) / 2.0;
    cv.text(center_x, 18.0, title, Style::new(TITLE_SIZE - 2.0).bold(), Align::Center, Align::Start);
    for &v in &y_ticks.values {
        let (_, y) = to_px((xlo, v));
        cv.fill_rect(plot.x.into(), y.round() as i64, plot.w.into(), 1, GRID_LINE);
        cv.fill_rect(i64::from(plot.x) - 5, y.round() as i64, 5, 1, INK);
        let label = y_ticks.format(v);
        cv.text(f64::from(plot.x) - 8.0, y, &label, tick, Align::End, Align::Center);
    }
    for &v in x_ticks.values.iter().filter(|&&v| v >= xlo && v <= xhi) {
        let (x, _) = to_px((v, ylo));
        cv.fill_rect(x.round() as i64, plot.y.into(), 1, plot.h.into(), GRID_LINE);
        cv.fill_rect(x.round() as i64, plot.bottom().into(), 1, 5, INK);
        let label = x_ticks.format(v);
        cv.text(x, f64::from(plot.bottom()) + 8.0, &label, tick, Align::Center, Align::Start);
    }
    cv.stroke_rect(plot.x.into(), plot.y.into(), plot.w.into(), plot.h.into(), INK);
    let axis = Style::new(AXIS_TITLE_SIZE).bold();
    let bottom = f64::from(PANEL_H) - 14.0;
    cv.text(center_x, bottom, "epoch", axis, Align::Center, Align::End);
    let mid_y = f64::from(plot.y) + f64::from(plot.h) / 2.0;
    cv.text_vertical(f64::from(x0) + 14.0, mid_y, y_label, axis, Align::Start, Align::Center);

    for s in series {
        let finite: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| p.1.is_finite()).map(to_px).collect();
        for w in finite.windows(2) {
            cv.line(w[0], w[1], 2.5, s.color);
        }
        for &p in &finite {
            cv.dot(p, 3.5, s.color);
        }
    }

    // Legend in the top-right corner of the plot, on a white box so lines never hide it.
    let row_h = 20.0;
    let text_w = series.iter().map(|s| cv.fonts.measure(s.label, tick).0).max().unwrap_or(0);
    let box_w = f64::from(text_w) + 48.0;
    let box_h = row_h * series.len() as f64 + 8.0;
    let (bx, by) = legend_corner(plot, box_w, box_h, series, &to_px);
    cv.fill_rect(bx as i64, by as i64, box_w as i64, box_h as i64, WHITE);
    cv.stroke_rect(bx as i64, by as i64, box_w as i64, box_h as i64, GRID_LINE);
    for (k, s) in series.iter().enumerate() {
        let y = by + 4.0 + row_h * (k as f64 + 0.5);
        cv.line((bx + 8.0, y), (bx + 32.0, y), 2.5, s.color);
        cv.dot((bx + 20.0, y), 3.5, s.color);
        cv.text(bx + 40.0, y, s.label, tick, Align::Start, Align::Center);
    }
}

/// Picks the plot corner whose legend box would cover the fewest points of the curves, so
/// the legend hides as little data as possible (top-right first when several are free).
fn legend_corner(
    plot: Rect,
    box_w: f64,
    box_h: f64,
    series: &[Series],
    to_px: &dyn Fn((f64, f64)) -> (f64, f64),
) -> (f64, f64) {
    let (left, top) = (f64::from(plot.x) + 8.0, f64::from(plot.y) + 8.0);
    let right = f64::from(plot.right()) - box_w - 8.0;
    let bottom = f64::from(plot.bottom()) - box_h - 8.0;
    let corners = [(right, top), (right, bottom), (left, top), (left, bottom)];
    // Sample every segment densely enough that a line crossing a box is noticed.
    let mut samples = Vec::new();
    for s in series {
        let px: Vec<(f64, f64)> = s.points.iter().copied().filter(|p| p.1.is_finite()).map(to_px).collect();
        samples.extend(px.iter().copied());
        for w in px.windows(2) {
            for k in 1..20 {
                let t = f64::from(k) / 20.0;
                samples.push((w[0].0 + t * (w[1].0 - w[0].0), w[0].1 + t * (w[1].1 - w[0].1)));
            }
        }
    }
    let covered = |&(x, y): &(f64, f64)| {
        samples
            .iter()
            .filter(|p| p.0 >= x - 4.0 && p.0 <= x + box_w + 4.0)
            .filter(|p| p.1 >= y - 4.0 && p.1 <= y + box_h + 4.0)
            .count()
    };
    corners.iter().min_by_key(|c| covered(c)).copied().unwrap_or((right, top))
}
