//! The IDX format of MNIST-style datasets: a big-endian header (magic, dimensions) followed by
//! `u8` values. Files may be gzip-compressed (detected by content, not by name). Every header
//! field and the exact payload length are checked, so a truncated or corrupt file is an error
//! that names the file, never a panic or a silently short dataset.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::DataError;

/// Magic number of an IDX file of `u8` images (three dimensions: count, rows, columns).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of `u8` labels (one dimension: count).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Images as stored: `count` images of `rows x cols` pixels, row-major, one byte per pixel.
#[derive(Debug, Clone)]
pub struct Images {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

/// Reads an IDX image file and checks that each image is `side x side`.
pub fn read_images(path: &Path, side: usize) -> Result<Images, DataError> {
    let bytes = read_decompressed(path)?;
    let dims = parse_header(path, &bytes, IMAGES_MAGIC, 3)?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    if rows != side || cols != side {
        return Err(invalid(path, format!("images are {rows}x{cols}, expected {side}x{side}")));
    }
    let pixels = payload(path, bytes, 16, count * rows * cols)?;
    Ok(Images { count, rows, cols, pixels })
}

/// Reads an IDX label file and checks that every label is below `classes`.
pub fn read_labels(path: &Path, classes: u8) -> Result<Vec<u8>, DataError> {
    let bytes = read_decompressed(path)?;
    let count = parse_header(path, &bytes, LABELS_MAGIC, 1)?[0];
    let labels = payload(path, bytes, 8, count)?;
    if let Some((index, &label)) = labels.iter().enumerate().find(|&(_, &l)| l >= classes) {
        return Err(invalid(path, format!("label {label} at index {index} is outside 0..={}", classes - 1)));
    }
    Ok(labels)
}

/// The file's bytes, gunzipped when they start with the gzip magic.
pub fn read_decompressed(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 4);
    GzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| invalid(path, format!("gzip data is corrupt or truncated ({e})")))?;
    Ok(out)
}

fn parse_header(path: &Path, bytes: &[u8], magic: u32, rank: usize) -> Result<Vec<usize>, DataError> {
    let header_len = 4 + 4 * rank;
    if bytes.len() < header_len {
        return Err(invalid(path, format!("file is {} bytes, shorter than its {header_len}-byte header", bytes.len())));
    }
    let word = |i: usize| u32::from_be_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]);
    let found = word(0);
    if found != magic {
        return Err(invalid(path, format!("magic number 0x{found:08x}, expected 0x{magic:08x}")));
    }
    Ok((1..=rank).map(|i| word(i) as usize).collect())
}

fn payload(path: &Path, mut bytes: Vec<u8>, header_len: usize, expected: usize) -> Result<Vec<u8>, DataError> {
    let actual = bytes.len() - header_len;
    if actual != expected {
        let problem = if actual < expected { "truncated" } else { "longer than its header says" };
        return Err(invalid(path, format!("{problem}: header promises {expected} data bytes, file has {actual}")));
    }
    bytes.drain(..header_len);
    Ok(bytes)
}

fn invalid(path: &Path, problem: String) -> DataError {
    DataError::Invalid { path: PathBuf::from(path), problem }
}
