//! The launchers' arguments that are more than buffers and sizes. Shared with the stand-in
//! module of builds without the `gpu` feature (`backend/gpu_stub.rs`), so that the tensor
//! layer's GPU code compiles the same in both.

use super::GpuBuffer;
use crate::backend::ChannelAffine;

/// The sizes of `C [m, n] = op(A) · op(B)` with `op(A)` `[m, k]` and `op(B)` `[k, n]`.
/// A transposed operand is stored row-major as its transpose: `A` as `[k, m]` when `trans_a`,
/// `B` as `[n, k]` when `trans_b`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl MatmulShape {
    /// `[m, k] · [k, n]` with neither operand transposed.
    pub fn new(m: usize, k: usize, n: usize) -> Self {
        Self { m, k, n, trans_a: false, trans_b: false }
    }

    /// The same product with the given transpose flags.
    pub fn transposed(self, trans_a: bool, trans_b: bool) -> Self {
        Self { trans_a, trans_b, ..self }
    }
}

/// What a matmul applies to each output before it stores it: `+ bias[col]`, then `relu`, then
/// the mask.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// A `[n]` bias added to every row.
    pub bias: Option<&'a GpuBuffer>,
    pub relu: bool,
    /// A `[m, n]` relu output: the result is zeroed where it is not positive, which is the
    /// backward of that relu applied to the product (a gradient).
    pub relu_mask: Option<&'a GpuBuffer>,
}

/// Which rows of a `u8` dataset to gather and how to turn their bytes into `f32`.
#[derive(Clone, Copy, Debug)]
pub struct GatherSpec {
    /// Samples in the dataset and bytes per sample (784 for an image).
    pub samples: usize,
    pub features: usize,
    /// The batch is entries `first..first + batch` of the index list.
    pub first: usize,
    pub batch: usize,
    /// Each byte becomes `byte * scale + shift` with the affine of its channel.
    pub affine: ChannelAffine,
}

/// The buffers of one parameter that Adam updates in place, with its gradient.
#[derive(Clone, Copy, Debug)]
pub struct AdamBuffers<'a> {
    pub param: &'a GpuBuffer,
    pub grad: &'a GpuBuffer,
    /// The first and second moments.
    pub m: &'a GpuBuffer,
    pub v: &'a GpuBuffer,
}

/// The most classes the fused last layer and loss (`ops::linear_cross_entropy`) takes.
pub const LINEAR_LOSS_MAX_CLASSES: usize = 16;

/// A one-element running sum of losses that a loss kernel updates with its mean loss:
/// `sum = scale * loss`, plus the old `sum` unless `reset`.
#[derive(Clone, Copy, Debug)]
pub struct RunningSum<'a> {
    pub sum: &'a GpuBuffer,
    pub scale: f32,
    pub reset: bool,
}

/// What `ops::linear_cross_entropy` computes.
pub struct LinearLoss {
    /// `[rows, classes]`.
    pub logits: GpuBuffer,
    /// The gradient of the mean loss with respect to the logits, `[rows, classes]`.
    pub grad: GpuBuffer,
    /// The mean loss, one element.
    pub loss: GpuBuffer,
}

/// A `u8` dataset on the device and an order of its samples: what a batch is gathered from.
#[derive(Clone, Copy, Debug)]
pub struct DatasetBuffers<'a> {
    /// The samples' bytes, packed four to a word ([`GpuBuffer::from_u8_packed`]).
    pub samples: &'a GpuBuffer,
    /// One byte per sample, packed likewise.
    pub labels: &'a GpuBuffer,
    /// Sample indices as `u32`: a batch is a run of them.
    pub order: &'a GpuBuffer,
}

/// What `ops::linear_gathered` computes.
pub struct GatheredLinear {
    /// The layer's output, `[batch, outputs]`.
    pub out: GpuBuffer,
    /// The gathered batch, `[batch, features]`, as `ops::gather_batch` makes it.
    pub x: GpuBuffer,
    /// The batch's labels as `f32`, `[batch]`.
    pub labels: GpuBuffer,
}
