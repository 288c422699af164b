//! Where FashionMNIST comes from, in order: an explicit directory (`--data-dir` or
//! `ENGINE_DATA_DIR`); the user cache; Debian's `dataset-fashion-mnist` package; else a download
//! from the dataset's official mirror, verified against the MD5s its authors publish and moved
//! into the cache only once complete.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

use super::idx_set::{IdxFiles, read_set};
use super::{BadInput, CacheUse, DataError, DataSplit, Dataset, InputContract};

/// The dataset's official mirror (from its README).
pub const MIRROR: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com";
/// Where Debian's `dataset-fashion-mnist` package installs the files.
pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The four files, each with the MD5 of its `.gz` as published by the dataset's authors.
const FILES: [(&str, &str); 4] = [
    ("train-images-idx3-ubyte", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    ("train-labels-idx1-ubyte", "25c81989df183df01b3e8a0aad5dffbe"),
    ("t10k-images-idx3-ubyte", "bef4ecab320f06d8554ea6380940ec79"),
    ("t10k-labels-idx1-ubyte", "bb300cfdad3c16e7a12a480ee83cd310"),
];

/// The training and test sets, and where they were read from.
pub struct FashionMnist {
    pub train: Dataset,
    pub test: Dataset,
    pub source: Origin,
}

/// Which of the places the files came from.
#[derive(Debug, Clone)]
pub enum Origin {
    Directory(PathBuf),
    Cache(PathBuf),
    Debian(PathBuf),
    Downloaded(PathBuf),
}

impl Origin {
    pub fn dir(&self) -> &Path {
        match self {
            Origin::Directory(p) | Origin::Cache(p) | Origin::Debian(p) | Origin::Downloaded(p) => p,
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            Origin::Directory(_) => "data directory",
            Origin::Cache(_) => "cache",
            Origin::Debian(_) => "Debian package",
            Origin::Downloaded(_) => "downloaded to the cache",
        };
        write!(f, "{} ({what})", self.dir().display())
    }
}

/// Finds and reads FashionMNIST. `data_dir` is the explicit directory, if one was given; then
/// the dataset must be there, and nothing else is tried.
pub fn load(data_dir: Option<&Path>) -> Result<FashionMnist, DataError> {
    let source = locate(data_dir)?;
    let split = read(source.dir())?;
    Ok(FashionMnist { train: split.train, test: split.test, source })
}

/// FashionMNIST's four files in `dir`, read and checked against its contract: 28x28 images,
/// labels below ten. The contract keeps the published mean and std.
pub fn read(dir: &Path) -> Result<DataSplit, DataError> {
    let [train_images, train_labels, test_images, test_labels] = FILES.map(|(stem, _)| {
        find_file(dir, stem).ok_or_else(|| DataError::NotFound(format!("{} has no {stem}[.gz]", dir.display())))
    });
    let files = IdxFiles {
        train_images: train_images?,
        train_labels: train_labels?,
        test_images: test_images?,
        test_labels: test_labels?,
    };
    let contract = InputContract::fashion_mnist();
    let split = read_set(&files, Some(contract.class_names.clone()), BadInput::Fail)?;
    let (height, width) = (split.contract.height, split.contract.width);
    if (height, width) != (contract.height, contract.width) {
        let problem = format!("images are {height}x{width}, expected FashionMNIST's 28x28");
        return Err(DataError::Invalid { path: files.train_images, problem });
    }
    Ok(DataSplit { name: "fashion-mnist".into(), contract, cache: CacheUse::Off, ..split })
}

impl From<FashionMnist> for DataSplit {
    fn from(data: FashionMnist) -> DataSplit {
        let location = data.source.dir().to_path_buf();
        let contract = InputContract::fashion_mnist();
        DataSplit {
            name: "fashion-mnist".into(),
            location,
            train: data.train,
            test: data.test,
            contract,
            skipped: Vec::new(),
            cache: CacheUse::Off,
        }
    }
}

/// `dir/stem.gz` or `dir/stem`, whichever exists.
fn find_file(dir: &Path, stem: &str) -> Option<PathBuf> {
    [dir.join(format!("{stem}.gz")), dir.join(stem)].into_iter().find(|p| p.is_file())
}

fn is_complete(dir: &Path) -> bool {
    FILES.iter().all(|(stem, _)| find_file(dir, stem).is_some())
}

/// `$XDG_CACHE_HOME/engine/fashion-mnist`, else `~/.cache/engine/fashion-mnist`.
pub fn cache_dir() -> Option<PathBuf> {
    Some(crate::files::user_cache_dir()?.join("fashion-mnist"))
}

fn locate(data_dir: Option<&Path>) -> Result<Origin, DataError> {
    if let Some(dir) = data_dir {
        return if is_complete(dir) {
            Ok(Origin::Directory(dir.to_path_buf()))
        } else {
            Err(not_found(&format!("the data directory {} does not hold the four files", dir.display())))
        };
    }
    let cache = cache_dir();
    if let Some(cache) = cache.as_ref().filter(|c| is_complete(c)) {
        return Ok(Origin::Cache(cache.clone()));
    }
    if is_complete(Path::new(DEBIAN_DIR)) {
        return Ok(Origin::Debian(PathBuf::from(DEBIAN_DIR)));
    }
    let cache = cache
        .ok_or_else(|| not_found("no cache directory: neither XDG_CACHE_HOME nor HOME is set to an absolute path"))?;
    let mirror = std::env::var("ENGINE_DATA_MIRROR").unwrap_or_else(|_| MIRROR.to_string());
    download_all(&mirror, &cache)
        .map_err(|e| not_found(&format!("it is not in {} or {DEBIAN_DIR}, and {e}", cache.display())))?;
    Ok(Origin::Downloaded(cache))
}

fn not_found(reason: &str) -> DataError {
    let files: Vec<String> = FILES.iter().map(|(stem, _)| format!("{stem}.gz")).collect();
    DataError::NotFound(format!(
        "FashionMNIST not found: {reason}.\n\
         Provide it in one of three ways:\n  \
         1. --data-dir DIR (or ENGINE_DATA_DIR=DIR), a directory holding {} (gzipped or not);\n  \
         2. on Debian or Ubuntu: apt-get install dataset-fashion-mnist (installs {DEBIAN_DIR});\n  \
         3. network access to {MIRROR}: the files are downloaded once, verified, and cached in {}.",
        files.join(", "),
        cache_dir().map_or_else(|| "~/.cache/engine/fashion-mnist".into(), |p| p.display().to_string()),
    ))
}

/// Downloads each missing file into `cache`, verifying its MD5 before it takes its final name.
pub fn download_all(mirror: &str, cache: &Path) -> Result<(), DataError> {
    fs::create_dir_all(cache).map_err(|source| DataError::Io { path: cache.to_path_buf(), source })?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_body(Some(Duration::from_secs(300)))
        .build()
        .into();
    for (stem, md5) in FILES {
        let name = format!("{stem}.gz");
        let target = cache.join(&name);
        if target.is_file() {
            continue;
        }
        let url = format!("{}/{name}", mirror.trim_end_matches('/'));
        eprintln!("downloading {}", crate::tracking::util::redact_uri(&url));
        download_verified(&agent, &url, md5, &target)?;
    }
    Ok(())
}

/// Streams `url` into a temporary file beside `target`, checks its MD5, then renames it, so a
/// file with the final name is always complete. The temporary file is removed on any failure.
fn download_verified(agent: &ureq::Agent, url: &str, md5: &str, target: &Path) -> Result<(), DataError> {
    let partial = crate::files::temp_path(target);
    let result = (|| {
        let fail = |reason: String| DataError::Download { url: crate::tracking::util::redact_uri(url), reason };
        let mut response = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
        let mut reader = response.body_mut().with_config().limit(200 << 20).reader();
        let io = |source| DataError::Io { path: partial.clone(), source };
        let mut file = fs::File::create(&partial).map_err(io)?;
        let mut hasher = Md5::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = reader.read(&mut buf).map_err(|e| fail(e.to_string()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(io)?;
        }
        file.sync_all().map_err(io)?;
        let actual = crate::hex::lower_hex(&hasher.finalize());
        if actual != md5 {
            let file = target.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            return Err(DataError::Checksum { file, expected: md5.to_string(), actual });
        }
        fs::rename(&partial, target).map_err(|source| DataError::Io { path: target.to_path_buf(), source })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}
