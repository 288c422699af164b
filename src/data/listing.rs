//! Which files an image folder holds and which set each belongs to. Two layouts:
//! `DIR/<class>/<image>` split into training and test per class by a seeded shuffle, or
//! `DIR/train/<class>/` and `DIR/test/<class>/` as given. Classes are the sorted folder names
//! (as torchvision's `ImageFolder` orders them); images are the files with a PNG, JPEG, BMP or
//! WebP extension, in any case; hidden files and other names are ignored.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use rayon::prelude::*;

use super::DataError;

/// File extensions read as images.
pub const IMAGE_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "bmp", "webp"];

/// One image file, with what the cache key needs to notice a change.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub label: u8,
    pub len: u64,
    /// Modification time in nanoseconds since the epoch (0 where the system has none).
    pub modified: u128,
}

/// An image folder's classes and its training and test files.
#[derive(Debug, Clone)]
pub struct Listing {
    pub classes: Vec<String>,
    pub train: Vec<Entry>,
    pub test: Vec<Entry>,
}

/// Lists `dir`; `test_fraction` and `seed` split the single-folder layout.
pub fn list(dir: &Path, test_fraction: f64, seed: u64) -> Result<Listing, DataError> {
    let (train_dir, test_dir) = (dir.join("train"), dir.join("test"));
    if train_dir.is_dir() && test_dir.is_dir() {
        let classes = class_dirs(&train_dir)?;
        let train = classes
            .par_iter()
            .enumerate()
            .map(|(l, c)| class_files(&train_dir.join(c), l))
            .collect::<Result<_, _>>()?;
        let test_classes = class_dirs(&test_dir)?;
        if let Some(extra) = test_classes.iter().find(|c| !classes.contains(c)) {
            return Err(invalid(&test_dir.join(extra), "is a class the training folder does not have".into()));
        }
        let test = classes
            .par_iter()
            .enumerate()
            .filter(|(_, c)| test_classes.contains(c))
            .map(|(l, c)| class_files(&test_dir.join(c), l))
            .collect::<Result<_, _>>()?;
        return Ok(Listing { classes, train: concat(train), test: concat(test) });
    }
    if !(0.0..1.0).contains(&test_fraction) {
        return Err(DataError::Selection(format!("a test fraction of {test_fraction} is not in [0, 1)")));
    }
    let classes = class_dirs(dir)?;
    let listed: Vec<Vec<Entry>> =
        classes.par_iter().enumerate().map(|(l, c)| class_files(&dir.join(c), l)).collect::<Result<_, _>>()?;
    let mut rng = crate::rng::Rng::new(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for mut files in listed {
        rng.shuffle(&mut files);
        let n_test = (files.len() as f64 * test_fraction).round() as usize;
        test.extend(files.drain(..n_test));
        train.extend(files);
    }
    if test.is_empty() {
        return Err(invalid(
            dir,
            format!("a test fraction of {test_fraction} leaves no test images; raise it or add images"),
        ));
    }
    Ok(Listing { classes, train, test })
}

/// The sorted names of the folders in `dir`: at least two, at most 256 (labels are bytes).
fn class_dirs(dir: &Path) -> Result<Vec<String>, DataError> {
    let mut classes = Vec::new();
    for entry in read_dir(dir)? {
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') || !path.is_dir() {
            continue;
        }
        let name = name.into_string().map_err(|_| invalid(&path, "has a name that is not UTF-8".into()))?;
        classes.push(name);
    }
    classes.sort();
    match classes.len() {
        0 => Err(invalid(
            dir,
            "holds no class folders: expected DIR/<class>/<image> or DIR/train/<class>/ and DIR/test/<class>/".into(),
        )),
        1 => Err(invalid(dir, format!("holds one class folder ({}); a classifier needs at least two", classes[0]))),
        n if n > 256 => Err(invalid(dir, format!("holds {n} class folders; at most 256 are supported"))),
        _ => Ok(classes),
    }
}

/// The image files of one class folder, sorted by name; none is an error. The files are
/// examined in parallel, each relative to its folder: on a folder of 70,000 small images this
/// is most of a cached load.
fn class_files(dir: &Path, label: usize) -> Result<Vec<Entry>, DataError> {
    let mut files: Vec<fs::DirEntry> = read_dir(dir)?
        .into_iter()
        .filter(|entry| {
            let name = entry.file_name();
            let extension = Path::new(&name).extension().and_then(|e| e.to_str());
            !name.as_encoded_bytes().starts_with(b".")
                && extension.is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
        })
        .collect();
    files.sort_by_cached_key(fs::DirEntry::file_name);
    let entries: Vec<Option<Entry>> = files
        .into_par_iter()
        .map(|entry| {
            let path = entry.path();
            // The entry's own metadata does not follow a link; the link's target is the image.
            let meta = match entry.file_type().is_ok_and(|t| t.is_symlink()) {
                true => fs::metadata(&path),
                false => entry.metadata(),
            };
            let meta = meta.map_err(|source| DataError::Io { path: path.clone(), source })?;
            let modified =
                meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
            Ok(meta.is_file().then_some(Entry { path, label: label as u8, len: meta.len(), modified }))
        })
        .collect::<Result<_, DataError>>()?;
    let files: Vec<Entry> = entries.into_iter().flatten().collect();
    if files.is_empty() {
        let kinds = IMAGE_EXTENSIONS.join(", ");
        return Err(invalid(dir, format!("is an empty class folder: no image files ({kinds})")));
    }
    Ok(files)
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>, DataError> {
    let io = |source| DataError::Io { path: dir.to_path_buf(), source };
    fs::read_dir(dir).map_err(io)?.map(|e| e.map_err(io)).collect()
}

fn concat(lists: Vec<Vec<Entry>>) -> Vec<Entry> {
    lists.into_iter().flatten().collect()
}

fn invalid(path: &Path, problem: String) -> DataError {
    DataError::Invalid { path: path.to_path_buf(), problem }
}
