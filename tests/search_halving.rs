//! Successive halving through the binary, in the local store: rung 0 trains every trial, the
//! best 1/eta go on from their checkpoints (logging only their new epochs) and the rest are
//! tagged pruned; the parent holds the search and its budget. A sweep killed mid-rung resumes
//! with each trial trained once; the plan/index/promote steps a scheduler runs decide the same
//! promotions and summary as one process; bad halving flags and a plan edited by hand into
//! nonsense exit 2 naming the flag or the line. `engine runs analyze` reads the rungs back.

#[path = "common/cli.rs"]
mod cli;

#[path = "common/halving.rs"]
mod halving;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use cli::{clean_env, empty_dir, engine, json_line, stderr, stdout};
use engine::tracking::{LocalStore, RecordStatus, RunRecord};
use halving::tiny_halving;

fn sweep(args: &[String], more: &[&str], store: &Path) -> std::process::Output {
    let mut full: Vec<&str> = vec!["sweep"];
    full.extend(args.iter().map(String::as_str));
    full.extend(more);
    engine(&full, store, None)
}

fn children(store: &Path, parent: &str) -> Vec<RunRecord> {
    let runs = LocalStore::open(store).unwrap().list_runs(Some("fashion-mnist")).unwrap_or_default();
    runs.into_iter().filter(|r| r.tags.get("mlflow.parentRunId").map(String::as_str) == Some(parent)).collect()
}

/// Finished runs per (trial name, epochs).
fn finished(store: &Path, parent: &str) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for run in children(store, parent).into_iter().filter(|r| r.status == RecordStatus::Finished) {
        *counts.entry((run.run_name.clone(), run.params["epochs"].clone())).or_default() += 1;
    }
    counts
}

fn final_metric(run: &RunRecord, key: &str) -> f64 {
    run.latest_metrics()[key].value
}

#[test]
fn halving_promotes_the_best_of_each_rung_from_their_checkpoints() {
    let dir = empty_dir("halving-e2e");
    let store = dir.join("store");
    let out = dir.join("out");
    let output = sweep(&tiny_halving("7", "500"), &["--json", "--output-dir", out.to_str().unwrap()], &store);
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = json_line(&output);
    assert_eq!(summary["status"], "FINISHED");
    let parent_id = summary["parent_run_id"].as_str().unwrap();

    let runs = children(&store, parent_id);
    assert_eq!(runs.len(), 6 + 2, "six trials in rung 0, two promoted");
    let rung0: Vec<&RunRecord> = runs.iter().filter(|r| r.params["epochs"] == "1").collect();
    let mut ranked: Vec<(f64, &str)> =
        rung0.iter().map(|r| (final_metric(r, "val_loss"), r.run_name.as_str())).collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut promoted: Vec<&str> =
        runs.iter().filter(|r| r.params["epochs"] == "3").map(|r| r.run_name.as_str()).collect();
    promoted.sort();
    let mut best_two: Vec<&str> = ranked[..2].iter().map(|(_, n)| *n).collect();
    best_two.sort();
    assert_eq!(promoted, best_two, "the two lowest val_loss of rung 0 go on: {ranked:?}");
    for run in &runs {
        let rung = final_metric(run, "rung");
        let pruned = run.tags.get("engine.pruned").cloned();
        if run.params["epochs"] == "3" {
            assert_eq!(rung, 1.0);
            // Continued from the checkpoint: only epochs 2 and 3 are trained and logged.
            let steps: Vec<i64> = run.metric_history("train_loss").iter().map(|m| m.step).collect();
            assert_eq!(steps, [2, 3], "{}", run.run_name);
            assert_eq!(pruned, None);
        } else if best_two.contains(&run.run_name.as_str()) {
            assert_eq!((rung, pruned), (0.0, None));
        } else {
            assert_eq!((rung, pruned.as_deref()), (0.0, Some("rung 0")), "{}", run.run_name);
        }
    }
    let parent = LocalStore::open(&store).unwrap().list_runs(Some("fashion-mnist")).unwrap();
    let parent = parent.iter().find(|r| r.run_id == parent_id).unwrap();
    assert_eq!(parent.params["search_strategy"], "halving");
    assert_eq!(parent.params["search_rung_epochs"], "1,3");
    assert_eq!(parent.params["search_metric"], "val_loss");
    assert_eq!(parent.params["search_planned_epochs"], "10");
    assert_eq!(final_metric(parent, "budget_epochs"), 10.0, "6 x 1 epoch + 2 x 2 more");
    assert!(final_metric(parent, "budget_train_seconds") > 0.0);
    let best = &parent.tags["engine.best_trial"];
    assert!(promoted.contains(&best.as_str()) || rung0.iter().any(|r| &r.run_name == best));
    assert!(parent.tags["engine.best_config"].contains("learning_rate="));
    assert!(!out.join("sweep-".to_string() + parent_id).with_extension("checkpoints").exists(), "checkpoints removed");
    analyze_reads_the_rungs(&dir, &store, parent_id, &runs, &best_two);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `engine runs analyze` of the search's parent lists its rungs; of a trial, the rung it reached.
fn analyze_reads_the_rungs(dir: &Path, store: &Path, parent_id: &str, runs: &[RunRecord], promoted: &[&str]) {
    let out = dir.join("analysis");
    let analyze = |id: &str, json: bool| {
        let mut args = vec!["runs", "analyze", id, "--output-dir", out.to_str().unwrap()];
        args.extend(json.then_some("--json"));
        let output = engine(&args, store, None);
        assert!(output.status.success(), "{}", stderr(&output));
        output
    };
    let text = stdout(&analyze(parent_id, false));
    let line = format!(
        "Successive halving (search {}): rung 0 (1 epoch): 6 trials, 6 epochs spent, 4 pruned (",
        &parent_id[..8]
    );
    assert!(text.contains(&line), "{text}");
    assert!(text.contains("; rung 1 (3 epochs): 2 trials, 4 epochs spent; 10 epochs in all."), "{text}");
    let search = |id: &str| json_line(&analyze(id, true))["search"].clone();
    let parent = search(parent_id);
    assert_eq!(parent["trial"], serde_json::Value::Null);
    let mut kept: Vec<&str> =
        parent["rungs"][1]["trials"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    kept.sort();
    assert_eq!(kept, promoted);
    let pruned = runs.iter().find(|r| r.tags.contains_key("engine.pruned")).unwrap();
    let place = search(&pruned.run_id)["trial"].clone();
    assert_eq!((place["reached"].as_u64(), place["pruned"].as_bool()), (Some(0), Some(true)), "{place}");
    let last = runs.iter().find(|r| r.params["epochs"] == "3").unwrap();
    let place = search(&last.run_id)["trial"].clone();
    assert_eq!(
        (place["run_rung"].as_u64(), place["reached"].as_u64(), place["pruned"].as_bool()),
        (Some(1), Some(1), Some(false))
    );
    let first = runs.iter().find(|r| r.run_name == last.run_name && r.params["epochs"] == "1").unwrap();
    let text = stdout(&analyze(&first.run_id, false));
    assert!(text.contains(&format!("trial {} (this run: rung 0) reached rung 1, the last;", last.run_name)), "{text}");
}

#[test]
fn a_sweep_killed_mid_rung_resumes_training_each_trial_once() {
    let dir = empty_dir("halving-resume");
    let store = dir.join("store");
    let out = dir.join("out");
    let args = tiny_halving("3", "6000");
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    command.arg("sweep").args(&args).args(["--output-dir", out.to_str().unwrap()]);
    let mut child = clean_env(&mut command, &store, None)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed (SIGKILL, no chance to clean up) once two trials of rung 0 are done.
    let plan = loop {
        let plans: Vec<_> = std::fs::read_dir(&out).into_iter().flatten().flatten().map(|e| e.path()).collect();
        let plan = plans.into_iter().find(|p| p.extension().is_some_and(|e| e == "json"));
        if let Some(plan) = plan {
            let parent = plan.file_stem().unwrap().to_str().unwrap().trim_start_matches("sweep-").to_string();
            if finished(&store, &parent).len() >= 2 {
                break (plan, parent);
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended before it could be killed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let (plan, parent) = plan;
    let before = finished(&store, &parent);
    assert!(before.len() < 6, "killed in rung 0: {before:?}");

    let output = engine(&["sweep", "--resume", plan.to_str().unwrap(), "--json"], &store, None);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json_line(&output)["status"], "FINISHED");
    let after = finished(&store, &parent);
    assert!(after.values().all(|&n| n == 1), "each trial and rung finished once: {after:?}");
    assert_eq!(after.keys().filter(|(_, e)| e == "1").count(), 6, "no trial lost: {after:?}");
    assert_eq!(after.keys().filter(|(_, e)| e == "3").count(), 2);
    for key in before.keys() {
        assert_eq!(after[key], 1, "{key:?} was not trained again");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn scheduler_steps_give_the_one_process_summary_and_bad_input_exits_2() {
    let dir = empty_dir("halving-plan");
    let args = tiny_halving("5", "500");
    let one = dir.join("one-store");
    let output = sweep(&args, &["--json", "--output-dir", dir.join("one").to_str().unwrap()], &one);
    let alone = json_line(&output);

    let store = dir.join("store");
    let plan = dir.join("plan.json");
    let p = plan.to_str().unwrap();
    let output = sweep(&args, &["--plan", p, "--output-dir", dir.join("plan-out").to_str().unwrap()], &store);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut entries = 6;
    let mut rungs = 0;
    while entries > 0 {
        for i in 0..entries {
            let output = engine(&["sweep", "--plan", p, "--index", &i.to_string()], &store, None);
            assert!(output.status.success(), "index {i}: {}", stderr(&output));
        }
        let output = engine(&["sweep", "--plan", p, "--promote"], &store, None);
        assert!(output.status.success(), "{}", stderr(&output));
        entries = stdout(&output).trim().parse().unwrap();
        rungs += 1;
    }
    assert_eq!(rungs, 2);
    let summary = json_line(&engine(&["sweep", "--plan", p, "--summarize", "--json"], &store, None));
    assert_eq!(summary["status"], "FINISHED");
    let ranked = |s: &serde_json::Value| -> Vec<(String, String, String)> {
        let runs = s["runs"].as_array().unwrap().iter();
        runs.map(|r| (r["run_name"].to_string(), r["params"]["epochs"].to_string(), r["value"].to_string())).collect()
    };
    assert_eq!(ranked(&summary), ranked(&alone), "the scheduler's steps rank as one process does");

    let text = std::fs::read_to_string(&plan).unwrap();
    let refused = |name: &str, text: &str, says: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let output = engine(&["sweep", "--plan", path.to_str().unwrap(), "--index", "0"], &store, None);
        assert_eq!(output.status.code(), Some(2), "{name}: {}", stderr(&output));
        assert!(stderr(&output).contains(says), "{name}: {}", stderr(&output));
    };
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
    value["schedule"]["rungs"][1] = serde_json::json!([0, 99]);
    let edited = serde_json::to_string_pretty(&value).unwrap();
    let line = edited.lines().position(|l| l.trim_start().starts_with("\"rungs\"")).unwrap() + 1;
    refused("promoted.json", &edited, &format!("line {line} (schedule.rungs[1][1]): trial 99 was not in rung 0"));
    value = serde_json::from_str(&text).unwrap();
    value["schedule"]["halving"]["eta"] = 1.into();
    refused("eta.json", &serde_json::to_string_pretty(&value).unwrap(), "(schedule.halving.eta): must be at least 2");
    value = serde_json::from_str(&text).unwrap();
    value["points"][2]["config"]["lr"] = (-1.0).into();
    refused("lr.json", &serde_json::to_string_pretty(&value).unwrap(), "(points[2].config): --lr");
    refused("cut.json", &text[..text.len() / 2], "is not a sweep plan");

    let bad = |more: &[&str], says: &str| {
        let mut all: Vec<&str> = vec!["sweep", "--search", "halving", "--trials", "6", "--space", "lr=uniform(0.1,1)"];
        all.extend(more);
        all.extend(["--data-dir", "/nonexistent"]);
        let output = engine(&all, &store, None);
        assert_eq!(output.status.code(), Some(2), "{more:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(says), "{more:?}: {}", stderr(&output));
    };
    bad(&["--eta", "1", "--epochs", "9"], "--eta 1: each rung keeps 1/eta");
    bad(&["--min-epochs", "4", "--epochs", "3"], "--epochs 3 is smaller than one rung (--min-epochs 4)");
    bad(&["--epochs", "2"], "--epochs 2 holds one rung only");
    bad(&["--epochs", "9", "--metric", "speed"], "--metric speed: rungs are ranked by one of");
    bad(&["--epochs", "9", "--val-split", "0"], "--metric val_loss needs a validation split");
    bad(&["--epochs", "9", "--space", "epochs=int(1,3)"], "--space epochs: successive halving sets each rung's epochs");
    let output = engine(&["sweep", "--eta", "3", "--data-dir", "/nonexistent"], &store, None);
    assert!(stderr(&output).contains("--eta is for --search halving"), "{}", stderr(&output));
    let _ = std::fs::remove_dir_all(&dir);
}
