//! Files written whole or not at all: every file the engine writes goes through a hidden
//! temporary name beside it and a rename. Also where the engine keeps its caches.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A hidden name beside `path` to write it under before the rename: unique per process and
/// call, so concurrent writers never share one, and hidden, so listings of a run's artifacts
/// skip it.
pub fn temp_path(path: &Path) -> PathBuf {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}-{call}.part", std::process::id()))
}

/// Writes `bytes` to `path`: to a temporary file first, synced to disk, then renamed over
/// `path`. Readers see the old file or the whole new one; on failure the temporary file is
/// removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// `$XDG_CACHE_HOME/engine`, else `$HOME/.cache/engine`: where the engine caches datasets and
/// compiled GPU pipelines. Relative values are ignored, as the XDG specification asks; `None`
/// when neither variable gives an absolute path.
pub fn user_cache_dir() -> Option<PathBuf> {
    let absolute = |name| std::env::var_os(name).map(PathBuf::from).filter(|p| p.is_absolute());
    let base = absolute("XDG_CACHE_HOME").or_else(|| absolute("HOME").map(|home| home.join(".cache")))?;
    Some(base.join("engine"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_leaves_no_temporaries() {
        let dir = std::env::temp_dir().join(format!("engine-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(write_atomic(&dir.join("missing/b.json"), b"x").is_err());
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["a.json"]);
        assert_ne!(temp_path(&path), temp_path(&path), "each call its own name");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
