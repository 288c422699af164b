//! Which dataset a run uses, as one value: FashionMNIST (the default), an IDX set, or an image
//! folder, with the options that apply to it. It parses the `--data` style string
//! (`fashion-mnist`, `fashion-mnist:DIR`, `idx:DIR`, `idx:DIR/PREFIX`, `folder:DIR`, or a bare
//! directory whose content says which), serialises into configs and sweep plans, and loads.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    BadInput, ClassNames, ColorMode, DataError, DataSplit, FolderOptions, IdxOptions, ImageSize, fashion_mnist, folder,
    idx_set,
};

/// A dataset selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DataSource {
    /// FashionMNIST, from `dir` or the places [`fashion_mnist::load`] searches.
    FashionMnist { dir: Option<PathBuf> },
    /// An IDX set of the MNIST family.
    Idx { dir: PathBuf, options: IdxOptions },
    /// A folder of images, one subfolder per class.
    Folder { dir: PathBuf, options: FolderOptions },
}

impl Default for DataSource {
    fn default() -> Self {
        DataSource::FashionMnist { dir: None }
    }
}

/// The options a command line gives beside the selection; each applies to some kinds only,
/// and giving one to a kind it does not apply to is an error.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataFlags {
    /// IDX sets: a list or a one-name-per-line file.
    pub class_names: Option<ClassNames>,
    /// Image folders.
    pub image_size: Option<ImageSize>,
    /// Image folders.
    pub color: Option<ColorMode>,
    /// Image folders without `train/` and `test/`.
    pub test_fraction: Option<f64>,
    /// Image folders without `train/` and `test/`.
    pub split_seed: Option<u64>,
    /// IDX sets and image folders: skip and count bad inputs instead of stopping.
    pub skip_bad: bool,
    /// Image folders: do not read or write the decoded-set cache.
    pub no_cache: bool,
}

impl DataSource {
    /// Parses a selection and applies `flags` to it.
    pub fn parse(spec: &str, flags: &DataFlags) -> Result<DataSource, DataError> {
        let spec = spec.trim();
        let path = |rest: &str| match rest.is_empty() {
            true => Err(DataError::Selection(format!("{spec:?} names no directory after the colon"))),
            false => Ok(PathBuf::from(rest)),
        };
        let source = match spec.split_once(':') {
            _ if spec.eq_ignore_ascii_case("fashion-mnist") => DataSource::FashionMnist { dir: None },
            Some(("fashion-mnist", rest)) => DataSource::FashionMnist { dir: Some(path(rest)?) },
            Some(("idx", rest)) => idx_source(path(rest)?),
            Some(("folder", rest)) => DataSource::Folder { dir: path(rest)?, options: FolderOptions::default() },
            _ => detect(Path::new(spec))?,
        };
        source.with_flags(flags)
    }

    /// Reads the dataset.
    pub fn load(&self) -> Result<DataSplit, DataError> {
        match self {
            DataSource::FashionMnist { dir } => fashion_mnist::load(dir.as_deref()).map(DataSplit::from),
            DataSource::Idx { dir, options } => idx_set::load(dir, options),
            DataSource::Folder { dir, options } => folder::load(dir, options),
        }
    }

    fn with_flags(mut self, flags: &DataFlags) -> Result<DataSource, DataError> {
        let kind = self.kind();
        let refuse = |what: &str, flag: &str| {
            Err(DataError::Selection(format!("{what} does not apply to {kind} data ({flag})")))
        };
        match &mut self {
            DataSource::FashionMnist { .. } => {
                if flags.class_names.is_some() {
                    return refuse("class names", "--classes");
                }
                if flags.skip_bad {
                    return refuse("skipping bad inputs", "--skip-bad");
                }
            }
            DataSource::Idx { options, .. } => {
                options.class_names = flags.class_names.clone().unwrap_or_default();
                options.bad = if flags.skip_bad { BadInput::Skip } else { BadInput::Fail };
            }
            DataSource::Folder { options, .. } => {
                if flags.class_names.is_some() {
                    return refuse("class names (they are the folder names)", "--classes");
                }
                apply_folder_flags(options, flags)?;
                return Ok(self);
            }
        }
        let folder_only = [
            (flags.image_size.is_some(), "an image size", "--image-size"),
            (flags.color.is_some(), "a colour mode", "--color"),
            (flags.test_fraction.is_some(), "a test fraction", "--test-fraction"),
            (flags.split_seed.is_some(), "a split seed", "--split-seed"),
            (flags.no_cache, "turning the cache off", "--no-data-cache"),
        ];
        match folder_only.iter().find(|(given, _, _)| *given) {
            Some((_, what, flag)) => refuse(what, flag),
            None => Ok(self),
        }
    }

    /// `fashion-mnist`, `idx` or `folder`.
    pub fn kind(&self) -> &'static str {
        match self {
            DataSource::FashionMnist { .. } => "fashion-mnist",
            DataSource::Idx { .. } => "idx",
            DataSource::Folder { .. } => "folder",
        }
    }
}

fn apply_folder_flags(options: &mut FolderOptions, flags: &DataFlags) -> Result<(), DataError> {
    options.size = flags.image_size;
    options.mode = flags.color;
    if let Some(fraction) = flags.test_fraction {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(DataError::Selection(format!(
                "a test fraction of {fraction} is not between 0 and 1 (--test-fraction)"
            )));
        }
        options.test_fraction = fraction;
    }
    options.split_seed = flags.split_seed.unwrap_or(options.split_seed);
    options.bad = if flags.skip_bad { BadInput::Skip } else { BadInput::Fail };
    options.cache = !flags.no_cache;
    Ok(())
}

/// `idx:DIR` or `idx:DIR/PREFIX` (when `DIR/PREFIX` is not itself a directory).
fn idx_source(path: PathBuf) -> DataSource {
    let prefix = path.file_name().map(|p| p.to_string_lossy().into_owned());
    match path.parent() {
        Some(parent) if !path.is_dir() && parent.is_dir() => {
            DataSource::Idx { dir: parent.to_path_buf(), options: IdxOptions { prefix, ..IdxOptions::default() } }
        }
        _ => DataSource::Idx { dir: path, options: IdxOptions::default() },
    }
}

/// A bare path: an IDX set if it holds one, an image folder if it holds folders.
fn detect(path: &Path) -> Result<DataSource, DataError> {
    if !path.is_dir() {
        return Err(DataError::Selection(format!(
            "{:?} is neither a dataset (fashion-mnist, idx:DIR, folder:DIR) nor a directory",
            path.display().to_string()
        )));
    }
    if idx_set::find_files(path, None).is_ok() {
        return Ok(DataSource::Idx { dir: path.to_path_buf(), options: IdxOptions::default() });
    }
    let has_folders = std::fs::read_dir(path)
        .map_err(|source| DataError::Io { path: path.to_path_buf(), source })?
        .flatten()
        .any(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'));
    match has_folders {
        true => Ok(DataSource::Folder { dir: path.to_path_buf(), options: FolderOptions::default() }),
        false => Err(DataError::Selection(format!(
            "{} holds neither an IDX set (train-images-idx3-ubyte ...) nor class folders; \
             name the kind with idx:DIR or folder:DIR",
            path.display()
        ))),
    }
}

impl std::fmt::Display for DataSource {
    /// The selection as [`DataSource::parse`] reads it back (options aside).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSource::FashionMnist { dir: None } => f.write_str("fashion-mnist"),
            DataSource::FashionMnist { dir: Some(dir) } => write!(f, "fashion-mnist:{}", dir.display()),
            DataSource::Idx { dir, options } => match &options.prefix {
                Some(prefix) => write!(f, "idx:{}", dir.join(prefix).display()),
                None => write!(f, "idx:{}", dir.display()),
            },
            DataSource::Folder { dir, .. } => write!(f, "folder:{}", dir.display()),
        }
    }
}
