//! A run's output directory: held by one run at a time (a lock file), and never mixed with
//! another run's model and reports (refused, or replaced when asked).

use std::path::{Path, PathBuf};

use super::ExperimentError;
use super::error::io;

/// The lock file inside an output directory while a run writes it.
const LOCK_FILE: &str = ".engine.lock";

/// An output directory held by one run: a second run given the same `--output-dir` while the
/// first is writing it stops at once instead of mixing their files. Released when dropped: the
/// lock file is removed, and so are the directories the run created if it left them empty (a run
/// stopped before writing anything leaves no trace).
pub(super) struct OutputDirLock {
    path: PathBuf,
    _file: std::fs::File,
    /// The directories this run created, innermost first.
    created: Vec<PathBuf>,
}

impl Drop for OutputDirLock {
    fn drop(&mut self) {
        // Removed while still locked: a run that opened the file meanwhile finds it replaced or
        // gone once it gets the lock, and opens it again (see `lock_output_dir`).
        let _ = std::fs::remove_file(&self.path);
        for dir in &self.created {
            if std::fs::remove_dir(dir).is_err() {
                break; // not empty: it holds the run's files
            }
        }
    }
}

/// Creates and locks `dir` for one run.
pub(super) fn lock_output_dir(dir: &Path) -> Result<OutputDirLock, ExperimentError> {
    let created: Vec<PathBuf> =
        dir.ancestors().take_while(|d| !d.as_os_str().is_empty() && !d.exists()).map(Path::to_path_buf).collect();
    let path = dir.join(LOCK_FILE);
    // A run that ends removes its lock file (and the directory, if it left it empty); one that
    // opened the file just before gets a lock on a file no longer there, and tries again.
    for _ in 0..8 {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("create", &path))?;
        match file.try_lock() {
            Ok(()) if is_same_file(&file, &path) => return Ok(OutputDirLock { path, _file: file, created }),
            Ok(()) => continue,
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ExperimentError::Failed(format!(
                    "output directory {} is being written by another run; give each concurrent run its own --output-dir",
                    dir.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("lock", &path)(e)),
        }
    }
    Err(ExperimentError::Failed(format!("cannot lock {}: other runs keep replacing it", path.display())))
}

/// Whether the open `file` is still the one at `path`.
#[cfg(unix)]
fn is_same_file(file: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn is_same_file(_file: &std::fs::File, path: &Path) -> bool {
    path.exists()
}

/// The run whose model or reports `dir` holds, if any: named by `model/engine_model.json`,
/// `model/MLmodel` or `metrics.json`.
fn previous_run(dir: &Path) -> Option<String> {
    let from_json = |file: &str| -> Option<Option<String>> {
        let bytes = std::fs::read(dir.join(file)).ok()?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        Some(value.get("run_id").and_then(|v| v.as_str()).map(str::to_string))
    };
    let from_mlmodel = || -> Option<Option<String>> {
        let text = std::fs::read_to_string(dir.join("model").join("MLmodel")).ok()?;
        let line = text.lines().find_map(|l| l.strip_prefix("run_id:"));
        Some(line.map(|id| id.trim().trim_matches(|c| c == '\'' || c == '"').to_string()))
    };
    let found = [from_json("model/engine_model.json"), from_mlmodel(), from_json("metrics.json")];
    let mut present = found.into_iter().flatten().peekable();
    present.peek()?;
    let named = present.flatten().find(|id| !id.is_empty());
    Some(named.map_or_else(|| "a run whose id cannot be read".to_string(), |id| format!("run {id}")))
}

/// Refuses an output directory that holds another run's model or reports
/// ([`ExperimentError::Refused`]), unless `overwrite`, which removes them first (so that no file
/// of the old run stays beside the new run's). Returns the run replaced, if any.
pub fn claim_output_dir(dir: &Path, overwrite: bool) -> Result<Option<String>, ExperimentError> {
    let Some(owner) = previous_run(dir) else { return Ok(None) };
    if !overwrite {
        return Err(ExperimentError::Refused(format!(
            "output directory {} holds the model and reports of {owner}; give this run its own --output-dir, or pass --overwrite to replace them",
            dir.display()
        )));
    }
    let model = dir.join("model");
    if model.exists() {
        std::fs::remove_dir_all(&model).map_err(io("remove", &model))?;
    }
    let metrics = dir.join("metrics.json");
    if metrics.exists() {
        std::fs::remove_file(&metrics).map_err(io("remove", &metrics))?;
    }
    Ok(Some(owner))
}
