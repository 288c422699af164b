//! A run being recorded in the local store: created or reopened under its lock, then params,
//! tags, metrics, datasets and artifacts written as they come, and its end.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::LocalStore;
use super::format::{
    ARTIFACTS, INPUTS, METRICS, PARAMS, RemoteRef, RunMeta, TAGS, read_inputs, read_map, read_meta, try_lock_run,
    write_json_atomic, write_meta,
};
use crate::tracking::client::check_artifact_rel_path;
use crate::tracking::error::TrackingError;
use crate::tracking::paths;
use crate::tracking::util::{is_run_id, now_ms};
use crate::tracking::{DatasetInput, Metric, RunStatus};

impl LocalStore {
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
        require_keys(params, "param")?;
        for (k, v) in params {
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
        require_keys(tags, "tag")?;
        self.tags.extend(tags.iter().cloned());
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

/// Refuses a batch with an empty key before any of it is recorded.
fn require_keys(entries: &[(String, String)], kind: &str) -> Result<(), TrackingError> {
    if entries.iter().any(|(key, _)| key.is_empty()) {
        return Err(TrackingError::InvalidArgument(format!("empty {kind} key")));
    }
    Ok(())
}
