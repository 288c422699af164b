//! Packing: copying blocks of A and B into the contiguous slivers the micro-kernels read.

use super::{MR, MatRef, NR};

/// Copies rows `r0..r0+MR` of A at depths `p0..p0+kc` into one sliver, `MR` values per depth,
/// zero-padding rows past the end. Reads along whichever direction is contiguous in memory.
pub(super) fn pack_a(a: MatRef, r0: usize, p0: usize, sliver: &mut [f32]) {
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

/// Copies columns `c0..c0 + width` of B at depths `p0..p0+kc` into one sliver, `width` values
/// per depth, zero-padding columns past the end.
pub(super) fn pack_b(b: MatRef, c0: usize, p0: usize, width: usize, sliver: &mut [f32]) {
    let kc = sliver.len() / width;
    let cols = width.min(b.cols - c0);
    if cols < width {
        sliver.fill(0.0);
    }
    if b.col_stride == 1 {
        for (p, dst) in sliver.chunks_exact_mut(width).enumerate() {
            copy_prefix(dst, &b.data[(p0 + p) * b.row_stride + c0..], cols);
        }
    } else if b.row_stride == 1 {
        for half in (0..cols).step_by(8) {
            let src = &b.data[(c0 + half) * b.col_stride + p0..];
            transpose(src, b.col_stride, (cols - half).min(8), kc, &mut sliver[half..], width);
        }
    } else {
        for j in 0..cols {
            let col = &b.data[(c0 + j) * b.col_stride..][..(p0 + kc - 1) * b.row_stride + 1];
            for p in 0..kc {
                sliver[p * width + j] = col[(p0 + p) * b.row_stride];
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

/// `dst = srcᵀ`: `src` row-major `rows x cols`, `dst` row-major `cols x rows`, eight rows of
/// `src` at a time. A last block of fewer than eight rows goes first: its full-width stores
/// overhang into the next row of `dst`, which the other blocks then write over.
pub(super) fn transpose_matrix(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    let len = rows.checked_mul(cols);
    assert!(len == Some(src.len()) && len == Some(dst.len()), "transpose: data does not match the shape");
    if len == Some(0) {
        return;
    }
    let last = rows - rows % 8;
    let blocks = (last..rows).step_by(8).chain((0..last).step_by(8));
    for r0 in blocks {
        transpose(&src[r0 * cols..], cols, (rows - r0).min(8), cols, &mut dst[r0..], rows);
    }
}

/// `dst[p * dst_stride + i] = src[i * src_stride + p]` for `i < lanes <= 8`, `p < depth`: the
/// transposing copy that packing a row-major A or a transposed B needs, 8x8 blocks at a time.
/// Lanes `lanes..8` of a row may be set to zero (they are padding or rewritten later).
fn transpose(src: &[f32], src_stride: usize, lanes: usize, depth: usize, dst: &mut [f32], dst_stride: usize) {
    // `start + (count - 1) * stride + len`, the end of the last of `count` runs, if it fits.
    let end = |count: usize, stride: usize, len: usize| {
        count.checked_sub(1).map_or(Some(0), |last| last.checked_mul(stride)?.checked_add(len))
    };
    assert!(lanes <= 8, "transpose: at most 8 lanes");
    assert!(end(lanes, src_stride, depth).is_some_and(|end| end <= src.len()), "transpose: source too short");
    assert!(end(depth, dst_stride, lanes).is_some_and(|end| end <= dst.len()), "transpose: destination too short");
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present; the asserts above bound every read and write, their
        // arithmetic checked for overflow.
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
///
/// # Safety
/// AVX2 must be present; `lanes <= 8`, `src` must hold `(lanes - 1) * src_stride + depth` floats
/// and `dst` `(depth - 1) * dst_stride + lanes` (the bounds `transpose` asserts).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn transposed_matrices_match_the_definition() {
        for (rows, cols) in [(196, 64), (196, 32), (5, 3), (8, 17), (13, 1), (1, 9), (0, 4)] {
            let src = Rng::new(5).uniform_vec(rows * cols, -1.0, 1.0);
            let mut dst = vec![f32::NAN; rows * cols];
            transpose_matrix(&src, rows, cols, &mut dst);
            for (r, c) in (0..rows).flat_map(|r| (0..cols).map(move |c| (r, c))) {
                assert_eq!(dst[c * rows + r], src[r * cols + c], "{rows}x{cols} at ({r}, {c})");
            }
        }
    }

    #[test]
    fn transposing_copy_matches_the_definition() {
        for (lanes, depth) in [(8, 19), (6, 8), (3, 5), (1, 17), (0, 4)] {
            let stride = depth + 3;
            let src = Rng::new(4).uniform_vec(8 * stride, -1.0, 1.0);
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
