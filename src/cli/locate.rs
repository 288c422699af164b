//! Finding a trained model for `engine eval` and `engine export`: by run id (the local store,
//! else the MLflow server), by `models:/` or `runs:/` URI, or as a directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use engine::model::{self, ENGINE_FILES};
use engine::tracking::{self, LocalStore, MlflowClient, TrackingConfig};

/// Where a model was found.
pub struct Located {
    pub dir: PathBuf,
    pub run_id: Option<String>,
    /// Every id the run goes by (local and server), which the model's metadata must name.
    pub run_ids: Vec<String>,
    /// The run is in the local store (else only on the server).
    pub local_run: bool,
}

/// The model of `run_id`, or at `model_uri` (`models:/NAME/VERSION`, `models:/NAME@ALIAS`,
/// `runs:/RUN_ID/model` or a directory). A model on a server is downloaded into `download`.
pub fn locate_model(
    run_id: Option<&str>,
    model_uri: Option<&str>,
    tracking: &TrackingConfig,
    download: &Path,
) -> anyhow::Result<Located> {
    if let Some(uri) = model_uri {
        if let Some(rest) = uri.strip_prefix("runs:/") {
            let run_id = rest.trim_end_matches('/').trim_end_matches("/model");
            return locate_run_model(run_id, tracking, download);
        }
        if uri.starts_with("models:/") {
            let client = server(tracking, uri)?;
            let artifact_uri = client.registry_artifact_uri(uri)?;
            download_model(&client, &artifact_uri, download)?;
            let run_id = model::read_metadata(download).ok().and_then(|m| m.run_id);
            return Ok(Located { dir: download.to_path_buf(), run_id, run_ids: Vec::new(), local_run: false });
        }
        let dir = PathBuf::from(uri);
        if !dir.is_dir() {
            bail!("--model-uri {uri}: not a directory, models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/model");
        }
        let run_id = model::read_metadata(&dir).ok().and_then(|m| m.run_id);
        return Ok(Located { dir, run_id, run_ids: Vec::new(), local_run: false });
    }
    locate_run_model(run_id.unwrap_or_default(), tracking, download)
}

/// A run's model: from the local store when the run is there, else from the server.
fn locate_run_model(run_id: &str, tracking: &TrackingConfig, download: &Path) -> anyhow::Result<Located> {
    let store = LocalStore::open(&tracking.local_root)?;
    if let Ok(record) = store.load_run(run_id) {
        let dir = record.dir.join("artifacts").join(tracking::MODEL_ARTIFACT_DIR);
        if !ENGINE_FILES.iter().all(|f| dir.join(f).is_file()) {
            bail!("run {} has no model (nothing under {})", record.run_id, dir.display());
        }
        let run_ids = std::iter::once(record.run_id.clone()).chain(record.server_run_id().map(String::from)).collect();
        return Ok(Located { dir, run_id: Some(record.run_id), run_ids, local_run: true });
    }
    let Some(uri) = &tracking.tracking_uri else {
        bail!(
            "unknown run id {run_id}: it is not in the local store {}; if it was logged to a server, pass --tracking-uri or set MLFLOW_TRACKING_URI",
            tracking.local_root.display()
        );
    };
    let client = MlflowClient::from_env(uri)?;
    let run = client.get_run(run_id).with_context(|| format!("cannot read run {run_id} from {uri}"))?;
    // A LoggedModel whose upload did not finish has no files: the run's own copy under model/
    // is used instead, and its SHA-256 is checked when it loads.
    let artifact_uri = match client.find_run_model(run_id)? {
        Some(model) if model.is_ready() => model.artifact_uri,
        _ => format!("{}/{}", run.info.artifact_uri.trim_end_matches('/'), tracking::MODEL_ARTIFACT_DIR),
    };
    download_model(&client, &artifact_uri, download).with_context(|| format!("run {run_id} has no model on {uri}"))?;
    let run_ids =
        std::iter::once(run.info.run_id.clone()).chain(run.tag(tracking::LOCAL_RUN_ID_TAG).map(String::from)).collect();
    Ok(Located { dir: download.to_path_buf(), run_id: Some(run.info.run_id), run_ids, local_run: false })
}

/// A client of the configured MLflow server; `what` says what needs one when none is set.
pub fn server(tracking: &TrackingConfig, what: &str) -> anyhow::Result<MlflowClient> {
    match &tracking.tracking_uri {
        Some(uri) => Ok(MlflowClient::from_env(uri)?),
        None => bail!("{what} lives in an MLflow registry: pass --tracking-uri or set MLFLOW_TRACKING_URI"),
    }
}

/// Downloads the files the engine reads (fixed names, so no server-chosen path is ever written),
/// each refused past the size such a file can have.
fn download_model(client: &MlflowClient, artifact_uri: &str, dir: &Path) -> anyhow::Result<()> {
    for file in ENGINE_FILES {
        client.download_artifact_to(artifact_uri, file, dir, model::max_file_bytes(file))?;
    }
    Ok(())
}

/// The name and version of a registry URI: `models:/NAME/VERSION` as given, `models:/NAME@ALIAS`
/// resolved to the version the alias points to now.
pub fn registry_version(uri: &str, tracking: &TrackingConfig) -> anyhow::Result<(String, String)> {
    let invalid = || anyhow::anyhow!("{uri} is not models:/NAME/VERSION or models:/NAME@ALIAS");
    let rest = uri.strip_prefix("models:/").ok_or_else(invalid)?;
    if let Some((name, alias)) = rest.split_once('@') {
        let client = server(tracking, uri)?;
        let answer = client
            .get_json("registered-models/alias", &[("name", name), ("alias", alias)])
            .with_context(|| format!("cannot resolve {uri}"))?;
        let version = answer["model_version"]["version"]
            .as_str()
            .filter(|v| !v.is_empty())
            .with_context(|| format!("the registry named no version for {uri}"))?;
        return Ok((name.to_string(), version.to_string()));
    }
    let (name, version) = rest.rsplit_once('/').filter(|(n, v)| !n.is_empty() && !v.is_empty()).ok_or_else(invalid)?;
    Ok((name.to_string(), version.to_string()))
}
