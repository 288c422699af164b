//! Kernels on raw buffers, one module per device. Nothing here knows about tensors or autograd.

pub mod cpu;
#[cfg(feature = "gpu")]
pub mod gpu;
