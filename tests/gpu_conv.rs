//! The convolution and pooling kernels (`engine::backend::gpu::conv`) against their CPU oracle
//! (`engine::backend::cpu::conv`), on shapes that are no multiples of the kernels' tiles, with
//! shaders built without and with naga's runtime bounds checks: the builds must agree with each
//! other bit for bit and with the CPU up to rounding (pooling exactly). Launcher outputs are
//! NaN-filled before each kernel runs, so an element a kernel fails to write cannot pass.
//!
//! Without an adapter the tests say so and skip; with `ENGINE_REQUIRE_GPU=1` they fail instead.
#![cfg(feature = "gpu")]

#[path = "common/gpu.rs"]
mod gpu;

use engine::backend::cpu::conv::{self as cpu, Conv2dShape};
use engine::backend::gpu::conv;
use engine::backend::gpu::{GpuContext, GpuError};
use engine::rng::Rng;
use gpu::{assert_close, compare_builds, contexts, download, on_both, random, upload, wrapped_contexts};

const fn shape(
    batch: usize,
    in_channels: usize,
    (height, width): (usize, usize),
    out_channels: usize,
    (kernel_h, kernel_w): (usize, usize),
    padding: usize,
) -> Conv2dShape {
    Conv2dShape { batch, in_channels, height, width, out_channels, kernel_h, kernel_w, padding }
}

/// Channel counts on both sides of the 32 rows of the narrow tile and past the 64 of the square
/// one, reductions shorter than a 16-deep slice and across many, images smaller than the kernel,
/// padding wider than the kernel, and convolutions with nothing to sum.
const SHAPES: [Conv2dShape; 11] = [
    shape(3, 2, (7, 5), 5, (3, 3), 1),
    shape(3, 5, (7, 5), 33, (2, 3), 0),
    shape(2, 1, (28, 28), 2, (5, 3), 2),
    shape(3, 33, (1, 1), 5, (1, 1), 0),
    shape(1, 2, (1, 1), 3, (3, 3), 1),
    shape(3, 5, (5, 4), 1, (5, 3), 2),
    shape(3, 33, (7, 5), 2, (1, 1), 2),
    shape(3, 40, (6, 7), 70, (3, 3), 1),
    shape(2, 70, (3, 4), 40, (2, 2), 1),
    // The kernel does not fit: no output, zero gradients.
    shape(2, 3, (2, 2), 3, (5, 3), 0),
    // No input channel: zero outputs (as on the CPU, bias included).
    shape(2, 0, (3, 3), 4, (3, 3), 1),
];

/// MNIST's second convolution on a batch of 5.
const MNIST: Conv2dShape = shape(5, 32, (14, 14), 64, (3, 3), 1);

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// `|got - want| <= 1e-5 * bound + 1e-6`, with `bound` the same computation on absolute values:
/// a bound on the rounding error of a sum, however much its terms cancel.
fn assert_within(name: &str, got: &[f32], want: &[f32], bound: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: lengths differ");
    for (i, ((&g, &w), &b)) in got.iter().zip(want).zip(bound).enumerate() {
        assert!((g - w).abs() <= 1e-5 * b + 1e-6, "{name}[{i}]: got {g}, want {w}");
    }
}

/// Bitwise equality, any NaN matching any NaN.
fn assert_same(name: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "{name}[{i}]: got {g}, want {w}");
    }
}

fn cpu_conv2d(x: &[f32], weight: &[f32], bias: &[f32], s: Conv2dShape) -> Vec<f32> {
    let mut out = vec![0.0; s.output_len()];
    cpu::conv2d(x, weight, bias, s, &mut out).unwrap();
    out
}

fn cpu_backward_input(dy: &[f32], weight: &[f32], s: Conv2dShape) -> Vec<f32> {
    let mut dx = vec![0.0; s.input_len()];
    cpu::conv2d_backward_input(dy, weight, s, &mut dx).unwrap();
    dx
}

fn cpu_backward_weight(x: &[f32], dy: &[f32], s: Conv2dShape) -> Vec<f32> {
    let mut dw = vec![0.0; s.weight_len()];
    cpu::conv2d_backward_weight(x, dy, s, &mut dw).unwrap();
    dw
}

fn cpu_channel_sums(x: &[f32], batch: usize, channels: usize) -> Vec<f32> {
    let mut out = vec![0.0; channels];
    cpu::channel_sums(x, batch, channels, &mut out).unwrap();
    out
}

/// The forward pass without and with relu.
fn check_forward(ctx: &GpuContext, rng: &mut Rng, s: Conv2dShape) -> Vec<Vec<f32>> {
    let (x, w, b) = (
        random(s.input_len(), rng, -1.0, 1.0),
        random(s.weight_len(), rng, -1.0, 1.0),
        random(s.out_channels, rng, -1.0, 1.0),
    );
    let want = cpu_conv2d(&x, &w, &b, s);
    let bound = cpu_conv2d(&abs(&x), &abs(&w), &abs(&b), s);
    let (gx, gw, gb) = (upload(ctx, &x), upload(ctx, &w), upload(ctx, &b));
    let got = download(&conv::conv2d(ctx, &gx, &gw, &gb, s, false).unwrap());
    assert_within(&format!("conv2d {s:?}"), &got, &want, &bound);
    let rectified = download(&conv::conv2d(ctx, &gx, &gw, &gb, s, true).unwrap());
    let want: Vec<f32> = want.iter().map(|v| v.max(0.0)).collect();
    assert_within(&format!("conv2d+relu {s:?}"), &rectified, &want, &bound);
    assert!(rectified.iter().all(|&v| v >= 0.0), "conv2d+relu {s:?}: a negative output");
    vec![got, rectified]
}

fn check_backward_input(ctx: &GpuContext, rng: &mut Rng, s: Conv2dShape) -> Vec<f32> {
    let (dy, w) = (random(s.output_len(), rng, -1.0, 1.0), random(s.weight_len(), rng, -1.0, 1.0));
    let want = cpu_backward_input(&dy, &w, s);
    let bound = cpu_backward_input(&abs(&dy), &abs(&w), s);
    let got = download(&conv::conv2d_backward_input(ctx, &upload(ctx, &dy), &upload(ctx, &w), s).unwrap());
    assert_within(&format!("conv2d_backward_input {s:?}"), &got, &want, &bound);
    got
}

fn check_backward_weight(ctx: &GpuContext, rng: &mut Rng, s: Conv2dShape) -> Vec<f32> {
    let (x, dy) = (random(s.input_len(), rng, -1.0, 1.0), random(s.output_len(), rng, -1.0, 1.0));
    let want = cpu_backward_weight(&x, &dy, s);
    let bound = cpu_backward_weight(&abs(&x), &abs(&dy), s);
    let got = download(&conv::conv2d_backward_weight(ctx, &upload(ctx, &x), &upload(ctx, &dy), s).unwrap());
    assert_within(&format!("conv2d_backward_weight {s:?}"), &got, &want, &bound);
    got
}

/// The bias gradient of a convolution's output gradient `[batch, out_channels, out pixels]`.
fn check_channel_sums(ctx: &GpuContext, rng: &mut Rng, batch: usize, channels: usize, plane: usize) -> Vec<f32> {
    let x = random(batch * channels * plane, rng, -1.0, 1.0);
    let want = cpu_channel_sums(&x, batch, channels);
    let bound = cpu_channel_sums(&abs(&x), batch, channels);
    let got = download(&conv::channel_sums(ctx, &upload(ctx, &x), batch, channels).unwrap());
    assert_within(&format!("channel_sums {batch}x{channels}x{plane}"), &got, &want, &bound);
    got
}

#[test]
fn conv2d_matches_cpu_on_odd_shapes() {
    on_both("conv2d", |ctx| {
        let mut rng = Rng::new(1);
        SHAPES.iter().flat_map(|&s| check_forward(ctx, &mut rng, s)).collect()
    });
}

#[test]
fn conv2d_backward_input_matches_cpu_on_odd_shapes() {
    on_both("conv2d_backward_input", |ctx| {
        let mut rng = Rng::new(2);
        SHAPES.iter().map(|&s| check_backward_input(ctx, &mut rng, s)).collect()
    });
}

#[test]
fn conv2d_backward_weight_matches_cpu_on_odd_shapes() {
    // The 28x28 shape's reduction (2 images of 28x30 pixels) is split across workgroups.
    on_both("conv2d_backward_weight", |ctx| {
        let mut rng = Rng::new(3);
        SHAPES.iter().map(|&s| check_backward_weight(ctx, &mut rng, s)).collect()
    });
}

#[test]
fn channel_sums_match_cpu() {
    on_both("channel_sums", |ctx| {
        let mut rng = Rng::new(4);
        // Planes shorter and longer than a workgroup, one image (no second pass), empty planes.
        let cases = [(3, 5, 35), (1, 33, 784), (7, 2, 1), (4, 64, 300), (2, 3, 0), (0, 4, 9), (3, 0, 5)];
        cases
            .iter()
            .map(|&(batch, channels, plane)| check_channel_sums(ctx, &mut rng, batch, channels, plane))
            .collect()
    });
}

#[test]
fn mnist_sized_layer_matches_cpu() {
    // 5 x 196 pixels: the weight gradient's reduction is split across workgroups.
    on_both("mnist layer", |ctx| {
        let mut rng = Rng::new(5);
        let mut outputs = check_forward(ctx, &mut rng, MNIST);
        outputs.push(check_backward_input(ctx, &mut rng, MNIST));
        outputs.push(check_backward_weight(ctx, &mut rng, MNIST));
        outputs.push(check_channel_sums(ctx, &mut rng, MNIST.batch, MNIST.out_channels, 14 * 14));
        outputs
    });
}

/// Values from a handful, so that windows often tie (-0 and +0 included, which tie too), and
/// NaN at `nan_rate`.
fn pool_input(len: usize, rng: &mut Rng, nan_rate: f32) -> Vec<f32> {
    let values = [-1.0, -0.0, 0.0, 1.0, 2.0];
    (0..len)
        .map(|_| if rng.uniform(0.0, 1.0) < nan_rate { f32::NAN } else { values[rng.below(values.len())] })
        .collect()
}

fn check_pool(
    ctx: &GpuContext,
    rng: &mut Rng,
    (planes, height, width): (usize, usize, usize),
    nan_rate: f32,
) -> Vec<Vec<f32>> {
    let x = pool_input(planes * height * width, rng, nan_rate);
    let dy = random(planes * (height / 2) * (width / 2), rng, 0.5, 1.5);
    let mut want = vec![0.0; dy.len()];
    cpu::max_pool2d(&x, planes, height, width, &mut want).unwrap();
    let mut want_dx = vec![0.0; x.len()];
    cpu::max_pool2d_backward(&x, &dy, planes, height, width, &mut want_dx).unwrap();
    let gx = upload(ctx, &x);
    let name = format!("{planes}x{height}x{width} NaN rate {nan_rate}");
    let got = download(&conv::max_pool2d(ctx, &gx, planes, height, width).unwrap());
    assert_same(&format!("max_pool2d {name}"), &got, &want);
    let dx = download(&conv::max_pool2d_backward(ctx, &gx, &upload(ctx, &dy), planes, height, width).unwrap());
    assert_same(&format!("max_pool2d_backward {name}"), &dx, &want_dx);
    vec![got, dx]
}

#[test]
fn max_pooling_matches_cpu_with_ties_and_nan() {
    on_both("max_pool2d", |ctx| {
        let mut rng = Rng::new(6);
        let shapes = [(3, 7, 5), (2, 28, 28), (5, 3, 9), (2, 2, 2), (4, 1, 1), (3, 1, 6), (1, 6, 1)];
        let mut outputs = Vec::new();
        for shape in shapes {
            outputs.extend(check_pool(ctx, &mut rng, shape, 0.0));
            outputs.extend(check_pool(ctx, &mut rng, shape, 0.1));
        }
        outputs
    });
}

#[test]
fn max_pooling_takes_the_first_largest_and_the_first_nan() {
    let nan = f32::NAN;
    // One plane of 2x6, three windows: [0, -0 / 0, -0] (the first zero wins), [1, 2 / 2, 1]
    // (the first 2), [NaN, 1 / NaN, 3] (the first NaN: a NaN counts as the largest).
    let x = [0.0, -0.0, 1.0, 2.0, nan, 1.0, 0.0, -0.0, 2.0, 1.0, nan, 3.0];
    on_both("max_pool2d by hand", |ctx| {
        let gx = upload(ctx, &x);
        let got = download(&conv::max_pool2d(ctx, &gx, 1, 2, 6).unwrap());
        assert!(got[0] == 0.0 && got[0].is_sign_positive() && got[1] == 2.0 && got[2].is_nan(), "{got:?}");
        let dx = download(&conv::max_pool2d_backward(ctx, &gx, &upload(ctx, &[10.0, 20.0, 30.0]), 1, 2, 6).unwrap());
        assert_eq!(dx, [10.0, 0.0, 0.0, 20.0, 30.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        vec![got, dx]
    });
}

#[test]
fn a_batch_of_mnist_images_through_the_first_layer() {
    // 128 images of 28x28 into 32 channels: 3.2M outputs, then pooled and back.
    let s = shape(128, 1, (28, 28), 32, (3, 3), 1);
    on_both("mnist batch", |ctx| {
        let mut rng = Rng::new(7);
        let mut outputs = check_forward(ctx, &mut rng, s);
        outputs.extend(check_pool(ctx, &mut rng, (s.batch * s.out_channels, 28, 28), 0.0));
        outputs.push(check_backward_weight(ctx, &mut rng, s));
        outputs
    });
}

#[test]
fn grids_wrap_into_a_second_dimension() {
    // Contexts whose grids wrap past 3 workgroups: every launcher then dispatches a 2-D grid
    // with spare workgroups at the end, which must do nothing.
    if contexts().is_none() {
        return;
    }
    compare_builds("wrapped grids", &wrapped_contexts(3), |ctx| {
        let mut rng = Rng::new(8);
        let mut outputs = Vec::new();
        for s in [MNIST, SHAPES[2], SHAPES[7]] {
            outputs.extend(check_forward(ctx, &mut rng, s));
            outputs.push(check_backward_input(ctx, &mut rng, s));
            outputs.push(check_backward_weight(ctx, &mut rng, s));
        }
        outputs.push(check_channel_sums(ctx, &mut rng, 5, 7, 9));
        outputs.extend(check_pool(ctx, &mut rng, (5, 28, 27), 0.1));
        outputs
    });
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let Some([ctx, other]) = contexts() else { return };
    let s = SHAPES[0];
    let (x, w, b, dy) = (
        upload(ctx, &vec![0.0; s.input_len()]),
        upload(ctx, &vec![0.0; s.weight_len()]),
        upload(ctx, &vec![0.0; s.out_channels]),
        upload(ctx, &vec![0.0; s.output_len()]),
    );
    let shape_error = |r: Result<_, GpuError>| matches!(r, Err(GpuError::Shape { .. }));
    assert!(conv::conv2d(ctx, &x, &w, &b, s, false).is_ok());
    assert!(shape_error(conv::conv2d(ctx, &w, &w, &b, s, false)));
    assert!(shape_error(conv::conv2d(ctx, &x, &x, &b, s, false)));
    assert!(shape_error(conv::conv2d(ctx, &x, &w, &w, s, false)));
    assert!(shape_error(conv::conv2d_backward_input(ctx, &x, &w, s)));
    assert!(shape_error(conv::conv2d_backward_weight(ctx, &x, &x, s)));
    let huge = Conv2dShape { padding: usize::MAX / 2, ..s };
    assert!(shape_error(conv::conv2d(ctx, &x, &w, &b, huge, false)));
    assert!(shape_error(conv::channel_sums(ctx, &dy, 2, 2)));
    assert!(shape_error(conv::channel_sums(ctx, &dy, 0, 5)));
    assert!(shape_error(conv::max_pool2d(ctx, &x, 3, 7, 4)));
    assert!(shape_error(conv::max_pool2d_backward(ctx, &x, &x, s.batch * s.in_channels, 7, 5)));
    let elsewhere = upload(other, &vec![0.0; s.weight_len()]);
    assert!(matches!(conv::conv2d(ctx, &x, &elsewhere, &b, s, false), Err(GpuError::ContextMismatch { .. })));
    assert!(ctx.synchronize().is_ok(), "errors caught on the host leave the device clean");
}

#[test]
fn relu_applies_after_the_bias() {
    let s = shape(1, 1, (1, 1), 2, (1, 1), 0);
    on_both("conv2d+relu", |ctx| {
        // 2 * -1.5 + 0.5 < 0 is clamped; 2 * -1.5 + 4 > 0 is kept.
        let (x, w, b) = (upload(ctx, &[2.0]), upload(ctx, &[-1.5, -1.5]), upload(ctx, &[0.5, 4.0]));
        let plain = download(&conv::conv2d(ctx, &x, &w, &b, s, false).unwrap());
        let rectified = download(&conv::conv2d(ctx, &x, &w, &b, s, true).unwrap());
        assert_close("conv2d", &plain, &[-2.5, 1.0], 0.0, 0.0);
        assert_close("conv2d+relu", &rectified, &[0.0, 1.0], 0.0, 0.0);
        vec![plain, rectified]
    });
}
