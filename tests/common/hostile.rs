//! A fake MLflow server for tests of what the client does when a server is broken or hostile:
//! answers a real MLflow cannot be made to give (run ids with `..`, artifact listings that
//! leave the listed directory, endless bodies, secrets echoed back).
//!
//! ```ignore
//! #[path = "common/hostile.rs"]
//! mod hostile;
//! let server = hostile::FakeServer::start(|req| match req.path.as_str() {
//!     "/api/2.0/mlflow/runs/get" => hostile::Reply::json(200, r#"{"run": {}}"#),
//!     _ => hostile::Reply::not_found(),
//! });
//! ```
//! Each connection gets its own thread, so a body that never ends does not block other
//! requests. The server counts the requests and the body bytes it managed to send, and stops
//! when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the server read it.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The path without the query string, percent-encoding kept.
    pub path: String,
    /// The query string without `?` ("" when none).
    pub query: String,
    /// The header lines, as sent.
    pub head: String,
    pub body: Vec<u8>,
}

impl Request {
    /// The value of query parameter `key`, percent-decoded.
    pub fn param(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| percent_decode(v))
        })
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the server answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A status, header lines and a body (sent with its Content-Length).
    Body { status: u16, headers: Vec<(&'static str, String)>, body: Vec<u8> },
    /// 200 with a chunked body that never ends (until the client hangs up).
    Endless,
    /// 200 announcing `Content-Length: n`, written lazily (until the client hangs up).
    Huge(u64),
}

impl Reply {
    pub fn json(status: u16, body: impl Into<String>) -> Reply {
        Reply::raw(status, vec![("Content-Type", "application/json".into())], body)
    }
    pub fn bytes(body: Vec<u8>) -> Reply {
        Reply::Body { status: 200, headers: vec![("Content-Type", "application/octet-stream".into())], body }
    }
    /// A status and a text body with exactly these headers (no Content-Type unless given).
    pub fn raw(status: u16, headers: Vec<(&'static str, String)>, body: impl Into<String>) -> Reply {
        Reply::Body { status, headers, body: body.into().into_bytes() }
    }
    /// MLflow's answer for a missing resource.
    pub fn not_found() -> Reply {
        Reply::json(404, r#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "not here"}"#)
    }
}

/// The fake server. Dropping it stops it.
pub struct FakeServer {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    body_bytes_sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Route = dyn Fn(&Request) -> Reply + Send + Sync;

impl FakeServer {
    /// Starts a server on 127.0.0.1 answering each request with `route(request)`. It stops when
    /// dropped, and by itself after 10 minutes.
    pub fn start(route: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let port = listener.local_addr().expect("the port").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let body_bytes_sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let route: Arc<Route> = Arc::new(route);
        let (reqs, sent, st) = (requests.clone(), body_bytes_sent.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(600);
            while !st.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (route, reqs, sent, st) = (route.clone(), reqs.clone(), sent.clone(), st.clone());
                        std::thread::spawn(move || serve(stream, &*route, &reqs, &sent, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        FakeServer { port, requests, body_bytes_sent, stop, thread: Some(thread) }
    }

    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// How many requests came.
    pub fn hits(&self) -> usize {
        self.requests.lock().map(|r| r.len()).unwrap_or_default()
    }

    /// How many requests went to `path`.
    pub fn count(&self, path: &str) -> usize {
        self.requests().iter().filter(|r| r.path == path).count()
    }

    /// Bytes of response bodies written to the clients so far.
    pub fn body_bytes_sent(&self) -> u64 {
        self.body_bytes_sent.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request; `None` at the end of the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut first = String::new();
    if reader.read_line(&mut first).ok()? == 0 {
        return None;
    }
    let mut parts = first.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    let mut head = String::new();
    let mut content_length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
    }
    let mut body = vec![0u8; content_length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { method, path, query, head, body })
}

fn serve(stream: TcpStream, route: &Route, reqs: &Mutex<Vec<Request>>, sent: &AtomicU64, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let Ok(write_half) = stream.try_clone() else { return };
    let mut out = write_half;
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader) {
        let reply = route(&req);
        if let Ok(mut r) = reqs.lock() {
            r.push(req);
        }
        let ok = match reply {
            Reply::Body { status, headers, body } => {
                let headers: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
                let head = format!("HTTP/1.1 {status} Fake\r\n{headers}Content-Length: {}\r\n\r\n", body.len());
                // One write: a head and body in two small packets would wait on delayed ACKs.
                let ok = out.write_all(&[head.as_bytes(), &body].concat()).is_ok();
                if ok {
                    sent.fetch_add(body.len() as u64, Ordering::SeqCst);
                }
                ok
            }
            Reply::Endless => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                let chunk = vec![b' '; 64 << 10];
                let frame = [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk, b"\r\n".to_vec()].concat();
                let mut ok = out.write_all(head.as_bytes()).is_ok();
                while ok && !stop.load(Ordering::SeqCst) {
                    ok = out.write_all(&frame).is_ok();
                    if ok {
                        sent.fetch_add(64 << 10, Ordering::SeqCst);
                    }
                }
                false
            }
            Reply::Huge(n) => {
                let head =
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\n\r\n");
                let chunk = vec![b'x'; 64 << 10];
                let mut left = n;
                let mut ok = out.write_all(head.as_bytes()).is_ok();
                while ok && left > 0 && !stop.load(Ordering::SeqCst) {
                    let k = left.min(chunk.len() as u64) as usize;
                    ok = out.write_all(&chunk[..k]).is_ok();
                    if ok {
                        sent.fetch_add(k as u64, Ordering::SeqCst);
                        left -= k as u64;
                    }
                }
                ok
            }
        };
        if !ok {
            return;
        }
    }
}

/// A run as `runs/get` answers it.
pub fn run_json(run_id: &str, experiment_id: &str, artifact_uri: &str) -> String {
    serde_json::json!({"run": {
        "info": {
            "run_id": run_id, "run_uuid": run_id, "experiment_id": experiment_id, "run_name": "hostile",
            "status": "FINISHED", "start_time": 1, "end_time": 2, "artifact_uri": artifact_uri,
            "lifecycle_stage": "active", "user_id": "someone",
        },
        "data": {"metrics": [], "params": [], "tags": []},
        "inputs": {}, "outputs": {},
    }})
    .to_string()
}

/// An experiment as `experiments/get` and `experiments/get-by-name` answer it.
pub fn experiment_json(experiment_id: &str, name: &str) -> String {
    serde_json::json!({"experiment": {
        "experiment_id": experiment_id, "name": name, "artifact_location": format!("mlflow-artifacts:/{experiment_id}"),
        "lifecycle_stage": "active",
    }})
    .to_string()
}

/// The files under `root`, relative to it, sorted (none when it does not exist).
pub fn files_under(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap_or(&p).display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The outcome of a command run with a deadline.
pub struct Finished {
    pub output: std::process::Output,
    pub elapsed: Duration,
    /// It was still running at the deadline and was killed.
    pub killed: bool,
    /// The largest resident set the process reached (Linux `VmHWM`), when it could be read.
    pub peak_rss_bytes: Option<u64>,
}

/// A process past this much memory is killed by [`run_bounded`]: it would only grow further.
pub const KILL_ABOVE_RSS_BYTES: u64 = 2 << 30;

/// Runs `command` to completion or until `deadline` (then kills it), sampling its peak memory;
/// one that grows past [`KILL_ABOVE_RSS_BYTES`] is killed too, to spare the machine.
pub fn run_bounded(command: &mut std::process::Command, deadline: Duration) -> Finished {
    use std::process::Stdio;
    let start = Instant::now();
    let mut child =
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the command starts");
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak: Option<u64> = None;
    let mut killed = false;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = Some(peak.unwrap_or(0).max(kb * 1024));
        }
        let too_big = peak.is_some_and(|p| p > KILL_ABOVE_RSS_BYTES);
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if too_big || start.elapsed() > deadline => {
                killed = true;
                let _ = child.kill();
                break child.wait().expect("the killed child is reaped");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for the command: {e}"),
        }
    };
    let output = std::process::Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    };
    Finished { output, elapsed: start.elapsed(), killed, peak_rss_bytes: peak }
}
