//! `engine runs analyze RUN`: the flags and the terminal view of
//! [`engine::experiment::analyze_run`] (the evaluation checklist answered with one run's
//! numbers, written as `analysis.md` and logged with the run).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use engine::analysis;
use engine::experiment::{self, AnalyzeSpec};

use super::TrackingArgs;

#[derive(Args)]
pub struct AnalyzeArgs {
    /// A run id (local store, else the configured MLflow server), or a unique prefix (local).
    pub run: String,
    /// The accuracy the business needs, in [0, 1].
    #[arg(long, default_value_t = 0.85)]
    pub baseline: f64,
    /// Test accuracy within which a cheaper run counts as just as good.
    #[arg(long, default_value_t = analysis::DEFAULT_TOLERANCE)]
    pub tolerance: f64,
    /// Epochs of rising validation loss that count as overfitting.
    #[arg(long, default_value_t = analysis::DEFAULT_OVERFIT_EPOCHS)]
    pub overfit_epochs: usize,
    /// Where analysis.md goes [default: the run's output directory, else runs/<run id>].
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Print the analysis as one JSON object (analysis.md is written all the same).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tracking: TrackingArgs,
}

pub fn run(args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let config = args.tracking.config(None);
    let spec = AnalyzeSpec {
        baseline: args.baseline,
        tolerance: args.tolerance,
        overfit_epochs: args.overfit_epochs,
        output_dir: args.output_dir.clone(),
    };
    let analyzed = experiment::analyze_run(&config, &args.run, &spec)?;
    for warning in &analyzed.warnings {
        eprintln!("warning: {warning}");
    }
    if args.json {
        println!("{}", serde_json::to_string(&analyzed.analysis)?);
    } else {
        print!("{}", analyzed.markdown);
    }
    eprintln!("wrote {}", analyzed.path.display());
    Ok(ExitCode::SUCCESS)
}
