//! The IDX format of MNIST-style datasets: a big-endian header (magic, dimensions) followed by
//! `u8` values. Files may be gzip-compressed (detected by content, not by name). Every header
//! field and the exact payload length are checked, so a truncated or corrupt file is an error
//! that names the file, never a panic or a silently short dataset; the payload is read no
//! further than the header promises, so a gzip bomb cannot fill memory.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
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

/// Reads an IDX image file, of any image size.
pub fn read_images(path: &Path) -> Result<Images, DataError> {
    let mut reader = open(path)?;
    let dims = read_header(path, &mut reader, IMAGES_MAGIC, 3)?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    if count > 0 && (rows == 0 || cols == 0) {
        return Err(invalid(path, format!("images of {rows}x{cols} pixels hold nothing")));
    }
    let len = count
        .checked_mul(rows)
        .and_then(|n| n.checked_mul(cols))
        .ok_or_else(|| invalid(path, format!("a header of {count} images of {rows}x{cols} is too large")))?;
    let pixels = read_payload(path, reader, len)?;
    Ok(Images { count, rows, cols, pixels })
}

/// Reads an IDX label file and checks that every label is below `classes`.
pub fn read_labels(path: &Path, classes: usize) -> Result<Vec<u8>, DataError> {
    let labels = read_any_labels(path)?;
    match first_label_past(&labels, classes) {
        Some((index, label)) => Err(label_past(path, index, label, classes)),
        None => Ok(labels),
    }
}

/// Reads an IDX label file without checking the labels against a class count.
pub fn read_any_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let mut reader = open(path)?;
    let count = read_header(path, &mut reader, LABELS_MAGIC, 1)?[0];
    read_payload(path, reader, count)
}

/// The first `(index, label)` with `label >= classes`.
pub fn first_label_past(labels: &[u8], classes: usize) -> Option<(usize, u8)> {
    labels.iter().enumerate().find(|&(_, &l)| usize::from(l) >= classes).map(|(i, &l)| (i, l))
}

/// The error for a label past the class count, naming the file and the index.
pub fn label_past(path: &Path, index: usize, label: u8, classes: usize) -> DataError {
    invalid(path, format!("label {label} at index {index} is past the {classes} classes (0..={})", classes - 1))
}

/// The file, gunzipped when it starts with the gzip magic.
fn open(path: &Path) -> Result<Box<dyn Read>, DataError> {
    let io = |source| DataError::Io { path: path.to_path_buf(), source };
    let mut file = BufReader::new(File::open(path).map_err(io)?);
    let head = std::io::BufRead::fill_buf(&mut file).map_err(io)?;
    if head.starts_with(&[0x1f, 0x8b]) { Ok(Box::new(GzDecoder::new(file))) } else { Ok(Box::new(file)) }
}

fn read_header(path: &Path, reader: &mut dyn Read, magic: u32, rank: usize) -> Result<Vec<usize>, DataError> {
    let header_len = 4 + 4 * rank;
    let mut header = vec![0u8; header_len];
    let got = read_up_to(path, reader, &mut header)?;
    if got < header_len {
        return Err(invalid(path, format!("file is {got} bytes, shorter than its {header_len}-byte header")));
    }
    let word = |i: usize| u32::from_be_bytes([header[4 * i], header[4 * i + 1], header[4 * i + 2], header[4 * i + 3]]);
    let found = word(0);
    if found != magic {
        return Err(invalid(path, format!("magic number 0x{found:08x}, expected 0x{magic:08x}")));
    }
    Ok((1..=rank).map(|i| word(i) as usize).collect())
}

/// Exactly `expected` bytes, then the end of the file.
fn read_payload(path: &Path, reader: Box<dyn Read>, expected: usize) -> Result<Vec<u8>, DataError> {
    // Grown as bytes arrive (not allocated from the header), so a header that lies about its
    // size costs no more memory than the data really there.
    let mut bytes = Vec::new();
    let mut limited = reader.take(expected as u64);
    limited.read_to_end(&mut bytes).map_err(|e| read_error(path, e))?;
    let actual = bytes.len();
    if actual < expected {
        return Err(invalid(path, format!("truncated: header promises {expected} data bytes, file has {actual}")));
    }
    if read_up_to(path, &mut limited.into_inner(), &mut [0u8; 1])? > 0 {
        return Err(invalid(
            path,
            format!("longer than its header says: more than the {expected} data bytes it promises"),
        ));
    }
    Ok(bytes)
}

/// Fills `buf` as far as the file goes; the number of bytes read.
fn read_up_to(path: &Path, reader: &mut dyn Read, buf: &mut [u8]) -> Result<usize, DataError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(path, e)),
        }
    }
    Ok(filled)
}

fn read_error(path: &Path, error: std::io::Error) -> DataError {
    match error.kind() {
        // Only the gzip decoder reports these: a plain file just ends.
        ErrorKind::InvalidInput | ErrorKind::InvalidData | ErrorKind::UnexpectedEof => {
            invalid(path, format!("gzip data is corrupt or truncated ({error})"))
        }
        _ => DataError::Io { path: path.to_path_buf(), source: error },
    }
}

fn invalid(path: &Path, problem: String) -> DataError {
    DataError::Invalid { path: PathBuf::from(path), problem }
}
