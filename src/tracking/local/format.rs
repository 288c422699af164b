//! The on-disk format of a run directory: file names, `meta.json`, and reading and writing the
//! files whole (JSON replaced atomically, `metrics.jsonl` parsed line by line), and the run lock.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::tracking::error::TrackingError;
use crate::tracking::{DatasetInput, Metric};

/// Version of the on-disk format written in `meta.json`.
pub const FORMAT_VERSION: u32 = 1;

pub(super) const META: &str = "meta.json";
pub(super) const PARAMS: &str = "params.json";
pub(super) const TAGS: &str = "tags.json";
pub(super) const METRICS: &str = "metrics.jsonl";
pub(super) const INPUTS: &str = "inputs.json";
pub(super) const ARTIFACTS: &str = "artifacts";
const LOCK: &str = ".lock";
const PUSH_LOCK: &str = ".push-lock";

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
pub(super) fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

pub(super) fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), TrackingError> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| TrackingError::Store(format!("cannot encode {}: {e}", path.display())))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, TrackingError> {
    let bytes = fs::read(path).map_err(|e| TrackingError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| TrackingError::Store(format!("{}: {e}", path.display())))
}

pub(super) fn read_map(path: &Path) -> Result<BTreeMap<String, String>, TrackingError> {
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    read_json(path)
}

/// Parses `metrics.jsonl`: returns the points and the number of lines that could not be read.
pub(super) fn parse_metrics(bytes: &[u8]) -> (Vec<Metric>, usize) {
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
pub(crate) fn is_locked(dir: &Path) -> bool {
    let Ok(f) = File::open(dir.join(LOCK)) else {
        return false;
    };
    matches!(f.try_lock(), Err(fs::TryLockError::WouldBlock))
}

/// Takes a run's lock; `None` when another process holds it.
pub(crate) fn try_lock_run(dir: &Path) -> Result<Option<File>, TrackingError> {
    try_lock(&dir.join(LOCK))
}

/// Takes a run's push lock, which every push of the run to a server holds (a sync, and a push of
/// a run still being recorded, which cannot take the recorder's lock); `None` when another
/// process holds it.
pub(crate) fn try_lock_push(dir: &Path) -> Result<Option<File>, TrackingError> {
    try_lock(&dir.join(PUSH_LOCK))
}

fn try_lock(path: &Path) -> Result<Option<File>, TrackingError> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| TrackingError::io(path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(TrackingError::io(path, e)),
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
pub(super) fn read_inputs(dir: &Path) -> Result<Vec<DatasetInput>, TrackingError> {
    let path = dir.join(INPUTS);
    if !path.exists() {
        return Ok(Vec::new());
    }
    read_json(&path)
}

pub(crate) fn read_meta(dir: &Path) -> Result<RunMeta, TrackingError> {
    read_json(&dir.join(META))
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
