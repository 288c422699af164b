//! The server itself: is it up, and which MLflow version it runs.

use super::MlflowClient;
use super::retry::Retry;
use super::transport::{ReqBody, Sink};
use crate::tracking::error::TrackingError;

impl MlflowClient {
    /// `GET /health` once (no retries): Ok when the server answers 200.
    pub fn health(&self) -> Result<(), TrackingError> {
        let once = self.without_retries();
        let (r, attempts) = once.send("GET", "/health", &[], ReqBody::None, Retry::Idempotent, Sink::ANSWER)?;
        if r.status == 200 { Ok(()) } else { Err(self.api_error("GET", "/health", &r, attempts)) }
    }

    /// The server's MLflow version (`GET /version`), e.g. `3.17.2`.
    pub fn server_version(&self) -> Result<String, TrackingError> {
        let (r, attempts) = self.send("GET", "/version", &[], ReqBody::None, Retry::Idempotent, Sink::ANSWER)?;
        if !(200..300).contains(&r.status) {
            return Err(self.api_error("GET", "/version", &r, attempts));
        }
        Ok(String::from_utf8_lossy(&r.body).trim().to_string())
    }
}
