//! A small RGB drawing surface: rectangles, anti-aliased lines and dots, and text rendered
//! with the embedded DejaVu Sans font through `ab_glyph`.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use image::{Rgb, RgbImage};

use super::ReportError;

static REGULAR: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

/// Near-black used for text and axes: softer than pure black, still high contrast.
pub(crate) const INK: Rgb<u8> = Rgb([26, 26, 26]);
pub(crate) const WHITE: Rgb<u8> = Rgb([255, 255, 255]);

/// The two faces every picture uses.
pub(crate) struct Fonts {
    regular: FontRef<'static>,
    bold: FontRef<'static>,
}

impl Fonts {
    pub(crate) fn load() -> Result<Self, ReportError> {
        let parse = |bytes: &'static [u8]| FontRef::try_from_slice(bytes).map_err(|e| ReportError::Font(e.to_string()));
        Ok(Self { regular: parse(REGULAR)?, bold: parse(BOLD)? })
    }
}

/// How a piece of text looks.
#[derive(Clone, Copy)]
pub(crate) struct Style {
    pub size: f32,
    pub bold: bool,
    pub color: Rgb<u8>,
}

impl Style {
    pub(crate) fn new(size: f32) -> Self {
        Self { size, bold: false, color: INK }
    }
    pub(crate) fn bold(mut self) -> Self {
        self.bold = true;
        self
    }
    pub(crate) fn color(mut self, color: Rgb<u8>) -> Self {
        self.color = color;
        self
    }
}

/// Where the given point sits on the text's box.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Align {
    Start,
    Center,
    End,
}

/// Coverage of rendered text, one value in 0..=1 per pixel, row-major.
struct Mask {
    width: u32,
    height: u32,
    alpha: Vec<f32>,
}

impl Mask {
    /// The same text turned 90 degrees counter-clockwise (it then reads bottom to top).
    fn rotated_ccw(&self) -> Mask {
        let (w, h) = (self.width, self.height);
        let mut alpha = vec![0.0; self.alpha.len()];
        for y in 0..h {
            for x in 0..w {
                // Source (x, y) lands at column y, row (w - 1 - x) of the h-wide result.
                let (nx, ny) = (y, w - 1 - x);
                alpha[(ny * h + nx) as usize] = self.alpha[(y * w + x) as usize];
            }
        }
        Mask { width: h, height: w, alpha }
    }
}

impl Fonts {
    fn face(&self, bold: bool) -> &FontRef<'static> {
        if bold { &self.bold } else { &self.regular }
    }

    /// Width and height in pixels of `text` set in `style` (height is the font's line box).
    pub(crate) fn measure(&self, text: &str, style: Style) -> (u32, u32) {
        let font = self.face(style.bold).as_scaled(PxScale::from(style.size));
        let (advance, _) = layout(&font, text);
        (advance.ceil() as u32, (font.ascent() - font.descent()).ceil() as u32)
    }

    fn render(&self, text: &str, style: Style) -> Mask {
        let font = self.face(style.bold).as_scaled(PxScale::from(style.size));
        let (advance, glyphs) = layout(&font, text);
        let width = advance.ceil() as u32 + 1;
        let height = (font.ascent() - font.descent()).ceil() as u32 + 1;
        let mut alpha = vec![0.0f32; (width * height) as usize];
        for glyph in glyphs {
            let Some(outline) = font.outline_glyph(glyph) else {
                continue; // spaces have no outline
            };
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, c| {
                let x = bounds.min.x as i64 + i64::from(gx);
                let y = bounds.min.y as i64 + i64::from(gy);
                if (0..i64::from(width)).contains(&x) && (0..i64::from(height)).contains(&y) {
                    let a = &mut alpha[(y as u32 * width + x as u32) as usize];
                    *a = (*a + c).min(1.0);
                }
            });
        }
        Mask { width, height, alpha }
    }
}

/// Positions the glyphs of `text` on one line with kerning; returns the advance and glyphs.
fn layout<F: Font, S: ScaleFont<F>>(font: &S, text: &str) -> (f32, Vec<ab_glyph::Glyph>) {
    let mut caret = 0.0f32;
    let mut previous = None;
    let mut glyphs = Vec::with_capacity(text.len());
    for c in text.chars() {
        let mut glyph = font.scaled_glyph(c);
        if let Some(prev) = previous {
            caret += font.kern(prev, glyph.id);
        }
        glyph.position = point(caret, font.ascent());
        caret += font.h_advance(glyph.id);
        previous = Some(glyph.id);
        glyphs.push(glyph);
    }
    (caret, glyphs)
}

/// An RGB picture being drawn, with the fonts to write on it.
pub(crate) struct Canvas {
    pub img: RgbImage,
    pub fonts: Fonts,
}

impl Canvas {
    /// A white canvas.
    pub(crate) fn new(width: u32, height: u32, fonts: Fonts) -> Self {
        Self { img: RgbImage::from_pixel(width, height, WHITE), fonts }
    }

    /// Mixes `color` into the pixel at (x, y) with opacity `a`; outside the canvas is ignored.
    pub(crate) fn blend(&mut self, x: i64, y: i64, color: Rgb<u8>, a: f32) {
        if x < 0 || y < 0 || x >= i64::from(self.img.width()) || y >= i64::from(self.img.height()) {
            return;
        }
        let a = a.clamp(0.0, 1.0);
        let px = self.img.get_pixel_mut(x as u32, y as u32);
        for (dst, src) in px.0.iter_mut().zip(color.0) {
            *dst = (f32::from(*dst) * (1.0 - a) + f32::from(src) * a).round() as u8;
        }
    }

    pub(crate) fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, color: Rgb<u8>) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.blend(xx, yy, color, 1.0);
            }
        }
    }

    /// A one-pixel outline just inside the rectangle.
    pub(crate) fn stroke_rect(&mut self, x: i64, y: i64, w: i64, h: i64, color: Rgb<u8>) {
        self.fill_rect(x, y, w, 1, color);
        self.fill_rect(x, y + h - 1, w, 1, color);
        self.fill_rect(x, y, 1, h, color);
        self.fill_rect(x + w - 1, y, 1, h, color);
    }

    /// An anti-aliased segment of the given width with round ends.
    pub(crate) fn line(&mut self, a: (f64, f64), b: (f64, f64), width: f64, color: Rgb<u8>) {
        let r = width / 2.0;
        let (x0, x1) = ((a.0.min(b.0) - r - 1.0) as i64, (a.0.max(b.0) + r + 1.0) as i64);
        let (y0, y1) = ((a.1.min(b.1) - r - 1.0) as i64, (a.1.max(b.1) + r + 1.0) as i64);
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = dx * dx + dy * dy;
        for y in y0..=y1 {
            for x in x0..=x1 {
                // Distance from the pixel centre to the segment gives the coverage.
                let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
                let t = if len2 == 0.0 { 0.0 } else { (((px - a.0) * dx + (py - a.1) * dy) / len2).clamp(0.0, 1.0) };
                let d = ((px - a.0 - t * dx).powi(2) + (py - a.1 - t * dy).powi(2)).sqrt();
                let coverage = (r + 0.5 - d).clamp(0.0, 1.0);
                if coverage > 0.0 {
                    self.blend(x, y, color, coverage as f32);
                }
            }
        }
    }

    /// An anti-aliased filled dot.
    pub(crate) fn dot(&mut self, c: (f64, f64), radius: f64, color: Rgb<u8>) {
        self.line(c, c, radius * 2.0, color);
    }

    /// Writes `text` so that the point (x, y) sits at the given alignment of its box.
    pub(crate) fn text(&mut self, x: f64, y: f64, text: &str, style: Style, h: Align, v: Align) {
        let mask = self.fonts.render(text, style);
        self.blit(&mask, x, y, style.color, h, v);
    }

    /// Like [`Self::text`] but turned 90 degrees counter-clockwise, reading bottom to top;
    /// the alignments refer to the rotated box.
    pub(crate) fn text_vertical(&mut self, x: f64, y: f64, text: &str, style: Style, h: Align, v: Align) {
        let mask = self.fonts.render(text, style).rotated_ccw();
        self.blit(&mask, x, y, style.color, h, v);
    }

    fn blit(&mut self, mask: &Mask, x: f64, y: f64, color: Rgb<u8>, h: Align, v: Align) {
        let offset = |pos: f64, size: u32, align: Align| {
            let size = f64::from(size);
            (match align {
                Align::Start => pos,
                Align::Center => pos - size / 2.0,
                Align::End => pos - size,
            })
            .round() as i64
        };
        let (ox, oy) = (offset(x, mask.width, h), offset(y, mask.height, v));
        for my in 0..mask.height {
            for mx in 0..mask.width {
                let a = mask.alpha[(my * mask.width + mx) as usize];
                if a > 0.0 {
                    self.blend(ox + i64::from(mx), oy + i64::from(my), color, a);
                }
            }
        }
    }
}

/// Relative luminance (0..255) of a colour, used to pick readable text over it.
pub(crate) fn luminance(c: Rgb<u8>) -> f64 {
    0.2126 * f64::from(c.0[0]) + 0.7152 * f64::from(c.0[1]) + 0.0722 * f64::from(c.0[2])
}
