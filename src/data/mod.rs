//! FashionMNIST: locating (or downloading) the files, reading them, and turning index lists into
//! normalised `f32` batches. Images stay `u8` in memory (47 MB for the training set) and are
//! normalised per batch.

pub mod fashion_mnist;
pub mod idx;

use std::path::PathBuf;

pub use fashion_mnist::{DataSource, load};

/// Pixels per image (28 x 28).
pub const IMAGE_PIXELS: usize = 28 * 28;
/// Number of classes.
pub const CLASSES: usize = 10;

/// Errors while finding, downloading or reading the dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
    #[error("{images_path} has {images} images but {labels_path} has {labels} labels")]
    CountMismatch { images_path: PathBuf, images: usize, labels_path: PathBuf, labels: usize },
    #[error("{0}")]
    NotFound(String),
    #[error("downloading {url} failed: {reason}")]
    Download { url: String, reason: String },
    #[error("{file}: checksum {actual} does not match the published {expected}; the download is corrupt")]
    Checksum { file: String, expected: String, actual: String },
}

/// Labelled images, `u8` pixels.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * IMAGE_PIXELS..(i + 1) * IMAGE_PIXELS]
    }

    /// The first `n` examples (all of them if there are fewer).
    pub fn truncated(mut self, n: usize) -> Dataset {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.pixels.truncate(n * IMAGE_PIXELS);
        self
    }
}

/// How pixels become network inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    /// `pixel / 255`.
    Unit,
    /// `(pixel / 255 - mean) / std` with the training set's mean and standard deviation.
    Meanstd,
}

impl Normalization {
    /// FashionMNIST's training-set statistics of `pixel / 255`.
    pub const MEAN: f32 = 0.2860;
    pub const STD: f32 = 0.3530;

    /// `(scale, shift)` such that an input is `pixel * scale + shift`.
    pub fn affine(self) -> (f32, f32) {
        match self {
            Normalization::Unit => (1.0 / 255.0, 0.0),
            Normalization::Meanstd => (1.0 / (255.0 * Self::STD), -Self::MEAN / Self::STD),
        }
    }
}

crate::choice::choice!(Normalization { Unit => "unit", Meanstd => "meanstd" });

/// Fills `inputs` (`[indices.len(), 784]`) and `labels` with the examples at `indices`.
pub fn gather_batch(
    data: &Dataset,
    indices: &[usize],
    norm: Normalization,
    inputs: &mut Vec<f32>,
    labels: &mut Vec<f32>,
) {
    inputs.clear();
    labels.clear();
    crate::backend::cpu::gather_batch(&data.pixels, &data.labels, IMAGE_PIXELS, indices, norm.affine(), inputs, labels);
}

/// Splits `0..n` into shuffled training indices and validation indices (`fraction` of them),
/// both drawn from `seed`.
pub fn split_indices(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut indices: Vec<usize> = (0..n).collect();
    crate::rng::Rng::new(seed).shuffle(&mut indices);
    let n_val = ((n as f64) * fraction).round() as usize;
    let train = indices.split_off(n_val.min(n));
    (train, indices)
}
