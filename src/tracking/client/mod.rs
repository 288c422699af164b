//! A low-level MLflow REST client (tracking API and the `mlflow-artifacts` proxy), on `ureq`.
//!
//! It follows the conventions of MLflow's own Python client: the same environment variables
//! for credentials, retries and timeouts, the same retry rules (408/429/5xx and connection
//! errors for requests that are safe to repeat; only 408/429 and connection errors for creates),
//! and exponential backoff in urllib3's schedule.
//!
//! One job a file: credentials (`auth`), the size-capped transport with its retries
//! (`transport`, `retry`), URIs (`uri`), and the endpoints grouped by what they touch: the
//! server itself, experiments, runs, metrics/params/tags and artifacts.

mod artifacts;
mod auth;
mod experiments;
mod metrics;
mod retry;
mod runs;
mod server;
mod transport;
mod uri;

use std::fmt;
use std::time::Duration;

use super::error::TrackingError;
use super::util::redact_uri;

pub use artifacts::{MAX_ARTIFACT_DEPTH, MAX_ARTIFACT_DIRS, MAX_ARTIFACT_ENTRIES};
pub use auth::Auth;
pub use metrics::MAX_HISTORY_PAGES;
pub use retry::{Retry, RetryPolicy, retry_class_for_post};
pub use transport::MAX_RESPONSE_BYTES;
pub use uri::{artifact_proxy_path, check_artifact_rel_path, normalize_tracking_uri};

/// A low-level client for one MLflow tracking server. Cheap to clone.
#[derive(Clone)]
pub struct MlflowClient {
    base: String,
    auth: Auth,
    retry: RetryPolicy,
    agent: ureq::Agent,
}

impl fmt::Debug for MlflowClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MlflowClient")
            .field("tracking_uri", &redact_uri(&self.base))
            .field("auth", &self.auth)
            .field("retry", &self.retry)
            .finish()
    }
}

/// How long [`MlflowClient::first_contact`] waits for a connection to be made.
pub const FIRST_CONTACT_CONNECT: Duration = Duration::from_millis(500);

impl MlflowClient {
    /// A client for `tracking_uri` with credentials and retry settings from the environment.
    pub fn from_env(tracking_uri: &str) -> Result<Self, TrackingError> {
        Self::new(tracking_uri, Auth::from_env(), RetryPolicy::from_env())
    }

    /// A client with explicit credentials and retry policy.
    pub fn new(tracking_uri: &str, auth: Auth, retry: RetryPolicy) -> Result<Self, TrackingError> {
        let base = normalize_tracking_uri(tracking_uri)?;
        let agent = Self::make_agent(&retry, retry.timeout);
        Ok(MlflowClient { base, auth, retry, agent })
    }

    /// The same client with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.agent = Self::make_agent(&retry, retry.timeout);
        self.retry = retry;
        self
    }

    /// The same client trying each request once and giving up on a connection that is not
    /// made within `FIRST_CONTACT_CONNECT`: a first contact that must not keep training waiting
    /// for a host that drops the connection attempt (a firewall, a machine that is off). A
    /// server that is there connects in milliseconds; later requests keep the full timeout.
    pub fn first_contact(&self) -> Self {
        let mut once = self.without_retries();
        once.agent = Self::make_agent(&once.retry, once.retry.timeout.min(FIRST_CONTACT_CONNECT));
        once
    }

    /// The same client trying each request once: for a first contact that must not wait
    /// through the backoff schedule of a server that is down.
    pub fn without_retries(&self) -> Self {
        self.clone().with_retry(RetryPolicy { max_retries: 0, ..self.retry.clone() })
    }

    /// The server's base URI (normalized, no trailing `/`, never with credentials).
    pub fn tracking_uri(&self) -> &str {
        &self.base
    }
}
