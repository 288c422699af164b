//! Launchers of the convolution and pooling kernels, mirroring [`crate::backend::cpu::conv`],
//! their oracle: the same shapes and results (up to rounding for the sums, exactly for pooling).
//! Each checks its buffers against the shape, allocates its output from the pool and records
//! its dispatches; nothing waits.
//!
//! The three convolution products are implicit GEMMs (`shaders/conv_gemm.wgsl`): tiled in
//! workgroup memory and register-blocked like the matmul, the unrolled image gathered as the
//! tiles load instead of stored. Their output rows are channels; at most 32 of them take a
//! 32x128 tile instead of the 64x64 one, so that a small layer fills its tiles.

use super::ops::{self, WG, check_inputs, check_len, elements, same_context, to_u32};
use super::params::{ConvGemmParams, PoolParams, ReduceParams};
use super::pipeline::{CONV_TILE, CONV_TILE_NARROW, ConvTile};
use super::{GpuBuffer, GpuContext, GpuError, Kernel};
use crate::backend::cpu::conv::Conv2dShape;

/// Workgroups the weight gradient aims for when it splits its reduction: its output is small
/// (a layer's weights, often a handful of tiles), so without splits most of a large GPU idles.
const SPLIT_TARGET_GROUPS: usize = 512;
/// The shortest split of the weight gradient's reduction: each split costs a partial tile
/// written and read again.
const MIN_SPLIT_DEPTH: usize = 256;

/// The element counts of a convolution's tensors, checked for overflow.
struct Lengths {
    input: usize,
    weight: usize,
    output: usize,
    /// Rows of an unrolled image: in_channels * kernel_h * kernel_w.
    patch: usize,
    out_pixels: usize,
}

impl Lengths {
    fn of(op: &'static str, s: Conv2dShape) -> Result<Lengths, GpuError> {
        // Every size fits 32 bits, and so does each side plus twice the padding: the kernels'
        // positions, which wrap below zero, then wrap to values past every side, and
        // `out_height` and `out_width` cannot overflow.
        for size in [s.batch, s.in_channels, s.height, s.width, s.out_channels, s.kernel_h, s.kernel_w, s.padding] {
            to_u32(op, size)?;
        }
        for side in [s.height, s.width] {
            let padded =
                side.checked_add(s.padding).and_then(|v| v.checked_add(s.padding)).and_then(|v| v.checked_add(1));
            to_u32(op, padded.unwrap_or(usize::MAX))?;
        }
        let out_pixels = elements(op, &[s.out_height(), s.out_width()])?;
        Ok(Lengths {
            input: elements(op, &[s.batch, s.in_channels, s.height, s.width])?,
            weight: elements(op, &[s.out_channels, s.in_channels, s.kernel_h, s.kernel_w])?,
            output: elements(op, &[s.batch, s.out_channels, out_pixels])?,
            patch: elements(op, &[s.in_channels, s.kernel_h, s.kernel_w])?,
            out_pixels,
        })
    }

    /// Whether the convolution has nothing to sum: no output, or no input channel or kernel
    /// offset (the CPU's results are then all zero, bias included).
    fn is_empty(&self) -> bool {
        self.output == 0 || self.patch == 0
    }
}

/// `out = conv(x, weight) + bias` (then `max(out, 0)` when `relu`), as `cpu::conv::conv2d`:
/// `x` `[batch, in_channels, height, width]`, `weight` `[out_channels, in_channels, kernel_h,
/// kernel_w]` and `bias` `[out_channels]` give `[batch, out_channels, out_height, out_width]`.
pub fn conv2d(
    ctx: &GpuContext,
    x: &GpuBuffer,
    weight: &GpuBuffer,
    bias: &GpuBuffer,
    s: Conv2dShape,
    relu: bool,
) -> Result<GpuBuffer, GpuError> {
    const OP: &str = "conv2d";
    let lengths = Lengths::of(OP, s)?;
    check_inputs(
        ctx,
        OP,
        &[("x", x, lengths.input), ("weight", weight, lengths.weight), ("bias", bias, s.out_channels)],
    )?;
    if lengths.is_empty() {
        return ops::fill(ctx, lengths.output, 0.0);
    }
    let (kernel, tile) = pick(s.out_channels, Kernel::Conv2d, Kernel::Conv2dNarrow);
    let columns = elements(OP, &[s.batch, lengths.out_pixels])?;
    let mut params = gemm_params(OP, s, tile, s.out_channels, columns, lengths.patch, lengths.patch)?;
    params.relu = relu as u32;
    let out = ctx.alloc_output(lengths.output, OP)?;
    ctx.dispatch(kernel, &params, &[x, weight, bias, &out], params.tiles_total as u64, OP)?;
    Ok(out)
}

/// The gradient with respect to the input, `dx = convᵀ(dy, weight)`
/// `[batch, in_channels, height, width]`, as `cpu::conv::conv2d_backward_input`.
pub fn conv2d_backward_input(
    ctx: &GpuContext,
    dy: &GpuBuffer,
    weight: &GpuBuffer,
    s: Conv2dShape,
) -> Result<GpuBuffer, GpuError> {
    const OP: &str = "conv2d_backward_input";
    let lengths = Lengths::of(OP, s)?;
    check_inputs(ctx, OP, &[("dy", dy, lengths.output), ("weight", weight, lengths.weight)])?;
    if lengths.is_empty() {
        return ops::fill(ctx, lengths.input, 0.0);
    }
    let (kernel, tile) = pick(s.in_channels, Kernel::Conv2dBackwardInput, Kernel::Conv2dBackwardInputNarrow);
    let columns = elements(OP, &[s.batch, s.height, s.width])?;
    let depth = elements(OP, &[s.out_channels, s.kernel_h, s.kernel_w])?;
    let params = gemm_params(OP, s, tile, s.in_channels, columns, depth, depth)?;
    let dx = ctx.alloc_output(lengths.input, OP)?;
    ctx.dispatch(kernel, &params, &[dy, weight, &dx], params.tiles_total as u64, OP)?;
    Ok(dx)
}

/// The gradient with respect to the weights, `dw = Σ_images dy · im2col(x)ᵀ`
/// `[out_channels, in_channels, kernel_h, kernel_w]`, as `cpu::conv::conv2d_backward_weight`.
/// The reduction over the batch's pixels is split across workgroups when the weights are few
/// tiles; the partial results are then summed in split order by a second dispatch.
pub fn conv2d_backward_weight(
    ctx: &GpuContext,
    x: &GpuBuffer,
    dy: &GpuBuffer,
    s: Conv2dShape,
) -> Result<GpuBuffer, GpuError> {
    const OP: &str = "conv2d_backward_weight";
    let lengths = Lengths::of(OP, s)?;
    check_inputs(ctx, OP, &[("x", x, lengths.input), ("dy", dy, lengths.output)])?;
    if lengths.is_empty() {
        return ops::fill(ctx, lengths.weight, 0.0);
    }
    let (kernel, tile) = pick(s.out_channels, Kernel::Conv2dBackwardWeight, Kernel::Conv2dBackwardWeightNarrow);
    let depth = elements(OP, &[s.batch, lengths.out_pixels])?;
    let tiles = s.out_channels.div_ceil(tile.rows as usize) * lengths.patch.div_ceil(tile.cols as usize);
    let k_split = split_depth(depth, tiles, tile.depth as usize);
    let splits = depth.div_ceil(k_split);
    let params = gemm_params(OP, s, tile, s.out_channels, lengths.patch, depth, k_split)?;
    let groups = params.tiles_total as u64;
    if splits == 1 {
        let dw = ctx.alloc_output(lengths.weight, OP)?;
        ctx.dispatch(kernel, &params, &[x, dy, &dw], groups, OP)?;
        return Ok(dw);
    }
    let partials = ctx.alloc_output(elements(OP, &[splits, lengths.weight])?, OP)?;
    ctx.dispatch(kernel, &params, &[x, dy, &partials], groups, OP)?;
    ops::sum_rows(ctx, &partials, splits, lengths.weight)
}

/// Per-channel sums of `[batch, channels, ...]` data (the gradient of a convolution's bias):
/// `[channels]`, each image's plane summed, then the images in order, as
/// `cpu::conv::channel_sums`.
pub fn channel_sums(ctx: &GpuContext, x: &GpuBuffer, batch: usize, channels: usize) -> Result<GpuBuffer, GpuError> {
    const OP: &str = "channel_sums";
    same_context(ctx, OP, &[x])?;
    let planes = elements(OP, &[batch, channels])?;
    if planes == 0 && x.is_empty() {
        return ops::fill(ctx, channels, 0.0);
    }
    if planes == 0 || !x.len().is_multiple_of(planes) {
        return Err(GpuError::Shape {
            op: OP,
            detail: format!("{} elements are no whole number of {batch} x {channels} planes", x.len()),
        });
    }
    let params = ReduceParams {
        rows: 0,
        cols: 0,
        n: to_u32(OP, x.len() / planes)?,
        groups: to_u32(OP, planes)?,
        scale: 1.0,
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    };
    let sums = ctx.alloc_output(planes, OP)?;
    ctx.dispatch(Kernel::SumPlanes, &params, &[x, &sums], planes as u64, OP)?;
    if batch == 1 {
        return Ok(sums);
    }
    ops::sum_rows(ctx, &sums, batch, channels)
}

/// 2x2 max pooling with stride 2 of `planes` planes of `height x width` (odd edges dropped):
/// `[planes, height / 2, width / 2]`, as `cpu::conv::max_pool2d`. The first largest value of a
/// window wins; NaN propagates.
pub fn max_pool2d(
    ctx: &GpuContext,
    x: &GpuBuffer,
    planes: usize,
    height: usize,
    width: usize,
) -> Result<GpuBuffer, GpuError> {
    const OP: &str = "max_pool2d";
    same_context(ctx, OP, &[x])?;
    let params = pool_params(OP, x, planes, height, width)?;
    let out = ctx.alloc_output(params.n as usize, OP)?;
    ctx.dispatch(Kernel::MaxPool2d, &params, &[x, &out], (params.n as u64).div_ceil(WG), OP)?;
    Ok(out)
}

/// The backward of [`max_pool2d`]: `dx` with each window's gradient `dy` at the input the
/// window chose and 0 elsewhere, as `cpu::conv::max_pool2d_backward`.
pub fn max_pool2d_backward(
    ctx: &GpuContext,
    x: &GpuBuffer,
    dy: &GpuBuffer,
    planes: usize,
    height: usize,
    width: usize,
) -> Result<GpuBuffer, GpuError> {
    const OP: &str = "max_pool2d_backward";
    same_context(ctx, OP, &[x, dy])?;
    let mut params = pool_params(OP, x, planes, height, width)?;
    check_len(OP, "dy", dy, params.n as usize)?;
    params.n = to_u32(OP, x.len())?;
    let dx = ctx.alloc_output(x.len(), OP)?;
    ctx.dispatch(Kernel::MaxPool2dBackward, &params, &[x, &dx, dy], (params.n as u64).div_ceil(WG), OP)?;
    Ok(dx)
}

/// The pooling uniform for `x` `[planes, height, width]`, with one thread per output.
fn pool_params(
    op: &'static str,
    x: &GpuBuffer,
    planes: usize,
    height: usize,
    width: usize,
) -> Result<PoolParams, GpuError> {
    check_len(op, "x", x, elements(op, &[planes, height, width])?)?;
    let (out_height, out_width) = (height / 2, width / 2);
    Ok(PoolParams {
        planes: to_u32(op, planes)?,
        height: to_u32(op, height)?,
        width: to_u32(op, width)?,
        out_height: to_u32(op, out_height)?,
        out_width: to_u32(op, out_width)?,
        n: to_u32(op, elements(op, &[planes, out_height, out_width])?)?,
        _pad0: 0,
        _pad1: 0,
    })
}

/// The instance of a convolution GEMM for `rows` output rows, and its tile.
fn pick(rows: usize, square: Kernel, narrow: Kernel) -> (Kernel, ConvTile) {
    if rows <= CONV_TILE_NARROW.rows as usize { (narrow, CONV_TILE_NARROW) } else { (square, CONV_TILE) }
}

/// The uniform of a GEMM of `rows` x `columns` over `depth`, in splits of `k_split` (a multiple
/// of the tile's depth, or `depth` for one split).
fn gemm_params(
    op: &'static str,
    s: Conv2dShape,
    tile: ConvTile,
    rows: usize,
    columns: usize,
    depth: usize,
    k_split: usize,
) -> Result<ConvGemmParams, GpuError> {
    let tiles_n = columns.div_ceil(tile.cols as usize);
    let tiles_per_split = elements(op, &[rows.div_ceil(tile.rows as usize), tiles_n])?;
    let tiles_total = elements(op, &[tiles_per_split, depth.div_ceil(k_split)])?;
    Ok(ConvGemmParams {
        in_channels: to_u32(op, s.in_channels)?,
        height: to_u32(op, s.height)?,
        width: to_u32(op, s.width)?,
        out_channels: to_u32(op, s.out_channels)?,
        kernel_h: to_u32(op, s.kernel_h)?,
        kernel_w: to_u32(op, s.kernel_w)?,
        padding: to_u32(op, s.padding)?,
        out_height: to_u32(op, s.out_height())?,
        out_width: to_u32(op, s.out_width())?,
        n: to_u32(op, columns)?,
        k: to_u32(op, depth)?,
        tiles_n: to_u32(op, tiles_n)?,
        tiles_per_split: to_u32(op, tiles_per_split)?,
        tiles_total: to_u32(op, tiles_total)?,
        k_split: to_u32(op, k_split)?,
        relu: 0,
    })
}

/// Reduction elements per split of the weight gradient (a multiple of the tile's `slice`): as
/// many splits as bring its `tiles` to about [`SPLIT_TARGET_GROUPS`] workgroups, none shorter
/// than [`MIN_SPLIT_DEPTH`]. It depends on the shape alone, and so do the result's bits.
fn split_depth(depth: usize, tiles: usize, slice: usize) -> usize {
    let splits = SPLIT_TARGET_GROUPS.div_ceil(tiles.max(1)).min(depth.div_ceil(MIN_SPLIT_DEPTH)).max(1);
    if splits == 1 { depth } else { depth.div_ceil(splits).next_multiple_of(slice) }
}
