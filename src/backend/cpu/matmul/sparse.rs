//! The sparse-rows path, for an A that is mostly zeros: the input of a layer after a relu (60-70%
//! zeros in a trained MLP), or raw pixels. Each row of A is compressed to its non-zero depths and
//! a 1 x 64 micro-kernel multiplies only those against the packed slivers of B. The terms skipped
//! are exact zeros, so the sums are the dense ones, except that `0 · inf` counts as 0 (as in
//! sparse BLAS).

use std::cell::RefCell;

use super::{CTile, Isa, MatRef, PackedB, Update};

/// Columns per micro-kernel call, eight accumulators: the width of this path's slivers of B.
pub(super) const GROUP: usize = 64;
/// Share of zeros in A from which this path beats the dense one: it pays about 1.25x per
/// multiply-add for the lost register reuse across rows.
const MIN_ZERO_SHARE: f32 = 0.4;
/// How far ahead of the row being compressed A is prefetched.
const PREFETCH_ROWS: usize = 4;
/// Rows of A sampled to decide.
const SAMPLE_ROWS: usize = 32;

/// Whether to take this path: A row-major (rows are compressed where they are contiguous), B at
/// least one group wide, and enough zeros in up to 32 rows spread over A.
pub(super) fn worthwhile(a: MatRef, n: usize) -> bool {
    if a.col_stride != 1 || n < GROUP || a.rows == 0 {
        return false;
    }
    let (mut zeros, mut total) = (0, 0);
    for i in (0..a.rows).step_by(a.rows.div_ceil(SAMPLE_ROWS)) {
        let row = &a.data[i * a.row_stride..][..a.cols];
        zeros += row.iter().filter(|&&v| v == 0.0).count();
        total += row.len();
    }
    zeros as f32 >= MIN_ZERO_SHARE * total as f32
}

thread_local! {
    static ROWS: RefCell<CompressedRows> = RefCell::default();
}

/// One task's block of C, depth block by depth block like the dense path: the rows of A are
/// compressed, then each group of B's columns stays in L1 while every row goes past it.
pub(super) fn tile(isa: Isa, a: MatRef, packed_b: &PackedB, tile: CTile, update: Update) {
    ROWS.with_borrow_mut(|rows| {
        for (p0, kc) in packed_b.blocks() {
            rows.fill(isa, a, tile.i0, tile.rows, p0, kc);
            let step = update.step(p0, kc, a.cols);
            let block_b = packed_b.block(p0, kc, tile.j0);
            for g in (0..tile.cols).step_by(GROUP) {
                let cols = GROUP.min(tile.cols - g);
                let b = &block_b[g * kc..][..GROUP * kc];
                if cols == GROUP {
                    // SAFETY: the full group of columns `g..g + GROUP` of every row lies inside
                    // this task's tile of C.
                    unsafe { isa.run_rows(rows, b, tile.ptr(0, g), tile.ld, step.overwrite) };
                }
                for r in 0..tile.rows {
                    // SAFETY: row `r`, columns `g..g + cols` lie inside this task's tile of C.
                    let c = unsafe { tile.row(r, g, cols) };
                    if cols < GROUP {
                        // The last group: B's padding columns are zeros, computed aside.
                        let mut block = [0.0f32; GROUP];
                        // SAFETY: `block` holds a full group.
                        unsafe { isa.run_row(rows.row(r), b, block.as_mut_ptr(), true) };
                        step.merge(c, &block);
                    }
                    if let Some(epilogue) = step.epilogue {
                        epilogue.apply(c, tile.j0 + g);
                    }
                }
            }
        }
    });
}

/// One block of rows of A at one depth block, each row reduced to its non-zero values and the
/// offsets of their depths in a packed sliver of B (`depth * GROUP`, always `< kc * GROUP`).
#[derive(Default)]
struct CompressedRows {
    values: Vec<f32>,
    offsets: Vec<u32>,
    lens: Vec<usize>,
    kc: usize,
}

/// The non-zeros of one row of A within a depth block.
#[derive(Clone, Copy)]
struct SparseRow<'a> {
    values: &'a [f32],
    /// Each `< kc * GROUP`, by construction in `CompressedRows::fill`.
    offsets: &'a [u32],
    kc: usize,
}

impl CompressedRows {
    fn fill(&mut self, isa: Isa, a: MatRef, i0: usize, rows: usize, p0: usize, kc: usize) {
        self.kc = kc;
        self.values.resize(rows * kc, 0.0);
        self.offsets.resize(rows * kc, 0);
        self.lens.clear();
        let slots = self.values.chunks_exact_mut(kc).zip(self.offsets.chunks_exact_mut(kc));
        for (r, (values, offsets)) in slots.take(rows).enumerate() {
            let src = &a.data[(i0 + r) * a.row_stride + p0..][..kc];
            // A short run per row is too little for the hardware prefetcher: A streams from
            // memory, so ask for a row a few ahead.
            #[cfg(target_arch = "x86_64")]
            if r + PREFETCH_ROWS < rows {
                let ahead = &a.data[(i0 + r + PREFETCH_ROWS) * a.row_stride + p0..][..kc];
                for line in ahead.chunks(16) {
                    // SAFETY: a prefetch only hints the cache; the address is inside `a`.
                    unsafe {
                        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast())
                    };
                }
            }
            self.lens.push(isa.compress(src, values, offsets));
        }
    }

    fn row(&self, r: usize) -> SparseRow<'_> {
        let (start, len) = (r * self.kc, self.lens[r]);
        SparseRow { values: &self.values[start..start + len], offsets: &self.offsets[start..start + len], kc: self.kc }
    }
}

impl Isa {
    /// Writes the non-zeros of `src` to the front of `values`, and `depth * GROUP` for each to the
    /// front of `offsets`; returns how many there are. NaNs are kept, so they still propagate.
    fn compress(self, src: &[f32], values: &mut [f32], offsets: &mut [u32]) -> usize {
        assert!(values.len() >= src.len() && offsets.len() >= src.len());
        let (mut len, mut done) = (0, 0);
        #[cfg(target_arch = "x86_64")]
        if let Isa::Avx2Fma = self {
            // SAFETY: AVX2 is present (checked in `detect`); lengths checked above.
            (len, done) = unsafe { compress_avx2(src, values, offsets) };
        }
        // Branch-free: every value is written, and its slot kept only when it is non-zero (a
        // branch would be mispredicted half of the time).
        for (p, &v) in src.iter().enumerate().skip(done) {
            values[len] = v;
            offsets[len] = (p * GROUP) as u32;
            len += usize::from(v != 0.0);
        }
        len
    }

    /// `run_row` for every row of `rows`, row `r` into `c + r * ldc`, in one call.
    ///
    /// # Safety
    /// `c + r * ldc` must be valid for reads and writes of `GROUP` floats for every row `r`.
    unsafe fn run_rows(self, rows: &CompressedRows, b: &[f32], c: *mut f32, ldc: usize, overwrite: bool) {
        assert!(b.len() >= rows.kc * GROUP);
        match self {
            Isa::Portable => {
                // SAFETY: forwarded from the caller, row by row.
                (0..rows.lens.len()).for_each(|r| unsafe { self.run_row(rows.row(r), b, c.add(r * ldc), overwrite) })
            }
            // SAFETY: AVX2 and FMA are present (checked in `detect`); `b` checked above and the
            // offsets bounded by construction.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => unsafe { rows_avx2_fma(rows, b, c, ldc, overwrite) },
        }
    }

    /// `c[0..GROUP] (+)= row · B`, with `b` a packed sliver of `kc * GROUP` floats.
    ///
    /// # Safety
    /// `c` must be valid for reads and writes of `GROUP` floats.
    unsafe fn run_row(self, row: SparseRow, b: &[f32], c: *mut f32, overwrite: bool) {
        assert!(b.len() >= row.kc * GROUP);
        debug_assert!(row.offsets.iter().all(|&o| (o as usize) < row.kc * GROUP));
        match self {
            Isa::Portable => {
                let mut acc = [0.0f32; GROUP];
                for (&v, &offset) in row.values.iter().zip(row.offsets) {
                    for (acc, &b) in acc.iter_mut().zip(&b[offset as usize..][..GROUP]) {
                        *acc = v.mul_add(b, *acc);
                    }
                }
                // SAFETY: forwarded from the caller.
                let c = unsafe { std::slice::from_raw_parts_mut(c, GROUP) };
                for (c, &v) in c.iter_mut().zip(&acc) {
                    *c = if overwrite { v } else { *c + v };
                }
            }
            // SAFETY: AVX2 and FMA are present (checked in `detect`); `b` checked above and the
            // offsets bounded by construction.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => unsafe { row_avx2_fma(row, b, c, overwrite) },
        }
    }
}

/// For each of the 256 patterns of non-zeros among 8 lanes, the lanes to keep, packed to the front.
static KEEP_LANES: [[u8; 8]; 256] = {
    let mut table = [[0u8; 8]; 256];
    let mut mask = 0;
    while mask < 256 {
        let (mut kept, mut lane) = (0, 0);
        while lane < 8 {
            if mask & (1 << lane) != 0 {
                table[mask][kept] = lane as u8;
                kept += 1;
            }
            lane += 1;
        }
        mask += 1;
    }
    table
};

/// `compress` on whole blocks of 8: compare, look the lanes to keep up by the mask of non-zeros,
/// and permute them to the front (AVX2 has no compress instruction). Returns `(kept, done)`.
///
/// # Safety
/// AVX2 must be present, and `values` and `offsets` at least as long as `src`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn compress_avx2(src: &[f32], values: &mut [f32], offsets: &mut [u32]) -> (usize, usize) {
    use std::arch::x86_64::*;
    let w = GROUP as i32;
    let mut depth_offsets = _mm256_setr_epi32(0, w, 2 * w, 3 * w, 4 * w, 5 * w, 6 * w, 7 * w);
    let mut len = 0;
    for (block, chunk) in src.chunks_exact(8).enumerate() {
        // SAFETY: `chunk` holds 8 floats; the stores write 8 lanes from `len <= 8 * block`, which
        // ends inside `values` and `offsets` as they are as long as `src`.
        unsafe {
            let v = _mm256_loadu_ps(chunk.as_ptr());
            let mask = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(v, _mm256_setzero_ps())) as usize;
            let keep = _mm256_cvtepu8_epi32(_mm_loadl_epi64(KEEP_LANES[mask].as_ptr().cast()));
            debug_assert!(len + 8 <= 8 * (block + 1));
            _mm256_storeu_ps(values.as_mut_ptr().add(len), _mm256_permutevar8x32_ps(v, keep));
            let kept_offsets = _mm256_permutevar8x32_epi32(depth_offsets, keep);
            _mm256_storeu_si256(offsets.as_mut_ptr().add(len).cast(), kept_offsets);
            len += mask.count_ones() as usize;
        }
        depth_offsets = _mm256_add_epi32(depth_offsets, _mm256_set1_epi32(8 * w));
    }
    (len, src.len() - src.len() % 8)
}

/// `row_avx2_fma` for every row, inlined into one loop.
///
/// # Safety
/// As for `row_avx2_fma`, for every row `r` with `c + r * ldc`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2_fma(rows: &CompressedRows, b: &[f32], c: *mut f32, ldc: usize, overwrite: bool) {
    for r in 0..rows.lens.len() {
        // SAFETY: forwarded from the caller.
        unsafe { row_avx2_fma(rows.row(r), b, c.add(r * ldc), overwrite) };
    }
}

/// The same fused multiply-adds in the same order as the portable loop, eight vectors wide.
///
/// # Safety
/// AVX2 and FMA must be present, every offset at most `b.len() - GROUP`, and `c` valid for
/// `GROUP` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn row_avx2_fma(row: SparseRow, b: &[f32], c: *mut f32, overwrite: bool) {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); GROUP / 8];
    for (&v, &offset) in row.values.iter().zip(row.offsets) {
        let v = _mm256_set1_ps(v);
        // SAFETY: `offset + GROUP <= b.len()`.
        let b_row = unsafe { b.as_ptr().add(offset as usize) };
        for (i, acc) in acc.iter_mut().enumerate() {
            // SAFETY: `i * 8 + 8 <= GROUP`.
            *acc = _mm256_fmadd_ps(v, unsafe { _mm256_loadu_ps(b_row.add(i * 8)) }, *acc);
        }
    }
    for (i, acc) in acc.into_iter().enumerate() {
        // SAFETY: the caller guarantees `GROUP` floats at `c`.
        unsafe {
            let out = c.add(i * 8);
            let sum = if overwrite { acc } else { _mm256_add_ps(acc, _mm256_loadu_ps(out)) };
            _mm256_storeu_ps(out, sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn sparse(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..len).map(|_| if rng.uniform(0.0, 1.0) < 0.5 { 0.0 } else { rng.uniform(-1.0, 1.0) }).collect()
    }

    #[test]
    fn compress_keeps_the_non_zeros_in_order_on_every_isa() {
        for len in [0, 1, 7, 8, 9, 96, 203] {
            let mut src = sparse(len, len as u64);
            if len > 3 {
                src[3] = f32::NAN;
            }
            let expected: Vec<(u32, u32)> =
                (0..len).filter(|&p| src[p] != 0.0).map(|p| (src[p].to_bits(), (p * GROUP) as u32)).collect();
            for isa in [Isa::Portable, Isa::detect()] {
                let (mut values, mut offsets) = (vec![0.0; len], vec![0; len]);
                let kept = isa.compress(&src, &mut values, &mut offsets);
                let got: Vec<(u32, u32)> =
                    values[..kept].iter().map(|v| v.to_bits()).zip(offsets[..kept].to_vec()).collect();
                assert_eq!(got, expected, "length {len}");
            }
        }
    }

    /// Machines without AVX2 run the portable kernel: it must give the same bits.
    #[test]
    fn portable_and_avx2_row_kernels_agree() {
        let kc = 37;
        let (a, b) = (sparse(kc, 1), sparse(kc * GROUP, 2));
        let (mut values, mut offsets) = (vec![0.0; kc], vec![0; kc]);
        let len = Isa::Portable.compress(&a, &mut values, &mut offsets);
        let row = SparseRow { values: &values[..len], offsets: &offsets[..len], kc };
        for overwrite in [true, false] {
            let start = sparse(GROUP, 3);
            let (mut portable, mut simd) = (start.clone(), start.clone());
            // SAFETY: both buffers hold a full group.
            unsafe { Isa::Portable.run_row(row, &b, portable.as_mut_ptr(), overwrite) };
            unsafe { Isa::detect().run_row(row, &b, simd.as_mut_ptr(), overwrite) };
            assert_eq!(portable, simd);
            let expected: f32 =
                (0..kc).map(|p| a[p] * b[p * GROUP + 37]).sum::<f32>() + if overwrite { 0.0 } else { start[37] };
            assert!((portable[37] - expected).abs() < 1e-4);
        }
    }

    #[test]
    fn taken_only_for_row_major_mostly_zero_inputs_and_wide_outputs() {
        let a = sparse(50 * 30, 4);
        assert!(worthwhile(MatRef::new(&a, 50, 30, false).unwrap(), 64));
        assert!(!worthwhile(MatRef::new(&a, 50, 30, false).unwrap(), 63));
        assert!(!worthwhile(MatRef::new(&a, 50, 30, true).unwrap(), 64));
        assert!(!worthwhile(MatRef::new(&[], 0, 30, false).unwrap(), 64));
        let dense = vec![1.0; 50 * 30];
        assert!(!worthwhile(MatRef::new(&dense, 50, 30, false).unwrap(), 512));
    }
}
