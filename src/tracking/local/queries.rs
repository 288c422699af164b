//! Reading runs back from the local store: one run directory, the list of runs, the experiments,
//! and finding a run by its local or server id or a unique prefix.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::LocalStore;
use super::format::{
    ARTIFACTS, META, METRICS, PARAMS, RemoteRef, TAGS, is_hidden, is_locked, parse_metrics, read_inputs, read_map,
    read_meta,
};
use crate::tracking::error::TrackingError;
use crate::tracking::util::experiment_dir_name;
use crate::tracking::{DatasetInput, Metric, RunStatus};

/// A run's state as read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordStatus {
    /// Still being recorded by a live process.
    Running,
    /// RUNNING with no live recorder: the process died (or was killed) mid-run.
    Unfinished,
    Finished,
    Failed,
    Killed,
}

impl RecordStatus {
    /// `RUNNING`, `unfinished`, `FINISHED`, `FAILED`, `KILLED`.
    pub fn label(self) -> &'static str {
        match self {
            RecordStatus::Running => "RUNNING",
            RecordStatus::Unfinished => "unfinished",
            RecordStatus::Finished => "FINISHED",
            RecordStatus::Failed => "FAILED",
            RecordStatus::Killed => "KILLED",
        }
    }

    /// The final status, for runs that ended.
    pub fn final_status(self) -> Option<RunStatus> {
        match self {
            RecordStatus::Finished => Some(RunStatus::Finished),
            RecordStatus::Failed => Some(RunStatus::Failed),
            RecordStatus::Killed => Some(RunStatus::Killed),
            _ => None,
        }
    }
}

impl std::fmt::Display for RecordStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// One file under a run's `artifacts/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactEntry {
    /// Relative to the artifacts root, `/`-separated.
    pub path: String,
    pub size: u64,
}

/// A run read back from the local store.
#[derive(Clone, Debug)]
pub struct RunRecord {
    /// The local id (the directory name; the server's id for runs mirrored live).
    pub run_id: String,
    pub run_name: String,
    pub experiment: String,
    pub status: RecordStatus,
    pub start_time_ms: i64,
    pub end_time_ms: Option<i64>,
    pub user: String,
    pub params: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    /// Every point, in the order logged.
    pub metrics: Vec<Metric>,
    pub artifacts: Vec<ArtifactEntry>,
    /// The datasets it used.
    pub inputs: Vec<DatasetInput>,
    /// The server the run was meant for when recorded.
    pub tracking_uri: Option<String>,
    pub remotes: Vec<RemoteRef>,
    /// The run's directory.
    pub dir: PathBuf,
    /// Lines of `metrics.jsonl` that could not be read (a torn last line after a crash).
    pub skipped_metric_lines: usize,
}

impl RunRecord {
    pub fn is_unfinished(&self) -> bool {
        self.status == RecordStatus::Unfinished
    }

    /// The latest point of each metric (highest step, then latest timestamp), as MLflow shows it.
    pub fn latest_metrics(&self) -> BTreeMap<String, Metric> {
        let mut out: BTreeMap<String, Metric> = BTreeMap::new();
        for m in &self.metrics {
            match out.get(&m.key) {
                Some(cur) if (cur.step, cur.timestamp_ms) > (m.step, m.timestamp_ms) => {}
                _ => {
                    out.insert(m.key.clone(), m.clone());
                }
            }
        }
        out
    }

    /// All points of one metric, in the order logged.
    pub fn metric_history(&self, key: &str) -> Vec<Metric> {
        self.metrics.iter().filter(|m| m.key == key).cloned().collect()
    }

    /// Metric keys, sorted.
    pub fn metric_keys(&self) -> Vec<String> {
        let set: std::collections::BTreeSet<&str> = self.metrics.iter().map(|m| m.key.as_str()).collect();
        set.into_iter().map(str::to_string).collect()
    }

    /// End minus start, for runs that ended.
    pub fn duration_ms(&self) -> Option<i64> {
        self.end_time_ms.map(|e| e - self.start_time_ms)
    }

    /// The server run id, where the run went to a server.
    pub fn server_run_id(&self) -> Option<&str> {
        self.remotes.first().map(|r| r.run_id.as_str())
    }

    /// `local` (never meant for a server), `synced`, or `unsynced`.
    pub fn sync_state(&self) -> &'static str {
        if self.remotes.is_empty() {
            if self.tracking_uri.is_none() { "local" } else { "unsynced" }
        } else if self.remotes.iter().all(|r| r.synced) {
            "synced"
        } else {
            "unsynced"
        }
    }
}

fn list_artifacts(root: &Path) -> Vec<ArtifactEntry> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if is_hidden(&name) {
                continue;
            }
            let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push((e.path(), rel));
            } else if ft.is_file() {
                let size = e.metadata().map(|m| m.len()).unwrap_or(0);
                out.push(ArtifactEntry { path: rel, size });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

impl LocalStore {
    /// Every run directory (`<root>/<experiment dir>/<run id>/` holding a `meta.json`).
    pub fn run_dirs(&self) -> Result<Vec<PathBuf>, TrackingError> {
        let mut out = Vec::new();
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(TrackingError::io(&self.root, e)),
        };
        for exp in rd.flatten() {
            if !exp.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let Ok(runs) = fs::read_dir(exp.path()) else {
                continue;
            };
            for run in runs.flatten() {
                let p = run.path();
                if p.join(META).is_file() {
                    out.push(p);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Reads one run directory.
    pub fn load_dir(dir: &Path) -> Result<RunRecord, TrackingError> {
        let meta = read_meta(dir)?;
        let params = read_map(&dir.join(PARAMS))?;
        let tags = read_map(&dir.join(TAGS))?;
        let mpath = dir.join(METRICS);
        let (metrics, skipped) = match fs::read(&mpath) {
            Ok(b) => parse_metrics(&b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 0),
            Err(e) => return Err(TrackingError::io(&mpath, e)),
        };
        let status = match meta.status.as_str() {
            "FINISHED" => RecordStatus::Finished,
            "FAILED" => RecordStatus::Failed,
            "KILLED" => RecordStatus::Killed,
            _ => {
                if is_locked(dir) {
                    RecordStatus::Running
                } else {
                    RecordStatus::Unfinished
                }
            }
        };
        Ok(RunRecord {
            run_id: meta.run_id,
            run_name: meta.run_name,
            experiment: meta.experiment,
            status,
            start_time_ms: meta.start_time,
            end_time_ms: meta.end_time,
            user: meta.user,
            params,
            tags,
            metrics,
            artifacts: list_artifacts(&dir.join(ARTIFACTS)),
            inputs: read_inputs(dir)?,
            tracking_uri: meta.tracking_uri,
            remotes: meta.remotes,
            dir: dir.to_path_buf(),
            skipped_metric_lines: skipped,
        })
    }

    /// All runs (of one experiment, when given), newest first. Unreadable run directories are
    /// skipped with a warning on stderr.
    pub fn list_runs(&self, experiment: Option<&str>) -> Result<Vec<RunRecord>, TrackingError> {
        let mut out = Vec::new();
        for dir in self.run_dirs()? {
            if let Some(exp) = experiment {
                // cheap filter on the directory name first
                let parent = dir.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().to_string());
                if parent.as_deref() != Some(experiment_dir_name(exp).as_str()) {
                    continue;
                }
            }
            match Self::load_dir(&dir) {
                Ok(r) => {
                    if experiment.is_none_or(|e| r.experiment == e) {
                        out.push(r);
                    }
                }
                Err(e) => eprintln!("warning: skipping {}: {e}", dir.display()),
            }
        }
        out.sort_by(|a, b| b.start_time_ms.cmp(&a.start_time_ms).then_with(|| a.run_id.cmp(&b.run_id)));
        Ok(out)
    }

    /// Experiment names that have runs, sorted.
    pub fn experiments(&self) -> Result<Vec<String>, TrackingError> {
        let mut set = std::collections::BTreeSet::new();
        for dir in self.run_dirs()? {
            if let Ok(m) = read_meta(&dir) {
                set.insert(m.experiment);
            }
        }
        Ok(set.into_iter().collect())
    }

    /// The directory of a run given its local id, its server run id, or a unique prefix of
    /// either (at least 4 characters).
    pub fn find_run_dir(&self, run_id: &str) -> Result<PathBuf, TrackingError> {
        let id = run_id.trim();
        if id.is_empty() {
            return Err(TrackingError::RunNotFound("(empty id)".into()));
        }
        let dirs = self.run_dirs()?;
        if let Some(d) = dirs.iter().find(|d| d.file_name().is_some_and(|n| n == id)) {
            return Ok(d.clone());
        }
        let mut matches: Vec<(PathBuf, String)> = Vec::new();
        for d in &dirs {
            let Ok(meta) = read_meta(d) else { continue };
            let exact = meta.run_id == id || meta.remotes.iter().any(|r| r.run_id == id);
            if exact {
                return Ok(d.clone());
            }
            let prefix =
                id.len() >= 4 && (meta.run_id.starts_with(id) || meta.remotes.iter().any(|r| r.run_id.starts_with(id)));
            if prefix {
                matches.push((d.clone(), meta.run_id.clone()));
            }
        }
        match matches.len() {
            0 if id.len() < 4 => Err(TrackingError::RunNotFound(format!(
                "{id} (no run has that id in {}; a prefix needs at least 4 characters)",
                self.root.display()
            ))),
            0 => Err(TrackingError::RunNotFound(format!("{id} (no run with that id in {})", self.root.display()))),
            1 => Ok(matches.remove(0).0),
            _ => Err(TrackingError::RunNotFound(format!(
                "{id} is ambiguous: {}",
                matches.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// One run by local id, server run id, or unique prefix.
    pub fn load_run(&self, run_id: &str) -> Result<RunRecord, TrackingError> {
        Self::load_dir(&self.find_run_dir(run_id)?)
    }
}
