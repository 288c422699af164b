//! What the README's "When things fail" promises without a server: impossible sizes and names
//! refused up front, an interrupt at any point ends the run KILLED without a model, failed
//! writes leave no temporary files and end the run FAILED with its reason, one output directory
//! serves one run at a time, and failed evaluations leave nothing behind.

#[path = "common/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cli::{clean_env, empty_dir, stderr, text};
use engine::tracking::{LocalStore, RecordStatus};
use engine::train::TrainConfig;

/// `engine ARGS` run from `cwd`, with the local store `cwd/store`.
fn engine_in(cwd: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    clean_env(command.args(args).current_dir(cwd), &cwd.join("store"), None).output().expect("the engine runs")
}

/// Every file under `dir`, relative.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap_or(&path).display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn temp_files(dir: &Path) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|f| f.contains(".part") || f.contains(".tmp") || f.contains("partial"))
        .collect()
}

fn only_run(cwd: &Path) -> engine::tracking::RunRecord {
    let runs = LocalStore::open(cwd.join("store")).unwrap().list_runs(None).unwrap();
    assert_eq!(runs.len(), 1, "expected one run");
    runs.into_iter().next().unwrap()
}

const TINY: [&str; 9] = ["train", "--device", "cpu", "--epochs", "1", "--train-limit", "500", "--hidden", "8"];

#[test]
fn impossible_sizes_exit_2_before_anything_is_allocated() {
    let cwd = empty_dir("trust-sizes");
    for hidden in ["99999999999", "99999999999999999999", "4000000,4000000"] {
        let output = engine_in(&cwd, &["train", "--hidden", hidden]);
        assert_eq!(output.status.code(), Some(2), "--hidden {hidden}: {}", text(&output));
        assert!(stderr(&output).contains("--hidden"), "{}", stderr(&output));
    }
    assert!(!cwd.join("store").exists(), "no run may start");
    let mut config = TrainConfig {
        epochs: 1,
        batch_size: 128,
        lr: 0.1,
        optimizer: engine::train::OptimizerKind::Sgd,
        momentum: 0.0,
        weight_decay: 0.0,
        dropout: 0.0,
        lr_schedule: engine::train::LrSchedule::Constant,
        normalize: engine::data::Normalization::Unit,
        model: engine::nn::Architecture::Mlp,
        hidden: vec![512, 512],
        seed: 0,
        val_split: 0.1,
        train_limit: None,
        early_stop_patience: None,
    };
    let need = config.training_memory_bytes().unwrap();
    assert!(config.check_memory(Some(need)).is_ok());
    assert!(config.check_memory(Some(need - 1)).unwrap_err().contains("GiB"));
    // Validation alone reads nothing of the system; the memory is weighed where it is given.
    assert!(config.validate().is_ok());
    assert!(config.validate_within(Some(need - 1)).unwrap_err().contains("GiB"));
    config.hidden = vec![usize::MAX];
    assert!(config.check_memory(None).is_err(), "overflow is refused even where memory is unknown");
    assert!(config.validate().is_err(), "and by validation, which needs no memory figure");
}

#[test]
fn names_past_mlflow_limits_exit_2_and_start_no_run() {
    let cwd = empty_dir("trust-names");
    let long_run = "r".repeat(8001);
    let long_experiment = "e".repeat(300);
    let cases: [(&[&str], &str); 3] = [
        (&["--run-name", &long_run], "--run-name"),
        (&["--experiment", &long_experiment], "--experiment"),
        (&["--run-name", &"r".repeat(251)], "--run-name"),
    ];
    for (flags, flag) in cases {
        let output = engine_in(&cwd, &[&TINY[..], flags].concat());
        assert_eq!(output.status.code(), Some(2), "{flag}: {}", text(&output));
        assert!(stderr(&output).contains(flag), "{}", stderr(&output));
    }
    let sweep = engine_in(&cwd, &["sweep", "--lr", "0.1", "--run-name", &"s".repeat(251)]);
    assert_eq!(sweep.status.code(), Some(2), "a sweep's name is checked too: {}", text(&sweep));
    assert!(!cwd.join("store").exists(), "no run may start");
    // A name at the limit trains, and its experiment directory name stays short.
    let experiment = "e".repeat(256);
    let output = engine_in(&cwd, &[&TINY[..], &["--experiment", &experiment, "--output-dir", "out"]].concat());
    assert!(output.status.success(), "{}", text(&output));
    let run = only_run(&cwd);
    assert_eq!(run.experiment, experiment);
    assert!(run.dir.parent().unwrap().file_name().unwrap().len() <= 64);
}

/// Starts a training run whose work after the last epoch (evaluation, reports, the cost
/// measurement of a 512-512 model) takes seconds, and interrupts it once the test loss is
/// printed: after the last epoch, before the model is recorded.
#[test]
fn an_interrupt_after_the_last_epoch_ends_the_run_killed_without_a_model() {
    use std::io::{BufRead, BufReader};
    let cwd = empty_dir("trust-late-interrupt");
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    let args = ["train", "--device", "cpu", "--epochs", "1", "--train-limit", "300", "--output-dir", "out"];
    let mut child = clean_env(command.args(args).current_dir(&cwd), &cwd.join("store"), None)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the engine starts");
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    for line in stdout.lines().map_while(Result::ok) {
        let done_training = line.starts_with("test_loss");
        seen.push(line);
        if done_training {
            let pid = child.id().to_string();
            assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
            break;
        }
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{seen:?}\n{}", stderr(&output));
    let run = only_run(&cwd);
    assert_eq!(run.status, RecordStatus::Killed);
    assert!(!cwd.join("out/model").exists(), "no model in the output directory");
    assert!(run.artifacts.iter().all(|a| !a.path.starts_with("model/")), "no model in the store: {:?}", run.artifacts);
}

/// A file-size limit makes the weights' write fail as a full disk does (the shell ignores
/// SIGXFSZ so the write returns an error instead of killing the process).
#[test]
fn a_failed_write_names_its_file_cleans_up_and_ends_the_run_failed() {
    let cwd = empty_dir("trust-full-disk");
    let script = r#"trap '' XFSZ; ulimit -f 200; exec "$ENGINE" train --device cpu --epochs 1 --train-limit 500 --hidden 64 --output-dir out"#;
    let mut command = Command::new("sh");
    let output =
        clean_env(command.args(["-c", script]).current_dir(&cwd), &cwd.join("store"), None).output().expect("sh runs");
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(stderr(&output).contains("out/model/model.safetensors"), "names the file: {}", stderr(&output));
    let run = only_run(&cwd);
    assert_eq!(run.status, RecordStatus::Failed);
    let reason = run.tags.get("engine.error").expect("the reason is recorded");
    assert!(reason.contains("model.safetensors"), "{reason}");
    assert_eq!(temp_files(&cwd), Vec::<String>::new(), "temporary files left behind");
    assert!(!cwd.join("out/model").exists());

    // A temporary file left by a crash is neither listed nor shown as an artifact.
    std::fs::write(run.dir.join("artifacts/.metrics.json.part123"), b"half").unwrap();
    let record = LocalStore::open(cwd.join("store")).unwrap().load_run(&run.run_id).unwrap();
    assert!(record.artifacts.iter().all(|a| !a.path.contains(".part")), "{:?}", record.artifacts);
    let show = engine_in(&cwd, &["runs", "show", &run.run_id]);
    assert!(!cli::stdout(&show).contains(".part123"), "{}", cli::stdout(&show));
}

#[test]
fn one_output_directory_serves_one_run_at_a_time_and_eval_checks_whose_model_it_is() {
    let cwd = empty_dir("trust-shared-out");
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    let slow = ["train", "--device", "cpu", "--epochs", "2", "--train-limit", "3000", "--output-dir", "shared"];
    let mut first = clean_env(command.args(slow).current_dir(&cwd), &cwd.join("store"), None)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the engine starts");
    let lock = cwd.join("shared/.engine.lock");
    let start = Instant::now();
    while !lock.exists() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = engine_in(&cwd, &[&TINY[..], &["--output-dir", "shared"]].concat());
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(stderr(&second).contains("being written by another run"), "{}", stderr(&second));
    assert!(first.wait().unwrap().success());

    // Two finished runs; the model of one planted under the other: eval refuses it.
    let other = engine_in(&cwd, &[&TINY[..], &["--output-dir", "other", "--json"]].concat());
    let other_id = cli::json_line(&other)["run_id"].as_str().unwrap().to_string();
    let store = LocalStore::open(cwd.join("store")).unwrap();
    let runs = store.list_runs(None).unwrap();
    let first_run =
        runs.iter().find(|r| r.run_id != other_id && r.status == RecordStatus::Finished).expect("the first run");
    assert_eq!(runs.len(), 3, "the refused run is recorded FAILED");
    let planted: PathBuf = first_run.dir.join("artifacts/model");
    for file in ["model.safetensors", "engine_model.json", "MLmodel"] {
        std::fs::copy(cwd.join("other/model").join(file), planted.join(file)).unwrap();
    }
    let eval = engine_in(&cwd, &["eval", "--run-id", &first_run.run_id]);
    assert_eq!(eval.status.code(), Some(1), "{}", text(&eval));
    assert!(stderr(&eval).contains(&format!("trained by run {other_id}")), "{}", stderr(&eval));
}

#[test]
fn failed_evaluations_leave_nothing_and_outputs_are_named_by_the_resolved_run() {
    let cwd = empty_dir("trust-eval-paths");
    for args in [&["eval", "--run-id", "nope"][..], &["eval", "--model-uri", "models:/x/1"][..]] {
        let output = engine_in(&cwd, args);
        assert_eq!(output.status.code(), Some(1), "{}", text(&output));
        assert!(!cwd.join("runs").exists(), "{args:?} left {:?}", files_under(&cwd));
    }
    let trained = cli::json_line(&engine_in(&cwd, &[&TINY[..], &["--output-dir", "out", "--json"]].concat()));
    let run_id = trained["run_id"].as_str().unwrap();
    let by_prefix = engine_in(&cwd, &["eval", "--device", "cpu", "--run-id", &run_id[..8]]);
    assert!(by_prefix.status.success(), "{}", text(&by_prefix));
    assert!(cwd.join("runs").join(run_id).join("evaluation/metrics.json").is_file(), "{:?}", files_under(&cwd));
    let by_dir = engine_in(&cwd, &["eval", "--device", "cpu", "--model-uri", "out/model", "--output-dir", "e2"]);
    assert!(by_dir.status.success(), "{}", text(&by_dir));
    assert!(cwd.join("e2/predictions.csv").is_file());
    let default_dir = engine_in(&cwd, &["eval", "--device", "cpu", "--model-uri", "out/model"]);
    assert!(default_dir.status.success(), "{}", text(&default_dir));
    assert!(!cwd.join("runs/out_model").exists(), "a directory URI is resolved to its run");
}

#[test]
fn short_prefixes_unknown_metrics_and_headless_gpus_say_what_is_wrong() {
    let cwd = empty_dir("trust-messages");
    cli::json_line(&engine_in(&cwd, &[&TINY[..], &["--output-dir", "out", "--json"]].concat()));
    let show = engine_in(&cwd, &["runs", "show", "7c"]);
    assert_ne!(show.status.code(), Some(0));
    assert!(stderr(&show).contains("at least 4 characters"), "{}", stderr(&show));
    let compare = engine_in(&cwd, &["runs", "compare", "--metric", "nosuch"]);
    assert_eq!(compare.status.code(), Some(2), "{}", text(&compare));
    assert!(stderr(&compare).contains("test_accuracy"), "lists the recorded metrics: {}", stderr(&compare));
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    let devices = command.arg("devices").env_remove("XDG_RUNTIME_DIR").env_remove("NODEVICE_SELECT").output().unwrap();
    assert!(devices.status.success());
    assert!(!text(&devices).contains("error"), "nothing failed, nothing says error: {}", text(&devices));
}
