//! `engine serve` beside MLflow: it answers every request format with the bytes' layout and the
//! values `mlflow models serve` gives for the same model directory, and the same statuses and
//! error codes for malformed requests; with `--watch` it follows `@champion` from one registered
//! version to the next under load, every request answered, the version header changing once.
//!
//! Needs the MLflow venv (tests/common/mlflow.rs): skipped without it, unless
//! `ENGINE_REQUIRE_MLFLOW=1`, which makes a missing venv a failure.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/mlflow.rs"]
mod mlflow;
#[path = "common/serve.rs"]
mod serve;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use engine::data::IMAGE_PIXELS;
use serde_json::json;
use serve::{Answer, EngineServer, client, get, post, post_json, test_rows};

/// `mlflow models serve` in its own process group, killed with it when dropped.
struct MlflowServing(Child);

impl Drop for MlflowServing {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let kill = |signal: &str| Command::new("kill").args([signal, "--", &group]).stderr(Stdio::null()).status();
        let _ = kill("-TERM");
        std::thread::sleep(Duration::from_millis(300));
        let _ = kill("-KILL");
        let _ = self.0.wait();
    }
}

/// `mlflow models serve -m MODEL_DIR` on `port`, answering `/ping`.
fn mlflow_models_serve(mlflow: &Path, model: &Path, port: u16, log: &Path) -> MlflowServing {
    use std::os::unix::process::CommandExt;
    // The server runs `uvicorn` by name: the venv's bin goes first on PATH.
    let bin = mlflow.parent().map(Path::to_path_buf).unwrap_or_default();
    let path = std::env::join_paths(
        std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let log_file = std::fs::File::create(log).unwrap();
    let child = Command::new(mlflow)
        .env("PATH", path)
        .args(["models", "serve", "--env-manager", "local", "-h", "127.0.0.1", "-w", "1", "-m"])
        .arg(model)
        .args(["-p", &port.to_string()])
        .env("MLFLOW_DISABLE_TELEMETRY", "true")
        .env("DO_NOT_TRACK", "true")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .expect("mlflow models serve starts");
    let mut serving = MlflowServing(child);
    let deadline = Instant::now() + Duration::from_secs(180);
    let client = client();
    while client.get(&format!("http://127.0.0.1:{port}/ping")).call().is_err() {
        let exited = serving.0.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() > deadline {
            panic!("mlflow models serve is not answering ({exited:?}):\n{}", std::fs::read_to_string(log).unwrap());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    serving
}

/// The JSON text with every number replaced by `#`: the layout, separators included.
fn skeleton(text: &str) -> String {
    let mut out = String::new();
    let mut in_number = false;
    for c in text.chars() {
        let numeric = c.is_ascii_digit() || "+-.eE".contains(c);
        if numeric && !in_number {
            out.push('#');
        } else if !numeric {
            out.push(c);
        }
        in_number = numeric;
    }
    out
}

#[test]
fn answers_have_the_layout_and_values_of_mlflow_models_serve() {
    let Some(mlflow) = mlflow::mlflow_or_skip() else { return };
    let dir = mlflow::scratch_dir("engine-serve-parity");
    let store = dir.join("store");
    cli::train_tiny(&dir.join("train"), &store, None);
    let model = dir.join("train/model");
    let port = mlflow::free_port();
    let _theirs = mlflow_models_serve(&mlflow, &model, port, &dir.join("mlflow-serve.log"));
    let ours = EngineServer::start(&["--model-uri", model.to_str().unwrap()], &store, None);
    let client = client();
    let (their_url, our_url) = (format!("http://127.0.0.1:{port}/invocations"), ours.url("/invocations"));

    let rows = test_rows(3);
    let columns: Vec<String> = (0..IMAGE_PIXELS).map(|i| i.to_string()).collect();
    let record = |row: &Vec<f32>| -> serde_json::Map<String, serde_json::Value> {
        row.iter().enumerate().map(|(i, v)| (i.to_string(), json!(v))).collect()
    };
    let bodies = [
        json!({ "inputs": rows }),
        json!({ "inputs": &rows[..1] }),
        json!({ "instances": rows }),
        json!({ "inputs": rows, "params": {} }),
        json!({ "dataframe_split": { "columns": columns, "data": rows } }),
        json!({ "dataframe_split": { "index": [7, 8, 9], "data": rows } }),
        json!({ "dataframe_split": { "columns": ["image"], "data": rows.iter().map(|r| vec![r]).collect::<Vec<_>>() } }),
        json!({ "dataframe_records": rows.iter().map(record).collect::<Vec<_>>() }),
    ];
    for body in &bodies {
        let what = &body.to_string()[..50];
        let (theirs, ours) = (post_json(&client, &their_url, body), post_json(&client, &our_url, body));
        assert_eq!((theirs.status, ours.status), (200, 200), "{what}: {} / {}", theirs.body, ours.body);
        assert_eq!(skeleton(&ours.body), skeleton(&theirs.body), "{what}: the layouts differ");
        let (theirs, ours) = (theirs.probabilities(), ours.probabilities());
        for (their_row, our_row) in theirs.iter().zip(&ours) {
            for (a, b) in their_row.iter().zip(our_row) {
                assert!((a - b).abs() < 1e-5, "{what}: {their_row:?} against {our_row:?}");
            }
        }
        assert_eq!(serve::argmax(&theirs), serve::argmax(&ours), "{what}");
    }

    // Malformed requests: the same statuses, and MLflow's error code where it parses the body.
    let json_type = Some("application/json");
    let row = &rows[0];
    let malformed: Vec<(Vec<u8>, bool)> = vec![
        (b"{\"inputs\": [[0.1, 0.2,".to_vec(), true),
        (Vec::new(), true),
        (br#"{"foo": [[0.5]]}"#.to_vec(), true),
        (br#"{"inputs": [[0.5]], "instances": [[0.5]]}"#.to_vec(), true),
        (br#"[[0.5]]"#.to_vec(), true),
        // MLflow calls these INVALID_PARAMETER_VALUE.
        (json!({ "inputs": [&row[..783]] }).to_string().into_bytes(), false),
        (json!({ "inputs": [] }).to_string().into_bytes(), false),
    ];
    for (body, same_code) in malformed {
        let what = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
        let (theirs, ours) = (post(&client, &their_url, json_type, &body), post(&client, &our_url, json_type, &body));
        assert_eq!((ours.status, theirs.status), (400, 400), "{what}: {} / {}", ours.body, theirs.body);
        let code = |a: &Answer| a.json()["error_code"].as_str().map(String::from);
        assert_eq!(code(&ours).as_deref(), Some("BAD_REQUEST"), "{what}");
        if same_code {
            assert_eq!(code(&theirs), code(&ours), "{what}: {}", theirs.body);
        }
        assert!(ours.json()["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    for path in ["/ping", "/health"] {
        let (theirs, ours) = (get(&client, &format!("http://127.0.0.1:{port}{path}")), get(&client, &ours.url(path)));
        assert_eq!((ours.status, ours.body.as_str()), (theirs.status, theirs.body.as_str()), "{path}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `engine ARGS` against the MLflow server; must succeed.
fn engine_ok(args: &[&str], store: &Path, uri: &str) -> std::process::Output {
    let output = cli::engine(args, store, Some(uri));
    assert!(output.status.success(), "engine {args:?}:\n{}", cli::text(&output));
    output
}

#[test]
fn the_server_follows_the_champion_under_load_without_dropping_a_request() {
    let Some(server) = mlflow::shared() else { return };
    let uri = server.uri();
    let dir = mlflow::scratch_dir("engine-serve-watch");
    let store = dir.join("store");
    let name = "fashion-serve-watch";

    // Two different models (8 and 16 hidden units), registered as versions 1 and 2.
    let mut run_ids = Vec::new();
    for hidden in ["8", "16"] {
        let output_dir = dir.join(format!("train-{hidden}"));
        let args = ["train", "--epochs", "1", "--train-limit", "500", "--hidden", hidden, "--json", "--output-dir"];
        let output = cli::engine(&[&args[..], &[output_dir.to_str().unwrap()]].concat(), &store, Some(uri));
        let run_id = cli::json_line(&output)["run_id"].as_str().unwrap().to_string();
        let registered =
            cli::json_line(&engine_ok(&["register", "--run-id", &run_id, "--name", name, "--json"], &store, uri));
        assert_eq!(registered["version"], (run_ids.len() + 1).to_string());
        run_ids.push(run_id);
    }
    engine_ok(&["promote", "--name", name, "--version", "1"], &store, uri);

    let champion = format!("models:/{name}@champion");
    let serving =
        EngineServer::start(&["--model-uri", &champion, "--watch", "--watch-interval", "0.2"], &store, Some(uri));
    let url = serving.url("/invocations");
    let body = json!({ "inputs": test_rows(1) });
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let count_of =
        |version: &str| answers.lock().unwrap().iter().filter(|a| a.model_version.as_deref() == Some(version)).count();
    let wait_for = |version: &str, n: usize| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while count_of(version) < n {
            assert!(Instant::now() < deadline, "no {n} answers from version {version}:\n{}", serving.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let (answers, stop, url, body) = (answers.clone(), stop.clone(), &url, &body);
            scope.spawn(move || {
                let client = client();
                while !stop.load(Ordering::Relaxed) {
                    let answer = post_json(&client, url, body);
                    answers.lock().unwrap().push(answer);
                }
            });
        }
        wait_for("1", 50);
        engine_ok(&["promote", "--name", name, "--version", "2"], &store, uri);
        wait_for("2", 50);
        stop.store(true, Ordering::Relaxed);
    });

    let answers = answers.lock().unwrap();
    let failed: Vec<&Answer> = answers.iter().filter(|a| a.status != 200).collect();
    assert!(failed.is_empty(), "{} of {} requests failed: {:?}", failed.len(), answers.len(), failed.first());
    let versions: Vec<&str> = answers.iter().map(|a| a.model_version.as_deref().unwrap_or("none")).collect();
    let first_new = versions.iter().position(|&v| v == "2").unwrap();
    // Two clients: an answer from version 1 may be recorded just after the first from version 2.
    let late_old = versions[first_new..].iter().filter(|&&v| v == "1").count();
    assert!(late_old <= 1, "version 1 answered {late_old} times after version 2 did");
    assert!(versions.iter().all(|&v| v == "1" || v == "2"), "{versions:?}");
    for (answer, version) in answers.iter().zip(&versions) {
        let run = if *version == "1" { &run_ids[0] } else { &run_ids[1] };
        assert_eq!(answer.run_id.as_ref(), Some(run), "x-model-run-id of version {version}");
    }
    let (old, new) = (answers[0].probabilities(), answers[answers.len() - 1].probabilities());
    assert_ne!(old, new, "versions 1 and 2 are different models");

    let current = get(&client(), &serving.url("/version")).json();
    assert_eq!((current["name"].as_str(), current["version"].as_str()), (Some(name), Some("2")));
    assert_eq!(current["model_uri"], champion.as_str());
    assert!(serving.log_text().contains("moved to version 2"), "{}", serving.log_text());
    drop(serving);
    let _ = std::fs::remove_dir_all(&dir);
}
