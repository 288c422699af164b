//! `engine sweep`: one training run per point of a hyperparameter grid, nested under a parent
//! run the way MLflow's client nests runs (`mlflow.parentRunId` on each child), so the MLflow UI
//! shows the sweep as one expandable row; the dataset is loaded once for all runs, and a
//! comparison table (best and recommended run) is printed at the end.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use engine::analysis::{self, Direction, RunSummary, keys};
use engine::tracking::{self, LocalStore, Metric, RunStatus, Tracker, TrackingConfig};
use engine::train::{TrainConfig, TrainError};

use super::UsageError;
use super::compare::{PARENT_RUN_ID_TAG, comparison_json, render_comparison, summary_from_record};
use super::train::{Bench, CommonTrainArgs, Hidden, RunSpec, parse_hidden, tracked_run};

/// Tag marking a sweep's parent run.
pub const SWEEP_TAG: &str = "engine.sweep";

#[derive(Args)]
pub struct SweepArgs {
    /// Learning rates to try, comma-separated, e.g. 1e-2,1e-3,1e-4.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true, default_value = "0.05")]
    pub lr: Vec<f64>,
    /// Batch sizes to try, comma-separated, e.g. 64,128.
    #[arg(long, value_delimiter = ',', default_value = "128")]
    pub batch_size: Vec<usize>,
    /// Architectures to try: hidden layer sizes separated by '|', e.g. '256|512,512'.
    #[arg(long, default_value = "512,512", value_parser = parse_hidden_grid)]
    pub hidden: HiddenGrid,
    /// Accuracy within which the cheaper run is recommended in the final table.
    #[arg(long, default_value_t = analysis::DEFAULT_TOLERANCE)]
    pub tolerance: f64,
    /// The flags of `engine train`, applied to every run. --run-name names the parent run,
    /// --output-dir holds one directory per run, --json prints the final comparison as JSON.
    #[command(flatten)]
    pub common: CommonTrainArgs,
}

/// Architectures, each a list of hidden sizes.
#[derive(Clone, Debug)]
pub struct HiddenGrid(pub Vec<Vec<usize>>);

fn parse_hidden_grid(s: &str) -> Result<HiddenGrid, String> {
    s.split('|').map(|part| parse_hidden(part).map(|Hidden(sizes)| sizes)).collect::<Result<_, _>>().map(HiddenGrid)
}

/// One point of the grid.
struct Point {
    config: TrainConfig,
    label: String,
}

/// The grid in order: learning rate, then batch size, then architecture. Every point is
/// validated before anything runs.
fn grid(args: &SweepArgs) -> Result<Vec<Point>, UsageError> {
    let mut points = Vec::new();
    for &lr in &args.lr {
        for &batch_size in &args.batch_size {
            for hidden in &args.hidden.0 {
                let config = args.common.config(lr, batch_size, hidden);
                config.validate().map_err(UsageError)?;
                // Named by what varies, so chart legends tell the runs apart.
                let mut parts = Vec::new();
                if args.lr.len() > 1 || (args.batch_size.len() == 1 && args.hidden.0.len() == 1) {
                    parts.push(format!("lr={lr}"));
                }
                if args.batch_size.len() > 1 {
                    parts.push(format!("bs={batch_size}"));
                }
                if args.hidden.0.len() > 1 {
                    parts.push(format!("hidden={}", join(hidden, ",")));
                }
                points.push(Point { config, label: parts.join(" ") });
            }
        }
    }
    if points.is_empty() {
        return Err(UsageError("the grid is empty: give --lr, --batch-size and --hidden values".into()));
    }
    if !(args.tolerance >= 0.0 && args.tolerance.is_finite()) {
        return Err(UsageError(format!("--tolerance must be a number >= 0, got {}", args.tolerance)));
    }
    Ok(points)
}

fn join<T: ToString>(items: &[T], sep: &str) -> String {
    items.iter().map(T::to_string).collect::<Vec<_>>().join(sep)
}

/// The parent run's params: the grid, and the settings every run shares.
fn parent_params(args: &SweepArgs, points: &[Point], bench: &Bench) -> Vec<(String, String)> {
    let swept = ["learning_rate", "batch_size", "hidden"];
    let mut params: Vec<(String, String)> = vec![
        ("sweep_learning_rate".into(), join(&args.lr, ",")),
        ("sweep_batch_size".into(), join(&args.batch_size, ",")),
        ("sweep_hidden".into(), args.hidden.0.iter().map(|h| join(h, ",")).collect::<Vec<_>>().join("|")),
        ("sweep_runs".into(), points.len().to_string()),
        ("device".into(), bench.device_name.clone()),
        ("engine_version".into(), env!("CARGO_PKG_VERSION").to_string()),
        ("data_source".into(), bench.dataset.source.to_string()),
    ];
    params.extend(points[0].config.params().into_iter().filter(|(k, _)| !swept.contains(&k.as_str())));
    params
}

/// How one point of the grid went.
struct ChildResult {
    label: String,
    run_id: Option<String>,
    status: RunStatus,
    error: Option<String>,
}

pub fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    let points = grid(&args)?;
    let mut tracking = args.common.tracking.config(None);
    let parent_name = args.common.run_name.clone().unwrap_or_else(tracking::util::generate_run_name);
    tracking.run_name = Some(parent_name.clone());
    tracking.validate().map_err(UsageError)?;
    let bench = Bench::open(args.common.device, args.common.data_dir.as_deref())?;
    let mut parent = tracking::open(&tracking)?;
    let mut parent_tags = vec![(SWEEP_TAG.to_string(), "true".to_string())];
    parent_tags.extend(args.common.notes.to_tags());
    let parent_id = parent.start_run(&parent_params(&args, &points, &bench), &parent_tags)?;
    eprintln!("sweep {parent_name}: parent run {parent_id}, {} runs; tracking: {}", points.len(), parent.describe());

    let children = run_children(&args, &points, &bench, &tracking, &parent_id);
    let summaries = load_children(&tracking, &children);
    let ranking = analysis::rank(&summaries, keys::TEST_ACCURACY, Direction::Max, args.tolerance);
    if let Err(e) = record_outcome(parent.as_mut(), &summaries, &ranking, &children) {
        eprintln!("warning: could not record the sweep's results on run {parent_id}: {e}");
    }
    let status = sweep_status(&children);
    if let Err(e) = parent.end_run(status) {
        eprintln!("warning: could not record the end of run {parent_id}: {e}");
    }

    if args.common.json {
        let mut value = comparison_json(&summaries, &ranking, None);
        value["parent_run_id"] = parent_id.clone().into();
        value["status"] = status.as_str().into();
        value["failed"] = failures(&children)
            .into_iter()
            .map(|(label, why)| serde_json::json!({"run": label, "error": why}))
            .collect();
        println!("{value}");
    } else {
        println!("\nsweep {parent_name} ({parent_id}): {} runs, {}", children.len(), status);
        print!("{}", render_comparison(&summaries, &ranking, None));
    }
    match status {
        RunStatus::Finished => Ok(ExitCode::SUCCESS),
        RunStatus::Killed => Err(TrainError::Interrupted.into()),
        RunStatus::Failed => {
            let failed = failures(&children);
            let list: Vec<String> = failed.iter().map(|(label, why)| format!("{label}: {why}")).collect();
            anyhow::bail!("{} of {} runs failed: {}", failed.len(), children.len(), list.join("; "))
        }
    }
}

/// Trains every point in turn; stops early only when interrupted.
fn run_children(
    args: &SweepArgs,
    points: &[Point],
    bench: &Bench,
    tracking: &TrackingConfig,
    parent_id: &str,
) -> Vec<ChildResult> {
    let mut results = Vec::new();
    for (i, point) in points.iter().enumerate() {
        eprintln!("\n== sweep run {}/{}: {}", i + 1, points.len(), point.label);
        let spec = RunSpec {
            config: point.config.clone(),
            tracking: TrackingConfig { run_name: Some(point.label.clone()), ..tracking.clone() },
            tags: [(PARENT_RUN_ID_TAG.to_string(), parent_id.to_string())]
                .into_iter()
                .chain(args.common.notes.tags.clone())
                .collect(),
            output_dir: args.common.output_dir.as_ref().map(|d| child_dir(d, i, &point.label)),
            json: false,
            system_metrics: args.common.system_metrics(),
        };
        let result = match tracked_run(bench, &spec) {
            Ok(outcome) => ChildResult {
                label: point.label.clone(),
                run_id: Some(outcome.run_id),
                status: outcome.status,
                error: outcome.result.err().map(|e| format!("{e:#}")),
            },
            Err(e) => ChildResult {
                label: point.label.clone(),
                run_id: None,
                status: RunStatus::Failed,
                error: Some(format!("{e:#}")),
            },
        };
        if let Some(why) = &result.error {
            eprintln!("sweep run {} ({}) did not finish: {why}", i + 1, point.label);
        }
        let interrupted = result.status == RunStatus::Killed;
        results.push(result);
        if interrupted {
            eprintln!("sweep interrupted: the remaining {} runs were not started", points.len() - i - 1);
            break;
        }
    }
    results
}

/// `<output dir>/01-lr=0.01_bs=64_hidden=256`.
fn child_dir(base: &std::path::Path, index: usize, label: &str) -> PathBuf {
    let safe: String =
        label.chars().map(|c| if c.is_ascii_alphanumeric() || "=.,-".contains(c) { c } else { '_' }).collect();
    base.join(format!("{:02}-{safe}", index + 1))
}

/// The children as recorded in the local store (every run is, with or without a server).
fn load_children(tracking: &TrackingConfig, children: &[ChildResult]) -> Vec<RunSummary> {
    let store = match LocalStore::open(&tracking.local_root) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("warning: cannot read the local store: {e}");
            return Vec::new();
        }
    };
    children
        .iter()
        .filter_map(|c| c.run_id.as_deref())
        .filter_map(|id| match store.load_run(id) {
            Ok(record) => Some(summary_from_record(&record)),
            Err(e) => {
                eprintln!("warning: cannot read run {id} back: {e}");
                None
            }
        })
        .collect()
}

/// The best and recommended runs, as the parent's metrics and tags.
fn record_outcome(
    parent: &mut dyn Tracker,
    summaries: &[RunSummary],
    ranking: &analysis::Ranking,
    children: &[ChildResult],
) -> Result<(), tracking::TrackingError> {
    let finished = children.iter().filter(|c| c.status == RunStatus::Finished).count();
    let mut metrics = vec![
        Metric::new("runs_finished", finished as f64, 0),
        Metric::new("runs_failed", (children.len() - finished) as f64, 0),
    ];
    let mut tags = Vec::new();
    if let Some(best) = ranking.best.map(|i| &summaries[i]) {
        metrics.extend(best.metric(keys::TEST_ACCURACY).map(|v| Metric::new("best_test_accuracy", v, 0)));
        tags.push(("engine.best_run_id".to_string(), best.run_id.clone()));
    }
    if let Some(rec) = &ranking.recommended {
        tags.push(("engine.recommended_run_id".to_string(), summaries[rec.index].run_id.clone()));
        tags.push(("engine.recommendation".to_string(), rec.reason.clone()));
    }
    parent.log_metrics(&metrics)?;
    parent.set_tags(&tags)
}

/// KILLED when interrupted, FAILED when any run failed, else FINISHED.
fn sweep_status(children: &[ChildResult]) -> RunStatus {
    if children.iter().any(|c| c.status == RunStatus::Killed) {
        RunStatus::Killed
    } else if children.iter().any(|c| c.status != RunStatus::Finished) {
        RunStatus::Failed
    } else {
        RunStatus::Finished
    }
}

fn failures(children: &[ChildResult]) -> Vec<(String, String)> {
    children
        .iter()
        .filter(|c| c.status != RunStatus::Finished)
        .map(|c| (c.label.clone(), c.error.clone().unwrap_or_else(|| c.status.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_architecture_lists() {
        assert_eq!(parse_hidden_grid("256|512,512").unwrap().0, vec![vec![256], vec![512, 512]]);
        assert!(parse_hidden_grid("256|").is_err());
        assert!(parse_hidden_grid("256|0").is_err());
    }

    #[test]
    fn child_directories_are_safe_names() {
        let d = child_dir(std::path::Path::new("out"), 0, "lr=0.01 bs=64 hidden=512,512");
        assert_eq!(d, PathBuf::from("out/01-lr=0.01_bs=64_hidden=512,512"));
    }
}
