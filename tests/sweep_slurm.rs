//! Successive halving on a real single-node Slurm cluster (scripts/with-slurm.sh): planned, each
//! rung submitted by docs/sweeps/slurm-sweep.sh as a job array of docs/sweeps/slurm-array.sh,
//! the tasks recording to an MLflow server from a store of their own, so promotions and the
//! summary read what reached MLflow; the outcome equals that of the same search in one process.
//! Without a cluster the test says so and passes, unless `ENGINE_REQUIRE_SLURM=1`.

#[path = "common/mlflow.rs"]
mod mlflow;

#[path = "common/cli.rs"]
mod cli;

#[path = "common/halving.rs"]
mod halving;

use std::io::Write;
use std::process::Command;

use cli::{clean_env, engine, json_line, text};
use engine::tracking::{Auth, MlflowClient, RetryPolicy};
use halving::tiny_halving;

/// Whether scripts/with-slurm.sh runs this test; without it the test fails when
/// `ENGINE_REQUIRE_SLURM=1`, else says why it did nothing.
fn slurm() -> bool {
    if std::env::var_os("ENGINE_SLURM").is_some() {
        return true;
    }
    let required = std::env::var("ENGINE_REQUIRE_SLURM").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    assert!(
        !required,
        "ENGINE_REQUIRE_SLURM is set but no Slurm cluster runs: use scripts/with-slurm.sh cargo test ..."
    );
    // Past the harness's capture, so that a skipped run is seen.
    let _ = writeln!(std::io::stderr(), "SKIPPED: no Slurm cluster (run under scripts/with-slurm.sh)");
    false
}

/// The parent's status and outcome (timings left out, run ids as run names) and each trial's
/// furthest run: name, epochs, test accuracy.
fn outcome(c: &MlflowClient, summary: &serde_json::Value) -> (String, Vec<(String, String)>, Vec<String>) {
    let parent = c.get_run(summary["parent_run_id"].as_str().unwrap()).unwrap();
    let name_of = |id: &str| c.get_run(id).map(|r| r.info.run_name).unwrap_or_default();
    let mut facts: Vec<(String, String)> = parent
        .data
        .metrics
        .iter()
        .filter(|m| !m.key.ends_with("_seconds"))
        .map(|m| (m.key.clone(), format!("{:.6}", m.value)))
        .collect();
    facts.extend(["engine.best_run_id", "engine.best_config"].iter().filter_map(|k| {
        let value = parent.tag(k)?;
        Some((k.to_string(), if k.ends_with("_id") { name_of(value) } else { value.to_string() }))
    }));
    facts.sort();
    let runs = summary["runs"].as_array().unwrap();
    let runs = runs.iter().map(|r| format!("{} {} {}", r["run_name"], r["params"]["epochs"], r["value"])).collect();
    (parent.info.status.clone(), facts, runs)
}

#[test]
fn halving_on_slurm_job_arrays_ends_as_in_one_process() {
    if !slurm() {
        return;
    }
    let Some(server) = mlflow::shared() else { return };
    let dir = mlflow::scratch_dir("sweep-slurm");
    let c = MlflowClient::new(server.uri(), Auth::None, RetryPolicy::default()).unwrap();
    let store = dir.join("a");
    let out = |name: &str| dir.join(name).to_str().unwrap().to_string();

    let (one_dir, split_dir) = (out("one"), out("split"));
    let search = tiny_halving("4", "500");
    let search: Vec<&str> =
        ["sweep", "--json", "--tolerance=0.005"].into_iter().chain(search.iter().map(String::as_str)).collect();
    let one = [&search[..], &["--experiment", "slurm-one", "--output-dir", &one_dir]].concat();
    let one = json_line(&engine(&one, &store, Some(server.uri())));
    let reference = outcome(&c, &one);
    assert_eq!(reference.0, "FINISHED");

    let plan = dir.join("plan.json");
    let planned = [&search[..], &["--experiment", "slurm-split", "--output-dir", &split_dir]].concat();
    let planned = engine(&[&planned[..], &["--plan", plan.to_str().unwrap()]].concat(), &store, Some(server.uri()));
    assert!(planned.status.success(), "{}", text(&planned));
    // The tasks record into a store of their own: what --promote and --summarize read comes
    // from the server.
    let tasks_store = format!("--export=ALL,ENGINE_LOCAL_STORE={}", out("b"));
    let mut driver = Command::new("docs/sweeps/slurm-sweep.sh");
    driver.args([plan.to_str().unwrap(), &tasks_store]).env("PATH", path_with_engine());
    let started = std::time::Instant::now();
    let ran = clean_env(&mut driver, &store, Some(server.uri())).output().unwrap();
    assert!(ran.status.success(), "{}", text(&ran));
    eprintln!("the sweep ran on Slurm in {:.1} s", started.elapsed().as_secs_f64());
    // The driver printed the summary as a table; summarizing again gives it as JSON.
    let summary =
        engine(&["sweep", "--plan", plan.to_str().unwrap(), "--summarize", "--json"], &store, Some(server.uri()));
    let split = outcome(&c, &json_line(&summary));
    assert_eq!(split, reference);
    let tasks = engine::tracking::LocalStore::open(dir.join("b")).unwrap().list_runs(Some("slurm-split")).unwrap();
    assert_eq!(tasks.len(), 6 + 2, "every child was recorded by the tasks, in their own store");
    let experiment = c.get_experiment_by_name("slurm-split").unwrap().expect("the experiment");
    let runs = c.search_runs(&[&experiment.experiment_id], "", &[], 100).unwrap();
    let finished = runs.iter().filter(|r| r.info.status == "FINISHED").count();
    assert_eq!((runs.len(), finished), (6 + 2 + 1, 6 + 2 + 1), "six trials, two promoted, and the parent");
    let pruned = runs.iter().filter(|r| r.tag("engine.pruned").is_some()).count();
    assert_eq!(pruned, 4, "the trials rung 0 stopped are tagged on the server");
}

/// PATH with the engine binary's directory first, for the scripts that call `engine`.
fn path_with_engine() -> String {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_engine")).parent().unwrap().display().to_string();
    format!("{bin}:{}", std::env::var("PATH").unwrap_or_default())
}
