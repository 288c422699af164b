//! Datasets: where labelled images come from (FashionMNIST, any IDX set of the MNIST family, a
//! folder of image files), the input contract they share (size, channels, statistics, class
//! names), decoding and caching, and turning index lists into normalised `f32` batches. Images
//! stay `u8` in memory, planar (CHW), and are normalised per batch.

pub mod cache;
pub mod contract;
pub mod decode;
pub mod fashion_mnist;
pub mod folder;
pub mod idx;
pub mod idx_set;
mod listing;
pub mod source;
pub mod split;

use std::path::PathBuf;

pub use contract::{ClassNames, FASHION_MNIST_CLASSES, InputContract, Layout};
pub use decode::{ColorMode, DecodeLimits, ImageSize};
pub use fashion_mnist::{Origin, load};
pub use folder::FolderOptions;
pub use idx_set::IdxOptions;
pub use source::{DataFlags, DataSource};
pub use split::{BadInput, CacheUse, DataSplit, Part, SetDescription, Skipped};

/// Pixels per FashionMNIST image (28 x 28); other sets read [`InputContract::pixels`].
pub const IMAGE_PIXELS: usize = 28 * 28;
/// FashionMNIST's number of classes; other sets read [`InputContract::classes`].
pub const CLASSES: usize = 10;

/// Errors while finding, downloading, reading or decoding a dataset.
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
    /// A data selection (`--data` value) or an option that does not fit it.
    #[error("{0}")]
    Selection(String),
    #[error("downloading {url} failed: {reason}")]
    Download { url: String, reason: String },
    #[error("{file}: checksum {actual} does not match the published {expected}; the download is corrupt")]
    Checksum { file: String, expected: String, actual: String },
}

/// Labelled images, `u8` pixels: `len()` images of equal size one after another, each laid
/// out as its [`InputContract`] says.
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

    /// Bytes per image, from the lengths (0 for an empty set).
    pub fn image_len(&self) -> usize {
        self.pixels.len().checked_div(self.labels.len()).unwrap_or(0)
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let len = self.image_len();
        &self.pixels[i * len..(i + 1) * len]
    }

    /// The digest MLflow records for the first `n` examples as a dataset input: the first 8 hex
    /// digits of a SHA-256 of their pixels, then their labels.
    pub fn digest(&self, n: usize) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(&self.pixels[..n * self.image_len()]);
        hash.update(&self.labels[..n]);
        crate::hex::lower_hex(&hash.finalize()[..4])
    }

    /// The first `n` examples (all of them if there are fewer).
    pub fn truncated(mut self, n: usize) -> Dataset {
        let (n, len) = (n.min(self.len()), self.image_len());
        self.labels.truncate(n);
        self.pixels.truncate(n * len);
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

crate::choice::choice!(Normalization { Unit => "unit", Meanstd => "meanstd" });

/// Fills `inputs` (`[indices.len(), image_len]`) and `labels` with the examples at `indices`,
/// each input `byte * scale + shift` with the `(scale, shift)` of its channel.
pub fn gather_batch(
    data: &Dataset,
    indices: &[usize],
    affine: &crate::backend::ChannelAffine,
    inputs: &mut Vec<f32>,
    labels: &mut Vec<f32>,
) {
    inputs.clear();
    labels.clear();
    crate::backend::cpu::gather_batch(&data.pixels, &data.labels, data.image_len(), indices, *affine, inputs, labels);
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
