//! `engine runs compare`: the runs of an experiment side by side, ranked by a metric, with their
//! cost, the best marked and the cheaper run worth keeping recommended.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args;
use engine::analysis::{self, Direction, Ranking, RunSummary, format_seconds, group_thousands, keys, short_id};
use engine::search::RUNG_METRIC;
use engine::tracking::Source;
use serde_json::{Value, json};

use super::{TrackingArgs, UsageError};

#[derive(Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub tracking: TrackingArgs,
    /// The metric to rank by (its latest value).
    #[arg(long, default_value = keys::TEST_ACCURACY)]
    pub metric: String,
    /// max or min [default: min for losses, errors, times and sizes, else max].
    #[arg(long, value_parser = super::choice::<Direction>(), ignore_case = true)]
    pub direction: Option<Direction>,
    /// Show only the N best runs.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub top: Option<u64>,
    /// Recommend the cheapest run whose metric is within this (absolute) distance of the best.
    #[arg(long, default_value_t = analysis::DEFAULT_TOLERANCE)]
    pub tolerance: f64,
    /// Only the child runs of this run (e.g. one sweep), by id or unique prefix.
    #[arg(long)]
    pub parent: Option<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: CompareArgs) -> anyhow::Result<ExitCode> {
    if !(args.tolerance >= 0.0 && args.tolerance.is_finite()) {
        return Err(UsageError(format!("--tolerance must be a number >= 0, got {}", args.tolerance)).into());
    }
    if args.metric.trim().is_empty() {
        return Err(UsageError("--metric must name a metric, e.g. test_accuracy".into()).into());
    }
    let config = args.tracking.config(None);
    let source = Source::open(&config)?;
    let mut runs = source.experiment_runs(&config.experiment)?;
    if let Some(parent) = &args.parent {
        let parent_id = resolve_parent(&runs, parent)?;
        runs.retain(|r| r.parent_run_id.as_deref() == Some(parent_id.as_str()));
    }
    if runs.is_empty() {
        eprintln!("no runs of experiment {:?} in the {}", config.experiment, source.describe());
    }
    let direction = args.direction.unwrap_or_else(|| Direction::for_metric(&args.metric));
    let ranking = analysis::rank(&runs, &args.metric, direction, args.tolerance);
    if !runs.is_empty() && ranking.order.is_empty() {
        let known: std::collections::BTreeSet<&str> =
            runs.iter().flat_map(|r| r.metrics.keys().map(String::as_str)).collect();
        return Err(UsageError(format!(
            "--metric {}: no run of experiment {:?} has it; recorded metrics: {}",
            args.metric,
            config.experiment,
            known.into_iter().collect::<Vec<_>>().join(", ")
        ))
        .into());
    }
    let top = args.top.map(|n| n as usize);
    if args.json {
        let mut value = comparison_json(&runs, &ranking, top);
        value["experiment"] = json!(config.experiment);
        value["source"] = json!(source.describe());
        println!("{value}");
    } else {
        print!("{}", render_comparison(&runs, &ranking, top));
    }
    Ok(ExitCode::SUCCESS)
}

/// The full id of the run `prefix` names among `runs` (exact id, or a unique prefix of 4+).
fn resolve_parent(runs: &[RunSummary], prefix: &str) -> anyhow::Result<String> {
    if runs.iter().any(|r| r.run_id == prefix) {
        return Ok(prefix.to_string());
    }
    let matches: Vec<&str> =
        runs.iter().map(|r| r.run_id.as_str()).filter(|id| prefix.len() >= 4 && id.starts_with(prefix)).collect();
    match matches.as_slice() {
        [one] => Ok(one.to_string()),
        [] => Err(UsageError(format!("--parent {prefix}: no run of the experiment has that id")).into()),
        many => Err(UsageError(format!("--parent {prefix} is ambiguous: {}", many.join(", "))).into()),
    }
}

fn metric_text(run: &RunSummary, key: &str, decimals: usize) -> String {
    run.metric(key).map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

/// The notes column: best, recommended, overfitting.
fn notes(index: usize, ranking: &Ranking, run: &RunSummary) -> Vec<String> {
    let mut notes = Vec::new();
    if ranking.best == Some(index) {
        notes.push("best".to_string());
    }
    if ranking.recommended.as_ref().is_some_and(|r| r.index == index) {
        notes.push("recommended".to_string());
    }
    notes.extend(run.overfitting().map(|o| o.flag()));
    notes
}

/// The table, then the best run, the recommendation with its reason, and overfitting flags.
pub fn render_comparison(runs: &[RunSummary], ranking: &Ranking, top: Option<usize>) -> String {
    let metric = ranking.metric.as_str();
    let mut header: Vec<String> =
        ["RANK", "RUN", "NAME", "MODEL", "LR", "BATCH", "HIDDEN", "OPTIMIZER", "EPOCHS"].map(String::from).to_vec();
    // Runs of a successive-halving search show the rung each reached.
    let rungs = runs.iter().any(|r| r.metric(RUNG_METRIC).is_some());
    if rungs {
        header.push("RUNG".into());
    }
    let mut extra = vec![metric.to_string()];
    for key in [keys::TEST_ACCURACY, keys::TEST_LOSS] {
        if key != metric {
            extra.push(key.to_string());
        }
    }
    header.extend(extra.iter().map(|k| k.to_uppercase()));
    header.extend(
        ["TRAIN_S", "SAMPLES/S", "PARAMS", "INFER_MS@64", "INFER_MS@1000", "PEAK_MB", "NOTES"].map(String::from),
    );
    let shown = ranking.order.iter().take(top.unwrap_or(usize::MAX));
    let rows: Vec<Vec<String>> = shown
        .enumerate()
        .map(|(position, &i)| {
            let r = &runs[i];
            let param = |k: &str| r.param(k).unwrap_or("-").to_string();
            let mut row = vec![
                (position + 1).to_string(),
                short_id(&r.run_id).to_string(),
                r.run_name.clone(),
                param("model"),
                param("learning_rate"),
                param("batch_size"),
                param("hidden"),
                param("optimizer"),
                param("epochs"),
            ];
            if rungs {
                row.push(metric_text(r, RUNG_METRIC, 0));
            }
            row.extend(extra.iter().map(|k| metric_text(r, k, 4)));
            row.extend([
                r.metric(keys::TRAIN_SECONDS).map_or_else(|| "-".into(), format_seconds),
                metric_text(r, keys::SAMPLES_PER_SECOND, 0),
                r.metric(keys::PARAMETER_COUNT).map_or_else(|| "-".into(), group_thousands),
                metric_text(r, keys::INFERENCE_MS_64, 2),
                metric_text(r, keys::INFERENCE_MS_1000, 2),
                metric_text(r, keys::PEAK_RSS_MB, 0),
                notes(i, ranking, r).join(", "),
            ]);
            row
        })
        .collect();
    let mut out = table(&header, &rows);
    summary_lines(&mut out, runs, ranking);
    out
}

fn summary_lines(out: &mut String, runs: &[RunSummary], ranking: &Ranking) {
    let metric = &ranking.metric;
    if !ranking.missing.is_empty() {
        let n = ranking.missing.len();
        let _ = writeln!(out, "({n} run{} without {metric} not shown)", if n == 1 { "" } else { "s" });
    }
    let Some(best) = ranking.best else {
        let _ = writeln!(out, "no run has {metric}");
        return;
    };
    let b = &runs[best];
    let _ = writeln!(
        out,
        "\nbest ({} {metric}): {} {} {metric}={}",
        ranking.direction.as_str(),
        short_id(&b.run_id),
        b.run_name,
        metric_text(b, metric, 4)
    );
    if let Some(rec) = &ranking.recommended {
        let r = &runs[rec.index];
        let _ = writeln!(out, "recommended: {} {}: {}", short_id(&r.run_id), r.run_name, rec.reason);
    }
    for &i in &ranking.order {
        if let Some(o) = runs[i].overfitting() {
            let _ = writeln!(out, "overfitting: {} {}: {}", short_id(&runs[i].run_id), runs[i].run_name, o.describe());
        }
    }
}

/// Left-aligned columns, two spaces apart.
pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The comparison for scripts: every ranked run with its params, metrics and flags.
pub fn comparison_json(runs: &[RunSummary], ranking: &Ranking, top: Option<usize>) -> Value {
    let entry = |position: usize, i: usize| {
        let r = &runs[i];
        let metrics: BTreeMap<&String, &f64> = r.metrics.iter().filter(|(_, v)| v.is_finite()).collect();
        json!({
            "rank": position + 1,
            "run_id": r.run_id,
            "run_name": r.run_name,
            "status": r.status,
            "value": r.metric(&ranking.metric),
            "best": ranking.best == Some(i),
            "recommended": ranking.recommended.as_ref().is_some_and(|rec| rec.index == i),
            "overfitting": r.overfitting(),
            "params": r.params,
            "metrics": metrics,
        })
    };
    let ranked: Vec<Value> =
        ranking.order.iter().take(top.unwrap_or(usize::MAX)).enumerate().map(|(p, &i)| entry(p, i)).collect();
    json!({
        "metric": ranking.metric,
        "direction": ranking.direction,
        "tolerance": ranking.tolerance,
        "best": ranking.best.map(|i| &runs[i].run_id),
        "recommended": ranking.recommended.as_ref().map(|r| json!({"run_id": runs[r.index].run_id, "reason": r.reason})),
        "runs": ranked,
        "without_metric": ranking.missing.iter().map(|&i| &runs[i].run_id).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let t = table(&["A".into(), "BB".into()], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }
}
