//! The launchers that read a `u8` dataset kept on the device: the batch gather, and a first
//! linear layer that gathers its batch in its own loads (one dispatch fewer a training step).

use super::args::{DatasetBuffers, Epilogue, GatherSpec, GatheredLinear, MatmulShape};
use super::ops::{NAN_BITS, TILED_BLOCK, WG, check_inputs, elements, matmul_params, same_context, to_u32};
use super::params::{GatherParams, MatmulGatheredParams};
use super::{GpuBuffer, GpuContext, GpuError, Kernel};

/// Checks that `dataset` holds `spec.samples` samples of `spec.features` bytes and their
/// labels, and that the batch's entries are in its order; returns the gather's uniform, which
/// [`gather_batch`] dispatches and [`linear_gathered`] appends to its product's.
fn checked_gather(
    op: &'static str,
    ctx: &GpuContext,
    dataset: DatasetBuffers,
    spec: GatherSpec,
) -> Result<GatherParams, GpuError> {
    let DatasetBuffers { samples: data, labels, order: indices } = dataset;
    same_context(ctx, op, &[data, labels, indices])?;
    let bytes = elements(op, &[spec.samples, spec.features])?;
    for (name, buffer, bytes) in [("samples", data, bytes), ("labels", labels, spec.samples)] {
        if buffer.len() != bytes.div_ceil(4) {
            return Err(GpuError::Shape {
                op,
                detail: format!(
                    "{} {name} of {} bytes need {} packed words, the buffer has {}",
                    spec.samples,
                    bytes / spec.samples.max(1),
                    bytes.div_ceil(4),
                    buffer.len()
                ),
            });
        }
    }
    let end = spec.first.checked_add(spec.batch);
    if end.is_none_or(|end| end > indices.len()) {
        return Err(GpuError::Shape {
            op,
            detail: format!(
                "entries {}..{}+{} are past the {} indices",
                spec.first,
                spec.first,
                spec.batch,
                indices.len()
            ),
        });
    }
    to_u32(op, bytes)?;
    Ok(GatherParams {
        batch: to_u32(op, spec.batch)?,
        features: to_u32(op, spec.features)?,
        samples: to_u32(op, spec.samples)?,
        words: to_u32(op, data.len())?,
        label_words: to_u32(op, labels.len())?,
        indices: to_u32(op, indices.len())?,
        first: to_u32(op, spec.first)?,
        nan_bits: NAN_BITS,
        plane: to_u32(op, spec.features.div_ceil(spec.affine.channels()).max(1))?,
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
        scale: spec.affine.padded().map(|(scale, _)| scale),
        shift: spec.affine.padded().map(|(_, shift)| shift),
    })
}

/// Gathers `spec.batch` samples of a `u8` dataset on the device (uploaded once with
/// [`GpuBuffer::from_u8_packed`]) by the sample indices `indices[first..first + batch]` (`u32`),
/// in one dispatch: the samples as `f32` `[batch, features]`, each byte `byte * scale + shift`
/// with its channel's affine (as `cpu::gather_batch`), and their labels (one byte per sample in
/// `labels`) as `f32` `[batch]`. An index past the dataset gives a NaN row and label.
pub fn gather_batch(
    ctx: &GpuContext,
    data: &GpuBuffer,
    labels: &GpuBuffer,
    indices: &GpuBuffer,
    spec: GatherSpec,
) -> Result<(GpuBuffer, GpuBuffer), GpuError> {
    const OP: &str = "gather_batch";
    let params = checked_gather(OP, ctx, DatasetBuffers { samples: data, labels, order: indices }, spec)?;
    let n = elements(OP, &[spec.batch, spec.features])?;
    let threads = elements(OP, &[spec.batch, spec.features.max(1)])?;
    let out = ctx.alloc_output(n, OP)?;
    let out_labels = ctx.alloc_output(spec.batch, OP)?;
    let buffers = [data, labels, indices, &out, &out_labels];
    ctx.dispatch(Kernel::GatherBatch, &params, &buffers, (threads as u64).div_ceil(WG), OP)?;
    Ok((out, out_labels))
}

/// A first linear layer over the batch [`gather_batch`] would make, in one dispatch that
/// gathers it in its loads: `x · weightᵀ + bias`, through a relu when `relu`, for `weight`
/// `[outputs, spec.features]` and `bias` `[outputs]`. The tiled kernel's first column of tiles
/// also stores `x` (which the weight gradient reads) and the batch's labels.
pub fn linear_gathered(
    ctx: &GpuContext,
    dataset: DatasetBuffers,
    spec: GatherSpec,
    weight: &GpuBuffer,
    bias: &GpuBuffer,
    relu: bool,
) -> Result<GatheredLinear, GpuError> {
    const OP: &str = "linear_gathered";
    let gather = checked_gather(OP, ctx, dataset, spec)?;
    let (m, k, n) = (spec.batch, spec.features, bias.len());
    if n == 0 {
        return Err(GpuError::Shape { op: OP, detail: "a layer without outputs stores no batch".into() });
    }
    check_inputs(ctx, OP, &[("weight", weight, elements(OP, &[n, k])?), ("bias", bias, n)])?;
    let shape = MatmulShape::new(m, k, n).transposed(false, true);
    let mm = matmul_params(shape, Epilogue { bias: Some(bias), relu, relu_mask: None }, TILED_BLOCK)?;
    let params = MatmulGatheredParams::new(mm, gather);
    let out = ctx.alloc_output(elements(OP, &[m, n])?, OP)?;
    let x = ctx.alloc_output(elements(OP, &[m, k])?, OP)?;
    let labels = ctx.alloc_output(m, OP)?;
    let DatasetBuffers { samples, labels: label_bytes, order } = dataset;
    let buffers = [samples, label_bytes, order, weight, bias, &out, &x, &labels];
    ctx.dispatch(Kernel::MatmulTiledGathered, &params, &buffers, params.tiles_total as u64, OP)?;
    Ok(GatheredLinear { out, x, labels })
}
