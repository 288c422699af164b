//! The dense path: MR x NR register-blocked micro-kernels over packed slivers of A and B.

use super::pack::pack_a;
use super::{CTile, Isa, MR, MatRef, NR, PACKED_A, PackedB, Step, Update, with_buffer};

/// One task's block of C: for each depth block, its rows of A are packed, then multiplied with
/// every sliver of B.
pub(super) fn tile(isa: Isa, a: MatRef, packed_b: &PackedB, tile: CTile, update: Update) {
    let rows_padded = tile.rows.div_ceil(MR) * MR;
    with_buffer(&PACKED_A, rows_padded * packed_b.kc_max, |packed_a| {
        for (p0, kc) in packed_b.blocks() {
            let panel_a = &mut packed_a[..rows_padded * kc];
            for (s, sliver) in panel_a.chunks_exact_mut(MR * kc).enumerate() {
                pack_a(a, tile.i0 + s * MR, p0, sliver);
            }
            macro_kernel(isa, kc, panel_a, packed_b.block(p0, kc, tile.j0), &tile, update.step(p0, kc, a.cols));
        }
    });
}

fn macro_kernel(kernel: Isa, kc: usize, packed_a: &[f32], packed_b: &[f32], tile: &CTile, step: Step) {
    for jr in (0..tile.cols).step_by(NR) {
        let b = &packed_b[jr * kc..(jr + NR) * kc];
        for ir in (0..tile.rows).step_by(MR) {
            let a = &packed_a[ir * kc..(ir + MR) * kc];
            let (rows, cols) = (MR.min(tile.rows - ir), NR.min(tile.cols - jr));
            // SAFETY: rows `ir..ir + rows`, columns `jr..jr + cols` lie inside this task's tile.
            let c_row = |r: usize| unsafe { tile.row(ir + r, jr, cols) };
            if rows == MR && cols == NR {
                // SAFETY: the full MR x NR block at row `ir`, column `jr` lies inside the tile.
                unsafe { kernel.run(kc, a, b, tile.ptr(ir, jr), tile.ld, step.overwrite) };
            } else {
                // An edge block: compute the full block aside, then copy the part inside C.
                let mut block = [0.0f32; MR * NR];
                // SAFETY: `block` is exactly MR x NR with row stride NR.
                unsafe { kernel.run(kc, a, b, block.as_mut_ptr(), NR, true) };
                for (r, block_row) in block.chunks_exact(NR).take(rows).enumerate() {
                    step.merge(c_row(r), block_row);
                }
            }
            if let Some(epilogue) = step.epilogue {
                (0..rows).for_each(|r| epilogue.apply(c_row(r), tile.j0 + jr));
            }
        }
    }
}

impl Isa {
    /// The MR x NR micro-kernel: `C[0..MR, 0..NR] (+)= A_sliver · B_sliver`, C with row stride `ldc`.
    ///
    /// # Safety
    /// `c` must be valid for reads and writes of MR rows of NR floats, `ldc` apart.
    pub(super) unsafe fn run(self, kc: usize, a: &[f32], b: &[f32], c: *mut f32, ldc: usize, overwrite: bool) {
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
///
/// # Safety
/// `c` must be valid for reads and writes of MR rows of NR floats, `ldc` apart.
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

/// The micro-kernel in AVX2 fused multiply-adds: twelve accumulators of 8 floats.
///
/// # Safety
/// AVX2 and FMA must be present, `a` must hold `kc * MR` floats and `b` `kc * NR`, and `c` must
/// be valid for reads and writes of MR rows of NR floats, `ldc` apart.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The portable kernel is what machines without AVX2 run: it must agree with the AVX2 one
    /// bit for bit (both use fused multiply-adds in the same order), accumulating or not.
    #[test]
    fn portable_and_avx2_kernels_agree() {
        let kc = 37;
        let (a, b) = (Rng::new(1).uniform_vec(kc * MR, -1.0, 1.0), Rng::new(2).uniform_vec(kc * NR, -1.0, 1.0));
        for overwrite in [true, false] {
            let start = Rng::new(3).uniform_vec(MR * NR, -1.0, 1.0);
            let (mut portable, mut simd) = (start.clone(), start.clone());
            // SAFETY: both buffers hold MR rows of NR floats.
            unsafe { Isa::Portable.run(kc, &a, &b, portable.as_mut_ptr(), NR, overwrite) };
            unsafe { Isa::detect().run(kc, &a, &b, simd.as_mut_ptr(), NR, overwrite) };
            assert_eq!(portable, simd);
            let expected: f32 = (0..kc).map(|p| a[p * MR + 2] * b[p * NR + 5]).sum::<f32>()
                + if overwrite { 0.0 } else { start[2 * NR + 5] };
            assert!((portable[2 * NR + 5] - expected).abs() < 1e-4);
        }
    }
}
