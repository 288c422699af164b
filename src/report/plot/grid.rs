//! The grid of misclassified test images, most confident mistakes first, each captioned.

use std::path::Path;

use image::Rgb;

use super::{MARGIN, Rect, TICK_SIZE, TITLE_SIZE, save_png, shorten};
use crate::report::canvas::{Align, Canvas, Fonts, INK, Style};
use crate::report::metrics::validate_labels;
use crate::report::{ImageShape, ReportError};

const CAPTION_SIZE: f32 = 14.0;
/// Smallest font a caption may shrink to before it is shortened instead.
const MIN_CAPTION_SIZE: f32 = 12.0;
const MISTAKE_RED: Rgb<u8> = Rgb([178, 24, 43]);

/// One test set's labels and the model's answers, one entry per image.
#[derive(Debug, Clone, Copy)]
pub struct Predictions<'a> {
    /// True labels, indices into the class names.
    pub y_true: &'a [u8],
    /// Predicted labels, indices into the class names.
    pub y_pred: &'a [u8],
    /// The model's probability for the class it predicted.
    pub prob_of_pred: &'a [f32],
}

/// Checks the inputs of [`misclassified_images_png`]: labels, one probability and one image of
/// `shape` per sample, and a channel count that can be drawn.
pub(crate) fn validate_examples(
    images: &[u8],
    shape: ImageShape,
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
    if !matches!(shape.channels, 1 | 3) {
        return Err(ReportError::UnsupportedChannels { channels: shape.channels });
    }
    let expected = n.saturating_mul(shape.pixels());
    if images.len() != expected || shape.pixels() == 0 {
        let shape = format!("{}x{}x{}", shape.channels, shape.height, shape.width);
        return Err(ReportError::ImageBufferSize { expected, actual: images.len(), shape });
    }
    Ok(())
}

/// How many mistakes the grid shows at most, and in how many columns.
const GRID_COLUMNS: usize = 5;
const GRID_MAX: usize = 25;
/// Side of the square each image is fitted into: FashionMNIST's 28x28 magnified 5x.
const IMAGE_BOX: u32 = 140;
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

/// Layout of the misclassified-examples picture of FashionMNIST's 28x28 images when it shows
/// `n_shown` of them (at most 25).
pub fn misclassified_layout(n_shown: usize) -> GridLayout {
    misclassified_layout_for(n_shown, ImageShape::FASHION_MNIST)
}

/// Drawn size of an image: small ones magnified by a whole factor, large ones shrunk, so that
/// its longer side fills (or nearly fills) [`IMAGE_BOX`].
fn display_size(shape: ImageShape) -> (u32, u32) {
    let (h, w) = (shape.height.max(1) as u32, shape.width.max(1) as u32);
    let long = h.max(w);
    if long <= IMAGE_BOX {
        let k = IMAGE_BOX / long;
        (w * k, h * k)
    } else {
        ((w * IMAGE_BOX / long).max(1), (h * IMAGE_BOX / long).max(1))
    }
}

/// Layout of the misclassified-examples picture when it shows `n_shown` images (at most 25)
/// of `shape`.
pub fn misclassified_layout_for(n_shown: usize, shape: ImageShape) -> GridLayout {
    let n_shown = n_shown.min(GRID_MAX);
    let (img_w, img_h) = display_size(shape);
    let img_side = IMAGE_BOX;
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
        let image_y = y + (img_side - img_h) / 2;
        images.push(Rect { x: x + (TILE_W - img_w) / 2, y: image_y, w: img_w, h: img_h });
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

/// Writes a 5x5 grid of FashionMNIST test images (28x28 grey) the model got wrong; see
/// [`misclassified_images_png`].
pub fn misclassified_png(
    images: &[u8],
    y_true: &[u8],
    y_pred: &[u8],
    prob_of_pred: &[f32],
    class_names: &[&str],
    path: &Path,
) -> Result<(), ReportError> {
    let predictions = Predictions { y_true, y_pred, prob_of_pred };
    misclassified_images_png(images, ImageShape::FASHION_MNIST, &predictions, class_names, path)
}

/// Writes a 5x5 grid of the test images the model got wrong, most confident mistakes first,
/// each fitted to a 140-pixel square (grey for one channel, in colour for three CHW planes)
/// and captioned with the true class, the predicted class and the model's probability for it.
/// With no mistakes the picture says so.
pub fn misclassified_images_png(
    images: &[u8],
    shape: ImageShape,
    predictions: &Predictions,
    class_names: &[&str],
    path: &Path,
) -> Result<(), ReportError> {
    let Predictions { y_true, y_pred, prob_of_pred } = *predictions;
    if class_names.is_empty() {
        return Err(ReportError::Empty { what: "class list" });
    }
    validate_examples(images, shape, y_true, y_pred, prob_of_pred, class_names.len())?;
    let mut wrong: Vec<usize> = (0..y_true.len()).filter(|&i| y_true[i] != y_pred[i]).collect();
    // Most confident first; NaN probabilities sort last; equal ones keep dataset order.
    let key = |i: usize| {
        let p = prob_of_pred[i];
        if p.is_nan() { f32::NEG_INFINITY } else { p }
    };
    wrong.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    let shown = &wrong[..wrong.len().min(GRID_MAX)];

    let l = misclassified_layout_for(shown.len(), shape);
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

    let size = shape.pixels();
    for ((&i, img), cap) in shown.iter().zip(&l.images).zip(&l.captions) {
        draw_image(&mut cv, &images[i * size..(i + 1) * size], shape, *img);
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

/// Draws one CHW image into `at` by nearest-neighbour sampling: grey for one channel, RGB
/// from the first three planes otherwise.
fn draw_image(cv: &mut Canvas, pixels: &[u8], shape: ImageShape, at: Rect) {
    let plane = shape.height * shape.width;
    for dy in 0..at.h {
        let sy = dy as usize * shape.height / at.h as usize;
        for dx in 0..at.w {
            let sx = dx as usize * shape.width / at.w as usize;
            let k = sy * shape.width + sx;
            let rgb = if shape.channels == 1 {
                Rgb([pixels[k]; 3])
            } else {
                Rgb([pixels[k], pixels[plane + k], pixels[2 * plane + k]])
            };
            cv.fill_rect((at.x + dx).into(), (at.y + dy).into(), 1, 1, rgb);
        }
    }
}

/// Shrinks a caption down to the smallest legible size, then shortens it with an ellipsis.
fn fit_caption(cv: &Canvas, text: &str, mut style: Style, max_width: u32) -> (String, Style) {
    while cv.fonts.measure(text, style).0 > max_width && style.size > MIN_CAPTION_SIZE {
        style.size -= 0.5;
    }
    (shorten(&cv.fonts, text, style, max_width), style)
}
