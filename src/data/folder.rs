//! A folder of image files as a dataset: list the files, decode them in parallel (resized when
//! a size is given), check they share one size, choose gray or RGB (RGB when any image has
//! colour), measure the training images' per-channel mean and std, and keep the result in the
//! user cache. A file that cannot be used is an error naming it, or, under
//! [`BadInput::Skip`], left out and counted.

use std::path::{Path, PathBuf};

use image::DynamicImage;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::cache::{self, Cached};
use super::decode;
use super::listing::{self, Entry, Listing};
use super::{
    BadInput, CacheUse, ColorMode, DataError, DataSplit, Dataset, DecodeLimits, ImageSize, InputContract, Skipped,
};

/// How an image folder becomes a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderOptions {
    /// The size every image is resized to; `None`: the size they all share.
    pub size: Option<ImageSize>,
    /// Gray or RGB; `None`: RGB when any image has colour, else gray.
    pub mode: Option<ColorMode>,
    /// The share of each class held out for testing (single-folder layout only).
    pub test_fraction: f64,
    /// Seeds that split.
    pub split_seed: u64,
    pub bad: BadInput,
    pub limits: DecodeLimits,
    /// Whether the decoded set is read from and written to the cache.
    pub cache: bool,
    /// Where the cache lives; `None`: `$XDG_CACHE_HOME/engine/datasets` (or
    /// `~/.cache/engine/datasets`) of whoever loads, so a plan made on one machine caches on
    /// another under that machine's user cache.
    pub cache_dir: Option<PathBuf>,
}

impl Default for FolderOptions {
    fn default() -> Self {
        FolderOptions {
            size: None,
            mode: None,
            test_fraction: 0.2,
            split_seed: 0,
            bad: BadInput::Fail,
            limits: DecodeLimits::default(),
            cache: true,
            cache_dir: None,
        }
    }
}

/// The options that change the decoded bytes: the cache key digests them.
#[derive(Serialize)]
struct DecodeKey<'a> {
    size: Option<ImageSize>,
    mode: Option<ColorMode>,
    bad: BadInput,
    limits: &'a DecodeLimits,
}

/// Reads the image folder `dir` (see the `listing` module for the layouts).
pub fn load(dir: &Path, options: &FolderOptions) -> Result<DataSplit, DataError> {
    let listing = listing::list(dir, options.test_fraction, options.split_seed)?;
    let key = DecodeKey { size: options.size, mode: options.mode, bad: options.bad, limits: &options.limits };
    let cache_root = match options.cache {
        true => options.cache_dir.clone().or_else(|| crate::files::user_cache_dir().map(|d| d.join("datasets"))),
        false => None,
    };
    let cache_path = cache_root.map(|root| cache::path(&root, dir, &listing, &key));
    let name = dir.file_name().map_or_else(|| "images".into(), |n| n.to_string_lossy().into_owned());
    let split = |cached: Cached, cache| DataSplit {
        name: name.clone(),
        location: dir.to_path_buf(),
        train: cached.train,
        test: cached.test,
        contract: cached.contract,
        skipped: cached.skipped,
        cache,
    };
    if let Some(cached) = cache_path.as_deref().and_then(cache::read) {
        return Ok(split(cached, CacheUse::Hit(cache_path.unwrap_or_default())));
    }
    let cached = decode_listing(dir, listing, options)?;
    let cache = match cache_path {
        None => CacheUse::Off,
        Some(path) => match cache::write(&path, &cached) {
            Ok(()) => CacheUse::Written(path),
            Err(e) => CacheUse::NotWritten { path, reason: e.to_string() },
        },
    };
    Ok(split(cached, cache))
}

/// Decodes (in parallel), checks and measures the listed files.
fn decode_listing(dir: &Path, listing: Listing, options: &FolderOptions) -> Result<Cached, DataError> {
    let mut skipped = Vec::new();
    let mut decode = |entries: Vec<Entry>| {
        let images =
            entries.par_iter().map(|e| decode::decode_file(&e.path, e.len, options.size, options.limits)).collect();
        keep_good(entries, images, options.bad, &mut skipped)
    };
    let (train, test) = (decode(listing.train)?, decode(listing.test)?);
    let size = common_size(dir, train.iter().chain(&test))?;
    let mode = options.mode.unwrap_or_else(|| common_mode(train.iter().chain(&test).map(|(_, image)| image)));
    let (train, test) = (into_dataset(train, mode, size), into_dataset(test, mode, size));
    let classes = listing.classes;
    if let Some(missing) = (0..classes.len()).find(|&l| !train.labels.contains(&(l as u8))) {
        let problem = format!("class {} has no usable training image left", classes[missing]);
        return Err(DataError::Invalid { path: dir.join(&classes[missing]), problem });
    }
    if test.is_empty() {
        return Err(DataError::Invalid { path: dir.to_path_buf(), problem: "has no usable test image left".into() });
    }
    let (height, width) = (size.height as usize, size.width as usize);
    let contract = InputContract::measured(mode.channels(), height, width, &train.pixels, classes);
    Ok(Cached { train, test, contract, skipped })
}

/// Pairs each entry with its result; a failure is an error naming the file, or under
/// [`BadInput::Skip`] a [`Skipped`] record.
fn keep_good<T>(
    entries: Vec<Entry>,
    results: Vec<Result<T, String>>,
    bad: BadInput,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<(Entry, T)>, DataError> {
    let mut good = Vec::with_capacity(entries.len());
    for (entry, result) in entries.into_iter().zip(results) {
        match (result, bad) {
            (Ok(value), _) => good.push((entry, value)),
            (Err(problem), BadInput::Fail) => return Err(DataError::Invalid { path: entry.path, problem }),
            (Err(reason), BadInput::Skip) => skipped.push(Skipped { path: entry.path, reason }),
        }
    }
    Ok(good)
}

/// The images as `mode` planes of `size`, one after another, with their labels.
fn into_dataset(images: Vec<(Entry, DynamicImage)>, mode: ColorMode, size: ImageSize) -> Dataset {
    let labels = images.iter().map(|(e, _)| e.label).collect();
    let image_len = mode.channels() * size.width as usize * size.height as usize;
    let mut pixels = vec![0u8; images.len() * image_len];
    pixels.par_chunks_mut(image_len).zip(images).for_each(|(out, (_, image))| decode::write_planes(image, mode, out));
    Dataset { labels, pixels }
}

/// RGB when any image has colour, else gray.
fn common_mode<'a>(mut images: impl Iterator<Item = &'a DynamicImage>) -> ColorMode {
    match images.any(|image| decode::mode_of(image) == ColorMode::Rgb) {
        true => ColorMode::Rgb,
        false => ColorMode::Gray,
    }
}

/// The size every image has, or an error naming two files of different sizes.
fn common_size<'a>(
    dir: &Path,
    mut images: impl Iterator<Item = &'a (Entry, DynamicImage)>,
) -> Result<ImageSize, DataError> {
    let (first, image) = images
        .next()
        .ok_or_else(|| DataError::Invalid { path: dir.to_path_buf(), problem: "has no usable images".into() })?;
    let size = decode::size_of(image);
    match images.find(|(_, other)| decode::size_of(other) != size) {
        None => Ok(size),
        Some((other, other_image)) => Err(DataError::Invalid {
            path: dir.to_path_buf(),
            problem: format!(
                "images differ in size ({} is {}, {} is {}) and no size was given: give one (e.g. {}) to resize them all",
                first.path.display(),
                size,
                other.path.display(),
                decode::size_of(other_image),
                size
            ),
        }),
    }
}
