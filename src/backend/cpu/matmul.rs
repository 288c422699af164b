//! Cache-blocked, packed matrix multiplication (the BLIS recipe) on rayon.
//!
//! `C (+)= op(A) · op(B)`, where each operand is read through a row and a column stride, so the
//! transposed forms that backward needs cost nothing extra: packing reads the strides once and the
//! micro-kernel always sees contiguous panels. Every element of C is produced by one task with a
//! fixed summation order, so results are bit-identical whatever the thread count.

use std::cell::RefCell;

use rayon::prelude::*;

/// Rows of A per micro-kernel call: 6 rows x 2 vectors of 8 = 12 AVX accumulators.
const MR: usize = 6;
/// Columns of B per micro-kernel call.
const NR: usize = 16;
/// Largest depth of one packed panel: an NR-wide sliver of B (16 KiB) stays in L1.
const KC: usize = 256;
/// Rows of A per task: the packed block (144 KiB) stays in L2.
const MC: usize = 144;
/// Columns of C per task, so small-M products still split across threads.
const NC: usize = 256;
/// Below this many multiply-adds, scheduling parallel tasks costs more than it saves.
const PARALLEL_MIN_WORK: usize = 1 << 20;

/// A read-only matrix view: element (i, j) is at `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `rows x cols` matrix, or its transpose when `transposed` (then `data` holds
    /// a row-major `cols x rows` matrix).
    pub fn new(data: &'a [f32], rows: usize, cols: usize, transposed: bool) -> Self {
        assert_eq!(data.len(), rows * cols, "MatRef: data does not match the shape");
        let (row_stride, col_stride) = if transposed { (1, rows) } else { (cols, 1) };
        Self { data, rows, cols, row_stride, col_stride }
    }

    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.row_stride + j * self.col_stride]
    }
}

/// `c = a · b` (or `c += a · b` when `accumulate`), with `c` row-major `a.rows x b.cols`.
pub fn gemm(a: MatRef, b: MatRef, c: &mut [f32], accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "gemm: inner dimensions differ");
    assert_eq!(c.len(), m * n, "gemm: output has the wrong size");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    let kernel = MicroKernel::detect();
    let parallel = m * k * n >= PARALLEL_MIN_WORK && rayon::current_num_threads() > 1;
    // Equal depth blocks: 784 = 4 x 196 rather than 3 x 256 + 16, which would waste a pass.
    let kc_max = k.div_ceil(k.div_ceil(KC));
    let (m_padded, n_padded) = (m.div_ceil(MR) * MR, n.div_ceil(NR) * NR);
    let c = SharedMut(c.as_mut_ptr());
    let tiles: Vec<(usize, usize)> = (0..m).step_by(MC).flat_map(|i| (0..n).step_by(NC).map(move |j| (i, j))).collect();

    with_pack_buffers(m_padded * kc_max, kc_max * n_padded, |packed_a, packed_b| {
        for p0 in (0..k).step_by(kc_max) {
            let kc = kc_max.min(k - p0);
            let (panel_a, panel_b) = (&mut packed_a[..m_padded * kc], &mut packed_b[..kc * n_padded]);
            for_each_chunk(panel_a, MR * kc, parallel, |s, sliver| pack_a(a, s * MR, p0, sliver));
            for_each_chunk(panel_b, NR * kc, parallel, |s, sliver| pack_b(b, s * NR, p0, sliver));
            let (panel_a, panel_b) = (&*panel_a, &*panel_b);
            let overwrite = p0 == 0 && !accumulate;
            let run_tile = |&(i0, j0): &(usize, usize)| {
                let tile = CTile { c, ld: n, i0, j0, rows: MC.min(m - i0), cols: NC.min(n - j0) };
                macro_kernel(kernel, kc, &panel_a[i0 * kc..], &panel_b[j0 * kc..], tile, overwrite);
            };
            if parallel {
                tiles.par_iter().for_each(run_tile);
            } else {
                tiles.iter().for_each(run_tile);
            }
        }
    });
}

thread_local! {
    /// Packing buffers kept between calls: allocating and zeroing them costs as much as a
    /// small product. Every sliver is fully written before it is read, padding included.
    static PACK_BUFFERS: RefCell<(CacheLines, CacheLines)> =
        const { RefCell::new((CacheLines(Vec::new()), CacheLines(Vec::new()))) };
}

/// Runs `f` with packing buffers of at least the given lengths: this thread's cached pair, or
/// a fresh pair when they are in use (a nested call from a task this thread picked up).
fn with_pack_buffers(len_a: usize, len_b: usize, f: impl FnOnce(&mut [f32], &mut [f32])) {
    PACK_BUFFERS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffers) => {
            let (a, b) = &mut *buffers;
            f(&mut a.at_least(len_a)[..len_a], &mut b.at_least(len_b)[..len_b])
        }
        Err(_) => f(CacheLines::zeroed(len_a).as_mut(), CacheLines::zeroed(len_b).as_mut()),
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

/// Copies rows `r0..r0+MR` of A at depths `p0..p0+kc` into one sliver, `MR` values per depth,
/// zero-padding rows past the end. Reads along whichever direction is contiguous in memory.
fn pack_a(a: MatRef, r0: usize, p0: usize, sliver: &mut [f32]) {
    let kc = sliver.len() / MR;
    let rows = MR.min(a.rows - r0);
    if rows < MR {
        sliver.fill(0.0);
    }
    if a.row_stride == 1 {
        for (p, dst) in sliver.chunks_exact_mut(MR).enumerate() {
            copy_prefix(dst, &a.data[(p0 + p) * a.col_stride + r0..], rows);
        }
    } else if a.col_stride == 1 {
        transpose(&a.data[r0 * a.row_stride + p0..], a.row_stride, rows, kc, sliver, MR);
    } else {
        for r in 0..rows {
            let row = &a.data[(r0 + r) * a.row_stride..][..(p0 + kc - 1) * a.col_stride + 1];
            for p in 0..kc {
                sliver[p * MR + r] = row[(p0 + p) * a.col_stride];
            }
        }
    }
}

/// Copies columns `c0..c0+NR` of B at depths `p0..p0+kc` into one sliver, `NR` values per
/// depth, zero-padding columns past the end.
fn pack_b(b: MatRef, c0: usize, p0: usize, sliver: &mut [f32]) {
    let kc = sliver.len() / NR;
    let cols = NR.min(b.cols - c0);
    if cols < NR {
        sliver.fill(0.0);
    }
    if b.col_stride == 1 {
        for (p, dst) in sliver.chunks_exact_mut(NR).enumerate() {
            copy_prefix(dst, &b.data[(p0 + p) * b.row_stride + c0..], cols);
        }
    } else if b.row_stride == 1 {
        for half in (0..cols).step_by(8) {
            let src = &b.data[(c0 + half) * b.col_stride + p0..];
            transpose(src, b.col_stride, (cols - half).min(8), kc, &mut sliver[half..], NR);
        }
    } else {
        for j in 0..cols {
            let col = &b.data[(c0 + j) * b.col_stride..][..(p0 + kc - 1) * b.row_stride + 1];
            for p in 0..kc {
                sliver[p * NR + j] = col[(p0 + p) * b.row_stride];
            }
        }
    }
}

/// Copies `len` floats from `src` to the start of `dst`; a full-width copy has a length known
/// at compile time, so it becomes a few vector moves instead of a `memcpy` call.
#[inline(always)]
fn copy_prefix(dst: &mut [f32], src: &[f32], len: usize) {
    if len == dst.len() && len == MR {
        dst.copy_from_slice(&src[..MR]);
    } else if len == dst.len() && len == NR {
        dst.copy_from_slice(&src[..NR]);
    } else {
        dst[..len].copy_from_slice(&src[..len]);
    }
}

/// `dst[p * dst_stride + i] = src[i * src_stride + p]` for `i < lanes <= 8`, `p < depth`: the
/// transposing copy that packing a row-major A or a transposed B needs, 8x8 blocks at a time.
/// Lanes `lanes..8` of a row may be set to zero (they are padding or rewritten later).
fn transpose(src: &[f32], src_stride: usize, lanes: usize, depth: usize, dst: &mut [f32], dst_stride: usize) {
    assert!(lanes <= 8 && (lanes == 0 || (lanes - 1) * src_stride + depth <= src.len()));
    assert!(depth == 0 || (depth - 1) * dst_stride + lanes <= dst.len());
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present; the asserts above bound every read and write.
        unsafe { transpose_avx2(src, src_stride, lanes, depth - depth % 8, dst, dst_stride) };
        done = depth - depth % 8;
    }
    for i in 0..lanes {
        for p in done..depth {
            dst[p * dst_stride + i] = src[i * src_stride + p];
        }
    }
}

/// The 8x8-block part of `transpose` for the first `depth` (a multiple of 8) depths.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn transpose_avx2(
    src: &[f32],
    src_stride: usize,
    lanes: usize,
    depth: usize,
    dst: &mut [f32],
    dst_stride: usize,
) {
    use std::arch::x86_64::*;
    let mask = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(lanes as i32), mask);
    for p in (0..depth).step_by(8) {
        // SAFETY (whole block): rows below `lanes` read src[i*src_stride + p .. + 8], within
        // the bound the caller asserted; stores write `lanes` floats at dst[(p+q)*dst_stride].
        unsafe {
            let row = |i: usize| {
                if i < lanes { _mm256_loadu_ps(src.as_ptr().add(i * src_stride + p)) } else { _mm256_setzero_ps() }
            };
            let (r0, r1, r2, r3, r4, r5, r6, r7) = (row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7));
            let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
            let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
            let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
            let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
            let (u0, u1) = (_mm256_shuffle_ps::<0x44>(t0, t2), _mm256_shuffle_ps::<0xEE>(t0, t2));
            let (u2, u3) = (_mm256_shuffle_ps::<0x44>(t1, t3), _mm256_shuffle_ps::<0xEE>(t1, t3));
            let (u4, u5) = (_mm256_shuffle_ps::<0x44>(t4, t6), _mm256_shuffle_ps::<0xEE>(t4, t6));
            let (u6, u7) = (_mm256_shuffle_ps::<0x44>(t5, t7), _mm256_shuffle_ps::<0xEE>(t5, t7));
            let columns = [
                _mm256_permute2f128_ps::<0x20>(u0, u4),
                _mm256_permute2f128_ps::<0x20>(u1, u5),
                _mm256_permute2f128_ps::<0x20>(u2, u6),
                _mm256_permute2f128_ps::<0x20>(u3, u7),
                _mm256_permute2f128_ps::<0x31>(u0, u4),
                _mm256_permute2f128_ps::<0x31>(u1, u5),
                _mm256_permute2f128_ps::<0x31>(u2, u6),
                _mm256_permute2f128_ps::<0x31>(u3, u7),
            ];
            for (q, column) in columns.into_iter().enumerate() {
                let out = dst.as_mut_ptr().add((p + q) * dst_stride);
                // Lanes past `lanes` hold zeros: a full store writes them over padding or over
                // the next row's start, which a later store rewrites. Masked stores are slow
                // on AMD, so only the last rows, whose overhang would leave `dst`, use one.
                if (p + q) * dst_stride + 8 <= dst.len() {
                    _mm256_storeu_ps(out, column)
                } else {
                    _mm256_maskstore_ps(out, mask, column)
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: only used to hand disjoint tiles of one output buffer to rayon tasks.
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

fn macro_kernel(kernel: MicroKernel, kc: usize, packed_a: &[f32], packed_b: &[f32], tile: CTile, overwrite: bool) {
    for jr in (0..tile.cols).step_by(NR) {
        let b = &packed_b[jr * kc..(jr + NR) * kc];
        for ir in (0..tile.rows).step_by(MR) {
            let a = &packed_a[ir * kc..(ir + MR) * kc];
            let (rows, cols) = (MR.min(tile.rows - ir), NR.min(tile.cols - jr));
            let offset = (tile.i0 + ir) * tile.ld + tile.j0 + jr;
            if rows == MR && cols == NR {
                // SAFETY: the full MR x NR block at `offset` lies inside this task's tile of C.
                unsafe { kernel.run(kc, a, b, tile.c.0.add(offset), tile.ld, overwrite) };
                continue;
            }
            // An edge block: compute the full block aside, then copy the part inside C.
            let mut block = [0.0f32; MR * NR];
            // SAFETY: `block` is exactly MR x NR with row stride NR.
            unsafe { kernel.run(kc, a, b, block.as_mut_ptr(), NR, true) };
            for (r, block_row) in block.chunks_exact(NR).take(rows).enumerate() {
                // SAFETY: row `r`, columns `..cols` of the block lie inside this task's tile.
                let c_row = unsafe { std::slice::from_raw_parts_mut(tile.c.0.add(offset + r * tile.ld), cols) };
                for (c, &v) in c_row.iter_mut().zip(block_row) {
                    *c = if overwrite { v } else { *c + v };
                }
            }
        }
    }
}

/// The MR x NR inner kernel, chosen once per call by runtime CPU feature detection.
#[derive(Clone, Copy)]
enum MicroKernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl MicroKernel {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Self::Avx2Fma;
        }
        Self::Portable
    }

    /// `C[0..MR, 0..NR] (+)= A_sliver · B_sliver`, C with row stride `ldc`.
    ///
    /// # Safety
    /// `c` must be valid for reads and writes of MR rows of NR floats, `ldc` apart.
    unsafe fn run(self, kc: usize, a: &[f32], b: &[f32], c: *mut f32, ldc: usize, overwrite: bool) {
        assert!(a.len() >= kc * MR && b.len() >= kc * NR);
        match self {
            // SAFETY: forwarded from the caller.
            Self::Portable => unsafe { kernel_portable(kc, a, b, c, ldc, overwrite) },
            // SAFETY: the CPU supports AVX2 and FMA (checked in `detect`); lengths checked above.
            #[cfg(target_arch = "x86_64")]
            Self::Avx2Fma => unsafe { kernel_avx2_fma(kc, a, b, c, ldc, overwrite) },
        }
    }
}

/// Plain loops over fixed-size arrays; the compiler vectorises the inner NR loop.
unsafe fn kernel_portable(kc: usize, a: &[f32], b: &[f32], c: *mut f32, ldc: usize, overwrite: bool) {
    let mut acc = [[0.0f32; NR]; MR];
    for (a_col, b_row) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
        for (acc_row, &a_val) in acc.iter_mut().zip(a_col) {
            for (v, &b_val) in acc_row.iter_mut().zip(b_row) {
                *v = a_val.mul_add(b_val, *v);
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        // SAFETY: the caller guarantees MR rows of NR floats at stride `ldc`.
        let c_row = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), NR) };
        for (c, &v) in c_row.iter_mut().zip(acc_row) {
            *c = if overwrite { v } else { *c + v };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2_fma(kc: usize, a: &[f32], b: &[f32], c: *mut f32, ldc: usize, overwrite: bool) {
    use std::arch::x86_64::*;
    // Twelve named accumulators so that all of them live in registers (16 ymm in total).
    let z = _mm256_setzero_ps();
    let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21) = (z, z, z, z, z, z);
    let (mut c30, mut c31, mut c40, mut c41, mut c50, mut c51) = (z, z, z, z, z, z);
    let (mut pa, mut pb) = (a.as_ptr(), b.as_ptr());
    for _ in 0..kc {
        // SAFETY: the caller checked that a holds kc*MR and b kc*NR floats.
        unsafe {
            let b0 = _mm256_loadu_ps(pb);
            let b1 = _mm256_loadu_ps(pb.add(8));
            let a0 = _mm256_broadcast_ss(&*pa);
            c00 = _mm256_fmadd_ps(a0, b0, c00);
            c01 = _mm256_fmadd_ps(a0, b1, c01);
            let a1 = _mm256_broadcast_ss(&*pa.add(1));
            c10 = _mm256_fmadd_ps(a1, b0, c10);
            c11 = _mm256_fmadd_ps(a1, b1, c11);
            let a2 = _mm256_broadcast_ss(&*pa.add(2));
            c20 = _mm256_fmadd_ps(a2, b0, c20);
            c21 = _mm256_fmadd_ps(a2, b1, c21);
            let a3 = _mm256_broadcast_ss(&*pa.add(3));
            c30 = _mm256_fmadd_ps(a3, b0, c30);
            c31 = _mm256_fmadd_ps(a3, b1, c31);
            let a4 = _mm256_broadcast_ss(&*pa.add(4));
            c40 = _mm256_fmadd_ps(a4, b0, c40);
            c41 = _mm256_fmadd_ps(a4, b1, c41);
            let a5 = _mm256_broadcast_ss(&*pa.add(5));
            c50 = _mm256_fmadd_ps(a5, b0, c50);
            c51 = _mm256_fmadd_ps(a5, b1, c51);
            pa = pa.add(MR);
            pb = pb.add(NR);
        }
    }
    let rows = [[c00, c01], [c10, c11], [c20, c21], [c30, c31], [c40, c41], [c50, c51]];
    for (r, [lo, hi]) in rows.into_iter().enumerate() {
        // SAFETY: the caller guarantees MR rows of NR = 16 floats at stride `ldc`.
        unsafe {
            let row = c.add(r * ldc);
            let (lo, hi) = if overwrite {
                (lo, hi)
            } else {
                (_mm256_add_ps(lo, _mm256_loadu_ps(row)), _mm256_add_ps(hi, _mm256_loadu_ps(row.add(8))))
            };
            _mm256_storeu_ps(row, lo);
            _mm256_storeu_ps(row.add(8), hi);
        }
    }
}

/// The textbook triple loop: the oracle in tests and the "naive" line in benchmarks.
pub fn gemm_naive(a: MatRef, b: MatRef, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a.at(i, p) * b.at(p, j)).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
    }

    /// The portable kernel is what machines without AVX2 run: it must agree with the AVX2 one
    /// bit for bit (both use fused multiply-adds in the same order), accumulating or not.
    #[test]
    fn portable_and_avx2_kernels_agree() {
        let kc = 37;
        let (a, b) = (random(kc * MR, 1), random(kc * NR, 2));
        for overwrite in [true, false] {
            let start = random(MR * NR, 3);
            let (mut portable, mut simd) = (start.clone(), start.clone());
            // SAFETY: both buffers hold MR rows of NR floats.
            unsafe { MicroKernel::Portable.run(kc, &a, &b, portable.as_mut_ptr(), NR, overwrite) };
            unsafe { MicroKernel::detect().run(kc, &a, &b, simd.as_mut_ptr(), NR, overwrite) };
            assert_eq!(portable, simd);
            let expected: f32 = (0..kc).map(|p| a[p * MR + 2] * b[p * NR + 5]).sum::<f32>()
                + if overwrite { 0.0 } else { start[2 * NR + 5] };
            assert!((portable[2 * NR + 5] - expected).abs() < 1e-4);
        }
    }

    #[test]
    fn transposing_copy_matches_the_definition() {
        for (lanes, depth) in [(8, 19), (6, 8), (3, 5), (1, 17), (0, 4)] {
            let stride = depth + 3;
            let src = random(8 * stride, 4);
            let mut dst = vec![f32::NAN; depth * 16];
            transpose(&src, stride, lanes, depth, &mut dst, 16);
            for p in 0..depth {
                for i in 0..16 {
                    let got = dst[p * 16 + i];
                    if i < lanes {
                        assert_eq!(got, src[i * stride + p], "lanes {lanes} depth {depth} p {p} i {i}");
                    } else if i < 8 {
                        assert!(got.is_nan() || got == 0.0, "padding lane {i} holds {got}");
                    } else {
                        assert!(got.is_nan(), "lane {i} >= 8 must stay untouched");
                    }
                }
            }
        }
    }
}
