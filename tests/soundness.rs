//! Safe calls never reach memory outside their buffers: sizes whose product overflows are
//! refused with an error at every public entry point, empty dimensions work (as in PyTorch) on
//! every device, and the CPU kernels match their naive references on random edge-case shapes.
//! `.ci/run` also runs the CPU half of this file under valgrind.

#[path = "common/devices.rs"]
mod devices;

use devices::devices;
use engine::backend::cpu::conv::{self, Conv2dShape};
use engine::backend::cpu::matmul::{self, Epilogue, MatRef, PackedMatrix};
use engine::rng::Rng;
use engine::{Device, Error, Tensor};

/// 2^32: two of them multiply to 2^64, which wraps to 0 in unchecked arithmetic, the length
/// of an empty buffer.
const WRAPS: usize = 1 << 32;

fn assert_too_large<T: std::fmt::Debug>(result: engine::Result<T>, what: &str) {
    match result {
        Err(Error::TooLarge { .. }) => {}
        other => panic!("{what}: expected a too-large shape error, got {other:?}"),
    }
}

fn assert_refused<T: std::fmt::Debug>(result: engine::Result<T>, what: &str) {
    assert!(result.is_err(), "{what}: expected an error, got {result:?}");
}

#[test]
fn cpu_tensor_shapes_whose_product_wraps_are_refused() {
    let cpu = Device::Cpu;
    assert_too_large(Tensor::from_vec(vec![], &[WRAPS, WRAPS], &cpu), "from_vec");
    assert_too_large(Tensor::variable(vec![], &[WRAPS, WRAPS, 1], &cpu), "variable");
    assert_too_large(Tensor::zeros(&[WRAPS, WRAPS], &cpu), "zeros");
    let empty = Tensor::zeros(&[0], &cpu).unwrap();
    assert_too_large(empty.reshape(&[WRAPS, WRAPS]), "reshape");
    // Empty tensors may have huge sides (PyTorch allows it); their products may not wrap.
    let tall = Tensor::zeros(&[WRAPS, 0], &cpu).unwrap();
    let wide = Tensor::zeros(&[0, WRAPS], &cpu).unwrap();
    assert_too_large(tall.matmul(&wide), "matmul");
    assert_too_large(wide.matmul_t(&tall, true, true), "matmul of transposes");
    let images = Tensor::zeros(&[0, 1, WRAPS, WRAPS], &cpu).unwrap();
    let kernel = Tensor::zeros(&[1, 1, 3, 3], &cpu).unwrap();
    assert_too_large(images.conv2d(&kernel, &Tensor::zeros(&[1], &cpu).unwrap(), 1), "conv2d");
}

#[test]
fn cpu_kernel_entry_points_refuse_sizes_that_wrap() {
    assert_too_large(MatRef::new(&[], WRAPS, WRAPS, false), "MatRef::new");
    assert_refused(MatRef::new(&[1.0; 4], 2, 3, true), "MatRef::new with too few values");
    // An empty A and B whose product C would have 2^64 elements.
    let a = MatRef::new(&[], WRAPS, 0, false).unwrap();
    let b = MatRef::new(&[], 0, WRAPS, false).unwrap();
    assert_too_large(matmul::gemm(a, b, &mut [], false), "gemm");
    assert_too_large(matmul::gemm_naive(a, b, &mut []), "gemm_naive");
    assert_too_large(matmul::gemm_epilogue(a, b, &mut [], Epilogue::default()), "gemm_epilogue");
    let packed = PackedMatrix::new(b).unwrap();
    assert_too_large(matmul::gemm_packed(a, &packed, &mut [], Epilogue::default()), "gemm_packed");
    // Sizes that do not fit: inner dimensions, output, bias.
    let (a, b) = (MatRef::new(&[1.0; 6], 2, 3, false).unwrap(), MatRef::new(&[1.0; 8], 4, 2, false).unwrap());
    assert_refused(matmul::gemm(a, b, &mut [0.0; 4], false), "gemm with different inner dimensions");
    let b = MatRef::new(&[1.0; 6], 3, 2, false).unwrap();
    assert_refused(matmul::gemm(a, b, &mut [0.0; 3], false), "gemm into a short output");
    let epilogue = Epilogue { bias: Some(&[1.0; 3]), relu: false };
    assert_refused(matmul::gemm_epilogue(a, b, &mut [0.0; 4], epilogue), "gemm with a wrong bias");

    assert_too_large(matmul::transpose(&[], WRAPS, WRAPS, &mut []), "transpose");
    assert_refused(matmul::transpose(&[1.0; 6], 2, 3, &mut [0.0; 5]), "transpose into a short output");

    let s = Conv2dShape {
        batch: WRAPS,
        in_channels: WRAPS,
        height: 1,
        width: 1,
        out_channels: 1,
        kernel_h: 1,
        kernel_w: 1,
        padding: 0,
    };
    assert_too_large(s.validate(), "Conv2dShape::validate");
    assert_too_large(conv::conv2d(&[], &[], &[0.0], s, &mut []), "conv2d");
    assert_too_large(conv::conv2d_naive(&[], &[], &[0.0], s, &mut []), "conv2d_naive");
    assert_too_large(conv::conv2d_backward_input(&[], &[], s, &mut []), "conv2d_backward_input");
    assert_too_large(conv::conv2d_backward_weight(&[], &[], s, &mut []), "conv2d_backward_weight");
    let padded = Conv2dShape { padding: usize::MAX / 2, ..s };
    assert_too_large(padded.validate(), "padding that overflows");
    assert_too_large(conv::max_pool2d(&[], WRAPS, WRAPS, 1, &mut []), "max_pool2d");
    assert_too_large(conv::max_pool2d_backward(&[], &[], WRAPS, WRAPS, 1, &mut []), "max_pool2d_backward");
    assert_too_large(conv::channel_sums(&[], WRAPS, WRAPS, &mut []), "channel_sums");
}

/// The old reproduction: `[0, k]` times `[n, k]ᵀ` with n >= 64 (the sparse path's width).
#[test]
fn cpu_empty_batch_through_a_wide_linear_layer() {
    let x = Tensor::zeros(&[0, 300], &Device::Cpu).unwrap();
    let w = Tensor::variable(vec![0.5; 100 * 300], &[100, 300], &Device::Cpu).unwrap();
    let b = Tensor::variable(vec![0.0; 100], &[100], &Device::Cpu).unwrap();
    let y = x.linear(&w, &b, true).unwrap();
    assert_eq!(y.shape(), [0, 100]);
}

/// Every op on an empty batch, forward and backward, on every device: empty results of the
/// right shapes and zero gradients, as PyTorch gives.
#[test]
fn empty_batches_through_every_op_on_every_device() {
    for device in devices() {
        empty_batch_ops(&device);
    }
}

fn empty_batch_ops(device: &Device) {
    let on = |what: &str| format!("{what} on {device:?}");
    let variable = |shape: &[usize]| {
        let len = shape.iter().product();
        Tensor::variable(Rng::new(3).uniform_vec(len, -1.0, 1.0), shape, device).unwrap()
    };
    let (x, w, b) = (variable(&[0, 70]), variable(&[65, 70]), variable(&[65]));
    let y = x.linear(&w, &b, true).unwrap();
    assert_eq!(y.shape(), [0, 65], "{}", on("linear"));
    for (ta, tb, a, b) in
        [(false, false, [0, 70], [70, 65]), (true, false, [70, 0], [70, 65]), (false, true, [0, 70], [65, 70])]
    {
        let product = variable(&a).matmul_t(&variable(&b), ta, tb).unwrap();
        assert_eq!(product.shape(), [0, 65], "{}", on("matmul"));
    }
    // An empty depth: a [3, 0] · [0, 4] product is all zeros, and a layer gives its bias.
    let zeros = variable(&[3, 0]).matmul(&variable(&[0, 4])).unwrap();
    assert_eq!(zeros.to_vec().unwrap(), vec![0.0; 12], "{}", on("matmul of depth 0"));
    let small_bias = Tensor::from_vec(vec![1.0, -2.0, 3.0, -4.0], &[4], device).unwrap();
    let biased = variable(&[3, 0]).linear(&variable(&[4, 0]), &small_bias, true).unwrap();
    assert_eq!(biased.to_vec().unwrap(), [1.0, 0.0, 3.0, 0.0].repeat(3), "{}", on("linear of depth 0"));

    let probabilities = y.softmax().unwrap();
    assert_eq!(probabilities.shape(), [0, 65], "{}", on("softmax"));
    assert_eq!(y.sum_rows().unwrap().to_vec().unwrap(), vec![0.0; 65], "{}", on("sum_rows"));
    assert_eq!(y.sum().unwrap().to_scalar().unwrap(), 0.0, "{}", on("sum"));
    assert!(y.mean().unwrap().to_scalar().is_ok(), "{}", on("mean"));
    assert_eq!(y.argmax().unwrap(), Vec::<usize>::new(), "{}", on("argmax"));
    let h = y.add_bias(&b).unwrap().relu().unwrap().scale(2.0).unwrap();
    assert_eq!(h.add(&h).unwrap().mul(&h).unwrap().shape(), [0, 65], "{}", on("elementwise ops"));
    assert_eq!(h.dropout(0.5, &mut Rng::new(1)).unwrap().shape(), [0, 65], "{}", on("dropout"));

    let labels = Tensor::from_vec(vec![], &[0], device).unwrap();
    let loss = y.cross_entropy(&labels).unwrap();
    let gradients = loss.backward().unwrap();
    for (name, parameter) in [("weight", &w), ("bias", &b)] {
        let gradient = gradients.get(parameter).map(|g| g.to_vec().unwrap());
        let gradient = gradient.unwrap_or_else(|| vec![0.0; parameter.len()]);
        assert!(gradient.iter().all(|&g| g == 0.0), "{}: the {name} gradient of an empty batch", on("linear"));
    }

    let images = variable(&[0, 2, 9, 7]);
    let (kernel, kernel_bias) = (variable(&[3, 2, 3, 3]), variable(&[3]));
    let features = images.conv2d(&kernel, &kernel_bias, 1).unwrap();
    assert_eq!(features.shape(), [0, 3, 9, 7], "{}", on("conv2d"));
    let pooled = features.max_pool2d().unwrap();
    assert_eq!(pooled.shape(), [0, 3, 4, 3], "{}", on("max_pool2d"));
    let gradients = pooled.sum().unwrap().backward().unwrap();
    let kernel_gradient = gradients.get(&kernel).map(|g| g.to_vec().unwrap()).unwrap_or_default();
    assert!(kernel_gradient.iter().all(|&g| g == 0.0), "{}", on("conv2d backward of an empty batch"));
}

/// The sizes around every block edge of the CPU kernels: the micro-tile (6 x 16), the sparse
/// group (64), the depth block (128), the row block (144), and 0 and 1.
const EDGES: [usize; 14] = [0, 1, 2, 5, 6, 7, 15, 16, 17, 63, 64, 65, 129, 145];

/// A random size, mostly from the edges, sometimes anything below 200.
fn edge_size(rng: &mut Rng) -> usize {
    if rng.uniform(0.0, 1.0) < 0.8 {
        EDGES[(rng.uniform(0.0, EDGES.len() as f32) as usize).min(EDGES.len() - 1)]
    } else {
        rng.uniform(0.0, 200.0) as usize
    }
}

/// Random values, about `zeros` of them exactly zero (the sparse path).
fn values(len: usize, zeros: f32, rng: &mut Rng) -> Vec<f32> {
    (0..len).map(|_| if rng.uniform(0.0, 1.0) < zeros { 0.0 } else { rng.uniform(-1.0, 1.0) }).collect()
}

fn assert_close(got: &[f32], expected: &[f32], depth: usize, what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    let tolerance = 1e-5 * (depth as f32 + 1.0).sqrt() * 4.0 + 1e-6;
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        assert!((g - e).abs() <= tolerance * (1.0 + e.abs()), "{what} [{i}]: {g} vs {e}");
    }
}

/// Every strided form of every product (both transposes, overwrite and accumulate, bias and
/// relu, packed weights, dense and mostly-zero inputs) against the naive triple loop.
#[test]
fn cpu_matmul_matches_the_naive_product_on_random_edge_shapes() {
    let mut rng = Rng::new(31);
    for case in 0..120 {
        let (m, k, n) = (edge_size(&mut rng), edge_size(&mut rng), edge_size(&mut rng));
        let (ta, tb) = (case % 2 == 1, case / 2 % 2 == 1);
        let zeros = [0.0, 0.7][case / 4 % 2];
        let what = format!("{m}x{k}x{n} ta={ta} tb={tb} zeros={zeros}");
        let (a_data, b_data) = (values(m * k, zeros, &mut rng), values(k * n, 0.0, &mut rng));
        let (a, b) = (MatRef::new(&a_data, m, k, ta).unwrap(), MatRef::new(&b_data, k, n, tb).unwrap());
        let mut expected = vec![f32::NAN; m * n];
        matmul::gemm_naive(a, b, &mut expected).unwrap();

        let start = values(m * n, 0.0, &mut rng);
        let mut accumulated = start.clone();
        matmul::gemm(a, b, &mut accumulated, true).unwrap();
        let sums: Vec<f32> = expected.iter().zip(&start).map(|(e, s)| e + s).collect();
        assert_close(&accumulated, &sums, k, &format!("{what} accumulate"));

        let bias = values(n, 0.0, &mut rng);
        let epilogue = Epilogue { bias: Some(&bias), relu: true };
        let rectified: Vec<f32> =
            expected.chunks(n.max(1)).flat_map(|row| row.iter().zip(&bias).map(|(v, b)| (v + b).max(0.0))).collect();
        let mut got = vec![f32::NAN; m * n];
        matmul::gemm_epilogue(a, b, &mut got, epilogue).unwrap();
        assert_close(&got, &rectified, k, &format!("{what} bias + relu"));
        if !ta {
            let mut packed = vec![f32::NAN; m * n];
            matmul::gemm_packed(a, &PackedMatrix::new(b).unwrap(), &mut packed, epilogue).unwrap();
            assert_eq!(bits(&packed), bits(&got), "{what}: packed weights give the same bits");
        }
    }
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| (v + 0.0).to_bits()).collect()
}

#[test]
fn cpu_transpose_matches_the_definition_on_random_edge_shapes() {
    let mut rng = Rng::new(37);
    for _ in 0..60 {
        let (rows, cols) = (edge_size(&mut rng), edge_size(&mut rng));
        let src = values(rows * cols, 0.0, &mut rng);
        let mut dst = vec![f32::NAN; rows * cols];
        matmul::transpose(&src, rows, cols, &mut dst).unwrap();
        for (r, c) in (0..rows).flat_map(|r| (0..cols).map(move |c| (r, c))) {
            assert_eq!(dst[c * rows + r], src[r * cols + c], "{rows}x{cols} at ({r}, {c})");
        }
    }
}

/// Random small convolutions (one channel 3x3 included, for the narrow kernels) and pooling
/// against their definitions, the backward products through the adjoint identity.
#[test]
fn cpu_convolution_and_pooling_match_their_definitions_on_random_shapes() {
    let mut rng = Rng::new(41);
    let mut pick =
        |choices: &[usize]| choices[(rng.uniform(0.0, choices.len() as f32) as usize).min(choices.len() - 1)];
    let mut shapes = Vec::new();
    for _ in 0..40 {
        let kernel = pick(&[1, 2, 3, 5]);
        let s = Conv2dShape {
            batch: pick(&[0, 1, 2, 9]),
            in_channels: pick(&[1, 1, 2, 8]),
            height: pick(&[1, 4, 7, 12]),
            width: pick(&[1, 3, 8, 13]),
            out_channels: pick(&[1, 5, 16, 17]),
            kernel_h: kernel,
            kernel_w: pick(&[kernel, 3]),
            padding: pick(&[0, 1, 2]),
        };
        shapes.push(s);
    }
    let mut rng = Rng::new(43);
    for s in shapes {
        let x = values(s.input_len(), 0.5, &mut rng);
        let [w, b] = [s.weight_len(), s.out_channels].map(|len| values(len, 0.0, &mut rng));
        let (mut fast, mut naive) = (vec![f32::NAN; s.output_len()], vec![f32::NAN; s.output_len()]);
        conv::conv2d(&x, &w, &b, s, &mut fast).unwrap();
        conv::conv2d_naive(&x, &w, &b, s, &mut naive).unwrap();
        assert_close(&fast, &naive, s.in_channels * s.kernel_h * s.kernel_w, &format!("conv2d {s:?}"));

        let dy = values(s.output_len(), 0.6, &mut rng);
        let (mut dx, mut dw) = (vec![f32::NAN; x.len()], vec![f32::NAN; w.len()]);
        conv::conv2d_backward_input(&dy, &w, s, &mut dx).unwrap();
        conv::conv2d_backward_weight(&x, &dy, s, &mut dw).unwrap();
        let mut y = vec![0.0; s.output_len()];
        conv::conv2d_naive(&x, &w, &vec![0.0; s.out_channels], s, &mut y).unwrap();
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>();
        let reference = dot(&dy, &y);
        assert!((dot(&dx, &x) - reference).abs() < 1e-4 * (1.0 + reference.abs()), "{s:?} input gradient");
        assert!((dot(&dw, &w) - reference).abs() < 1e-4 * (1.0 + reference.abs()), "{s:?} weight gradient");

        let planes = s.batch * s.in_channels;
        let (oh, ow) = (s.height / 2, s.width / 2);
        let mut pooled = vec![f32::NAN; planes * oh * ow];
        conv::max_pool2d(&x, planes, s.height, s.width, &mut pooled).unwrap();
        for (index, &got) in pooled.iter().enumerate() {
            let (plane, oy, ox) = (index / (oh * ow), index / ow % oh, index % ow);
            let at = |y: usize, x_: usize| x[(plane * s.height + 2 * oy + y) * s.width + 2 * ox + x_];
            let expected = at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
            assert_eq!(got, expected, "max_pool2d {planes}x{}x{} at {index}", s.height, s.width);
        }
    }
}
