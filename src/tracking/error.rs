//! The one error type of the tracking module.

use std::fmt;
use std::path::PathBuf;

/// An error answered by an MLflow server (an HTTP status with, where MLflow sent one,
/// its `error_code` and `message`).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub method: String,
    /// The request path, without the query string (it never holds credentials).
    pub endpoint: String,
    pub status: u16,
    /// MLflow's `error_code` (e.g. `RESOURCE_DOES_NOT_EXIST`), or empty when the body was not MLflow JSON.
    pub error_code: String,
    pub message: String,
    /// How many times the request was sent (1 = no retry).
    pub attempts: u32,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MLflow {} {}: HTTP {}", self.method, self.endpoint, self.status)?;
        if !self.error_code.is_empty() {
            write!(f, " {}", self.error_code)?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if self.status == 404 && self.error_code.is_empty() {
            write!(f, " (not an MLflow API endpoint: check the tracking URI)")?;
        }
        if self.status == 401 || self.status == 403 {
            write!(f, " (check MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD or MLFLOW_TRACKING_TOKEN)")?;
        }
        if self.attempts > 1 {
            write!(f, " (after {} attempts)", self.attempts)?;
        }
        Ok(())
    }
}

/// Everything that can go wrong while tracking a run.
#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    /// A bad tracking URI, experiment name or similar setting.
    #[error("tracking configuration: {0}")]
    Config(String),
    /// A file in the local store could not be read or written.
    #[error("local store {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The local store holds something it cannot understand.
    #[error("local store: {0}")]
    Store(String),
    /// No run with that id (or id prefix).
    #[error("run not found: {0}")]
    RunNotFound(String),
    /// The MLflow server answered with an error status.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// The MLflow server could not be reached (refused, reset, timed out, unknown host).
    #[error("MLflow server {uri} unreachable: {detail} (after {attempts} attempt{})", if *attempts == 1 { "" } else { "s" })]
    Unreachable { uri: String, detail: String, attempts: u32 },
    /// The server answered something that is not what MLflow answers.
    #[error("MLflow {endpoint}: unexpected response: {detail}")]
    Protocol { endpoint: String, detail: String },
    /// A tracker method was called before `start_run` or after `end_run`.
    #[error("no active run (start_run was not called, or end_run already was)")]
    NoActiveRun,
    /// A name or path from a server or the command line that would leave its directory.
    #[error(
        "refusing the path {path:?}: {reason}; a name from a server or the command line must stay inside {}",
        root.display()
    )]
    UnsafePath { path: String, root: PathBuf, reason: String },
    /// The server answered something engine will not act on (an artifact listing that leaves the
    /// listed directory, a response over the size limit): a broken or hostile server.
    #[error("MLflow {endpoint}: refused the server's answer: {detail}")]
    Refused { endpoint: String, detail: String },
    /// A caller passed something invalid (e.g. an artifact path with `..`, a changed param value).
    #[error("{0}")]
    InvalidArgument(String),
}

impl TrackingError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrackingError::Io { path: path.into(), source }
    }

    /// MLflow's `error_code`, when the server sent one.
    pub fn error_code(&self) -> Option<&str> {
        match self {
            TrackingError::Api(e) if !e.error_code.is_empty() => Some(&e.error_code),
            _ => None,
        }
    }

    /// The HTTP status, for errors the server answered.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            TrackingError::Api(e) => Some(e.status),
            _ => None,
        }
    }

    /// True when the server could not be reached or kept failing on its side (5xx, 408, 429),
    /// i.e. when it makes sense to carry on without it and sync later.
    pub fn is_server_unavailable(&self) -> bool {
        match self {
            TrackingError::Unreachable { .. } => true,
            TrackingError::Api(e) => e.status >= 500 || e.status == 408 || e.status == 429,
            TrackingError::Protocol { .. } => true,
            _ => false,
        }
    }

    /// True for `RESOURCE_DOES_NOT_EXIST` (and local runs not found).
    pub fn is_not_found(&self) -> bool {
        match self {
            // A 404 without MLflow's error code is a wrong URL, not a missing resource.
            TrackingError::Api(e) => e.error_code == "RESOURCE_DOES_NOT_EXIST",
            TrackingError::RunNotFound(_) => true,
            _ => false,
        }
    }

    /// True for `RESOURCE_ALREADY_EXISTS`.
    pub fn is_already_exists(&self) -> bool {
        self.error_code() == Some("RESOURCE_ALREADY_EXISTS")
    }
}
