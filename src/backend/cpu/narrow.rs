//! The products of a convolution whose unrolled image has only `K = 9` rows (one input channel,
//! a 3x3 kernel: a network's first layer). The packed matmul fits them badly: the forward has a
//! depth of 9 (each 6 x 16 block of the output is loaded and stored for nine multiply-adds) and
//! the weight gradient 9 columns, 9 of a 16-wide sliver. Here the forward adds nine scaled rows
//! per output channel, and the weight gradient takes nine dot products per output channel, both
//! over whole rows of output pixels, 8 at a time.
//!
//! Each sum has a fixed order (the same on every instruction set, in fused multiply-adds), so
//! the bits depend on neither the thread count nor the machine.

/// Rows of an unrolled image these kernels take.
pub const K: usize = 9;
/// Output pixels per vector.
const LANES: usize = 8;

/// `out[o, j] = bias[o] + Σ_t w[o, t] · columns[t, j]`, the sum from `t = 0` up: `out`
/// `[outs, pixels]`, `w` `[outs, K]`, `columns` `[K, pixels]`.
pub fn forward(w: &[f32], bias: &[f32], columns: &[f32], out: &mut [f32]) {
    let pixels = columns.len() / K;
    assert_eq!(columns.len(), K * pixels, "narrow::forward: columns are not {K} rows");
    assert!(
        w.len() / K == bias.len() && w.len().is_multiple_of(K) && bias.len().checked_mul(pixels) == Some(out.len()),
        "narrow::forward: shapes differ"
    );
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2 and FMA are present; the lengths are checked above.
        return unsafe { forward_avx2_fma(w, bias, columns, out) };
    }
    forward_portable(w, bias, columns, out);
}

/// [`forward`] in plain loops (the lengths checked by the caller).
fn forward_portable(w: &[f32], bias: &[f32], columns: &[f32], out: &mut [f32]) {
    let pixels = columns.len() / K;
    for ((out, w), &b) in out.chunks_exact_mut(pixels.max(1)).zip(w.chunks_exact(K)).zip(bias) {
        for (j, o) in out.iter_mut().enumerate() {
            *o = (0..K).fold(b, |acc, t| w[t].mul_add(columns[t * pixels + j], acc));
        }
    }
}

/// `dw[o, t] += Σ_j dy[o, j] · columns[t, j]`: `dy` `[outs, pixels]`, `columns` `[K, pixels]`,
/// `dw` `[outs, K]`. Each dot product runs in 8 interleaved partial sums (pixel `j` in lane
/// `j % 8`), added up in lane order, then the last `pixels % 8` pixels in order.
pub fn accumulate_weight_gradient(dy: &[f32], columns: &[f32], dw: &mut [f32]) {
    let pixels = columns.len() / K;
    assert_eq!(columns.len(), K * pixels, "narrow::accumulate_weight_gradient: columns are not {K} rows");
    assert!(
        dw.len().is_multiple_of(K) && (dw.len() / K).checked_mul(pixels) == Some(dy.len()),
        "narrow::accumulate_weight_gradient: shapes differ"
    );
    if pixels == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: AVX2 and FMA are present; the lengths are checked above.
        return unsafe { weight_gradient_avx2_fma(dy, columns, dw) };
    }
    weight_gradient_portable(dy, columns, dw);
}

/// [`accumulate_weight_gradient`] in plain loops (the lengths checked by the caller, `pixels > 0`).
fn weight_gradient_portable(dy: &[f32], columns: &[f32], dw: &mut [f32]) {
    let pixels = columns.len() / K;
    let full = pixels - pixels % LANES;
    for (dw, dy) in dw.chunks_exact_mut(K).zip(dy.chunks_exact(pixels)) {
        for (t, d) in dw.iter_mut().enumerate() {
            let column = &columns[t * pixels..][..pixels];
            let mut lanes = [0.0f32; LANES];
            for (dy, column) in dy[..full].chunks_exact(LANES).zip(column.chunks_exact(LANES)) {
                for ((l, &g), &c) in lanes.iter_mut().zip(dy).zip(column) {
                    *l = g.mul_add(c, *l);
                }
            }
            *d += dot_tail(lanes, &dy[full..], &column[full..]);
        }
    }
}

/// The lanes added up in order, then the remaining products in order.
fn dot_tail(lanes: [f32; LANES], dy: &[f32], column: &[f32]) -> f32 {
    let sum = lanes.iter().sum::<f32>();
    dy.iter().zip(column).fold(sum, |acc, (&g, &c)| g.mul_add(c, acc))
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// [`forward`] in AVX2: the nine weights of a channel broadcast once, each vector of outputs
/// one chain of nine fused multiply-adds from the bias.
///
/// # Safety
/// AVX2 and FMA must be present, and the lengths those `forward` checks must hold.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn forward_avx2_fma(w: &[f32], bias: &[f32], columns: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let pixels = columns.len() / K;
    let full = pixels - pixels % LANES;
    for ((out, w), &b) in out.chunks_exact_mut(pixels.max(1)).zip(w.chunks_exact(K)).zip(bias) {
        let weights: [__m256; K] = std::array::from_fn(|t| _mm256_set1_ps(w[t]));
        for j in (0..full).step_by(LANES) {
            let mut acc = _mm256_set1_ps(b);
            for (t, &weight) in weights.iter().enumerate() {
                // SAFETY: `t * pixels + j + 8 <= (t + 1) * pixels <= columns.len()` as `j < full`.
                acc = _mm256_fmadd_ps(weight, unsafe { _mm256_loadu_ps(columns.as_ptr().add(t * pixels + j)) }, acc);
            }
            // SAFETY: `j + 8 <= full <= out.len()`.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(j), acc) };
        }
        for (j, o) in out.iter_mut().enumerate().skip(full) {
            *o = (0..K).fold(b, |acc, t| w[t].mul_add(columns[t * pixels + j], acc));
        }
    }
}

/// [`accumulate_weight_gradient`] in AVX2: nine accumulators per output channel, so that each
/// vector of `dy` is loaded once for the nine dot products.
///
/// # Safety
/// AVX2 and FMA must be present, and the lengths `accumulate_weight_gradient` checks must hold.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weight_gradient_avx2_fma(dy: &[f32], columns: &[f32], dw: &mut [f32]) {
    use std::arch::x86_64::*;
    let pixels = columns.len() / K;
    let full = pixels - pixels % LANES;
    for (dw, dy) in dw.chunks_exact_mut(K).zip(dy.chunks_exact(pixels)) {
        let mut acc = [_mm256_setzero_ps(); K];
        for j in (0..full).step_by(LANES) {
            // SAFETY (block): `j + 8 <= full <= pixels`, so each load stays inside its row.
            let g = unsafe { _mm256_loadu_ps(dy.as_ptr().add(j)) };
            for (t, acc) in acc.iter_mut().enumerate() {
                // SAFETY: `t * pixels + j + 8 <= (t + 1) * pixels <= columns.len()` as `j < full`.
                *acc = _mm256_fmadd_ps(g, unsafe { _mm256_loadu_ps(columns.as_ptr().add(t * pixels + j)) }, *acc);
            }
        }
        for (t, (d, acc)) in dw.iter_mut().zip(acc).enumerate() {
            let mut lanes = [0.0f32; LANES];
            // SAFETY: `lanes` holds 8 floats.
            unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
            *d += dot_tail(lanes, &dy[full..], &columns[t * pixels + full..][..pixels - full]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|v| v.to_bits()).collect()
    }

    /// Both kernels against their definitions (in f64), for pixel counts with and without a
    /// partial vector, and with the same bits on this machine's path as on the portable one.
    #[test]
    fn kernels_match_their_definitions() {
        let mut rng = Rng::new(3);
        for (outs, pixels) in [(3, 784), (2, 21), (5, 7), (1, 8), (4, 0)] {
            let [w, bias, columns, dy] =
                [outs * K, outs, K * pixels, outs * pixels].map(|len| rng.uniform_vec(len, -1.0, 1.0));
            let mut out = vec![f32::NAN; outs * pixels];
            forward(&w, &bias, &columns, &mut out);
            let start = rng.uniform_vec(outs * K, -1.0, 1.0);
            let mut dw = start.clone();
            accumulate_weight_gradient(&dy, &columns, &mut dw);
            for o in 0..outs {
                for j in 0..pixels {
                    let expected = bias[o] as f64
                        + (0..K).map(|t| w[o * K + t] as f64 * columns[t * pixels + j] as f64).sum::<f64>();
                    assert!((out[o * pixels + j] as f64 - expected).abs() < 1e-5, "{outs}x{pixels} out ({o}, {j})");
                }
                for t in 0..K {
                    let expected = start[o * K + t] as f64
                        + (0..pixels).map(|j| dy[o * pixels + j] as f64 * columns[t * pixels + j] as f64).sum::<f64>();
                    assert!((dw[o * K + t] as f64 - expected).abs() < 1e-4, "{outs}x{pixels} dw ({o}, {t})");
                }
            }
            let mut portable = vec![f32::NAN; outs * pixels];
            forward_portable(&w, &bias, &columns, &mut portable);
            assert_eq!(bits(&portable), bits(&out), "{outs}x{pixels} forward");
            if pixels > 0 {
                let mut portable = start.clone();
                weight_gradient_portable(&dy, &columns, &mut portable);
                assert_eq!(bits(&portable), bits(&dw), "{outs}x{pixels} weight gradient");
            }
        }
    }
}
