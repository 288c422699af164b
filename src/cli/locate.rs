//! Model location for the commands, on [`engine::experiment::locate`]: what the input turned
//! out to be is shown on stderr.

use std::path::Path;

use engine::experiment::locate as library;
use engine::experiment::locate::Located;
use engine::tracking::{MlflowClient, ModelUri, ModelVersion, TrackingConfig};

pub use engine::experiment::locate::pinned;

/// Which model a command reads: a run's, or any model URI.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// The run whose model to read (local store, else the configured MLflow server).
    #[arg(long, required_unless_present = "model_uri", conflicts_with = "model_uri")]
    pub run_id: Option<String>,
    /// Instead of a run: models:/NAME/VERSION, models:/NAME/STAGE, models:/NAME/latest,
    /// models:/NAME@ALIAS, models:/<model id>, runs:/RUN_ID/model, a run id or a model directory.
    #[arg(long)]
    pub model_uri: Option<String>,
}

/// [`library::locate_model`], saying what the input named.
pub fn locate_model(
    run_id: Option<&str>,
    model_uri: Option<&str>,
    tracking: &TrackingConfig,
    download: &Path,
) -> anyhow::Result<Located> {
    Ok(shown(library::locate_model(run_id, model_uri, tracking, download)?))
}

/// [`library::locate`], saying what the input named.
pub fn locate(input: &str, uri: &ModelUri, tracking: &TrackingConfig, download: &Path) -> anyhow::Result<Located> {
    Ok(shown(library::locate(input, uri, tracking, download)?))
}

fn shown(located: Located) -> Located {
    if let Some(note) = &located.note {
        eprintln!("model: {note}");
    }
    located
}

/// [`library::resolve_version`].
pub fn resolve_version(
    input: &str,
    uri: &ModelUri,
    tracking: &TrackingConfig,
) -> anyhow::Result<(MlflowClient, ModelVersion)> {
    Ok(library::resolve_version(input, uri, tracking)?)
}
