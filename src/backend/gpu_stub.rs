//! The GPU backend's stand-in in builds without the `gpu` feature: the context and buffer types
//! are uninhabited (no value of them can exist) and each launcher the tensor layer calls is a
//! signature whose body cannot run. So `Device::Gpu` and `Storage::Gpu` stay in the code, with
//! no `cfg` on every match arm, and the compiler checks those arms in both builds.

use std::sync::Arc;

use super::cpu::conv::Conv2dShape;
use super::{AdamStep, SgdStep};

#[path = "gpu/args.rs"]
mod args;

/// No GPU context exists in this build.
#[derive(Debug)]
pub enum GpuContext {}

/// No GPU buffer exists in this build.
#[derive(Clone, Debug)]
pub enum GpuBuffer {}

/// No read in flight exists in this build.
pub enum PendingRead {}

impl PendingRead {
    pub fn finish_f32(self) -> Result<Vec<f32>, GpuError> {
        match self {}
    }
}

/// The GPU backend's error type, never made in this build. (Not uninhabited: a `Result` of an
/// uninhabited buffer and error would be, and the compiler would flag the code after every
/// launcher call as unreachable.)
#[derive(Debug, thiserror::Error)]
#[error("this build has no GPU backend (it was built without the `gpu` feature)")]
pub struct GpuError;

/// What an adapter is called (the field the tensor layer reads).
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
}

impl GpuContext {
    pub fn adapter(&self) -> &AdapterSummary {
        match *self {}
    }
}

impl GpuBuffer {
    pub fn from_f32(ctx: &GpuContext, _: &[f32]) -> Result<GpuBuffer, GpuError> {
        match *ctx {}
    }

    pub fn from_u32(ctx: &GpuContext, _: &[u32]) -> Result<GpuBuffer, GpuError> {
        match *ctx {}
    }

    pub fn from_u8_packed(ctx: &GpuContext, _: &[u8]) -> Result<GpuBuffer, GpuError> {
        match *ctx {}
    }

    pub fn len(&self) -> usize {
        match *self {}
    }

    pub fn is_empty(&self) -> bool {
        match *self {}
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        match *self {}
    }

    pub fn to_f32_vec(&self) -> Result<Vec<f32>, GpuError> {
        match *self {}
    }

    pub fn start_read(&self) -> Result<PendingRead, GpuError> {
        match *self {}
    }

    pub fn duplicate(&self) -> Result<GpuBuffer, GpuError> {
        match *self {}
    }
}

/// The launchers of `backend/gpu/ops.rs` that the tensor layer calls.
pub mod ops {
    pub use super::args::{
        AdamBuffers, DatasetBuffers, Epilogue, GatherSpec, GatheredLinear, LINEAR_LOSS_MAX_CLASSES, LinearLoss,
        MatmulShape, RunningSum,
    };
    use super::{AdamStep, GpuBuffer, GpuContext, GpuError, SgdStep};

    type Out = Result<GpuBuffer, GpuError>;

    pub fn matmul(ctx: &GpuContext, _: &GpuBuffer, _: &GpuBuffer, _: MatmulShape, _: Epilogue) -> Out {
        match *ctx {}
    }
    pub fn matmul_row_sums(
        ctx: &GpuContext,
        _: &GpuBuffer,
        _: &GpuBuffer,
        _: MatmulShape,
    ) -> Result<(GpuBuffer, GpuBuffer), GpuError> {
        match *ctx {}
    }
    pub fn add(ctx: &GpuContext, _: &GpuBuffer, _: &GpuBuffer) -> Out {
        match *ctx {}
    }
    pub fn mul(ctx: &GpuContext, _: &GpuBuffer, _: &GpuBuffer) -> Out {
        match *ctx {}
    }
    pub fn relu_mask(ctx: &GpuContext, _: &GpuBuffer, _: &GpuBuffer) -> Out {
        match *ctx {}
    }
    pub fn scale(ctx: &GpuContext, _: &GpuBuffer, _: f32) -> Out {
        match *ctx {}
    }
    pub fn relu(ctx: &GpuContext, _: &GpuBuffer) -> Out {
        match *ctx {}
    }
    pub fn dropout(ctx: &GpuContext, _: &GpuBuffer, _: u64, _: f32, _: f32) -> Out {
        match *ctx {}
    }
    pub fn axpy(ctx: &GpuContext, _: &GpuBuffer, _: &GpuBuffer, _: f32, _: bool) -> Result<(), GpuError> {
        match *ctx {}
    }
    pub fn fill(ctx: &GpuContext, _: usize, _: f32) -> Out {
        match *ctx {}
    }
    pub fn add_bias(ctx: &GpuContext, _: &GpuBuffer, _: &GpuBuffer, _: usize, _: usize) -> Out {
        match *ctx {}
    }
    pub fn sum_rows(ctx: &GpuContext, _: &GpuBuffer, _: usize, _: usize) -> Out {
        match *ctx {}
    }
    pub fn sum(ctx: &GpuContext, _: &GpuBuffer) -> Out {
        match *ctx {}
    }
    pub fn softmax_rows(ctx: &GpuContext, _: &GpuBuffer, _: usize, _: usize) -> Out {
        match *ctx {}
    }
    pub fn argmax_rows(ctx: &GpuContext, _: &GpuBuffer, _: usize, _: usize) -> Out {
        match *ctx {}
    }
    pub fn softmax_rows_backward(ctx: &GpuContext, _: &GpuBuffer, _: &GpuBuffer, _: usize, _: usize) -> Out {
        match *ctx {}
    }
    #[allow(clippy::too_many_arguments)]
    pub fn linear_cross_entropy(
        ctx: &GpuContext,
        _: &GpuBuffer,
        _: &GpuBuffer,
        _: &GpuBuffer,
        _: &GpuBuffer,
        _: [usize; 3],
        _: Option<RunningSum>,
    ) -> Result<LinearLoss, GpuError> {
        match *ctx {}
    }
    pub fn cross_entropy_mean(ctx: &GpuContext, _: &GpuBuffer, _: &GpuBuffer, _: usize, _: usize) -> Out {
        match *ctx {}
    }
    pub fn cross_entropy_backward(ctx: &GpuContext, _: &GpuBuffer, _: &GpuBuffer, _: usize, _: usize, _: f32) -> Out {
        match *ctx {}
    }
    pub fn adam_steps(ctx: &GpuContext, _: &[AdamBuffers], _: AdamStep) -> Result<(), GpuError> {
        match *ctx {}
    }
    pub fn sgd_step(ctx: &GpuContext, _: &GpuBuffer, _: &GpuBuffer, _: &GpuBuffer, _: SgdStep) -> Result<(), GpuError> {
        match *ctx {}
    }
    pub fn linear_gathered(
        ctx: &GpuContext,
        _: DatasetBuffers,
        _: GatherSpec,
        _: &GpuBuffer,
        _: &GpuBuffer,
        _: bool,
    ) -> Result<GatheredLinear, GpuError> {
        match *ctx {}
    }
    pub fn gather_batch(
        ctx: &GpuContext,
        _: &GpuBuffer,
        _: &GpuBuffer,
        _: &GpuBuffer,
        _: GatherSpec,
    ) -> Result<(GpuBuffer, GpuBuffer), GpuError> {
        match *ctx {}
    }
}

/// The launchers of `backend/gpu/conv.rs` that the tensor layer calls.
pub mod conv {
    use super::{Conv2dShape, GpuBuffer, GpuContext, GpuError};

    type Out = Result<GpuBuffer, GpuError>;

    pub fn conv2d(ctx: &GpuContext, _: &GpuBuffer, _: &GpuBuffer, _: &GpuBuffer, _: Conv2dShape, _: bool) -> Out {
        match *ctx {}
    }
    pub fn conv2d_backward_input(ctx: &GpuContext, _: &GpuBuffer, _: &GpuBuffer, _: Conv2dShape) -> Out {
        match *ctx {}
    }
    pub fn conv2d_backward_weight(ctx: &GpuContext, _: &GpuBuffer, _: &GpuBuffer, _: Conv2dShape) -> Out {
        match *ctx {}
    }
    pub fn channel_sums(ctx: &GpuContext, _: &GpuBuffer, _: usize, _: usize) -> Out {
        match *ctx {}
    }
    pub fn max_pool2d(ctx: &GpuContext, _: &GpuBuffer, _: usize, _: usize, _: usize) -> Out {
        match *ctx {}
    }
    pub fn max_pool2d_backward(ctx: &GpuContext, _: &GpuBuffer, _: &GpuBuffer, _: usize, _: usize, _: usize) -> Out {
        match *ctx {}
    }
}
