//! What a sync did, run by run: the outcome of each run and what was sent, and the summary
//! `engine sync` prints.

use std::fmt;

use super::super::local::RunRecord;

/// What happened to one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Everything is on the server now.
    Synced,
    /// Marked synced before; not looked at.
    AlreadySynced,
    /// Pushed, but the local run is unfinished (its process died), so it stays RUNNING there.
    PushedUnfinished,
    /// Being recorded by a live process: left alone.
    SkippedRunning,
    /// Being recorded by a live process: what it recorded so far was pushed ([`super::push_live`]);
    /// the server run stays RUNNING until a sync after its end.
    PushedLive,
    /// Could not be synced; the reason.
    Failed(String),
}

/// One run's part of a [`SyncReport`].
#[derive(Clone, Debug)]
pub struct SyncedRun {
    pub local_run_id: String,
    pub run_name: String,
    pub experiment: String,
    pub server_run_id: Option<String>,
    /// A new server run was created for it.
    pub created: bool,
    pub params_sent: usize,
    pub tags_sent: usize,
    pub metrics_sent: usize,
    pub artifacts_sent: usize,
    /// The server's status/end time was set.
    pub status_updated: bool,
    /// The run's LoggedModel was created or completed.
    pub model_synced: bool,
    pub inputs_sent: usize,
    pub outcome: SyncOutcome,
}

impl SyncedRun {
    pub(super) fn new(rec: &RunRecord) -> Self {
        Self::from_names(&rec.run_id, &rec.run_name, &rec.experiment)
    }

    /// A run that sync left at `outcome` without sending anything.
    pub(super) fn ended(run_id: &str, run_name: &str, experiment: &str, outcome: SyncOutcome) -> Self {
        SyncedRun { outcome, ..Self::from_names(run_id, run_name, experiment) }
    }

    pub(crate) fn from_names(run_id: &str, run_name: &str, experiment: &str) -> Self {
        SyncedRun {
            local_run_id: run_id.to_string(),
            run_name: run_name.to_string(),
            experiment: experiment.to_string(),
            server_run_id: None,
            created: false,
            params_sent: 0,
            tags_sent: 0,
            metrics_sent: 0,
            artifacts_sent: 0,
            status_updated: false,
            model_synced: false,
            inputs_sent: 0,
            outcome: SyncOutcome::Synced,
        }
    }

    /// True when anything was written to the server for this run.
    pub fn sent_anything(&self) -> bool {
        self.created
            || self.params_sent + self.tags_sent + self.metrics_sent + self.artifacts_sent + self.inputs_sent > 0
            || self.status_updated
            || self.model_synced
    }
}

/// The result of [`sync`](super::sync).
#[derive(Clone, Debug)]
pub struct SyncReport {
    pub tracking_uri: String,
    pub runs: Vec<SyncedRun>,
}

impl SyncReport {
    /// True when anything was written to the server.
    pub fn sent_anything(&self) -> bool {
        self.runs.iter().any(SyncedRun::sent_anything)
    }
    pub fn created(&self) -> usize {
        self.runs.iter().filter(|r| r.created).count()
    }
    pub fn failed(&self) -> usize {
        self.runs.iter().filter(|r| matches!(r.outcome, SyncOutcome::Failed(_))).count()
    }
    pub fn metrics_sent(&self) -> usize {
        self.runs.iter().map(|r| r.metrics_sent).sum()
    }
}

impl fmt::Display for SyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |o: &dyn Fn(&SyncOutcome) -> bool| self.runs.iter().filter(|r| o(&r.outcome)).count();
        let updated = self.runs.iter().filter(|r| r.sent_anything() && !r.created).count();
        writeln!(
            f,
            "sync to {}: {} run(s): {} created, {} completed, {} already synced, {} skipped (running), {} unfinished, {} failed",
            self.tracking_uri,
            self.runs.len(),
            self.created(),
            updated,
            count(&|o| *o == SyncOutcome::AlreadySynced),
            count(&|o| *o == SyncOutcome::SkippedRunning),
            count(&|o| *o == SyncOutcome::PushedUnfinished),
            self.failed(),
        )?;
        for r in &self.runs {
            if r.outcome == SyncOutcome::AlreadySynced {
                continue;
            }
            let server = r.server_run_id.as_deref().unwrap_or("-");
            let what = match &r.outcome {
                SyncOutcome::Failed(e) => format!("FAILED: {e}"),
                SyncOutcome::SkippedRunning => "skipped: still running".to_string(),
                o => format!(
                    "{}{} params, {} tags, {} metric points, {} artifacts{}{}{}",
                    if r.created { "created; " } else { "" },
                    r.params_sent,
                    r.tags_sent,
                    r.metrics_sent,
                    r.artifacts_sent,
                    if r.model_synced { ", model completed" } else { "" },
                    if r.status_updated { ", status set" } else { "" },
                    match o {
                        SyncOutcome::PushedUnfinished => " (unfinished: left RUNNING)",
                        SyncOutcome::PushedLive => " (still running)",
                        _ => "",
                    }
                ),
            };
            writeln!(f, "  {} {:<24} -> {}: {}", r.local_run_id, r.run_name, server, what)?;
        }
        Ok(())
    }
}
