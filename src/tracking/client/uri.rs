//! Tracking and artifact URIs: checked before use, never holding or showing credentials, and
//! the URL of each request built from the server's base.

use super::MlflowClient;
use crate::tracking::error::TrackingError;
use crate::tracking::paths;
use crate::tracking::util::{percent_encode, redact_uri};

/// Checks a tracking URI for use over REST and normalizes it (no trailing `/`). The result
/// never holds credentials, and no error shows them.
pub fn normalize_tracking_uri(uri: &str) -> Result<String, TrackingError> {
    let u = uri.trim().trim_end_matches('/');
    let shown = redact_uri(u);
    let lower = u.to_ascii_lowercase();
    let rest = if let Some(r) = lower.strip_prefix("http://") {
        r
    } else if let Some(r) = lower.strip_prefix("https://") {
        r
    } else {
        return Err(TrackingError::Config(format!(
            "tracking URI {shown:?} is not an http(s):// MLflow server; engine talks to MLflow over REST \
             (start `mlflow server` and pass its http:// address, or leave MLFLOW_TRACKING_URI unset \
             to record runs in the local store only)"
        )));
    };
    if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
        return Err(TrackingError::Config(format!("tracking URI {shown:?} has no host")));
    }
    if rest.contains('@') {
        return Err(TrackingError::Config(format!(
            "tracking URI {shown:?} must not carry credentials; \
             pass them in MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN"
        )));
    }
    Ok(u.to_string())
}

/// Turns `mlflow-artifacts:/1/<run>/artifacts` (optionally `mlflow-artifacts://host:port/...`)
/// into the path below `/api/2.0/mlflow-artifacts/artifacts/`. A path with `..` or empty
/// components (a server pointing the client elsewhere) is refused.
pub fn artifact_proxy_path(artifact_uri: &str) -> Result<String, TrackingError> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:").ok_or_else(|| {
        TrackingError::Config(format!(
            "artifact URI {:?} is not served by the tracking server; \
             start `mlflow server` with artifact serving on (the default, --serve-artifacts)",
            redact_uri(artifact_uri)
        ))
    })?;
    let rest = if let Some(r) = rest.strip_prefix("//") {
        // drop the authority
        match r.find('/') {
            Some(i) => &r[i..],
            None => "",
        }
    } else {
        rest
    };
    let path = rest.trim_matches('/');
    if !path.is_empty()
        && let Err(e) = paths::check_relative(path)
    {
        return Err(TrackingError::InvalidArgument(format!(
            "artifact URI {:?} from the server is unusable: {e}",
            redact_uri(artifact_uri)
        )));
    }
    Ok(path.to_string())
}

/// Checks a relative artifact path ("" = the root): no absolute paths, no `..`, `.` or empty
/// components, no `\` or NUL.
pub fn check_artifact_rel_path(p: &str) -> Result<(), TrackingError> {
    if p.is_empty() { Ok(()) } else { paths::check_relative(p) }
}

impl MlflowClient {
    /// `path` relative to `/api/2.0/mlflow/` unless it starts with `/`.
    pub(super) fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = if path.starts_with('/') {
            format!("{}{}", self.base, path)
        } else {
            format!("{}/api/2.0/mlflow/{}", self.base, path)
        };
        for (i, (k, v)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&percent_encode(k, false));
            url.push('=');
            url.push_str(&percent_encode(v, false));
        }
        url
    }

    pub(super) fn endpoint_name(path: &str) -> String {
        if path.starts_with('/') { path.to_string() } else { format!("/api/2.0/mlflow/{path}") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_uris_are_checked() {
        assert!(normalize_tracking_uri("http://localhost:5000").is_ok());
        assert!(normalize_tracking_uri("https://mlflow.example/base/").is_ok());
        for bad in ["sqlite:///mlflow.db", "file:./mlruns", "localhost:5000", "http://", "http://u:p@h"] {
            assert!(matches!(normalize_tracking_uri(bad), Err(TrackingError::Config(_))), "{bad}");
        }
    }

    #[test]
    fn artifact_paths() {
        assert_eq!(artifact_proxy_path("mlflow-artifacts:/1/abc/artifacts").unwrap(), "1/abc/artifacts");
        assert_eq!(artifact_proxy_path("mlflow-artifacts://host:5000/1/abc/artifacts").unwrap(), "1/abc/artifacts");
        assert!(artifact_proxy_path("/tmp/mlruns/1/abc/artifacts").is_err());
        for bad in ["../x", "a/../b", "/abs", "a//b", "a\\b"] {
            assert!(check_artifact_rel_path(bad).is_err(), "{bad}");
        }
        assert!(check_artifact_rel_path("plots/loss.png").is_ok());
    }
}
