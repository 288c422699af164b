//! Host-side launchers, one per kernel: each checks its buffers against the sizes it is given,
//! allocates the output from the pool, packs the sizes into the kernel's uniform and records one
//! dispatch (a sum records one per reduction pass). Nothing waits: results stay on the device
//! until a [`GpuBuffer`] is downloaded.
//!
//! The launchers mirror the CPU kernels of [`crate::backend::cpu`], their oracle: same
//! arguments where it makes sense, same formulas, same operation order.

pub use super::args::{
    AdamBuffers, DatasetBuffers, Epilogue, GatherSpec, GatheredLinear, LINEAR_LOSS_MAX_CLASSES, LinearLoss,
    MatmulShape, RunningSum,
};
pub use super::batch::{gather_batch, linear_gathered};
pub use super::loss::{cross_entropy_backward, cross_entropy_mean, cross_entropy_rows, linear_cross_entropy};
use super::params::{
    AdamParams, AxpyParams, DropoutParams, ElementwiseParams, FillParams, MatmulParams, ReduceParams, RowParams,
    SgdParams, UnaryParams,
};
use super::{GpuBuffer, GpuContext, GpuError, Kernel};
use crate::backend::{AdamStep, SgdStep};

/// Threads of a one-dimensional workgroup (see `shaders/common.wgsl`).
pub(super) const WG: u64 = 256;
/// Elements one workgroup of `reduce_sum` adds up (256 threads x 16).
const REDUCE_CHUNK: u64 = 4096;
/// Output tile of the tiled matmul and of the naive one.
pub(super) const TILED_BLOCK: u64 = 64;
/// The k slice the tiled kernel stages per step: a split's runs are whole slices.
const TILED_DEPTH: usize = 16;
const WIDE_BLOCK: u64 = 128;
/// Output tiles of 128x128 from which the wide kernel pays: about two per compute unit of a
/// large GPU (132 on an H200). With fewer, units idle where 4x as many 64x64 tiles keep them
/// busy: on an H200, 1024³ (64 wide tiles) ran at 13.2 TFLOP/s wide and 22.5 tiled, while
/// 2048³ (256) reached 33.8 wide.
const WIDE_MIN_TILES: u64 = 256;
const NAIVE_BLOCK: u64 = 16;
/// Split-K: a product with fewer 64x64 output tiles than this and a k of at least
/// [`SPLIT_MIN_K`] gives each tile several workgroups, each reducing one run of k, and a second
/// dispatch sums the runs. An H200 has 132 compute units: 16 tiles (a 128-row batch through a
/// 512-wide layer) leave 116 idle for the whole of k, while from ~32 tiles on the split at most
/// quadruples the workgroups and the second pass, a dispatch of ~6 us there plus a round trip
/// of the partial sums through memory, eats most of the gain.
const SPLIT_MAX_TILES: u64 = 32;
/// The shortest k that splits. A dispatch inside a pass costs ~6 us on an H200, about what a
/// 64x64 tile's product over ~1000 of k takes on one of its units (layer 1 of the MLP, k = 784,
/// measured ~50-65 us for 16 tiles), so shorter products gain too little to pay for their
/// second pass. It also keeps a step of the default MLP (k = 784 and 512) at 9 dispatches.
const SPLIT_MIN_K: usize = 1024;
/// The least k a part reduces, and the workgroups a split aims for: one per unit of an H200.
const SPLIT_PART_MIN_K: usize = 256;
const SPLIT_TARGET_GROUPS: u64 = 128;

/// A quiet NaN: kernels write it for invalid input (a label or sample index out of range).
pub(super) const NAN_BITS: u32 = 0x7fc0_0000;

/// The op codes of `binary` in `shaders/elementwise.wgsl`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BinaryOp {
    Add = 0,
    Mul = 1,
    /// `y` where `x > 0`, else 0.
    ReluMask = 2,
}

/// The op codes of `shaders/unary.wgsl`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum UnaryOp {
    /// `x * value`.
    Scale = 0,
    Relu = 1,
}

/// `C = op(A) · op(B)` with the optional bias/relu epilogue. Large outputs go to the wide kernel
/// (128x128 block tile, 8x8 outputs per thread), the rest to the tiled one (64x64, 4x4), split
/// over k in two dispatches when it has few tiles and a long k ([`split_parts`]).
/// Returns `C` `[m, n]`.
pub fn matmul(
    ctx: &GpuContext,
    a: &GpuBuffer,
    b: &GpuBuffer,
    shape: MatmulShape,
    epilogue: Epilogue,
) -> Result<GpuBuffer, GpuError> {
    let tile = if wide(shape) {
        MatmulTile::Wide
    } else {
        match split_parts(shape) {
            1 => MatmulTile::Tiled,
            parts => MatmulTile::SplitK(parts),
        }
    };
    matmul_by(ctx, tile, a, b, shape, epilogue)
}

/// How many runs of k [`matmul`] splits a tiled product into: 1 (no split) unless it has few
/// tiles and a long k (fewer than 32 output tiles of 64x64 and k of at least 1024).
pub fn split_parts(shape: MatmulShape) -> usize {
    let tiles = (shape.m as u64).div_ceil(TILED_BLOCK) * (shape.n as u64).div_ceil(TILED_BLOCK);
    if tiles >= SPLIT_MAX_TILES || shape.k < SPLIT_MIN_K {
        return 1;
    }
    let for_groups = SPLIT_TARGET_GROUPS.div_ceil(tiles) as usize;
    for_groups.min(shape.k / SPLIT_PART_MIN_K).max(1)
}

/// Whether [`matmul`] takes the wide kernel for `shape`.
fn wide(shape: MatmulShape) -> bool {
    (shape.m as u64).div_ceil(WIDE_BLOCK) * (shape.n as u64).div_ceil(WIDE_BLOCK) >= WIDE_MIN_TILES
}

/// The kernels of a product, which [`matmul`] chooses between and tests and benchmarks pick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulTile {
    /// One thread per output and no shared memory: the reference for the blocked kernels and
    /// the baseline of the benchmarks.
    Naive,
    /// 64x64 outputs a workgroup, 4x4 a thread.
    Tiled,
    /// 128x128 outputs a workgroup, 8x8 a thread; both operands read as vec4 where their
    /// contiguous dimensions are multiples of 4.
    Wide,
    /// The tiled kernel with k cut into about this many runs (whole 16-deep slices), one
    /// workgroup each, then a pass that sums the runs in order and applies the epilogue.
    SplitK(usize),
}

/// As [`matmul`], by the kernel `tile` names.
pub fn matmul_by(
    ctx: &GpuContext,
    tile: MatmulTile,
    a: &GpuBuffer,
    b: &GpuBuffer,
    shape: MatmulShape,
    epilogue: Epilogue,
) -> Result<GpuBuffer, GpuError> {
    let (kernel, block) = match tile {
        MatmulTile::Naive => (Kernel::MatmulNaive, NAIVE_BLOCK),
        MatmulTile::Tiled => (Kernel::MatmulTiled, TILED_BLOCK),
        MatmulTile::Wide if vec4_aligned(shape) => (Kernel::MatmulWideVec4, WIDE_BLOCK),
        MatmulTile::Wide => (Kernel::MatmulWide, WIDE_BLOCK),
        MatmulTile::SplitK(parts) => return matmul_split(ctx, parts, a, b, shape, epilogue),
    };
    matmul_with(ctx, kernel, block, a, b, shape, epilogue, None)
}

/// Whether each operand's contiguous dimension (k, or m for a transposed A and n for a
/// plain B) is a positive multiple of 4, so the wide kernel can read both as aligned vec4s.
fn vec4_aligned(shape: MatmulShape) -> bool {
    let MatmulShape { m, k, n, trans_a, trans_b } = shape;
    let a_row = if trans_a { m } else { k };
    let b_row = if trans_b { k } else { n };
    k > 0 && k.is_multiple_of(4) && a_row.is_multiple_of(4) && b_row.is_multiple_of(4)
}

/// The split-K product: `parts` runs of k into a `[parts, m, n]` scratch buffer, then their
/// sum with the epilogue. One run (or none, for an empty k) is the one-pass tiled product.
fn matmul_split(
    ctx: &GpuContext,
    parts: usize,
    a: &GpuBuffer,
    b: &GpuBuffer,
    shape: MatmulShape,
    epilogue: Epilogue,
) -> Result<GpuBuffer, GpuError> {
    const OP: &str = "matmul";
    // Whole slices a run, so only the last run has a partial slice.
    let k_part = shape.k.div_ceil(parts.max(1)).next_multiple_of(TILED_DEPTH);
    let parts = shape.k.div_ceil(k_part.max(1));
    if parts <= 1 {
        return matmul_with(ctx, Kernel::MatmulTiled, TILED_BLOCK, a, b, shape, epilogue, None);
    }
    check_matmul_inputs(ctx, a, b, shape, epilogue)?;
    let MatmulShape { m, n, .. } = shape;
    let out = ctx.alloc_output(elements(OP, &[m, n])?, OP)?;
    if m == 0 || n == 0 {
        return Ok(out);
    }
    let partials = ctx.alloc_output(elements(OP, &[parts, m, n])?, OP)?;
    let mut params = matmul_params(shape, epilogue, TILED_BLOCK)?;
    // The scratch's indices and the workgroups must fit the kernel's 32-bit arithmetic.
    to_u32(OP, partials.len())?;
    let groups = to_u32(OP, params.tiles_total as usize * parts)?;
    params.parts = to_u32(OP, parts)?;
    params.k_part = to_u32(OP, k_part)?;
    let bias = epilogue.bias.unwrap_or(a);
    let mask = epilogue.relu_mask.unwrap_or(a);
    ctx.dispatch(Kernel::MatmulTiled, &params, &[a, b, bias, mask, &partials], groups as u64, OP)?;
    let sums = (out.len() as u64).div_ceil(WG);
    ctx.dispatch(Kernel::MatmulSplitSum, &params, &[&partials, &partials, bias, mask, &out], sums, OP)?;
    Ok(out)
}

/// Checks a product's operands and epilogue buffers against its shape.
fn check_matmul_inputs(
    ctx: &GpuContext,
    a: &GpuBuffer,
    b: &GpuBuffer,
    shape: MatmulShape,
    epilogue: Epilogue,
) -> Result<(), GpuError> {
    const OP: &str = "matmul";
    let MatmulShape { m, k, n, .. } = shape;
    check_inputs(ctx, OP, &[("A", a, elements(OP, &[m, k])?), ("B", b, elements(OP, &[k, n])?)])?;
    if let Some(bias) = epilogue.bias {
        check_inputs(ctx, OP, &[("bias", bias, n)])?;
    }
    if let Some(mask) = epilogue.relu_mask {
        check_inputs(ctx, OP, &[("relu mask", mask, elements(OP, &[m, n])?)])?;
    }
    Ok(())
}

/// `C = op(A) · op(B)` and the sums of op(A)'s rows over k (`[m]`), in one dispatch: a weight
/// gradient `dzᵀ · x` with its bias gradient `Σ dz`. The tile as [`matmul`] picks it. Needs
/// `n > 0`: the sums ride on the first column of output tiles.
pub fn matmul_row_sums(
    ctx: &GpuContext,
    a: &GpuBuffer,
    b: &GpuBuffer,
    shape: MatmulShape,
) -> Result<(GpuBuffer, GpuBuffer), GpuError> {
    let (kernel, block) =
        if wide(shape) { (Kernel::MatmulWideRowSums, WIDE_BLOCK) } else { (Kernel::MatmulTiledRowSums, TILED_BLOCK) };
    if shape.n == 0 {
        let detail = "no output columns to carry the row sums: use matmul and sum_rows".to_string();
        return Err(GpuError::Shape { op: "matmul_row_sums", detail });
    }
    let sums = ctx.alloc_output(shape.m, "matmul_row_sums")?;
    let c = matmul_with(ctx, kernel, block, a, b, shape, Epilogue::default(), Some(&sums))?;
    Ok((c, sums))
}

/// The launch of every blocked product: with `row_sums`, by a `_row_sums` kernel into it.
#[allow(clippy::too_many_arguments)]
fn matmul_with(
    ctx: &GpuContext,
    kernel: Kernel,
    block: u64,
    a: &GpuBuffer,
    b: &GpuBuffer,
    shape: MatmulShape,
    epilogue: Epilogue,
    row_sums: Option<&GpuBuffer>,
) -> Result<GpuBuffer, GpuError> {
    const OP: &str = "matmul";
    check_matmul_inputs(ctx, a, b, shape, epilogue)?;
    let MatmulShape { m, n, .. } = shape;
    let out = ctx.alloc_output(elements(OP, &[m, n])?, OP)?;
    if m == 0 || n == 0 {
        return Ok(out);
    }
    let params = matmul_params(shape, epilogue, block)?;
    let tiles = params.tiles_total as u64;
    // Without a bias or mask their binding is A again (bound, never read).
    let bias = epilogue.bias.unwrap_or(a);
    let mask = epilogue.relu_mask.unwrap_or(a);
    match (row_sums, kernel) {
        (Some(sums), _) => ctx.dispatch(kernel, &params, &[a, b, bias, mask, &out, sums], tiles, OP)?,
        // A and B again as vec4 arrays, after A in place of the row sums (bound, never read).
        (None, Kernel::MatmulWideVec4) => {
            ctx.dispatch(kernel, &params, &[a, b, bias, mask, &out, a, a, b], tiles, OP)?
        }
        (None, _) => ctx.dispatch(kernel, &params, &[a, b, bias, mask, &out], tiles, OP)?,
    }
    Ok(out)
}

/// The uniform of a blocked product of `shape` by `block` x `block` tiles: sizes, strides,
/// the epilogue's and the transposes' flags and the tile counts.
pub(super) fn matmul_params(shape: MatmulShape, epilogue: Epilogue, block: u64) -> Result<MatmulParams, GpuError> {
    const OP: &str = "matmul";
    let MatmulShape { m, k, n, trans_a, trans_b } = shape;
    let (m32, k32, n32) = (to_u32(OP, m)?, to_u32(OP, k)?, to_u32(OP, n)?);
    let (a_rs, a_cs) = if trans_a { (1, m32) } else { (k32, 1) };
    let (b_rs, b_cs) = if trans_b { (1, k32) } else { (n32, 1) };
    let flag = |on: bool, bit: u32| if on { bit } else { 0 };
    let flags = flag(epilogue.bias.is_some(), MatmulParams::BIAS)
        | flag(epilogue.relu, MatmulParams::RELU)
        | flag(trans_a, MatmulParams::TRANS_A)
        | flag(trans_b, MatmulParams::TRANS_B)
        | flag(epilogue.relu_mask.is_some(), MatmulParams::RELU_MASK);
    let tiles_n = (n as u64).div_ceil(block);
    let tiles = (m as u64).div_ceil(block) * tiles_n;
    Ok(MatmulParams {
        m: m32,
        n: n32,
        k: k32,
        flags,
        a_rs,
        a_cs,
        b_rs,
        b_cs,
        tiles_n: tiles_n as u32,
        tiles_total: to_u32(OP, tiles as usize)?,
        parts: 1,
        k_part: k32,
    })
}

/// `a + b`, elementwise.
pub fn add(ctx: &GpuContext, a: &GpuBuffer, b: &GpuBuffer) -> Result<GpuBuffer, GpuError> {
    binary(ctx, "add", BinaryOp::Add, a, b)
}

/// `a * b`, elementwise.
pub fn mul(ctx: &GpuContext, a: &GpuBuffer, b: &GpuBuffer) -> Result<GpuBuffer, GpuError> {
    binary(ctx, "mul", BinaryOp::Mul, a, b)
}

/// `grad` where `x > 0`, else 0: the backward of relu.
pub fn relu_mask(ctx: &GpuContext, x: &GpuBuffer, grad: &GpuBuffer) -> Result<GpuBuffer, GpuError> {
    binary(ctx, "relu_mask", BinaryOp::ReluMask, x, grad)
}

fn binary(
    ctx: &GpuContext,
    op: &'static str,
    code: BinaryOp,
    a: &GpuBuffer,
    b: &GpuBuffer,
) -> Result<GpuBuffer, GpuError> {
    let n = a.len();
    check_inputs(ctx, op, &[("the first operand", a, n), ("the second operand", b, n)])?;
    let out = ctx.alloc_output(n, op)?;
    let params = ElementwiseParams { n: to_u32(op, n)?, op: code as u32, cols: 0, _pad: 0 };
    ctx.dispatch(Kernel::Binary, &params, &[a, b, &out], (n as u64).div_ceil(WG), op)?;
    Ok(out)
}

/// `x * factor`, elementwise.
pub fn scale(ctx: &GpuContext, x: &GpuBuffer, factor: f32) -> Result<GpuBuffer, GpuError> {
    unary(ctx, "scale", UnaryOp::Scale, x, factor)
}

/// `max(x, 0)`, elementwise.
pub fn relu(ctx: &GpuContext, x: &GpuBuffer) -> Result<GpuBuffer, GpuError> {
    unary(ctx, "relu", UnaryOp::Relu, x, 0.0)
}

fn unary(ctx: &GpuContext, op: &'static str, code: UnaryOp, x: &GpuBuffer, value: f32) -> Result<GpuBuffer, GpuError> {
    same_context(ctx, op, &[x])?;
    let n = x.len();
    let out = ctx.alloc_output(n, op)?;
    let params = UnaryParams { n: to_u32(op, n)?, op: code as u32, value, _pad: 0 };
    ctx.dispatch(Kernel::Unary, &params, &[x, &out], (n as u64).div_ceil(WG), op)?;
    Ok(out)
}

/// Inverted dropout with the mask `key`: `x * scale` where `cpu::dropout_keeps(key, i, p)`,
/// else 0 (the same mask as the CPU's, drawn on the device). With the same key it is also its
/// backward.
pub fn dropout(ctx: &GpuContext, x: &GpuBuffer, key: u64, p: f32, scale: f32) -> Result<GpuBuffer, GpuError> {
    const OP: &str = "dropout";
    same_context(ctx, OP, &[x])?;
    let n = x.len();
    let out = ctx.alloc_output(n, OP)?;
    let params = DropoutParams {
        n: to_u32(OP, n)?,
        key_lo: key as u32,
        key_hi: (key >> 32) as u32,
        p,
        scale,
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    };
    ctx.dispatch(Kernel::Dropout, &params, &[x, &out], (n as u64).div_ceil(WG), OP)?;
    Ok(out)
}

/// `acc += alpha * x` in place, or `acc = alpha * x` when `reset`: accumulating gradients, or
/// losses over an epoch, on the device.
pub fn axpy(ctx: &GpuContext, acc: &GpuBuffer, x: &GpuBuffer, alpha: f32, reset: bool) -> Result<(), GpuError> {
    const OP: &str = "axpy";
    check_inputs(ctx, OP, &[("acc", acc, acc.len()), ("x", x, acc.len())])?;
    let n = acc.len();
    let params = AxpyParams { n: to_u32(OP, n)?, alpha, reset: reset as u32, _pad: 0 };
    ctx.dispatch(Kernel::Axpy, &params, &[acc, x], (n as u64).div_ceil(WG), OP)
}

/// A new buffer of `len` copies of `value` (also how a scalar is broadcast).
pub fn fill(ctx: &GpuContext, len: usize, value: f32) -> Result<GpuBuffer, GpuError> {
    let out = ctx.alloc(len, "fill")?;
    ctx.fill_bits(&out, value.to_bits())?;
    Ok(out)
}

/// `x [rows, cols] + bias [cols]` on every row.
pub fn add_bias(
    ctx: &GpuContext,
    x: &GpuBuffer,
    bias: &GpuBuffer,
    rows: usize,
    cols: usize,
) -> Result<GpuBuffer, GpuError> {
    const OP: &str = "add_bias";
    let n = elements(OP, &[rows, cols])?;
    check_inputs(ctx, OP, &[("x", x, n), ("bias", bias, cols)])?;
    let out = ctx.alloc_output(n, OP)?;
    let params = ElementwiseParams { n: to_u32(OP, n)?, op: 0, cols: to_u32(OP, cols)?, _pad: 0 };
    ctx.dispatch(Kernel::AddBias, &params, &[x, bias, &out], (n as u64).div_ceil(WG), OP)?;
    Ok(out)
}

/// Column sums of `x [rows, cols]`: `[cols]`, the gradient of a broadcast bias.
pub fn sum_rows(ctx: &GpuContext, x: &GpuBuffer, rows: usize, cols: usize) -> Result<GpuBuffer, GpuError> {
    const OP: &str = "sum_rows";
    check_inputs(ctx, OP, &[("x", x, elements(OP, &[rows, cols])?)])?;
    let out = ctx.alloc_output(cols, OP)?;
    let groups = (cols as u64).div_ceil(64);
    let params = ReduceParams {
        rows: to_u32(OP, rows)?,
        cols: to_u32(OP, cols)?,
        n: 0,
        groups: groups as u32,
        scale: 1.0,
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    };
    ctx.dispatch(Kernel::SumRows, &params, &[x, &out], groups, OP)?;
    Ok(out)
}

/// The sum of all elements, as a one-element buffer: a tree over fixed chunks of 4096, so the
/// result depends only on the input, never on scheduling.
pub fn sum(ctx: &GpuContext, x: &GpuBuffer) -> Result<GpuBuffer, GpuError> {
    sum_scaled(ctx, x, 1.0, "sum")
}

/// The mean of all elements (0 for an empty buffer), as a one-element buffer.
pub fn mean(ctx: &GpuContext, x: &GpuBuffer) -> Result<GpuBuffer, GpuError> {
    sum_scaled(ctx, x, 1.0 / x.len().max(1) as f32, "mean")
}

/// `scale * sum(x)`: passes of `reduce_sum` until one partial is left; the last applies `scale`.
fn sum_scaled(ctx: &GpuContext, x: &GpuBuffer, scale: f32, op: &'static str) -> Result<GpuBuffer, GpuError> {
    same_context(ctx, op, &[x])?;
    let mut n = x.len() as u64;
    let mut input = x.clone();
    loop {
        let groups = n.div_ceil(REDUCE_CHUNK).max(1);
        let last = groups == 1;
        let out = ctx.alloc_output(groups as usize, op)?;
        let factor = if last { scale } else { 1.0 };
        let params = ReduceParams {
            rows: 0,
            cols: 0,
            n: n as u32,
            groups: groups as u32,
            scale: factor,
            _pad0: 0,
            _pad1: 0,
            _pad2: 0,
        };
        ctx.dispatch(Kernel::ReduceSum, &params, &[&input, &out], groups, op)?;
        if last {
            return Ok(out);
        }
        input = out;
        n = groups;
    }
}

/// Row-wise softmax of `x [rows, cols]`, stable for large inputs.
pub fn softmax_rows(ctx: &GpuContext, x: &GpuBuffer, rows: usize, cols: usize) -> Result<GpuBuffer, GpuError> {
    row_kernel(ctx, "softmax_rows", Kernel::SoftmaxRows, x, rows, cols, rows * cols)
}

/// Index of the largest element of each row of `x [rows, cols]` (the first on ties), as `f32`
/// values in a `[rows]` buffer, the way labels are stored.
pub fn argmax_rows(ctx: &GpuContext, x: &GpuBuffer, rows: usize, cols: usize) -> Result<GpuBuffer, GpuError> {
    if cols == 0 && rows > 0 {
        return Err(GpuError::Shape { op: "argmax_rows", detail: "rows without columns have no maximum".into() });
    }
    row_kernel(ctx, "argmax_rows", Kernel::ArgmaxRows, x, rows, cols, rows)
}

fn row_kernel(
    ctx: &GpuContext,
    op: &'static str,
    kernel: Kernel,
    x: &GpuBuffer,
    rows: usize,
    cols: usize,
    out_len: usize,
) -> Result<GpuBuffer, GpuError> {
    let n = elements(op, &[rows, cols])?;
    check_inputs(ctx, op, &[("x", x, n)])?;
    let out = ctx.alloc_output(out_len, op)?;
    if n > 0 {
        let params = RowParams { rows: to_u32(op, rows)?, cols: to_u32(op, cols)?, _pad0: 0, _pad1: 0 };
        ctx.dispatch(kernel, &params, &[x, &out], rows as u64, op)?;
    }
    Ok(out)
}

/// Softmax backward from the softmax output `y` and the incoming gradient `dy`, both
/// `[rows, cols]`: `dx = y * (dy - sum(dy * y))` per row.
pub fn softmax_rows_backward(
    ctx: &GpuContext,
    y: &GpuBuffer,
    dy: &GpuBuffer,
    rows: usize,
    cols: usize,
) -> Result<GpuBuffer, GpuError> {
    const OP: &str = "softmax_rows_backward";
    let n = elements(OP, &[rows, cols])?;
    check_inputs(ctx, OP, &[("y", y, n), ("dy", dy, n)])?;
    let out = ctx.alloc_output(n, OP)?;
    if n > 0 {
        let params = RowParams { rows: to_u32(OP, rows)?, cols: to_u32(OP, cols)?, _pad0: 0, _pad1: 0 };
        ctx.dispatch(Kernel::SoftmaxBackward, &params, &[y, dy, &out], rows as u64, OP)?;
    }
    Ok(out)
}

/// One Adam/AdamW update of every parameter and its moments in place, with the formulas and
/// operation order of `cpu::adam_step`: six parameters per dispatch where the device binds
/// their 24 buffers (a three-layer MLP's weights and biases in one), then two per dispatch, the
/// last alone when their number is odd.
pub fn adam_steps(ctx: &GpuContext, params: &[AdamBuffers], h: AdamStep) -> Result<(), GpuError> {
    const OP: &str = "adam_step";
    for b in params {
        same_context(ctx, OP, &[b.param, b.grad, b.m, b.v])?;
        for (name, buffer) in [("grad", b.grad), ("m", b.m), ("v", b.v)] {
            check_len(OP, name, buffer, b.param.len())?;
        }
    }
    // The same folding as the CPU kernel, in the same f32 arithmetic.
    let step_size = h.lr / h.bias_correction1;
    let bias_correction2_sqrt = h.bias_correction2.sqrt();
    let weight_factor = if h.decoupled { 1.0 - h.lr * h.weight_decay } else { 1.0 };
    let gradient_decay = if h.decoupled { 0.0 } else { h.weight_decay };
    let six = ctx.limits().binds(Kernel::AdamSix);
    let mut rest = params;
    while !rest.is_empty() {
        let take = if six && rest.len() >= 6 { 6 } else { rest.len().min(2) };
        let (chunk, tail) = rest.split_at(take);
        rest = tail;
        // Elements per parameter of the chunk, zero past its end.
        let mut n = [0u32; 6];
        for (n, b) in n.iter_mut().zip(chunk) {
            *n = to_u32(OP, b.param.len())?;
        }
        let params = AdamParams {
            n: n[0],
            weight_factor,
            gradient_decay,
            one_minus_beta1: 1.0 - h.beta1,
            beta2: h.beta2,
            one_minus_beta2: 1.0 - h.beta2,
            step_size,
            bias_correction2_sqrt,
            eps: h.eps,
            n2: n[1],
            n3: n[2],
            n4: n[3],
            n5: n[4],
            n6: n[5],
            _pad0: 0,
            _pad1: 0,
        };
        let kernel = match take {
            6 => Kernel::AdamSix,
            2 => Kernel::AdamPair,
            _ => Kernel::Adam,
        };
        let buffers: Vec<&GpuBuffer> = chunk.iter().flat_map(|b| [b.param, b.grad, b.m, b.v]).collect();
        let groups = n.iter().map(|&n| n as u64).sum::<u64>().div_ceil(WG);
        ctx.dispatch(kernel, &params, &buffers, groups, OP)?;
    }
    Ok(())
}

/// One SGD update (momentum, weight decay, no dampening) of `param` and its momentum buffer in
/// place, with the formulas of `cpu::sgd_step`.
pub fn sgd_step(
    ctx: &GpuContext,
    param: &GpuBuffer,
    grad: &GpuBuffer,
    momentum: &GpuBuffer,
    h: SgdStep,
) -> Result<(), GpuError> {
    const OP: &str = "sgd_step";
    let n = param.len();
    check_inputs(ctx, OP, &[("param", param, n), ("grad", grad, n), ("momentum", momentum, n)])?;
    let keep = if h.first_step { 0.0 } else { h.momentum };
    let params = SgdParams {
        n: to_u32(OP, n)?,
        use_momentum: (h.momentum != 0.0) as u32,
        keep,
        lr: h.lr,
        weight_decay: h.weight_decay,
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
    };
    ctx.dispatch(Kernel::Sgd, &params, &[param, grad, momentum], (n as u64).div_ceil(WG), OP)
}

impl GpuContext {
    /// A buffer for a launcher's output; NaN-filled first while poisoning is on (a test hook).
    pub(super) fn alloc_output(&self, len: usize, what: &'static str) -> Result<GpuBuffer, GpuError> {
        let out = self.alloc(len, what)?;
        if self.poison_outputs.load(std::sync::atomic::Ordering::Relaxed) {
            self.fill_bits(&out, NAN_BITS)?;
        }
        Ok(out)
    }

    fn fill_bits(&self, out: &GpuBuffer, bits: u32) -> Result<(), GpuError> {
        let n = out.len();
        let params = FillParams { n: to_u32("fill", n)?, bits, _pad0: 0, _pad1: 0 };
        self.dispatch(Kernel::Fill, &params, &[out], (n as u64).div_ceil(WG), "fill")
    }
}

/// The element count of a shape, or an error when it overflows.
pub(super) fn elements(op: &'static str, dims: &[usize]) -> Result<usize, GpuError> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| GpuError::Shape { op, detail: format!("the shape {dims:?} has too many elements") })
}

pub(super) fn to_u32(op: &'static str, value: usize) -> Result<u32, GpuError> {
    u32::try_from(value)
        .map_err(|_| GpuError::Shape { op, detail: format!("{value} does not fit the kernel's 32-bit sizes") })
}

pub(super) fn check_len(op: &'static str, name: &str, buffer: &GpuBuffer, expected: usize) -> Result<(), GpuError> {
    if buffer.len() != expected {
        return Err(GpuError::Shape {
            op,
            detail: format!("{name} has {} elements, the shape needs {expected}", buffer.len()),
        });
    }
    Ok(())
}

/// Checks that every input lives on `ctx` (all of them first) and holds the number of elements
/// given beside it.
pub(super) fn check_inputs(
    ctx: &GpuContext,
    op: &'static str,
    inputs: &[(&str, &GpuBuffer, usize)],
) -> Result<(), GpuError> {
    if !inputs.iter().all(|(_, buffer, _)| std::ptr::eq(&**buffer.context(), ctx)) {
        return Err(GpuError::ContextMismatch { op });
    }
    inputs.iter().try_for_each(|&(name, buffer, expected)| check_len(op, name, buffer, expected))
}

pub(super) fn same_context(ctx: &GpuContext, op: &'static str, buffers: &[&GpuBuffer]) -> Result<(), GpuError> {
    if buffers.iter().all(|b| std::ptr::eq(&**b.context(), ctx)) {
        Ok(())
    } else {
        Err(GpuError::ContextMismatch { op })
    }
}
