//! Views of the local store for `engine runs list` / `engine runs show`: tables for people,
//! JSON (`--json`) for programs, built from the same records.

use std::fmt::Write as _;
use std::path::Path;

use engine::tracking::util::{
    format_duration_ms, format_utc, format_value, metric_value_json, now_ms, redact_uri, truncate_chars,
};
use engine::tracking::{LocalStore, RunRecord, TrackingError};
use serde_json::{Value, json};

/// Prints text meant for people: on stdout, or on stderr when stdout carries a `--json`
/// document, which must stay alone there. A reader that went away (`engine train | head -3`)
/// does not stop the command: what it would have read is dropped.
pub fn say(json: bool, text: &str) {
    use std::io::Write;
    let _ = if json { writeln!(std::io::stderr(), "{text}") } else { writeln!(std::io::stdout(), "{text}") };
}

/// The runs of the store at `root` (of one experiment, when given), as a table, newest first.
pub fn runs_list(root: &Path, experiment: Option<&str>) -> Result<String, TrackingError> {
    let store = LocalStore::open(root)?;
    let runs = store.list_runs(experiment)?;
    if runs.is_empty() {
        return Ok(match experiment {
            Some(e) => format!("no runs of experiment {e:?} in {}\n", root.display()),
            None => format!("no runs in {}\n", root.display()),
        });
    }
    Ok(format_run_list(&runs))
}

/// Up to three headline metrics: accuracy-like and loss-like keys first.
fn headline_metrics(r: &RunRecord) -> String {
    let latest = r.latest_metrics();
    let mut keys: Vec<&String> = latest.keys().collect();
    let rank = |k: &str| {
        if k.contains("test") && k.contains("acc") {
            0
        } else if k.contains("acc") {
            1
        } else if k.contains("loss") {
            2
        } else {
            3
        }
    };
    keys.sort_by_key(|k| (rank(k), k.as_str()));
    keys.iter().take(3).map(|k| format!("{k}={}", format_value(latest[*k].value))).collect::<Vec<_>>().join(" ")
}

/// A table of runs: id, name, experiment, status, start, duration, sync state, headline metrics.
pub fn format_run_list(runs: &[RunRecord]) -> String {
    let rows: Vec<[String; 8]> = runs
        .iter()
        .map(|r| {
            let dur = match r.duration_ms() {
                Some(d) => format_duration_ms(d),
                None if r.status == engine::tracking::RecordStatus::Running => {
                    format!("{}+", format_duration_ms(now_ms() - r.start_time_ms))
                }
                None => "-".to_string(),
            };
            [
                r.run_id.clone(),
                truncate_chars(&r.run_name, 28).to_string(),
                truncate_chars(&r.experiment, 20).to_string(),
                r.status.label().to_string(),
                format_utc(r.start_time_ms),
                dur,
                r.sync_state().to_string(),
                headline_metrics(r),
            ]
        })
        .collect();
    let header = ["RUN ID", "NAME", "EXPERIMENT", "STATUS", "STARTED (UTC)", "DURATION", "SYNC", "METRICS"];
    let rows: Vec<Vec<String>> = rows.into_iter().map(Vec::from).collect();
    super::compare::table(&header.map(String::from), &rows)
}

/// Everything about one run: identity, status, times, server, params, tags, metrics
/// (last/min/max per key, steps, points), artifacts.
pub fn format_run_show(r: &RunRecord) -> String {
    let mut o = String::new();
    write_run_identity(&mut o, r);
    write_run_whereabouts(&mut o, r);
    write_run_params_and_tags(&mut o, r);
    write_run_metrics(&mut o, r);
    write_run_artifacts(&mut o, r);
    o
}

/// `runs show`: the id, name, experiment, status, user, start and end.
fn write_run_identity(o: &mut String, r: &RunRecord) {
    let _ = writeln!(o, "run         {}", r.run_id);
    let _ = writeln!(o, "name        {}", r.run_name);
    let _ = writeln!(o, "experiment  {}", r.experiment);
    let _ = writeln!(o, "status      {}", r.status.label());
    let _ = writeln!(o, "user        {}", r.user);
    let _ = writeln!(o, "started     {} UTC", format_utc(r.start_time_ms));
    match r.end_time_ms {
        Some(e) => {
            let _ = writeln!(o, "ended       {} UTC ({})", format_utc(e), format_duration_ms(e - r.start_time_ms));
        }
        None => {
            let _ = writeln!(
                o,
                "ended       - ({})",
                if r.is_unfinished() {
                    "unfinished: the recording process stopped before the run ended"
                } else {
                    "still running"
                }
            );
        }
    }
}

/// `runs show`: the run's directory, its sync state, its server runs and skipped metric lines.
fn write_run_whereabouts(o: &mut String, r: &RunRecord) {
    let _ = writeln!(o, "local       {}", r.dir.display());
    let _ = writeln!(o, "sync        {}", r.sync_state());
    for rem in &r.remotes {
        let _ = writeln!(
            o,
            "server      {} run {} (experiment {}){}",
            rem.tracking_uri,
            rem.run_id,
            rem.experiment_id,
            if rem.synced { "" } else { " - unsynced" }
        );
    }
    if r.remotes.is_empty()
        && let Some(u) = &r.tracking_uri
    {
        let _ = writeln!(o, "server      {u} (never reached)");
    }
    if r.skipped_metric_lines > 0 {
        let _ = writeln!(
            o,
            "note        {} unreadable line(s) in metrics.jsonl skipped (torn write)",
            r.skipped_metric_lines
        );
    }
}

/// `runs show`: the params, then the tags (the user's before `mlflow.` ones).
fn write_run_params_and_tags(o: &mut String, r: &RunRecord) {
    let _ = writeln!(o, "\nparams ({})", r.params.len());
    let pw = r.params.keys().map(|k| k.chars().count()).max().unwrap_or(0);
    for (k, v) in &r.params {
        let _ = writeln!(o, "  {k:<pw$}  {}", truncate_chars(v, 200));
    }

    let (system, user): (Vec<_>, Vec<_>) = r.tags.iter().partition(|(k, _)| k.starts_with("mlflow."));
    let _ = writeln!(o, "\ntags ({})", r.tags.len());
    let tw = r.tags.keys().map(|k| k.chars().count()).max().unwrap_or(0);
    for (k, v) in user.iter().chain(system.iter()) {
        let _ = writeln!(o, "  {k:<tw$}  {}", truncate_chars(v, 200));
    }
}

/// `runs show`: one row per metric key, with its last, lowest and highest value, steps and points.
fn write_run_metrics(o: &mut String, r: &RunRecord) {
    let keys = r.metric_keys();
    let _ = writeln!(o, "\nmetrics ({} keys, {} points)", keys.len(), r.metrics.len());
    if !keys.is_empty() {
        let kw = keys.iter().map(|k| k.chars().count()).max().unwrap_or(0).max(3);
        let _ = writeln!(
            o,
            "  {:<kw$}  {:>12}  {:>12}  {:>12}  {:>11}  {:>6}",
            "key", "last", "min", "max", "steps", "points"
        );
        let latest = r.latest_metrics();
        for k in &keys {
            let h = r.metric_history(k);
            let finite: Vec<f64> = h.iter().map(|m| m.value).filter(|v| !v.is_nan()).collect();
            let min = finite.iter().cloned().fold(f64::INFINITY, f64::min);
            let max = finite.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let (smin, smax) =
                (h.iter().map(|m| m.step).min().unwrap_or(0), h.iter().map(|m| m.step).max().unwrap_or(0));
            let steps = if smin == smax { smin.to_string() } else { format!("{smin}..{smax}") };
            let fv = |v: f64| {
                if finite.is_empty() { "NaN".to_string() } else { format_value(v) }
            };
            let _ = writeln!(
                o,
                "  {k:<kw$}  {:>12}  {:>12}  {:>12}  {:>11}  {:>6}",
                format_value(latest[k].value),
                fv(min),
                fv(max),
                steps,
                h.len()
            );
        }
    }
}

/// `runs show`: the artifact files with their sizes.
fn write_run_artifacts(o: &mut String, r: &RunRecord) {
    let total: u64 = r.artifacts.iter().map(|a| a.size).sum();
    let _ = writeln!(o, "\nartifacts ({} files, {} bytes)", r.artifacts.len(), total);
    for a in &r.artifacts {
        let _ = writeln!(o, "  {:>10}  {}", a.size, a.path);
    }
}

/// `runs list --json`: the runs of the store at `root` (of one experiment, when given), newest
/// first, as one JSON array (empty when there are none).
pub fn runs_list_json(root: &Path, experiment: Option<&str>) -> Result<Value, TrackingError> {
    let runs = LocalStore::open(root)?.list_runs(experiment)?;
    Ok(Value::Array(runs.iter().map(run_list_entry).collect()))
}

/// One run of `runs list --json`: who it is, how it ended, whether it reached a server, and the
/// latest value of each metric.
fn run_list_entry(r: &RunRecord) -> Value {
    let metrics: serde_json::Map<String, Value> =
        r.latest_metrics().into_iter().map(|(key, m)| (key, metric_value_json(m.value))).collect();
    json!({
        "run_id": r.run_id,
        "experiment": r.experiment,
        "run_name": r.run_name,
        "status": r.status.label(),
        "sync": r.sync_state(),
        "start_time": format_utc(r.start_time_ms),
        "start_time_ms": r.start_time_ms,
        "end_time_ms": r.end_time_ms,
        "metrics": metrics,
    })
}

/// `runs show --json`: everything `runs show` prints, as one object; `overfitting` is null
/// unless validation loss rose while training loss fell.
pub fn run_show_json(r: &RunRecord, overfitting: Option<&engine::analysis::Overfitting>) -> Value {
    let mut histories: serde_json::Map<String, Value> = serde_json::Map::new();
    for key in r.metric_keys() {
        let points: Vec<Value> = r
            .metric_history(&key)
            .iter()
            .map(|m| json!({"step": m.step, "value": metric_value_json(m.value), "timestamp_ms": m.timestamp_ms}))
            .collect();
        histories.insert(key, Value::Array(points));
    }
    let remotes: Vec<Value> = r
        .remotes
        .iter()
        .map(|rem| {
            json!({
                "tracking_uri": redact_uri(&rem.tracking_uri),
                "run_id": rem.run_id,
                "experiment_id": rem.experiment_id,
                "synced": rem.synced,
            })
        })
        .collect();
    let mut entry = run_list_entry(r);
    entry["user"] = json!(r.user);
    entry["local_dir"] = json!(r.dir);
    entry["servers"] = Value::Array(remotes);
    entry["params"] = json!(r.params);
    entry["tags"] = json!(r.tags);
    entry["metric_history"] = Value::Object(histories);
    entry["artifacts"] = r.artifacts.iter().map(|a| json!({"path": a.path, "size": a.size})).collect();
    entry["overfitting"] = match overfitting {
        Some(o) => json!({"flag": o.flag(), "best_epoch": o.best_epoch, "description": o.describe()}),
        None => Value::Null,
    };
    entry
}
