//! The launchers of the classification losses: the fused log-softmax negative log-likelihood
//! per row, its mean and its gradient, and a classifier's last layer fused with all three and
//! with a running sum of the losses (`shaders/linear_cross_entropy.wgsl`).

use super::args::{LINEAR_LOSS_MAX_CLASSES, LinearLoss, RunningSum};
use super::ops::{NAN_BITS, check_inputs, elements, to_u32};
use super::params::{CrossEntropyParams, LinearLossParams};
use super::{GpuBuffer, GpuContext, GpuError, Kernel};

/// Per-row negative log-likelihood of `log_softmax(logits)` at each row's label: `[rows]`.
/// `labels` holds one class index per row as `f32`; a row whose label is not a class index in
/// `0..cols` gets NaN (the device cannot report an error per element).
pub fn cross_entropy_rows(
    ctx: &GpuContext,
    logits: &GpuBuffer,
    labels: &GpuBuffer,
    rows: usize,
    cols: usize,
) -> Result<GpuBuffer, GpuError> {
    cross_entropy_kernel(ctx, Kernel::CrossEntropyRows, logits, labels, rows, cols, 1.0)
}

/// The mean over the rows of [`cross_entropy_rows`] (0 without rows), as a one-element buffer:
/// the loss, in one dispatch of one workgroup.
pub fn cross_entropy_mean(
    ctx: &GpuContext,
    logits: &GpuBuffer,
    labels: &GpuBuffer,
    rows: usize,
    cols: usize,
) -> Result<GpuBuffer, GpuError> {
    cross_entropy_kernel(ctx, Kernel::CrossEntropyMean, logits, labels, rows, cols, 1.0 / rows.max(1) as f32)
}

/// The gradient `(softmax(logits) - onehot(labels)) * scale`, `[rows, cols]`. As in
/// `cpu::cross_entropy_backward`, `scale` is the whole factor: pass `upstream / rows` for the
/// gradient of the mean loss.
pub fn cross_entropy_backward(
    ctx: &GpuContext,
    logits: &GpuBuffer,
    labels: &GpuBuffer,
    rows: usize,
    cols: usize,
    scale: f32,
) -> Result<GpuBuffer, GpuError> {
    cross_entropy_kernel(ctx, Kernel::CrossEntropyBackward, logits, labels, rows, cols, scale)
}

fn cross_entropy_kernel(
    ctx: &GpuContext,
    kernel: Kernel,
    logits: &GpuBuffer,
    labels: &GpuBuffer,
    rows: usize,
    cols: usize,
    scale: f32,
) -> Result<GpuBuffer, GpuError> {
    const OP: &str = "cross_entropy";
    if cols == 0 && rows > 0 {
        return Err(GpuError::Shape { op: OP, detail: "rows without classes".into() });
    }
    let n = elements(OP, &[rows, cols])?;
    check_inputs(ctx, OP, &[("logits", logits, n), ("labels", labels, rows)])?;
    let (out_len, groups) = match kernel {
        Kernel::CrossEntropyRows => (rows, rows),
        Kernel::CrossEntropyMean => (1, 1),
        _ => (n, rows),
    };
    let out = ctx.alloc_output(out_len, OP)?;
    let params = CrossEntropyParams { rows: to_u32(OP, rows)?, cols: to_u32(OP, cols)?, scale, nan_bits: NAN_BITS };
    ctx.dispatch(kernel, &params, &[logits, labels, &out], groups as u64, OP)?;
    Ok(out)
}

/// A classifier's last layer and its loss in one dispatch: `logits = x · weightᵀ + bias` for
/// `x` `[rows, k]`, `weight` `[classes, k]` and `bias` `[classes]`, the mean over the rows of
/// [`cross_entropy_rows`], its gradient with respect to the logits (as
/// [`cross_entropy_backward`] with `scale` `1 / rows`), and `running` updated with the mean.
/// One workgroup computes it all (the mean in a fixed order), so it is for a few hundred rows
/// of at most [`LINEAR_LOSS_MAX_CLASSES`] classes: the end of a training step.
pub fn linear_cross_entropy(
    ctx: &GpuContext,
    x: &GpuBuffer,
    weight: &GpuBuffer,
    bias: &GpuBuffer,
    labels: &GpuBuffer,
    [rows, k, classes]: [usize; 3],
    running: Option<RunningSum>,
) -> Result<LinearLoss, GpuError> {
    const OP: &str = "linear_cross_entropy";
    if classes == 0 || classes > LINEAR_LOSS_MAX_CLASSES {
        let detail = format!("{classes} classes; the fused kernel takes 1 to {LINEAR_LOSS_MAX_CLASSES}");
        return Err(GpuError::Shape { op: OP, detail });
    }
    let inputs = [
        ("x", x, elements(OP, &[rows, k])?),
        ("weight", weight, elements(OP, &[classes, k])?),
        ("bias", bias, classes),
        ("labels", labels, rows),
    ];
    check_inputs(ctx, OP, &inputs)?;
    let scratch;
    let (sum, sum_scale, reset) = match running {
        Some(r) => {
            check_inputs(ctx, OP, &[("the running sum", r.sum, 1)])?;
            (r.sum, r.scale, r.reset)
        }
        None => {
            scratch = ctx.alloc(1, OP)?;
            (&scratch, 0.0, true)
        }
    };
    let n = elements(OP, &[rows, classes])?;
    let (logits, grad, loss) = (ctx.alloc_output(n, OP)?, ctx.alloc_output(n, OP)?, ctx.alloc_output(1, OP)?);
    let params = LinearLossParams {
        rows: to_u32(OP, rows)?,
        k: to_u32(OP, k)?,
        classes: classes as u32,
        reset: reset as u32,
        scale: 1.0 / rows.max(1) as f32,
        sum_scale,
        nan_bits: NAN_BITS,
        _pad0: 0,
    };
    let buffers = [x, weight, bias, labels, &logits, &grad, &loss, sum];
    ctx.dispatch(Kernel::LinearCrossEntropy, &params, &buffers, 1, OP)?;
    Ok(LinearLoss { logits, grad, loss })
}
