//! Following the local store: at each look, every run that changed since the previous one goes to
//! the server. A run another process is still recording is pushed as far as it got
//! ([`push_live`]), so its epochs show up as they end; every other run goes through [`sync_to`],
//! which sends what is missing and marks it synced.
//!
//! "Changed" is told without reading any metrics: the sizes and times of a run's files, its
//! status, its synced mark and whether its lock is held. A sync rewrites `meta.json` to remember
//! the server run, so the file's time is left out: what a sync writes never reads as a change.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::client::{MlflowClient, normalize_tracking_uri};
use super::error::TrackingError;
use super::local::{self, LocalStore};
use super::sync::{SyncOptions, SyncOutcome, SyncedRun, push_live, sync_to};

/// The files whose size and time tell that a run recorded something new.
const WATCHED_FILES: [&str; 4] = ["metrics.jsonl", "params.json", "tags.json", "inputs.json"];

/// What a look at one run saw; the same value twice means nothing happened in between.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fingerprint {
    status: String,
    end_time: Option<i64>,
    synced: bool,
    locked: bool,
    /// The recorder mirrors the run to this very server itself.
    mirrored_here: bool,
    files: Vec<Option<(u64, SystemTime)>>,
}

impl Fingerprint {
    fn of(dir: &Path, uri: &str) -> Result<Self, TrackingError> {
        let meta = local::read_meta(dir)?;
        let files = WATCHED_FILES
            .iter()
            .map(|name| fs::metadata(dir.join(name)).ok().and_then(|m| Some((m.len(), m.modified().ok()?))))
            .collect();
        let mirrored_here =
            meta.tracking_uri.as_deref().and_then(|u| normalize_tracking_uri(u).ok()).is_some_and(|u| u == uri);
        Ok(Fingerprint {
            synced: meta.remote_for(uri).is_some_and(|r| r.synced),
            // Only a RUNNING run's lock matters, and looking takes it for an instant.
            locked: meta.status == "RUNNING" && local::is_locked(dir),
            status: meta.status,
            end_time: meta.end_time,
            mirrored_here,
            files,
        })
    }
}

/// Pushes the runs of a local store to one server as they change.
pub struct StoreWatcher {
    store: LocalStore,
    client: MlflowClient,
    seen: HashMap<PathBuf, Fingerprint>,
    /// The server run of each run pushed live, so the next push need not look for it.
    live_runs: HashMap<PathBuf, String>,
}

impl StoreWatcher {
    /// Watches the store at `root` (which need not exist yet) for the server of `client`.
    pub fn new(root: &Path, client: MlflowClient) -> Result<Self, TrackingError> {
        Ok(StoreWatcher { store: LocalStore::open(root)?, client, seen: HashMap::new(), live_runs: HashMap::new() })
    }

    /// The server runs are sent to.
    pub fn tracking_uri(&self) -> &str {
        self.client.tracking_uri()
    }

    /// One look at the store: pushes every run that changed since the last look and returns what
    /// was done to each (runs with nothing new are left out). A run that fails is reported once
    /// and tried again when it changes. Stops with an error when the server cannot be reached;
    /// the next look tries the same runs again.
    pub fn poll(&mut self) -> Result<Vec<SyncedRun>, TrackingError> {
        let uri = self.client.tracking_uri().to_string();
        let mut done = Vec::new();
        let mut to_sync: Vec<(PathBuf, Fingerprint)> = Vec::new();
        for dir in self.store.run_dirs()? {
            // A run being created has no readable meta.json yet: the next look gets it.
            let Ok(print) = Fingerprint::of(&dir, &uri) else { continue };
            if self.seen.get(&dir) == Some(&print) || (print.locked && print.mirrored_here) {
                continue;
            }
            if print.synced {
                self.seen.insert(dir, print);
            } else if print.locked {
                let known = self.live_runs.get(&dir).map(String::as_str);
                if let Some(pushed) = self.push_one_live(&dir, known)? {
                    if let Some(id) = &pushed.server_run_id {
                        self.live_runs.insert(dir.clone(), id.clone());
                    }
                    self.seen.insert(dir, print);
                    done.push(pushed);
                }
            } else {
                to_sync.push((dir, print));
            }
        }
        if !to_sync.is_empty() {
            done.extend(self.sync_some(to_sync)?);
        }
        Ok(done.into_iter().filter(|s| s.sent_anything() || matches!(s.outcome, SyncOutcome::Failed(_))).collect())
    }

    /// [`push_live`], with a failure of this run alone reported as its outcome.
    fn push_one_live(&self, dir: &Path, known: Option<&str>) -> Result<Option<SyncedRun>, TrackingError> {
        match push_live(&self.client, &self.store, dir, known) {
            Ok(pushed) => Ok(pushed),
            Err(e) if e.is_server_unavailable() => Err(e),
            Err(e) => {
                let id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let name = local::read_meta(dir).map(|m| m.run_name).unwrap_or_default();
                let mut failed = SyncedRun::from_names(&id, &name, "");
                failed.outcome = SyncOutcome::Failed(e.to_string());
                Ok(Some(failed))
            }
        }
    }

    /// Syncs runs nobody is recording (parents before children, as [`sync_to`] orders them).
    fn sync_some(&mut self, runs: Vec<(PathBuf, Fingerprint)>) -> Result<Vec<SyncedRun>, TrackingError> {
        let run_ids = runs.iter().filter_map(|(dir, _)| dir.file_name()).map(|n| n.to_string_lossy().into()).collect();
        let report = sync_to(self.store.root(), &self.client, &SyncOptions { run_ids, ..SyncOptions::default() })?;
        let mut prints: HashMap<String, (PathBuf, Fingerprint)> = runs
            .into_iter()
            .map(|(dir, print)| {
                (dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), (dir, print))
            })
            .collect();
        for run in &report.runs {
            // One that got locked in between is pushed live at the next look.
            if run.outcome == SyncOutcome::SkippedRunning {
                continue;
            }
            if let Some((dir, print)) = prints.remove(&run.local_run_id) {
                self.live_runs.remove(&dir);
                self.seen.insert(dir, print);
            }
        }
        Ok(report.runs)
    }
}
