//! Runs: created, read, their status updated, and searched.

use serde_json::{Value, json};

use super::MlflowClient;
use crate::tracking::RunStatus;
use crate::tracking::error::TrackingError;
use crate::tracking::util::truncate_chars;
use crate::tracking::wire::{MAX_TAG_VALUE_CHARS, Run, RunInfo};

impl MlflowClient {
    /// `runs/create`. `tags` should include the system tags (see [`crate::tracking::util::system_tags`]).
    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_time_ms: i64,
        user_id: &str,
        tags: &[(String, String)],
    ) -> Result<RunInfo, TrackingError> {
        let tags: Vec<Value> =
            tags.iter().map(|(k, v)| json!({"key": k, "value": truncate_chars(v, MAX_TAG_VALUE_CHARS)})).collect();
        let body = json!({
            "experiment_id": experiment_id,
            "run_name": run_name,
            "start_time": start_time_ms,
            "user_id": user_id,
            "tags": tags,
        });
        let path = "runs/create";
        let v = self.post_json(path, &body)?;
        Self::decode(path, v["run"]["info"].clone())
    }

    pub fn get_run(&self, run_id: &str) -> Result<Run, TrackingError> {
        let path = "runs/get";
        let v = self.get_json(path, &[("run_id", run_id)])?;
        Self::decode(path, v["run"].clone())
    }

    /// `runs/update` with a final status and end time.
    pub fn update_run(&self, run_id: &str, status: RunStatus, end_time_ms: i64) -> Result<RunInfo, TrackingError> {
        self.update_run_status(run_id, status.as_str(), Some(end_time_ms))
    }

    /// `runs/update` with any status string (`RUNNING`, `FINISHED`, ...).
    pub fn update_run_status(
        &self,
        run_id: &str,
        status: &str,
        end_time_ms: Option<i64>,
    ) -> Result<RunInfo, TrackingError> {
        let mut body = json!({ "run_id": run_id, "status": status });
        if let Some(t) = end_time_ms {
            body["end_time"] = json!(t);
        }
        let path = "runs/update";
        let v = self.post_json(path, &body)?;
        Self::decode(path, v["run_info"].clone())
    }

    /// `runs/search` over all pages (at most `max_results` runs in total).
    pub fn search_runs(
        &self,
        experiment_ids: &[&str],
        filter: &str,
        order_by: &[&str],
        max_results: usize,
    ) -> Result<Vec<Run>, TrackingError> {
        let path = "runs/search";
        let mut out: Vec<Run> = Vec::new();
        let mut token: Option<String> = None;
        while out.len() < max_results {
            let mut body = json!({
                "experiment_ids": experiment_ids,
                "filter": filter,
                "order_by": order_by,
                "max_results": (max_results - out.len()).min(1000),
                "run_view_type": "ACTIVE_ONLY",
            });
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let v = self.post_json(path, &body)?;
            let runs: Vec<Run> = Self::decode(path, v.get("runs").cloned().unwrap_or(json!([])))?;
            let n = runs.len();
            out.extend(runs);
            match v.get("next_page_token").and_then(Value::as_str) {
                Some(t) if !t.is_empty() && n > 0 => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }
}
