//! A run's metrics, params and tags: logged in batches within the server's limits, and a
//! metric's history read back page by page.

use serde_json::{Value, json};

use super::MlflowClient;
use crate::tracking::Metric;
use crate::tracking::error::TrackingError;
use crate::tracking::util::truncate_chars;
use crate::tracking::wire::{KeyValue, MAX_PARAM_VALUE_CHARS, MAX_TAG_VALUE_CHARS, chunk_batches};

/// Most pages [`MlflowClient::get_metric_history`] reads for one metric (25,000 points each).
pub const MAX_HISTORY_PAGES: usize = 1000;

impl MlflowClient {
    /// Logs metrics, params and tags in as many `log-batch` requests as the limits require.
    /// Param values longer than 6000 characters and tag values longer than 8000 are truncated.
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[(String, String)],
        tags: &[(String, String)],
    ) -> Result<(), TrackingError> {
        let kv = |items: &[(String, String)], max: usize| -> Vec<KeyValue> {
            items.iter().map(|(k, v)| KeyValue { key: k.clone(), value: truncate_chars(v, max).to_string() }).collect()
        };
        let params = kv(params, MAX_PARAM_VALUE_CHARS);
        let tags = kv(tags, MAX_TAG_VALUE_CHARS);
        for batch in chunk_batches(metrics, &params, &tags) {
            let metrics: Vec<Value> = batch
                .metrics
                .iter()
                .map(|m| {
                    let mut metric = json!({"key": m.key, "value": crate::tracking::util::metric_value_json(m.value),
                                            "timestamp": m.timestamp_ms, "step": m.step});
                    if let Some(about) = &m.about {
                        metric["model_id"] = json!(about.model_id);
                        metric["dataset_name"] = json!(about.dataset_name);
                        metric["dataset_digest"] = json!(about.dataset_digest);
                    }
                    metric
                })
                .collect();
            let body = json!({
                "run_id": run_id,
                "metrics": metrics,
                "params": batch.params,
                "tags": batch.tags,
            });
            self.post_json("runs/log-batch", &body)?;
        }
        Ok(())
    }

    /// The full history of one metric (all pages).
    pub fn get_metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>, TrackingError> {
        let path = "metrics/get-history";
        let mut out = Vec::new();
        let mut token = String::new();
        for _ in 0..MAX_HISTORY_PAGES {
            let mut q = vec![("run_id", run_id), ("metric_key", key), ("max_results", "25000")];
            if !token.is_empty() {
                q.push(("page_token", token.as_str()));
            }
            let v = self.get_json(path, &q)?;
            let page: Vec<Metric> = Self::decode(path, v.get("metrics").cloned().unwrap_or(json!([])))?;
            let n = page.len();
            out.extend(page);
            match v.get("next_page_token").and_then(Value::as_str) {
                // An empty page with another token would page forever.
                Some(t) if !t.is_empty() && t != token && n > 0 => token = t.to_string(),
                _ => return Ok(out),
            }
        }
        Err(TrackingError::Refused {
            endpoint: format!("GET {}", Self::endpoint_name(path)),
            detail: format!(
                "metric {key:?} of run {run_id} has more than {MAX_HISTORY_PAGES} pages of history; \
                 the server is broken or hostile"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_metric_values() {
        let v: Vec<Metric> = serde_json::from_str(
            r#"[{"key":"a","value":"NaN","timestamp":1,"step":2},
                {"key":"b","value":1.5,"timestamp":1},
                {"key":"c","value":"-Infinity","timestamp":1,"step":0}]"#,
        )
        .unwrap();
        assert!(v[0].value.is_nan());
        assert_eq!(v[0].step, 2);
        assert_eq!(v[1].value, 1.5);
        assert_eq!(v[1].step, 0);
        assert_eq!(v[2].value, f64::NEG_INFINITY);
        assert_eq!(crate::tracking::util::metric_value_json(f64::NAN), json!("NaN"));
        let s = serde_json::to_string(&v[0]).unwrap();
        assert!(s.contains("\"NaN\""), "{s}");
    }
}
