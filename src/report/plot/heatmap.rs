//! The confusion matrix as a heat map, of counts or of each row divided by its class's count.

use std::path::Path;

use image::Rgb;

use super::{AXIS_TITLE_SIZE, MARGIN, Rect, TICK_SIZE, TITLE_SIZE, nice_ticks, save_png, shorten};
use crate::report::ReportError;
use crate::report::canvas::{Align, Canvas, Fonts, INK, Style, WHITE, luminance};
use crate::report::metrics::ConfusionMatrix;

/// Cell side for up to ten classes; fewer get bigger cells, more get smaller ones.
const CELL: u32 = 60;
/// The grid is at least this wide (two classes) and, shrinking cells, at most about this wide.
const MIN_GRID: u32 = 240;
const MAX_GRID: u32 = 600;
/// Cells never shrink below a legible tick label's line.
const MIN_CELL: u32 = 18;
/// Counts are printed only in cells at least this big.
const MIN_CELL_WITH_TEXT: u32 = 28;
/// Longest class name drawn in full; longer ones are shortened with an ellipsis.
const MAX_LABEL_W: u32 = 160;

/// Where the parts of a confusion-matrix picture are.
#[derive(Debug, Clone, PartialEq)]
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
    /// Font size of the class names.
    pub tick_size: f32,
    /// Font size of the numbers in cells; `None` when cells are too small to hold them.
    pub cell_text_size: Option<f32>,
    /// The class names as drawn (long ones shortened), indexed by class.
    pub labels: Vec<String>,
    /// Where each row's name is drawn, indexed by class.
    pub y_label_boxes: Vec<Rect>,
    /// Where each column's (vertical) name is drawn, indexed by class.
    pub x_label_boxes: Vec<Rect>,
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

/// Cell side for `n` classes: 60 pixels up to ten, bigger below, smaller above.
fn cell_side(n: usize) -> u32 {
    let n = n.max(1) as u32;
    if n <= 10 { CELL.max(MIN_GRID / n) } else { (MAX_GRID / n).max(MIN_CELL) }
}

fn heatmap_layout(fonts: &Fonts, class_names: &[&str]) -> HeatmapLayout {
    let cell = cell_side(class_names.len());
    let tick_size = (cell as f32 * 0.7).min(TICK_SIZE);
    let tick = Style::new(tick_size);
    let labels: Vec<String> = class_names.iter().map(|s| shorten(fonts, s, tick, MAX_LABEL_W)).collect();
    let label_w = labels.iter().map(|s| fonts.measure(s, tick).0).max().unwrap_or(0);
    let line_h = fonts.measure("Ag", tick).1;
    let axis_h = fonts.measure("Ag", Style::new(AXIS_TITLE_SIZE).bold()).1;
    let title_h = fonts.measure("Ag", Style::new(TITLE_SIZE).bold()).1;
    let side = class_names.len() as u32 * cell;
    let bar_tick = Style::new(TICK_SIZE);

    let y_axis_title = Rect { x: MARGIN, y: MARGIN + title_h + 16, w: axis_h, h: side };
    let y_tick_labels = Rect { x: y_axis_title.right() + 10, w: label_w, ..y_axis_title };
    let grid = Rect { x: y_tick_labels.right() + 10, y: y_axis_title.y, w: side, h: side };
    let x_tick_labels = Rect { y: grid.bottom() + 10, h: label_w, ..grid };
    let x_axis_title = Rect { y: x_tick_labels.bottom() + 10, h: axis_h, ..grid };
    let colorbar = Rect { x: grid.right() + 24, y: grid.y, w: 20, h: side };
    let colorbar_labels = Rect {
        x: colorbar.right() + 8,
        y: grid.y.saturating_sub(fonts.measure("Ag", bar_tick).1 / 2),
        w: fonts.measure("100000", bar_tick).0,
        h: side + fonts.measure("Ag", bar_tick).1,
    };
    // Wide enough for the longer title at its smallest size.
    let title_w = fonts.measure(LONGEST_TITLE, Style::new(TITLE_SIZE * 0.6).bold()).0;
    let width = (colorbar_labels.right() + MARGIN).max(title_w + 2 * MARGIN);
    let mut y_label_boxes = Vec::new();
    let mut x_label_boxes = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let w = fonts.measure(label, tick).0;
        let middle = i as u32 * cell + cell / 2;
        let y = (grid.y + middle).saturating_sub(line_h / 2);
        y_label_boxes.push(Rect { x: y_tick_labels.right() - w, y, w, h: line_h });
        let x = (grid.x + middle).saturating_sub(line_h / 2);
        x_label_boxes.push(Rect { x, y: x_tick_labels.y, w: line_h, h: w });
    }
    HeatmapLayout {
        width,
        height: x_axis_title.bottom() + MARGIN,
        title: Rect { x: 0, y: MARGIN, w: width, h: title_h },
        grid,
        cell,
        y_tick_labels,
        x_tick_labels,
        y_axis_title,
        x_axis_title,
        colorbar,
        colorbar_labels,
        tick_size,
        cell_text_size: (cell >= MIN_CELL_WITH_TEXT).then(|| (cell as f32 * 14.0 / 60.0).clamp(10.0, 20.0)),
        labels,
        y_label_boxes,
        x_label_boxes,
    }
}

/// The longer of the two titles, with the widest accuracy.
const LONGEST_TITLE: &str = "Confusion matrix, normalised by true class — accuracy 100.00%";

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

/// Writes the confusion matrix as a heat map of counts with its class names on both axes, the
/// count in every cell, a colour scale and the accuracy in the title.
pub fn confusion_matrix_png(cm: &ConfusionMatrix, path: &Path) -> Result<(), ReportError> {
    let values: Vec<Vec<f64>> = cm.counts().iter().map(|row| row.iter().map(|&c| c as f64).collect()).collect();
    let vmax = values.iter().flatten().fold(0.0f64, |a, &b| a.max(b)).max(1.0);
    let ticks = nice_ticks(0.0, vmax, 5, true);
    let heatmap = Heatmap {
        title: format!("Confusion matrix — accuracy {:.2}%", cm.accuracy() * 100.0),
        values: &values,
        cell_text: &|r, c| cm.counts()[r][c].to_string(),
        vmax,
        // Only ticks on the bar: the rounded-up last one may lie above the largest count.
        ticks: ticks.values.iter().filter(|&&v| v <= vmax).map(|&v| (v, ticks.format(v))).collect(),
    };
    draw_heatmap(&heatmap, cm, path)
}

/// Writes the confusion matrix with every row divided by its class's sample count, so each
/// diagonal cell is that class's recall; the colour scale runs from 0 to 1.
pub fn confusion_matrix_normalized_png(cm: &ConfusionMatrix, path: &Path) -> Result<(), ReportError> {
    let values = cm.normalized_rows();
    let heatmap = Heatmap {
        title: format!("Confusion matrix, normalised by true class — accuracy {:.2}%", cm.accuracy() * 100.0),
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
    draw_heatmap(&heatmap, cm, path)
}

struct Heatmap<'a> {
    title: String,
    values: &'a [Vec<f64>],
    cell_text: &'a dyn Fn(usize, usize) -> String,
    vmax: f64,
    ticks: Vec<(f64, String)>,
}

fn draw_heatmap(map: &Heatmap, cm: &ConfusionMatrix, path: &Path) -> Result<(), ReportError> {
    let class_names: Vec<&str> = cm.class_names().iter().map(String::as_str).collect();
    let class_names = class_names.as_slice();
    let fonts = Fonts::load()?;
    let l = heatmap_layout(&fonts, class_names);
    let mut cv = Canvas::new(l.width, l.height, fonts);
    let tick = Style::new(l.tick_size);

    let title_style = fit_size(&cv, &map.title, Style::new(TITLE_SIZE).bold(), l.width - 2 * MARGIN);
    let center_x = f64::from(l.width) / 2.0;
    cv.text(center_x, f64::from(l.title.y), &map.title, title_style, Align::Center, Align::Start);

    for (r, row) in map.values.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            let cell = l.cell_rect(r, c);
            let bg = blues(v / map.vmax);
            cv.fill_rect(cell.x.into(), cell.y.into(), l.cell.into(), l.cell.into(), bg);
            if let Some(size) = l.cell_text_size {
                let text = (map.cell_text)(r, c);
                let style = fit_size(&cv, &text, Style::new(size).color(text_on(bg)), l.cell - 6);
                let (cx, cy) = center(cell);
                cv.text(cx, cy, &text, style, Align::Center, Align::Center);
            }
        }
    }
    let g = l.grid;
    cv.stroke_rect(g.x.into(), g.y.into(), g.w.into(), g.h.into(), INK);

    for (i, name) in l.labels.iter().enumerate() {
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
        cv.text(f64::from(l.colorbar_labels.x), y, label, Style::new(TICK_SIZE), Align::Start, Align::Center);
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
