//! Cache-blocked, packed matrix multiplication (the BLIS recipe) on rayon.
//!
//! `C (+)= op(A) · op(B)`, where each operand is read through a row and a column stride, so the
//! transposed forms that backward needs cost nothing extra: packing reads the strides once and the
//! micro-kernel always sees contiguous panels. Every element of C is produced by one task with a
//! fixed summation order, so results are bit-identical whatever the thread count.

use rayon::prelude::*;

/// Rows of A per micro-kernel call: 6 rows x 2 vectors of 8 = 12 AVX accumulators.
const MR: usize = 6;
/// Columns of B per micro-kernel call.
const NR: usize = 16;
/// Depth of one packed panel: an NR-wide sliver of B (16 KiB) stays in L1.
const KC: usize = 256;
/// Rows of A per task: the packed block (144 KiB) stays in L2.
const MC: usize = 144;
/// Columns of C per task, so small-M products still split across threads.
const NC: usize = 256;

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
        debug_assert_eq!(data.len(), rows * cols);
        let (row_stride, col_stride) = if transposed { (1, rows) } else { (cols, 1) };
        Self { data, rows, cols, row_stride, col_stride }
    }

    #[inline(always)]
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
    let n_padded = n.div_ceil(NR) * NR;
    let mut packed_b = vec![0.0f32; KC.min(k) * n_padded];
    let c_ptr = SharedMut(c.as_mut_ptr());
    let tiles: Vec<(usize, usize)> = (0..m).step_by(MC).flat_map(|i| (0..n).step_by(NC).map(move |j| (i, j))).collect();

    for p0 in (0..k).step_by(KC) {
        let kc = KC.min(k - p0);
        let panel = &mut packed_b[..kc * n_padded];
        pack_b(b, p0, kc, panel);
        let panel = &*panel;
        let overwrite = p0 == 0 && !accumulate;
        tiles.par_iter().for_each_init(
            || vec![0.0f32; MC * kc],
            |packed_a, &(i0, j0)| {
                let mc = MC.min(m - i0);
                let nc = NC.min(n - j0);
                pack_a(a, i0, mc, p0, kc, packed_a);
                // SAFETY: tiles partition C, so no two tasks write the same element.
                let tile = CTile { ptr: c_ptr, ld: n, i0, j0, rows: mc, cols: nc };
                macro_kernel(kernel, kc, packed_a, &panel[j0 * kc..], tile, overwrite);
            },
        );
    }
}

/// Copies rows `i0..i0+mc`, depth `p0..p0+kc` of A into MR-row slivers, zero-padding the last.
fn pack_a(a: MatRef, i0: usize, mc: usize, p0: usize, kc: usize, out: &mut [f32]) {
    for (s, sliver) in out[..mc.div_ceil(MR) * MR * kc].chunks_exact_mut(MR * kc).enumerate() {
        let r0 = i0 + s * MR;
        let rows = MR.min(i0 + mc - r0);
        for p in 0..kc {
            let dst = &mut sliver[p * MR..(p + 1) * MR];
            for (r, d) in dst.iter_mut().enumerate() {
                *d = if r < rows { a.at(r0 + r, p0 + p) } else { 0.0 };
            }
        }
    }
}

/// Copies depth `p0..p0+kc` of B into NR-column slivers (in parallel), zero-padding the last.
fn pack_b(b: MatRef, p0: usize, kc: usize, out: &mut [f32]) {
    let n = b.cols;
    out.par_chunks_exact_mut(NR * kc).enumerate().for_each(|(s, sliver)| {
        let c0 = s * NR;
        let cols = NR.min(n - c0);
        for p in 0..kc {
            let dst = &mut sliver[p * NR..(p + 1) * NR];
            for (j, d) in dst.iter_mut().enumerate() {
                *d = if j < cols { b.at(p0 + p, c0 + j) } else { 0.0 };
            }
        }
    });
}

#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: only used to hand disjoint tiles of one output buffer to rayon tasks.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

/// A block of C owned by one task.
struct CTile {
    ptr: SharedMut,
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
            let mut acc = [[0.0f32; NR]; MR];
            kernel.run(kc, a, b, &mut acc);
            let rows = MR.min(tile.rows - ir);
            let cols = NR.min(tile.cols - jr);
            for (r, acc_row) in acc.iter().enumerate().take(rows) {
                let offset = (tile.i0 + ir + r) * tile.ld + tile.j0 + jr;
                // SAFETY: (row, offset..offset+cols) lies inside this task's tile of C.
                let c_row = unsafe { std::slice::from_raw_parts_mut(tile.ptr.0.add(offset), cols) };
                if overwrite {
                    c_row.copy_from_slice(&acc_row[..cols]);
                } else {
                    for (c, v) in c_row.iter_mut().zip(acc_row) {
                        *c += v;
                    }
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

    #[inline(always)]
    fn run(self, kc: usize, a: &[f32], b: &[f32], acc: &mut [[f32; NR]; MR]) {
        assert!(a.len() >= kc * MR && b.len() >= kc * NR);
        match self {
            Self::Portable => kernel_portable(kc, a, b, acc),
            // SAFETY: the CPU supports AVX2 and FMA (checked in `detect`); lengths checked above.
            #[cfg(target_arch = "x86_64")]
            Self::Avx2Fma => unsafe { kernel_avx2_fma(kc, a, b, acc) },
        }
    }
}

/// Plain loops over fixed-size arrays; the compiler vectorises the inner NR loop.
fn kernel_portable(kc: usize, a: &[f32], b: &[f32], acc: &mut [[f32; NR]; MR]) {
    for (a_col, b_row) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
        for (acc_row, &a_val) in acc.iter_mut().zip(a_col) {
            for (c, &b_val) in acc_row.iter_mut().zip(b_row) {
                *c = a_val.mul_add(b_val, *c);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2_fma(kc: usize, a: &[f32], b: &[f32], acc: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    let mut c = [[_mm256_setzero_ps(); 2]; MR];
    let (mut pa, mut pb) = (a.as_ptr(), b.as_ptr());
    for _ in 0..kc {
        // SAFETY: the caller checked that a holds kc*MR and b kc*NR floats.
        unsafe {
            let b0 = _mm256_loadu_ps(pb);
            let b1 = _mm256_loadu_ps(pb.add(8));
            for (r, c_row) in c.iter_mut().enumerate() {
                let a_val = _mm256_broadcast_ss(&*pa.add(r));
                c_row[0] = _mm256_fmadd_ps(a_val, b0, c_row[0]);
                c_row[1] = _mm256_fmadd_ps(a_val, b1, c_row[1]);
            }
            pa = pa.add(MR);
            pb = pb.add(NR);
        }
    }
    for (acc_row, c_row) in acc.iter_mut().zip(&c) {
        // SAFETY: each accumulator row holds NR = 16 floats.
        unsafe {
            _mm256_storeu_ps(acc_row.as_mut_ptr(), c_row[0]);
            _mm256_storeu_ps(acc_row.as_mut_ptr().add(8), c_row[1]);
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
