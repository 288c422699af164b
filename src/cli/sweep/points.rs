//! The points a sweep trains, from its flags: every combination of the grid's values, or trials
//! drawn from a search space (random search and successive halving), each validated as
//! `engine train` validates its flags before anything runs; and halving's rungs.

use engine::analysis::{Direction, keys};
use engine::search::halving::Halving;
use engine::search::schedule::Schedule;
use engine::search::{self, Param, SearchSpace, SpaceError};
use engine::train::TrainConfig;

use super::{HiddenGrid, Strategy, SweepArgs};
use crate::cli::UsageError;
use crate::cli::train::DEFAULT_HIDDEN;

/// One point of the sweep.
pub struct Point {
    pub config: TrainConfig,
    pub label: String,
}

/// A search drawn from a space: the space, how its trials were drawn and, for successive
/// halving, its rungs.
pub struct SpaceSearch {
    pub space: SearchSpace,
    pub trials: usize,
    pub seed: u64,
    pub halving: Option<Halving>,
    pub metric: String,
}

/// The metrics halving may rank a rung by: those every run logs.
const RANKABLE: [&str; 5] = [keys::VAL_LOSS, "val_accuracy", keys::TRAIN_LOSS, keys::TEST_LOSS, keys::TEST_ACCURACY];

impl SweepArgs {
    /// The MLP architectures of the grid.
    pub fn hiddens(&self) -> Vec<Vec<usize>> {
        self.hidden.as_ref().map_or_else(|| vec![DEFAULT_HIDDEN.to_vec()], |HiddenGrid(grid)| grid.clone())
    }
}

/// The points a sweep trains, the search that drew them (if one did) and its schedule. Every
/// point is validated before anything runs.
pub fn points(args: &SweepArgs) -> Result<(Vec<Point>, Option<SpaceSearch>, Schedule), UsageError> {
    if !(args.tolerance >= 0.0 && args.tolerance.is_finite()) {
        return Err(UsageError(format!("--tolerance must be a number >= 0, got {}", args.tolerance)));
    }
    args.common.refuse_hidden_for_cnn(args.hidden.is_some())?;
    refuse_halving_flags(args)?;
    // Each point must train within the memory the system has now.
    let available = engine::sysmetrics::available_memory_bytes();
    if args.search == Strategy::Grid {
        let points = grid(args, available)?;
        let schedule = Schedule::single(points.len(), args.common.epochs);
        return Ok((points, None, schedule));
    }
    let search = space_search(args)?;
    let mut base = args.common.config(args.lr[0], args.batch_size[0], &args.hiddens()[0]);
    base.validate_within(available).map_err(UsageError)?;
    // The MLP's layers, for trials that choose the MLP when --model is cnn.
    base.hidden = args.hiddens()[0].clone();
    search.space.check(&base, available).map_err(|e| space_error(args, e))?;
    if search.halving.is_some() && search.space.dims().iter().any(|(p, _)| *p == Param::Epochs) {
        return Err(UsageError("--space epochs: successive halving sets each rung's epochs; give --epochs".into()));
    }
    let trials = search.space.sample(search.trials, search.seed);
    let points = trials
        .iter()
        .zip(search::trial_labels(&trials))
        .map(|(trial, label)| {
            let config = trial.apply(&base);
            config.validate_within(available).map_err(|e| UsageError(format!("--space, trial {label}: {e}")))?;
            Ok(Point { config, label })
        })
        .collect::<Result<Vec<_>, UsageError>>()?;
    let schedule = match &search.halving {
        Some(h) => {
            Schedule::halving(points.len(), h, &search.metric, Direction::for_metric(&search.metric) == Direction::Max)
        }
        None => Schedule::single(points.len(), args.common.epochs),
    };
    Ok((points, Some(search), schedule))
}

/// `--eta`, `--min-epochs`, `--metric` and `--checkpoint-dir` belong to successive halving.
fn refuse_halving_flags(args: &SweepArgs) -> Result<(), UsageError> {
    let halving_only = [
        (args.eta.is_some(), "--eta"),
        (args.min_epochs.is_some(), "--min-epochs"),
        (args.metric.is_some(), "--metric"),
    ];
    match halving_only.iter().find(|(given, _)| *given) {
        Some((_, flag)) if args.search != Strategy::Halving => {
            Err(UsageError(format!("{flag} is for --search halving (successive halving's rungs)")))
        }
        _ => Ok(()),
    }
}

/// The grid in order: learning rate, then batch size, then architecture.
fn grid(args: &SweepArgs, available: Option<u64>) -> Result<Vec<Point>, UsageError> {
    let search_only = [
        (args.trials.is_some(), "--trials"),
        (!args.space.is_empty(), "--space"),
        (args.space_file.is_some(), "--space-file"),
        (args.search_seed.is_some(), "--search-seed"),
    ];
    if let Some((_, flag)) = search_only.iter().find(|(given, _)| *given) {
        return Err(UsageError(format!(
            "{flag} is for --search random or halving; the grid (the default) takes its values from --lr, --batch-size and --hidden"
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

/// The space of `--space` and `--space-file`, the number of trials, the seed and halving's
/// rungs; the grid's flags may give one value each, that of every trial.
fn space_search(args: &SweepArgs) -> Result<SpaceSearch, UsageError> {
    let strategy = if args.search == Strategy::Halving { "halving" } else { "random" };
    let lists = [
        ("--lr", args.lr.len(), "lr=loguniform(1e-3,0.3)"),
        ("--batch-size", args.batch_size.len(), "batch-size=choice(64,128)"),
        ("--hidden", args.hidden.as_ref().map_or(1, |HiddenGrid(h)| h.len()), "hidden=choice(256|512,512)"),
    ];
    if let Some((flag, n, example)) = lists.iter().find(|(_, n, _)| *n != 1) {
        return Err(UsageError(format!(
            "{flag} lists {n} values, a grid; with --search {strategy} give one (that of every trial) or draw it: --space '{example}'"
        )));
    }
    let Some(trials) = args.trials else {
        return Err(UsageError(format!("--search {strategy} needs --trials N, the number of trials to draw")));
    };
    let space = read_space(args)?;
    if space.is_empty() {
        return Err(UsageError(format!(
            "--search {strategy} needs a space to draw from: --space 'lr=loguniform(1e-3,0.3)' or --space-file FILE"
        )));
    }
    let metric = args.metric.clone().unwrap_or_else(|| keys::VAL_LOSS.to_string());
    let halving = if args.search == Strategy::Halving {
        check_metric(&metric, args.common.val_split)?;
        let (eta, min_epochs) = (args.eta.unwrap_or(3), args.min_epochs.unwrap_or(1));
        Some(
            Halving::new(eta, min_epochs, args.common.epochs, trials as usize)
                .map_err(|e| UsageError(e.to_string()))?,
        )
    } else {
        None
    };
    let seed = args.search_seed.unwrap_or(args.common.seed);
    Ok(SpaceSearch { space, trials: trials as usize, seed, halving, metric })
}

/// The ranking metric must be one every run logs (a validation metric needs a validation split).
fn check_metric(metric: &str, val_split: f64) -> Result<(), UsageError> {
    if !RANKABLE.contains(&metric) {
        return Err(UsageError(format!("--metric {metric}: rungs are ranked by one of {}", RANKABLE.join(", "))));
    }
    if metric.starts_with("val_") && val_split <= 0.0 {
        return Err(UsageError(format!("--metric {metric} needs a validation split: give --val-split above 0")));
    }
    Ok(())
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

pub fn join<T: ToString>(items: &[T], sep: &str) -> String {
    items.iter().map(T::to_string).collect::<Vec<_>>().join(sep)
}
