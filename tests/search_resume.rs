//! A successive-halving sweep with `--workers 2`, killed (SIGKILL) once rung 0 is promoted and
//! rung 1 is partly trained, then resumed: each trial's rungs finish once, none is lost, a
//! promoted trial's epochs add up to the last rung's, and the summary is the one an uninterrupted
//! sweep with the same seed prints. Killed with its workers (a crash, a scheduler), their runs
//! are left unfinished, maybe with reports written; killed alone, its workers stop with it while
//! the resume waits for them. Either way the resume trains those trials again.

#[path = "common/cli.rs"]
mod cli;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli::{clean_env, empty_dir, engine, json_line, stderr};
use engine::tracking::{LocalStore, RecordStatus, RunRecord};

/// Nine trials of an 8-unit MLP, eta 3: rung 0 trains all nine 1 epoch, rung 1 the best three to
/// 3 epochs, two at a time, so rung 1 has a trial left to train when its first two finish.
#[rustfmt::skip]
const SEARCH: [&str; 22] = [
    "sweep", "--search", "halving", "--trials", "9", "--eta", "3", "--epochs", "3", "--search-seed", "11",
    "--space", "lr=loguniform(1e-3,0.3)", "--device", "cpu", "--train-limit", "4000", "--hidden", "8",
    "--no-system-metrics", "--workers", "2",
];

fn children(store: &Path, parent: &str) -> Vec<RunRecord> {
    let runs = LocalStore::open(store).unwrap().list_runs(Some("fashion-mnist")).unwrap_or_default();
    runs.into_iter().filter(|r| r.tags.get("mlflow.parentRunId").map(String::as_str) == Some(parent)).collect()
}

/// Runs of rung `epochs` (a number of epochs, as the runs' param says) in `status`.
fn runs_at(store: &Path, parent: &str, epochs: &str, status: RecordStatus) -> Vec<RunRecord> {
    let runs = children(store, parent).into_iter();
    runs.filter(|r| r.status == status && r.params.get("epochs").is_some_and(|e| e == epochs)).collect()
}

fn finished_at(store: &Path, parent: &str, epochs: &str) -> usize {
    runs_at(store, parent, epochs, RecordStatus::Finished).len()
}

/// The plan the sweep wrote in `out`, and its parent run id, once there.
fn plan_in(out: &Path) -> Option<(PathBuf, String)> {
    let entries = std::fs::read_dir(out).ok()?.flatten().map(|e| e.path());
    let plan = entries.into_iter().find(|p| p.extension().is_some_and(|e| e == "json"))?;
    let parent = plan.file_stem()?.to_str()?.trim_start_matches("sweep-").to_string();
    Some((plan, parent))
}

/// Each trial's run name, rung epochs and metrics, sorted, and the ranked values: what the
/// summary says, whatever order ties of cost put it in.
fn outcome(summary: &serde_json::Value) -> (Vec<String>, Vec<String>) {
    let runs = summary["runs"].as_array().unwrap();
    let mut trials: Vec<String> = runs
        .iter()
        .map(|r| {
            let m = &r["metrics"];
            format!(
                "{} {} {} {} {}",
                r["run_name"], r["params"]["epochs"], m["test_accuracy"], m["val_loss"], m["rung"]
            )
        })
        .collect();
    trials.sort();
    (trials, runs.iter().map(|r| r["value"].to_string()).collect())
}

#[test]
fn a_sweep_with_workers_killed_in_a_later_rung_resumes_each_trial_once() {
    let dir = empty_dir("halving-resume-workers");
    let reference = json_line(&engine(
        &[&SEARCH[..], &["--json", "--output-dir", dir.join("ref-out").to_str().unwrap()]].concat(),
        &dir.join("ref-store"),
        None,
    ));
    for with_workers in [true, false] {
        let (store, out) = (dir.join(format!("store-{with_workers}")), dir.join(format!("out-{with_workers}")));
        let (plan, parent) = kill_in_rung_1(&store, &out, with_workers);
        let unfinished = runs_at(&store, &parent, "3", RecordStatus::Unfinished);
        if with_workers {
            leave_reports(&plan, &out, &unfinished);
        }
        // Resumed at once: killed alone, the sweep's workers may still be ending their runs.
        let before: Vec<RunRecord> = children(&store, &parent);
        let output = engine(&["sweep", "--resume", plan.to_str().unwrap(), "--workers", "2", "--json"], &store, None);
        assert!(output.status.success(), "{}", stderr(&output));
        let resumed = json_line(&output);
        assert_eq!(resumed["status"], "FINISHED");
        // Killed with its workers, their runs are left unfinished; alone, its workers end theirs
        // KILLED (unfinished if a second signal stops them at once).
        let mut stopped = runs_at(&store, &parent, "3", RecordStatus::Killed);
        stopped.extend(runs_at(&store, &parent, "3", RecordStatus::Unfinished));
        assert!(!stopped.is_empty(), "with workers={with_workers}: a run of rung 1 was stopped while training");
        each_trial_trained_once(&store, &parent, &before, &stopped);
        assert_eq!(outcome(&resumed), outcome(&reference), "the resumed sweep ends as an uninterrupted one");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts the search, kills it (with its workers, or alone) once a trial of rung 1 is done and
/// another is training; its plan and parent run.
fn kill_in_rung_1(store: &Path, out: &Path, with_workers: bool) -> (PathBuf, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    command.args(SEARCH).args(["--output-dir", out.to_str().unwrap()]);
    // Its own process group, so that a kill can take the workers too.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut sweep = clean_env(&mut command, store, None).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    // Once a trial of rung 1 is done and another started after it: that one is still training.
    let mid_rung_1 = |parent: &str| {
        let done = runs_at(store, parent, "3", RecordStatus::Finished);
        let first_end = done.iter().filter_map(|r| r.end_time_ms).min();
        let running = runs_at(store, parent, "3", RecordStatus::Running);
        first_end.is_some_and(|end| running.iter().any(|r| r.start_time_ms > end))
    };
    let (plan, parent) = loop {
        if let Some((plan, parent)) = plan_in(out).filter(|(_, parent)| mid_rung_1(parent)) {
            break (plan, parent);
        }
        assert!(sweep.try_wait().unwrap().is_none(), "the sweep ended before it could be killed");
        assert!(started.elapsed() < Duration::from_secs(300), "rung 1 never finished a trial");
        std::thread::sleep(Duration::from_millis(10));
    };
    let target = if with_workers { format!("-{}", sweep.id()) } else { sweep.id().to_string() };
    assert!(Command::new("kill").args(["-KILL", "--", &target]).status().unwrap().success());
    sweep.wait().unwrap();
    if with_workers {
        // The killed workers' locks go with them, a moment after the sweep's.
        let killed = Instant::now();
        while !runs_at(store, &parent, "3", RecordStatus::Running).is_empty() {
            assert!(killed.elapsed() < Duration::from_secs(30), "a killed worker's run still records");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    assert_eq!(finished_at(store, &parent, "1"), 9, "rung 0 was trained and promoted before the kill");
    (plan, parent)
}

/// The kill may fall after a run wrote its reports: as if it had, each dead run's directory names
/// it, which its trial trained again must replace.
fn leave_reports(plan: &Path, out: &Path, dead: &[RunRecord]) {
    let planned: serde_json::Value = serde_json::from_slice(&std::fs::read(plan).unwrap()).unwrap();
    let labels: Vec<&str> =
        planned["points"].as_array().unwrap().iter().map(|p| p["label"].as_str().unwrap()).collect();
    for run in dead {
        let trial = labels.iter().position(|&l| l == run.run_name).unwrap();
        let dir = out.join(format!("{:02}-{}_rung_1", trial + 1, run.run_name));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("metrics.json"), format!("{{\"run_id\": \"{}\"}}", run.run_id)).unwrap();
    }
}

/// Each trial's rungs finished once (those done before the kill not again), nine in rung 0 and
/// three in rung 1 continuing from their checkpoints; only the `dead` runs (those the kill
/// stopped) did not finish.
fn each_trial_trained_once(store: &Path, parent: &str, before: &[RunRecord], dead: &[RunRecord]) {
    let runs = children(store, parent);
    let mut finished: BTreeMap<(String, String), Vec<&RunRecord>> = BTreeMap::new();
    for run in runs.iter().filter(|r| r.status == RecordStatus::Finished) {
        finished.entry((run.run_name.clone(), run.params["epochs"].clone())).or_default().push(run);
    }
    assert!(finished.values().all(|r| r.len() == 1), "each trial's rung finished once: {:?}", finished.keys());
    assert_eq!(finished.keys().filter(|(_, e)| e == "1").count(), 9, "no trial lost in rung 0");
    assert_eq!(finished.keys().filter(|(_, e)| e == "3").count(), 3, "no trial lost in rung 1");
    for run in before.iter().filter(|r| r.status == RecordStatus::Finished) {
        let key = (run.run_name.clone(), run.params["epochs"].clone());
        assert_eq!(finished[&key][0].run_id, run.run_id, "{key:?} was trained again after the resume");
    }
    for ((name, epochs), found) in finished.iter().filter(|((_, e), _)| e == "3") {
        // A promoted trial continued from its rung 0 checkpoint: 1 epoch there, 2 here.
        let steps: Vec<i64> = found[0].metric_history("train_loss").iter().map(|m| m.step).collect();
        assert_eq!(steps, [2, 3], "{name} {epochs}");
    }
    let mut unfinished: Vec<&str> =
        runs.iter().filter(|r| r.status != RecordStatus::Finished).map(|r| r.run_id.as_str()).collect();
    let mut killed: Vec<&str> = dead.iter().map(|r| r.run_id.as_str()).collect();
    unfinished.sort();
    killed.sort();
    assert_eq!(unfinished, killed, "only the runs the kill stopped are left unfinished");
}
