//! The CPU backend: rayon kernels on plain `f32` slices. Also the oracle the GPU kernels are
//! tested against, so each kernel stays the simplest correct form that is fast enough.
//!
//! Reductions split their input at fixed chunk boundaries and combine the partial results in
//! order, so the same inputs give the same bits whatever `RAYON_NUM_THREADS` is.

pub mod conv;
pub mod matmul;
mod narrow;
mod pool;

use rayon::prelude::*;

use super::{AdamStep, ChannelAffine, SgdStep};

/// Elements per parallel task for elementwise work: large enough to amortise scheduling.
const CHUNK: usize = 1 << 14;

/// `out[i] = f(x[i])`, in parallel.
pub fn map(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(o, x)| {
        for (o, &x) in o.iter_mut().zip(x) {
            *o = f(x);
        }
    });
}

/// `out[i] = f(a[i], b[i])`, in parallel.
pub fn zip_map(a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(|(o, (a, b))| {
        for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
            *o = f(a, b);
        }
    });
}

/// `x[i] = f(x[i], y[i])` in place, in parallel.
pub fn update(x: &mut [f32], y: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) {
    x.par_chunks_mut(CHUNK).zip(y.par_chunks(CHUNK)).for_each(|(x, y)| {
        for (x, &y) in x.iter_mut().zip(y) {
            *x = f(*x, y);
        }
    });
}

/// The samples at `order` (each `features` bytes of `samples`) as inputs appended to `inputs`,
/// each byte `byte * scale + shift` with its channel's affine (see [`ChannelAffine`]), and
/// their labels as `f32` appended to `labels`: a training batch, as `gpu::ops::gather_batch`
/// makes it on a device.
pub fn gather_batch(
    samples: &[u8],
    sample_labels: &[u8],
    features: usize,
    order: &[usize],
    affine: impl Into<ChannelAffine>,
    inputs: &mut Vec<f32>,
    labels: &mut Vec<f32>,
) {
    let affine = affine.into();
    // Planes of equal size but perhaps the last (the kernels agree on this split); a sample
    // without bytes has no planes.
    let plane = features.div_ceil(affine.channels()).max(1);
    for &i in order {
        let sample = &samples[i * features..(i + 1) * features];
        for (bytes, &(scale, shift)) in sample.chunks(plane).zip(affine.per_channel()) {
            inputs.extend(bytes.iter().map(|&b| b as f32 * scale + shift));
        }
        labels.push(sample_labels[i] as f32);
    }
}

/// Inverted dropout with the mask `key`: `out[i] = x[i] * scale` where [`dropout_keeps`], else
/// 0. Its own backward (with the same key) since it is linear.
pub fn dropout(x: &[f32], key: u64, p: f32, scale: f32, out: &mut [f32]) {
    out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).enumerate().for_each(|(c, (o, x))| {
        for (i, (o, &x)) in o.iter_mut().zip(x).enumerate() {
            *o = if dropout_keeps(key, (c * CHUNK + i) as u32, p) { x * scale } else { 0.0 };
        }
    });
}

/// Whether dropout with the mask `key` keeps element `index`: a uniform draw in [0, 1) with 24
/// bits, from two rounds of a 32-bit integer hash of the index and the key, kept when it is
/// at least `p`. Counter-based, so `shaders/dropout.wgsl` draws the same mask on a GPU with
/// nothing uploaded, and the backward draws it again instead of storing it.
pub fn dropout_keeps(key: u64, index: u32, p: f32) -> bool {
    let bits = hash32(hash32(index ^ key as u32) ^ (key >> 32) as u32);
    (bits >> 8) as f32 * (1.0 / 16_777_216.0) >= p
}

/// Chris Wellons' `lowbias32`: every input bit flips each output bit with probability ~1/2.
fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// Sum of all elements: fixed chunks summed in parallel, then the partials in order.
pub fn sum(x: &[f32]) -> f32 {
    let partials: Vec<f64> = x.par_chunks(CHUNK).map(|c| c.iter().map(|&v| v as f64).sum()).collect();
    partials.iter().sum::<f64>() as f32
}

/// Row-major `[rows, cols]` plus a `[cols]` bias on every row.
pub fn add_bias(x: &[f32], bias: &[f32], out: &mut [f32]) {
    let cols = bias.len();
    if cols == 0 {
        return;
    }
    let chunk = cols * rows_per_task(cols);
    out.par_chunks_mut(chunk).zip(x.par_chunks(chunk)).for_each(|(out, x)| {
        for (out, x) in out.chunks_exact_mut(cols).zip(x.chunks_exact(cols)) {
            for ((o, &v), &b) in out.iter_mut().zip(x).zip(bias) {
                *o = v + b;
            }
        }
    });
}

/// Column sums of a row-major `[rows, cols]` matrix (the gradient of a broadcast bias).
/// Each column block is summed top to bottom by one task.
pub fn sum_rows(x: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    const COLS_PER_TASK: usize = 64;
    out.par_chunks_mut(COLS_PER_TASK).enumerate().for_each(|(t, o)| {
        let c0 = t * COLS_PER_TASK;
        o.fill(0.0);
        for r in 0..rows {
            let row = &x[r * cols + c0..r * cols + c0 + o.len()];
            for (o, &v) in o.iter_mut().zip(row) {
                *o += v;
            }
        }
    });
}

/// Row-wise softmax of a row-major `[rows, cols]` matrix, stable for large inputs.
pub fn softmax_rows(x: &[f32], cols: usize, out: &mut [f32]) {
    out.par_chunks_mut(cols).zip(x.par_chunks(cols)).for_each(|(o, x)| {
        let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0.0f32;
        for (o, &v) in o.iter_mut().zip(x) {
            *o = (v - max).exp();
            total += *o;
        }
        let inv = 1.0 / total;
        o.iter_mut().for_each(|o| *o *= inv);
    });
}

/// Softmax backward for each row: `dx = y * (dy - sum(dy * y))`.
pub fn softmax_rows_backward(y: &[f32], dy: &[f32], cols: usize, dx: &mut [f32]) {
    dx.par_chunks_mut(cols).zip(y.par_chunks(cols).zip(dy.par_chunks(cols))).for_each(|(dx, (y, dy))| {
        let dot: f32 = y.iter().zip(dy).map(|(y, g)| y * g).sum();
        for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(dy) {
            *dx = y * (g - dot);
        }
    });
}

/// Per-row negative log-likelihood of `log_softmax(logits)` at each row's label.
/// Returns the row losses; labels are class indices stored as `f32`.
pub fn cross_entropy_rows(logits: &[f32], labels: &[f32], cols: usize) -> Vec<f32> {
    logits
        .par_chunks(cols)
        .zip(labels.par_iter())
        .map(|(row, &label)| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let log_total = row.iter().map(|&v| (v - max).exp()).sum::<f32>().ln();
            log_total + max - row[label as usize]
        })
        .collect()
}

/// Gradient of the mean cross-entropy over the rows: `(softmax(logits) - onehot) * scale`.
pub fn cross_entropy_backward(logits: &[f32], labels: &[f32], cols: usize, scale: f32, dx: &mut [f32]) {
    softmax_rows(logits, cols, dx);
    dx.par_chunks_mut(cols).zip(labels.par_iter()).for_each(|(row, &label)| {
        row[label as usize] -= 1.0;
        row.iter_mut().for_each(|v| *v *= scale);
    });
}

/// Index of the largest element of each row (the first one on ties).
pub fn argmax_rows(x: &[f32], cols: usize) -> Vec<usize> {
    x.par_chunks(cols)
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) })
                .0
        })
        .collect()
}

/// Runs `f`, compiled for AVX2 when the CPU has it (8 lanes instead of SSE's 4), else for the
/// baseline. The two builds give the same bits: neither contracts multiply-adds into FMAs.
#[inline(always)]
fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        /// Runs `f` compiled with AVX2 enabled.
        ///
        /// # Safety
        /// The CPU must support AVX2.
        #[target_feature(enable = "avx2")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        // SAFETY: the CPU supports AVX2 (checked just above).
        return unsafe { avx2(f) };
    }
    f()
}

/// Rows per parallel task so that each task touches about `CHUNK` elements.
fn rows_per_task(cols: usize) -> usize {
    (CHUNK / cols.max(1)).max(1)
}

/// One Adam/AdamW update in place, with `torch.optim.Adam`'s formulas and operation order.
pub fn adam_step(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], h: AdamStep) {
    let step_size = h.lr / h.bias_correction1;
    let bias_correction2_sqrt = h.bias_correction2.sqrt();
    let weight_factor = if h.decoupled { 1.0 - h.lr * h.weight_decay } else { 1.0 };
    let gradient_decay = if h.decoupled { 0.0 } else { h.weight_decay };
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((p, g), (m, v))| {
            simd(|| {
                for ((p, &g), (m, v)) in p.iter_mut().zip(g).zip(m.iter_mut().zip(v.iter_mut())) {
                    *p *= weight_factor;
                    let g = g + gradient_decay * *p;
                    *m += (g - *m) * (1.0 - h.beta1);
                    *v = *v * h.beta2 + (1.0 - h.beta2) * g * g;
                    *p -= step_size * *m / (v.sqrt() / bias_correction2_sqrt + h.eps);
                }
            })
        });
}

/// One SGD update in place, with `torch.optim.SGD`'s momentum and weight decay (no dampening).
pub fn sgd_step(p: &mut [f32], g: &[f32], buf: &mut [f32], h: SgdStep) {
    // The first step initialises the buffer with the gradient: `0 * buf + d`.
    let keep = if h.first_step { 0.0 } else { h.momentum };
    let use_momentum = h.momentum != 0.0;
    p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(buf.par_chunks_mut(CHUNK)).for_each(|((p, g), buf)| {
        simd(|| {
            for ((p, &g), b) in p.iter_mut().zip(g).zip(buf.iter_mut()) {
                let d = g + h.weight_decay * *p;
                *b = keep * *b + d;
                *p -= h.lr * if use_momentum { *b } else { d };
            }
        })
    });
}
