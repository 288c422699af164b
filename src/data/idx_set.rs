//! Any IDX set of the MNIST family (MNIST, FashionMNIST, KMNIST, EMNIST): four files in one
//! directory, gzipped or not, named `[PREFIX]train-images-idx3-ubyte`,
//! `[PREFIX]train-labels-idx1-ubyte`, and `t10k-` or `test-` for the test pair (EMNIST's
//! `emnist-balanced-test-images-idx3-ubyte.gz` has the prefix `emnist-balanced-`). Images are
//! whatever size the header says; class names come from a list, a file, or are numbered.
//! EMNIST stores its images transposed; they are read as stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::contract::numbered;
use super::idx::{first_label_past, label_past, read_any_labels, read_images};
use super::{BadInput, CacheUse, ClassNames, DataError, DataSplit, Dataset, InputContract, Skipped};

/// How an IDX set is read.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IdxOptions {
    /// Selects one set where the directory holds several (`emnist-balanced-`).
    pub prefix: Option<String>,
    pub class_names: ClassNames,
    /// What to do with a label past the class names.
    pub bad: BadInput,
}

/// The four files of one IDX set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxFiles {
    pub train_images: PathBuf,
    pub train_labels: PathBuf,
    pub test_images: PathBuf,
    pub test_labels: PathBuf,
}

const ROLES: [(&str, &[&str]); 4] = [
    ("train-images-idx3-ubyte", &["train-images-idx3-ubyte"]),
    ("train-labels-idx1-ubyte", &["train-labels-idx1-ubyte"]),
    ("t10k-images-idx3-ubyte", &["t10k-images-idx3-ubyte", "test-images-idx3-ubyte"]),
    ("t10k-labels-idx1-ubyte", &["t10k-labels-idx1-ubyte", "test-labels-idx1-ubyte"]),
];

/// Finds the four files in `dir`: the one complete set, or the one with `prefix`. A `.gz` is
/// preferred to the same file uncompressed.
pub fn find_files(dir: &Path, prefix: Option<&str>) -> Result<IdxFiles, DataError> {
    let io = |source| DataError::Io { path: dir.to_path_buf(), source };
    let mut sets: BTreeMap<String, [Option<PathBuf>; 4]> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let stem = name.strip_suffix(".gz").unwrap_or(name);
        for (role, (_, suffixes)) in ROLES.iter().enumerate() {
            let Some(found) = suffixes.iter().find_map(|s| stem.strip_suffix(s)) else { continue };
            let slot = &mut sets.entry(found.to_string()).or_default()[role];
            if slot.is_none() || name.ends_with(".gz") {
                *slot = Some(path.clone());
            }
        }
    }
    let complete: Vec<(&String, &[Option<PathBuf>; 4])> = sets
        .iter()
        .filter(|(p, files)| files.iter().all(Option::is_some) && prefix.is_none_or(|x| names_prefix(p, x)))
        .collect();
    match complete.as_slice() {
        [(_, [Some(a), Some(b), Some(c), Some(d)])] => Ok(IdxFiles {
            train_images: a.clone(),
            train_labels: b.clone(),
            test_images: c.clone(),
            test_labels: d.clone(),
        }),
        [] => {
            let wanted: Vec<String> = ROLES.iter().map(|(r, _)| format!("{}{r}[.gz]", prefix.unwrap_or(""))).collect();
            Err(DataError::NotFound(format!(
                "{} does not hold an IDX set: expected {}",
                dir.display(),
                wanted.join(", ")
            )))
        }
        many => {
            let names: Vec<&str> = many.iter().map(|(p, _)| p.as_str()).collect();
            Err(DataError::Selection(format!(
                "{} holds several IDX sets (prefixes {}): choose one with idx:{}/PREFIX",
                dir.display(),
                names.join(", "),
                dir.display()
            )))
        }
    }
}

/// Whether the files' prefix `found` is the one asked for, with or without its final `-`.
fn names_prefix(found: &str, asked: &str) -> bool {
    found == asked || found.strip_suffix('-') == Some(asked)
}

/// Reads an IDX set. Without class names the classes are `0..=largest label`; with them, a
/// label past their count is an error naming the file and index (or, under
/// [`BadInput::Skip`], the example is left out and counted).
pub fn read_set(files: &IdxFiles, names: Option<Vec<String>>, bad: BadInput) -> Result<DataSplit, DataError> {
    let (mut train, rows, cols) = read_pair(&files.train_images, &files.train_labels)?;
    let (mut test, test_rows, test_cols) = read_pair(&files.test_images, &files.test_labels)?;
    if (rows, cols) != (test_rows, test_cols) {
        let problem = format!("test images are {test_rows}x{test_cols} but training images are {rows}x{cols}");
        return Err(DataError::Invalid { path: files.test_images.clone(), problem });
    }
    let largest = train.labels.iter().chain(&test.labels).copied().max().map_or(0, usize::from);
    let class_names = names.unwrap_or_else(|| numbered(largest + 1));
    let mut skipped = Vec::new();
    for (set, path) in [(&mut train, &files.train_labels), (&mut test, &files.test_labels)] {
        match (first_label_past(&set.labels, class_names.len()), bad) {
            (None, _) => {}
            (Some((index, label)), BadInput::Fail) => return Err(label_past(path, index, label, class_names.len())),
            (Some(_), BadInput::Skip) => skipped.extend(drop_labels_past(set, path, class_names.len())),
        }
    }
    if class_names.len() < 2 {
        let problem = "every label is 0: a classifier needs at least two classes".into();
        return Err(DataError::Invalid { path: files.train_labels.clone(), problem });
    }
    let contract = InputContract::measured(1, rows, cols, &train.pixels, class_names);
    let location = files.train_images.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = location.file_name().map_or_else(|| "idx".into(), |n| n.to_string_lossy().into_owned());
    Ok(DataSplit { name, location, train, test, contract, skipped, cache: CacheUse::Off })
}

/// Reads `[PREFIX]`'s set from `dir` as `options` say.
pub fn load(dir: &Path, options: &IdxOptions) -> Result<DataSplit, DataError> {
    let files = find_files(dir, options.prefix.as_deref())?;
    read_set(&files, options.class_names.resolve()?, options.bad)
}

/// An images file and its labels file, with the same count; the set and its image size.
fn read_pair(images_path: &Path, labels_path: &Path) -> Result<(Dataset, usize, usize), DataError> {
    let images = read_images(images_path)?;
    let labels = read_any_labels(labels_path)?;
    if images.count != labels.len() {
        return Err(DataError::CountMismatch {
            images_path: images_path.to_path_buf(),
            images: images.count,
            labels_path: labels_path.to_path_buf(),
            labels: labels.len(),
        });
    }
    Ok((Dataset { pixels: images.pixels, labels }, images.rows, images.cols))
}

/// Removes the examples whose label is past `classes`; one record per removed example.
fn drop_labels_past(set: &mut Dataset, path: &Path, classes: usize) -> Vec<Skipped> {
    let len = set.image_len();
    let mut kept = Dataset { pixels: Vec::with_capacity(set.pixels.len()), labels: Vec::with_capacity(set.len()) };
    let mut skipped = Vec::new();
    for (index, &label) in set.labels.iter().enumerate() {
        if usize::from(label) < classes {
            kept.labels.push(label);
            kept.pixels.extend_from_slice(&set.pixels[index * len..(index + 1) * len]);
        } else {
            let reason = label_past(path, index, label, classes).to_string();
            skipped.push(Skipped { path: path.to_path_buf(), reason });
        }
    }
    *set = kept;
    skipped
}
