//! The input contract: what one example is (channels, height, width, how its bytes are laid
//! out, how a byte becomes a number, the per-channel mean and standard deviation) and what the
//! labels mean (the class names). Every dataset source produces one; training, evaluation,
//! saving and serving read it instead of assuming FashionMNIST's 28x28 gray images.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{DataError, Normalization};

/// FashionMNIST's class names, indexed by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// How an image's bytes are ordered. Only planar CHW exists: the convolution wants one plane per
/// channel, and a gray image is the same bytes in either order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Channel planes one after another, each row-major: byte `(c * height + y) * width + x`.
    Chw,
}

/// The shape, scale, statistics and class names of a dataset's examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputContract {
    /// 1 (gray) or 3 (RGB).
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub layout: Layout,
    /// A pixel's value before normalisation is `byte * pixel_scale` (1/255: into `[0, 1]`).
    pub pixel_scale: f32,
    /// Per channel, of `byte * pixel_scale` over the training images.
    pub mean: Vec<f32>,
    /// Per channel, of `byte * pixel_scale` over the training images; never zero.
    pub std: Vec<f32>,
    /// Indexed by label; at least two.
    pub class_names: Vec<String>,
}

impl InputContract {
    /// FashionMNIST's training-set statistics of `pixel / 255`.
    pub const FASHION_MNIST_MEAN: f32 = 0.2860;
    pub const FASHION_MNIST_STD: f32 = 0.3530;

    /// FashionMNIST: 1x28x28 gray images, its published mean and std, the ten clothing names.
    pub fn fashion_mnist() -> InputContract {
        InputContract {
            channels: 1,
            height: 28,
            width: 28,
            layout: Layout::Chw,
            pixel_scale: 1.0 / 255.0,
            mean: vec![Self::FASHION_MNIST_MEAN],
            std: vec![Self::FASHION_MNIST_STD],
            class_names: FASHION_MNIST_CLASSES.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The contract of planar images of `channels` x `height` x `width` bytes scaled into
    /// `[0, 1]`, with the per-channel statistics of `train_pixels`, the training images.
    pub fn measured(
        channels: usize,
        height: usize,
        width: usize,
        train_pixels: &[u8],
        class_names: Vec<String>,
    ) -> InputContract {
        let (mean, std) = channel_stats(train_pixels, channels, height * width);
        InputContract { channels, height, width, layout: Layout::Chw, pixel_scale: 1.0 / 255.0, mean, std, class_names }
    }

    /// Bytes (and network inputs) per example: `channels * height * width`.
    pub fn pixels(&self) -> usize {
        self.channels * self.height * self.width
    }

    pub fn classes(&self) -> usize {
        self.class_names.len()
    }

    /// `(scale, shift)` per channel such that an input is `byte * scale + shift`.
    pub fn affine(&self, norm: Normalization) -> Vec<(f32, f32)> {
        match norm {
            Normalization::Unit => vec![(self.pixel_scale, 0.0); self.channels],
            Normalization::Meanstd => {
                self.mean.iter().zip(&self.std).map(|(&m, &s)| (self.pixel_scale / s, -m / s)).collect()
            }
        }
    }

    /// Checks the fields agree with each other, so a contract read from a file can be trusted.
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.channels, 1 | 3) {
            return Err(format!("{} channels; only 1 (gray) and 3 (RGB) are supported", self.channels));
        }
        if self.height == 0 || self.width == 0 {
            return Err(format!("an empty image size {}x{}", self.width, self.height));
        }
        if self.mean.len() != self.channels || self.std.len() != self.channels {
            return Err(format!(
                "{} means and {} standard deviations for {} channels",
                self.mean.len(),
                self.std.len(),
                self.channels
            ));
        }
        if self.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) || self.mean.iter().any(|m| !m.is_finite()) {
            return Err("a standard deviation that is not positive, or a mean that is not finite".into());
        }
        if self.classes() < 2 {
            return Err(format!("{} class(es); a classifier needs at least two", self.classes()));
        }
        Ok(())
    }
}

/// Where a labelled set's class names come from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClassNames {
    /// `0`, `1`, ... up to the largest label found.
    #[default]
    Numbered,
    /// The names themselves, indexed by label.
    List(Vec<String>),
    /// A text file with one name per line (blank lines ignored).
    File(std::path::PathBuf),
}

impl ClassNames {
    /// A command-line value: the path of an existing file, else a comma-separated list.
    pub fn from_arg(arg: &str) -> ClassNames {
        if Path::new(arg).is_file() {
            ClassNames::File(arg.into())
        } else {
            ClassNames::List(arg.split(',').map(|s| s.trim().to_string()).collect())
        }
    }

    /// The names, or `None` when they are to be numbered. Names must be unique and non-empty.
    pub fn resolve(&self) -> Result<Option<Vec<String>>, DataError> {
        let (names, origin) = match self {
            ClassNames::Numbered => return Ok(None),
            ClassNames::List(names) => (names.clone(), Path::new("the class-name list")),
            ClassNames::File(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| DataError::Io { path: path.clone(), source })?;
                (text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect(), path.as_path())
            }
        };
        let invalid = |problem: String| DataError::Invalid { path: origin.to_path_buf(), problem };
        if let Some(i) = names.iter().position(|n| n.is_empty()) {
            return Err(invalid(format!("class name {i} is empty")));
        }
        if let Some((i, name)) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)) {
            return Err(invalid(format!("class name {name:?} appears twice (again at {i})")));
        }
        if let (ClassNames::List(_), [only]) = (self, names.as_slice()) {
            return Err(invalid(format!("{only:?} is neither a file nor a comma-separated list of class names")));
        }
        if names.len() < 2 || names.len() > 256 {
            return Err(invalid(format!("{} class names; give between 2 and 256", names.len())));
        }
        Ok(Some(names))
    }
}

/// The numbered names `0..n`.
pub fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

/// Per-channel mean and standard deviation of `byte / 255` over planar images of `channels`
/// planes of `plane` bytes. Sums are exact integers, so the result does not depend on how the
/// work is split. A constant channel gets a standard deviation of 1, so normalising is a shift.
pub fn channel_stats(pixels: &[u8], channels: usize, plane: usize) -> (Vec<f32>, Vec<f32>) {
    use rayon::prelude::*;
    let image = channels * plane;
    let zero = || vec![(0u64, 0u64); channels];
    let sums = pixels
        .par_chunks(image.max(1))
        .fold(zero, |mut acc, img| {
            for (c, values) in img.chunks(plane.max(1)).enumerate() {
                // u32 sums over at most 65,536 bytes cannot overflow (65,536 * 255^2 < 2^32)
                // and vectorise; u64 carries them across pieces.
                for piece in values.chunks(1 << 16) {
                    let (s, q) = piece.iter().fold((0u32, 0u32), |(s, q), &v| (s + v as u32, q + v as u32 * v as u32));
                    acc[c].0 += u64::from(s);
                    acc[c].1 += u64::from(q);
                }
            }
            acc
        })
        .reduce(zero, |a, b| a.iter().zip(&b).map(|(x, y)| (x.0 + y.0, x.1 + y.1)).collect());
    let n = (pixels.len() / channels.max(1)).max(1) as f64;
    sums.iter()
        .map(|&(s, q)| {
            let mean = s as f64 / n / 255.0;
            let var = (q as f64 / n / (255.0 * 255.0) - mean * mean).max(0.0);
            let std = if var.sqrt() < 1e-6 { 1.0 } else { var.sqrt() };
            (mean as f32, std as f32)
        })
        .unzip()
}
