//! HTTP failure handling of the MLflow client against small stub endpoints (401, 503, 429, 500,
//! 404 pages) and against addresses where nothing listens. The MLflow behaviour itself is
//! tested against a real server in `tracking_mlflow.rs`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use engine::tracking::{
    self, Auth, LocalStore, Metric, MirroredTracker, MlflowClient, RecordStatus, RetryPolicy, RunStatus, Tracker,
    TrackingConfig, TrackingError, util,
};

#[path = "common/hostile.rs"]
mod hostile;

use hostile::{FakeServer, Reply, Request};

/// A fake server answering each request with `reply(n, request)` (n = 0-based request count).
fn stub_server(reply: impl Fn(usize, &Request) -> Reply + Send + Sync + 'static) -> FakeServer {
    let count = AtomicUsize::new(0);
    FakeServer::start(move |req| reply(count.fetch_add(1, Ordering::SeqCst), req))
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
    let stub = stub_server(|_, _| {
        Reply::raw(
            401,
            vec![("WWW-Authenticate", r#"Basic realm="mlflow""#.to_string())],
            "You are not authenticated. Please see documentation for details.",
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
    let first = &stub.requests()[0];
    assert!(first.head.contains("Basic YWxpY2U6aHVudGVyMg=="), "credentials not sent: {}", first.head);
    assert!(first.query.contains("experiment_name=fashion-mnist"), "{}", first.query);

    // A bearer token goes out as such.
    let c = client(&stub.uri(), Auth::Bearer("tok-9".into()), fast_retries(0));
    assert!(c.get_run("r").is_err());
    assert!(stub.requests()[1].head.contains("Bearer tok-9"));
}

#[test]
fn service_unavailable_is_retried_until_it_answers() {
    let stub = stub_server(|n, _| if n < 3 { Reply::json(503, "") } else { Reply::json(200, EXPERIMENT) });
    let c = client(&stub.uri(), Auth::None, fast_retries(5));
    assert_eq!(c.get_or_create_experiment("x").unwrap(), "7");
    assert_eq!(stub.hits(), 4);
}

#[test]
fn persistent_5xx_gives_up_after_bounded_retries() {
    let stub = stub_server(|_, _| {
        Reply::json(503, r#"{"error_code":"TEMPORARILY_UNAVAILABLE","message":"database is locked"}"#)
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
    let stub = stub_server(|_, req| {
        if req.method == "POST" && req.path == "/api/2.0/mlflow/runs/create" {
            Reply::json(500, r#"{"error_code":"INTERNAL_ERROR","message":"boom"}"#)
        } else {
            Reply::json(502, "")
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
    let stub = stub_server(|n, _| {
        if n == 0 { Reply::raw(429, vec![("Retry-After", "1".to_string())], "") } else { Reply::json(200, EXPERIMENT) }
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
    let stub = stub_server(|_, _| {
        Reply::raw(404, vec![("Content-Type", "text/html".to_string())], "<!doctype html><title>404 Not Found</title>")
    });
    let c = client(&format!("{}/not-mlflow", stub.uri()), Auth::None, fast_retries(2));
    let err = c.get_run("abc").unwrap_err();
    assert_eq!(err.http_status(), Some(404));
    assert!(err.to_string().contains("Not Found"), "{err}");
    assert_eq!(stub.hits(), 1);

    let ok_but_html = stub_server(|_, _| Reply::raw(200, vec![], "<html>hello</html>"));
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
    let stub = stub_server(|_, _| Reply::raw(401, vec![], "Unauthorized"));
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
