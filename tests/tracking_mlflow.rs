//! Tracking against a real MLflow server (see `tests/common/mlflow.rs` for how it is found and
//! started). Without `.venv-mlflow` these tests are skipped unless `ENGINE_REQUIRE_MLFLOW=1`.

#[path = "common/mlflow.rs"]
mod mlflow;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use engine::tracking::{
    Auth, LocalStore, LocalTracker, Metric, MirroredTracker, MlflowClient, RecordStatus, RetryPolicy, RunStatus,
    SyncOptions, SyncOutcome, Tracker, TrackingConfig, sync_to, util,
};
use serde_json::json;

struct Tmp(PathBuf);
impl Tmp {
    fn new(name: &str) -> Self {
        Tmp(mlflow::scratch_dir(&format!("engine-tracking-{name}")))
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

fn client(uri: &str) -> MlflowClient {
    let retry = RetryPolicy {
        max_retries: 2,
        backoff_factor: 0.05,
        backoff_max: Duration::from_millis(500),
        timeout: Duration::from_secs(60),
        ..RetryPolicy::default()
    };
    MlflowClient::new(uri, Auth::None, retry).unwrap()
}

fn config(uri: Option<&str>, root: &Path, experiment: &str, name: &str) -> TrackingConfig {
    TrackingConfig {
        tracking_uri: uri.map(str::to_string),
        experiment: experiment.into(),
        run_name: Some(name.into()),
        local_root: root.join("store"),
    }
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The server's whole history of every metric of a run, sorted by (key, step, timestamp).
fn server_points(c: &MlflowClient, run_id: &str, keys: &[String]) -> Vec<(String, i64, i64, String)> {
    let mut out = Vec::new();
    for k in keys {
        for m in c.get_metric_history(run_id, k).unwrap() {
            out.push((m.key, m.step, m.timestamp_ms, format!("{:?}", m.value)));
        }
    }
    out.sort();
    out
}

fn local_points(metrics: &[Metric]) -> Vec<(String, i64, i64, String)> {
    let mut out: Vec<_> =
        metrics.iter().map(|m| (m.key.clone(), m.step, m.timestamp_ms, format!("{:?}", m.value))).collect();
    out.sort();
    out
}

fn server_map(items: &[engine::tracking::KeyValue]) -> BTreeMap<String, String> {
    items.iter().map(|p| (p.key.clone(), p.value.clone())).collect()
}

#[test]
fn run_logged_through_tracker_reads_back_over_rest() {
    let Some(server) = mlflow::shared() else {
        return;
    };
    let tmp = Tmp::new("roundtrip");
    let cfg = config(Some(server.uri()), tmp.path(), "roundtrip", "mlp-h128-e5");
    let c = client(server.uri());
    let mut t = MirroredTracker::new(cfg.clone(), c.clone()).unwrap();

    // 150 params and 120 tags: more than one log-batch each; one param over 6000 chars.
    let mut params: Vec<(String, String)> = (0..150).map(|i| (format!("p{i:03}"), format!("v{i}"))).collect();
    params.push(("long".into(), "x".repeat(7000)));
    let tags: Vec<(String, String)> = (0..120).map(|i| (format!("t{i:03}"), format!("tag {i}"))).collect();
    let id = t.start_run(&params, &tags).unwrap();
    assert!(util::is_run_id(&id));
    assert!(t.is_server_live());
    assert_eq!(t.server_run_id(), Some(id.as_str()));
    assert!(t.describe().starts_with(&format!("MLflow {}", server.uri())), "{}", t.describe());

    // 2 x 1200 points in one call (more than one batch), plus NaN and per-epoch logging.
    let mut all = Vec::new();
    let batch: Vec<Metric> = (0..1200)
        .flat_map(|s| {
            [
                Metric {
                    key: "train_loss".into(),
                    value: 2.0 / (s as f64 + 1.0),
                    step: s,
                    timestamp_ms: 1_700_000_000_000 + s,
                    about: None,
                },
                Metric {
                    key: "lr".into(),
                    value: 0.1 * 0.99f64.powi(s as i32),
                    step: s,
                    timestamp_ms: 1_700_000_000_000 + s,
                    about: None,
                },
            ]
        })
        .collect();
    t.log_metrics(&batch).unwrap();
    all.extend(batch);
    for epoch in 0..5 {
        let m = vec![
            Metric::new("test_accuracy", 0.8 + epoch as f64 * 0.01, epoch),
            Metric::new("odd", if epoch == 2 { f64::NAN } else { epoch as f64 }, epoch),
        ];
        t.log_metrics(&m).unwrap();
        all.extend(m);
    }
    t.log_params(&kv(&[("epochs", "5")])).unwrap();
    t.set_tags(&kv(&[("mlflow.note.content", "round trip test")])).unwrap();

    let report = tmp.path().join("report.json");
    std::fs::write(&report, br#"{"test_accuracy": 0.84}"#).unwrap();
    let png = tmp.path().join("loss curve.png");
    let png_bytes: Vec<u8> = (0..70_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(&png, &png_bytes).unwrap();
    t.log_artifact(&report, "").unwrap();
    t.log_artifact(&png, "plots/train").unwrap();
    t.end_run(RunStatus::Finished).unwrap();
    assert!(t.is_in_sync(), "{:?}", t.last_server_error());

    let local = LocalStore::open(&cfg.local_root).unwrap().load_run(&id).unwrap();
    assert_eq!(local.sync_state(), "synced");
    assert_eq!(local.server_run_id(), Some(id.as_str()));

    let run = c.get_run(&id).unwrap();
    assert_eq!(run.info.status, "FINISHED");
    assert_eq!(run.info.end_time, local.end_time_ms);
    assert_eq!(run.info.start_time, Some(local.start_time_ms));
    assert_eq!(run.info.run_name, "mlp-h128-e5");
    assert_eq!(run.info.user_id, util::current_user());
    let sp = server_map(&run.data.params);
    assert_eq!(sp.len(), 152);
    for (k, v) in &params {
        assert_eq!(sp[k], util::truncate_chars(v, 6000), "param {k}");
    }
    assert_eq!(sp["long"].len(), 6000);
    assert_eq!(sp["epochs"], "5");
    let st = server_map(&run.data.tags);
    for (k, v) in &tags {
        assert_eq!(&st[k], v);
    }
    assert_eq!(st["mlflow.runName"], "mlp-h128-e5");
    assert_eq!(st["mlflow.source.type"], "LOCAL");
    assert_eq!(st["mlflow.user"], util::current_user());
    assert!(st.contains_key("mlflow.source.name"));
    // The commit is the engine build's (this checkout's), whatever directory the run starts in.
    if let Some(commit) = util::build_commit() {
        assert_eq!(st["mlflow.source.git.commit"], commit);
        assert_eq!(st["engine.build.commit"], commit);
    }
    assert_eq!(st["engine.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(st["mlflow.note.content"], "round trip test");
    assert_eq!(st["engine.local_run_id"], id);

    let keys = local.metric_keys();
    assert_eq!(keys.len(), 4);
    assert_eq!(server_points(&c, &id, &keys), local_points(&all));
    assert_eq!(local_points(&local.metrics), local_points(&all));

    let files = c.list_artifacts_recursive(&id).unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["plots/train/loss curve.png", "report.json"]);
    assert_eq!(c.download_artifact(&run.info.artifact_uri, "plots/train/loss curve.png").unwrap(), png_bytes);
    assert_eq!(c.download_artifact(&run.info.artifact_uri, "report.json").unwrap(), std::fs::read(&report).unwrap());

    // Already synced: sync leaves it alone, and a full recheck finds nothing missing.
    let opts = SyncOptions { run_ids: vec![id.clone()], ..SyncOptions::default() };
    let rep = sync_to(&cfg.local_root, &c, &opts).unwrap();
    assert_eq!(rep.runs[0].outcome, SyncOutcome::AlreadySynced);
    let rep = sync_to(&cfg.local_root, &c, &SyncOptions { recheck: true, ..opts }).unwrap();
    assert_eq!(rep.runs[0].outcome, SyncOutcome::Synced);
    assert!(!rep.sent_anything(), "{rep}");
}

#[test]
fn local_runs_are_pushed_by_sync_once() {
    let Some(server) = mlflow::shared() else {
        return;
    };
    let tmp = Tmp::new("push");
    let cfg = config(None, tmp.path(), "pushed", "offline-1");
    let c = client(server.uri());

    // A finished local-only run...
    let mut t = LocalTracker::new(cfg.clone()).unwrap();
    let id = t.start_run(&kv(&[("hidden", "64")]), &kv(&[("k", "v")])).unwrap();
    let pts: Vec<Metric> =
        (0..30).map(|s| Metric::new("loss", if s == 7 { f64::NAN } else { 1.0 / (s + 1) as f64 }, s)).collect();
    t.log_metrics(&pts).unwrap();
    t.log_metrics(&pts[..2]).unwrap(); // the same points logged twice: the server keeps one
    let f = tmp.path().join("weights.bin");
    std::fs::write(&f, vec![7u8; 3000]).unwrap();
    t.log_artifact(&f, "model").unwrap();
    t.end_run(RunStatus::Killed).unwrap();
    drop(t);
    // ...and one whose process died.
    let mut u = LocalTracker::new(TrackingConfig { run_name: Some("died".into()), ..cfg.clone() }).unwrap();
    let dead = u.start_run(&[], &[]).unwrap();
    u.log_metrics(&[Metric::new("loss", 0.5, 0)]).unwrap();
    drop(u);

    let rep = sync_to(&cfg.local_root, &c, &SyncOptions::default()).unwrap();
    assert_eq!(rep.runs.len(), 2, "{rep}");
    assert_eq!(rep.created(), 2, "{rep}");
    assert_eq!(rep.failed(), 0, "{rep}");
    let text = rep.to_string();
    assert!(text.contains("2 created"), "{text}");

    let store = LocalStore::open(&cfg.local_root).unwrap();
    let rec = store.load_run(&id).unwrap();
    assert_eq!(rec.sync_state(), "synced");
    let sid = rec.server_run_id().unwrap().to_string();
    assert_ne!(sid, id, "the server chose its own id");
    assert_eq!(store.load_run(&sid).unwrap().run_id, id, "found by server id");
    let run = c.get_run(&sid).unwrap();
    assert_eq!(run.info.status, "KILLED");
    assert_eq!(run.info.end_time, rec.end_time_ms);
    assert_eq!(run.info.start_time, Some(rec.start_time_ms));
    assert_eq!(run.info.run_name, "offline-1");
    assert_eq!(run.param("hidden"), Some("64"));
    assert_eq!(run.tag("k"), Some("v"));
    assert_eq!(run.tag("engine.local_run_id"), Some(id.as_str()));
    let keys = vec!["loss".to_string()];
    assert_eq!(rec.metrics.len(), 32);
    let mut distinct = local_points(&rec.metrics);
    distinct.dedup();
    assert_eq!(server_points(&c, &sid, &keys), distinct);
    assert_eq!(distinct.len(), 30);
    assert_eq!(c.download_artifact(&run.info.artifact_uri, "model/weights.bin").unwrap(), vec![7u8; 3000]);

    let died = store.load_run(&dead).unwrap();
    assert_eq!(died.status, RecordStatus::Unfinished);
    assert_eq!(died.sync_state(), "unsynced");
    let died_sid = died.server_run_id().unwrap().to_string();
    assert_eq!(c.get_run(&died_sid).unwrap().info.status, "RUNNING");

    // Again: the finished run is skipped, the unfinished one is compared and nothing is sent.
    let rep = sync_to(&cfg.local_root, &c, &SyncOptions::default()).unwrap();
    assert!(!rep.sent_anything(), "{rep}");
    assert_eq!(rep.created(), 0);
    let rep = sync_to(&cfg.local_root, &c, &SyncOptions { recheck: true, ..SyncOptions::default() }).unwrap();
    assert!(!rep.sent_anything(), "{rep}");
    assert_eq!(server_points(&c, &sid, &keys).len(), 30);
    assert_eq!(server_points(&c, &died_sid, &keys).len(), 1);

    // Ending the dead run on sync: FAILED locally and on the server, end time = its last point.
    let rep = sync_to(
        &cfg.local_root,
        &c,
        &SyncOptions { mark_unfinished: Some(RunStatus::Failed), ..SyncOptions::default() },
    )
    .unwrap();
    assert_eq!(rep.created(), 0, "{rep}");
    let died = store.load_run(&dead).unwrap();
    assert_eq!(died.status, RecordStatus::Failed);
    assert_eq!(died.end_time_ms, Some(died.metrics[0].timestamp_ms));
    assert_eq!(died.sync_state(), "synced");
    let info = c.get_run(&died_sid).unwrap().info;
    assert_eq!(info.status, "FAILED");
    assert_eq!(info.end_time, died.end_time_ms);

    // A lost meta.json reference is recovered through the engine.local_run_id tag: no duplicate.
    let meta_path = rec.dir.join("meta.json");
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["remotes"] = json!([]);
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let rep =
        sync_to(&cfg.local_root, &c, &SyncOptions { run_ids: vec![id.clone()], ..SyncOptions::default() }).unwrap();
    assert_eq!(rep.created(), 0, "{rep}");
    assert!(!rep.sent_anything(), "{rep}");
    assert_eq!(rep.runs[0].server_run_id.as_deref(), Some(sid.as_str()));
}

#[test]
fn experiments_are_got_or_created_race_safely_and_restored() {
    let Some(server) = mlflow::shared() else {
        return;
    };
    let c = client(server.uri());
    let name = format!("race-{}", &util::new_run_id()[..8]);
    let ids: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4).map(|_| s.spawn(|| c.get_or_create_experiment(&name).unwrap())).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(ids.iter().all(|i| i == &ids[0]), "{ids:?}");
    c.post_json("experiments/delete", &json!({ "experiment_id": ids[0] })).unwrap();
    assert_eq!(c.get_experiment(&ids[0]).unwrap().lifecycle_stage, "deleted");
    assert_eq!(c.get_or_create_experiment(&name).unwrap(), ids[0]);
    assert_eq!(c.get_experiment(&ids[0]).unwrap().lifecycle_stage, "active");
}

#[test]
fn server_errors_carry_mlflow_error_codes() {
    let Some(server) = mlflow::shared() else {
        return;
    };
    let c = client(server.uri());
    c.health().unwrap();
    assert!(c.server_version().unwrap().starts_with("3."));
    let err = c.get_run("0123456789abcdef0123456789abcdef").unwrap_err();
    assert_eq!(err.error_code(), Some("RESOURCE_DOES_NOT_EXIST"));
    assert!(err.is_not_found());
    assert!(err.to_string().contains("404"), "{err}");

    let exp = c.get_or_create_experiment("errors").unwrap();
    let info = c.create_run(&exp, "e", util::now_ms(), "u", &[]).unwrap();
    c.log_batch(&info.run_id, &[], &kv(&[("lr", "1")]), &[]).unwrap();
    let err = c.log_batch(&info.run_id, &[], &kv(&[("lr", "2")]), &[]).unwrap_err();
    assert_eq!(err.error_code(), Some("INVALID_PARAMETER_VALUE"));
    assert!(err.to_string().contains("lr"), "{err}");
    assert!(!err.is_server_unavailable());

    // A tracking URI with a wrong path: HTML 404, clearly reported.
    let wrong = client(&format!("{}/wrong/prefix", server.uri()));
    let err = wrong.get_experiment_by_name("x").unwrap_err();
    assert_eq!(err.http_status(), Some(404), "{err}");
    assert!(err.to_string().contains("check the tracking URI"), "{err}");
    assert!(!err.is_not_found(), "a wrong URL is not a missing experiment");
}

#[test]
fn server_killed_mid_run_then_sync_completes_it() {
    let Some(bin) = mlflow::mlflow_or_skip() else {
        return;
    };
    let dir = mlflow::scratch_dir("engine-mlflow-fault");
    let mut server = mlflow::MlflowServer::start_with(bin, dir, mlflow::free_port()).unwrap();
    eprintln!("fault-test server up in {:?}", server.started_in);
    let uri = server.uri().to_string();
    let tmp = Tmp::new("fault");
    let cfg = config(Some(&uri), tmp.path(), "faults", "interrupted");
    let c = client(&uri);
    let mut t = MirroredTracker::new(cfg.clone(), c.clone()).unwrap();
    let id = t.start_run(&kv(&[("epochs", "10")]), &[]).unwrap();
    let f1 = tmp.path().join("early.txt");
    std::fs::write(&f1, "before the crash").unwrap();
    t.log_artifact(&f1, "").unwrap();
    let epoch = |e: i64| {
        vec![Metric::new("train_loss", 1.0 / (e + 1) as f64, e), Metric::new("test_accuracy", 0.5 + e as f64 / 40.0, e)]
    };
    for e in 0..5 {
        t.log_metrics(&epoch(e)).unwrap();
    }
    t.flush().unwrap(); // what the loop logged so far reaches the server
    assert_eq!(t.pending_points(), 0);
    assert!(t.is_server_live());

    server.stop();
    for e in 5..10 {
        t.log_metrics(&epoch(e)).unwrap(); // must not fail: training goes on
    }
    t.flush().unwrap(); // the uplink finds the server gone
    assert!(!t.is_server_live());
    t.log_params(&kv(&[("late_param", "x")])).unwrap();
    t.set_tags(&kv(&[("late_tag", "y")])).unwrap();
    let f2 = tmp.path().join("late.txt");
    std::fs::write(&f2, "after the crash").unwrap();
    t.log_artifact(&f2, "out").unwrap();
    t.end_run(RunStatus::Finished).unwrap();
    assert!(t.describe().contains("unsynced"), "{}", t.describe());

    let store = LocalStore::open(&cfg.local_root).unwrap();
    let rec = store.load_run(&id).unwrap();
    assert_eq!(rec.status, RecordStatus::Finished);
    assert_eq!(rec.metrics.len(), 20);
    assert_eq!(rec.sync_state(), "unsynced");

    // Sync while the server is still down: a clear error, nothing marked.
    let err = sync_to(&cfg.local_root, &c, &SyncOptions::default()).unwrap_err();
    assert!(err.is_server_unavailable(), "{err}");

    server.restart().unwrap();
    eprintln!("fault-test server restarted in {:?}", server.started_in);
    let before = c.get_run(&id).unwrap();
    assert_eq!(before.info.status, "RUNNING");
    let keys = rec.metric_keys();
    assert_eq!(server_points(&c, &id, &keys).len(), 10, "half the run got there live");

    let rep = sync_to(&cfg.local_root, &c, &SyncOptions::default()).unwrap();
    assert_eq!(rep.runs.len(), 1, "{rep}");
    let r = &rep.runs[0];
    assert_eq!(r.outcome, SyncOutcome::Synced, "{rep}");
    assert!(!r.created, "completed, not duplicated: {rep}");
    assert_eq!(r.server_run_id.as_deref(), Some(id.as_str()));
    assert_eq!(r.metrics_sent, 10, "{rep}");
    assert_eq!(r.params_sent, 1, "{rep}");
    assert_eq!(r.artifacts_sent, 1, "{rep}");
    assert!(r.status_updated);

    let after = c.get_run(&id).unwrap();
    assert_eq!(after.info.status, "FINISHED");
    assert_eq!(after.info.end_time, rec.end_time_ms);
    assert_eq!(after.param("late_param"), Some("x"));
    assert_eq!(after.tag("late_tag"), Some("y"));
    assert_eq!(server_points(&c, &id, &keys), local_points(&rec.metrics));
    let files: Vec<String> = c.list_artifacts_recursive(&id).unwrap().into_iter().map(|f| f.path).collect();
    assert_eq!(files, ["early.txt", "out/late.txt"]);
    assert_eq!(c.download_artifact(&after.info.artifact_uri, "out/late.txt").unwrap(), b"after the crash");
    assert_eq!(store.load_run(&id).unwrap().sync_state(), "synced");
    let exp = after.info.experiment_id.clone();
    assert_eq!(c.search_runs(&[exp.as_str()], "", &[], 100).unwrap().len(), 1, "no duplicate run");

    // Syncing again changes nothing.
    let rep = sync_to(&cfg.local_root, &c, &SyncOptions::default()).unwrap();
    assert_eq!(rep.runs[0].outcome, SyncOutcome::AlreadySynced);
    let rep = sync_to(&cfg.local_root, &c, &SyncOptions { recheck: true, ..SyncOptions::default() }).unwrap();
    assert!(!rep.sent_anything(), "{rep}");
    assert_eq!(server_points(&c, &id, &keys).len(), 20);
}

#[test]
fn per_step_points_are_batched_then_flushed() {
    let Some(server) = mlflow::shared() else {
        return;
    };
    let tmp = Tmp::new("batched");
    let cfg = config(Some(server.uri()), tmp.path(), "batched", "per-step");
    let c = client(server.uri());
    let mut t = MirroredTracker::new(cfg, c.clone()).unwrap();
    t.set_flush_interval(Duration::from_secs(3600));
    let id = t.start_run(&[], &[]).unwrap();
    for step in 0..50 {
        t.log_metrics(&[Metric::new("loss", 1.0 / (step + 1) as f64, step)]).unwrap();
    }
    assert_eq!(t.pending_points(), 50);
    assert!(c.get_metric_history(&id, "loss").unwrap().is_empty());
    // still complete locally meanwhile
    let local = LocalStore::open(tmp.path().join("store")).unwrap().load_run(&id).unwrap();
    assert_eq!(local.metrics.len(), 50);
    t.flush().unwrap();
    assert_eq!(t.pending_points(), 0);
    assert_eq!(c.get_metric_history(&id, "loss").unwrap().len(), 50);
    for step in 50..1050 {
        t.log_metrics(&[Metric::new("loss", 0.0, step)]).unwrap();
    }
    // A full batch goes out without waiting for the flush interval (sent in the background).
    let waited = std::time::Instant::now();
    while t.pending_points() > 0 && waited.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(t.pending_points(), 0, "a full batch is not held back");
    assert!(c.get_metric_history(&id, "loss").unwrap().len() >= 1050);
    t.log_metrics(&[Metric::new("loss", 0.0, 1050)]).unwrap();
    t.end_run(RunStatus::Finished).unwrap();
    assert_eq!(c.get_metric_history(&id, "loss").unwrap().len(), 1051);
    assert_eq!(c.get_run(&id).unwrap().info.status, "FINISHED");
}

#[test]
fn runs_still_recording_are_left_alone_by_sync() {
    let Some(server) = mlflow::shared() else {
        return;
    };
    let tmp = Tmp::new("live");
    let cfg = config(None, tmp.path(), "live", "in-progress");
    let c = client(server.uri());
    let mut t = LocalTracker::new(cfg.clone()).unwrap();
    let id = t.start_run(&[], &[]).unwrap();
    t.log_metrics(&[Metric::new("loss", 1.0, 0)]).unwrap();
    let rep = sync_to(&cfg.local_root, &c, &SyncOptions::default()).unwrap();
    assert_eq!(rep.runs.len(), 1);
    assert_eq!(rep.runs[0].outcome, SyncOutcome::SkippedRunning, "{rep}");
    assert!(!rep.sent_anything());
    t.end_run(RunStatus::Finished).unwrap();
    let rep = sync_to(&cfg.local_root, &c, &SyncOptions::default()).unwrap();
    assert_eq!(rep.runs[0].outcome, SyncOutcome::Synced, "{rep}");
    assert_eq!(rep.created(), 1);
    let sid = rep.runs[0].server_run_id.clone().unwrap();
    assert_eq!(c.get_run(&sid).unwrap().tag("engine.local_run_id"), Some(id.as_str()));
}

#[test]
fn runs_nested_offline_keep_their_parent_after_sync() {
    let Some(server) = mlflow::shared() else {
        return;
    };
    let tmp = Tmp::new("nested");
    let c = client(server.uri());
    // A child recorded first (so an unordered sync would meet it before its parent), then the
    // parent it names by the parent's local id, as a sweep does while the server is down.
    let parent_cfg = config(None, tmp.path(), "nested", "sweep");
    let mut parent = LocalTracker::new(parent_cfg.clone()).unwrap();
    let parent_id = parent.start_run(&[], &[]).unwrap();
    let mut child = LocalTracker::new(config(None, tmp.path(), "nested", "child")).unwrap();
    child.start_run(&[], &kv(&[("mlflow.parentRunId", &parent_id)])).unwrap();
    child.end_run(RunStatus::Finished).unwrap();
    parent.end_run(RunStatus::Finished).unwrap();
    drop((parent, child));

    let rep = sync_to(&parent_cfg.local_root, &c, &SyncOptions::default()).unwrap();
    assert_eq!(rep.created(), 2, "{rep}");
    let server_id = |name: &str| rep.runs.iter().find(|r| r.run_name == name).unwrap().server_run_id.clone().unwrap();
    let child_run = c.get_run(&server_id("child")).unwrap();
    assert_eq!(child_run.tag("mlflow.parentRunId"), Some(server_id("sweep").as_str()));
    let again = sync_to(&parent_cfg.local_root, &c, &SyncOptions { recheck: true, ..SyncOptions::default() }).unwrap();
    assert_eq!(again.created(), 0, "{again}");
}
