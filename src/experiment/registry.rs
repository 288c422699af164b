//! The registry steps after a passed gate: a run's model becomes a registered version in
//! Staging, and a version is promoted to Production (archiving the one before) with the
//! `champion` alias. The gate requirement ([`super::require_gate`]) is checked by the caller
//! between finding the run and changing the registry.

use std::time::Duration;

use super::ExperimentError;
use super::gate::registry;
use crate::tracking::{self, MlflowClient, RunHandle, TrackingConfig};

type Result<T> = std::result::Result<T, ExperimentError>;

/// The alias that marks the production model.
pub const CHAMPION: &str = "champion";

/// How long a new version may stay PENDING_REGISTRATION before registering gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// A version created from a run's model, now in Staging.
pub struct Registered {
    pub name: String,
    pub version: String,
    pub stage: String,
    /// The run on the server the version was made from.
    pub run_id: String,
    /// The version's source: `models:/<model id>` (the run's LoggedModel) or the run's `model/`.
    pub source: String,
}

/// Registers the model of `found` (which must be on the server: a local run must be synced
/// first) as a new version of `name`, waits until it is ready and moves it to Staging. A
/// LoggedModel whose upload did not finish is refused.
pub fn register_model(tracking: &TrackingConfig, found: &RunHandle, name: &str) -> Result<Registered> {
    let client = registry(tracking)?;
    let run_id = found.server_run_id().ok_or_else(|| {
        ExperimentError::Failed(format!(
            "run {} is only in the local store: push it with `engine sync` first",
            found.run_id()
        ))
    })?;
    let (source, model_id) = match client.find_run_model(&run_id)? {
        Some(model) => {
            let model = model.require_ready()?;
            (format!("models:/{}", model.model_id), Some(model.model_id))
        }
        None => {
            let run = client.get_run(&run_id)?;
            (format!("{}/{}", run.info.artifact_uri.trim_end_matches('/'), tracking::MODEL_ARTIFACT_DIR), None)
        }
    };
    client.ensure_registered_model(name)?;
    let created = client.create_model_version(name, &source, model_id.as_deref(), &run_id)?;
    client.wait_until_ready(name, &created.version, READY_TIMEOUT)?;
    let staged = client.transition_stage(name, &created.version, "Staging", false)?;
    Ok(Registered { name: name.to_string(), version: staged.version, stage: staged.stage, run_id, source })
}

/// A version about to be promoted: ready, with the run it came from (whose gate the caller
/// checks) and the versions in Production now.
pub struct Promotion {
    client: MlflowClient,
    name: String,
    version: String,
    /// The run the version was made from.
    pub run: RunHandle,
    /// The versions in Production before the promotion, which it archives.
    pub archived: Vec<String>,
}

/// A version now in Production with the `champion` alias.
pub struct Promoted {
    pub name: String,
    pub version: String,
    pub stage: String,
    /// The versions that were in Production before, now archived.
    pub archived: Vec<String>,
}

/// Reads version `version` of `name` and the run behind it; refuses a version that is not
/// ready or names no run (its gate could not be checked).
pub fn prepare_promotion(tracking: &TrackingConfig, name: &str, version: &str) -> Result<Promotion> {
    let client = registry(tracking)?;
    let archived: Vec<String> = client
        .model_versions(name)?
        .into_iter()
        .filter(|v| v.stage == "Production" && v.version != version)
        .map(|v| v.version)
        .collect();
    let found = client.get_model_version(name, version)?;
    client.require_ready_version(&found)?;
    let run_id = found.run_id.ok_or_else(|| {
        ExperimentError::Failed(format!("{name} version {version} names no run, so its gate cannot be checked"))
    })?;
    let run = RunHandle::on_server(tracking, &run_id)
        .map_err(|e| ExperimentError::from(e).after(format!("cannot read run {run_id}, the source of the version")))?;
    Ok(Promotion { client, name: name.to_string(), version: version.to_string(), run, archived })
}

impl Promotion {
    /// Moves the version to Production (archiving the others there) and points `champion` at it.
    pub fn complete(self) -> Result<Promoted> {
        let promoted = self.client.transition_stage(&self.name, &self.version, "Production", true)?;
        self.client.set_alias(&self.name, CHAMPION, &self.version)?;
        Ok(Promoted { name: self.name, version: promoted.version, stage: promoted.stage, archived: self.archived })
    }
}
