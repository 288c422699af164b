//! Two-dimensional convolution (stride 1, zero padding, a bias per output channel) over NCHW
//! data, and the per-channel sums of its bias gradient. (2x2 max pooling is in `pool.rs`, and
//! re-exported here beside the convolution it follows.)
//!
//! A convolution is one matrix product per image, on the image unrolled one row per output
//! pixel (`im2row`: for each kernel offset, the input channels it sees, read from the image
//! transposed to channels last): `rows · Wᵀ` is the output transposed, with the bias in the
//! product's epilogue and the weights packed once for all images. Rows of output pixels are
//! also what the backward products want: A's rows are where the packed matmul's sparse path
//! skips zeros (a relu's in x, a max pooling's in dy), and B's rows pack by plain copies. A
//! single-channel 3x3 convolution, whose rows would be 9 wide, keeps the image unrolled one
//! row per kernel offset (`im2col`): its forward and weight gradient have kernels of their own
//! (`narrow`), its input gradient is `Wᵀ · dy` folded back by `col2im`.
//!
//! Images are independent tasks; the weight gradient sums over images in groups of fixed size,
//! then the groups in order, so the bits never depend on the thread count.

use std::cell::RefCell;

use rayon::prelude::*;

use super::matmul::{self, Epilogue, MatRef, PackedMatrix};
use super::narrow;
pub use super::pool::{max_pool2d, max_pool2d_backward};
use crate::error::{Error, Result, element_count};

/// Images whose weight gradients one task sums before the groups are added up in order.
const IMAGES_PER_TASK: usize = 8;

/// The sizes of a stride-1 convolution of `[batch, in_channels, height, width]` inputs with
/// `[out_channels, in_channels, kernel_h, kernel_w]` weights, zero-padded by `padding` on every
/// side. Its output is `[batch, out_channels, out_height, out_width]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    pub batch: usize,
    pub in_channels: usize,
    pub height: usize,
    pub width: usize,
    pub out_channels: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub padding: usize,
}

impl Conv2dShape {
    /// Output rows: `height + 2 * padding - kernel_h + 1` (0 when the kernel does not fit).
    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.padding + 1).saturating_sub(self.kernel_h)
    }

    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.padding + 1).saturating_sub(self.kernel_w)
    }

    pub fn input_len(&self) -> usize {
        self.batch * self.image_len()
    }

    pub fn weight_len(&self) -> usize {
        self.out_channels * self.patch_len()
    }

    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.out_pixels()
    }

    /// Floating-point operations of the forward pass (a multiply and an add per weight use).
    pub fn flops(&self) -> u64 {
        2 * self.output_len() as u64 * self.patch_len() as u64
    }

    /// Values of one input image.
    fn image_len(&self) -> usize {
        self.in_channels * self.height * self.width
    }

    /// Rows of an unrolled image: one per input channel and kernel offset.
    fn patch_len(&self) -> usize {
        self.in_channels * self.kernel_h * self.kernel_w
    }

    fn out_pixels(&self) -> usize {
        self.out_height() * self.out_width()
    }

    /// Whether any output exists: every size positive and the kernel fits the padded image.
    fn is_empty(&self) -> bool {
        self.output_len() == 0 || self.patch_len() == 0
    }

    /// Checks that every size the kernels derive from this shape fits a `usize`: the padded
    /// sides, the tensors, one task's images and one image's unrolled columns. The other
    /// methods compute without overflow checks once this holds.
    pub fn validate(&self) -> Result<()> {
        let s = self;
        let dims = [s.batch, s.in_channels, s.height, s.width, s.out_channels, s.kernel_h, s.kernel_w, s.padding];
        let too_large = || Error::TooLarge { op: "conv2d", shape: dims.to_vec() };
        let padded = |side: usize| s.padding.checked_mul(2)?.checked_add(side)?.checked_add(1);
        if padded(s.height).is_none() || padded(s.width).is_none() {
            return Err(too_large());
        }
        let (oh, ow) = (s.out_height(), s.out_width());
        let count = |dims: &[usize]| element_count("conv2d", dims).map_err(|_| too_large());
        count(&[s.batch, s.in_channels, s.height, s.width])?;
        count(&[s.batch, s.out_channels, oh, ow])?;
        count(&[s.out_channels, s.in_channels, s.kernel_h, s.kernel_w])?;
        let task_in = count(&[IMAGES_PER_TASK, s.in_channels, s.height, s.width])?;
        let task_out = count(&[IMAGES_PER_TASK, s.out_channels, oh, ow])?;
        let columns = count(&[oh, ow, s.in_channels, s.kernel_h, s.kernel_w])?;
        task_in.checked_add(task_out).and_then(|n| n.checked_add(columns)).map(|_| ()).ok_or_else(too_large)
    }
}

/// `out = conv(x, weight) + bias`, with `bias` `[out_channels]`.
pub fn conv2d(x: &[f32], weight: &[f32], bias: &[f32], s: Conv2dShape, out: &mut [f32]) -> Result<()> {
    check_lengths(s, x.len(), weight.len(), out.len())?;
    check_bias(s, bias)?;
    if s.is_empty() {
        out.fill(0.0);
        return Ok(());
    }
    if s.patch_len() == narrow::K {
        conv2d_narrow(x, weight, bias, s, out);
        return Ok(());
    }
    let (k, p) = (s.patch_len(), s.out_pixels());
    // Wᵀ `[k, out_channels]` with its rows in (kernel offset, channel) order, packed once.
    let weight = offsets_major(weight, s);
    let weight = PackedMatrix::new(MatRef::new(&weight, k, s.out_channels, true)?)?;
    let epilogue = Epilogue { bias: Some(bias), relu: false };
    out.par_chunks_mut(s.out_channels * p).zip(x.par_chunks(s.image_len())).try_for_each(|(out, x)| {
        with_columns(x.len() + p * k + out.len(), |buffer| {
            let (x_t, rest) = buffer.split_at_mut(x.len());
            let (rows, out_t) = rest.split_at_mut(p * k);
            matmul::transpose(x, s.in_channels, s.height * s.width, x_t)?;
            im2row(x_t, s, rows);
            matmul::gemm_packed(MatRef::new(rows, p, k, false)?, &weight, out_t, epilogue)?;
            matmul::transpose(out_t, p, s.out_channels, out)
        })
    })
}

/// [`conv2d`] of one input channel and a 3x3 kernel, through [`narrow::forward`].
fn conv2d_narrow(x: &[f32], weight: &[f32], bias: &[f32], s: Conv2dShape, out: &mut [f32]) {
    let p = s.out_pixels();
    out.par_chunks_mut(s.out_channels * p).zip(x.par_chunks(s.image_len())).for_each(|(out, x)| {
        with_columns(narrow::K * p, |columns| {
            im2col(x, s, columns);
            narrow::forward(weight, bias, columns, out);
        })
    });
}

/// The gradient with respect to the input: `dx = convᵀ(dy, weight)`.
///
/// Per image, the unrolled gradient is computed transposed, one row per output pixel:
/// `dyᵀ · W`, where `dyᵀ` `[pixels, out_channels]` is mostly zeros behind a max pooling and a
/// relu, and the product's sparse path skips them (as rows of A; `Wᵀ · dy` would have them in
/// B). With W's columns in (kernel offset, channel) order, each pixel's row then adds into a
/// channels-last image one contiguous run of channels per kernel offset.
pub fn conv2d_backward_input(dy: &[f32], weight: &[f32], s: Conv2dShape, dx: &mut [f32]) -> Result<()> {
    check_lengths(s, dx.len(), weight.len(), dy.len())?;
    if s.is_empty() {
        dx.fill(0.0);
        return Ok(());
    }
    if s.patch_len() == narrow::K {
        return conv2d_backward_input_narrow(dy, weight, s, dx);
    }
    let (k, p) = (s.patch_len(), s.out_pixels());
    let weight = offsets_major(weight, s);
    let weight = MatRef::new(&weight, s.out_channels, k, false)?;
    dx.par_chunks_mut(s.image_len()).zip(dy.par_chunks(s.out_channels * p)).try_for_each(|(dx, dy)| {
        with_columns(p * s.out_channels + p * k + dx.len(), |buffer| {
            let (dy_t, rest) = buffer.split_at_mut(p * s.out_channels);
            let (columns_t, dx_t) = rest.split_at_mut(p * k);
            matmul::transpose(dy, s.out_channels, p, dy_t)?;
            matmul::gemm(MatRef::new(dy_t, p, s.out_channels, false)?, weight, columns_t, false)?;
            col2im_channels_last(columns_t, s, dx_t);
            matmul::transpose(dx_t, s.height * s.width, s.in_channels, dx)
        })
    })
}

/// [`conv2d_backward_input`] of one input channel and a 3x3 kernel: one row per pixel would
/// be only 9 wide, so the unrolled gradient keeps one row per kernel offset, `Wᵀ · dy`.
fn conv2d_backward_input_narrow(dy: &[f32], weight: &[f32], s: Conv2dShape, dx: &mut [f32]) -> Result<()> {
    let p = s.out_pixels();
    // Wᵀ `[K, out_channels]`, read in place.
    let weight_t = MatRef::new(weight, narrow::K, s.out_channels, true)?;
    dx.par_chunks_mut(s.image_len()).zip(dy.par_chunks(s.out_channels * p)).try_for_each(|(dx, dy)| {
        with_columns(narrow::K * p, |columns| {
            matmul::gemm(weight_t, MatRef::new(dy, s.out_channels, p, false)?, columns, false)?;
            col2im(columns, s, dx);
            Ok(())
        })
    })
}

/// `[out_channels, in_channels, kh, kw]` weights as `[out_channels, kh, kw, in_channels]`.
fn offsets_major(weight: &[f32], s: Conv2dShape) -> Vec<f32> {
    let offsets = s.kernel_h * s.kernel_w;
    let mut out = vec![0.0; weight.len()];
    for (out, w) in out.chunks_exact_mut(s.patch_len()).zip(weight.chunks_exact(s.patch_len())) {
        for (c, w) in w.chunks_exact(offsets).enumerate() {
            out.iter_mut().skip(c).step_by(s.in_channels).zip(w).for_each(|(o, &w)| *o = w);
        }
    }
    out
}

/// The inverse of [`offsets_major`], into `weight`.
fn channels_major(offsets_major: &[f32], s: Conv2dShape, weight: &mut [f32]) {
    let offsets = s.kernel_h * s.kernel_w;
    for (w, o) in weight.chunks_exact_mut(s.patch_len()).zip(offsets_major.chunks_exact(s.patch_len())) {
        for (c, w) in w.chunks_exact_mut(offsets).enumerate() {
            w.iter_mut().zip(o.iter().skip(c).step_by(s.in_channels)).for_each(|(w, &o)| *w = o);
        }
    }
}

/// The gradient with respect to the weights: `dw = Σ_images dy · im2col(x)ᵀ`, the unrolled
/// image taken one row per output pixel (`im2row`), so that packing it copies rows.
pub fn conv2d_backward_weight(x: &[f32], dy: &[f32], s: Conv2dShape, dw: &mut [f32]) -> Result<()> {
    check_lengths(s, x.len(), dw.len(), dy.len())?;
    dw.fill(0.0);
    if s.is_empty() {
        return Ok(());
    }
    let (k, p) = (s.patch_len(), s.out_pixels());
    let (image, out_image) = (s.image_len(), s.out_channels * p);
    let narrow = k == narrow::K;
    let partials: Vec<Vec<f32>> = x
        .par_chunks(IMAGES_PER_TASK * image)
        .zip(dy.par_chunks(IMAGES_PER_TASK * out_image))
        .map(|(x, dy)| {
            let mut partial = vec![0.0; dw.len()];
            with_columns(image + k * p, |buffer| -> Result<()> {
                let (x_t, columns) = buffer.split_at_mut(image);
                for (x, dy) in x.chunks_exact(image).zip(dy.chunks_exact(out_image)) {
                    if narrow {
                        im2col(x, s, columns);
                        narrow::accumulate_weight_gradient(dy, columns, &mut partial);
                        continue;
                    }
                    matmul::transpose(x, s.in_channels, s.height * s.width, x_t)?;
                    im2row(x_t, s, columns);
                    let dy = MatRef::new(dy, s.out_channels, p, false)?;
                    matmul::gemm(dy, MatRef::new(columns, p, k, false)?, &mut partial, true)?;
                }
                Ok(())
            })?;
            Ok(partial)
        })
        .collect::<Result<_>>()?;
    for partial in &partials {
        dw.iter_mut().zip(partial).for_each(|(d, &v)| *d += v);
    }
    if !narrow {
        // The sums have their columns in (kernel offset, channel) order, as `im2row` unrolls.
        let sums = dw.to_vec();
        channels_major(&sums, s, dw);
    }
    Ok(())
}

/// Per-channel sums of `[batch, channels, ...]` data (the gradient of a convolution's bias):
/// each image's plane summed in order, then the images in order.
pub fn channel_sums(x: &[f32], batch: usize, channels: usize, out: &mut [f32]) -> Result<()> {
    let planes = element_count("channel_sums", &[batch, channels])?;
    if out.len() != channels || (planes == 0 && !x.is_empty()) || (planes > 0 && !x.len().is_multiple_of(planes)) {
        return Err(Error::ElementCount { len: x.len(), shape: vec![batch, channels] });
    }
    out.fill(0.0);
    if x.is_empty() {
        return Ok(());
    }
    let plane = x.len() / planes;
    let sums: Vec<f32> = x.par_chunks(plane).map(sum_in_lanes).collect();
    for image in sums.chunks_exact(channels) {
        out.iter_mut().zip(image).for_each(|(o, &s)| *o += s);
    }
    Ok(())
}

/// The sum of `x` in eight interleaved partial sums, added up at the end: a fixed order that
/// vectorizes, where one running sum cannot.
fn sum_in_lanes(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        lanes.iter_mut().zip(chunk).for_each(|(l, &v)| *l += v);
    }
    lanes.iter().sum::<f32>() + rest
}

/// The convolution written as its definition, one output at a time: the oracle in tests and
/// the "naive" line in benchmarks.
pub fn conv2d_naive(x: &[f32], weight: &[f32], bias: &[f32], s: Conv2dShape, out: &mut [f32]) -> Result<()> {
    check_lengths(s, x.len(), weight.len(), out.len())?;
    check_bias(s, bias)?;
    let (oh, ow) = (s.out_height(), s.out_width());
    for (index, o) in out.iter_mut().enumerate() {
        let (n, oc, oy, ox) =
            (index / (s.out_channels * oh * ow), index / (oh * ow) % s.out_channels, index / ow % oh, index % ow);
        let mut sum = bias[oc];
        for c in 0..s.in_channels {
            for ky in 0..s.kernel_h {
                for kx in 0..s.kernel_w {
                    let (iy, ix) = ((oy + ky).wrapping_sub(s.padding), (ox + kx).wrapping_sub(s.padding));
                    if iy < s.height && ix < s.width {
                        let w = weight[((oc * s.in_channels + c) * s.kernel_h + ky) * s.kernel_w + kx];
                        sum += w * x[((n * s.in_channels + c) * s.height + iy) * s.width + ix];
                    }
                }
            }
        }
        *o = sum;
    }
    Ok(())
}

fn check_bias(s: Conv2dShape, bias: &[f32]) -> Result<()> {
    match bias.len() == s.out_channels {
        true => Ok(()),
        false => Err(Error::ElementCount { len: bias.len(), shape: vec![s.out_channels] }),
    }
}

/// Checks `s` and that the buffers hold its input, weights and output.
fn check_lengths(s: Conv2dShape, input: usize, weight: usize, output: usize) -> Result<()> {
    s.validate()?;
    let (oh, ow) = (s.out_height(), s.out_width());
    let expected = [
        (input, s.input_len(), vec![s.batch, s.in_channels, s.height, s.width]),
        (weight, s.weight_len(), vec![s.out_channels, s.in_channels, s.kernel_h, s.kernel_w]),
        (output, s.output_len(), vec![s.batch, s.out_channels, oh, ow]),
    ];
    match expected.into_iter().find(|(len, expected, _)| len != expected) {
        Some((len, _, shape)) => Err(Error::ElementCount { len, shape }),
        None => Ok(()),
    }
}

/// Unrolls one `[in_channels, height, width]` image into `[in_channels * kh * kw, out pixels]`:
/// row `(c, ky, kx)` holds, for every output pixel, the input it sees at that kernel offset
/// (zero in the padding).
fn im2col(x: &[f32], s: Conv2dShape, columns: &mut [f32]) {
    let (oh, ow) = (s.out_height(), s.out_width());
    for (row_index, row) in columns.chunks_exact_mut(oh * ow).enumerate() {
        let (c, ky, kx) = unroll_row(s, row_index);
        let plane = &x[c * s.height * s.width..][..s.height * s.width];
        let (lo, hi) = columns_inside(s, kx, s.out_width());
        for (oy, out) in row.chunks_exact_mut(ow).enumerate() {
            match input_row(s, oy, ky) {
                Some(iy) if lo < hi => {
                    out[..lo].fill(0.0);
                    out[lo..hi].copy_from_slice(&plane[iy * s.width + lo + kx - s.padding..][..hi - lo]);
                    out[hi..].fill(0.0);
                }
                _ => out.fill(0.0),
            }
        }
    }
}

/// The adjoint of [`im2col`]: `dx` (one image) becomes the sum of every column entry at the
/// input position it was read from.
fn col2im(columns: &[f32], s: Conv2dShape, dx: &mut [f32]) {
    let (oh, ow) = (s.out_height(), s.out_width());
    dx.fill(0.0);
    for (row_index, row) in columns.chunks_exact(oh * ow).enumerate() {
        let (c, ky, kx) = unroll_row(s, row_index);
        let plane = &mut dx[c * s.height * s.width..][..s.height * s.width];
        let (lo, hi) = columns_inside(s, kx, s.out_width());
        for (oy, values) in row.chunks_exact(ow).enumerate() {
            if let Some(iy) = input_row(s, oy, ky).filter(|_| lo < hi) {
                add_assign(&mut plane[iy * s.width + lo + kx - s.padding..][..hi - lo], &values[lo..hi]);
            }
        }
    }
}

/// Unrolls one image one row per output pixel, from `x_t`, the image channels last: row
/// `(oy, ox)` holds, for each kernel offset `(ky, kx)` in turn, the `in_channels` inputs it
/// sees (zeros in the padding). Each kernel row is one copy where it lies inside the image.
fn im2row(x_t: &[f32], s: Conv2dShape, rows: &mut [f32]) {
    let (channels, ow) = (s.in_channels, s.out_width());
    let span = s.kernel_w * channels;
    for (oy, rows) in rows.chunks_exact_mut(ow * s.patch_len()).enumerate() {
        for (ox, row) in rows.chunks_exact_mut(s.patch_len()).enumerate() {
            for (ky, row) in row.chunks_exact_mut(span).enumerate() {
                let Some(iy) = input_row(s, oy, ky) else {
                    row.fill(0.0);
                    continue;
                };
                let (lo, hi) = columns_inside(s, ox, s.kernel_w);
                row[..lo * channels].fill(0.0);
                if lo < hi {
                    let first = (iy * s.width + ox + lo - s.padding) * channels;
                    row[lo * channels..hi * channels].copy_from_slice(&x_t[first..][..(hi - lo) * channels]);
                }
                row[hi * channels..].fill(0.0);
            }
        }
    }
}

/// The adjoint of [`im2row`]: `dx_t` (one image, channels last) becomes the sum of every entry
/// at the input position it was read from, pixel after pixel.
fn col2im_channels_last(columns_t: &[f32], s: Conv2dShape, dx_t: &mut [f32]) {
    let (channels, ow) = (s.in_channels, s.out_width());
    dx_t.fill(0.0);
    for (oy, rows) in columns_t.chunks_exact(ow * s.patch_len()).enumerate() {
        for (ox, row) in rows.chunks_exact(s.patch_len()).enumerate() {
            for (ky, row) in row.chunks_exact(s.kernel_w * channels).enumerate() {
                let Some(iy) = input_row(s, oy, ky) else { continue };
                let (lo, hi) = columns_inside(s, ox, s.kernel_w);
                if lo < hi {
                    let first = (iy * s.width + ox + lo - s.padding) * channels;
                    add_assign(&mut dx_t[first..][..(hi - lo) * channels], &row[lo * channels..hi * channels]);
                }
            }
        }
    }
}

/// `target += values`; a function of its own so that the loop vectorizes without overlap checks.
#[inline(never)]
fn add_assign(target: &mut [f32], values: &[f32]) {
    target.iter_mut().zip(values).for_each(|(t, &v)| *t += v);
}

/// The input channel and kernel offset of row `index` of an unrolled image.
fn unroll_row(s: Conv2dShape, index: usize) -> (usize, usize, usize) {
    (index / (s.kernel_h * s.kernel_w), index / s.kernel_w % s.kernel_h, index % s.kernel_w)
}

/// The input row `oy + ky - padding` that output row `oy` reads at kernel row `ky`, if it lies
/// inside the image.
fn input_row(s: Conv2dShape, oy: usize, ky: usize) -> Option<usize> {
    (oy + ky).checked_sub(s.padding).filter(|&iy| iy < s.height)
}

/// The run `lo..hi` of `j < len` whose input column `offset + j - padding` lies inside the
/// image: output columns for a kernel column `offset`, or kernel columns for an output column.
fn columns_inside(s: Conv2dShape, offset: usize, len: usize) -> (usize, usize) {
    let lo = s.padding.saturating_sub(offset).min(len);
    let hi = (s.width + s.padding).saturating_sub(offset).min(len);
    (lo, hi.max(lo))
}

thread_local! {
    /// One image's scratch (the unrolled image, and transposed copies of an input and an
    /// output) kept between calls: allocating it costs a page fault per 4 KiB.
    static COLUMNS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a buffer of `len` floats for one image's scratch (contents unspecified): this
/// thread's cached one, or a fresh one in a nested call.
fn with_columns<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    COLUMNS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffer) => {
            if buffer.len() < len {
                buffer.resize(len, 0.0);
            }
            f(&mut buffer[..len])
        }
        Err(_) => f(&mut vec![0.0; len]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// `len` values, each zero with probability `zeros` (as after a relu or a max pooling), else
    /// uniform in [-1, 1).
    fn sparse_random(len: usize, zeros: f32, rng: &mut Rng) -> Vec<f32> {
        (0..len).map(|_| if rng.uniform(0.0, 1.0) < zeros { 0.0 } else { rng.uniform(-1.0, 1.0) }).collect()
    }

    const SHAPES: [Conv2dShape; 7] = [
        Conv2dShape {
            batch: 3,
            in_channels: 2,
            height: 7,
            width: 5,
            out_channels: 3,
            kernel_h: 3,
            kernel_w: 3,
            padding: 1,
        },
        Conv2dShape {
            batch: 1,
            in_channels: 3,
            height: 6,
            width: 9,
            out_channels: 5,
            kernel_h: 2,
            kernel_w: 3,
            padding: 0,
        },
        Conv2dShape {
            batch: 9,
            in_channels: 1,
            height: 5,
            width: 4,
            out_channels: 7,
            kernel_h: 5,
            kernel_w: 3,
            padding: 2,
        },
        Conv2dShape {
            batch: 2,
            in_channels: 4,
            height: 3,
            width: 3,
            out_channels: 2,
            kernel_h: 1,
            kernel_w: 1,
            padding: 0,
        },
        // One channel, 3x3: the narrow kernels, over 55 pixels (not a multiple of 8).
        Conv2dShape {
            batch: 2,
            in_channels: 1,
            height: 5,
            width: 11,
            out_channels: 3,
            kernel_h: 3,
            kernel_w: 3,
            padding: 1,
        },
        // Padding wider than the kernel: outputs that see only zeros.
        Conv2dShape {
            batch: 2,
            in_channels: 3,
            height: 4,
            width: 3,
            out_channels: 2,
            kernel_h: 1,
            kernel_w: 2,
            padding: 3,
        },
        // Unrolled rows as wide as a sparse product's group and more: 8 * 3 * 3 = 72.
        Conv2dShape {
            batch: 3,
            in_channels: 8,
            height: 6,
            width: 5,
            out_channels: 9,
            kernel_h: 3,
            kernel_w: 3,
            padding: 1,
        },
    ];

    /// Dense inputs and inputs mostly zeros, as after a relu (the products' sparse path).
    #[test]
    fn unrolled_products_match_the_definition() {
        let mut rng = Rng::new(5);
        for (s, zeros) in SHAPES.into_iter().flat_map(|s| [(s, 0.0), (s, 0.8)]) {
            let x = sparse_random(s.input_len(), zeros, &mut rng);
            let [w, b] = [s.weight_len(), s.out_channels].map(|len| rng.uniform_vec(len, -1.0, 1.0));
            let (mut fast, mut naive) = (vec![f32::NAN; s.output_len()], vec![f32::NAN; s.output_len()]);
            conv2d(&x, &w, &b, s, &mut fast).unwrap();
            conv2d_naive(&x, &w, &b, s, &mut naive).unwrap();
            for (f, n) in fast.iter().zip(&naive) {
                assert!((f - n).abs() < 1e-5, "{s:?} {zeros}: {f} vs {n}");
            }
        }
    }

    /// `<dy, conv(x)> = <convᵀ(dy), x>` and `= <dw, w>` (without bias): the backward kernels
    /// are the adjoints of the forward one, for a dense `dy` and for one that is mostly zeros,
    /// as behind a max pooling (the products' sparse path).
    #[test]
    fn backward_kernels_are_adjoints_of_the_forward_one() {
        let mut rng = Rng::new(9);
        for (s, zeros) in SHAPES.into_iter().flat_map(|s| [(s, 0.0), (s, 0.8)]) {
            let [x, w] = [s.input_len(), s.weight_len()].map(|len| rng.uniform_vec(len, -1.0, 1.0));
            let dy = sparse_random(s.output_len(), zeros, &mut rng);
            let mut y = vec![0.0; s.output_len()];
            conv2d_naive(&x, &w, &vec![0.0; s.out_channels], s, &mut y).unwrap();
            let (mut dx, mut dw) = (vec![f32::NAN; x.len()], vec![f32::NAN; w.len()]);
            conv2d_backward_input(&dy, &w, s, &mut dx).unwrap();
            conv2d_backward_weight(&x, &dy, s, &mut dw).unwrap();
            let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>();
            let reference = dot(&dy, &y);
            assert!((dot(&dx, &x) - reference).abs() < 1e-4 * (1.0 + reference.abs()), "{s:?} {zeros} input");
            assert!((dot(&dw, &w) - reference).abs() < 1e-4 * (1.0 + reference.abs()), "{s:?} {zeros} weight");
        }
    }

    #[test]
    fn channel_sums_add_every_image_and_pixel() {
        let x: Vec<f32> = (0..2 * 3 * 4).map(|v| v as f32).collect();
        let mut out = [0.0; 3];
        channel_sums(&x, 2, 3, &mut out).unwrap();
        assert_eq!(out, [60., 92., 124.]);
    }
}
