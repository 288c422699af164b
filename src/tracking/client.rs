//! A low-level MLflow REST client (tracking API and the `mlflow-artifacts` proxy), on `ureq`.
//!
//! It follows the conventions of MLflow's own Python client: the same environment variables
//! for credentials, retries and timeouts, the same retry rules (408/429/5xx and connection
//! errors for requests that are safe to repeat; only 408/429 and connection errors for creates),
//! and exponential backoff in urllib3's schedule.

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use super::error::{ApiError, TrackingError};
use super::paths;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::retry::{Retry, RetryPolicy, retry_class_for_post};
use super::util::{percent_encode, redact_uri, truncate_chars};
use super::wire::{
    Experiment, FileInfo, KeyValue, MAX_PARAM_VALUE_CHARS, MAX_TAG_VALUE_CHARS, Run, RunInfo, chunk_batches,
};
use super::{Metric, RunStatus};

/// Largest response body kept in memory: JSON answers and artifacts read whole. A server that
/// sends more is refused rather than allowed to exhaust memory.
pub const MAX_RESPONSE_BYTES: u64 = 64 << 20;
/// Of an error answer (non-2xx), only this much is read: enough for MLflow's message.
const MAX_ERROR_BODY_BYTES: u64 = 64 << 10;
/// Deepest artifact directory [`MlflowClient::list_artifacts_recursive`] descends into.
pub const MAX_ARTIFACT_DEPTH: usize = 32;
/// Most directories [`MlflowClient::list_artifacts_recursive`] lists (one request each).
pub const MAX_ARTIFACT_DIRS: usize = 10_000;
/// Most entries (files and directories) [`MlflowClient::list_artifacts_recursive`] accepts.
pub const MAX_ARTIFACT_ENTRIES: usize = 100_000;
/// Most pages [`MlflowClient::get_metric_history`] reads for one metric (25,000 points each).
pub const MAX_HISTORY_PAGES: usize = 1000;

/// Credentials sent with every request. `Debug` never shows the secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    #[default]
    None,
    /// HTTP Basic (`MLFLOW_TRACKING_USERNAME` + `MLFLOW_TRACKING_PASSWORD`).
    Basic { username: String, password: String },
    /// `Authorization: Bearer` (`MLFLOW_TRACKING_TOKEN`).
    Bearer(String),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => write!(f, "Auth::None"),
            Auth::Basic { username, .. } => {
                write!(f, "Auth::Basic {{ username: {username:?}, password: \"***\" }}")
            }
            Auth::Bearer(_) => write!(f, "Auth::Bearer(\"***\")"),
        }
    }
}

impl Auth {
    /// Reads the credentials as MLflow's client does: Basic when both username and password
    /// are set, else a bearer token when `MLFLOW_TRACKING_TOKEN` is set, else none.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (var("MLFLOW_TRACKING_USERNAME"), var("MLFLOW_TRACKING_PASSWORD")) {
            (Some(username), Some(password)) => Auth::Basic { username, password },
            _ => match var("MLFLOW_TRACKING_TOKEN") {
                Some(t) => Auth::Bearer(t),
                None => Auth::None,
            },
        }
    }

    /// The strings that must never be printed: password, token, and the header carrying them.
    fn secrets(&self) -> Vec<String> {
        let mut out = match self {
            Auth::None => Vec::new(),
            Auth::Basic { password, .. } => vec![password.clone()],
            Auth::Bearer(t) => vec![t.clone()],
        };
        out.extend(self.header().and_then(|h| h.split_once(' ').map(|(_, v)| v.to_string())));
        out.retain(|s| !s.is_empty());
        out
    }

    /// `text` (a server's message) with every secret replaced by `***`: a server that echoes
    /// the credentials back must not get them printed.
    fn scrub(&self, text: &str) -> String {
        self.secrets().iter().fold(text.to_string(), |t, secret| t.replace(secret.as_str(), "***"))
    }

    fn header(&self) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Basic { username, password } => {
                Some(format!("Basic {}", BASE64.encode(format!("{username}:{password}"))))
            }
            Auth::Bearer(t) => Some(format!("Bearer {t}")),
        }
    }
}

enum ReqBody<'a> {
    None,
    Json(Vec<u8>),
    File(&'a Path, &'static str),
    Bytes(&'a [u8], &'static str),
}

struct RawResponse {
    status: u16,
    /// The body of an error answer, or of a success kept in memory (empty when written to a file).
    body: Vec<u8>,
    retry_after: Option<Duration>,
}

/// Where the body of a successful answer goes, and the most bytes it may have.
#[derive(Clone, Copy)]
enum Sink<'a> {
    Memory { max: u64 },
    File { path: &'a Path, max: u64 },
}

impl Sink<'_> {
    /// An answer read into memory, up to the size an API answer may have.
    const ANSWER: Sink<'static> = Sink::Memory { max: MAX_RESPONSE_BYTES };

    fn max(&self) -> u64 {
        match self {
            Sink::Memory { max } | Sink::File { max, .. } => *max,
        }
    }
}

/// Why one attempt got no usable answer.
enum SendError {
    Net(ureq::Error),
    /// The body is larger than the sink accepts (`announced`: its Content-Length).
    TooLarge {
        max: u64,
        announced: Option<u64>,
    },
    /// A local file could not be read or written.
    Local(TrackingError),
}

impl From<ureq::Error> for SendError {
    fn from(e: ureq::Error) -> Self {
        SendError::Net(e)
    }
}

/// Passes at most `max` bytes of `reader` to `write`; `Ok(false)` when the body holds more.
fn copy_capped(
    reader: &mut impl Read,
    max: u64,
    mut write: impl FnMut(&[u8]) -> Result<(), TrackingError>,
) -> Result<bool, SendError> {
    let mut buf = vec![0u8; 64 << 10];
    let mut total: u64 = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SendError::Net(ureq::Error::Io(e))),
        };
        total += n as u64;
        if total > max {
            return Ok(false);
        }
        write(&buf[..n]).map_err(SendError::Local)?;
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

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

fn content_type_for(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).as_deref() {
        Some("png") => "image/png",
        Some("jpg") | Some("jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("txt") | Some("log") | Some("jsonl") | Some("md") => "text/plain",
        Some("csv") => "text/csv",
        Some("html") => "text/html",
        Some("yaml") | Some("yml") => "application/x-yaml",
        _ => "application/octet-stream",
    }
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
    /// A client for `tracking_uri` with credentials and retry settings from the environment.
    pub fn from_env(tracking_uri: &str) -> Result<Self, TrackingError> {
        Self::new(tracking_uri, Auth::from_env(), RetryPolicy::from_env())
    }

    /// A client with explicit credentials and retry policy.
    pub fn new(tracking_uri: &str, auth: Auth, retry: RetryPolicy) -> Result<Self, TrackingError> {
        let base = normalize_tracking_uri(tracking_uri)?;
        let agent = Self::make_agent(&retry);
        Ok(MlflowClient { base, auth, retry, agent })
    }

    fn make_agent(retry: &RetryPolicy) -> ureq::Agent {
        // Like MLflow's client (requests' connect/read timeouts): the timeout bounds connecting
        // and each wait for the server, not a whole transfer, so large artifacts still go through.
        let t = Some(retry.timeout);
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_resolve(t)
            .timeout_connect(t)
            .timeout_per_read(t)
            .timeout_per_write(t)
            .user_agent(concat!("engine/", env!("CARGO_PKG_VERSION"), " (mlflow-rest)"))
            .build()
            .new_agent()
    }

    /// The same client with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.agent = Self::make_agent(&retry);
        self.retry = retry;
        self
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

    /// `path` relative to `/api/2.0/mlflow/` unless it starts with `/`.
    fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
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

    fn endpoint_name(path: &str) -> String {
        if path.starts_with('/') { path.to_string() } else { format!("/api/2.0/mlflow/{path}") }
    }

    fn send_once(&self, method: &str, url: &str, body: &ReqBody, sink: Sink) -> Result<RawResponse, SendError> {
        let mut b = ureq::http::Request::builder().method(method).uri(url).header("Accept", "application/json");
        if let Some(h) = self.auth.header() {
            b = b.header("Authorization", h);
        }
        let resp = match body {
            ReqBody::None => self.agent.run(b.body(()).map_err(ureq::Error::Http)?),
            ReqBody::Json(bytes) => self
                .agent
                .run(b.header("Content-Type", "application/json").body(bytes.as_slice()).map_err(ureq::Error::Http)?),
            ReqBody::Bytes(bytes, ct) => {
                self.agent.run(b.header("Content-Type", *ct).body(*bytes).map_err(ureq::Error::Http)?)
            }
            ReqBody::File(path, ct) => {
                let f = File::open(path).map_err(|e| SendError::Local(TrackingError::io(*path, e)))?;
                self.agent.run(b.header("Content-Type", *ct).body(f).map_err(ureq::Error::Http)?)
            }
        };
        let mut resp = resp?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let success = (200..300).contains(&status);
        let announced = resp.body().content_length();
        if success && announced.is_some_and(|n| n > sink.max()) {
            return Err(SendError::TooLarge { max: sink.max(), announced });
        }
        // The limit is ours (below), applied as the bytes arrive, so memory stays bounded.
        let mut reader = resp.body_mut().with_config().limit(u64::MAX).reader();
        let mut body = Vec::new();
        match sink {
            Sink::File { path, max } if success => {
                let mut file = File::create(path).map_err(|e| SendError::Local(TrackingError::io(path, e)))?;
                let whole = copy_capped(&mut reader, max, |chunk| {
                    file.write_all(chunk).map_err(|e| TrackingError::io(path, e))
                })?;
                if !whole {
                    return Err(SendError::TooLarge { max, announced });
                }
            }
            Sink::Memory { max } if success => {
                let whole = copy_capped(&mut reader, max, |chunk| {
                    body.extend_from_slice(chunk);
                    Ok(())
                })?;
                if !whole {
                    return Err(SendError::TooLarge { max, announced });
                }
            }
            // An error answer: its first bytes say what went wrong; the rest is not read.
            _ => {
                (&mut reader)
                    .take(MAX_ERROR_BODY_BYTES)
                    .read_to_end(&mut body)
                    .map_err(|e| SendError::Net(ureq::Error::Io(e)))?;
            }
        }
        Ok(RawResponse { status, body, retry_after })
    }

    /// Sends a request with the retry policy, the body of a successful answer going to `sink`.
    /// Returns the final response (any status) or an error when the server could not be reached.
    fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: ReqBody,
        class: Retry,
        sink: Sink,
    ) -> Result<(RawResponse, u32), TrackingError> {
        let url = self.url(path, query);
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let result = match self.send_once(method, &url, &body, sink) {
                Ok(r) => Ok(r),
                Err(SendError::Net(e)) => Err(e),
                // Retrying cannot help: the same server sends the same body.
                Err(SendError::TooLarge { max, announced }) => {
                    let size = announced.map(|n| format!(" (it announced {n} bytes)")).unwrap_or_default();
                    return Err(TrackingError::Refused {
                        endpoint: format!("{method} {}", Self::endpoint_name(path)),
                        detail: format!(
                            "the response is larger than {}{size}, the most engine accepts here; \
                             the server is broken or not an MLflow server",
                            human_bytes(max)
                        ),
                    });
                }
                Err(SendError::Local(e)) => return Err(e),
            };
            let retryable = match &result {
                Ok(r) => {
                    matches!(r.status, 408 | 429)
                        || (class == Retry::Idempotent && matches!(r.status, 500 | 502 | 503 | 504))
                }
                Err(e) => match error_kind(e) {
                    NetErr::Connect => true,
                    NetErr::Other => class == Retry::Idempotent,
                    NetErr::Fatal => false,
                },
            };
            if !retryable || attempt > self.retry.max_retries {
                return match result {
                    Ok(r) => Ok((r, attempt)),
                    Err(e) => Err(self.net_error(&e, attempt)),
                };
            }
            let mut wait = self.retry.backoff(attempt);
            if self.retry.respect_retry_after
                && let Ok(RawResponse { retry_after: Some(ra), .. }) = &result
            {
                wait = wait.max((*ra).min(self.retry.backoff_max));
            }
            if !self.retry.jitter.is_zero() && !wait.is_zero() {
                let frac = (super::util::random_u64() % 1000) as f64 / 1000.0;
                wait += self.retry.jitter.mul_f64(frac);
            }
            // A fast failure (refused connection) shouldn't make the first retry a busy loop.
            if wait.is_zero() && started.elapsed() < Duration::from_millis(50) {
                wait = Duration::from_millis(50);
            }
            std::thread::sleep(wait);
        }
    }

    fn net_error(&self, e: &ureq::Error, attempts: u32) -> TrackingError {
        let detail = match e {
            ureq::Error::Io(io) => match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                _ => io.to_string(),
            },
            ureq::Error::HostNotFound => "host not found".to_string(),
            ureq::Error::Timeout(t) => format!("timed out ({t:?})"),
            ureq::Error::BadUri(s) => format!("bad URI {s}"),
            other => other.to_string(),
        };
        TrackingError::Unreachable { uri: redact_uri(&self.base), detail: self.auth.scrub(&detail), attempts }
    }

    fn api_error(&self, method: &str, path: &str, r: &RawResponse, attempts: u32) -> TrackingError {
        let (mut code, mut message) = (String::new(), String::new());
        if let Ok(v) = serde_json::from_slice::<Value>(&r.body) {
            code = v.get("error_code").and_then(Value::as_str).unwrap_or_default().to_string();
            message = v.get("message").and_then(Value::as_str).unwrap_or_default().to_string();
        }
        if code.is_empty() && message.is_empty() {
            let text = String::from_utf8_lossy(&r.body);
            let text = text.trim();
            // An HTML error page says little; keep its first line, shortened.
            let first = text.lines().next().unwrap_or("").trim();
            message = if first.is_empty() || first.starts_with('<') {
                reason_phrase(r.status).to_string()
            } else {
                truncate_chars(first, 300).to_string()
            };
        }
        TrackingError::Api(Box::new(ApiError {
            method: method.to_string(),
            endpoint: Self::endpoint_name(path),
            status: r.status,
            error_code: self.auth.scrub(&code),
            message: self.auth.scrub(&message),
            attempts,
        }))
    }

    /// Sends a JSON request and returns the JSON answer (an error for non-2xx statuses).
    pub fn request_json(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        class: Retry,
    ) -> Result<Value, TrackingError> {
        let req_body = match body {
            Some(v) => ReqBody::Json(
                serde_json::to_vec(v)
                    .map_err(|e| TrackingError::InvalidArgument(format!("cannot encode request: {e}")))?,
            ),
            None => ReqBody::None,
        };
        let (r, attempts) = self.send(method, path, query, req_body, class, Sink::ANSWER)?;
        if !(200..300).contains(&r.status) {
            return Err(self.api_error(method, path, &r, attempts));
        }
        if r.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(json!({}));
        }
        serde_json::from_slice(&r.body).map_err(|e| TrackingError::Protocol {
            endpoint: Self::endpoint_name(path),
            detail: self
                .auth
                .scrub(&format!("not JSON ({e}): {}", truncate_chars(String::from_utf8_lossy(&r.body).trim(), 200))),
        })
    }

    /// `GET` with query parameters (repeat a key for lists).
    pub fn get_json(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, TrackingError> {
        self.request_json("GET", path, query, None, Retry::Idempotent)
    }

    /// `POST` a JSON body; retried as MLflow's client would for that endpoint.
    pub fn post_json(&self, path: &str, body: &Value) -> Result<Value, TrackingError> {
        self.request_json("POST", path, &[], Some(body), retry_class_for_post(path))
    }

    /// `PATCH` a JSON body (idempotent updates such as `logged-models/<id>`).
    pub fn patch_json(&self, path: &str, body: &Value) -> Result<Value, TrackingError> {
        self.request_json("PATCH", path, &[], Some(body), Retry::Idempotent)
    }

    fn decode<T: for<'de> Deserialize<'de>>(path: &str, v: Value) -> Result<T, TrackingError> {
        serde_json::from_value(v)
            .map_err(|e| TrackingError::Protocol { endpoint: Self::endpoint_name(path), detail: e.to_string() })
    }

    // ---------------------------------------------------------------------------------
    // Server

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

    // ---------------------------------------------------------------------------------
    // Experiments

    /// The experiment named `name`, or `None` when there is none.
    pub fn get_experiment_by_name(&self, name: &str) -> Result<Option<Experiment>, TrackingError> {
        let path = "experiments/get-by-name";
        match self.get_json(path, &[("experiment_name", name)]) {
            Ok(v) => Ok(Some(Self::decode(path, v["experiment"].clone())?)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn get_experiment(&self, experiment_id: &str) -> Result<Experiment, TrackingError> {
        let path = "experiments/get";
        let v = self.get_json(path, &[("experiment_id", experiment_id)])?;
        Self::decode(path, v["experiment"].clone())
    }

    /// The id of the experiment named `name`: created when missing (tolerating a concurrent
    /// create), restored when it was deleted.
    pub fn get_or_create_experiment(&self, name: &str) -> Result<String, TrackingError> {
        if name.trim().is_empty() {
            return Err(TrackingError::Config("experiment name is empty".into()));
        }
        for _ in 0..3 {
            if let Some(exp) = self.get_experiment_by_name(name)? {
                if exp.lifecycle_stage == "deleted" {
                    self.post_json("experiments/restore", &json!({ "experiment_id": exp.experiment_id }))?;
                }
                return Ok(exp.experiment_id);
            }
            // The kind tag makes the MLflow UI open the experiment on its runs, as for model
            // training, not on the GenAI overview.
            let kind = json!({"key": "mlflow.experimentKind", "value": "custom_model_development"});
            match self.post_json("experiments/create", &json!({ "name": name, "tags": [kind] })) {
                Ok(v) => {
                    if let Some(id) = v["experiment_id"].as_str() {
                        return Ok(id.to_string());
                    }
                    return Err(TrackingError::Protocol {
                        endpoint: "/api/2.0/mlflow/experiments/create".into(),
                        detail: format!("no experiment_id in {v}"),
                    });
                }
                Err(e) if e.is_already_exists() => continue, // someone else created it: get again
                Err(e) => return Err(e),
            }
        }
        Err(TrackingError::Protocol {
            endpoint: "/api/2.0/mlflow/experiments/create".into(),
            detail: format!("experiment {name:?} exists but cannot be read back"),
        })
    }

    // ---------------------------------------------------------------------------------
    // Runs

    /// `runs/create`. `tags` should include the system tags (see [`super::util::system_tags`]).
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
                    let mut metric = json!({"key": m.key, "value": metric_value_json(m.value),
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

    // ---------------------------------------------------------------------------------
    // Artifacts

    fn artifact_url_path(artifact_uri: &str, rel_path: &str) -> Result<String, TrackingError> {
        check_artifact_rel_path(rel_path)?;
        let root = artifact_proxy_path(artifact_uri)?;
        let full = if rel_path.is_empty() {
            root
        } else if root.is_empty() {
            rel_path.to_string()
        } else {
            format!("{root}/{rel_path}")
        };
        Ok(format!("/api/2.0/mlflow-artifacts/artifacts/{}", percent_encode(&full, true)))
    }

    /// Uploads one local file to `<artifact_uri>/<rel_path>` through the artifact proxy
    /// (one raw-body PUT; an existing file is overwritten).
    pub fn upload_artifact_file(
        &self,
        artifact_uri: &str,
        rel_path: &str,
        local_path: &Path,
    ) -> Result<(), TrackingError> {
        if rel_path.is_empty() {
            return Err(TrackingError::InvalidArgument("empty artifact path".into()));
        }
        let path = Self::artifact_url_path(artifact_uri, rel_path)?;
        // Fail early and clearly on a missing local file (not as a network error).
        File::open(local_path).map_err(|e| TrackingError::io(local_path, e))?;
        let ct = content_type_for(local_path);
        let (r, attempts) =
            self.send("PUT", &path, &[], ReqBody::File(local_path, ct), Retry::Idempotent, Sink::ANSWER)?;
        if !(200..300).contains(&r.status) {
            return Err(self.api_error("PUT", &path, &r, attempts));
        }
        Ok(())
    }

    /// Uploads bytes to `<artifact_uri>/<rel_path>`.
    pub fn upload_artifact_bytes(&self, artifact_uri: &str, rel_path: &str, bytes: &[u8]) -> Result<(), TrackingError> {
        if rel_path.is_empty() {
            return Err(TrackingError::InvalidArgument("empty artifact path".into()));
        }
        let path = Self::artifact_url_path(artifact_uri, rel_path)?;
        let ct = content_type_for(Path::new(rel_path));
        let (r, attempts) = self.send("PUT", &path, &[], ReqBody::Bytes(bytes, ct), Retry::Idempotent, Sink::ANSWER)?;
        if !(200..300).contains(&r.status) {
            return Err(self.api_error("PUT", &path, &r, attempts));
        }
        Ok(())
    }

    /// Downloads `<artifact_uri>/<rel_path>` through the artifact proxy into memory; a file
    /// over [`MAX_RESPONSE_BYTES`] is refused.
    pub fn download_artifact(&self, artifact_uri: &str, rel_path: &str) -> Result<Vec<u8>, TrackingError> {
        let path = Self::artifact_url_path(artifact_uri, rel_path)?;
        let (r, attempts) = self.send("GET", &path, &[], ReqBody::None, Retry::Idempotent, Sink::ANSWER)?;
        if !(200..300).contains(&r.status) {
            return Err(self.api_error("GET", &path, &r, attempts));
        }
        Ok(r.body)
    }

    /// Downloads `<artifact_uri>/<rel_path>` to `<dest_root>/<rel_path>` (parent directories are
    /// created) and returns that path. The body is streamed to a temporary file and renamed into
    /// place whole; one over `max_bytes` is refused, and nothing is left behind.
    pub fn download_artifact_to(
        &self,
        artifact_uri: &str,
        rel_path: &str,
        dest_root: &Path,
        max_bytes: u64,
    ) -> Result<PathBuf, TrackingError> {
        let dest = paths::safe_join(dest_root, rel_path)?;
        let path = Self::artifact_url_path(artifact_uri, rel_path)?;
        let parent = dest.parent().unwrap_or(dest_root);
        std::fs::create_dir_all(parent).map_err(|e| TrackingError::io(parent, e))?;
        let tmp = crate::files::temp_path(&dest);
        let sink = Sink::File { path: &tmp, max: max_bytes };
        let result = self.send("GET", &path, &[], ReqBody::None, Retry::Idempotent, sink).and_then(|(r, attempts)| {
            if !(200..300).contains(&r.status) {
                return Err(self.api_error("GET", &path, &r, attempts));
            }
            std::fs::rename(&tmp, &dest).map_err(|e| TrackingError::io(&dest, e))
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map(|()| dest)
    }

    /// `artifacts/list` for a run: the entries directly under `path` ("" = the root). Every
    /// entry must be a direct child of `path` with a plain name; a listing with anything else
    /// (`..`, a sibling, the directory itself, an absolute path) is refused.
    pub fn list_artifacts(&self, run_id: &str, path: &str) -> Result<Vec<FileInfo>, TrackingError> {
        let api = "artifacts/list";
        check_artifact_rel_path(path)?;
        let mut q = vec![("run_id", run_id)];
        if !path.is_empty() {
            q.push(("path", path));
        }
        let v = self.get_json(api, &q)?;
        let files: Vec<FileInfo> = Self::decode(api, v.get("files").cloned().unwrap_or(json!([])))?;
        for f in &files {
            let name = if path.is_empty() {
                Some(f.path.as_str())
            } else {
                f.path.strip_prefix(path).and_then(|rest| rest.strip_prefix('/'))
            };
            let plain = name.is_some_and(|n| !n.contains('/') && paths::check_relative(n).is_ok());
            if !plain {
                return Err(TrackingError::Refused {
                    endpoint: format!("GET {}", Self::endpoint_name(api)),
                    detail: format!(
                        "the listing of {:?} holds {:?}, which is not a plain name directly inside it; \
                         the server is broken or hostile, so this run's artifacts are left alone",
                        if path.is_empty() { "/" } else { path },
                        f.path
                    ),
                });
            }
        }
        Ok(files)
    }

    /// Every file (not directory) of a run's artifacts, recursively, with paths from the root.
    /// The walk is bounded ([`MAX_ARTIFACT_DEPTH`], [`MAX_ARTIFACT_DIRS`],
    /// [`MAX_ARTIFACT_ENTRIES`]) and each listing is checked (see [`Self::list_artifacts`]), so a
    /// server cannot keep it going forever.
    pub fn list_artifacts_recursive(&self, run_id: &str) -> Result<Vec<FileInfo>, TrackingError> {
        let refuse = |detail: String| TrackingError::Refused {
            endpoint: format!("GET {}", Self::endpoint_name("artifacts/list")),
            detail: format!("{detail}; the server is broken or hostile, so this run's artifacts are left alone"),
        };
        let mut out = Vec::new();
        let mut dirs = vec![(String::new(), 0usize)];
        let (mut listed, mut entries) = (0usize, 0usize);
        while let Some((d, depth)) = dirs.pop() {
            listed += 1;
            if listed > MAX_ARTIFACT_DIRS {
                return Err(refuse(format!("run {run_id} has more than {MAX_ARTIFACT_DIRS} artifact directories")));
            }
            for f in self.list_artifacts(run_id, &d)? {
                entries += 1;
                if entries > MAX_ARTIFACT_ENTRIES {
                    return Err(refuse(format!("run {run_id} has more than {MAX_ARTIFACT_ENTRIES} artifacts")));
                }
                if f.is_dir {
                    if depth + 1 > MAX_ARTIFACT_DEPTH {
                        return Err(refuse(format!(
                            "artifact directory {:?} is nested more than {MAX_ARTIFACT_DEPTH} levels deep",
                            f.path
                        )));
                    }
                    dirs.push((f.path, depth + 1));
                } else {
                    out.push(f);
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

fn metric_value_json(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else if v.is_nan() {
        json!("NaN")
    } else if v > 0.0 {
        json!("Infinity")
    } else {
        json!("-Infinity")
    }
}

fn reason_phrase(status: u16) -> &'static str {
    ureq::http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("error")
}

enum NetErr {
    /// Failed before the request reached the server: always safe to retry.
    Connect,
    /// Failed while sending or receiving: the server may have acted on it.
    Other,
    /// Retrying cannot help (bad URI, unknown host, TLS setup).
    Fatal,
}

fn error_kind(e: &ureq::Error) -> NetErr {
    use std::io::ErrorKind as K;
    match e {
        ureq::Error::Io(io) => match io.kind() {
            K::ConnectionRefused | K::AddrNotAvailable | K::NotConnected => NetErr::Connect,
            K::NotFound | K::PermissionDenied => NetErr::Fatal,
            _ => NetErr::Other,
        },
        ureq::Error::ConnectionFailed => NetErr::Connect,
        ureq::Error::Timeout(t) => match t {
            ureq::Timeout::Connect | ureq::Timeout::Resolve => NetErr::Connect,
            _ => NetErr::Other,
        },
        ureq::Error::Protocol(_) => NetErr::Other,
        _ => NetErr::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::{MAX_BATCH_BYTES, MAX_ENTITIES_PER_BATCH};
    use super::*;

    fn m(i: usize) -> Metric {
        Metric { key: format!("k{}", i % 3), value: i as f64, step: i as i64, timestamp_ms: 1, about: None }
    }

    fn kv(n: usize) -> Vec<KeyValue> {
        (0..n).map(|i| KeyValue { key: format!("p{i}"), value: "v".into() }).collect()
    }

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

    #[test]
    fn batches_respect_server_limits() {
        let metrics: Vec<Metric> = (0..2501).map(m).collect();
        let b = chunk_batches(&metrics, &kv(250), &kv(101));
        let sizes: Vec<(usize, usize, usize)> =
            b.iter().map(|b| (b.params.len(), b.tags.len(), b.metrics.len())).collect();
        assert_eq!(
            sizes,
            vec![(100, 0, 0), (100, 0, 0), (50, 0, 0), (0, 100, 0), (0, 1, 0), (0, 0, 1000), (0, 0, 1000), (0, 0, 501)]
        );
        for x in &b {
            assert!(x.params.len() + x.tags.len() + x.metrics.len() <= MAX_ENTITIES_PER_BATCH);
        }
        let all: Vec<Metric> = b.iter().flat_map(|x| x.metrics.clone()).collect();
        assert_eq!(all, metrics);
        assert!(chunk_batches(&[], &[], &[]).is_empty());

        // 100 params of 6000 three-byte chars would make an 1.8 MB request: split by size.
        let big: Vec<KeyValue> =
            (0..100).map(|i| KeyValue { key: format!("p{i}"), value: "é€".repeat(3000) }).collect();
        let b = chunk_batches(&[], &big, &[]);
        assert!(b.len() >= 2, "{}", b.len());
        for x in &b {
            let body = serde_json::to_vec(&x.params).unwrap();
            assert!(body.len() <= MAX_BATCH_BYTES, "{}", body.len());
        }
        assert_eq!(b.iter().map(|x| x.params.len()).sum::<usize>(), 100);
    }

    #[test]
    fn auth_debug_redacts_and_headers_encode() {
        let a = Auth::Basic { username: "alice".into(), password: "s3cret".into() };
        let dbg = format!("{a:?}");
        assert!(!dbg.contains("s3cret") && dbg.contains("alice"), "{dbg}");
        assert_eq!(a.header().unwrap(), "Basic YWxpY2U6czNjcmV0");
        let t = Auth::Bearer("tok-123".into());
        assert!(!format!("{t:?}").contains("tok-123"));
        let c = MlflowClient::new("http://127.0.0.1:5000/", a, RetryPolicy::default()).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(c.tracking_uri(), "http://127.0.0.1:5000");
    }

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
        assert_eq!(
            MlflowClient::artifact_url_path("mlflow-artifacts:/1/r/artifacts", "plots/a b.png").unwrap(),
            "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/plots/a%20b.png"
        );
        for bad in ["../x", "a/../b", "/abs", "a//b", "a\\b"] {
            assert!(check_artifact_rel_path(bad).is_err(), "{bad}");
        }
        assert!(check_artifact_rel_path("plots/loss.png").is_ok());
    }

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
        assert_eq!(metric_value_json(f64::NAN), json!("NaN"));
        let s = serde_json::to_string(&v[0]).unwrap();
        assert!(s.contains("\"NaN\""), "{s}");
    }
}
