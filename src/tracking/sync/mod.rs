//! Pushing local runs to an MLflow server, idempotently.
//!
//! For each local run not yet marked synced with the target server, `sync`:
//! 1. finds its server run (the id remembered in `meta.json`, else a run tagged
//!    `engine.local_run_id = <local id>`, else the local id itself) or creates one, and remembers
//!    the server id in `meta.json` before sending anything else;
//! 2. completes a finished run's model as a live run leaves it: a LoggedModel with its files,
//!    ready, linked to the run (created now, with a new id, for a run recorded offline);
//! 3. compares what the server has with what the local store has and sends only what is missing:
//!    params and tags absent or different, metric points absent from the server's history
//!    (matched by key, step, timestamp and value, as a multiset), datasets, artifacts absent or
//!    of another size;
//! 4. sets the final status and end time, and marks the run synced.
//!
//! Running it again sends nothing. A run still being recorded by a live process is skipped; an
//! unfinished run (its process died) is pushed but left RUNNING and unsynced.

mod live;
mod report;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::Path;

use super::client::MlflowClient;
use super::error::TrackingError;
use super::local::{self, LocalStore, RecordStatus, RemoteRef, RunRecord};
use super::paths;
use super::util::{now_ms, truncate_chars};
use super::wire::{KeyValue, MAX_PARAM_VALUE_CHARS, MAX_TAG_VALUE_CHARS, Run, RunData};
use super::{LOCAL_RUN_ID_TAG, MODEL_ARTIFACT_DIR, MODEL_ID_TAG, Metric, PARENT_RUN_ID_TAG, RunStatus, TrackingConfig};
use crate::model::{ENGINE_FILES, MODEL_FILES};

pub use live::push_live;
pub use report::{SyncOutcome, SyncReport, SyncedRun};

/// Which runs to push.
#[derive(Clone, Debug, Default)]
pub struct SyncOptions {
    /// Only runs of this experiment.
    pub experiment: Option<String>,
    /// Only these runs (local ids, server ids or unique prefixes); empty = all.
    pub run_ids: Vec<String>,
    /// Also compare runs already marked synced (sends whatever is missing on the server).
    pub recheck: bool,
    /// End unfinished runs (their process died) with this status, locally and on the server,
    /// with the time of their last metric point as end time. `None` leaves them RUNNING.
    pub mark_unfinished: Option<RunStatus>,
}

/// Pushes every unsynced run of the local store at `root` (all experiments) to the server of
/// `config` (`config.tracking_uri` must be set; credentials and retries come from the environment).
pub fn sync(root: &Path, config: &TrackingConfig) -> Result<SyncReport, TrackingError> {
    sync_with(root, config, &SyncOptions::default())
}

/// Pushes one local run now and fails unless all of it is on the server afterwards: a run
/// skipped (being recorded elsewhere), left unfinished or failed is an error, never "synced".
pub fn sync_run_now(root: &Path, config: &TrackingConfig, run_id: &str) -> Result<SyncedRun, TrackingError> {
    let options = SyncOptions { run_ids: vec![run_id.to_string()], ..Default::default() };
    let run = sync_with(root, config, &options)?
        .runs
        .pop()
        .ok_or_else(|| TrackingError::RunNotFound(format!("{run_id} (not in the local store {})", root.display())))?;
    let problem = match &run.outcome {
        SyncOutcome::Synced | SyncOutcome::AlreadySynced => return Ok(run),
        SyncOutcome::SkippedRunning | SyncOutcome::PushedLive => "it is being recorded by another process".to_string(),
        SyncOutcome::PushedUnfinished => {
            "it is unfinished (its process died); end it with `engine sync --close-unfinished`".to_string()
        }
        SyncOutcome::Failed(e) => e.clone(),
    };
    Err(TrackingError::Store(format!("run {} did not reach the server: {problem}", run.local_run_id)))
}

/// [`sync`] with options.
pub fn sync_with(root: &Path, config: &TrackingConfig, options: &SyncOptions) -> Result<SyncReport, TrackingError> {
    let uri = config.tracking_uri.as_deref().ok_or_else(|| {
        TrackingError::Config("no MLflow server to sync to: pass a tracking URI or set MLFLOW_TRACKING_URI".into())
    })?;
    let client = MlflowClient::from_env(uri)?;
    sync_to(root, &client, options)
}

/// [`sync`] with an explicit client. Stops with an error when the server cannot be reached;
/// other per-run problems are reported in the [`SyncReport`].
pub fn sync_to(root: &Path, client: &MlflowClient, options: &SyncOptions) -> Result<SyncReport, TrackingError> {
    let store = LocalStore::open(root)?;
    let uri = client.tracking_uri().to_string();
    let dirs = if options.run_ids.is_empty() {
        store.run_dirs()?
    } else {
        options.run_ids.iter().map(|id| store.find_run_dir(id)).collect::<Result<Vec<_>, _>>()?
    };
    // Parents before children, so a child's parent tag can name the parent's server run.
    let mut dirs = dirs;
    dirs.sort_by_key(|dir| LocalStore::load_dir(dir).is_ok_and(|r| r.tags.contains_key(PARENT_RUN_ID_TAG)));
    let mut report = SyncReport { tracking_uri: uri.clone(), runs: Vec::new() };
    let mut experiments: HashMap<String, String> = HashMap::new();
    for dir in dirs {
        let meta = match local::read_meta(&dir) {
            Ok(m) => m,
            Err(e) => {
                let id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                report.runs.push(SyncedRun::ended(&id, "?", "?", SyncOutcome::Failed(e.to_string())));
                continue;
            }
        };
        if let Some(exp) = &options.experiment
            && &meta.experiment != exp
        {
            continue;
        }
        let ended = |outcome| SyncedRun::ended(&meta.run_id, &meta.run_name, &meta.experiment, outcome);
        if !options.recheck && meta.remote_for(&uri).is_some_and(|r| r.synced) {
            let mut s = ended(SyncOutcome::AlreadySynced);
            s.server_run_id = meta.remote_for(&uri).map(|r| r.run_id.clone());
            report.runs.push(s);
            continue;
        }
        let _locks = match lock_for_sync(&dir) {
            Ok(locks) => locks,
            Err(outcome) => {
                report.runs.push(ended(outcome));
                continue;
            }
        };
        // A run whose files cannot be read fails alone; the others still sync.
        let mut rec = match LocalStore::load_dir(&dir) {
            Ok(rec) => rec,
            Err(e) => {
                report.runs.push(ended(SyncOutcome::Failed(e.to_string())));
                continue;
            }
        };
        if rec.status == RecordStatus::Running {
            rec.status = RecordStatus::Unfinished; // we hold the lock: nobody is recording it
        }
        if rec.status == RecordStatus::Unfinished
            && let Some(status) = options.mark_unfinished
        {
            close_unfinished(&dir, &mut rec, status)?;
        }
        point_parent_at_server(&store, client, &mut rec);
        let mut s = SyncedRun::new(&rec);
        match sync_run(client, &dir, &rec, &mut experiments, &mut s) {
            Ok(()) => {}
            Err(e) if e.is_server_unavailable() => return Err(e),
            Err(e) => s.outcome = SyncOutcome::Failed(e.to_string()),
        }
        report.runs.push(s);
    }
    Ok(report)
}

/// Ends an unfinished run (its process died) with `status`, at the time of its last metric point.
fn close_unfinished(dir: &Path, rec: &mut RunRecord, status: RunStatus) -> Result<(), TrackingError> {
    let end = rec.metrics.iter().map(|m| m.timestamp_ms).max().unwrap_or(rec.start_time_ms).max(rec.start_time_ms);
    let mut meta = local::read_meta(dir)?;
    meta.status = status.as_str().to_string();
    meta.end_time = Some(end);
    local::write_meta(dir, &meta)?;
    rec.status = match status {
        RunStatus::Finished => RecordStatus::Finished,
        RunStatus::Failed => RecordStatus::Failed,
        RunStatus::Killed => RecordStatus::Killed,
    };
    rec.end_time_ms = Some(end);
    Ok(())
}

/// Both locks of a run, held while syncing it: the recorder's (a live process recording the run
/// holds it, and so does a concurrent sync) and the push lock (held by a [`push_live`]).
fn lock_for_sync(dir: &Path) -> Result<(File, File), SyncOutcome> {
    let take = |lock: Result<Option<File>, TrackingError>| match lock {
        Ok(Some(file)) => Ok(file),
        Ok(None) => Err(SyncOutcome::SkippedRunning),
        Err(e) => Err(SyncOutcome::Failed(e.to_string())),
    };
    Ok((take(local::try_lock_run(dir))?, take(local::try_lock_push(dir))?))
}

/// A run nested while the server was unreachable names its parent by the local id; on the
/// server it must name the parent's server run: the one the parent's `meta.json` remembers
/// (synced just before it), else the one tagged with the parent's local id (a parent still being
/// recorded was pushed live, which remembers nothing locally).
fn point_parent_at_server(store: &LocalStore, client: &MlflowClient, rec: &mut RunRecord) {
    let Some(parent) = rec.tags.get(PARENT_RUN_ID_TAG) else { return };
    let Ok(meta) = store.find_run_dir(parent).and_then(|dir| local::read_meta(&dir)) else { return };
    let server_id = match meta.remote_for(client.tracking_uri()) {
        Some(remote) => Some(remote.run_id.clone()),
        None => client
            .get_experiment_by_name(&meta.experiment)
            .ok()
            .flatten()
            .and_then(|exp| tagged_server_run(client, &exp.experiment_id, &meta.run_id).ok().flatten())
            .map(|run| run.info.run_id),
    };
    if let Some(server_id) = server_id {
        rec.tags.insert(PARENT_RUN_ID_TAG.to_string(), server_id);
    }
}

/// Values equal as the server stores them: NaN = NaN, ±inf = ±f64::MAX (sqlite clamps), and a
/// few ULPs of slack for decimal round trips.
fn same_value(a: f64, b: f64) -> bool {
    let norm = |v: f64| {
        if v == f64::INFINITY {
            f64::MAX
        } else if v == f64::NEG_INFINITY {
            f64::MIN
        } else {
            v
        }
    };
    let (a, b) = (norm(a), norm(b));
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    a == b || (a - b).abs() <= 4.0 * f64::EPSILON * a.abs().max(b.abs())
}

/// The local points the server lacks, matched on key, step, timestamp and value. The server
/// keeps one copy of identical points (they are its primary key), so duplicates count once.
pub(crate) fn missing_points(local: &[Metric], server: &[Metric]) -> Vec<Metric> {
    let mut have: HashMap<(&str, i64, i64), Vec<f64>> = HashMap::new();
    for m in server {
        have.entry((m.key.as_str(), m.step, m.timestamp_ms)).or_default().push(m.value);
    }
    let mut out = Vec::new();
    for m in local {
        let vals = have.entry((m.key.as_str(), m.step, m.timestamp_ms)).or_default();
        if !vals.iter().any(|v| same_value(*v, m.value)) {
            vals.push(m.value); // later identical local points are then "present"
            out.push(m.clone());
        }
    }
    out
}

/// One run: its server run found or created (and remembered before anything else is sent, so a
/// crash resumes it), then its model, params, tags, metrics, datasets and artifacts as far as the
/// server lacks them, then its final status.
fn sync_run(
    client: &MlflowClient,
    dir: &Path,
    rec: &RunRecord,
    experiments: &mut HashMap<String, String>,
    s: &mut SyncedRun,
) -> Result<(), TrackingError> {
    let uri = client.tracking_uri().to_string();
    let exp_id = experiment_id(client, &rec.experiment, experiments)?;
    let mut meta = local::read_meta(dir)?;
    let run = match find_server_run(client, &uri, &exp_id, rec, &meta)? {
        Some(run) => run,
        None => create_server_run(client, &exp_id, rec, s)?,
    };
    let server_id = run.info.run_id.clone();
    s.server_run_id = Some(server_id.clone());
    meta.remotes.retain(|r| r.tracking_uri != uri);
    meta.remotes.push(RemoteRef {
        tracking_uri: uri.clone(),
        experiment_id: run.info.experiment_id.clone(),
        run_id: server_id.clone(),
        artifact_uri: run.info.artifact_uri.clone(),
        synced: false,
        synced_at: None,
    });
    local::write_meta(dir, &meta)?;

    // A model created now gets a new id, which replaces the local one in the run's tag and in
    // the metrics that describe it.
    let model_on_server = if rec.status.final_status() == Some(RunStatus::Finished) {
        sync_model(client, dir, rec, &exp_id, &server_id, s)?
    } else {
        None
    };
    let mut tags = rec.tags.clone();
    if let Some(id) = &model_on_server {
        tags.insert(MODEL_ID_TAG.to_string(), id.clone());
    }
    send_missing_data(client, rec, &tags, &run, model_on_server.as_ref(), s)?;
    upload_missing_artifacts(client, rec, &run, s)?;

    match rec.status.final_status() {
        Some(status) => {
            let end = rec.end_time_ms.unwrap_or(rec.start_time_ms);
            if run.info.status != status.as_str() || run.info.end_time != Some(end) {
                client.update_run(&server_id, status, end)?;
                s.status_updated = true;
            }
            if let Some(r) = meta.remote_for_mut(&uri) {
                r.synced = true;
                r.synced_at = Some(now_ms());
            }
            local::write_meta(dir, &meta)?;
            s.outcome = SyncOutcome::Synced;
        }
        None => s.outcome = SyncOutcome::PushedUnfinished,
    }
    Ok(())
}

/// Sends what the server run `run` lacks of `rec`: its params, `tags` and metric points in one
/// batch (those about the record's local model then name `model_on_server`, or no model), then
/// its datasets; counts them in `s`.
fn send_missing_data(
    client: &MlflowClient,
    rec: &RunRecord,
    tags: &BTreeMap<String, String>,
    run: &Run,
    model_on_server: Option<&String>,
    s: &mut SyncedRun,
) -> Result<(), TrackingError> {
    let server_id = &run.info.run_id;
    let (params, tags) = missing_params_and_tags(rec, tags, run)?;
    let mut metrics = missing_metrics(client, rec, run, s.created)?;
    remap_model_metrics(&mut metrics, rec.tags.get(MODEL_ID_TAG), model_on_server);
    client.log_batch(server_id, &metrics, &params, &tags)?;
    s.params_sent = params.len();
    s.tags_sent += tags.len();
    s.metrics_sent = metrics.len();
    let inputs = super::inputs::missing_inputs(&rec.inputs, &run.inputs);
    client.log_inputs(server_id, &inputs)?;
    s.inputs_sent = inputs.len();
    Ok(())
}

/// The server's id of the experiment `name`, created if it has none; remembered in `known` so a
/// sync of many runs asks once per experiment.
fn experiment_id(
    client: &MlflowClient,
    name: &str,
    known: &mut HashMap<String, String>,
) -> Result<String, TrackingError> {
    if let Some(id) = known.get(name) {
        return Ok(id.clone());
    }
    let id = client.get_or_create_experiment(name)?;
    known.insert(name.to_string(), id.clone());
    Ok(id)
}

/// Points the metrics that describe the local model `local_id` at its id on the server, or at no
/// model when the server has none.
fn remap_model_metrics(metrics: &mut [Metric], local_id: Option<&String>, server_id: Option<&String>) {
    for metric in metrics {
        if metric.about.as_ref().is_some_and(|a| Some(&a.model_id) == local_id) {
            match server_id {
                Some(id) => metric.about.iter_mut().for_each(|a| a.model_id = id.clone()),
                None => metric.about = None,
            }
        }
    }
}

/// The server run of a local run: the one remembered in `meta.json`, the local id itself (a run
/// created live), or one tagged with the local id (the answer to its create was lost).
fn find_server_run(
    client: &MlflowClient,
    uri: &str,
    experiment_id: &str,
    rec: &RunRecord,
    meta: &local::RunMeta,
) -> Result<Option<Run>, TrackingError> {
    let mut candidates: Vec<String> = meta.remote_for(uri).map(|r| r.run_id.clone()).into_iter().collect();
    if !candidates.contains(&rec.run_id) {
        candidates.push(rec.run_id.clone());
    }
    for id in candidates {
        match client.get_run(&id) {
            Ok(run) => {
                if run.info.lifecycle_stage == "deleted" {
                    return Err(TrackingError::InvalidArgument(format!(
                        "server run {id} was deleted; restore it on the server to sync into it"
                    )));
                }
                // A local id that happens to exist on the server must be this run's mirror.
                if run.info.run_id == rec.run_id
                    && meta.remote_for(uri).is_none()
                    && run.info.start_time != Some(rec.start_time_ms)
                {
                    continue;
                }
                return Ok(Some(run));
            }
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        }
    }
    tagged_server_run(client, experiment_id, &rec.run_id)
}

/// The server run tagged `engine.local_run_id = <local_id>` in an experiment, if any.
fn tagged_server_run(client: &MlflowClient, experiment_id: &str, local_id: &str) -> Result<Option<Run>, TrackingError> {
    let filter = format!("tags.`{LOCAL_RUN_ID_TAG}` = '{local_id}'");
    match client.search_runs(&[experiment_id], &filter, &[], 1)?.into_iter().next() {
        // search returns full runs, but re-read to get the same shape as runs/get
        Some(run) => client.get_run(&run.info.run_id).map(Some),
        None => Ok(None),
    }
}

/// A new server run for a local run, with its tags and the local id as a tag.
fn create_server_run(
    client: &MlflowClient,
    experiment_id: &str,
    rec: &RunRecord,
    s: &mut SyncedRun,
) -> Result<Run, TrackingError> {
    let mut tags: Vec<(String, String)> = rec.tags.clone().into_iter().collect();
    tags.push((LOCAL_RUN_ID_TAG.to_string(), rec.run_id.clone()));
    let info = client.create_run(experiment_id, &rec.run_name, rec.start_time_ms, &rec.user, &tags)?;
    s.created = true;
    s.tags_sent = tags.len();
    let tags = tags
        .iter()
        .map(|(k, v)| KeyValue { key: k.clone(), value: truncate_chars(v, MAX_TAG_VALUE_CHARS).to_string() })
        .collect();
    Ok(Run { data: RunData { tags, ..Default::default() }, info, ..Default::default() })
}

/// Key-value pairs (params, tags) as they are sent.
type Pairs = Vec<(String, String)>;

/// The params the server lacks (a param the server holds with another value is an error:
/// params cannot change) and the tags it lacks or holds with another value.
fn missing_params_and_tags(
    rec: &RunRecord,
    tags: &BTreeMap<String, String>,
    run: &Run,
) -> Result<(Pairs, Pairs), TrackingError> {
    let server_params: BTreeMap<&str, &str> =
        run.data.params.iter().map(|p| (p.key.as_str(), p.value.as_str())).collect();
    let mut params = Vec::new();
    for (k, v) in &rec.params {
        match server_params.get(k.as_str()) {
            None => params.push((k.clone(), v.clone())),
            Some(have) if *have == truncate_chars(v, MAX_PARAM_VALUE_CHARS) => {}
            Some(have) => {
                return Err(TrackingError::InvalidArgument(format!(
                    "param {k:?} is {have:?} on the server but {v:?} locally; params cannot change"
                )));
            }
        }
    }
    let server_tags: BTreeMap<&str, &str> = run.data.tags.iter().map(|p| (p.key.as_str(), p.value.as_str())).collect();
    let tags = tags
        .iter()
        .filter(|(k, v)| server_tags.get(k.as_str()) != Some(&truncate_chars(v, MAX_TAG_VALUE_CHARS)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok((params, tags))
}

/// The metric points the server lacks, comparing each key's history (none to compare with on a
/// run just created).
fn missing_metrics(
    client: &MlflowClient,
    rec: &RunRecord,
    run: &Run,
    created: bool,
) -> Result<Vec<Metric>, TrackingError> {
    let on_server: HashSet<&str> = run.data.metrics.iter().map(|m| m.key.as_str()).collect();
    let mut missing = Vec::new();
    for key in rec.metric_keys() {
        let server_points = if created || !on_server.contains(key.as_str()) {
            Vec::new()
        } else {
            client.get_metric_history(&run.info.run_id, &key)?
        };
        missing.extend(missing_points(&rec.metric_history(&key), &server_points));
    }
    Ok(missing)
}

/// Uploads the artifacts the server lacks or holds with another size.
fn upload_missing_artifacts(
    client: &MlflowClient,
    rec: &RunRecord,
    run: &Run,
    s: &mut SyncedRun,
) -> Result<(), TrackingError> {
    if rec.artifacts.is_empty() {
        return Ok(());
    }
    let server_files: HashMap<String, Option<i64>> = if s.created {
        HashMap::new()
    } else {
        client.list_artifacts_recursive(&run.info.run_id)?.into_iter().map(|f| (f.path, f.file_size)).collect()
    };
    for a in &rec.artifacts {
        if server_files.get(&a.path).is_some_and(|size| *size == Some(a.size as i64)) {
            continue;
        }
        let local_path = paths::safe_join(&rec.dir.join("artifacts"), &a.path)?;
        client.upload_artifact_file(&run.info.artifact_uri, &a.path, &local_path)?;
        s.artifacts_sent += 1;
    }
    Ok(())
}

/// Finishes the run's LoggedModel on the server and returns its id there: one left pending (its
/// upload failed) gets its files and is marked ready; a run recorded while the server was away
/// gets a new one, whose id then replaces the run's `engine.model_id` tag. `None` for a run
/// without a model and for servers without LoggedModels.
fn sync_model(
    client: &MlflowClient,
    dir: &Path,
    rec: &RunRecord,
    experiment_id: &str,
    server_run_id: &str,
    s: &mut SyncedRun,
) -> Result<Option<String>, TrackingError> {
    let model_dir = rec.dir.join("artifacts").join(MODEL_ARTIFACT_DIR);
    if !ENGINE_FILES.iter().all(|f| model_dir.join(f).is_file()) {
        return Ok(None);
    }
    // Runs recorded before the ONNX export have fewer files: upload those there are.
    let files: Vec<&str> = MODEL_FILES.into_iter().filter(|f| model_dir.join(f).is_file()).collect();
    let existing = match rec.tags.get(MODEL_ID_TAG) {
        Some(id) => match client.get_logged_model(id) {
            Ok(model) => Some(model),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    let model = match existing {
        Some(model) if model.is_ready() => return Ok(Some(model.model_id)),
        Some(model) => model,
        None => {
            let params: Vec<(String, String)> = rec.params.clone().into_iter().collect();
            let model = match client.create_logged_model(experiment_id, server_run_id, MODEL_ARTIFACT_DIR, &params) {
                Ok(model) => model,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e),
            };
            local::set_tags(dir, &[(MODEL_ID_TAG.to_string(), model.model_id.clone())])?;
            model
        }
    };
    client.upload_logged_model(&model, server_run_id, &model_dir, &files, 0)?;
    s.model_synced = true;
    Ok(Some(model.model_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(key: &str, step: i64, ts: i64, value: f64) -> Metric {
        Metric { key: key.into(), value, step, timestamp_ms: ts, about: None }
    }

    #[test]
    fn only_missing_points_are_sent() {
        let local = vec![
            p("loss", 0, 10, 1.0),
            p("loss", 1, 11, 0.5),
            p("loss", 2, 12, f64::NAN),
            p("loss", 2, 12, f64::NAN), // logged twice: the server holds it once
            p("loss", 3, 12, 0.25),
            p("loss", 3, 12, 0.125), // same step and time, other value: a distinct point
            p("acc", 2, 12, f64::INFINITY),
        ];
        let server = vec![p("loss", 0, 10, 1.0), p("loss", 1, 11, 0.5)];
        let miss = missing_points(&local, &server);
        assert_eq!(miss.len(), 4);
        assert!(miss[0].value.is_nan());
        assert_eq!(miss[1].value, 0.25);
        assert_eq!(miss[2].value, 0.125);
        let server_all = vec![
            p("loss", 0, 10, 1.0),
            p("loss", 1, 11, 0.5 + 1e-17),
            p("loss", 2, 12, f64::NAN),
            p("loss", 3, 12, 0.125),
            p("loss", 3, 12, 0.25),
            p("acc", 2, 12, f64::MAX),
        ];
        assert!(missing_points(&local, &server_all).is_empty());
        // a different value at the same step and time is a different point
        assert_eq!(missing_points(&[p("loss", 0, 10, 2.0)], &server).len(), 1);
    }
}
