//! Sending one request: the HTTP agent and its timeouts, the body going out, the answer read
//! within a size cap (into memory or a file), retries with backoff, and the errors a failure
//! becomes (with every secret scrubbed).

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use super::MlflowClient;
use super::retry::{Retry, RetryPolicy, retry_class_for_post};
use crate::tracking::error::{ApiError, TrackingError};
use crate::tracking::util::{random_u64, redact_uri, truncate_chars};

/// Largest response body kept in memory: JSON answers and artifacts read whole. A server that
/// sends more is refused rather than allowed to exhaust memory.
pub const MAX_RESPONSE_BYTES: u64 = 64 << 20;
/// Of an error answer (non-2xx), only this much is read: enough for MLflow's message.
const MAX_ERROR_BODY_BYTES: u64 = 64 << 10;

pub(super) enum ReqBody<'a> {
    None,
    Json(Vec<u8>),
    File(&'a Path, &'static str),
    Bytes(&'a [u8], &'static str),
}

pub(super) struct RawResponse {
    pub(super) status: u16,
    /// The body of an error answer, or of a success kept in memory (empty when written to a file).
    pub(super) body: Vec<u8>,
    retry_after: Option<Duration>,
}

/// Where the body of a successful answer goes, and the most bytes it may have.
#[derive(Clone, Copy)]
pub(super) enum Sink<'a> {
    Memory { max: u64 },
    File { path: &'a Path, max: u64 },
}

impl Sink<'_> {
    /// An answer read into memory, up to the size an API answer may have.
    pub(super) const ANSWER: Sink<'static> = Sink::Memory { max: MAX_RESPONSE_BYTES };

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

impl MlflowClient {
    pub(super) fn make_agent(retry: &RetryPolicy, connect: Duration) -> ureq::Agent {
        // Like MLflow's client (requests' connect/read timeouts): the timeout bounds connecting
        // and each wait for the server, not a whole transfer, so large artifacts still go through.
        let t = Some(retry.timeout);
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_resolve(t)
            .timeout_connect(Some(connect))
            .timeout_per_read(t)
            .timeout_per_write(t)
            .user_agent(concat!("engine/", env!("CARGO_PKG_VERSION"), " (mlflow-rest)"))
            .build()
            .new_agent()
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
    pub(super) fn send(
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
                let frac = (random_u64() % 1000) as f64 / 1000.0;
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

    pub(super) fn api_error(&self, method: &str, path: &str, r: &RawResponse, attempts: u32) -> TrackingError {
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

    pub(super) fn decode<T: for<'de> Deserialize<'de>>(path: &str, v: Value) -> Result<T, TrackingError> {
        serde_json::from_value(v)
            .map_err(|e| TrackingError::Protocol { endpoint: Self::endpoint_name(path), detail: e.to_string() })
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
