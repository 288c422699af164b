//! Running `engine serve` from tests: the real binary on a free port (`--port 0`, the address
//! read from its log), its stderr kept for assertions, killed when dropped; and a small client.
//!
//! ```ignore
//! #[path = "common/serve.rs"]
//! mod serve;
//! ```
#![allow(dead_code)] // each test binary uses a different part

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `engine serve`.
pub struct EngineServer {
    child: Child,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl EngineServer {
    /// `engine serve --port 0 ARGS` with `store` as the local store and `tracking_uri` as the
    /// MLflow server; waits until it listens (panics with its log if it exits first).
    pub fn start(args: &[&str], store: &Path, tracking_uri: Option<&str>) -> EngineServer {
        let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
        command.args(["serve", "--port", "0"]).args(args).env("ENGINE_LOCAL_STORE", store);
        command.env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1").env("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0.1");
        match tracking_uri {
            Some(uri) => command.env("MLFLOW_TRACKING_URI", uri),
            None => command.env_remove("MLFLOW_TRACKING_URI"),
        };
        let mut child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (listening, port) = mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let port = rest.split([' ', '/']).next().and_then(|a| a.rsplit(':').next()?.parse::<u16>().ok());
                    let _ = listening.send(port);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let mut server = EngineServer { child, port: 0, log };
        match port.recv_timeout(Duration::from_secs(120)) {
            Ok(Some(port)) => server.port = port,
            _ => {
                let _ = server.child.kill();
                let _ = server.child.wait();
                panic!("engine serve did not start:\n{}", server.log_text());
            }
        }
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Everything the server wrote to stderr so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a line of the log contains `text`; the line.
    pub fn wait_for_log(&self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            assert!(Instant::now() < deadline, "no log line with {text:?} after {timeout:?}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("engine serve did not exit within {timeout:?}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for EngineServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer: status, headers we look at, and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub model_version: Option<String>,
    pub run_id: Option<String>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `[N, 10]` probabilities of a 200 answer.
    pub fn probabilities(&self) -> Vec<Vec<f64>> {
        assert_eq!(self.status, 200, "{}", self.body);
        let json = self.json();
        assert_eq!(json.as_object().map(|o| o.len()), Some(1), "{}", self.body);
        let predictions = &json["predictions"];
        assert_eq!(predictions.as_object().map(|o| o.len()), Some(1), "{}", self.body);
        predictions["probabilities"]
            .as_array()
            .unwrap_or_else(|| panic!("no probabilities: {}", self.body))
            .iter()
            .map(|row| row.as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).collect())
            .collect()
    }
}

pub fn client() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn answer(mut response: ureq::http::Response<ureq::Body>) -> Answer {
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from);
    let (content_type, model_version, run_id) =
        (header("content-type"), header("x-model-version"), header("x-model-run-id"));
    let status = response.status().as_u16();
    let body = response.body_mut().with_config().limit(1 << 30).read_to_string().unwrap_or_default();
    Answer { status, content_type, model_version, run_id, body }
}

/// POSTs `body` as `content_type` (none: no Content-Type header).
pub fn post(client: &ureq::Agent, url: &str, content_type: Option<&str>, body: &[u8]) -> Answer {
    let mut request = client.post(url);
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    answer(request.send(body).unwrap_or_else(|e| panic!("POST {url}: {e}")))
}

pub fn post_json(client: &ureq::Agent, url: &str, body: &serde_json::Value) -> Answer {
    post(client, url, Some("application/json"), body.to_string().as_bytes())
}

pub fn get(client: &ureq::Agent, url: &str) -> Answer {
    answer(client.get(url).call().unwrap_or_else(|e| panic!("GET {url}: {e}")))
}

/// The first `n` test images as rows of pixels in [0, 1].
pub fn test_rows(n: usize) -> Vec<Vec<f32>> {
    let test = engine::data::load(None).expect("FashionMNIST is installed").test;
    test.pixels
        .chunks(engine::data::IMAGE_PIXELS)
        .take(n)
        .map(|p| p.iter().map(|&v| f32::from(v) / 255.0).collect())
        .collect()
}

/// The index of each row's largest value.
pub fn argmax(rows: &[Vec<f64>]) -> Vec<usize> {
    rows.iter().map(|r| r.iter().enumerate().fold(0, |best, (i, &p)| if p > r[best] { i } else { best })).collect()
}

/// A row of gray pixels in [0, 1] as a `side`x`side` PNG (bytes rounded back to 0-255).
pub fn png_of(row: &[f32], side: u32) -> Vec<u8> {
    let bytes: Vec<u8> = row.iter().map(|&p| (p * 255.0).round() as u8).collect();
    let image = image::GrayImage::from_raw(side, side, bytes).expect("side * side pixels");
    encode(&image::DynamicImage::ImageLuma8(image), image::ImageFormat::Png)
}

/// `image` encoded as `format`.
pub fn encode(image: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, format).expect("the image encodes");
    out.into_inner()
}

/// A `multipart/form-data` body with one file part per `(field name, content type, bytes)`; its
/// Content-Type.
pub fn multipart(parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "engine-test-boundary-7d3f";
    let mut body = Vec::new();
    for (name, content_type, bytes) in parts {
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n\
             Content-Type: {content_type}\r\n\r\n"
        );
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
