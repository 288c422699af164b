//! The local store: round trips, listing, rendering, and runs whose process died mid-run.

use std::io::Write;
use std::path::{Path, PathBuf};

use engine::tracking::{
    self, LocalStore, LocalTracker, Metric, RecordStatus, RunStatus, Tracker, TrackingConfig, TrackingError, util,
};

struct Tmp(PathBuf);
impl Tmp {
    fn new(name: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("engine-tracking-{name}-{}-{}", std::process::id(), util::new_run_id()));
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `engine runs list [--experiment E]` on the store at `root`.
fn runs_list(root: &Path, experiment: Option<&str>) -> String {
    let mut args = vec!["runs", "list"];
    args.extend(experiment.iter().flat_map(|e| ["--experiment", e]));
    runs_command(root, &args)
}

/// `engine runs show ID` on the store at `root`.
fn runs_show(root: &Path, id: &str) -> String {
    runs_command(root, &["runs", "show", id])
}

fn runs_command(root: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .env("ENGINE_LOCAL_STORE", root)
        .output()
        .expect("the engine runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn config(root: &Path, experiment: &str, name: Option<&str>) -> TrackingConfig {
    TrackingConfig {
        tracking_uri: None,
        experiment: experiment.into(),
        run_name: name.map(str::to_string),
        local_root: root.join("store"),
    }
}

#[test]
fn round_trip_write_list_show() {
    let tmp = Tmp::new("roundtrip");
    let cfg = config(tmp.path(), "fashion-mnist", Some("mlp-h128"));
    let mut t = tracking::open(&cfg).unwrap();
    let id = t.start_run(&kv(&[("lr", "0.01"), ("hidden", "128")]), &kv(&[("engine.version", "0.1.0")])).unwrap();
    assert!(util::is_run_id(&id), "{id}");
    assert_eq!(t.run_id(), Some(id.as_str()));
    assert!(t.describe().starts_with("local store "), "{}", t.describe());

    let mut points = Vec::new();
    for step in 0..5 {
        points.push(Metric::new("train_loss", 1.0 / (step as f64 + 1.0), step));
        points.push(Metric::new("test_accuracy", 0.5 + step as f64 * 0.1, step));
    }
    points.push(Metric::new("weird", f64::NAN, 0));
    t.log_metrics(&points).unwrap();
    t.log_params(&kv(&[("epochs", "5"), ("lr", "0.01")])).unwrap(); // same value again: fine
    let err = t.log_params(&kv(&[("lr", "0.1")])).unwrap_err();
    assert!(matches!(err, TrackingError::InvalidArgument(_)), "{err}");
    t.set_tags(&kv(&[("note", "first"), ("note", "second")])).unwrap();

    let art = tmp.path().join("report.json");
    std::fs::write(&art, br#"{"acc":0.9}"#).unwrap();
    let png = tmp.path().join("loss.png");
    let png_bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    std::fs::write(&png, &png_bytes).unwrap();
    t.log_artifact(&art, "").unwrap();
    t.log_artifact(&png, "plots").unwrap();
    assert!(t.log_artifact(&png, "../escape").is_err());
    assert!(t.log_artifact(&tmp.path().join("missing.bin"), "").is_err());

    // While recording, the run reads back as RUNNING.
    let store = LocalStore::open(&cfg.local_root).unwrap();
    assert_eq!(store.load_run(&id).unwrap().status, RecordStatus::Running);

    t.end_run(RunStatus::Finished).unwrap();
    assert!(matches!(t.log_metrics(&[Metric::new("x", 1.0, 0)]), Err(TrackingError::NoActiveRun)));
    assert!(t.end_run(RunStatus::Finished).is_err());

    let r = store.load_run(&id).unwrap();
    assert_eq!(r.status, RecordStatus::Finished);
    assert_eq!(r.run_name, "mlp-h128");
    assert_eq!(r.experiment, "fashion-mnist");
    assert!(r.end_time_ms.unwrap() >= r.start_time_ms);
    assert_eq!(r.params.len(), 3);
    assert_eq!(r.params["lr"], "0.01");
    assert_eq!(r.tags["note"], "second");
    assert_eq!(r.tags["engine.version"], "0.1.0");
    assert_eq!(r.tags["mlflow.runName"], "mlp-h128");
    assert_eq!(r.tags["mlflow.source.type"], "LOCAL");
    assert!(r.tags.contains_key("mlflow.user"));
    assert_eq!(r.metrics.len(), 11);
    assert_eq!(r.metrics[..10], points[..10]);
    assert!(r.metrics[10].value.is_nan());
    assert_eq!(r.metric_history("train_loss").len(), 5);
    assert_eq!(r.latest_metrics()["test_accuracy"].step, 4);
    assert_eq!(r.skipped_metric_lines, 0);
    let paths: Vec<&str> = r.artifacts.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["plots/loss.png", "report.json"]);
    assert_eq!(std::fs::read(r.dir.join("artifacts/plots/loss.png")).unwrap(), png_bytes);
    assert_eq!(r.sync_state(), "local");

    // A prefix finds it too.
    assert_eq!(store.load_run(&id[..8]).unwrap().run_id, id);
    assert!(matches!(store.load_run("ffffffffffffffffffffffffffffffff"), Err(TrackingError::RunNotFound(_))));

    // Second run in another experiment; listing filters by experiment.
    let cfg2 = config(tmp.path(), "other exp/2", None);
    let mut t2 = LocalTracker::new(cfg2.clone()).unwrap();
    let id2 = t2.start_run(&[], &[]).unwrap();
    t2.end_run(RunStatus::Failed).unwrap();
    assert_eq!(store.list_runs(None).unwrap().len(), 2);
    let only = store.list_runs(Some("other exp/2")).unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].run_id, id2);
    assert_eq!(only[0].status, RecordStatus::Failed);
    let name2 = &only[0].run_name;
    assert_eq!(name2.split('-').count(), 3, "{name2}");
    assert_eq!(store.experiments().unwrap(), vec!["fashion-mnist".to_string(), "other exp/2".to_string()]);

    let list = runs_list(&cfg.local_root, None);
    assert!(list.starts_with("RUN ID"), "{list}");
    assert!(list.contains(&id) && list.contains(&id2), "{list}");
    assert!(list.contains("FINISHED") && list.contains("FAILED"), "{list}");
    assert!(list.contains("test_accuracy=0.9"), "{list}");
    let show = runs_show(&cfg.local_root, &id);
    for needle in [
        "mlp-h128",
        "FINISHED",
        "params (3)",
        "lr",
        "0.01",
        "train_loss",
        "0..4",
        "plots/loss.png",
        "5000",
        "engine.version",
    ] {
        assert!(show.contains(needle), "missing {needle:?} in:\n{show}");
    }
    let empty = runs_list(&tmp.path().join("nothing-here"), None);
    assert!(empty.starts_with("no runs"), "{empty}");
}

#[test]
fn run_dropped_without_end_is_unfinished() {
    let tmp = Tmp::new("dropped");
    let cfg = config(tmp.path(), "crash", Some("doomed"));
    let id = {
        let mut t = tracking::open(&cfg).unwrap();
        let id = t.start_run(&kv(&[("a", "1")]), &[]).unwrap();
        t.log_metrics(&[Metric::new("loss", 0.7, 0), Metric::new("loss", 0.6, 1)]).unwrap();
        id
        // dropped here without end_run, as when the process is killed
    };
    let store = LocalStore::open(&cfg.local_root).unwrap();
    let r = store.load_run(&id).unwrap();
    assert_eq!(r.status, RecordStatus::Unfinished);
    assert!(r.is_unfinished());
    assert_eq!(r.end_time_ms, None);
    assert_eq!(r.metrics.len(), 2);
    let list = runs_list(&cfg.local_root, Some("crash"));
    assert!(list.contains("unfinished"), "{list}");
    let show = runs_show(&cfg.local_root, &id);
    assert!(show.contains("unfinished"), "{show}");
}

#[test]
fn torn_metrics_line_is_skipped_not_fatal() {
    let tmp = Tmp::new("torn");
    let cfg = config(tmp.path(), "crash", None);
    let mut t = LocalTracker::new(cfg.clone()).unwrap();
    let id = t.start_run(&[], &[]).unwrap();
    t.log_metrics(&[Metric::new("loss", 0.5, 0)]).unwrap();
    let dir = t.local_run().unwrap().dir().to_path_buf();
    drop(t);
    // a write cut short by a kill
    let mut f = std::fs::OpenOptions::new().append(true).open(dir.join("metrics.jsonl")).unwrap();
    f.write_all(br#"{"key":"loss","value":0.4,"st"#).unwrap();
    drop(f);
    let r = LocalStore::open(&cfg.local_root).unwrap().load_run(&id).unwrap();
    assert_eq!(r.status, RecordStatus::Unfinished);
    assert_eq!(r.metrics.len(), 1);
    assert_eq!(r.skipped_metric_lines, 1);
    let show = runs_show(&cfg.local_root, &id);
    assert!(show.contains("unreadable line"), "{show}");
}

#[test]
fn run_killed_in_a_child_process_is_unfinished() {
    // A real process killed mid-run: the test binary re-runs itself as the recorder.
    if let Ok(root) = std::env::var("ENGINE_TRACKING_CHILD_ROOT") {
        let cfg = config(Path::new(&root), "killed", None);
        let mut t = tracking::open(&cfg).unwrap();
        let id = t.start_run(&[], &[]).unwrap();
        println!("RUN_ID={id}");
        let mut step = 0;
        loop {
            t.log_metrics(&[Metric::new("loss", 1.0, step)]).unwrap();
            if step == 3 {
                std::fs::write(Path::new(&root).join("ready"), &id).unwrap();
            }
            step += 1;
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    let tmp = Tmp::new("killed");
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new(exe)
        .args(["--exact", "run_killed_in_a_child_process_is_unfinished", "--nocapture"])
        .env("ENGINE_TRACKING_CHILD_ROOT", tmp.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ready = tmp.path().join("ready");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // The file may exist before its content is written: wait for the whole id.
    let id = loop {
        let id = std::fs::read_to_string(&ready).unwrap_or_default();
        if id.len() == 32 {
            break id;
        }
        assert!(std::time::Instant::now() < deadline, "child never got going");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let store = LocalStore::open(tmp.path().join("store")).unwrap();
    assert_eq!(store.load_run(&id).unwrap().status, RecordStatus::Running);
    child.kill().unwrap();
    child.wait().unwrap();
    let r = store.load_run(&id).unwrap();
    assert_eq!(r.status, RecordStatus::Unfinished);
    assert!(r.metrics.len() >= 4);
    assert!(r.metrics.iter().enumerate().all(|(i, m)| m.step == i as i64));
}

#[test]
fn panicking_training_loop_ends_the_run_failed() {
    let tmp = Tmp::new("panic");
    let cfg = config(tmp.path(), "panics", None);
    let root = cfg.local_root.clone();
    let handle = std::thread::spawn(move || {
        let mut t = tracking::open(&cfg).unwrap();
        t.start_run(&[], &[]).unwrap();
        panic!("training blew up");
    });
    assert!(handle.join().is_err());
    let runs = LocalStore::open(&root).unwrap().list_runs(None).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RecordStatus::Failed);
}

#[test]
fn killed_status_is_recorded() {
    let tmp = Tmp::new("killedstatus");
    let cfg = config(tmp.path(), "interrupts", None);
    let mut t = tracking::open(&cfg).unwrap();
    let id = t.start_run(&[], &[]).unwrap();
    t.end_run(RunStatus::Killed).unwrap();
    let r = LocalStore::open(&cfg.local_root).unwrap().load_run(&id).unwrap();
    assert_eq!(r.status, RecordStatus::Killed);
    assert!(r.end_time_ms.is_some());
}
