//! The PNG pictures: confusion-matrix heat maps, a grid of misclassified images and training
//! curves. Layouts are computed by public functions so that tests (and callers) can find
//! where each part of a picture is.

use std::io::Cursor;
use std::path::Path;

use image::Rgb;

use super::canvas::{Align, Canvas, Fonts, INK, Style, WHITE, luminance};
use super::metrics::{ConfusionMatrix, check_class_names, validate_labels};
use super::{IMAGE_SIDE, ReportError, write_atomic};

const MARGIN: u32 = 20;
const TICK_SIZE: f32 = 14.0;
const CELL_TEXT_SIZE: f32 = 14.0;
const AXIS_TITLE_SIZE: f32 = 16.0;
const TITLE_SIZE: f32 = 20.0;
const CAPTION_SIZE: f32 = 14.0;
/// Smallest font a caption may shrink to before it is shortened instead.
const MIN_CAPTION_SIZE: f32 = 12.0;
const CELL: u32 = 60;
const GRID_LINE: Rgb<u8> = Rgb([220, 220, 220]);
const MISTAKE_RED: Rgb<u8> = Rgb([178, 24, 43]);

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

/// Where the parts of a confusion-matrix picture are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeatmapLayout {
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// The title line.
    pub title: Rect,
    /// The cells; row `r`, column `c` is [`Self::cell_rect`].
    pub grid: Rect,
    /// Side of one cell.
    pub cell: u32,
    /// Class names left of the grid (true labels).
    pub y_tick_labels: Rect,
    /// Class names under the grid (predicted labels), written vertically.
    pub x_tick_labels: Rect,
    /// "True label", written vertically.
    pub y_axis_title: Rect,
    /// "Predicted label".
    pub x_axis_title: Rect,
    /// The colour scale.
    pub colorbar: Rect,
    /// The colour scale's tick labels.
    pub colorbar_labels: Rect,
}

impl HeatmapLayout {
    /// The cell of true class `row` and predicted class `col`.
    pub fn cell_rect(&self, row: usize, col: usize) -> Rect {
        Rect {
            x: self.grid.x + col as u32 * self.cell,
            y: self.grid.y + row as u32 * self.cell,
            w: self.cell,
            h: self.cell,
        }
    }
}

/// Computes the confusion-matrix picture's layout for these class names.
pub fn confusion_matrix_layout(class_names: &[&str]) -> Result<HeatmapLayout, ReportError> {
    Ok(heatmap_layout(&Fonts::load()?, class_names))
}

fn heatmap_layout(fonts: &Fonts, class_names: &[&str]) -> HeatmapLayout {
    let tick = Style::new(TICK_SIZE);
    let label_w = class_names.iter().map(|s| fonts.measure(s, tick).0).max().unwrap_or(0);
    let line_h = fonts.measure("Ag", tick).1;
    let axis_h = fonts.measure("Ag", Style::new(AXIS_TITLE_SIZE).bold()).1;
    let title_h = fonts.measure("Ag", Style::new(TITLE_SIZE).bold()).1;
    let side = class_names.len() as u32 * CELL;

    let y_axis_title = Rect { x: MARGIN, y: MARGIN + title_h + 16, w: axis_h, h: side };
    let y_tick_labels = Rect { x: y_axis_title.right() + 10, w: label_w, ..y_axis_title };
    let grid = Rect { x: y_tick_labels.right() + 10, y: y_axis_title.y, w: side, h: side };
    let x_tick_labels = Rect { y: grid.bottom() + 10, h: label_w, ..grid };
    let x_axis_title = Rect { y: x_tick_labels.bottom() + 10, h: axis_h, ..grid };
    let colorbar = Rect { x: grid.right() + 24, y: grid.y, w: 20, h: side };
    let colorbar_labels = Rect {
        x: colorbar.right() + 8,
        y: grid.y.saturating_sub(line_h / 2),
        w: fonts.measure("100000", tick).0,
        h: side + line_h,
    };
    let width = colorbar_labels.right() + MARGIN;
    HeatmapLayout {
        width,
        height: x_axis_title.bottom() + MARGIN,
        title: Rect { x: 0, y: MARGIN, w: width, h: title_h },
        grid,
        cell: CELL,
        y_tick_labels,
        x_tick_labels,
        y_axis_title,
        x_axis_title,
        colorbar,
        colorbar_labels,
    }
}

/// matplotlib's "Blues" colour map, the one scikit-learn's confusion-matrix plots use.
fn blues(t: f64) -> Rgb<u8> {
    const STOPS: [[f64; 3]; 9] = [
        [247.0, 251.0, 255.0],
        [222.0, 235.0, 247.0],
        [198.0, 219.0, 239.0],
        [158.0, 202.0, 225.0],
        [107.0, 174.0, 214.0],
        [66.0, 146.0, 198.0],
        [33.0, 113.0, 181.0],
        [8.0, 81.0, 156.0],
        [8.0, 48.0, 107.0],
    ];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let pos = t * (STOPS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(STOPS.len() - 2);
    let f = pos - i as f64;
    let mix = |k: usize| (STOPS[i][k] * (1.0 - f) + STOPS[i + 1][k] * f).round() as u8;
    Rgb([mix(0), mix(1), mix(2)])
}

/// Readable text colour over `background`: white on dark cells, near-black on light ones.
fn text_on(background: Rgb<u8>) -> Rgb<u8> {
    if luminance(background) < 128.0 { WHITE } else { INK }
}

/// Writes the confusion matrix as a heat map of counts with class names on both axes, the
/// count in every cell, a colour scale and the accuracy in the title.
pub fn confusion_matrix_png(
    cm: &ConfusionMatrix,
    class_names: &[&str],
    accuracy: f64,
    path: &Path,
) -> Result<(), ReportError> {
    check_class_names(class_names, cm.n_classes())?;
    let values: Vec<Vec<f64>> = cm.counts().iter().map(|row| row.iter().map(|&c| c as f64).collect()).collect();
    let vmax = values.iter().flatten().fold(0.0f64, |a, &b| a.max(b)).max(1.0);
    let ticks = nice_ticks(0.0, vmax, 5, true);
    let heatmap = Heatmap {
        title: format!("Confusion matrix — accuracy {:.2}%", accuracy * 100.0),
        values: &values,
        cell_text: &|r, c| cm.counts()[r][c].to_string(),
        vmax,
        // Only ticks on the bar: the rounded-up last one may lie above the largest count.
        ticks: ticks.values.iter().filter(|&&v| v <= vmax).map(|&v| (v, ticks.format(v))).collect(),
    };
    draw_heatmap(&heatmap, class_names, path)
}

/// Writes the confusion matrix with every row divided by its class's sample count, so each
/// diagonal cell is that class's recall; the colour scale runs from 0 to 1.
pub fn confusion_matrix_normalized_png(
    cm: &ConfusionMatrix,
    class_names: &[&str],
    accuracy: f64,
    path: &Path,
) -> Result<(), ReportError> {
    check_class_names(class_names, cm.n_classes())?;
    let values = cm.normalized_rows();
    let heatmap = Heatmap {
        title: format!("Confusion matrix, normalised by true class — accuracy {:.2}%", accuracy * 100.0),
        values: &values,
        cell_text: &|r, c| format!("{:.2}", values[r][c]),
        vmax: 1.0,
        ticks: (0..=5)
            .map(|i| {
                let v = f64::from(i) / 5.0;
                (v, format!("{v:.1}"))
            })
            .collect(),
    };
    draw_heatmap(&heatmap, class_names, path)
}

struct Heatmap<'a> {
    title: String,
    values: &'a [Vec<f64>],
    cell_text: &'a dyn Fn(usize, usize) -> String,
    vmax: f64,
    ticks: Vec<(f64, String)>,
}

fn draw_heatmap(map: &Heatmap, class_names: &[&str], path: &Path) -> Result<(), ReportError> {
    let fonts = Fonts::load()?;
    let l = heatmap_layout(&fonts, class_names);
    let mut cv = Canvas::new(l.width, l.height, fonts);
    let tick = Style::new(TICK_SIZE);

    let title_style = fit_size(&cv, &map.title, Style::new(TITLE_SIZE).bold(), l.width - 2 * MARGIN);
    let center_x = f64::from(l.width) / 2.0;
    cv.text(center_x, f64::from(l.title.y), &map.title, title_style, Align::Center, Align::Start);

    for (r, row) in map.values.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            let cell = l.cell_rect(r, c);
            let bg = blues(v / map.vmax);
            cv.fill_rect(cell.x.into(), cell.y.into(), CELL.into(), CELL.into(), bg);
            let text = (map.cell_text)(r, c);
            let style = fit_size(&cv, &text, Style::new(CELL_TEXT_SIZE).color(text_on(bg)), CELL - 6);
            let (cx, cy) = center(cell);
            cv.text(cx, cy, &text, style, Align::Center, Align::Center);
        }
    }
    let g = l.grid;
    cv.stroke_rect(g.x.into(), g.y.into(), g.w.into(), g.h.into(), INK);

    for (i, name) in class_names.iter().enumerate() {
        let (cx, cy) = center(l.cell_rect(i, i));
        // Tick marks, then the names: rows on the left, columns below reading upwards.
        cv.fill_rect(i64::from(g.x) - 5, cy as i64, 5, 1, INK);
        cv.fill_rect(cx as i64, g.bottom().into(), 1, 5, INK);
        let right = f64::from(l.y_tick_labels.right());
        cv.text(right, cy, name, tick, Align::End, Align::Center);
        let top = f64::from(l.x_tick_labels.y);
        cv.text_vertical(cx, top, name, tick, Align::Center, Align::Start);
    }
    let axis = Style::new(AXIS_TITLE_SIZE).bold();
    let (yx, yy) = center(l.y_axis_title);
    cv.text_vertical(yx, yy, "True label", axis, Align::Center, Align::Center);
    let (xx, xy) = center(l.x_axis_title);
    cv.text(xx, xy, "Predicted label", axis, Align::Center, Align::Center);

    let bar = l.colorbar;
    for y in 0..bar.h {
        let t = 1.0 - f64::from(y) / f64::from(bar.h.saturating_sub(1).max(1));
        cv.fill_rect(bar.x.into(), (bar.y + y).into(), bar.w.into(), 1, blues(t));
    }
    cv.stroke_rect(bar.x.into(), bar.y.into(), bar.w.into(), bar.h.into(), INK);
    for (v, label) in &map.ticks {
        let y = f64::from(bar.bottom()) - 1.0 - v / map.vmax * f64::from(bar.h - 1);
        cv.fill_rect(bar.right().into(), y.round() as i64, 5, 1, INK);
        cv.text(f64::from(l.colorbar_labels.x), y, label, tick, Align::Start, Align::Center);
    }
    save_png(&cv, path)
}

fn center(r: Rect) -> (f64, f64) {
    (f64::from(r.x) + f64::from(r.w) / 2.0, f64::from(r.y) + f64::from(r.h) / 2.0)
}

/// Shrinks the style's size (down to 60%) until `text` fits in `max_width` pixels.
fn fit_size(cv: &Canvas, text: &str, mut style: Style, max_width: u32) -> Style {
    let floor = style.size * 0.6;
    while cv.fonts.measure(text, style).0 > max_width && style.size > floor {
        style.size -= 0.5;
    }
    style
}

fn save_png(cv: &Canvas, path: &Path) -> Result<(), ReportError> {
    let mut bytes = Cursor::new(Vec::new());
    cv.img
        .write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|source| ReportError::Encode { path: path.to_path_buf(), source })?;
    write_atomic(path, bytes.get_ref())
}

/// Checks the inputs of [`misclassified_png`]: labels, one probability and one 28x28 image
/// per sample.
pub(crate) fn validate_examples(
    images: &[u8],
    y_true: &[u8],
    y_pred: &[u8],
    prob_of_pred: &[f32],
    n_classes: usize,
) -> Result<(), ReportError> {
    validate_labels(y_true, y_pred, n_classes)?;
    let n = y_true.len();
    if prob_of_pred.len() != n {
        return Err(ReportError::LengthMismatch { what: "prob_of_pred", expected: n, actual: prob_of_pred.len() });
    }
    let expected = n.saturating_mul(IMAGE_SIDE * IMAGE_SIDE);
    if images.len() != expected {
        return Err(ReportError::ImageBufferSize { expected, actual: images.len() });
    }
    Ok(())
}

/// How many mistakes the grid shows at most, and in how many columns.
const GRID_COLUMNS: usize = 5;
const GRID_MAX: usize = 25;
/// Nearest-neighbour magnification of the 28x28 images.
const UPSCALE: u32 = 5;
const TILE_W: u32 = 220;
const CAPTION_LINE: u32 = 18;

/// Where the parts of the misclassified-examples picture are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridLayout {
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// The title (and, with no mistakes, the message saying so).
    pub title: Rect,
    /// The upscaled images, most confident mistake first.
    pub images: Vec<Rect>,
    /// The two caption lines under each image.
    pub captions: Vec<Rect>,
}

/// Layout of the misclassified-examples picture when it shows `n_shown` images (at most 25).
pub fn misclassified_layout(n_shown: usize) -> GridLayout {
    let n_shown = n_shown.min(GRID_MAX);
    let img_side = IMAGE_SIDE as u32 * UPSCALE;
    let title_h = 2 * CAPTION_LINE + 10;
    let tile_h = img_side + 6 + 2 * CAPTION_LINE + 16;
    let top = MARGIN + title_h + 10;
    let rows = n_shown.div_ceil(GRID_COLUMNS) as u32;
    let width = 2 * MARGIN + GRID_COLUMNS as u32 * TILE_W;
    let (mut images, mut captions) = (Vec::new(), Vec::new());
    for i in 0..n_shown {
        let (row, col) = ((i / GRID_COLUMNS) as u32, (i % GRID_COLUMNS) as u32);
        let x = MARGIN + col * TILE_W;
        let y = top + row * tile_h;
        images.push(Rect { x: x + (TILE_W - img_side) / 2, y, w: img_side, h: img_side });
        captions.push(Rect { x: x + 4, y: y + img_side + 6, w: TILE_W - 8, h: 2 * CAPTION_LINE });
    }
    GridLayout {
        width,
        height: top + rows * tile_h + MARGIN,
        title: Rect { x: MARGIN, y: MARGIN, w: width - 2 * MARGIN, h: title_h },
        images,
        captions,
    }
}

/// Writes a 5x5 grid of the test images the model got wrong, most confident mistakes first,
/// each upscaled 5x and captioned with the true class, the predicted class and the model's
/// probability for it. With no mistakes the picture says so.
pub fn misclassified_png(
    images: &[u8],
    y_true: &[u8],
    y_pred: &[u8],
    prob_of_pred: &[f32],
    class_names: &[&str],
    path: &Path,
) -> Result<(), ReportError> {
    if class_names.is_empty() {
        return Err(ReportError::Empty { what: "class list" });
    }
    validate_examples(images, y_true, y_pred, prob_of_pred, class_names.len())?;
    let mut wrong: Vec<usize> = (0..y_true.len()).filter(|&i| y_true[i] != y_pred[i]).collect();
    // Most confident first; NaN probabilities sort last; equal ones keep dataset order.
    let key = |i: usize| {
        let p = prob_of_pred[i];
        if p.is_nan() { f32::NEG_INFINITY } else { p }
    };
    wrong.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    let shown = &wrong[..wrong.len().min(GRID_MAX)];

    let l = misclassified_layout(shown.len());
    let mut cv = Canvas::new(l.width, l.height, Fonts::load()?);
    let (title, subtitle) = if wrong.is_empty() {
        ("No misclassified examples".to_string(), format!("all {} predictions are correct", y_true.len()))
    } else {
        (
            "Most confident mistakes".to_string(),
            format!(
                "{} of {} mistakes among {} test images, highest predicted probability first",
                shown.len(),
                wrong.len(),
                y_true.len()
            ),
        )
    };
    let tx = f64::from(l.width) / 2.0;
    let ty = f64::from(l.title.y);
    cv.text(tx, ty, &title, Style::new(TITLE_SIZE).bold(), Align::Center, Align::Start);
    let sub = Style::new(TICK_SIZE);
    let sub_y = ty + f64::from(CAPTION_LINE) + 10.0;
    cv.text(tx, sub_y, &subtitle, sub, Align::Center, Align::Start);

    let side = IMAGE_SIDE * IMAGE_SIDE;
    for ((&i, img), cap) in shown.iter().zip(&l.images).zip(&l.captions) {
        let pixels = &images[i * side..(i + 1) * side];
        for (k, &p) in pixels.iter().enumerate() {
            let (px, py) = ((k % IMAGE_SIDE) as u32, (k / IMAGE_SIDE) as u32);
            let (x, y) = (img.x + px * UPSCALE, img.y + py * UPSCALE);
            let s = i64::from(UPSCALE);
            cv.fill_rect(x.into(), y.into(), s, s, Rgb([p, p, p]));
        }
        cv.stroke_rect(i64::from(img.x) - 1, i64::from(img.y) - 1, i64::from(img.w) + 2, i64::from(img.h) + 2, INK);
        let name = |l: u8| class_names[usize::from(l)];
        let lines = [
            (format!("true: {}", name(y_true[i])), INK),
            (format!("pred: {} ({:.1}%)", name(y_pred[i]), prob_of_pred[i] * 100.0), MISTAKE_RED),
        ];
        for (k, (text, color)) in lines.iter().enumerate() {
            let style = fit_caption(&cv, text, Style::new(CAPTION_SIZE).color(*color), cap.w);
            let y = f64::from(cap.y) + (k as f64 + 0.5) * f64::from(CAPTION_LINE);
            let x = f64::from(cap.x) + f64::from(cap.w) / 2.0;
            cv.text(x, y, &style.0, style.1, Align::Center, Align::Center);
        }
    }
    save_png(&cv, path)
}

/// Shrinks a caption down to the smallest legible size, then shortens it with an ellipsis.
fn fit_caption(cv: &Canvas, text: &str, mut style: Style, max_width: u32) -> (String, Style) {
    while cv.fonts.measure(text, style).0 > max_width && style.size > MIN_CAPTION_SIZE {
        style.size -= 0.5;
    }
    let mut chars: Vec<char> = text.chars().collect();
    let mut out = text.to_string();
    while cv.fonts.measure(&out, style).0 > max_width && chars.len() > 1 {
        chars.pop();
        out = chars.iter().collect::<String>() + "…";
    }
    (out, style)
}

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
