//! The tracker for runs recorded only in the local store.

use std::collections::BTreeMap;
use std::path::Path;

use super::format::{FORMAT_VERSION, RunMeta};
use super::{LocalRun, LocalStore};
use crate::tracking::error::TrackingError;
use crate::tracking::util::{self, now_ms};
use crate::tracking::{DatasetInput, Metric, RunStatus, Tracker, TrackingConfig};

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
        Ok(self.run.insert(run))
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
