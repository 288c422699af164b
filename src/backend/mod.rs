//! Kernels on raw buffers, one module per device. Nothing here knows about tensors or autograd.

pub mod cpu;
#[cfg(feature = "gpu")]
pub mod gpu;
#[cfg(not(feature = "gpu"))]
#[path = "gpu_stub.rs"]
pub mod gpu;

/// Hyperparameters of one Adam/AdamW step, with the bias corrections of step `t` folded in:
/// what both devices' kernels take.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// AdamW: decay the weights directly instead of adding `weight_decay * p` to the gradient.
    pub decoupled: bool,
    pub bias_correction1: f32,
    pub bias_correction2: f32,
}

/// Hyperparameters of one SGD step.
#[derive(Clone, Copy, Debug)]
pub struct SgdStep {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    /// The first step initialises the momentum buffer with the gradient, as PyTorch does.
    pub first_step: bool,
}
