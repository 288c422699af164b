//! Cache-blocked, packed matrix multiplication (the BLIS recipe) on rayon.
//!
//! `C (+)= op(A) · op(B)`, where each operand is read through a row and a column stride, so the
//! transposed forms that backward needs cost nothing extra: packing reads the strides once and the
//! micro-kernel always sees contiguous panels. Every element of C is produced by one task with a
//! fixed summation order, so results are bit-identical whatever the thread count.

use std::cell::RefCell;
use std::ops::Range;
use std::thread::LocalKey;

use rayon::prelude::*;

use crate::error::{Error, Result, element_count};

mod dense;
mod pack;
mod sparse;

/// Rows of A per micro-kernel call: 6 rows x 2 vectors of 8 = 12 AVX accumulators.
const MR: usize = 6;
/// Columns of B per micro-kernel call.
const NR: usize = 16;
/// Largest depth block, the same for both paths so that they sum every element in the same
/// order and give the same bits: which path a product takes depends on its data (a batch with
/// more zeros), and a model must not predict differently from one batch size to another. A
/// 16-wide sliver of B (8 KiB) and a 64-wide group (32 KiB) both fit L1.
const KC: usize = 128;
/// Rows of A per task: the packed block (144 KiB) stays in L2.
const MC: usize = 144;
/// Columns of C per task, so small-M products still split across threads.
const NC: usize = 256;
/// From this many rows on, tasks own their rows through all depth blocks (see `gemm_with`).
const ROWS_OUTER_MIN: usize = 4 * MC;
/// Below this many multiply-adds, scheduling parallel tasks costs more than it saves.
const PARALLEL_MIN_WORK: usize = 1 << 20;

/// A read-only matrix view: element (i, j) is at `data[i * row_stride + j * col_stride]`.
///
/// Invariant, checked once in [`MatRef::new`] and relied on by the kernels' unsafe code:
/// `rows * cols == data.len()` without overflow, and the strides are `(cols, 1)` or `(1, rows)`,
/// so every element `(i < rows, j < cols)` lies inside `data`. The fields stay private to this
/// module so that nothing else can break it.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows x cols` matrix, or its transpose when `transposed` (then `data` holds
    /// a row-major `cols x rows` matrix). Fails when `data` does not hold `rows * cols` values.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, transposed: bool) -> Result<Self> {
        if element_count("matmul", &[rows, cols])? != data.len() {
            return Err(Error::ElementCount { len: data.len(), shape: vec![rows, cols] });
        }
        let (row_stride, col_stride) = if transposed { (1, rows) } else { (cols, 1) };
        Ok(Self { data, rows, cols, row_stride, col_stride })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// `(row_stride, col_stride)`: element (i, j) is at `data[i * row_stride + j * col_stride]`.
    pub fn strides(&self) -> (usize, usize) {
        (self.row_stride, self.col_stride)
    }

    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.row_stride + j * self.col_stride]
    }
}

/// What happens to each element of C once its sum is complete: a per-column bias, then relu.
/// Applied to each block of C while it is still in cache, instead of in a pass of its own.
#[derive(Clone, Copy, Default)]
pub struct Epilogue<'a> {
    pub bias: Option<&'a [f32]>,
    pub relu: bool,
}

impl Epilogue<'_> {
    /// Applies the epilogue to `row`, a run of C's columns starting at column `col0`.
    fn apply(&self, row: &mut [f32], col0: usize) {
        if let Some(bias) = self.bias {
            for (v, &b) in row.iter_mut().zip(&bias[col0..]) {
                *v += b;
            }
        }
        if self.relu {
            for v in row {
                *v = v.max(0.0);
            }
        }
    }
}

/// `c = a · b` (or `c += a · b` when `accumulate`), with `c` row-major `a.rows x b.cols`.
pub fn gemm(a: MatRef, b: MatRef, c: &mut [f32], accumulate: bool) -> Result<()> {
    gemm_with(a, b, c, accumulate, Epilogue::default())
}

/// `c = epilogue(a · b)`: a linear layer's `x · Wᵀ + bias`, optionally through relu.
pub fn gemm_epilogue(a: MatRef, b: MatRef, c: &mut [f32], epilogue: Epilogue) -> Result<()> {
    gemm_with(a, b, c, false, epilogue)
}

/// The product on the dense path, or on the sparse one when A is mostly zeros.
fn gemm_with(a: MatRef, b: MatRef, c: &mut [f32], accumulate: bool, epilogue: Epilogue) -> Result<()> {
    check_product(a, b.rows, b.cols, c, epilogue)?;
    gemm_on_path(a, b, c, accumulate, epilogue, sparse::worthwhile(a, b.cols))
}

/// Checks that `a · B` (B `k x n`) fits `c` and the epilogue's bias: the lengths every tile of
/// C is later written through raw pointers on (`CTile`).
fn check_product(a: MatRef, k: usize, n: usize, c: &[f32], epilogue: Epilogue) -> Result<()> {
    let mismatch = |lhs: Vec<usize>, rhs: Vec<usize>| Err(Error::ShapeMismatch { op: "matmul", lhs, rhs });
    if k != a.cols {
        return mismatch(vec![a.rows, a.cols], vec![k, n]);
    }
    if element_count("matmul", &[a.rows, n])? != c.len() {
        return Err(Error::ElementCount { len: c.len(), shape: vec![a.rows, n] });
    }
    match epilogue.bias {
        Some(bias) if bias.len() != n => mismatch(vec![a.rows, n], vec![bias.len()]),
        _ => Ok(()),
    }
}

/// The length of B packed in `width`-wide slivers over depth `k`: its columns rounded up to
/// whole slivers, and that times the depth.
fn packed_len(k: usize, n: usize, width: usize) -> Result<(usize, usize)> {
    let n_padded = n.checked_next_multiple_of(width).ok_or(Error::TooLarge { op: "matmul", shape: vec![k, n] })?;
    Ok((n_padded, element_count("matmul", &[k, n_padded])?))
}

/// The loops: B is packed (by depth block, or all at once for many rows), then each task owns a
/// block of C (MC rows, `nc` columns) and walks the packed depth blocks, packing or compressing
/// its rows of A for each. The shapes are checked by the caller (`check_product`).
fn gemm_on_path(a: MatRef, b: MatRef, c: &mut [f32], accumulate: bool, epilogue: Epilogue, sparse: bool) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let Some(tiles) = Tiles::plan(a, n, c, Update { accumulate, epilogue }, sparse) else { return Ok(()) };
    let kc_max = depth_block(k);
    // B is packed in slivers as wide as the path's micro-kernel.
    let width = tiles.width();
    let (n_padded, all_of_b) = packed_len(k, n, width)?;
    let pack_and_run = |data: &mut [f32], depths: Range<usize>| {
        for (p0, kc) in depth_blocks(depths.clone(), kc_max) {
            let panel = &mut data[(p0 - depths.start) * n_padded..][..kc * n_padded];
            for_each_chunk(panel, width * kc, tiles.parallel, |s, sliver| {
                pack::pack_b(b, s * width, p0, width, sliver)
            });
        }
        tiles.run(&PackedB { data, n_padded, depths, kc_max });
    };
    if m >= ROWS_OUTER_MIN {
        // Many row blocks: all of B is packed once, and each task keeps its block of C in L2
        // through every depth block, instead of C streaming through memory once per block.
        with_buffer(&PACKED_B, all_of_b, |data| pack_and_run(data, 0..k));
    } else {
        // Few rows: C is small, and each depth block of B is used right after it is packed,
        // while it is still in L2.
        with_buffer(&PACKED_B, kc_max * n_padded, |data| {
            for (p0, kc) in depth_blocks(0..k, kc_max) {
                pack_and_run(data, p0..p0 + kc);
            }
        });
    }
    Ok(())
}

/// Equal depth blocks of at most KC: 784 = 7 x 112 rather than 6 x 128 + 16, which would waste
/// a pass.
fn depth_block(k: usize) -> usize {
    k.div_ceil(k.div_ceil(KC).max(1)).max(1)
}

/// The blocks of C and how each is computed.
struct Tiles<'a> {
    isa: Isa,
    a: MatRef<'a>,
    c: SharedMut,
    n: usize,
    nc: usize,
    tiles: Vec<(usize, usize)>,
    update: Update<'a>,
    sparse: bool,
    parallel: bool,
}

impl<'a> Tiles<'a> {
    /// The tiles of `c = a · B` (B `a.cols x n`); `None` when there is nothing to multiply (C
    /// is then finished: zeros through the epilogue for an empty depth).
    fn plan(a: MatRef<'a>, n: usize, c: &mut [f32], update: Update<'a>, sparse: bool) -> Option<Self> {
        let (m, k) = (a.rows, a.cols);
        if m == 0 || n == 0 {
            return None;
        }
        if k == 0 {
            if !update.accumulate {
                c.fill(0.0);
            }
            c.chunks_exact_mut(n).for_each(|row| update.epilogue.apply(row, 0));
            return None;
        }
        let threads = rayon::current_num_threads();
        // Few rows: blocks of NC columns, so that a block of C, the rows of A and the columns of B
        // it needs share L2, and so that threads have blocks to share (each packs its rows of A
        // again). Many rows: each task takes whole rows, so A is packed or compressed once.
        let nc = if m >= ROWS_OUTER_MIN && m.div_ceil(MC) >= 2 * threads { n } else { NC };
        let tiles = (0..m).step_by(MC).flat_map(|i| (0..n).step_by(nc).map(move |j| (i, j))).collect();
        Some(Tiles {
            isa: Isa::detect(),
            a,
            c: SharedMut(c.as_mut_ptr()),
            n,
            nc,
            tiles,
            update,
            sparse,
            parallel: m.saturating_mul(k).saturating_mul(n) >= PARALLEL_MIN_WORK && threads > 1,
        })
    }

    /// The width of B's slivers on this path.
    fn width(&self) -> usize {
        if self.sparse { sparse::GROUP } else { NR }
    }

    /// Every tile, over the depth blocks `packed_b` holds.
    fn run(&self, packed_b: &PackedB) {
        let (m, n, nc) = (self.a.rows, self.n, self.nc);
        let run_tile = |&(i0, j0): &(usize, usize)| {
            let tile = CTile { c: self.c, ld: n, i0, j0, rows: MC.min(m - i0), cols: nc.min(n - j0) };
            if self.sparse {
                sparse::tile(self.isa, self.a, packed_b, tile, self.update);
            } else {
                dense::tile(self.isa, self.a, packed_b, tile, self.update);
            }
        };
        if self.parallel {
            self.tiles.par_iter().for_each(run_tile);
        } else {
            self.tiles.iter().for_each(run_tile);
        }
    }
}

/// A right-hand side packed once for many products with it, in the layouts of both paths: a
/// layer's weights when serving, where packing them for every small batch would cost more than
/// the product (three quarters of the time of a one-image forward pass).
pub struct PackedMatrix {
    k: usize,
    n: usize,
    dense: CacheLines,
    sparse: CacheLines,
}

impl PackedMatrix {
    /// Packs `b`, a `k x n` matrix (a transposed view for PyTorch's `[out, in]` weights).
    pub fn new(b: MatRef) -> Result<Self> {
        let (k, n) = (b.rows, b.cols);
        let kc_max = depth_block(k);
        let pack = |width: usize| -> Result<CacheLines> {
            let (n_padded, len) = packed_len(k, n, width)?;
            let mut data = CacheLines::zeroed(len);
            let all = data.as_mut();
            for (p0, kc) in depth_blocks(0..k, kc_max) {
                let panel = &mut all[p0 * n_padded..][..kc * n_padded];
                for_each_chunk(panel, width * kc, false, |s, sliver| pack::pack_b(b, s * width, p0, width, sliver));
            }
            Ok(data)
        };
        Ok(PackedMatrix { k, n, dense: pack(NR)?, sparse: pack(sparse::GROUP)? })
    }

    pub fn rows(&self) -> usize {
        self.k
    }

    pub fn cols(&self) -> usize {
        self.n
    }
}

/// `c = epilogue(a · b)` with `b` packed beforehand: the same bits as [`gemm_epilogue`] with the
/// matrix `b` was packed from, without packing it again.
pub fn gemm_packed(a: MatRef, b: &PackedMatrix, c: &mut [f32], epilogue: Epilogue) -> Result<()> {
    let (k, n) = (b.k, b.n);
    check_product(a, k, n, c, epilogue)?;
    let update = Update { accumulate: false, epilogue };
    let Some(tiles) = Tiles::plan(a, n, c, update, sparse::worthwhile(a, n)) else { return Ok(()) };
    let width = tiles.width();
    let (n_padded, len) = packed_len(k, n, width)?;
    let packed = if tiles.sparse { &b.sparse } else { &b.dense };
    let data = &bytemuck::cast_slice::<Line, f32>(&packed.0)[..len];
    tiles.run(&PackedB { data, n_padded, depths: 0..k, kc_max: depth_block(k) });
    Ok(())
}

/// Depth blocks `depths` of B, packed: for each, slivers of `width` columns, `kc * width` floats
/// each (`NC` is a multiple of every width, so a task's first column starts a sliver).
struct PackedB<'a> {
    data: &'a [f32],
    n_padded: usize,
    depths: Range<usize>,
    kc_max: usize,
}

impl PackedB<'_> {
    /// The depth blocks held, as `(first depth, depth)`.
    fn blocks(&self) -> impl Iterator<Item = (usize, usize)> + use<> {
        depth_blocks(self.depths.clone(), self.kc_max)
    }

    /// The slivers of depth block `p0..p0 + kc`, from column `j0` on.
    fn block(&self, p0: usize, kc: usize, j0: usize) -> &[f32] {
        let start = (p0 - self.depths.start) * self.n_padded;
        &self.data[start + j0 * kc..start + kc * self.n_padded]
    }
}

/// `depths` cut into blocks of at most `kc_max`, as `(first depth, depth)`.
fn depth_blocks(depths: Range<usize>, kc_max: usize) -> impl Iterator<Item = (usize, usize)> {
    let end = depths.end;
    depths.step_by(kc_max).map(move |p0| (p0, kc_max.min(end - p0)))
}

/// How the product reaches C.
#[derive(Clone, Copy)]
struct Update<'a> {
    accumulate: bool,
    epilogue: Epilogue<'a>,
}

impl<'a> Update<'a> {
    /// What the depth block starting at `p0` does to C.
    fn step(&self, p0: usize, kc: usize, k: usize) -> Step<'a> {
        Step { overwrite: p0 == 0 && !self.accumulate, epilogue: (p0 + kc == k).then_some(self.epilogue) }
    }
}

thread_local! {
    /// Packing buffers kept between calls: allocating and zeroing them costs as much as a
    /// small product. Every sliver is fully written before it is read, padding included.
    /// B is packed by the calling thread, A by whichever thread runs a task.
    static PACKED_A: RefCell<CacheLines> = const { RefCell::new(CacheLines(Vec::new())) };
    static PACKED_B: RefCell<CacheLines> = const { RefCell::new(CacheLines(Vec::new())) };
}

/// Runs `f` with a packing buffer of exactly `len` floats: this thread's cached one, or a fresh
/// one when it is in use (a nested call from a task this thread picked up).
fn with_buffer(key: &'static LocalKey<RefCell<CacheLines>>, len: usize, f: impl FnOnce(&mut [f32])) {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => f(&mut buffer.at_least(len)[..len]),
        Err(_) => f(&mut CacheLines::zeroed(len).as_mut()[..len]),
    })
}

/// A zeroed `f32` buffer aligned to 64-byte cache lines, so that each 16-float row of a packed
/// B sliver is one aligned cache line for the kernel's two 32-byte loads.
struct CacheLines(Vec<Line>);

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([f32; 16]);

impl CacheLines {
    fn zeroed(len: usize) -> Self {
        CacheLines(vec![Line([0.0; 16]); len.div_ceil(16)])
    }

    /// The buffer, grown to hold at least `len` floats.
    fn at_least(&mut self, len: usize) -> &mut [f32] {
        if self.0.len() * 16 < len {
            *self = CacheLines::zeroed(len);
        }
        self.as_mut()
    }

    fn as_mut(&mut self) -> &mut [f32] {
        bytemuck::cast_slice_mut(&mut self.0)
    }
}

/// Calls `f(index, chunk)` on each `size`-long chunk of `buf`, in parallel when asked.
fn for_each_chunk(buf: &mut [f32], size: usize, parallel: bool, f: impl Fn(usize, &mut [f32]) + Sync) {
    if parallel {
        buf.par_chunks_exact_mut(size).enumerate().for_each(|(i, chunk)| f(i, chunk));
    } else {
        buf.chunks_exact_mut(size).enumerate().for_each(|(i, chunk)| f(i, chunk));
    }
}

/// The instruction set the micro-kernels use, detected once per product.
#[derive(Clone, Copy)]
enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Isa {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Self::Avx2Fma;
        }
        Self::Portable
    }
}

#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: only used to hand disjoint tiles of one output buffer to rayon tasks; that buffer
// holds `rows x n` values (`check_product`), and the tiles cover it without overlap.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

/// A block of C owned by one task.
struct CTile {
    c: SharedMut,
    ld: usize,
    i0: usize,
    j0: usize,
    rows: usize,
    cols: usize,
}

impl CTile {
    /// A pointer to row `r`, column `col` (both relative to the tile) for a kernel that writes
    /// several rows `ld` apart: derived from all of C, so it may reach every row of the tile.
    fn ptr(&self, r: usize, col: usize) -> *mut f32 {
        debug_assert!(r < self.rows && col < self.cols);
        self.c.0.wrapping_add((self.i0 + r) * self.ld + self.j0 + col)
    }

    /// Columns `col..col + len` of row `r`, both relative to the tile.
    ///
    /// # Safety
    /// They must lie inside the tile, and no other reference to them may be alive.
    #[allow(clippy::mut_from_ref)]
    unsafe fn row(&self, r: usize, col: usize, len: usize) -> &mut [f32] {
        debug_assert!(r < self.rows && col + len <= self.cols);
        // SAFETY: forwarded from the caller; the tile lies inside C.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(r, col), len) }
    }
}

/// How one depth block updates C: whether it overwrites or adds, and, for the last block, the
/// epilogue.
struct Step<'a> {
    overwrite: bool,
    epilogue: Option<Epilogue<'a>>,
}

impl Step<'_> {
    /// Writes or adds `values`, computed aside, into `c`: how an edge block reaches C.
    fn merge(&self, c: &mut [f32], values: &[f32]) {
        for (c, &v) in c.iter_mut().zip(values) {
            *c = if self.overwrite { v } else { *c + v };
        }
    }
}

/// `dst = srcᵀ`, with `src` row-major `rows x cols` and `dst` row-major `cols x rows`.
pub fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) -> Result<()> {
    let len = element_count("transpose", &[rows, cols])?;
    if src.len() != len || dst.len() != len {
        return Err(Error::ElementCount { len: src.len().max(dst.len()), shape: vec![rows, cols] });
    }
    pack::transpose_matrix(src, rows, cols, dst);
    Ok(())
}

/// The textbook triple loop: the oracle in tests and the "naive" line in benchmarks.
pub fn gemm_naive(a: MatRef, b: MatRef, c: &mut [f32]) -> Result<()> {
    check_product(a, b.rows, b.cols, c, Epilogue::default())?;
    let (m, k, n) = (a.rows, a.cols, b.cols);
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a.at(i, p) * b.at(p, j)).sum();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Both paths sum each element in the same order, so a batch's zeros never change a result:
    /// the same bits (up to the sign of a zero) whichever path a product takes.
    #[test]
    fn dense_and_sparse_paths_give_the_same_bits() {
        let mut rng = Rng::new(7);
        for (m, k, n) in [(5, 784, 512), (700, 300, 130), (130, 97, 64)] {
            let a: Vec<f32> =
                (0..m * k).map(|_| if rng.uniform(0.0, 1.0) < 0.5 { 0.0 } else { rng.uniform(-1.0, 1.0) }).collect();
            let b = rng.uniform_vec(k * n, -1.0, 1.0);
            let bias = rng.uniform_vec(n, -1.0, 1.0);
            let (a, b) = (MatRef::new(&a, m, k, false).unwrap(), MatRef::new(&b, k, n, true).unwrap());
            let epilogue = Epilogue { bias: Some(&bias), relu: true };
            let run = |sparse: bool| {
                let mut c = vec![f32::NAN; m * n];
                gemm_on_path(a, b, &mut c, false, epilogue, sparse).unwrap();
                c.iter().map(|&v| (v + 0.0).to_bits()).collect::<Vec<_>>()
            };
            assert_eq!(run(false), run(true), "{m}x{k}x{n}");
        }
    }

    /// Packing B once gives the bits of packing it for every product, on either path.
    #[test]
    fn packed_weights_give_the_same_bits() {
        let mut rng = Rng::new(11);
        for (m, k, n, zeros) in
            [(1, 784, 512, 0.0), (5, 784, 512, 0.6), (7, 512, 10, 0.7), (600, 300, 130, 0.5), (3, 37, 70, 0.0)]
        {
            let a: Vec<f32> =
                (0..m * k).map(|_| if rng.uniform(0.0, 1.0) < zeros { 0.0 } else { rng.uniform(-1.0, 1.0) }).collect();
            let weight = rng.uniform_vec(k * n, -1.0, 1.0);
            let bias = rng.uniform_vec(n, -1.0, 1.0);
            let (a, b) = (MatRef::new(&a, m, k, false).unwrap(), MatRef::new(&weight, k, n, true).unwrap());
            let epilogue = Epilogue { bias: Some(&bias), relu: true };
            let mut expected = vec![f32::NAN; m * n];
            gemm_epilogue(a, b, &mut expected, epilogue).unwrap();
            let mut packed = vec![f32::NAN; m * n];
            gemm_packed(a, &PackedMatrix::new(b).unwrap(), &mut packed, epilogue).unwrap();
            let bits = |c: &[f32]| c.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&packed), bits(&expected), "{m}x{k}x{n}");
        }
    }
}
