//! How requests to an MLflow server are retried and timed out, as MLflow's own client does:
//! the same environment variables, retry rules and urllib3 backoff schedule.

use std::time::Duration;

/// How requests are retried and timed out.
///
/// Read from MLflow's own variables by [`RetryPolicy::from_env`]:
/// `MLFLOW_HTTP_REQUEST_MAX_RETRIES` (default 5, at most 10),
/// `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR` (default 0.5 s, at most 120),
/// `MLFLOW_HTTP_REQUEST_BACKOFF_JITTER` (default 0 s),
/// `MLFLOW_HTTP_REQUEST_TIMEOUT` (default 30 s, for connecting and for each socket read/write),
/// `MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER` (default true).
/// The defaults are smaller than the Python client's (7 retries, factor 2, 120 s) so that a
/// dead server costs a training run seconds rather than minutes.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = try once).
    pub max_retries: u32,
    /// Seconds: the n-th retry (n >= 2) waits `factor * 2^(n-1)`; the first is immediate.
    pub backoff_factor: f64,
    /// Upper bound of one wait.
    pub backoff_max: Duration,
    /// Up to this much random time is added to each non-zero wait.
    pub jitter: Duration,
    /// Timeout for connecting and for each wait on the socket (no bound on a whole transfer
    /// that keeps moving).
    pub timeout: Duration,
    /// Honour a `Retry-After` header (bounded by `backoff_max`).
    pub respect_retry_after: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            backoff_factor: 0.5,
            backoff_max: Duration::from_secs(10),
            jitter: Duration::ZERO,
            timeout: Duration::from_secs(30),
            respect_retry_after: true,
        }
    }
}

impl RetryPolicy {
    /// The defaults, overridden by `MLFLOW_HTTP_REQUEST_*` variables where they are set and valid.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`from_env`](Self::from_env) with any source of variables (for tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let mut p = RetryPolicy::default();
        let num = |k: &str| get(k).and_then(|v| v.trim().parse::<f64>().ok());
        if let Some(v) = num("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
            && v >= 0.0
        {
            p.max_retries = (v as u32).min(10);
        }
        if let Some(v) = num("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR")
            && v >= 0.0
        {
            p.backoff_factor = v.min(120.0);
        }
        if let Some(v) = num("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER")
            && v >= 0.0
        {
            p.jitter = Duration::from_secs_f64(v.min(60.0));
        }
        if let Some(v) = num("MLFLOW_HTTP_REQUEST_TIMEOUT")
            && v > 0.0
        {
            p.timeout = Duration::from_secs_f64(v.min(3600.0));
        }
        if let Some(v) = get("MLFLOW_HTTP_RESPECT_RETRY_AFTER_HEADER") {
            p.respect_retry_after = !matches!(v.trim().to_ascii_lowercase().as_str(), "false" | "0" | "no");
        }
        // An explicit backoff factor gets MLflow's own cap on one wait (120 s).
        if get("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR").is_some() {
            p.backoff_max = Duration::from_secs(120);
        }
        p
    }

    /// No retries: for probing.
    pub fn no_retries() -> Self {
        RetryPolicy { max_retries: 0, ..RetryPolicy::default() }
    }

    /// The wait before retry number `retry` (1-based), without jitter:
    /// 0 for the first, then `factor * 2^(retry-1)`, capped at `backoff_max`.
    pub fn backoff(&self, retry: u32) -> Duration {
        if retry <= 1 {
            return Duration::ZERO;
        }
        let secs = self.backoff_factor * 2f64.powi(retry.min(62) as i32 - 1);
        Duration::from_secs_f64(secs.min(self.backoff_max.as_secs_f64()))
    }

    /// All waits, in order, if every attempt fails.
    pub fn schedule(&self) -> Vec<Duration> {
        (1..=self.max_retries).map(|r| self.backoff(r)).collect()
    }
}

/// Whether a request may be repeated after the server might already have acted on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Reads and writes that are safe to repeat: retried on 408/429/5xx and any connection error.
    Idempotent,
    /// Creates: retried only on 408/429 and errors while connecting.
    CreateOnly,
}

/// The POST endpoints (relative to `/api/2.0/mlflow/`) that MLflow's client treats as safe to repeat.
const IDEMPOTENT_POSTS: &[&str] = &[
    "runs/log-batch",
    "runs/log-metric",
    "runs/log-parameter",
    "runs/set-tag",
    "runs/delete-tag",
    "runs/update",
    "runs/delete",
    "runs/restore",
    "runs/search",
    "runs/outputs",
    "experiments/search",
    "experiments/set-experiment-tag",
    "experiments/restore",
    "model-versions/set-tag",
    "registered-models/set-tag",
    "registered-models/alias",
    "registered-models/get-latest-versions",
    "logged-models/search",
];

/// The retry class MLflow's client uses for a POST to `path`.
pub fn retry_class_for_post(path: &str) -> Retry {
    let p = path.trim_start_matches('/');
    let p = p.strip_prefix("api/2.0/mlflow/").unwrap_or(p);
    if IDEMPOTENT_POSTS.contains(&p) { Retry::Idempotent } else { Retry::CreateOnly }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_schedule_follows_urllib3() {
        let p = RetryPolicy {
            max_retries: 7,
            backoff_factor: 2.0,
            backoff_max: Duration::from_secs(120),
            ..RetryPolicy::default()
        };
        let s: Vec<u64> = p.schedule().iter().map(|d| d.as_secs()).collect();
        assert_eq!(s, vec![0, 4, 8, 16, 32, 64, 120]);
        let d = RetryPolicy::default();
        let s: Vec<f64> = d.schedule().iter().map(|d| d.as_secs_f64()).collect();
        assert_eq!(s, vec![0.0, 1.0, 2.0, 4.0, 8.0]);
        assert_eq!(RetryPolicy::no_retries().schedule(), Vec::<Duration>::new());
    }

    #[test]
    fn retry_policy_from_variables() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let p = RetryPolicy::from_lookup(vars(&[
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
            ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0.1"),
            ("MLFLOW_HTTP_REQUEST_TIMEOUT", "5"),
        ]));
        assert_eq!(p.max_retries, 2);
        assert_eq!(p.backoff_factor, 0.1);
        assert_eq!(p.timeout, Duration::from_secs(5));
        let p = RetryPolicy::from_lookup(vars(&[
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "99"),
            ("MLFLOW_HTTP_REQUEST_TIMEOUT", "nonsense"),
        ]));
        assert_eq!(p.max_retries, 10);
        assert_eq!(p.timeout, RetryPolicy::default().timeout);
        let p = RetryPolicy::from_lookup(vars(&[("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "2")]));
        assert_eq!(p.backoff_max, Duration::from_secs(120));
        assert_eq!(p.backoff(3), Duration::from_secs(8));
    }

    #[test]
    fn retry_classes() {
        assert_eq!(retry_class_for_post("runs/log-batch"), Retry::Idempotent);
        assert_eq!(retry_class_for_post("/api/2.0/mlflow/runs/update"), Retry::Idempotent);
        assert_eq!(retry_class_for_post("runs/create"), Retry::CreateOnly);
        assert_eq!(retry_class_for_post("experiments/create"), Retry::CreateOnly);
    }
}
