//! `engine export`: one file of a trained model, for models trained before their directory held
//! it or to hand a single file to another tool. The model is verified (checksum, architecture,
//! finite weights) before anything is written, and the file appears whole or not at all.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use engine::model;

use super::TrackingArgs;
use super::locate::{ModelArgs, locate_model};

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// onnx: input `pixels` [N, C·H·W] float32 in [0, 1] (the model's images, e.g. 784 for
    /// FashionMNIST; normalised inside the graph), output `probabilities` [N, classes];
    /// safetensors: the PyTorch state_dict of the network's `nn.Sequential`.
    #[arg(long, value_enum, ignore_case = true, default_value_t = ExportFormat::Onnx)]
    pub format: ExportFormat,
    /// The file to write.
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub tracking: TrackingArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Onnx,
    Safetensors,
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    if args.output.is_dir() {
        bail!("--output {} is a directory: name the file to write", args.output.display());
    }
    let tracking = args.tracking.config(None);
    let download = std::env::temp_dir().join(format!("engine-export-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&download);
    let exported = export(&args, &tracking, &download);
    let _ = std::fs::remove_dir_all(&download);
    let (run_id, version) = exported?;

    let bytes = std::fs::metadata(&args.output).map(|m| m.len()).unwrap_or(0);
    let version = version.map(|v| format!(" {} version {}", v.name, v.version)).unwrap_or_default();
    let from = run_id.map(|id| format!(" of run {id}")).unwrap_or_default();
    eprintln!("wrote the model{version}{from} to {} ({bytes} bytes)", args.output.display());
    Ok(ExitCode::SUCCESS)
}

/// Finds, verifies and writes the model; returns its run id when known, and the registered
/// version a `models:/` URI resolved to.
fn export(
    args: &ExportArgs,
    tracking: &engine::tracking::TrackingConfig,
    download: &std::path::Path,
) -> anyhow::Result<(Option<String>, Option<engine::tracking::ModelVersion>)> {
    let located = locate_model(args.model.run_id.as_deref(), args.model.model_uri.as_deref(), tracking, download)?;
    let (network, meta) = model::load_model_dir(&located.dir, &engine::Device::Cpu)?;
    if let Some(parent) = args.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    match args.format {
        ExportFormat::Onnx => model::save_onnx(&network, &meta, &args.output)?,
        ExportFormat::Safetensors => {
            let header = [("format".to_string(), "pt".to_string())].into();
            model::save_safetensors(&network, &args.output, header)?;
        }
    }
    Ok((located.run_id.or(meta.run_id), located.version))
}
