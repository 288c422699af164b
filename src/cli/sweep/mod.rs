//! `engine sweep`: the flags and the terminal view of [`engine::experiment::sweep`]: one training
//! run per point of a hyperparameter grid, or per trial drawn from a search space
//! ([`engine::search`]), or successive halving over such trials, nested under a parent run so the
//! MLflow UI shows the sweep as one expandable row; the dataset is loaded once for all runs, and
//! a comparison table (best and recommended run) is printed at the end. This file parses;
//! `points` and `plan` turn the flags into a plan, `execute` and `summary` run and show it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use engine::analysis;
use engine::experiment::sweep::Plan;

use super::train::{CommonTrainArgs, Hidden, parse_hidden};

mod execute;
mod plan;
mod points;
mod summary;

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
    /// Split the sweep across processes or machines: create the parent run and write the plan
    /// here (grid, random or halving); with --index, run one entry of it; with --promote, go to
    /// halving's next rung; with --summarize, finish it.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Run entry I (0-based) of the plan's current rung (every point of a grid or random search),
    /// e.g. $SLURM_ARRAY_TASK_ID or $JOB_COMPLETION_INDEX.
    #[arg(long, value_name = "I", requires = "plan", conflicts_with = "summarize")]
    pub index: Option<usize>,
    /// Rank the plan's runs and finish its parent run once they are done.
    #[arg(long, requires = "plan")]
    pub summarize: bool,
    /// Successive halving under a scheduler: rank the plan's current rung from what its runs
    /// logged and write the next rung into the plan; prints how many entries (--index values)
    /// the next rung has, 0 when the last rung is trained.
    #[arg(long, requires = "plan", conflicts_with_all = ["index", "summarize"])]
    pub promote: bool,
    /// Go on with a stopped sweep from its plan (the file the sweep named when it started, or a
    /// --plan file): each trial not yet trained runs once, then the remaining rungs and the
    /// summary. The plan's settings hold; of the other flags only --workers and --json count.
    #[arg(long, value_name = "FILE", conflicts_with = "plan")]
    pub resume: Option<PathBuf>,
    /// Runs trained at once on this machine, each with its share of the threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: u16,
    /// How the points are chosen: grid (every combination of --lr, --batch-size and --hidden),
    /// random (--trials draws from --space and --space-file) or halving (the same draws, trained
    /// in rungs: the best 1/--eta of each rung go on, --eta times longer, up to --epochs).
    #[arg(long, value_enum, default_value_t = Strategy::Grid)]
    pub search: Strategy,
    /// Random search and halving: how many trials to draw.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub trials: Option<u32>,
    /// Random search and halving: a parameter and its distribution, repeatable:
    /// 'lr=loguniform(1e-3,0.3)', 'dropout=uniform(0,0.4)', 'epochs=int(1,5)',
    /// 'batch-size=choice(64,128)', 'hidden=choice(256|512,512)', 'optimizer=choice(sgd,adam)'.
    /// Parameters: lr, weight-decay, dropout, momentum (loguniform, uniform, choice), batch-size,
    /// epochs (int, choice), hidden, optimizer, model (choice).
    #[arg(long, value_name = "NAME=DIST(ARGS)")]
    pub space: Vec<String>,
    /// Random search and halving: more of the space as a JSON object, e.g.
    /// {"lr": {"loguniform": [0.001, 0.3]}, "hidden": {"choice": [[256], [512, 512]]}} or
    /// {"lr": "loguniform(1e-3,0.3)"}; a parameter also given by --space is refused.
    #[arg(long, value_name = "FILE")]
    pub space_file: Option<PathBuf>,
    /// Random search and halving: the seed of the draws [default: --seed]. The same seed and
    /// space give the same trials on any machine.
    #[arg(long, value_name = "SEED")]
    pub search_seed: Option<u64>,
    /// Successive halving: each rung keeps the best 1/ETA of the one before and trains ETA times
    /// longer [default: 3].
    #[arg(long, value_name = "ETA")]
    pub eta: Option<usize>,
    /// Successive halving: the epochs of the first rung, at least [default: 1]; the last rung
    /// trains --epochs.
    #[arg(long, value_name = "N")]
    pub min_epochs: Option<usize>,
    /// Successive halving: where the trials' checkpoints go, on storage every worker shares
    /// [default: beside the plan, FILE.checkpoints].
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// Successive halving: the metric rungs are ranked by [default: val_loss]; losses are
    /// minimised, accuracies maximised.
    #[arg(long, value_name = "KEY")]
    pub metric: Option<String>,
}

/// How a sweep chooses its points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// Every combination of the listed values.
    Grid,
    /// Trials drawn at random from a search space.
    Random,
    /// Trials drawn at random, trained in rungs of rising epochs; the best of each rung go on.
    Halving,
}

/// Architectures, each a list of hidden sizes.
#[derive(Clone, Debug)]
pub struct HiddenGrid(pub Vec<Vec<usize>>);

fn parse_hidden_grid(s: &str) -> Result<HiddenGrid, String> {
    s.split('|').map(|part| parse_hidden(part).map(|Hidden(sizes)| sizes)).collect::<Result<_, _>>().map(HiddenGrid)
}

pub fn run(args: SweepArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.resume {
        let mut plan = Plan::read(path)?;
        eprintln!("resuming sweep {} ({}) at rung {}", plan.parent_name, plan.parent_run_id, plan.schedule.rung());
        execute::drive(&mut plan, path, args.workers.into())?;
        return summary::summarize(&plan, path, args.common.json);
    }
    match (&args.plan, args.index, args.summarize, args.promote) {
        (Some(path), _, true, _) => summary::summarize(&Plan::read(path)?, path, args.common.json),
        (Some(path), _, _, true) => promote_command(path),
        (Some(path), Some(index), _, _) => execute::run_planned(&Plan::read(path)?, path, index),
        (Some(path), None, _, _) => {
            let plan = plan::create_plan(&args)?;
            plan.write(path)?;
            print_plan_usage(&plan, path);
            Ok(ExitCode::SUCCESS)
        }
        (None, _, _, _) => {
            let mut plan = plan::create_plan(&args)?;
            let path = state_path(&args, &plan);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            plan.write(&path)?;
            eprintln!(
                "plan: {} (a stopped sweep goes on with `engine sweep --resume {}`)",
                path.display(),
                path.display()
            );
            execute::drive(&mut plan, &path, args.workers.into())?;
            summary::summarize(&plan, &path, args.common.json)
        }
    }
}

/// Where a sweep run in one command keeps its plan: in --output-dir, else in the local store's
/// `sweeps/`.
fn state_path(args: &SweepArgs, plan: &Plan) -> PathBuf {
    let (local_root, parent_run_id) = (plan.tracking().local_root, &plan.parent_run_id);
    let dir = args.common.output_dir.clone().unwrap_or_else(|| local_root.join("sweeps"));
    dir.join(format!("sweep-{}.json", engine::tracking::paths::sanitize_component(parent_run_id)))
}

/// `--plan FILE --promote`: the next rung, and the number of its entries on stdout.
fn promote_command(path: &Path) -> anyhow::Result<ExitCode> {
    let mut plan = Plan::read(path)?;
    if plan.schedule.halving.is_none() || plan.schedule.is_last_rung() {
        eprintln!(
            "the last rung is planned; once it is trained, run `engine sweep --plan {} --summarize`",
            path.display()
        );
        println!("0");
        return Ok(ExitCode::SUCCESS);
    }
    execute::promote(&mut plan, path)?;
    println!("{}", plan.schedule.current_trials().len());
    Ok(ExitCode::SUCCESS)
}

fn print_plan_usage(plan: &Plan, path: &Path) {
    let (p, n) = (path.display(), plan.schedule.current_trials().len());
    let promote = if plan.schedule.halving.is_some() {
        format!(
            ", then `engine sweep --plan {p} --promote` (it prints the next rung's number of entries; 0 when done) and again for each rung"
        )
    } else {
        String::new()
    };
    println!(
        "planned sweep {} ({}): {} runs in {p}; run each with `engine sweep --plan {p} --index I` (I from 0 to {}){promote}, then `engine sweep --plan {p} --summarize`",
        plan.parent_name,
        plan.parent_run_id,
        plan.points.len(),
        n - 1,
    );
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
        let d = engine::experiment::sweep::child_dir(std::path::Path::new("out"), 0, "lr=0.01 bs=64 hidden=512,512");
        assert_eq!(d, PathBuf::from("out/01-lr=0.01_bs=64_hidden=512,512"));
        let long = engine::experiment::sweep::child_dir(std::path::Path::new("out"), 8, &"hidden=1024,".repeat(40));
        let name = long.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("09-hidden=1024,hidden") && name.len() <= 64, "{name}");
        let hostile = engine::experiment::sweep::child_dir(std::path::Path::new("out"), 0, "../x/\\0y");
        assert_eq!(hostile, PathBuf::from("out/01-.._x__0y"));
    }
}
