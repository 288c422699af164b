//! Finding a trained model to evaluate, export or serve: the input is
//! read once into a [`ModelUri`] (a registered version, stage, alias or latest, a LoggedModel id,
//! a run, or a directory), then resolved: a run in the local store, else on the MLflow server; a
//! registry or LoggedModel URI on the server. Every failure names the form the input was read as.

use std::path::{Path, PathBuf};

use super::ExperimentError;
use crate::model::{self, ENGINE_FILES};
use crate::tracking::{
    self, FindRunError, MlflowClient, ModelUri, ModelVersion, RunHandle, TrackingConfig, VersionSelector,
};

type Result<T> = std::result::Result<T, ExperimentError>;

/// Where a model was found.
pub struct Located {
    /// The directory holding the engine's model files (a download, for a model on a server).
    pub dir: PathBuf,
    /// The run that trained the model, when known (from the run, the registry or the metadata).
    pub run_id: Option<String>,
    /// The run itself, when the model was found through it (by run id).
    pub run: Option<RunHandle>,
    /// The registered version a `models:/NAME…` URI resolved to.
    pub version: Option<ModelVersion>,
    /// What the input turned out to be, for the user (e.g. "models:/m@champion is m version 3").
    pub note: Option<String>,
}

impl Located {
    fn at(dir: &Path, run_id: Option<String>) -> Located {
        Located { dir: dir.to_path_buf(), run_id, run: None, version: None, note: None }
    }

    /// Every id the model's run goes by (local and server), one of which its metadata must
    /// name; empty when the model was not found through its run.
    pub fn run_ids(&self) -> Vec<String> {
        self.run.as_ref().map(RunHandle::all_ids).unwrap_or_default()
    }
}

/// The model of `run_id`, or at `model_uri` (any form [`ModelUri`] reads). A model on a server
/// is downloaded into `download`.
pub fn locate_model(
    run_id: Option<&str>,
    model_uri: Option<&str>,
    tracking: &TrackingConfig,
    download: &Path,
) -> Result<Located> {
    let (input, uri) = read(run_id, model_uri)?;
    locate(&input, &uri, tracking, download)
}

/// Reads `--model-uri` (any form) or else `--run-id` (a run id only).
pub fn read(run_id: Option<&str>, model_uri: Option<&str>) -> Result<(String, ModelUri)> {
    Ok(match model_uri {
        Some(text) => (text.to_string(), ModelUri::parse(text)?),
        None => {
            let text = run_id.unwrap_or_default();
            (text.to_string(), ModelUri::run_id(text)?)
        }
    })
}

/// Resolves `uri` (read from `input`) and fetches its model into `download` when it is on a
/// server.
pub fn locate(input: &str, uri: &ModelUri, tracking: &TrackingConfig, download: &Path) -> Result<Located> {
    match uri {
        ModelUri::Directory(dir) => locate_directory(input, uri, dir),
        ModelUri::Run { run_id } => locate_run_model(input, uri, run_id, tracking, download),
        ModelUri::Registered { .. } => {
            let (client, version) = resolve_version(input, uri, tracking)?;
            let found = client.version_artifact_uri(&version).and_then(|artifact_uri| {
                download_model(&client, &artifact_uri, download)?;
                Ok(())
            });
            found.map_err(|e| uri.error(input, format!("version {} of `{}`: {e}", version.version, version.name)))?;
            let run_id = model::read_metadata(download).ok().and_then(|m| m.run_id).or(version.run_id.clone());
            let note = format!(
                "{input} is {} version {}{}",
                version.name,
                version.version,
                run_id.as_deref().map(|r| format!(" of run {r}")).unwrap_or_default()
            );
            Ok(Located { version: Some(version), note: Some(note), ..Located::at(download, run_id) })
        }
        ModelUri::LoggedModel { model_id } => {
            let client = server_for(input, uri, tracking)?;
            let found = client.resolve_logged_model(model_id).and_then(|logged| {
                download_model(&client, &logged.artifact_uri, download)?;
                Ok(logged)
            });
            let logged = found.map_err(|e| uri.error(input, e.to_string()))?;
            let run_id = model::read_metadata(download).ok().and_then(|m| m.run_id).or(logged.source_run_id);
            let note = format!(
                "{input} is logged model {model_id}{}",
                run_id.as_deref().map(|r| format!(" of run {r}")).unwrap_or_default()
            );
            Ok(Located { note: Some(note), ..Located::at(download, run_id) })
        }
    }
}

/// The registered version a `models:/NAME…` URI names now, with a client of its server.
pub fn resolve_version(input: &str, uri: &ModelUri, tracking: &TrackingConfig) -> Result<(MlflowClient, ModelVersion)> {
    let ModelUri::Registered { name, selector } = uri else {
        return Err(uri.error(input, "not a registered model").into());
    };
    let client = server_for(input, uri, tracking)?;
    let version = client.resolve_version(name, selector).map_err(|e| uri.error(input, e.to_string()))?;
    Ok((client, version))
}

/// `models:/NAME/VERSION`, a pinned version of a registered model.
pub fn pinned(name: &str, version: &str) -> ModelUri {
    ModelUri::Registered { name: name.to_string(), selector: VersionSelector::Number(version.to_string()) }
}

/// A model directory given on the command line: it must hold the engine's files. A run
/// directory (its model one level down) or a file gets a hint at what was meant.
fn locate_directory(input: &str, uri: &ModelUri, dir: &Path) -> Result<Located> {
    let has_model = |d: &Path| ENGINE_FILES.iter().all(|f| d.join(f).is_file());
    if !dir.exists() {
        return Err(uri.error(input, "no such directory").into());
    }
    if dir.is_file() {
        let hint = match dir.parent().filter(|p| has_model(p)) {
            Some(parent) => format!("; its model directory is `{}`", parent.display()),
            None => String::new(),
        };
        return Err(uri.error(input, format!("it is a file, not a directory{hint}")).into());
    }
    if !has_model(dir) {
        let nested = dir.join(tracking::MODEL_ARTIFACT_DIR);
        let problem = if has_model(&nested) {
            format!("a run directory: its model is in `{}`", nested.display())
        } else {
            let missing: Vec<&str> = ENGINE_FILES.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
            format!("it holds no model (missing {})", missing.join(", "))
        };
        return Err(uri.error(input, problem).into());
    }
    let run_id = model::read_metadata(dir).ok().and_then(|m| m.run_id);
    Ok(Located::at(dir, run_id))
}

/// A run's model: from the local store when the run is there, else from the server.
fn locate_run_model(
    input: &str,
    uri: &ModelUri,
    run_id: &str,
    tracking: &TrackingConfig,
    download: &Path,
) -> Result<Located> {
    let run = match RunHandle::find(tracking, run_id) {
        Ok(run) => run,
        Err(e @ (FindRunError::NotLocal { .. } | FindRunError::Unknown { .. })) => {
            return Err(uri.error(input, format!("{e}{}", name_hint(run_id))).into());
        }
        Err(FindRunError::Server { server, source, .. }) => {
            return Err(uri.error(input, format!("cannot read the run from {server}: {source}")).into());
        }
        Err(e) => return Err(e.into()),
    };
    let dir = match &run {
        RunHandle::Local { record, .. } => {
            let dir = record.dir.join("artifacts").join(tracking::MODEL_ARTIFACT_DIR);
            if !ENGINE_FILES.iter().all(|f| dir.join(f).is_file()) {
                let problem = format!("run {} has no model (nothing under {})", record.run_id, dir.display());
                return Err(uri.error(input, problem).into());
            }
            dir
        }
        RunHandle::Server { client, run: server_run } => {
            // A LoggedModel whose upload did not finish has no files: the run's own copy under
            // model/ is used instead, and its SHA-256 is checked when it loads.
            let found = client.find_run_model(run_id).and_then(|model| {
                let artifact_uri = match model {
                    Some(model) if model.is_ready() => model.artifact_uri,
                    _ => format!(
                        "{}/{}",
                        server_run.info.artifact_uri.trim_end_matches('/'),
                        tracking::MODEL_ARTIFACT_DIR
                    ),
                };
                download_model(client, &artifact_uri, download)
            });
            let server = client.tracking_uri();
            found.map_err(|e| uri.error(input, format!("run {run_id} has no model on {server}: {e}")))?;
            download.to_path_buf()
        }
    };
    let run_id = run.run_id().to_string();
    Ok(Located { run: Some(run), ..Located::at(&dir, Some(run_id)) })
}

/// For a "run id" that is no hex id: the forms a registered model or a path takes.
fn name_hint(run_id: &str) -> String {
    if run_id.chars().all(|c| c.is_ascii_hexdigit()) {
        return String::new();
    }
    format!("; a registered model is models:/{run_id}/VERSION or models:/{run_id}@ALIAS, a directory ./{run_id}")
}

/// A client of the server a registry or LoggedModel URI needs.
fn server_for(input: &str, uri: &ModelUri, tracking: &TrackingConfig) -> Result<MlflowClient> {
    match &tracking.tracking_uri {
        Some(server) => Ok(MlflowClient::from_env(server).map_err(|e| uri.error(input, e.to_string()))?),
        None => {
            Err(uri.error(input, "it lives on an MLflow server: pass --tracking-uri or set MLFLOW_TRACKING_URI").into())
        }
    }
}

/// Downloads the files the engine reads (fixed names, so no server-chosen path is ever written),
/// each refused past the size such a file can have.
fn download_model(
    client: &MlflowClient,
    artifact_uri: &str,
    dir: &Path,
) -> std::result::Result<(), tracking::TrackingError> {
    for file in ENGINE_FILES {
        client.download_artifact_to(artifact_uri, file, dir, model::max_file_bytes(file))?;
    }
    Ok(())
}
