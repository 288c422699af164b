//! What can stop a workflow step, one variant per kind of cause, so that a caller can tell an
//! interrupt or a refused request (a usage problem) from a failure.

use std::path::PathBuf;

use crate::data::DataError;
use crate::gate::GateError;
use crate::model::ModelError;
use crate::report::ReportError;
use crate::tracking::{FindRunError, ModelUriError, TrackingError};
use crate::train::TrainError;

/// Errors of the `experiment` workflow.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The request cannot be carried out as given (e.g. an output directory that holds another
    /// run's files): the caller must change it. A command line reports it as bad usage.
    #[error("{0}")]
    Refused(String),
    /// The step could not go on; the message says why and what to do.
    #[error("{0}")]
    Failed(String),
    /// A file or directory could not be read, created or removed.
    // The cause is in the message, not a `#[source]`: a reporter printing the chain would
    // repeat it.
    #[error("cannot {action} {}: {error}", path.display())]
    Io { action: &'static str, path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Tracking(#[from] TrackingError),
    #[error(transparent)]
    FindRun(#[from] FindRunError),
    #[error(transparent)]
    ModelUri(#[from] ModelUriError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Gate(#[from] GateError),
    #[error(transparent)]
    Engine(#[from] crate::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A step failed after the work it reports on was done (e.g. a gate decision that could
    /// not be recorded on the run): `what` says what holds, `source` what did not happen.
    #[error("{what}: {cause}")]
    Unrecorded { what: String, cause: Box<ExperimentError> },
}

impl ExperimentError {
    /// Whether the step stopped because its cancellation flag was raised.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, ExperimentError::Train(TrainError::Interrupted))
    }

    /// Whether the request itself must change (bad usage), rather than something failing.
    pub fn is_refusal(&self) -> bool {
        matches!(self, ExperimentError::Refused(_))
    }

    /// `self`, preceded by what holds despite it.
    pub fn after(self, what: impl Into<String>) -> ExperimentError {
        ExperimentError::Unrecorded { what: what.into(), cause: Box::new(self) }
    }
}

/// A closure for `map_err` that turns an I/O error on `path` into [`ExperimentError::Io`].
pub(crate) fn io(action: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ExperimentError {
    let path = path.to_path_buf();
    move |error| ExperimentError::Io { action, path, error }
}
