//! Runs as the analysis sees them: the local store's or an MLflow server's runs read into the
//! plain [`RunSummary`] values `crate::analysis` ranks and checks.

use std::collections::BTreeMap;

use super::{LocalStore, Metric, MlflowClient, PARENT_RUN_ID_TAG, Run, RunRecord, TrackingConfig, TrackingError};
use crate::analysis::{RunSummary, Series, keys};

/// Where runs are read from.
pub enum Source {
    Local(LocalStore),
    Server(MlflowClient),
}

impl Source {
    /// The server when one is configured (flag or `MLFLOW_TRACKING_URI`), else the local store.
    pub fn open(config: &TrackingConfig) -> Result<Source, TrackingError> {
        Ok(match &config.tracking_uri {
            Some(uri) => Source::Server(MlflowClient::from_env(uri)?),
            None => Source::Local(LocalStore::open(&config.local_root)?),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Local(store) => format!("local store {}", store.root().display()),
            Source::Server(client) => format!("MLflow {}", super::util::redact_uri(client.tracking_uri())),
        }
    }

    /// Every run of `experiment` (none when the experiment does not exist).
    pub fn experiment_runs(&self, experiment: &str) -> Result<Vec<RunSummary>, TrackingError> {
        match self {
            Source::Local(store) => Ok(store.list_runs(Some(experiment))?.iter().map(summary_from_record).collect()),
            Source::Server(client) => {
                let Some(exp) = client.get_experiment_by_name(experiment)? else {
                    return Ok(Vec::new());
                };
                let runs = client.search_runs(&[&exp.experiment_id], "", &[], 5000)?;
                runs.iter().map(|r| summary_from_server(client, r)).collect()
            }
        }
    }
}

/// The summary of a run in the local store.
pub fn summary_from_record(record: &RunRecord) -> RunSummary {
    let latest = record.latest_metrics();
    RunSummary {
        run_id: record.run_id.clone(),
        run_name: record.run_name.clone(),
        status: record.status.label().to_string(),
        params: record.params.clone(),
        metrics: latest.into_iter().map(|(k, m)| (k, m.value)).collect(),
        train_loss: series(&record.metric_history(keys::TRAIN_LOSS)),
        val_loss: series(&record.metric_history(keys::VAL_LOSS)),
        parent_run_id: record.tags.get(PARENT_RUN_ID_TAG).cloned(),
    }
}

/// The summary of a run on a server (the loss curves cost one request each).
pub fn summary_from_server(client: &MlflowClient, run: &Run) -> Result<RunSummary, TrackingError> {
    let id = &run.info.run_id;
    let has = |key: &str| run.data.metrics.iter().any(|m| m.key == key);
    let history = |key: &str| -> Result<Series, TrackingError> {
        if !has(key) {
            return Ok(Series::new());
        }
        Ok(series(&client.get_metric_history(id, key)?))
    };
    Ok(RunSummary {
        run_id: id.clone(),
        run_name: run.info.run_name.clone(),
        status: run.info.status.clone(),
        params: run.data.params.iter().map(|p| (p.key.clone(), p.value.clone())).collect(),
        metrics: run.data.metrics.iter().map(|m| (m.key.clone(), m.value)).collect(),
        train_loss: history(keys::TRAIN_LOSS)?,
        val_loss: history(keys::VAL_LOSS)?,
        parent_run_id: run.tag(PARENT_RUN_ID_TAG).map(String::from),
    })
}

/// Metric points as an epoch curve: one value per step (the last logged), in step order.
pub fn series(points: &[Metric]) -> Series {
    let mut by_step: BTreeMap<i64, (i64, f64)> = BTreeMap::new();
    for m in points {
        match by_step.get(&m.step) {
            Some((ts, _)) if *ts > m.timestamp_ms => {}
            _ => {
                by_step.insert(m.step, (m.timestamp_ms, m.value));
            }
        }
    }
    by_step.into_iter().map(|(step, (_, v))| (step, v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keeps_the_last_point_per_step_in_step_order() {
        let m = |step, value, ts| Metric { key: "k".into(), value, step, timestamp_ms: ts, about: None };
        let s = series(&[m(2, 0.5, 10), m(1, 0.9, 5), m(2, 0.4, 20), m(3, 0.3, 1)]);
        assert_eq!(s, [(1, 0.9), (2, 0.4), (3, 0.3)]);
    }
}
