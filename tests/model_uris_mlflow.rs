//! Every model URI MLflow's client reads, against a real MLflow server: one tiny run registered
//! twice (version 1 promoted to Production with the alias champion, version 2 left in Staging),
//! then `engine eval`, `engine export` and `engine serve` by version, stage (any case), latest,
//! alias, LoggedModel id, `runs:/`, bare run id and directory, each naming the version and run it
//! found. Then the failures: each says what the input was read as and what to try, once; a local
//! path that does not exist never reaches a server.

#[path = "common/mlflow.rs"]
mod mlflow;

#[path = "common/cli.rs"]
mod cli;

#[path = "common/serve.rs"]
mod serve;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;
use std::time::Duration;

use cli::{json_line, stderr, text};

/// The run, its two registered versions and where everything is.
struct Registered {
    uri: String,
    dir: PathBuf,
    store: PathBuf,
    run_id: String,
    /// Where training wrote the run (its model is in `model/`).
    output_dir: PathBuf,
    name: String,
    /// The LoggedModel behind both versions (`models:/<model id>`, as `engine register` prints).
    model_source: String,
}

fn engine_ok(args: &[&str], store: &Path, uri: &str) -> Output {
    let output = cli::engine(args, store, Some(uri));
    assert!(output.status.success(), "{args:?} failed: {}", text(&output));
    output
}

/// Trains, registers twice and promotes version 1, once for the whole binary.
fn registered() -> Option<&'static Registered> {
    static FIXTURE: OnceLock<Option<Registered>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let server = mlflow::shared()?;
            let uri = server.uri().to_string();
            let dir = mlflow::scratch_dir("engine-model-uris");
            let store = dir.join("store");
            let output_dir = dir.join("run");
            let trained = cli::train_tiny(&output_dir, &store, Some(&uri));
            let run_id = trained["run_id"].as_str().unwrap().to_string();
            let name = format!("uris-{}", &run_id[..8]);
            let register = ["register", "--run-id", &run_id, "--name", &name, "--json"];
            let first = json_line(&engine_ok(&register, &store, &uri));
            let second = json_line(&engine_ok(&register, &store, &uri));
            assert_eq!((first["version"].as_str(), second["version"].as_str()), (Some("1"), Some("2")));
            engine_ok(&["promote", "--name", &name, "--version", "1"], &store, &uri);
            let model_source = first["source"].as_str().unwrap().to_string();
            assert!(model_source.starts_with("models:/m-"), "{model_source}");
            Some(Registered { uri, dir, store, run_id, output_dir, name, model_source })
        })
        .as_ref()
}

/// `engine export --model-uri URI` from an empty local store (so a run is found on the
/// server): what it printed.
fn export(r: &Registered, model_uri: &str, store: &Path, tracking_uri: Option<&str>) -> Output {
    let out = r.dir.join(format!("export-{}.onnx", mlflow::free_port()));
    let args = ["export", "--model-uri", model_uri, "--output", out.to_str().unwrap()];
    cli::engine(&args, store, tracking_uri)
}

#[test]
fn every_form_finds_the_model_it_names() {
    let Some(r) = registered() else { return };
    let elsewhere = r.dir.join("empty-store");
    let (name, run) = (&r.name, &r.run_id);

    // Registry forms: the version each one resolves to is named, with the run.
    for (uri, version) in [
        (format!("models:/{name}/1"), "1"),
        (format!("models:/{name}/2"), "2"),
        (format!("models:/{name}/Production"), "1"),
        (format!("models:/{name}/production"), "1"),
        (format!("models:/{name}/STAGING"), "2"),
        (format!("models:/{name}/latest"), "2"),
        (format!("models:/{name}@champion"), "1"),
    ] {
        let output = export(r, &uri, &elsewhere, Some(&r.uri));
        assert!(output.status.success(), "{uri}: {}", text(&output));
        let said = format!("wrote the model {name} version {version} of run {run}");
        assert!(stderr(&output).contains(&said), "{uri}: expected {said:?} in {}", stderr(&output));
    }

    // A LoggedModel id, as `engine register` printed it as the source.
    let output = export(r, &r.model_source, &elsewhere, Some(&r.uri));
    assert!(output.status.success(), "{}", text(&output));
    assert!(stderr(&output).contains(&format!("of run {run}")), "{}", stderr(&output));
    let model_id = r.model_source.trim_start_matches("models:/");
    assert!(stderr(&output).contains(&format!("is logged model {model_id}")), "{}", stderr(&output));

    // Runs: from the server (an empty local store), from the local store, and a directory.
    let model_dir = r.output_dir.join("model");
    for (uri, store) in [
        (format!("runs:/{run}/model"), &elsewhere),
        (run.clone(), &elsewhere),
        (format!("runs:/{run}/model"), &r.store),
        (model_dir.to_str().unwrap().to_string(), &elsewhere),
    ] {
        let output = export(r, &uri, store, Some(&r.uri));
        assert!(output.status.success(), "{uri}: {}", text(&output));
        assert!(stderr(&output).contains(&format!("of run {run}")), "{uri}: {}", stderr(&output));
    }

    // engine eval by stage and by alias: the run it evaluated is the registered one.
    for uri in [format!("models:/{name}/Production"), format!("models:/{name}@champion")] {
        let out = r.dir.join(format!("eval-{}", mlflow::free_port()));
        let args = ["eval", "--device", "cpu", "--json", "--model-uri", &uri, "--output-dir", out.to_str().unwrap()];
        let output = engine_ok(&args, &elsewhere, &r.uri);
        assert_eq!(json_line(&output)["run_id"].as_str(), Some(run.as_str()), "{uri}");
        assert!(stderr(&output).contains(&format!("{name} version 1 of run {run}")), "{}", stderr(&output));
    }

    // engine serve by stage: the version it serves is the one in Staging.
    let staging = format!("models:/{name}/Staging");
    let mut serving = serve::EngineServer::start(&["--model-uri", &staging], &elsewhere, Some(&r.uri));
    serving.wait_for_log(&format!("serve: loaded {name} version 2 (run {run})"), Duration::from_secs(30));
    serving.terminate();
    assert!(serving.wait_exit(Duration::from_secs(20)).success(), "{}", serving.log_text());
}

/// The error line (the cause is printed once, so it appears once).
fn error_of(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{}", text(output));
    let message = stderr(output);
    assert_eq!(message.matches("error:").count(), 1, "{message}");
    message
}

#[test]
fn failures_say_what_the_input_was_read_as() {
    let Some(r) = registered() else { return };
    let elsewhere = r.dir.join("empty-store");
    let name = &r.name;
    let fails = |uri: &str, says: &[&str]| {
        let message = error_of(&export(r, uri, &elsewhere, Some(&r.uri)));
        for part in says {
            assert!(message.contains(part), "{uri}: expected {part:?} in {message}");
        }
        message
    };

    fails(
        &format!("models:/{name}/Prodution"),
        &[&format!(
            "read `models:/{name}/Prodution` as a registered model `{name}` in stage `Prodution`: no such stage; \
             stages are Production, Staging, Archived, None"
        )],
    );
    fails(&format!("models:/{name}/Archived"), &[&format!("no version of `{name}` is in Archived"), "1 (Production)"]);
    fails(&format!("models:/{name}/7"), &[&format!("`{name}` has no version 7"), "2 (Staging)"]);
    fails(&format!("models:/{name}@nope"), &[&format!("`{name}` has no alias `nope`"), "champion -> 1"]);
    let missing = fails(
        "models:/no-such-model-anywhere/Production",
        &["as a registered model `no-such-model-anywhere` in stage `Production`", "no registered model"],
    );
    assert!(missing.contains(name.as_str()), "lists the registered models: {missing}");
    fails("models:/m-00000000000000000000000000000000", &["as a logged model id", "no logged model"]);
    fails("models:/fashion", &["no logged model `fashion`", "models:/fashion/1"]);
    fails(&"0".repeat(32), &["as a run id", "unknown run id"]);

    // A run directory given instead of its model: a hint at model/, said once.
    let run_dir = r.output_dir.to_str().unwrap();
    let message =
        fails(run_dir, &[&format!("read `{run_dir}` as a model directory: a run directory: its model is in")]);
    assert!(message.contains(r.output_dir.join("model").to_str().unwrap()), "{message}");
    assert_eq!(message.matches("run directory").count(), 1, "{message}");
    let weights = r.output_dir.join("model/model.safetensors");
    fails(weights.to_str().unwrap(), &["it is a file", "its model directory is"]);

    // A path that does not exist is a missing directory, whatever the server: none is asked.
    let down = format!("http://127.0.0.1:{}", mlflow::free_port());
    for path in ["runs/0123456789abcdef/model", "./model", "../no/such/model"] {
        for command in [&["export", "--output", "x.onnx"][..], &["eval", "--device", "cpu"][..]] {
            let output = cli::engine(&[command, &["--model-uri", path]].concat(), &elsewhere, Some(&down));
            let message = error_of(&output);
            assert!(message.contains(&format!("read `{path}` as a model directory: no such directory")), "{message}");
            assert!(!message.contains("127.0.0.1") && !message.contains("unreachable"), "{message}");
        }
    }
    let output = cli::engine(&["serve", "--port", "0", "--model-uri", "./model"], &elsewhere, Some(&down));
    assert!(error_of(&output).contains("no such directory"), "{}", text(&output));

    // A registry URI with no server configured says how to name one.
    let output = export(r, &format!("models:/{name}/1"), &elsewhere, None);
    assert!(error_of(&output).contains("MLFLOW_TRACKING_URI"), "{}", text(&output));
    // --watch needs an alias, and says what it read instead.
    let output =
        cli::engine(&["serve", "--model-uri", &format!("models:/{name}/Production"), "--watch"], &elsewhere, None);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(text(&output).contains("in stage `Production`"), "{}", text(&output));
}
