//! The `engine` binary against broken or hostile MLflow servers: names that would leave their
//! directory, artifact listings that never end, bodies too large to keep, and credentials that
//! must never be printed. Answers a real MLflow cannot give come from the fake server in
//! `common/hostile.rs`; the size cap on model files is also checked against a real server.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/hostile.rs"]
mod hostile;
#[path = "common/mlflow.rs"]
mod mlflow;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use engine::tracking::{
    Auth, LocalTracker, MAX_ARTIFACT_DEPTH, MAX_RESPONSE_BYTES, MlflowClient, RetryPolicy, RunStatus, Tracker,
    TrackingConfig, TrackingError,
};
use hostile::{FakeServer, Finished, Reply, Request, experiment_json, files_under, run_bounded, run_json};

/// Every command here must end well within this; the broken behaviours ran until killed.
const DEADLINE: Duration = Duration::from_secs(90);
/// A run id of MLflow's shape.
const RUN_ID: &str = "0123456789abcdef0123456789abcdef";
const API: &str = "/api/2.0/mlflow";

/// `engine ARGS` in `cwd`, in the clean test environment.
fn engine_in(cwd: &Path, args: &[&str], store: &Path, uri: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    command.args(args).current_dir(cwd);
    cli::clean_env(&mut command, store, uri);
    command
}

fn text(f: &Finished) -> String {
    cli::text(&f.output)
}

/// The command ended by itself, failed, and said `needles` (each, case-insensitively).
fn assert_failed_saying(f: &Finished, needles: &[&str]) {
    let all = text(f);
    eprintln!("--- after {:?}:\n{all}", f.elapsed);
    assert!(!f.killed, "still running after {:?} (killed):\n{all}", f.elapsed);
    assert!(!f.output.status.success(), "succeeded:\n{all}");
    for n in needles {
        assert!(all.to_lowercase().contains(&n.to_lowercase()), "no {n:?} in:\n{all}");
    }
}

/// A scratch directory with a working directory nested three levels down, so `../../..` from
/// `work/runs` stays inside the scratch directory where the test can look for it.
fn nested_work(name: &str) -> (PathBuf, PathBuf) {
    let scratch = cli::empty_dir(name);
    let work = scratch.join("a").join("b").join("work");
    std::fs::create_dir_all(&work).unwrap();
    (scratch, work)
}

/// Files under `scratch` outside the places a command may write (`allowed`, relative to it).
fn strays(scratch: &Path, allowed: &[&str]) -> Vec<String> {
    files_under(scratch).into_iter().filter(|f| !allowed.iter().any(|a| f.starts_with(a))).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Paths from names a server or user chose stay under their root.

/// A server that has the run, but names it `run_id`.
fn server_naming_the_run(run_id: String) -> FakeServer {
    FakeServer::start(move |req: &Request| match req.path.strip_prefix(API).unwrap_or(&req.path) {
        "/runs/get" => Reply::json(200, run_json(&run_id, "1", "mlflow-artifacts:/1/r/artifacts")),
        "/experiments/get" | "/experiments/get-by-name" => Reply::json(200, experiment_json("1", "hostile")),
        "/runs/search" => Reply::json(200, r#"{"runs": []}"#),
        _ => Reply::not_found(),
    })
}

#[test]
fn analyze_never_writes_outside_runs_for_a_server_run_id() {
    let (scratch, work) = nested_work("hostile-analyze-path");
    let absolute = scratch.join("absolute-target");
    for run_id in ["../../../escaped".to_string(), absolute.display().to_string(), "..".to_string()] {
        let server = server_naming_the_run(run_id.clone());
        let store = scratch.join("a/b/work/store");
        let f = run_bounded(&mut engine_in(&work, &["runs", "analyze", RUN_ID], &store, Some(&server.uri())), DEADLINE);
        assert_failed_saying(&f, &["refusing the path", "--output-dir"]);
        assert_eq!(strays(&scratch, &["a/b/work/runs/", "a/b/work/store/"]), Vec::<String>::new(), "{run_id}");
        assert!(files_under(&work.join("runs")).is_empty(), "{run_id}: {:?}", files_under(&work.join("runs")));
        assert_eq!(server.count("/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/analysis.md"), 0);
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

/// A server holding one run whose model is the directory `model_dir`, and whose artifact URI
/// is `artifact_uri`.
fn server_with_model(run_id: &str, artifact_uri: &str, model_dir: PathBuf) -> FakeServer {
    let (run_id, artifact_uri) = (run_id.to_string(), artifact_uri.to_string());
    FakeServer::start(move |req: &Request| {
        let path = req.path.as_str();
        if let Some(file) = path.strip_prefix("/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/model/") {
            return match std::fs::read(model_dir.join(file)) {
                Ok(bytes) => Reply::bytes(bytes),
                Err(_) => Reply::not_found(),
            };
        }
        match path.strip_prefix(API).unwrap_or(path) {
            "/runs/get" => Reply::json(200, run_json(&run_id, "1", &artifact_uri)),
            "/logged-models/search" => Reply::json(200, r#"{"models": []}"#),
            _ => Reply::not_found(),
        }
    })
}

#[test]
fn eval_never_writes_outside_runs_for_a_server_run_id() {
    let (scratch, work) = nested_work("hostile-eval-path");
    // A real model, so that nothing but the output directory can stop the evaluation.
    let trained = scratch.join("trained");
    cli::train_tiny(&trained, &scratch.join("train-store"), None);
    let absolute = scratch.join("absolute-target");
    for run_id in ["..".to_string(), "../../../escaped".to_string(), absolute.display().to_string()] {
        // The model claims the run too, as a model logged by that run would.
        let model = scratch.join("served-model");
        let _ = std::fs::remove_dir_all(&model);
        std::fs::create_dir_all(&model).unwrap();
        for f in ["model.safetensors", "MLmodel"] {
            std::fs::copy(trained.join("model").join(f), model.join(f)).unwrap();
        }
        let metadata = std::fs::read(trained.join("model/engine_model.json")).unwrap();
        let mut meta: serde_json::Value = serde_json::from_slice(&metadata).unwrap();
        meta["run_id"] = run_id.clone().into();
        std::fs::write(model.join("engine_model.json"), serde_json::to_vec_pretty(&meta).unwrap()).unwrap();

        let server = server_with_model(&run_id, "mlflow-artifacts:/1/r/artifacts", model);
        let store = work.join("store");
        let args = ["eval", "--run-id", RUN_ID, "--device", "cpu"];
        let f = run_bounded(&mut engine_in(&work, &args, &store, Some(&server.uri())), DEADLINE);
        assert_failed_saying(&f, &["refusing the path", "--output-dir"]);
        let allowed = ["trained/", "train-store/", "served-model/", "a/b/work/runs/", "a/b/work/store/"];
        assert_eq!(strays(&scratch, &allowed), Vec::<String>::new(), "{run_id}");
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn artifact_uris_and_download_paths_that_leave_their_root_are_refused() {
    let dir = cli::empty_dir("hostile-download-path");
    let server = FakeServer::start(|_| Reply::bytes(b"data".to_vec()));
    let client = MlflowClient::new(&server.uri(), Auth::None, RetryPolicy::no_retries()).unwrap();
    let root = dir.join("root");
    for rel in ["../escaped", "/tmp/escaped", "a/../../escaped", "a\\..\\..\\escaped", ""] {
        let err = client.download_artifact_to("mlflow-artifacts:/1/r/artifacts", rel, &root, 1 << 20).unwrap_err();
        assert!(matches!(err, TrackingError::UnsafePath { .. }), "{rel:?}: {err}");
    }
    for uri in ["mlflow-artifacts:/1/../../../etc", "mlflow-artifacts://host/1/r/../../x", "mlflow-artifacts:/1//r"] {
        assert!(client.download_artifact_to(uri, "f", &root, 1 << 20).is_err(), "{uri}");
        assert!(client.upload_artifact_bytes(uri, "f", b"x").is_err(), "{uri}");
    }
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert_eq!(files_under(&dir), Vec::<String>::new());
    let written =
        client.download_artifact_to("mlflow-artifacts:/1/r/artifacts", "model/f.bin", &root, 1 << 20).unwrap();
    assert_eq!(written, root.join("model/f.bin"));
    assert_eq!(std::fs::read(&written).unwrap(), b"data");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn server_ids_in_request_paths_cannot_add_segments() {
    let server = FakeServer::start(|_| Reply::not_found());
    let client = MlflowClient::new(&server.uri(), Auth::None, RetryPolicy::no_retries()).unwrap();
    assert!(client.get_logged_model("../../../runs/delete").is_err());
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/api/2.0/mlflow/logged-models/..%2F..%2F..%2Fruns%2Fdelete"]);
}

/// A finished local run with one artifact, `plots/a.txt`; its id.
fn local_run(store: &Path) -> String {
    let dir = store.parent().unwrap_or(store).join("artifact-source");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.txt"), b"hello").unwrap();
    let mut tracker = LocalTracker::new(TrackingConfig::local(store, "hostile")).unwrap();
    let id = tracker.start_run(&[], &[]).unwrap();
    tracker.log_artifact(&dir.join("a.txt"), "plots").unwrap();
    tracker.end_run(RunStatus::Finished).unwrap();
    id
}

/// The server's id for the local run in [`sync_server`].
const SERVER_RUN_ID: &str = "feedfacefeedfacefeedfacefeedface";

/// A server that already holds the local run (found by its tag, as `engine sync` looks for it),
/// with the given artifact URI, answering artifact listings with `listing(dir)` and accepting
/// every write.
fn sync_server(artifact_uri: String, listing: impl Fn(&str) -> String + Send + Sync + 'static) -> FakeServer {
    let run = run_json(SERVER_RUN_ID, "1", &artifact_uri);
    let found = serde_json::json!({"runs": [serde_json::from_str::<serde_json::Value>(&run).unwrap()["run"]]});
    FakeServer::start(move |req: &Request| match req.path.strip_prefix(API).unwrap_or(&req.path) {
        "/experiments/get-by-name" => Reply::json(200, experiment_json("1", "hostile")),
        "/runs/get" if req.param("run_id").as_deref() == Some(SERVER_RUN_ID) => Reply::json(200, run.clone()),
        "/runs/get" => Reply::not_found(),
        "/runs/search" => Reply::json(200, found.to_string()),
        "/artifacts/list" => Reply::json(200, listing(&req.param("path").unwrap_or_default())),
        _ => Reply::json(200, "{}"),
    })
}

#[test]
fn sync_refuses_a_server_artifact_uri_that_leaves_the_run() {
    let dir = cli::empty_dir("hostile-sync-uri");
    let store = dir.join("store");
    local_run(&store);
    let server = sync_server("mlflow-artifacts:/1/../../../elsewhere/artifacts".into(), |_| r#"{"files": []}"#.into());
    let f = run_bounded(&mut engine_in(&dir, &["sync"], &store, Some(&server.uri())), DEADLINE);
    assert_failed_saying(&f, &["artifact URI", "`..`"]);
    let puts: Vec<String> = server.requests().into_iter().filter(|r| r.method == "PUT").map(|r| r.path).collect();
    assert!(puts.is_empty(), "uploaded to {puts:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// 2. Artifact listings are checked and the walk is bounded.

fn files(entries: &[(&str, bool)]) -> String {
    let files: Vec<serde_json::Value> =
        entries.iter().map(|(p, d)| serde_json::json!({"path": p, "is_dir": d, "file_size": 5})).collect();
    serde_json::json!({ "files": files }).to_string()
}

#[test]
fn sync_stops_on_artifact_listings_outside_the_listed_directory() {
    type Listing = fn(&str) -> String;
    let cases: [(&str, Listing); 6] = [
        ("parent", |_| files(&[("..", true)])),
        ("sibling", |d| match d {
            "" => files(&[("a", true)]),
            "a" => files(&[("b", true)]),
            _ => files(&[("a", true)]),
        }),
        ("itself", |d| match d {
            "" => files(&[("a", true)]),
            _ => files(&[(d, true), (&format!("{d}/f"), false)]),
        }),
        ("absolute", |_| files(&[("/etc", true)])),
        ("dot segments", |d| if d.is_empty() { files(&[("a/./a", true)]) } else { files(&[]) }),
        ("endless nesting", |d| {
            let child = if d.is_empty() { "d".to_string() } else { format!("{d}/d") };
            files(&[(&child, true)])
        }),
    ];
    for (name, listing) in cases {
        let dir = cli::empty_dir(&format!("hostile-sync-list-{}", name.replace(' ', "-")));
        let store = dir.join("store");
        let id = local_run(&store);
        let server = sync_server(format!("mlflow-artifacts:/1/{id}/artifacts"), listing);
        let f = run_bounded(&mut engine_in(&dir, &["sync"], &store, Some(&server.uri())), DEADLINE);
        assert_failed_saying(&f, &["artifacts/list", "refused the server's answer", "could not be synced"]);
        let lists = server.count("/api/2.0/mlflow/artifacts/list");
        assert!(lists <= MAX_ARTIFACT_DEPTH + 1, "{name}: {lists} listings");
        assert!(f.elapsed < Duration::from_secs(30), "{name}: took {:?}", f.elapsed);
        // The run stays unsynced, so a later sync against a sane server sends it.
        let list = cli::engine(&["runs", "list"], &store, None);
        assert!(cli::stdout(&list).contains("unsynced"), "{name}: {}", cli::stdout(&list));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Response sizes are capped.

/// `runs analyze` against a server whose `runs/get` answers `reply`.
fn analyze_against(name: &str, reply: Reply) -> (Finished, u64) {
    let dir = cli::empty_dir(name);
    let server =
        FakeServer::start(
            move |req: &Request| {
                if req.path == "/api/2.0/mlflow/runs/get" { reply.clone() } else { Reply::not_found() }
            },
        );
    let f = run_bounded(
        &mut engine_in(&dir, &["runs", "analyze", RUN_ID], &dir.join("store"), Some(&server.uri())),
        DEADLINE,
    );
    let sent = server.body_bytes_sent();
    drop(server);
    assert!(files_under(&dir.join("runs")).is_empty());
    let _ = std::fs::remove_dir_all(&dir);
    (f, sent)
}

#[test]
fn an_endless_json_answer_is_refused_at_the_cap() {
    let (f, sent) = analyze_against("hostile-endless-json", Reply::Endless);
    assert_failed_saying(&f, &["GET /api/2.0/mlflow/runs/get", "larger than 64 MiB"]);
    // The client stopped reading at the cap (plus what the sockets buffer).
    assert!(sent < MAX_RESPONSE_BYTES + (32 << 20), "the server sent {sent} bytes");
    if let Some(peak) = f.peak_rss_bytes {
        assert!(peak < 512 << 20, "peak memory {} MiB", peak >> 20);
    }
}

#[test]
fn a_huge_announced_json_answer_is_refused_before_reading() {
    let (f, sent) = analyze_against("hostile-huge-json", Reply::Huge(10 << 30));
    assert_failed_saying(&f, &["GET /api/2.0/mlflow/runs/get", "larger than 64 MiB", "10737418240 bytes"]);
    assert!(sent < 32 << 20, "the server sent {sent} bytes");
    if let Some(peak) = f.peak_rss_bytes {
        assert!(peak < 512 << 20, "peak memory {} MiB", peak >> 20);
    }
}

#[test]
fn model_downloads_are_refused_past_what_a_model_file_can_hold() {
    let (scratch, work) = nested_work("hostile-model-size");
    let trained = scratch.join("trained");
    cli::train_tiny(&trained, &scratch.join("train-store"), None);
    let weights = std::fs::read(trained.join("model/model.safetensors")).unwrap();
    let cases = [
        ("model.safetensors", Reply::Huge(10 << 30), "larger than 1 GiB"),
        ("engine_model.json", Reply::Endless, "larger than 1 MiB"),
    ];
    for (hostile_file, reply, says) in cases {
        let weights = weights.clone();
        let server = FakeServer::start(move |req: &Request| {
            let path = req.path.as_str();
            match path.rsplit('/').next().unwrap_or_default() {
                f if f == hostile_file => reply.clone(),
                "model.safetensors" => Reply::bytes(weights.clone()),
                "get" if path.ends_with("/runs/get") => {
                    Reply::json(200, run_json(RUN_ID, "1", "mlflow-artifacts:/1/r/artifacts"))
                }
                "search" => Reply::json(200, r#"{"models": []}"#),
                _ => Reply::json(200, "{}"),
            }
        });
        let store = work.join("store");
        let args = ["eval", "--run-id", RUN_ID, "--device", "cpu"];
        let f = run_bounded(&mut engine_in(&work, &args, &store, Some(&server.uri())), DEADLINE);
        let endpoint = format!("GET /api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/model/{hostile_file}");
        assert_failed_saying(&f, &[&endpoint, says]);
        assert!(server.body_bytes_sent() < (1 << 30) / 4, "{hostile_file}: sent {}", server.body_bytes_sent());
        if let Some(peak) = f.peak_rss_bytes {
            assert!(peak < 512 << 20, "{hostile_file}: peak memory {} MiB", peak >> 20);
        }
        // No partial download or half-written output is left behind.
        assert_eq!(strays(&scratch, &["trained/", "train-store/"]), Vec::<String>::new(), "{hostile_file}");
    }
    let _ = std::fs::remove_dir_all(&scratch);
}

#[test]
fn an_oversized_model_file_on_a_real_server_is_refused() {
    let Some(server) = mlflow::shared() else { return };
    let client = MlflowClient::new(server.uri(), Auth::None, RetryPolicy::default()).unwrap();
    let experiment = client.get_or_create_experiment("hostile-model-size").unwrap();
    let run = client.create_run(&experiment, "oversized", 1, "someone", &[]).unwrap();
    let uri = &run.artifact_uri;
    client.upload_artifact_bytes(uri, "model/model.safetensors", b"not really weights").unwrap();
    client.upload_artifact_bytes(uri, "model/engine_model.json", &vec![b' '; (1 << 20) + 1]).unwrap();
    client.upload_artifact_bytes(uri, "model/MLmodel", b"flavors: {}\n").unwrap();
    let dir = cli::empty_dir("hostile-real-model-size");
    let args = ["eval", "--run-id", &run.run_id, "--device", "cpu"];
    let f = run_bounded(&mut engine_in(&dir, &args, &dir.join("store"), Some(server.uri())), DEADLINE);
    assert_failed_saying(&f, &["model/engine_model.json", "larger than 1 MiB"]);
    assert_eq!(files_under(&dir), Vec::<String>::new());
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// 4. Credentials are never printed.

const SECRET: &str = "S3CRET-pw";

/// Runs `args` and checks that neither the secret nor its Basic encoding shows up.
fn assert_no_secret(f: &Finished, what: &str) {
    let all = text(f);
    assert!(!f.killed, "{what}: killed after {:?}", f.elapsed);
    assert!(!f.output.status.success(), "{what}: succeeded:\n{all}");
    let basic = "dXNlcjpTM0NSRVQtcHc="; // base64("user:S3CRET-pw")
    assert!(!all.contains(SECRET) && !all.contains(basic), "{what} printed the secret:\n{all}");
}

#[test]
fn tracking_uris_with_credentials_are_never_printed() {
    let dir = cli::empty_dir("hostile-uri-secret");
    let store = dir.join("store");
    let id = local_run(&store);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let uris = [
        format!("ftp://user:{SECRET}@host"),
        format!("user:{SECRET}@host:5000"),
        format!("http://user:{SECRET}@127.0.0.1:{dead}"),
        format!("http://user:{SECRET}@no-such-host.invalid:5000"),
        format!("https://user:{SECRET}@127.0.0.1:{dead}/base"),
    ];
    let commands: [&[&str]; 5] = [
        &["sync"],
        &["runs", "analyze", RUN_ID],
        &["eval", "--run-id", RUN_ID, "--device", "cpu"],
        &["register", "--run-id", &id, "--name", "m"],
        &["train", "--epochs", "1", "--train-limit", "100", "--hidden", "8", "--device", "cpu"],
    ];
    for uri in &uris {
        for args in commands {
            let mut flagged: Vec<&str> = args.to_vec();
            flagged.extend(["--tracking-uri", uri]);
            let f = run_bounded(&mut engine_in(&dir, &flagged, &store, None), DEADLINE);
            assert_no_secret(&f, &format!("{args:?} --tracking-uri {uri}"));
            // Through the environment as well.
            let f = run_bounded(&mut engine_in(&dir, args, &store, Some(uri)), DEADLINE);
            assert_no_secret(&f, &format!("{args:?} with MLFLOW_TRACKING_URI={uri}"));
        }
    }
    // Credentials from the environment, against a port where nothing listens.
    let uri = format!("http://127.0.0.1:{dead}");
    let mut command = engine_in(&dir, &["sync"], &store, Some(&uri));
    command.env("MLFLOW_TRACKING_USERNAME", "user").env("MLFLOW_TRACKING_PASSWORD", SECRET);
    assert_no_secret(&run_bounded(&mut command, DEADLINE), "sync to a dead port");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unauthorized_answers_echoing_credentials_are_not_printed() {
    let dir = cli::empty_dir("hostile-401-secret");
    let store = dir.join("store");
    local_run(&store);
    // A server that repeats whatever credentials it got, in its message and its error code.
    let server = FakeServer::start(|req: &Request| {
        let auth = req.head.lines().find(|l| l.to_ascii_lowercase().starts_with("authorization:")).unwrap_or("");
        let value = auth.split_once(':').map(|(_, v)| v.trim()).unwrap_or("");
        let token = value.split_once(' ').map(|(_, t)| t).unwrap_or("");
        let body = serde_json::json!({
            "error_code": format!("UNAUTHENTICATED {token}"),
            "message": format!("credentials {value} (user:{SECRET}) are not valid"),
        });
        Reply::json(401, body.to_string())
    });
    let envs: [&[(&str, &str)]; 2] = [
        &[("MLFLOW_TRACKING_USERNAME", "user"), ("MLFLOW_TRACKING_PASSWORD", SECRET)],
        &[("MLFLOW_TRACKING_TOKEN", SECRET)],
    ];
    for env in envs {
        for args in [&["sync"][..], &["runs", "analyze", RUN_ID], &["eval", "--run-id", RUN_ID, "--device", "cpu"]] {
            let mut command = engine_in(&dir, args, &store, Some(&server.uri()));
            command.envs(env.iter().copied());
            let f = run_bounded(&mut command, DEADLINE);
            assert_no_secret(&f, &format!("{args:?} with {env:?}"));
            assert!(text(&f).contains("401"), "{args:?}: {}", text(&f));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// A decision is printed only once it is recorded.

/// A server that has the run and its metrics but refuses to tag it: the gate's decision is
/// never printed as made, and the exit code is 2 (no decision), not that of a pass.
#[test]
fn a_gate_decision_the_server_refuses_to_record_is_not_printed_as_made() {
    let server = FakeServer::start(|req: &Request| match req.path.strip_prefix(API).unwrap_or(&req.path) {
        "/runs/get" => {
            let mut run: serde_json::Value =
                serde_json::from_str(&run_json(RUN_ID, "1", "mlflow-artifacts:/1/r/artifacts")).unwrap();
            run["run"]["data"]["metrics"] =
                serde_json::json!([{"key": "test_accuracy", "value": 0.9, "timestamp": 1, "step": 0}]);
            Reply::json(200, run.to_string())
        }
        "/runs/log-batch" => Reply::json(403, r#"{"error_code": "PERMISSION_DENIED", "message": "read-only"}"#),
        _ => Reply::not_found(),
    });
    let scratch = cli::empty_dir("gate-unrecorded");
    let uri = server.uri();
    let args = ["gate", "--run-id", RUN_ID, "--threshold", "0.5", "--json"];
    let finished = run_bounded(&mut engine_in(&scratch, &args, &scratch.join("store"), Some(&uri)), DEADLINE);
    assert_eq!(finished.output.status.code(), Some(2), "{}", text(&finished));
    assert!(finished.output.stdout.is_empty(), "a decision on stdout: {}", text(&finished));
    assert_failed_saying(&finished, &["gate passed", "not recorded", "read-only"]);
}
