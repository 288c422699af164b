//! The quality gate as a workflow step: find the run (and a baseline model's run), decide with
//! the rule of [`crate::gate`], record the decision on the run, and check a run's recorded
//! decision before it is registered or promoted.

use super::ExperimentError;
pub use crate::gate::{Baseline, Decision, Gate, GateError};
use crate::tracking::{MlflowClient, ModelUri, Push, Pushed, RunAdditions, RunHandle, TrackingConfig, VersionSelector};

type Result<T> = std::result::Result<T, ExperimentError>;

/// A gate's decision, recorded on the run.
pub struct GateOutcome {
    /// The value checked, and each check's verdict.
    pub decision: Decision,
    /// The decision in one line, e.g. "gate passed: test_accuracy 0.91 >= 0.85 (run …)".
    pub line: String,
    /// What the caller should know (e.g. a baseline alias that names no version yet).
    pub notes: Vec<String>,
}

/// Checks `run_id`'s metric with `rule` (and against the run of the `baseline` model URI or run
/// id, when given), then records the decision as tags on the run and, for a pass, requires the
/// run's model on the server to be complete. A decision that cannot be recorded is an error
/// that states it: it does not count.
pub fn gate_run(tracking: &TrackingConfig, run_id: &str, rule: &Gate, baseline: Option<&str>) -> Result<GateOutcome> {
    let found = RunHandle::find(tracking, run_id)?;
    let mut notes = Vec::new();
    let baseline = match baseline {
        Some(uri) => find_baseline(tracking, uri, &mut notes)?,
        None => None,
    };
    let decision = rule.decide(run_id, &found.metrics(), baseline.as_ref())?;
    let line = rule.describe(&decision, run_id);
    let recorded = tag_run(tracking, &found, &rule.tags(&decision))
        .and_then(|()| if decision.passed() { require_ready_model(tracking, &found) } else { Ok(()) });
    if let Err(e) = recorded {
        return Err(e.after(format!("{line}, but not recorded on the run")));
    }
    Ok(GateOutcome { decision, line, notes })
}

/// The run behind `uri` (any model URI naming a registered version, or a run id) and its
/// metrics; `None` when an alias points nowhere yet (the first model to reach production).
fn find_baseline(tracking: &TrackingConfig, uri: &str, notes: &mut Vec<String>) -> Result<Option<Baseline>> {
    let (name, selector) = match ModelUri::parse(uri)? {
        ModelUri::Registered { name, selector } => (name, selector),
        ModelUri::Run { run_id } => {
            let found = RunHandle::find(tracking, &run_id)
                .map_err(|e| ExperimentError::from(e).after(format!("--baseline {uri}, read as a run id")))?;
            let run_id = found.server_run_id().unwrap_or(run_id);
            return Ok(Some(Baseline { label: format!("run {uri}"), run_id, metrics: found.metrics() }));
        }
        _ => {
            return Err(ExperimentError::Refused(format!(
                "--baseline {uri}: give a registered model (models:/NAME@champion, models:/NAME/VERSION) or a run id"
            )));
        }
    };
    let client = registry(tracking)?;
    let version = match &selector {
        VersionSelector::Alias(alias) => match client.aliased_version(&name, alias)? {
            Some(version) => version,
            None => {
                notes.push(format!(
                    "--baseline {uri} names no version yet (the first model): only the threshold counts"
                ));
                return Ok(None);
            }
        },
        selector => client.resolve_version(&name, selector)?,
    };
    let run_id = version.run_id.ok_or_else(|| {
        ExperimentError::Failed(format!("--baseline {uri}: version {} names no run", version.version))
    })?;
    let run = RunHandle::on_server(tracking, &run_id)
        .map_err(|e| ExperimentError::from(e).after(format!("cannot read run {run_id}, behind --baseline {uri}")))?;
    let label = format!("{uri} (version {})", version.version);
    Ok(Some(Baseline { label, run_id, metrics: run.metrics() }))
}

/// Refuses a run whose gate failed (or never ran, when `require_gate`) unless `force`, and
/// records a forced override on the run (the tag `engine.gate.forced`); returns the warning to
/// show for an override.
pub fn require_gate(
    tracking: &TrackingConfig,
    found: &RunHandle,
    run_id: &str,
    require_gate: bool,
    force: bool,
) -> Result<Option<String>> {
    let tags = found.tags();
    crate::gate::check_registrable(run_id, &tags, require_gate, force)?;
    let overridden = force && tags.get(crate::gate::DECISION_TAG).map(String::as_str) != Some("passed");
    if !overridden {
        return Ok(None);
    }
    tag_run(tracking, found, &[(crate::gate::FORCED_TAG.to_string(), "true".to_string())])?;
    Ok(Some(format!(
        "run {run_id} did not pass a quality gate; going on as --force says ({})",
        crate::gate::FORCED_TAG
    )))
}

/// Sets `tags` on the run, and sends a local run that has a copy on the server there.
fn tag_run(tracking: &TrackingConfig, found: &RunHandle, tags: &[(String, String)]) -> Result<()> {
    let additions = RunAdditions { tags: tags.to_vec(), ..Default::default() };
    match found.add(tracking, &additions, Push::IfMirrored)? {
        Pushed::Failed(_, e) => Err(ExperimentError::from(e).after("cannot send the gate's tags")),
        Pushed::NotNeeded | Pushed::Synced(_) => Ok(()),
    }
}

/// A passing run must have a model that can be registered: on a server, a LoggedModel with all
/// its files (the gate's sync just before uploads what it can).
fn require_ready_model(tracking: &TrackingConfig, found: &RunHandle) -> Result<()> {
    let (client, run_id) = match found {
        RunHandle::Server { client, run } => (client.clone(), run.info.run_id.clone()),
        RunHandle::Local { record, .. } => match (&tracking.tracking_uri, record.server_run_id()) {
            (Some(uri), Some(id)) => (MlflowClient::from_env(uri)?, id.to_string()),
            _ => return Ok(()),
        },
    };
    if let Some(model) = client.find_run_model(&run_id)? {
        model.require_ready()?;
    }
    Ok(())
}

/// A client of the model registry's server.
pub fn registry(tracking: &TrackingConfig) -> Result<MlflowClient> {
    match &tracking.tracking_uri {
        Some(uri) => Ok(MlflowClient::from_env(uri)?),
        None => Err(ExperimentError::Failed(
            "the model registry lives on an MLflow server: pass --tracking-uri or set MLFLOW_TRACKING_URI".into(),
        )),
    }
}
