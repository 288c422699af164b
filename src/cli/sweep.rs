//! `engine sweep`: one training run per point of a hyperparameter grid, or per trial drawn from a
//! search space ([`engine::search`]), nested under a parent run the way MLflow's client nests
//! runs (`mlflow.parentRunId` on each child), so the MLflow UI shows the sweep as one expandable
//! row; the dataset is loaded once for all runs, and a comparison table (best and recommended
//! run) is printed at the end. Both strategies end in the same list of points, so workers, plans
//! and the summary do not know which chose them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::Context;
use clap::{Args, ValueEnum};
use engine::analysis::{self, Direction, RunSummary, keys};
use engine::nn::Architecture;
use engine::search::{self, Param, SearchSpace, SpaceError};
use engine::tracking::{self, LocalStore, Metric, RunStatus, TrackingConfig};
use engine::train::{TrainConfig, TrainError};

use super::UsageError;
use super::compare::{PARENT_RUN_ID_TAG, comparison_json, render_comparison};
use super::device::DeviceChoice;
use super::train::{Bench, CommonTrainArgs, DEFAULT_HIDDEN, Hidden, RunSpec, parse_hidden, tracked_run};

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
    /// MLP architectures to try: hidden layer sizes separated by '|', e.g. '256|512,512'
    /// [default: 512,512].
    #[arg(long, value_parser = parse_hidden_grid)]
    pub hidden: Option<HiddenGrid>,
    /// Accuracy within which the cheaper run is recommended in the final table.
    #[arg(long, default_value_t = analysis::DEFAULT_TOLERANCE)]
    pub tolerance: f64,
    /// The flags of `engine train`, applied to every run. --run-name names the parent run,
    /// --output-dir holds one directory per run, --json prints the final comparison as JSON.
    #[command(flatten)]
    pub common: CommonTrainArgs,
    /// Split the sweep across processes or machines: with the grid, create the parent run and
    /// write the plan here; with --index, run one point of it; with --summarize, finish it.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Run point I (0-based) of the plan, e.g. $SLURM_ARRAY_TASK_ID or $JOB_COMPLETION_INDEX.
    #[arg(long, value_name = "I", requires = "plan", conflicts_with = "summarize")]
    pub index: Option<usize>,
    /// Rank the plan's runs and finish its parent run once they are done.
    #[arg(long, requires = "plan")]
    pub summarize: bool,
    /// Runs trained at once on this machine, each with its share of the threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: u16,
    /// How the points are chosen: grid (every combination of --lr, --batch-size and --hidden) or
    /// random (--trials draws from --space and --space-file).
    #[arg(long, value_enum, default_value_t = Strategy::Grid)]
    pub search: Strategy,
    /// Random search: how many trials to draw.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub trials: Option<u32>,
    /// Random search: a parameter and its distribution, repeatable: 'lr=loguniform(1e-3,0.3)',
    /// 'dropout=uniform(0,0.4)', 'epochs=int(1,5)', 'batch-size=choice(64,128)',
    /// 'hidden=choice(256|512,512)', 'optimizer=choice(sgd,adam)'. Parameters: lr,
    /// weight-decay, dropout, momentum (loguniform, uniform, choice), batch-size, epochs (int,
    /// choice), hidden, optimizer, model (choice).
    #[arg(long, value_name = "NAME=DIST(ARGS)")]
    pub space: Vec<String>,
    /// Random search: more of the space as a JSON object, e.g.
    /// {"lr": {"loguniform": [0.001, 0.3]}, "hidden": {"choice": [[256], [512, 512]]}} or
    /// {"lr": "loguniform(1e-3,0.3)"}; a parameter also given by --space is refused.
    #[arg(long, value_name = "FILE")]
    pub space_file: Option<PathBuf>,
    /// Random search: the seed of the draws [default: --seed]. The same seed and space give the
    /// same trials on any machine.
    #[arg(long, value_name = "SEED")]
    pub search_seed: Option<u64>,
}

/// How a sweep chooses its points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// Every combination of the listed values.
    Grid,
    /// Trials drawn at random from a search space.
    Random,
}

/// Architectures, each a list of hidden sizes.
#[derive(Clone, Debug)]
pub struct HiddenGrid(pub Vec<Vec<usize>>);

impl SweepArgs {
    /// The MLP architectures of the grid.
    fn hiddens(&self) -> Vec<Vec<usize>> {
        self.hidden.as_ref().map_or_else(|| vec![DEFAULT_HIDDEN.to_vec()], |HiddenGrid(grid)| grid.clone())
    }
}

fn parse_hidden_grid(s: &str) -> Result<HiddenGrid, String> {
    s.split('|').map(|part| parse_hidden(part).map(|Hidden(sizes)| sizes)).collect::<Result<_, _>>().map(HiddenGrid)
}

/// One point of the grid.
struct Point {
    config: TrainConfig,
    label: String,
}

/// The grid in order: learning rate, then batch size, then architecture. Every point is
/// validated, its training memory against `available` bytes, before anything runs.
fn grid(args: &SweepArgs, available: Option<u64>) -> Result<Vec<Point>, UsageError> {
    let random_only = [
        (args.trials.is_some(), "--trials"),
        (!args.space.is_empty(), "--space"),
        (args.space_file.is_some(), "--space-file"),
        (args.search_seed.is_some(), "--search-seed"),
    ];
    if let Some((_, flag)) = random_only.iter().find(|(given, _)| *given) {
        return Err(UsageError(format!(
            "{flag} is for --search random; the grid (the default) takes its values from --lr, --batch-size and --hidden"
        )));
    }
    let hiddens = args.hiddens();
    let mut points = Vec::new();
    for &lr in &args.lr {
        for &batch_size in &args.batch_size {
            for hidden in &hiddens {
                let config = args.common.config(lr, batch_size, hidden);
                config.validate_within(available).map_err(UsageError)?;
                // Named by what varies, so chart legends tell the runs apart.
                let mut parts = Vec::new();
                if args.lr.len() > 1 || (args.batch_size.len() == 1 && hiddens.len() == 1) {
                    parts.push(format!("lr={lr}"));
                }
                if args.batch_size.len() > 1 {
                    parts.push(format!("bs={batch_size}"));
                }
                if hiddens.len() > 1 {
                    parts.push(format!("hidden={}", join(hidden, ",")));
                }
                points.push(Point { config, label: parts.join(" ") });
            }
        }
    }
    if points.is_empty() {
        return Err(UsageError("the grid is empty: give --lr, --batch-size and --hidden values".into()));
    }
    Ok(points)
}

/// A random search: the space, and how its trials were drawn.
struct RandomSearch {
    space: SearchSpace,
    trials: usize,
    seed: u64,
}

/// The points a sweep trains, and the random search that drew them, if one did. Every point is
/// validated before anything runs.
fn points(args: &SweepArgs) -> Result<(Vec<Point>, Option<RandomSearch>), UsageError> {
    if !(args.tolerance >= 0.0 && args.tolerance.is_finite()) {
        return Err(UsageError(format!("--tolerance must be a number >= 0, got {}", args.tolerance)));
    }
    args.common.refuse_hidden_for_cnn(args.hidden.is_some())?;
    // Each point must train within the memory the system has now.
    let available = engine::sysmetrics::available_memory_bytes();
    match args.search {
        Strategy::Grid => Ok((grid(args, available)?, None)),
        Strategy::Random => {
            let search = random_search(args)?;
            let mut base = args.common.config(args.lr[0], args.batch_size[0], &args.hiddens()[0]);
            base.validate_within(available).map_err(UsageError)?;
            // The MLP's layers, for trials that choose the MLP when --model is cnn.
            base.hidden = args.hiddens()[0].clone();
            search.space.check(&base, available).map_err(|e| space_error(args, e))?;
            let trials = search.space.sample(search.trials, search.seed);
            let points = trials
                .iter()
                .zip(search::trial_labels(&trials))
                .map(|(trial, label)| {
                    let config = trial.apply(&base);
                    config
                        .validate_within(available)
                        .map_err(|e| UsageError(format!("--space, trial {label}: {e}")))?;
                    Ok(Point { config, label })
                })
                .collect::<Result<_, UsageError>>()?;
            Ok((points, Some(search)))
        }
    }
}

/// The space of `--space` and `--space-file`, the number of trials and the seed; the grid's
/// flags may give one value each, that of every trial.
fn random_search(args: &SweepArgs) -> Result<RandomSearch, UsageError> {
    let lists = [
        ("--lr", args.lr.len(), "lr=loguniform(1e-3,0.3)"),
        ("--batch-size", args.batch_size.len(), "batch-size=choice(64,128)"),
        ("--hidden", args.hidden.as_ref().map_or(1, |HiddenGrid(h)| h.len()), "hidden=choice(256|512,512)"),
    ];
    if let Some((flag, n, example)) = lists.iter().find(|(_, n, _)| *n != 1) {
        return Err(UsageError(format!(
            "{flag} lists {n} values, a grid; with --search random give one (that of every trial) or draw it: --space '{example}'"
        )));
    }
    let Some(trials) = args.trials else {
        return Err(UsageError("--search random needs --trials N, the number of trials to draw".into()));
    };
    let space = read_space(args)?;
    if space.is_empty() {
        return Err(UsageError(
            "--search random needs a space to draw from: --space 'lr=loguniform(1e-3,0.3)' or --space-file FILE".into(),
        ));
    }
    Ok(RandomSearch { space, trials: trials as usize, seed: args.search_seed.unwrap_or(args.common.seed) })
}

/// `--space` expressions, then `--space-file`; each error names the flag (and file) it came from.
fn read_space(args: &SweepArgs) -> Result<SearchSpace, UsageError> {
    let mut space = SearchSpace::default();
    for expression in &args.space {
        space.add_expression(expression).map_err(|e| UsageError(format!("--space '{expression}': {e}")))?;
    }
    if let Some(path) = &args.space_file {
        let file = || format!("--space-file {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| UsageError(format!("{}: cannot read it: {e}", file())))?;
        space.add_json(&text).map_err(|e| UsageError(format!("{}: {e}", file())))?;
    }
    Ok(space)
}

/// Why a space would train what `engine train` refuses, naming where the parameter came from.
fn space_error(args: &SweepArgs, e: SpaceError) -> UsageError {
    let from_flag =
        |param: Param| args.space.iter().find(|x| x.split('=').next().and_then(Param::from_name) == Some(param));
    let origin = match &e {
        SpaceError::OutOfDomain { param, .. } => match (from_flag(*param), &args.space_file) {
            (Some(expression), _) => format!("--space '{expression}'"),
            (None, Some(path)) => format!("--space-file {}", path.display()),
            (None, None) => "--space".into(),
        },
        _ => match &args.space_file {
            Some(path) if args.space.is_empty() => format!("--space-file {}", path.display()),
            _ => "--space".into(),
        },
    };
    match e {
        // The origin already shows the parameter and its distribution.
        SpaceError::OutOfDomain { why, .. } if !origin.ends_with("--space") => UsageError(format!("{origin}: {why}")),
        e => UsageError(format!("{origin}: {e}")),
    }
}

fn join<T: ToString>(items: &[T], sep: &str) -> String {
    items.iter().map(T::to_string).collect::<Vec<_>>().join(sep)
}

/// The parent run's params: the grid or the search, and the settings every run shares.
fn parent_params(
    args: &SweepArgs,
    points: &[Point],
    search: Option<&RandomSearch>,
    bench: &Bench,
) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = Vec::new();
    let mut swept = vec!["learning_rate", "batch_size", "hidden"];
    match search {
        None => {
            params.push(("sweep_learning_rate".into(), join(&args.lr, ",")));
            params.push(("sweep_batch_size".into(), join(&args.batch_size, ",")));
        }
        Some(search) => {
            swept = search.space.dims().iter().map(|(p, _)| p.config_key()).collect();
            if search.space.dims().iter().any(|(p, _)| *p == Param::Model) {
                swept.push("hidden");
            }
            params.push(("search_strategy".into(), "random".into()));
            params.push(("search_space".into(), search.space.to_string()));
            params.push(("search_trials".into(), search.trials.to_string()));
            params.push(("search_seed".into(), search.seed.to_string()));
        }
    }
    params.extend([
        ("sweep_runs".into(), points.len().to_string()),
        ("device".into(), bench.device_name.clone()),
        ("engine_version".into(), env!("CARGO_PKG_VERSION").to_string()),
        ("data_source".into(), bench.dataset.source.to_string()),
    ]);
    if search.is_none() && args.common.model == Architecture::Mlp {
        params.push(("sweep_hidden".into(), args.hiddens().iter().map(|h| join(h, ",")).collect::<Vec<_>>().join("|")));
    }
    params.extend(points[0].config.params().into_iter().filter(|(k, _)| !swept.contains(&k.as_str())));
    params
}

/// The artifact of a random search's parent run holding its space, in `--space-file` form.
pub const SEARCH_SPACE_ARTIFACT: &str = "search_space.json";

/// Logs the space as [`SEARCH_SPACE_ARTIFACT`] of the parent run.
fn log_search_space(parent: &mut dyn tracking::Tracker, search: &RandomSearch, run_id: &str) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("engine-search-{}", tracking::paths::sanitize_component(run_id)));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(SEARCH_SPACE_ARTIFACT);
    std::fs::write(&path, serde_json::to_string_pretty(&search.space.to_json())?)?;
    let logged = parent.log_artifact(&path, "");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(logged?)
}

/// How one point of the grid went.
struct ChildResult {
    label: String,
    status: RunStatus,
    error: Option<String>,
    /// The run as recorded, once it is.
    summary: Option<RunSummary>,
}

pub fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    match (&args.plan, args.index, args.summarize) {
        (Some(path), _, true) => summarize(&Plan::read(path)?, args.common.json),
        (Some(path), Some(index), false) => run_planned(&Plan::read(path)?, index),
        (Some(path), None, false) => {
            let plan = create_plan(&args)?;
            plan.write(path)?;
            println!(
                "planned sweep {} ({}): {} runs in {}; run each with `engine sweep --plan {} --index I` (I from 0 to {}), then `engine sweep --plan {} --summarize`",
                plan.parent_name,
                plan.parent_run_id,
                plan.points.len(),
                path.display(),
                path.display(),
                plan.points.len() - 1,
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        (None, _, _) => {
            let plan = create_plan(&args)?;
            if args.workers > 1 {
                run_workers(&plan, args.workers.into())?;
            } else {
                run_in_process(&plan)?;
            }
            summarize(&plan, args.common.json)
        }
    }
}

/// Everything a run of the sweep needs, from any process or machine: where it is tracked, its
/// parent, and the grid. Written as JSON by `--plan`.
#[derive(serde::Serialize, serde::Deserialize)]
struct Plan {
    parent_run_id: String,
    parent_name: String,
    tracking_uri: Option<String>,
    experiment: String,
    /// `cpu`, `gpu` or `auto`.
    device: String,
    data_dir: Option<PathBuf>,
    output_dir: Option<PathBuf>,
    /// The user's tags, set on every run.
    tags: Vec<(String, String)>,
    system_metrics_seconds: Option<f64>,
    tolerance: f64,
    points: Vec<PlannedPoint>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PlannedPoint {
    label: String,
    config: TrainConfig,
}

impl Plan {
    fn read(path: &std::path::Path) -> anyhow::Result<Plan> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read the plan {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not a sweep plan", path.display()))
    }

    fn write(&self, path: &std::path::Path) -> anyhow::Result<()> {
        engine::model::write_atomic(path, serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(())
    }

    /// The plan's server and experiment, with this machine's local store; `MLFLOW_TRACKING_URI`
    /// wins where this machine reaches the server by another address.
    fn tracking(&self) -> TrackingConfig {
        let here = TrackingConfig::from_env(None, Some(self.experiment.clone()), Some(self.parent_name.clone()));
        TrackingConfig { tracking_uri: here.tracking_uri.or_else(|| self.tracking_uri.clone()), ..here }
    }

    fn bench(&self) -> anyhow::Result<Bench> {
        let device = DeviceChoice::from_str(&self.device, true).map_err(|e| anyhow::anyhow!("plan device: {e}"))?;
        Bench::open(device, self.data_dir.as_deref())
    }
}

/// Validates the grid, creates the parent run (its params and tags reach the server before this
/// returns) and returns the plan; the parent stays RUNNING until [`summarize`].
fn create_plan(args: &SweepArgs) -> anyhow::Result<Plan> {
    let (points, search) = points(args)?;
    let mut tracking = args.common.tracking.config(None);
    let parent_name = args.common.run_name.clone().unwrap_or_else(tracking::util::generate_run_name);
    tracking.run_name = Some(parent_name.clone());
    tracking.validate().map_err(UsageError)?;
    let bench = Bench::open(args.common.device, args.common.data_dir.as_deref())?;
    let mut parent = tracking::open(&tracking)?;
    let mut parent_tags = vec![(SWEEP_TAG.to_string(), "true".to_string())];
    parent_tags.extend(args.common.notes.to_tags());
    let parent_run_id = parent.start_run(&parent_params(args, &points, search.as_ref(), &bench), &parent_tags)?;
    if let Some(search) = &search {
        log_search_space(parent.as_mut(), search, &parent_run_id)?;
    }
    let chosen = match &search {
        None => "a grid".to_string(),
        Some(s) => format!("random trials of {} (seed {})", s.space, s.seed),
    };
    eprintln!(
        "sweep {parent_name}: parent run {parent_run_id}, {} runs, {chosen}; tracking: {}",
        points.len(),
        parent.describe()
    );
    parent.flush()?;
    let device = args.common.device.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
    Ok(Plan {
        parent_run_id,
        parent_name,
        tracking_uri: tracking.tracking_uri,
        experiment: tracking.experiment,
        device,
        data_dir: args.common.data_dir.clone(),
        output_dir: args.common.output_dir.clone(),
        tags: args.common.notes.tags.clone(),
        system_metrics_seconds: args.common.system_metrics().map(|d| d.as_secs_f64()),
        tolerance: args.tolerance,
        points: points.into_iter().map(|p| PlannedPoint { label: p.label, config: p.config }).collect(),
    })
}

/// Trains point `index` of a plan, as a child of its parent.
fn run_planned(plan: &Plan, index: usize) -> anyhow::Result<ExitCode> {
    if index >= plan.points.len() {
        return Err(UsageError(format!("--index {index}: the plan has points 0 to {}", plan.points.len() - 1)).into());
    }
    let bench = plan.bench()?;
    let result = run_point(plan, &bench, index);
    match (result.status, &result.error) {
        (RunStatus::Finished, _) => Ok(ExitCode::SUCCESS),
        (RunStatus::Killed, _) => Err(TrainError::Interrupted.into()),
        (_, error) => anyhow::bail!("sweep run {index} ({}) failed: {}", result.label, error.as_deref().unwrap_or("?")),
    }
}

/// Every point in turn in this process; stops early only when interrupted.
fn run_in_process(plan: &Plan) -> anyhow::Result<()> {
    let bench = plan.bench()?;
    for i in 0..plan.points.len() {
        let result = run_point(plan, &bench, i);
        if result.status == RunStatus::Killed {
            eprintln!("sweep interrupted: the remaining {} runs were not started", plan.points.len() - i - 1);
            break;
        }
    }
    Ok(())
}

/// `workers` points at a time, each an `engine sweep --plan --index` process with its share of
/// the threads; the plan goes to a temporary file for them.
fn run_workers(plan: &Plan, workers: usize) -> anyhow::Result<()> {
    let name = format!("engine-sweep-{}.json", tracking::paths::sanitize_component(&plan.parent_run_id));
    let path = std::env::temp_dir().join(name);
    plan.write(&path)?;
    let threads = (rayon::current_num_threads() / workers).max(1);
    let exe = std::env::current_exe().context("cannot find the engine executable")?;
    let mut next = 0;
    let mut running: Vec<std::process::Child> = Vec::new();
    let interrupted = super::interrupt::install_interrupt_flag();
    while next < plan.points.len() || !running.is_empty() {
        while running.len() < workers && next < plan.points.len() && !interrupted.load(Ordering::SeqCst) {
            let child = std::process::Command::new(&exe)
                .args(["sweep", "--plan"])
                .arg(&path)
                .args(["--index", &next.to_string()])
                .env("RAYON_NUM_THREADS", threads.to_string())
                .spawn()
                .context("cannot start a sweep worker")?;
            running.push(child);
            next += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        running.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        if interrupted.load(Ordering::SeqCst) && next < plan.points.len() {
            eprintln!("sweep interrupted: the remaining {} runs were not started", plan.points.len() - next);
            next = plan.points.len();
        }
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}

/// Ranks the plan's runs (from the local store, and the server for runs made elsewhere), records
/// the best and recommended runs on the parent, ends it, and prints the comparison.
fn summarize(plan: &Plan, json: bool) -> anyhow::Result<ExitCode> {
    let children = plan_children(plan)?;
    let summaries: Vec<RunSummary> = children.iter().filter_map(|c| c.summary.clone()).collect();
    let ranking = analysis::rank(&summaries, keys::TEST_ACCURACY, Direction::Max, plan.tolerance);
    let status = sweep_status(&children);
    finish_parent(plan, &outcome(&summaries, &ranking, &children), status)?;
    let parent_id = &plan.parent_run_id;
    if json {
        let mut value = comparison_json(&summaries, &ranking, None);
        value["parent_run_id"] = parent_id.clone().into();
        value["status"] = status.as_str().into();
        value["failed"] = failures(&children)
            .into_iter()
            .map(|(label, why)| serde_json::json!({"run": label, "error": why}))
            .collect();
        println!("{value}");
    } else {
        println!("\nsweep {} ({parent_id}): {} runs, {}", plan.parent_name, children.len(), status);
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

/// Trains point `i` as a child of the plan's parent.
fn run_point(plan: &Plan, bench: &Bench, i: usize) -> ChildResult {
    let point = &plan.points[i];
    eprintln!("\n== sweep run {}/{}: {}", i + 1, plan.points.len(), point.label);
    let mut tags = vec![(PARENT_RUN_ID_TAG.to_string(), plan.parent_run_id.clone())];
    tags.extend(plan.tags.iter().cloned());
    let spec = RunSpec {
        config: point.config.clone(),
        tracking: TrackingConfig { run_name: Some(point.label.clone()), ..plan.tracking() },
        tags,
        output_dir: plan.output_dir.as_ref().map(|d| child_dir(d, i, &point.label)),
        json: false,
        system_metrics: plan.system_metrics_seconds.map(std::time::Duration::from_secs_f64),
    };
    let (status, error) = match tracked_run(bench, &spec) {
        Ok(outcome) => (outcome.status, outcome.result.err().map(|e| format!("{e:#}"))),
        Err(e) => (RunStatus::Failed, Some(format!("{e:#}"))),
    };
    if let Some(why) = &error {
        eprintln!("sweep run {} ({}) did not finish: {why}", i + 1, point.label);
    }
    ChildResult { label: point.label.clone(), status, error, summary: None }
}

/// `<output dir>/01-lr=0.01_bs=64_hidden=256`.
fn child_dir(base: &std::path::Path, index: usize, label: &str) -> PathBuf {
    let safe: String =
        label.chars().map(|c| if c.is_ascii_alphanumeric() || "=.,-".contains(c) { c } else { '_' }).collect();
    base.join(format!("{:02}-{safe}", index + 1))
}

/// Each point's run under the plan's parent, by its name: from the local store (every run made
/// on this machine is there), else from the server (runs made elsewhere). A point run more than
/// once counts by its best outcome; a point with no run failed.
fn plan_children(plan: &Plan) -> anyhow::Result<Vec<ChildResult>> {
    let parent = Some(plan.parent_run_id.as_str());
    let tracking = plan.tracking();
    let mut found: Vec<RunSummary> = LocalStore::open(&tracking.local_root)?
        .list_runs(Some(&plan.experiment))?
        .iter()
        .map(tracking::summary_from_record)
        .filter(|r| r.parent_run_id.as_deref() == parent)
        .collect();
    if tracking.tracking_uri.is_some() {
        let server = tracking::Source::open(&tracking)?.experiment_runs(&plan.experiment)?;
        found.extend(server.into_iter().filter(|r| r.parent_run_id.as_deref() == parent));
    }
    let children = plan
        .points
        .iter()
        .map(|point| {
            let runs = found.iter().filter(|r| r.run_name == point.label);
            let best = runs.max_by_key(|r| (r.status == "FINISHED", r.status == "KILLED"));
            match best {
                Some(run) => ChildResult {
                    label: point.label.clone(),
                    status: RunStatus::parse(&run.status).unwrap_or(RunStatus::Failed),
                    error: (run.status != "FINISHED").then(|| format!("ended {}", run.status)),
                    summary: Some(run.clone()),
                },
                None => ChildResult {
                    label: point.label.clone(),
                    status: RunStatus::Failed,
                    error: Some("never ran (or is not synced yet: run `engine sync` where it ran)".into()),
                    summary: None,
                },
            }
        })
        .collect();
    Ok(children)
}

/// The best and recommended runs, as the parent's metrics and tags.
fn outcome(
    summaries: &[RunSummary],
    ranking: &analysis::Ranking,
    children: &[ChildResult],
) -> (Vec<Metric>, Vec<(String, String)>) {
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
    (metrics, tags)
}

/// Records the outcome on the parent and ends it: in the local store when it was created here
/// (then sent to the server), else on the server directly.
fn finish_parent(
    plan: &Plan,
    (metrics, tags): &(Vec<Metric>, Vec<(String, String)>),
    status: RunStatus,
) -> anyhow::Result<()> {
    let tracking = plan.tracking();
    let store = LocalStore::open(&tracking.local_root)?;
    if store.find_run_dir(&plan.parent_run_id).is_ok() {
        {
            let mut parent = store.reopen_run(&plan.parent_run_id)?;
            parent.log_metrics(metrics)?;
            parent.set_tags(tags)?;
            parent.finish(status, tracking::util::now_ms())?;
        }
        if tracking.tracking_uri.is_some() {
            tracking::sync_run_now(&tracking.local_root, &tracking, &plan.parent_run_id)
                .context("the sweep's results are in the local store; `engine sync` sends them")?;
        }
        return Ok(());
    }
    let client = super::locate::server(&tracking, "the sweep's parent run")?;
    client.log_batch(&plan.parent_run_id, metrics, &[], tags)?;
    client.update_run(&plan.parent_run_id, status, tracking::util::now_ms())?;
    Ok(())
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
