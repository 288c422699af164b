//! `engine eval`: the flags and the terminal view of [`engine::experiment::evaluate`] (find a
//! trained model by run id, `models:/` URI or directory, verify it, evaluate it on the test set,
//! write the reports) and, with `--log-mlflow`, [`engine::experiment::log_evaluation`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use engine::experiment::{self, EvalSpec};

use super::data::DataArgs;
use super::device::{DeviceChoice, open_device};
use super::locate::ModelArgs;
use super::render::say;
use super::{NoteArgs, TrackingArgs};

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Log the evaluation metrics (eval_*) and files (under evaluation/) to the model's run.
    #[arg(long)]
    pub log_mlflow: bool,
    #[arg(long, value_enum, ignore_case = true, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Where the reports go [default: runs/<run id>/evaluation].
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// The data whose test set evaluates the model; its images and classes must be those the
    /// model was trained on.
    #[command(flatten)]
    pub data: DataArgs,
    /// Print the results as one JSON object, alone on stdout (the report goes to stderr).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub tracking: TrackingArgs,
    /// With --log-mlflow: tags for the run, and a description added to its note.
    #[command(flatten)]
    pub notes: NoteArgs,
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let tracking = args.tracking.config(None);
    let data = args.data.source()?;
    let (device, device_name) = open_device(args.device)?;
    let spec = EvalSpec {
        run_id: args.model.run_id.as_deref(),
        model_uri: args.model.model_uri.as_deref(),
        batch_size: args.batch_size as usize,
        output_dir: args.output_dir.clone(),
        data: &data,
        tracking: &tracking,
    };
    let evaluated = experiment::evaluate(&spec, &device)?;
    if let Some(note) = &evaluated.located.note {
        eprintln!("model: {note}");
    }
    let (eval, report) = (&evaluated.eval, &evaluated.report);
    say(args.json, &report.render_text());
    say(args.json, &format!("test_loss {:.4}  test_accuracy {:.4}  ({device_name})", eval.loss, eval.accuracy));
    if args.log_mlflow {
        let logged =
            experiment::log_evaluation(&tracking, &evaluated, &args.notes.tags, args.notes.description.as_deref())?;
        eprintln!("logged the evaluation to run {} {}", logged.run_id, logged.place);
        if let Some(uri) = &logged.synced_to {
            eprintln!("synced run {} to {uri}", logged.run_id);
        }
    }
    eprintln!("wrote the evaluation to {}", evaluated.output_dir.display());
    if args.json {
        let summary = serde_json::json!({
            "run_id": evaluated.located.run_id,
            "test_accuracy": eval.accuracy,
            "test_loss": eval.loss,
            "macro_f1": report.macro_f1(),
            "weighted_f1": report.weighted_f1(),
            "output_dir": evaluated.output_dir,
            "device": device_name,
        });
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}
