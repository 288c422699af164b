//! The HTTP side, on axum: MLflow's scoring server routes (`POST /invocations`, `GET /ping`,
//! `/health`, `/version`), image bodies beside MLflow's formats, the page at `/` with its
//! `/model-card`, MLflow's error bodies (`{"error_code": ..., "message": ...}`), a body limit
//! answered with 413, an optional access log, and graceful shutdown. Bodies are parsed on the
//! runtime's threads, in parallel, while the batcher's thread runs the model.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use http_body_util::BodyExt;

use super::batcher::{BatchHandle, PredictError};
use super::card::{ModelCard, ReportSources};
use super::protocol::{self, Images, InputError};
use super::{answer, images, page};

/// The response header naming the registered model version that answered.
pub const MODEL_VERSION_HEADER: &str = "x-model-version";
/// The response header naming the run whose model answered.
pub const MODEL_RUN_HEADER: &str = "x-model-run-id";

/// Limits and logging of the HTTP server.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body; a larger one is answered 413.
    pub max_body_bytes: usize,
    /// Longest time to receive a body; a slower one is answered 408.
    pub body_timeout: Duration,
    /// One line per request on stderr.
    pub access_log: bool,
    /// Where the page's model card looks for the model's test reports.
    pub reports: ReportSources,
}

#[derive(Clone)]
struct AppState {
    batcher: BatchHandle,
    config: Arc<HttpConfig>,
}

/// How many images a response answered, for the access log.
#[derive(Clone, Copy)]
struct Rows(usize);

/// The scoring server's routes.
pub fn router(batcher: BatchHandle, config: HttpConfig) -> Router {
    let access_log = config.access_log;
    let state = AppState { batcher, config: Arc::new(config) };
    let app = Router::new()
        .route("/invocations", post(invocations))
        .route("/ping", get(ping))
        .route("/health", get(ping))
        .route("/version", get(version))
        .route("/", get(page::index))
        .route("/app.js", get(page::script))
        .route("/app.css", get(page::style))
        .route("/model-card", get(model_card))
        .fallback(|| async { detail(StatusCode::NOT_FOUND, "Not Found") })
        .method_not_allowed_fallback(|| async { detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed") })
        .with_state(state);
    if access_log { app.layer(axum::middleware::from_fn(log_access)) } else { app }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the requests in flight
/// finish (idle connections are closed, new ones refused).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Small responses must not wait for the peer's delayed ACK (Nagle): 40 ms stalls otherwise.
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// MLflow's error body.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error_code": code, "message": message });
    json_response(status, body.to_string().into_bytes())
}

/// FastAPI's body for unknown routes, as `mlflow models serve` answers them.
fn detail(status: StatusCode, text: &str) -> Response {
    json_response(status, serde_json::json!({ "detail": text }).to_string().into_bytes())
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A newline, as MLflow's `/ping` and `/health` answer.
async fn ping() -> Response {
    json_response(StatusCode::OK, b"\n".to_vec())
}

/// The model answering now, and this engine's version.
async fn version(State(state): State<AppState>) -> Response {
    let info = state.batcher.current();
    // Through text, so that the contract's `f32` statistics keep their short decimals.
    let text = serde_json::to_string(&*info).unwrap_or_default();
    let mut body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if let Some(fields) = body.as_object_mut() {
        fields.insert("engine_version".into(), env!("CARGO_PKG_VERSION").into());
    }
    json_response(StatusCode::OK, body.to_string().into_bytes())
}

async fn invocations(State(state): State<AppState>, request: Request) -> Response {
    let arrival = state.batcher.arrival();
    let (parts, body) = request.into_parts();
    let content_type = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let waits_for_continue = parts.headers.get(header::EXPECT).is_some_and(|v| v.as_bytes() == b"100-continue");
    if waits_for_continue && declared.is_some_and(|n| n > state.config.max_body_bytes as u64) {
        // The client sends nothing until told to: refuse before it does.
        return too_large(state.config.max_body_bytes);
    }
    let body = match read_body(body, declared, &state.config).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let images = match parse_body(content_type, body, &state).await {
        Ok(images) => images,
        Err(InputError::BadRequest(message)) => return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message),
        Err(InputError::UnsupportedMediaType(message)) => {
            return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "BAD_REQUEST", &message);
        }
    };
    let (rows, with_classes) = (images.rows, images.with_classes);
    let prediction = match state.batcher.predict(images, arrival).await {
        Ok(prediction) => prediction,
        Err(e @ PredictError::ShuttingDown) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "TEMPORARILY_UNAVAILABLE", &e.to_string());
        }
        Err(PredictError::WrongShape(message)) => return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message),
        Err(e @ PredictError::Failed(_)) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", &e.to_string());
        }
    };
    let model = &prediction.model;
    let out = answer::write_answer(&prediction.probabilities, &model.contract.class_names, with_classes);
    let mut response = json_response(StatusCode::OK, out);
    let headers = response.headers_mut();
    for (name, value) in [(MODEL_VERSION_HEADER, &model.version), (MODEL_RUN_HEADER, &model.run_id)] {
        if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(name, value);
        }
    }
    response.extensions_mut().insert(Rows(rows));
    response
}

/// The images of a body, by the current model's input contract: an image body is decoded on a
/// blocking thread (decoding is heavier than parsing numbers), the others as MLflow reads them.
async fn parse_body(content_type: Option<&str>, body: Vec<u8>, state: &AppState) -> Result<Images, InputError> {
    let model = state.batcher.current();
    let Some(content_type) = content_type.filter(|&c| images::is_image_body(Some(c))) else {
        return protocol::parse(content_type, &body, model.image());
    };
    let content_type = content_type.to_string();
    tokio::task::spawn_blocking(move || images::parse(&content_type, &body, &model.contract))
        .await
        .unwrap_or_else(|e| Err(InputError::BadRequest(format!("the image could not be decoded: {e}"))))
}

/// The model card of the model answering now.
async fn model_card(State(state): State<AppState>) -> Response {
    let info = state.batcher.current();
    let sources = state.config.reports.clone();
    let card = tokio::task::spawn_blocking(move || ModelCard::gather(&info, &sources)).await;
    match card.ok().and_then(|c| serde_json::to_vec(&c).ok()) {
        Some(body) => json_response(StatusCode::OK, body),
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", "the model card could not be made"),
    }
}

/// Bytes of an oversized body read and dropped before the 413 is sent; past them the connection
/// is closed under the client.
const DRAIN_BYTES: usize = 8 << 20;

/// 413, and the connection closed after it.
fn too_large(limit: usize) -> Response {
    let message = format!("The request body is larger than this server's limit of {limit} bytes (--max-body-bytes)");
    let mut response = error(StatusCode::PAYLOAD_TOO_LARGE, "REQUEST_LIMIT_EXCEEDED", &message);
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The whole body, or the response that refuses it: 413 past the limit (the rest of the body is
/// read and dropped first, up to [`DRAIN_BYTES`], so the client reads the answer instead of a
/// reset connection), 408 when it does not arrive in time, 400 when the connection fails.
async fn read_body(mut body: Body, declared: Option<u64>, config: &HttpConfig) -> Result<Vec<u8>, Response> {
    let limit = config.max_body_bytes;
    let read = async {
        let mut out = Vec::with_capacity(declared.map_or(0, |n| n.min(limit as u64) as usize));
        let mut over = declared.is_some_and(|n| n > limit as u64);
        let mut drain_budget = DRAIN_BYTES;
        while let Some(frame) = body.frame().await {
            let frame = frame
                .map_err(|e| error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &format!("cannot read the body: {e}")))?;
            let Ok(data) = frame.into_data() else { continue };
            if over || out.len() + data.len() > limit {
                over = true;
                out = Vec::new();
                drain_budget = drain_budget.saturating_sub(data.len());
                if drain_budget == 0 {
                    break;
                }
            } else {
                out.extend_from_slice(&data);
            }
        }
        if over { Err(too_large(limit)) } else { Ok(out) }
    };
    match tokio::time::timeout(config.body_timeout, read).await {
        Ok(result) => result,
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "BAD_REQUEST",
            &format!("The request body did not arrive within {} s", config.body_timeout.as_secs_f64()),
        )),
    }
}

/// One line per request: peer, method, path, status, images, time, and the model version.
async fn log_access(ConnectInfo(peer): ConnectInfo<SocketAddr>, request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    let millis = started.elapsed().as_secs_f64() * 1e3;
    let rows = response.extensions().get::<Rows>().map_or(0, |r| r.0);
    let version = response.headers().get(MODEL_VERSION_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("-");
    eprintln!(
        "access: {peer} \"{method} {path}\" {} rows={rows} ms={millis:.3} model_version={version}",
        response.status().as_u16()
    );
    response
}
