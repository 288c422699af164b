//! Pushing a run that another process is still recording: what it logged so far (params, tags,
//! metric points, datasets) goes to the server now, so the MLflow UI follows a training epoch by
//! epoch, and the server run stays RUNNING. Its artifacts, model, status and the "synced" mark
//! wait for the ordinary [`sync_to`](super::sync_to) after the recorder lets go of the run, which
//! finds the same server run again by its `engine.local_run_id` tag.
//!
//! Nothing is written to the run's directory: the recorder owns `meta.json` and rewrites it whole
//! when the run ends, so a server id remembered there now would be lost, or a stale copy written
//! by us would overwrite the recorder's final status. The push holds the run's push lock, which a
//! sync takes too, so two pushes never both create a server run for one local run.

use std::path::Path;

use super::{SyncOutcome, SyncedRun, create_server_run, find_server_run, point_parent_at_server, send_missing_data};
use crate::tracking::MODEL_ID_TAG;
use crate::tracking::client::MlflowClient;
use crate::tracking::error::TrackingError;
use crate::tracking::local::{self, LocalStore, RecordStatus};
use crate::tracking::wire::Run;

/// Pushes what the run in `dir` has recorded so far, when another process is recording it now.
/// `known_server_run` is the server run an earlier push found for it (saves looking it up).
/// `Ok(None)` when nobody records the run any more (sync it instead) or another push holds it.
pub fn push_live(
    client: &MlflowClient,
    store: &LocalStore,
    dir: &Path,
    known_server_run: Option<&str>,
) -> Result<Option<SyncedRun>, TrackingError> {
    let Some(_push) = local::try_lock_push(dir)? else { return Ok(None) };
    let mut rec = LocalStore::load_dir(dir)?;
    if rec.status != RecordStatus::Running {
        return Ok(None);
    }
    // The model's id is local until the final sync creates it on the server: its tag and the
    // metrics about it wait for that sync, which sends them with the server's id.
    rec.tags.remove(MODEL_ID_TAG);
    rec.metrics.retain(|m| m.about.is_none());
    point_parent_at_server(store, client, &mut rec);
    let mut s = SyncedRun::new(&rec);
    let exp_id = client.get_or_create_experiment(&rec.experiment)?;
    let run = match known_run(client, known_server_run)? {
        Some(run) => run,
        None => match find_server_run(client, client.tracking_uri(), &exp_id, &rec, &local::read_meta(dir)?)? {
            Some(run) => run,
            None => create_server_run(client, &exp_id, &rec, &mut s)?,
        },
    };
    s.server_run_id = Some(run.info.run_id.clone());
    // No metric is about a model any more, so none is rewritten.
    send_missing_data(client, &rec, &rec.tags, &run, None, &mut s)?;
    s.outcome = SyncOutcome::PushedLive;
    Ok(Some(s))
}

/// The server run an earlier push found, unless it is gone since.
fn known_run(client: &MlflowClient, id: Option<&str>) -> Result<Option<Run>, TrackingError> {
    let Some(id) = id else { return Ok(None) };
    match client.get_run(id) {
        Ok(run) if run.info.lifecycle_stage != "deleted" => Ok(Some(run)),
        Ok(_) => Ok(None),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}
