//! `engine`: a deep-learning engine written from scratch (tensors, reverse-mode autograd, CPU
//! and GPU kernels) and the training, tracking and evaluation workflow built on it.
//!
//! What it offers, bottom up (each layer uses only those above it in this list):
//!
//! * **The engine**: [`Tensor`] (a shape and storage on a [`Device`]: the rayon CPU backend or
//!   a wgpu GPU), its ops with one backward rule each ([`autograd`], [`Gradients`], [`no_grad`]).
//! * **Training**: [`nn`] (the MLP and CNN, cross-entropy), [`optim`] (SGD, Adam, AdamW),
//!   [`data`] (FashionMNIST and other sources, normalisation), [`train`] (the loop: [`train::fit`]
//!   emits [`train::Event`]s, [`train::evaluate`]), [`report`] (metrics and pictures).
//! * **Tracking**: [`tracking`] (MLflow over REST, a local store that is the default and syncs
//!   later, [`tracking::RunHandle`] for adding to a recorded run).
//! * **Models**: [`model`] (MLflow model directories with safetensors weights, ONNX).
//! * **The workflow**: [`experiment`] (a tracked run, evaluation, finding models, the quality
//!   gate, registering and promoting, a run's checklist), [`search`] (sweeps and searches),
//!   [`analysis`] (the rules that rank and judge recorded runs).
//! * **Serving**: [`serve`] (MLflow's scoring protocol over HTTP, with dynamic batching).
//!
//! A tracked run, its evaluation and its gate, recorded in a local store (the full program is
//! `examples/tracked_run.rs`):
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::atomic::AtomicBool;
//! use engine::experiment::{self, Bench, EvalSpec, RunSpec};
//! use engine::tracking::TrackingConfig;
//! use engine::train::TrainConfig;
//!
//! let tracking = TrackingConfig::local("./mlruns-local", "fashion-mnist");
//! let data = engine::data::DataSource::default(); // FashionMNIST; or DataSource::parse("folder:photos", ..)
//! let bench = Bench::load(engine::Device::Cpu, "cpu".into(), data.clone())?;
//! let config = TrainConfig { epochs: 1, ..TrainConfig::default() };
//! let spec = RunSpec::new(config, tracking.clone());
//! let run = experiment::tracked_run(&bench, &spec, &AtomicBool::new(false), &mut |_event| {})?;
//! run.result?;
//! let eval = EvalSpec { run_id: Some(&run.run_id), model_uri: None, batch_size: 1000,
//!                       output_dir: None, data: &data, tracking: &tracking };
//! let evaluated = experiment::evaluate(&eval, &bench.device)?;
//! let rule = engine::gate::Gate::new("test_accuracy", Some(0.85), 0.0, None)?;
//! let gated = experiment::gate_run(&tracking, &run.run_id, &rule, None)?;
//! println!("{:.4}: {}", evaluated.eval.accuracy, gated.line);
//! # Ok(())
//! # }
//! ```

pub mod analysis;
pub mod autograd;
pub mod backend;
pub mod choice;
pub mod cost;
pub mod data;
pub mod error;
pub mod experiment;
pub mod files;
pub mod gate;
mod hex;
mod ids;
pub mod model;
pub mod nn;
mod op;
pub mod optim;
pub mod report;
pub mod rng;
pub mod search;
pub mod serve;
pub mod sysmetrics;
pub mod tensor;
pub mod tracking;
pub mod train;
mod utc;

pub use autograd::Gradients;
pub use error::{Error, Result};
pub use op::no_grad;
pub use tensor::{Device, Tensor};
