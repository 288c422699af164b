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

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::client::check_artifact_rel_path;
use super::error::TrackingError;
use super::paths;
use super::util::{self, experiment_dir_name, is_run_id, now_ms};
use super::{DatasetInput, Metric, RunStatus, Tracker, TrackingConfig};

/// Version of the on-disk format written in `meta.json`.
pub const FORMAT_VERSION: u32 = 1;

const META: &str = "meta.json";
const PARAMS: &str = "params.json";
const TAGS: &str = "tags.json";
const METRICS: &str = "metrics.jsonl";
const INPUTS: &str = "inputs.json";
const ARTIFACTS: &str = "artifacts";
const LOCK: &str = ".lock";

/// Where a local run was (or is being) sent on an MLflow server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRef {
    /// The server (normalized, no trailing `/`).
    pub tracking_uri: String,
    pub experiment_id: String,
    /// The server's run id (equal to the local id for runs mirrored live).
    pub run_id: String,
    /// `info.artifact_uri` on the server (`mlflow-artifacts:/<exp>/<run>/artifacts`).
    #[serde(default)]
    pub artifact_uri: String,
    /// True once everything recorded locally is known to be on the server and the run is over.
    #[serde(default)]
    pub synced: bool,
    /// When `synced` last became true (epoch ms).
    #[serde(default)]
    pub synced_at: Option<i64>,
}

/// The content of `meta.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMeta {
    #[serde(default = "default_format")]
    pub format: u32,
    pub run_id: String,
    #[serde(default)]
    pub run_name: String,
    #[serde(default)]
    pub experiment: String,
    /// `RUNNING`, `FINISHED`, `FAILED` or `KILLED`.
    #[serde(default = "default_status")]
    pub status: String,
    /// Epoch milliseconds.
    #[serde(default)]
    pub start_time: i64,
    #[serde(default)]
    pub end_time: Option<i64>,
    #[serde(default)]
    pub user: String,
    /// The server the run was meant for when it was recorded (`None` = local only).
    #[serde(default)]
    pub tracking_uri: Option<String>,
    /// The server runs this run was sent to.
    #[serde(default)]
    pub remotes: Vec<RemoteRef>,
    /// The recording process.
    #[serde(default)]
    pub pid: Option<u32>,
}

fn default_format() -> u32 {
    FORMAT_VERSION
}
fn default_status() -> String {
    "RUNNING".to_string()
}

impl RunMeta {
    pub fn remote_for(&self, tracking_uri: &str) -> Option<&RemoteRef> {
        self.remotes.iter().find(|r| r.tracking_uri == tracking_uri)
    }
    pub fn remote_for_mut(&mut self, tracking_uri: &str) -> Option<&mut RemoteRef> {
        self.remotes.iter_mut().find(|r| r.tracking_uri == tracking_uri)
    }
}

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

/// Writes `path` through a temporary file renamed into place. On a full disk, where no new file
/// fits, an existing small file (a run's status) is overwritten in place instead, so a run can
/// still be ended FAILED.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrackingError> {
    let Err(e) = crate::files::write_atomic(path, bytes) else { return Ok(()) };
    if matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::FileTooLarge) && path.is_file() {
        let in_place = OpenOptions::new().write(true).open(path).and_then(|mut f| {
            f.write_all(bytes)?;
            f.set_len(bytes.len() as u64)
        });
        if in_place.is_ok() {
            return Ok(());
        }
    }
    Err(TrackingError::io(path, e))
}

/// Whether a file name is hidden, as every temporary name is ([`crate::files::temp_path`]):
/// hidden files are never listed as artifacts nor uploaded.
fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), TrackingError> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| TrackingError::Store(format!("cannot encode {}: {e}", path.display())))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, TrackingError> {
    let bytes = fs::read(path).map_err(|e| TrackingError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| TrackingError::Store(format!("{}: {e}", path.display())))
}

fn read_map(path: &Path) -> Result<BTreeMap<String, String>, TrackingError> {
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    read_json(path)
}

/// Parses `metrics.jsonl`: returns the points and the number of lines that could not be read.
pub(crate) fn parse_metrics(bytes: &[u8]) -> (Vec<Metric>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for line in bytes.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Metric>(line) {
            Ok(m) => out.push(m),
            Err(_) => bad += 1,
        }
    }
    (out, bad)
}

/// Whether a process holds the run's lock (i.e. is recording it now).
fn is_locked(dir: &Path) -> bool {
    let Ok(f) = File::open(dir.join(LOCK)) else {
        return false;
    };
    matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock))
}

/// Takes a run's lock; `None` when another process holds it.
pub(crate) fn try_lock_run(dir: &Path) -> Result<Option<File>, TrackingError> {
    let path = dir.join(LOCK);
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| TrackingError::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(TrackingError::io(&path, e)),
    }
}

pub(crate) fn write_meta(dir: &Path, meta: &RunMeta) -> Result<(), TrackingError> {
    write_json_atomic(&dir.join(META), meta)
}

/// Sets tags of a run whose lock the caller holds.
pub(crate) fn set_tags(dir: &Path, tags: &[(String, String)]) -> Result<(), TrackingError> {
    let path = dir.join(TAGS);
    let mut all = read_map(&path)?;
    all.extend(tags.iter().cloned());
    write_json_atomic(&path, &all)
}

/// The datasets recorded for a run (none before any was).
fn read_inputs(dir: &Path) -> Result<Vec<DatasetInput>, TrackingError> {
    let path = dir.join(INPUTS);
    if !path.exists() {
        return Ok(Vec::new());
    }
    read_json(&path)
}

pub(crate) fn read_meta(dir: &Path) -> Result<RunMeta, TrackingError> {
    read_json(&dir.join(META))
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

    /// Creates a new run directory, holding its lock, and writes its first `meta.json`.
    pub fn create_run(&self, meta: RunMeta) -> Result<LocalRun, TrackingError> {
        if !is_run_id(&meta.run_id) {
            return Err(TrackingError::InvalidArgument(format!(
                "run id {:?} is not 32 lowercase hex characters",
                meta.run_id
            )));
        }
        let exp_dir = self.experiment_dir(&meta.experiment);
        fs::create_dir_all(&exp_dir).map_err(|e| TrackingError::io(&exp_dir, e))?;
        let dir = paths::join_component(&exp_dir, &meta.run_id)?;
        fs::create_dir(&dir).map_err(|e| TrackingError::io(&dir, e))?;
        let lock = try_lock_run(&dir)?
            .ok_or_else(|| TrackingError::Store(format!("{} is locked by another process", dir.display())))?;
        let art = dir.join(ARTIFACTS);
        fs::create_dir(&art).map_err(|e| TrackingError::io(&art, e))?;
        write_json_atomic(&dir.join(PARAMS), &BTreeMap::<String, String>::new())?;
        write_json_atomic(&dir.join(TAGS), &BTreeMap::<String, String>::new())?;
        let mpath = dir.join(METRICS);
        let metrics =
            OpenOptions::new().create(true).append(true).open(&mpath).map_err(|e| TrackingError::io(&mpath, e))?;
        write_meta(&dir, &meta)?;
        Ok(LocalRun { dir, meta, params: BTreeMap::new(), tags: BTreeMap::new(), metrics, lock: Some(lock) })
    }

    /// Opens an existing run to add to it (e.g. evaluation metrics and files), holding its lock.
    /// Its status is kept; copies on servers are marked unsynced so `engine sync` sends the
    /// additions.
    pub fn reopen_run(&self, run_id: &str) -> Result<LocalRun, TrackingError> {
        let dir = self.find_run_dir(run_id)?;
        let lock = try_lock_run(&dir)?.ok_or_else(|| {
            TrackingError::Store(format!("{} is still being recorded by another process", dir.display()))
        })?;
        let mut meta = read_meta(&dir)?;
        let params = read_map(&dir.join(PARAMS))?;
        let tags = read_map(&dir.join(TAGS))?;
        let mpath = dir.join(METRICS);
        let metrics =
            OpenOptions::new().create(true).append(true).open(&mpath).map_err(|e| TrackingError::io(&mpath, e))?;
        if meta.remotes.iter().any(|r| r.synced) {
            meta.remotes.iter_mut().for_each(|r| r.synced = false);
            write_meta(&dir, &meta)?;
        }
        Ok(LocalRun { dir, meta, params, tags, metrics, lock: Some(lock) })
    }

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

/// A run being recorded in the local store (holds the run's lock until finished or dropped).
#[derive(Debug)]
pub struct LocalRun {
    dir: PathBuf,
    meta: RunMeta,
    params: BTreeMap<String, String>,
    tags: BTreeMap<String, String>,
    metrics: File,
    lock: Option<File>,
}

impl LocalRun {
    pub fn run_id(&self) -> &str {
        &self.meta.run_id
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn meta(&self) -> &RunMeta {
        &self.meta
    }
    pub fn params(&self) -> &BTreeMap<String, String> {
        &self.params
    }
    pub fn tags(&self) -> &BTreeMap<String, String> {
        &self.tags
    }
    /// Appends the points to `metrics.jsonl` in one write.
    pub fn log_metrics(&mut self, metrics: &[Metric]) -> Result<(), TrackingError> {
        if metrics.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(64 * metrics.len());
        for m in metrics {
            if m.key.is_empty() {
                return Err(TrackingError::InvalidArgument("empty metric key".into()));
            }
            serde_json::to_writer(&mut buf, m)
                .map_err(|e| TrackingError::Store(format!("cannot encode metric: {e}")))?;
            buf.push(b'\n');
        }
        self.metrics.write_all(&buf).map_err(|e| TrackingError::io(self.dir.join(METRICS), e))
    }

    /// Records params. As on MLflow, a param cannot change value once logged.
    pub fn log_params(&mut self, params: &[(String, String)]) -> Result<(), TrackingError> {
        if params.is_empty() {
            return Ok(());
        }
        for (k, v) in params {
            if k.is_empty() {
                return Err(TrackingError::InvalidArgument("empty param key".into()));
            }
            if let Some(old) = self.params.get(k)
                && old != v
            {
                return Err(TrackingError::InvalidArgument(format!(
                    "param {k:?} was already logged as {old:?}; a param cannot change value (got {v:?})"
                )));
            }
        }
        for (k, v) in params {
            self.params.insert(k.clone(), v.clone());
        }
        write_json_atomic(&self.dir.join(PARAMS), &self.params)
    }

    /// Sets tags (a tag may change value).
    pub fn set_tags(&mut self, tags: &[(String, String)]) -> Result<(), TrackingError> {
        if tags.is_empty() {
            return Ok(());
        }
        for (k, v) in tags {
            if k.is_empty() {
                return Err(TrackingError::InvalidArgument("empty tag key".into()));
            }
            self.tags.insert(k.clone(), v.clone());
        }
        write_json_atomic(&self.dir.join(TAGS), &self.tags)
    }

    /// Records datasets the run used (each once).
    pub fn log_inputs(&mut self, inputs: &[DatasetInput]) -> Result<(), TrackingError> {
        let path = self.dir.join(INPUTS);
        let mut all = read_inputs(&self.dir)?;
        let before = all.len();
        all.extend(inputs.iter().filter(|i| !all.contains(i)).cloned().collect::<Vec<_>>());
        if all.len() == before {
            return Ok(());
        }
        write_json_atomic(&path, &all)
    }

    /// Copies `local_path` to `artifacts/<artifact_dir>/<file name>`; returns that relative path.
    pub fn log_artifact(&mut self, local_path: &Path, artifact_dir: &str) -> Result<String, TrackingError> {
        let artifact_dir = artifact_dir.trim_matches('/');
        check_artifact_rel_path(artifact_dir)?;
        if !local_path.is_file() {
            return Err(TrackingError::InvalidArgument(format!("artifact {} is not a file", local_path.display())));
        }
        let name = local_path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .ok_or_else(|| TrackingError::InvalidArgument(format!("{} has no file name", local_path.display())))?;
        let rel = if artifact_dir.is_empty() { name } else { format!("{artifact_dir}/{name}") };
        let dest = paths::safe_join(&self.dir.join(ARTIFACTS), &rel)?;
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| TrackingError::io(parent, e))?;
        }
        // copy to a temp name then rename, so a crash never leaves half a file under its real name
        let tmp = crate::files::temp_path(&dest);
        if let Err(e) = fs::copy(local_path, &tmp).and_then(|_| fs::rename(&tmp, &dest)) {
            let _ = fs::remove_file(&tmp);
            return Err(TrackingError::io(&dest, e));
        }
        Ok(rel)
    }

    /// The local copy of an artifact.
    pub fn artifact_path(&self, rel: &str) -> Result<PathBuf, TrackingError> {
        paths::safe_join(&self.dir.join(ARTIFACTS), rel)
    }

    /// Records a server run for this run.
    pub fn add_remote(&mut self, remote: RemoteRef) -> Result<(), TrackingError> {
        self.meta.remotes.retain(|r| r.tracking_uri != remote.tracking_uri);
        self.meta.remotes.push(remote);
        write_meta(&self.dir, &self.meta)
    }

    /// Marks the server run at `tracking_uri` synced or not.
    pub fn set_synced(&mut self, tracking_uri: &str, synced: bool) -> Result<(), TrackingError> {
        if let Some(r) = self.meta.remote_for_mut(tracking_uri) {
            r.synced = synced;
            r.synced_at = synced.then(now_ms);
            write_meta(&self.dir, &self.meta)?;
        }
        Ok(())
    }

    /// Ends the run: writes the final status and end time, and releases the lock.
    pub fn finish(&mut self, status: RunStatus, end_time_ms: i64) -> Result<(), TrackingError> {
        let _ = self.metrics.sync_data();
        self.meta.status = status.as_str().to_string();
        self.meta.end_time = Some(end_time_ms);
        write_meta(&self.dir, &self.meta)?;
        self.lock = None;
        Ok(())
    }
}

/// The tracker for runs recorded only in the local store.
#[derive(Debug)]
pub struct LocalTracker {
    config: TrackingConfig,
    store: LocalStore,
    run: Option<LocalRun>,
    ended: bool,
}

impl LocalTracker {
    pub fn new(config: TrackingConfig) -> Result<Self, TrackingError> {
        if config.experiment.trim().is_empty() {
            return Err(TrackingError::Config("experiment name is empty".into()));
        }
        let store = LocalStore::open(&config.local_root)?;
        Ok(LocalTracker { config, store, run: None, ended: false })
    }

    pub fn config(&self) -> &TrackingConfig {
        &self.config
    }
    pub fn store(&self) -> &LocalStore {
        &self.store
    }
    /// The run being recorded (also after `end_run`).
    pub fn local_run(&self) -> Option<&LocalRun> {
        self.run.as_ref()
    }
    pub(crate) fn local_run_mut(&mut self) -> Option<&mut LocalRun> {
        self.run.as_mut()
    }

    /// Starts a run with a given id, name and start time (the mirrored tracker passes the
    /// server's). `tags` are written as given (system tags included by the caller).
    pub(crate) fn start_with(
        &mut self,
        run_id: String,
        run_name: String,
        start_time: i64,
        params: &[(String, String)],
        tags: &[(String, String)],
        tracking_uri: Option<String>,
    ) -> Result<&mut LocalRun, TrackingError> {
        if self.run.is_some() {
            return Err(TrackingError::InvalidArgument(
                "start_run called twice on one tracker; open a new tracker for a new run".into(),
            ));
        }
        let meta = RunMeta {
            format: FORMAT_VERSION,
            run_id,
            run_name,
            experiment: self.config.experiment.clone(),
            status: "RUNNING".into(),
            start_time,
            end_time: None,
            user: util::current_user(),
            tracking_uri,
            remotes: Vec::new(),
            pid: Some(std::process::id()),
        };
        let mut run = self.store.create_run(meta)?;
        run.set_tags(tags)?;
        run.log_params(params)?;
        self.run = Some(run);
        Ok(self.run.as_mut().expect("just set"))
    }

    fn active(&mut self) -> Result<&mut LocalRun, TrackingError> {
        if self.ended {
            return Err(TrackingError::NoActiveRun);
        }
        self.run.as_mut().ok_or(TrackingError::NoActiveRun)
    }

    /// `run_name` from the config, else a generated one.
    pub(crate) fn pick_run_name(config: &TrackingConfig) -> String {
        config.run_name.clone().unwrap_or_else(util::generate_run_name)
    }

    /// User tags over system tags.
    pub(crate) fn initial_tags(run_name: &str, tags: &[(String, String)]) -> Vec<(String, String)> {
        let mut all: BTreeMap<String, String> = util::system_tags(run_name).into_iter().collect();
        for (k, v) in tags {
            all.insert(k.clone(), v.clone());
        }
        all.into_iter().collect()
    }

    pub(crate) fn mark_ended(&mut self) {
        self.ended = true;
    }
    pub(crate) fn is_active(&self) -> bool {
        self.run.is_some() && !self.ended
    }
}

impl Tracker for LocalTracker {
    fn start_run(&mut self, params: &[(String, String)], tags: &[(String, String)]) -> Result<String, TrackingError> {
        let name = Self::pick_run_name(&self.config);
        let all_tags = Self::initial_tags(&name, tags);
        let run = self.start_with(util::new_run_id(), name, now_ms(), params, &all_tags, None)?;
        Ok(run.run_id().to_string())
    }
    fn log_metrics(&mut self, metrics: &[Metric]) -> Result<(), TrackingError> {
        self.active()?.log_metrics(metrics)
    }
    fn log_params(&mut self, params: &[(String, String)]) -> Result<(), TrackingError> {
        self.active()?.log_params(params)
    }
    fn set_tags(&mut self, tags: &[(String, String)]) -> Result<(), TrackingError> {
        self.active()?.set_tags(tags)
    }
    fn log_inputs(&mut self, inputs: &[DatasetInput]) -> Result<(), TrackingError> {
        self.active()?.log_inputs(inputs)
    }
    fn log_artifact(&mut self, local_path: &Path, artifact_dir: &str) -> Result<(), TrackingError> {
        self.active()?.log_artifact(local_path, artifact_dir).map(|_| ())
    }
    fn end_run(&mut self, status: RunStatus) -> Result<(), TrackingError> {
        let run = self.active()?;
        run.finish(status, now_ms())?;
        self.ended = true;
        Ok(())
    }
    fn run_id(&self) -> Option<&str> {
        self.run.as_ref().map(|r| r.run_id())
    }
    fn describe(&self) -> String {
        match &self.run {
            Some(r) => format!("local store {}", r.dir().display()),
            None => format!("local store {}", self.store.root().display()),
        }
    }
}

impl Drop for LocalTracker {
    /// A run dropped during a panic is ended as FAILED; one dropped otherwise without `end_run`
    /// stays RUNNING and reads back as unfinished.
    fn drop(&mut self) {
        if std::thread::panicking()
            && self.is_active()
            && let Some(run) = self.run.as_mut()
        {
            let _ = run.finish(RunStatus::Failed, now_ms());
            self.ended = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_round_trip_exactly() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut values: Vec<f64> = (0..20_000).map(|s| 0.1 * 0.99f64.powi(s)).collect();
        for _ in 0..50_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = f64::from_bits(state);
            if v.is_finite() {
                values.push(v);
            }
        }
        for v in values {
            let m = Metric { key: "k".into(), value: v, step: 0, timestamp_ms: 0, about: None };
            let line = serde_json::to_vec(&m).unwrap();
            let (back, bad) = parse_metrics(&line);
            assert_eq!(bad, 0);
            assert_eq!(back[0].value.to_bits(), v.to_bits(), "{v:e}");
        }
    }

    #[test]
    fn torn_lines_are_skipped() {
        let data = b"{\"key\":\"a\",\"value\":1.0,\"step\":0,\"timestamp\":5}\n\
                     {\"key\":\"a\",\"value\":\"NaN\",\"step\":1,\"timestamp\":6}\n\
                     {\"key\":\"a\",\"val";
        let (m, bad) = parse_metrics(data);
        assert_eq!(m.len(), 2);
        assert!(m[1].value.is_nan());
        assert_eq!(bad, 1);
        let (m, bad) = parse_metrics(b"");
        assert!(m.is_empty() && bad == 0);
    }
}
