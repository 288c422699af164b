//! The local store: every run as plain files under `<root>/<experiment>/<run_id>/`.
//!
//! Format (see `docs/local-store.md`):
//! * `meta.json`: name, experiment, status, times, user, configured server and server refs.
//!   Replaced atomically (write + rename) on every change.
//! * `params.json`, `tags.json`: JSON objects, replaced atomically.
//! * `metrics.jsonl`: one JSON object per point, appended; a torn last line is skipped on read.
//! * `artifacts/`: copies of the logged files.
//! * `.lock`: held (flock) by the process recording the run; a RUNNING run whose lock is free
//!   belongs to a process that died, and reads as "unfinished".
//!
//! The modules: `format` (file names, `meta.json`, reading and writing the files, the lock),
//! `queries` (reading runs back: listing, finding by id or prefix), `writer` (a run being
//! recorded) and `tracker` (the [`Tracker`](super::Tracker) for runs recorded only here).

use std::path::{Path, PathBuf};

use super::error::TrackingError;
use super::util::experiment_dir_name;

mod format;
mod queries;
mod tracker;
mod writer;

pub use format::{RemoteRef, RunMeta};
pub(crate) use format::{is_locked, read_meta, set_tags, try_lock_push, try_lock_run, write_meta};
pub use queries::{ArtifactEntry, RecordStatus, RunRecord};
pub use tracker::LocalTracker;
pub use writer::LocalRun;

/// The local store: a directory of runs.
#[derive(Clone, Debug)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Opens the store at `root`. Nothing is created until a run is written; a missing root reads
    /// as an empty store.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, TrackingError> {
        let root = root.as_ref().to_path_buf();
        if root.exists() && !root.is_dir() {
            return Err(TrackingError::Store(format!("{} is not a directory", root.display())));
        }
        Ok(LocalStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of an experiment's runs.
    pub fn experiment_dir(&self, experiment: &str) -> PathBuf {
        self.root.join(experiment_dir_name(experiment))
    }
}
