//! Image files to contract bytes: the format is read from the content (not the name), the
//! decoder runs under limits (a side and an allocation cap, so a decompression bomb is an
//! error, not an exhausted machine), the picture is resized with a bilinear filter in its own
//! colour type, then becomes gray or RGB as planar CHW `u8`. Training and serving compose the
//! same functions, so a served image is prepared exactly as the training images were.

use std::io::{Cursor, Read};
use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, ImageError, ImageReader, Limits};
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

/// Decodes the image at `path`, listed as `listed_len` bytes long, resized to `size` when one
/// is given, in its own colour type.
pub fn decode_file(
    path: &Path,
    listed_len: u64,
    size: Option<ImageSize>,
    limits: DecodeLimits,
) -> Result<DynamicImage, String> {
    let bytes = read(path, listed_len)?;
    decode(&bytes, size, limits)
}

/// Decodes an encoded image (PNG, JPEG, BMP, WebP) into the bytes `contract` describes, as
/// training prepared its images.
pub fn decode_for_contract(bytes: &[u8], contract: &InputContract, limits: DecodeLimits) -> Result<Vec<u8>, String> {
    let mode = if contract.channels == 3 { ColorMode::Rgb } else { ColorMode::Gray };
    let size = ImageSize { width: contract.width as u32, height: contract.height as u32 };
    Ok(planes(decode(bytes, Some(size), limits)?, mode))
}

/// The size of a decoded image.
pub fn size_of(image: &DynamicImage) -> ImageSize {
    ImageSize { width: image.width(), height: image.height() }
}

/// Gray or RGB, from the image's colour type.
pub fn mode_of(image: &DynamicImage) -> ColorMode {
    if image.color().has_color() { ColorMode::Rgb } else { ColorMode::Gray }
}

/// The image as `mode`, laid out as planes (CHW). Alpha is dropped.
pub fn planes(image: DynamicImage, mode: ColorMode) -> Vec<u8> {
    let mut planes = vec![0u8; mode.channels() * image.width() as usize * image.height() as usize];
    write_planes(image, mode, &mut planes);
    planes
}

/// Writes the image as `mode` planes (CHW) into `out`, which holds exactly that many bytes.
pub fn write_planes(image: DynamicImage, mode: ColorMode, out: &mut [u8]) {
    match mode {
        ColorMode::Gray => out.copy_from_slice(&image.into_luma8()),
        ColorMode::Rgb => {
            let rgb = image.into_rgb8();
            let plane = out.len() / 3;
            for (i, px) in rgb.chunks_exact(3).enumerate() {
                for (c, &v) in px.iter().enumerate() {
                    out[c * plane + i] = v;
                }
            }
        }
    }
}

/// Decodes under `limits` and resizes (bilinear, in the image's own colour type) to `size`.
fn decode(bytes: &[u8], size: Option<ImageSize>, limits: DecodeLimits) -> Result<DynamicImage, String> {
    if bytes.is_empty() {
        return Err("the file is empty (0 bytes)".into());
    }
    let mut reader =
        ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| format!("cannot read it: {e}"))?;
    if reader.format().is_none() {
        return Err("not an image this engine reads (PNG, JPEG, BMP or WebP)".into());
    }
    reader.limits(limits.image_limits());
    let image = reader.decode().map_err(|e| explain(e, limits))?;
    Ok(match size {
        Some(size) if size != size_of(&image) => image.resize_exact(size.width, size.height, FilterType::Triangle),
        _ => image,
    })
}

/// Reads the whole file into a buffer sized by the listing's length. That spares the `stat`
/// that `fs::read` (and `File::read_to_end`) make to learn it, a fifth of the read on a folder
/// of small images; reading through `take` gets the plain read loop. A file that changed since
/// the listing is still read whole.
fn read(path: &Path, listed_len: u64) -> Result<Vec<u8>, String> {
    let failed = |e: std::io::Error| format!("cannot read it: {e}");
    let file = std::fs::File::open(path).map_err(failed)?;
    let mut bytes = Vec::with_capacity(listed_len.min(64 << 20) as usize + 1);
    (&file).take(u64::MAX).read_to_end(&mut bytes).map_err(failed)?;
    Ok(bytes)
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
