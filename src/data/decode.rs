//! Image files to contract bytes: the format is read from the content (not the name), the
//! decoder runs under limits (a side and an allocation cap, so a decompression bomb is an
//! error, not an exhausted machine), and the picture becomes gray or RGB, resized with a
//! bilinear filter to the contract's size, as planar CHW `u8`. Training and serving call the
//! same function, so a served image is prepared exactly as the training images were.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Seek};
use std::path::Path;

use image::imageops::FilterType;
use image::{ColorType, DynamicImage, ImageDecoder, ImageError, ImageReader, Limits};
use serde::{Deserialize, Serialize};

use super::InputContract;

/// Gray (one channel) or RGB (three). Alpha is dropped, not composited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorMode {
    Gray,
    Rgb,
}

crate::choice::choice!(ColorMode { Gray => "gray", Rgb => "rgb" });

impl ColorMode {
    pub fn channels(self) -> usize {
        match self {
            ColorMode::Gray => 1,
            ColorMode::Rgb => 3,
        }
    }

    fn of(color: ColorType) -> ColorMode {
        if color.has_color() { ColorMode::Rgb } else { ColorMode::Gray }
    }
}

/// An image size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSize {
    pub width: u32,
    pub height: u32,
}

impl std::fmt::Display for ImageSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl std::str::FromStr for ImageSize {
    type Err = String;

    /// `WIDTHxHEIGHT` (`64x48`) or one number for a square (`32`).
    fn from_str(s: &str) -> Result<ImageSize, String> {
        let side = |t: &str| t.trim().parse::<u32>().ok().filter(|&n| (1..=4096).contains(&n));
        let parsed = match s.split_once(['x', 'X']) {
            Some((w, h)) => side(w).zip(side(h)),
            None => side(s).map(|n| (n, n)),
        };
        parsed.map(|(width, height)| ImageSize { width, height }).ok_or_else(|| {
            format!("image size {s:?} is not WIDTHxHEIGHT (e.g. 64x48) or one side (e.g. 32), each 1 to 4096")
        })
    }
}

/// The decoder's limits: no image wider or taller than `max_side`, no decode needing more
/// than `max_alloc` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeLimits {
    pub max_side: u32,
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    /// 10,000 pixels a side and 256 MiB: any photograph, not a bomb.
    fn default() -> Self {
        DecodeLimits { max_side: 10_000, max_alloc: 256 << 20 }
    }
}

impl DecodeLimits {
    fn image_limits(self) -> Limits {
        let mut limits = Limits::default();
        limits.max_image_width = Some(self.max_side);
        limits.max_image_height = Some(self.max_side);
        limits.max_alloc = Some(self.max_alloc);
        limits
    }
}

/// What an image file's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub size: ImageSize,
    pub color: ColorMode,
}

/// Reads only the header of the image at `path`.
pub fn probe(path: &Path, limits: DecodeLimits) -> Result<Header, String> {
    let decoder = reader(open(path)?, limits)?.into_decoder().map_err(|e| explain(e, limits))?;
    let (width, height) = decoder.dimensions();
    // Not every decoder checks its limits before decoding; the header is enough to refuse.
    if width.max(height) > limits.max_side || decoder.total_bytes() > limits.max_alloc {
        let e = image::error::LimitError::from_kind(image::error::LimitErrorKind::DimensionError);
        return Err(explain(ImageError::Limits(e), limits));
    }
    Ok(Header { size: ImageSize { width, height }, color: ColorMode::of(decoder.color_type()) })
}

/// Decodes the image at `path` as `mode`, resized to `size`, into planar bytes.
pub fn decode_file(path: &Path, mode: ColorMode, size: ImageSize, limits: DecodeLimits) -> Result<Vec<u8>, String> {
    let image = reader(open(path)?, limits)?.decode().map_err(|e| explain(e, limits))?;
    Ok(to_planes(image, mode, size))
}

/// Decodes an encoded image (PNG, JPEG, BMP, WebP) into the bytes `contract` describes, as
/// training prepared its images.
pub fn decode_for_contract(bytes: &[u8], contract: &InputContract, limits: DecodeLimits) -> Result<Vec<u8>, String> {
    let mode = if contract.channels == 3 { ColorMode::Rgb } else { ColorMode::Gray };
    let size = ImageSize { width: contract.width as u32, height: contract.height as u32 };
    if bytes.is_empty() {
        return Err("the image is empty (0 bytes)".into());
    }
    let image = reader(Cursor::new(bytes), limits)?.decode().map_err(|e| explain(e, limits))?;
    Ok(to_planes(image, mode, size))
}

fn open(path: &Path) -> Result<BufReader<File>, String> {
    let file = File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let len = file.metadata().map_err(|e| format!("cannot read it: {e}"))?.len();
    if len == 0 {
        return Err("the file is empty (0 bytes)".into());
    }
    Ok(BufReader::new(file))
}

fn reader<R: BufRead + Seek>(source: R, limits: DecodeLimits) -> Result<ImageReader<R>, String> {
    let mut reader = ImageReader::new(source).with_guessed_format().map_err(|e| format!("cannot read it: {e}"))?;
    if reader.format().is_none() {
        return Err("not an image this engine reads (PNG, JPEG, BMP or WebP)".into());
    }
    reader.limits(limits.image_limits());
    Ok(reader)
}

fn explain(error: ImageError, limits: DecodeLimits) -> String {
    match error {
        ImageError::Limits(e) => format!(
            "the image exceeds the decoding limits ({e}; at most {} pixels a side and {} MiB decoded): \
             a decompression bomb, or a picture to shrink first",
            limits.max_side,
            limits.max_alloc >> 20
        ),
        ImageError::Unsupported(e) => format!("not an image this engine reads ({e})"),
        ImageError::IoError(e) => format!("the image is truncated or unreadable ({e})"),
        other => format!("the image is corrupt or truncated ({other})"),
    }
}

/// Converts to `mode`, resizes to `size` when it differs, and lays the channels out as planes.
fn to_planes(image: DynamicImage, mode: ColorMode, size: ImageSize) -> Vec<u8> {
    let same_size = image.width() == size.width && image.height() == size.height;
    let resize = |img: DynamicImage| match same_size {
        true => img,
        false => img.resize_exact(size.width, size.height, FilterType::Triangle),
    };
    match mode {
        ColorMode::Gray => resize(DynamicImage::ImageLuma8(image.into_luma8())).into_luma8().into_raw(),
        ColorMode::Rgb => {
            let rgb = resize(DynamicImage::ImageRgb8(image.into_rgb8())).into_rgb8().into_raw();
            let plane = rgb.len() / 3;
            let mut planes = vec![0u8; rgb.len()];
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                for (c, &v) in px.iter().enumerate() {
                    planes[c * plane + i] = v;
                }
            }
            planes
        }
    }
}
