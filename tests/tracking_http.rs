//! HTTP failure handling of the MLflow client against small stub endpoints (401, 503, 429, 500,
//! 404 pages) and against addresses where nothing listens. The MLflow behaviour itself is
//! tested against a real server in `tracking_mlflow.rs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::tracking::{
    self, Auth, LocalStore, Metric, MirroredTracker, MlflowClient, RecordStatus, RetryPolicy, RunStatus, Tracker,
    TrackingConfig, TrackingError, util,
};

/// What the stub answers: status, extra headers, body.
type Reply = (u16, Vec<(&'static str, String)>, String);

/// A one-thread HTTP/1.1 endpoint on 127.0.0.1 answering each request with `reply(n, head)`
/// (n = 0-based request count). It stops when dropped, and by itself after 120 s.
struct Stub {
    port: u16,
    hits: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stub {
    fn start(reply: impl Fn(usize, &str) -> Reply + Send + 'static) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, hd, st) = (hits.clone(), heads.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !st.load(Ordering::SeqCst) && Instant::now() < deadline {
                let (stream, _) = match listener.accept() {
                    Ok(s) => s,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                let mut content_length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        content_length = v.trim().parse().unwrap_or(0);
                    }
                    let end = line == "\r\n";
                    head.push_str(&line);
                    if end {
                        break;
                    }
                }
                let mut body = vec![0u8; content_length];
                let _ = reader.read_exact(&mut body);
                let n = h.fetch_add(1, Ordering::SeqCst);
                hd.lock().unwrap().push(head.clone());
                let (status, headers, text) = reply(n, &head);
                let mut resp =
                    format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", text.len());
                for (k, v) in headers {
                    resp.push_str(&format!("{k}: {v}\r\n"));
                }
                resp.push_str("\r\n");
                resp.push_str(&text);
                let mut stream = reader.into_inner();
                let _ = stream.write_all(resp.as_bytes());
                let _ = stream.flush();
            }
        });
        Stub { port, hits, heads, stop, thread: Some(thread) }
    }

    fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn json_reply(status: u16, body: &str) -> Reply {
    (status, vec![("Content-Type", "application/json".to_string())], body.to_string())
}

fn fast_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        backoff_factor: 0.02,
        backoff_max: Duration::from_millis(200),
        timeout: Duration::from_secs(10),
        ..RetryPolicy::default()
    }
}

fn client(uri: &str, auth: Auth, retry: RetryPolicy) -> MlflowClient {
    MlflowClient::new(uri, auth, retry).unwrap()
}

const EXPERIMENT: &str = r#"{"experiment":{"experiment_id":"7","name":"x","lifecycle_stage":"active"}}"#;

#[test]
fn unauthorized_is_reported_once_without_secrets() {
    let stub = Stub::start(|_, _| {
        (
            401,
            vec![("WWW-Authenticate", r#"Basic realm="mlflow""#.to_string())],
            "You are not authenticated. Please see documentation for details.".to_string(),
        )
    });
    let c = client(&stub.uri(), Auth::Basic { username: "alice".into(), password: "hunter2".into() }, fast_retries(4));
    let err = c.get_or_create_experiment("fashion-mnist").unwrap_err();
    assert_eq!(err.http_status(), Some(401));
    let msg = err.to_string();
    assert!(msg.contains("401"), "{msg}");
    assert!(msg.contains("not authenticated"), "{msg}");
    assert!(msg.contains("MLFLOW_TRACKING_USERNAME"), "{msg}");
    assert!(!msg.contains("hunter2") && !format!("{err:?}").contains("hunter2"));
    assert!(!format!("{c:?}").contains("hunter2"));
    assert_eq!(stub.hits(), 1, "401 must not be retried");
    let head = stub.heads.lock().unwrap()[0].clone();
    assert!(head.contains("Basic YWxpY2U6aHVudGVyMg=="), "credentials not sent: {head}");
    assert!(head.contains("experiment_name=fashion-mnist"), "{head}");

    // A bearer token goes out as such.
    let c = client(&stub.uri(), Auth::Bearer("tok-9".into()), fast_retries(0));
    assert!(c.get_run("r").is_err());
    assert!(stub.heads.lock().unwrap()[1].contains("Bearer tok-9"));
}

#[test]
fn service_unavailable_is_retried_until_it_answers() {
    let stub = Stub::start(|n, _| if n < 3 { json_reply(503, "") } else { json_reply(200, EXPERIMENT) });
    let c = client(&stub.uri(), Auth::None, fast_retries(5));
    assert_eq!(c.get_or_create_experiment("x").unwrap(), "7");
    assert_eq!(stub.hits(), 4);
}

#[test]
fn persistent_5xx_gives_up_after_bounded_retries() {
    let stub = Stub::start(|_, _| {
        json_reply(503, r#"{"error_code":"TEMPORARILY_UNAVAILABLE","message":"database is locked"}"#)
    });
    let c = client(&stub.uri(), Auth::None, fast_retries(3));
    let t = Instant::now();
    let err = c.get_run("0123").unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(stub.hits(), 4, "1 try + 3 retries");
    assert_eq!(err.error_code(), Some("TEMPORARILY_UNAVAILABLE"));
    let msg = err.to_string();
    for needle in
        ["503", "TEMPORARILY_UNAVAILABLE", "database is locked", "after 4 attempts", "/api/2.0/mlflow/runs/get"]
    {
        assert!(msg.contains(needle), "{needle:?} not in {msg}");
    }
    assert!(err.is_server_unavailable());
}

#[test]
fn creates_are_not_retried_on_5xx_but_writes_are() {
    let stub = Stub::start(|_, head| {
        if head.starts_with("POST /api/2.0/mlflow/runs/create") {
            json_reply(500, r#"{"error_code":"INTERNAL_ERROR","message":"boom"}"#)
        } else {
            json_reply(502, "")
        }
    });
    let c = client(&stub.uri(), Auth::None, fast_retries(2));
    let err = c.create_run("1", "n", 0, "u", &[]).unwrap_err();
    assert_eq!(err.error_code(), Some("INTERNAL_ERROR"));
    assert!(err.to_string().contains("boom"));
    assert_eq!(stub.hits(), 1, "a create may have happened: not repeated on 5xx");
    let err = c.log_batch("r", &[Metric::new("m", 1.0, 0)], &[], &[]).unwrap_err();
    assert_eq!(err.http_status(), Some(502));
    assert!(err.to_string().contains("Bad Gateway"), "{err}");
    assert_eq!(stub.hits(), 4, "log-batch is idempotent: 1 + 2 retries");
}

#[test]
fn too_many_requests_honours_retry_after() {
    let stub = Stub::start(|n, _| {
        if n == 0 { (429, vec![("Retry-After", "1".to_string())], String::new()) } else { json_reply(200, EXPERIMENT) }
    });
    let mut retry = fast_retries(2);
    retry.backoff_max = Duration::from_secs(5);
    let c = client(&stub.uri(), Auth::None, retry);
    let t = Instant::now();
    c.get_experiment("7").unwrap();
    assert!(t.elapsed() >= Duration::from_millis(950), "{:?}", t.elapsed());
    assert_eq!(stub.hits(), 2);
}

#[test]
fn non_mlflow_pages_give_clear_errors() {
    let stub = Stub::start(|_, _| {
        (
            404,
            vec![("Content-Type", "text/html".to_string())],
            "<!doctype html><title>404 Not Found</title>".to_string(),
        )
    });
    let c = client(&format!("{}/not-mlflow", stub.uri()), Auth::None, fast_retries(2));
    let err = c.get_run("abc").unwrap_err();
    assert_eq!(err.http_status(), Some(404));
    assert!(err.to_string().contains("Not Found"), "{err}");
    assert_eq!(stub.hits(), 1);

    let ok_but_html = Stub::start(|_, _| (200, vec![], "<html>hello</html>".to_string()));
    let c = client(&ok_but_html.uri(), Auth::None, fast_retries(0));
    let err = c.get_run("abc").unwrap_err();
    assert!(matches!(err, TrackingError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("not JSON"), "{err}");
}

/// A port on 127.0.0.1 where nothing listens.
fn dead_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn refused_connection_is_bounded_and_clear() {
    let uri = format!("http://127.0.0.1:{}", dead_port());
    let c = client(&uri, Auth::None, fast_retries(3));
    let t = Instant::now();
    let err = c.get_or_create_experiment("x").unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    match &err {
        TrackingError::Unreachable { attempts, detail, .. } => {
            assert_eq!(*attempts, 4);
            assert!(detail.contains("refused"), "{detail}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&uri) && msg.contains("after 4 attempts"), "{msg}");
    // creates are retried on connection errors too (nothing reached the server)
    let err = c.create_run("1", "n", 0, "u", &[]).unwrap_err();
    assert!(matches!(err, TrackingError::Unreachable { attempts: 4, .. }), "{err:?}");
}

#[test]
fn wrong_uris_are_rejected_or_fail_cleanly() {
    for bad in ["sqlite:///mlflow.db", "file:./mlruns", "127.0.0.1:5000", "http://"] {
        let cfg = TrackingConfig {
            tracking_uri: Some(bad.into()),
            ..TrackingConfig::local("/tmp/engine-tracking-unused", "x")
        };
        match tracking::open(&cfg) {
            Err(TrackingError::Config(msg)) => assert!(msg.contains("tracking URI"), "{msg}"),
            Err(e) => panic!("{bad}: unexpected error {e:?}"),
            Ok(_) => panic!("{bad}: accepted"),
        }
    }
    let retry = RetryPolicy { timeout: Duration::from_secs(5), ..fast_retries(2) };
    let c = client("http://no-such-host.invalid:5000", Auth::None, retry);
    let t = Instant::now();
    let err = c.get_experiment_by_name("x").unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(30));
    assert!(matches!(err, TrackingError::Unreachable { .. }), "{err:?}");
}

#[test]
fn mirrored_tracker_keeps_training_when_server_is_down() {
    let root: PathBuf =
        std::env::temp_dir().join(format!("engine-tracking-down-{}-{}", std::process::id(), util::new_run_id()));
    let uri = format!("http://127.0.0.1:{}", dead_port());
    let cfg = TrackingConfig {
        tracking_uri: Some(uri.clone()),
        experiment: "offline".into(),
        run_name: Some("offline-run".into()),
        local_root: root.clone(),
    };
    let c = client(&uri, Auth::None, fast_retries(1));
    let mut t = MirroredTracker::new(cfg.clone(), c).unwrap();
    let id = t.start_run(&[("lr".into(), "0.1".into())], &[]).unwrap();
    assert!(util::is_run_id(&id));
    assert!(!t.is_server_live());
    let started = Instant::now();
    for step in 0..20 {
        t.log_metrics(&[Metric::new("loss", 1.0 / (step + 1) as f64, step)]).unwrap();
    }
    // once given up on, the server costs nothing more
    assert!(started.elapsed() < Duration::from_secs(1));
    t.end_run(RunStatus::Finished).unwrap();
    assert!(t.describe().contains("unsynced"), "{}", t.describe());
    assert!(t.last_server_error().unwrap().contains("refused"));
    let r = LocalStore::open(&root).unwrap().load_run(&id).unwrap();
    assert_eq!(r.status, RecordStatus::Finished);
    assert_eq!(r.metrics.len(), 20);
    assert_eq!(r.params["lr"], "0.1");
    assert_eq!(r.sync_state(), "unsynced");
    assert_eq!(r.tracking_uri.as_deref(), Some(uri.as_str()));
    assert!(r.remotes.is_empty());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn mirrored_tracker_keeps_training_when_credentials_are_refused() {
    let stub = Stub::start(|_, _| (401, vec![], "Unauthorized".to_string()));
    let root: PathBuf =
        std::env::temp_dir().join(format!("engine-tracking-401-{}-{}", std::process::id(), util::new_run_id()));
    let cfg = TrackingConfig {
        tracking_uri: Some(stub.uri()),
        experiment: "auth".into(),
        run_name: None,
        local_root: root.clone(),
    };
    let c =
        client(&stub.uri(), Auth::Basic { username: "u".into(), password: "wrong-password".into() }, fast_retries(3));
    let mut t = MirroredTracker::new(cfg, c).unwrap();
    let id = t.start_run(&[], &[]).unwrap();
    assert_eq!(stub.hits(), 1, "no retries on 401");
    t.log_metrics(&[Metric::new("loss", 1.0, 0)]).unwrap();
    t.end_run(RunStatus::Finished).unwrap();
    let err = t.last_server_error().unwrap();
    assert!(err.contains("401") && !err.contains("wrong-password"), "{err}");
    assert_eq!(stub.hits(), 1, "nothing more sent to a server that refused us");
    let r = LocalStore::open(&root).unwrap().load_run(&id).unwrap();
    assert_eq!(r.status, RecordStatus::Finished);
    assert_eq!(r.sync_state(), "unsynced");
    let _ = std::fs::remove_dir_all(&root);
}
