//! `engine`: a deep-learning engine written from scratch (tensors, reverse-mode autograd, CPU
//! and GPU kernels) and the training, tracking and evaluation workflow built on it.

pub mod analysis;
pub mod autograd;
pub mod backend;
pub mod choice;
pub mod cost;
pub mod data;
pub mod error;
pub mod files;
pub mod gate;
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
