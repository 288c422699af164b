//! The dataset flags shared by `train`, `eval` and `sweep`: `--data` and the options of the
//! sources it selects, turned into a [`DataSource`]; a value that does not fit is a usage error
//! naming its flag.

use std::path::{Path, PathBuf};

use clap::Args;
use engine::data::{ClassNames, ColorMode, DataError, DataFlags, DataSource, ImageSize, idx_set};

use super::{UsageError, choice};

#[derive(Args, Clone, Debug)]
pub struct DataArgs {
    /// The dataset: fashion-mnist, idx:DIR (an IDX set of the MNIST family, gzipped or not;
    /// idx:DIR/PREFIX picks one of several, e.g. emnist-balanced-), folder:DIR (DIR/<class>/*.png
    /// split by --test-fraction, or DIR/train/<class>/ and DIR/test/<class>/; png, jpg, bmp,
    /// webp), or a directory, whose content says which.
    #[arg(long, value_name = "DATA", default_value = "fashion-mnist")]
    pub data: String,
    /// Directory holding the FashionMNIST files (else the cache, Debian's package, or a
    /// download); with another --data it is not read.
    #[arg(long, env = "ENGINE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// IDX sets: the class names, comma-separated, or @FILE with one name per line
    /// [default: 0 to N-1].
    #[arg(long, value_name = "NAMES|@FILE")]
    pub classes: Option<String>,
    /// Image folders: resize every image to WIDTHxHEIGHT (or one side for a square)
    /// [default: the size they all share].
    #[arg(long, value_name = "WxH", value_parser = parse_image_size)]
    pub image_size: Option<ImageSize>,
    /// Image folders: gray or rgb [default: rgb when any image has colour].
    #[arg(long, value_parser = choice::<ColorMode>(), ignore_case = true)]
    pub color: Option<ColorMode>,
    /// Image folders without train/ and test/: the share of each class held out for testing
    /// [default: 0.2].
    #[arg(long, allow_negative_numbers = true)]
    pub test_fraction: Option<f64>,
    /// Image folders without train/ and test/: the seed of that split [default: 0].
    #[arg(long)]
    pub split_seed: Option<u64>,
    /// IDX sets and image folders: leave out (and count) an image or label that cannot be used,
    /// instead of stopping at it.
    #[arg(long)]
    pub skip_bad: bool,
    /// Image folders: decode every image, neither reading nor writing the decoded-set cache.
    #[arg(long)]
    pub no_data_cache: bool,
}

fn parse_image_size(s: &str) -> Result<ImageSize, String> {
    s.parse()
}

impl DataArgs {
    /// The selected dataset, with its options; a usage error names the flag at fault.
    pub fn source(&self) -> Result<DataSource, UsageError> {
        let classes = self.classes.as_deref().map(class_names).transpose()?;
        let flags = DataFlags {
            class_names: classes,
            image_size: self.image_size,
            color: self.color,
            test_fraction: self.test_fraction,
            split_seed: self.split_seed,
            skip_bad: self.skip_bad,
            no_cache: self.no_data_cache,
        };
        let source = DataSource::parse(&self.data, &flags).map_err(|e| usage(&self.data, e))?;
        match source {
            DataSource::FashionMnist { dir: None } => Ok(DataSource::FashionMnist { dir: self.data_dir.clone() }),
            DataSource::Idx { ref dir, .. } | DataSource::Folder { ref dir, .. } if !dir.is_dir() => {
                Err(UsageError(format!("--data {}: {} is not a directory", self.data, dir.display())))
            }
            // Checked here so that a directory without the files is bad usage, like a typo.
            DataSource::Idx { ref dir, ref options } => match idx_set::find_files(dir, options.prefix.as_deref()) {
                Ok(_) => Ok(source),
                Err(e) => Err(usage(&self.data, e)),
            },
            source => Ok(source),
        }
    }
}

/// `--classes`: `@FILE`, the path of a file, or a comma-separated list.
fn class_names(arg: &str) -> Result<ClassNames, UsageError> {
    match arg.strip_prefix('@') {
        Some(file) if Path::new(file).is_file() => Ok(ClassNames::File(file.into())),
        Some(file) => Err(UsageError(format!("--classes @{file}: no such file (one class name per line)"))),
        None => Ok(ClassNames::from_arg(arg)),
    }
}

fn usage(spec: &str, error: DataError) -> UsageError {
    UsageError(format!("--data {spec}: {error}"))
}

/// Whether a data error is the input's fault (a file that cannot be used, a selection that does
/// not fit): a usage error, exit 2. A dataset that is missing or failed to download is not.
pub fn is_bad_input(error: &DataError) -> bool {
    matches!(
        error,
        DataError::Invalid { .. } | DataError::CountMismatch { .. } | DataError::Selection(_) | DataError::Io { .. }
    )
}
