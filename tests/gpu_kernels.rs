//! Every GPU kernel against its CPU oracle (`engine::backend::cpu`) on random data, with shaders
//! built both without and with naga's runtime bounds checks: the two builds must agree with the
//! CPU and with each other, so an out-of-range access shows up here, on the CPU driver
//! (lavapipe), not on a real GPU. Launcher outputs are NaN-filled before each kernel runs, so an
//! element a kernel fails to write cannot pass.
//!
//! Without an adapter the tests say so and skip; with `ENGINE_REQUIRE_GPU=1` they fail instead.
#![cfg(feature = "gpu")]

#[path = "common/gpu.rs"]
mod gpu;

use engine::backend::cpu::{self, matmul::MatRef};
use engine::backend::gpu::ops::{self, Epilogue, GatherSpec, MatmulShape, MatmulTile};
use engine::backend::gpu::{GpuBuffer, GpuContext, GpuError, Kernel};
use engine::backend::{AdamStep, ChannelAffine, SgdStep};
use engine::rng::Rng;
use gpu::{assert_close, compare_builds, contexts, download, on_both, random, upload, wrapped_contexts};

fn cpu_matmul(a: &[f32], b: &[f32], s: MatmulShape) -> Vec<f32> {
    let mut c = vec![0.0; s.m * s.n];
    cpu::matmul::gemm(
        MatRef::new(a, s.m, s.k, s.trans_a).unwrap(),
        MatRef::new(b, s.k, s.n, s.trans_b).unwrap(),
        &mut c,
        false,
    )
    .unwrap();
    c
}

/// `ops::matmul` (which picks its kernel) and each kernel of `tiles` against the CPU on random
/// operands, with epilogue `case`; returns their outputs.
fn check_matmul(
    ctx: &GpuContext,
    rng: &mut Rng,
    shape: MatmulShape,
    case: usize,
    tiles: &[MatmulTile],
) -> Vec<Vec<f32>> {
    let MatmulShape { m, k, n, .. } = shape;
    let (a, b) = (random(m * k, rng, -1.0, 1.0), random(k * n, rng, -1.0, 1.0));
    let bias = random(n, rng, -1.0, 1.0);
    // A relu output to mask by: positive, negative and exactly zero elements.
    let mask: Vec<f32> = random(m * n, rng, -1.0, 1.0).iter().map(|&v| if v.abs() < 0.2 { 0.0 } else { v }).collect();
    let cases = [
        (false, false, false),
        (true, false, false),
        (true, true, false),
        (false, true, false),
        (false, false, true),
        (true, true, true),
    ];
    let (with_bias, relu, masked) = cases[case % cases.len()];

    let mut want = cpu_matmul(&a, &b, shape);
    // A bound on the rounding error of each element: the same product on absolute values.
    let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
    let mut bound = cpu_matmul(&abs(&a), &abs(&b), shape);
    if with_bias {
        let mut biased = vec![0.0; want.len()];
        cpu::add_bias(&want, &bias, &mut biased);
        want = biased;
        bound.iter_mut().enumerate().for_each(|(i, v)| *v += bias[i % n].abs());
    }
    if relu {
        want.iter_mut().for_each(|v| *v = v.max(0.0));
    }
    if masked {
        want.iter_mut().zip(&mask).for_each(|(v, &keep)| *v = if keep > 0.0 { *v } else { 0.0 });
    }

    let (ga, gb, gbias, gmask) = (upload(ctx, &a), upload(ctx, &b), upload(ctx, &bias), upload(ctx, &mask));
    let epilogue = Epilogue { bias: with_bias.then_some(&gbias), relu, relu_mask: masked.then_some(&gmask) };
    let mut outputs = Vec::new();
    for tile in std::iter::once(None).chain(tiles.iter().copied().map(Some)) {
        let got = match tile {
            None => ops::matmul(ctx, &ga, &gb, shape, epilogue),
            Some(tile) => ops::matmul_by(ctx, tile, &ga, &gb, shape, epilogue),
        };
        let kind = tile.map_or("chosen".to_string(), |tile| format!("{tile:?}"));
        let got = download(&got.expect("matmul"));
        assert_eq!(got.len(), m * n);
        for (i, ((&g, &w), &e)) in got.iter().zip(&want).zip(&bound).enumerate() {
            let tol = 1e-5 * e + 1e-6;
            assert!(
                (g - w).abs() <= tol,
                "{kind} matmul {shape:?} bias {with_bias} relu {relu} masked {masked}: C[{}, {}] = {g}, want {w}",
                i / n,
                i % n
            );
        }
        outputs.push(got);
    }
    outputs
}

/// The product `m x k x n` in its four transpose forms, numbered.
fn every_transpose(m: usize, k: usize, n: usize) -> impl Iterator<Item = (usize, MatmulShape)> {
    let forms = [(false, false), (false, true), (true, false), (true, true)];
    forms.into_iter().enumerate().map(move |(t, (ta, tb))| (t, MatmulShape::new(m, k, n).transposed(ta, tb)))
}

#[test]
fn matmul_matches_cpu_for_every_shape_and_transpose() {
    // 1x1x1; under, at and over the 64 and 128 tiles; the MLP's shapes; M >= 500; a long K; an
    // output large enough for `matmul` to choose the wide kernel by itself (2049x2050). The wide
    // kernel reads vec4s where the contiguous dimensions (k, m of a transposed A, n of a plain
    // B) are multiples of 4: all of them in 132x36x260 and 4x4x4, some in others, none in 2x3x600.
    let shapes = [
        (132, 36, 260),
        (4, 4, 4),
        (127, 9, 255),
        (1025, 8, 1030),
        (2049, 8, 2050),
        (1, 1, 1),
        (3, 5, 2),
        (63, 17, 63),
        (64, 64, 64),
        (65, 31, 129),
        (128, 784, 512),
        (517, 96, 130),
        (7, 4096, 9),
        (2, 3, 600),
    ];
    on_both("matmul", |ctx| {
        let mut rng = Rng::new(1);
        let mut outputs = Vec::new();
        for (i, &(m, k, n)) in shapes.iter().enumerate() {
            for (t, shape) in every_transpose(m, k, n) {
                let tiles: &[MatmulTile] =
                    if m * k * n <= 1 << 20 { &[MatmulTile::Wide, MatmulTile::Naive] } else { &[MatmulTile::Wide] };
                outputs.extend(check_matmul(ctx, &mut rng, shape, i + t, tiles));
            }
        }
        outputs
    });
}

#[test]
fn split_k_matches_cpu_and_the_one_pass_kernel() {
    // Few tiles and a k that is not a slice multiple, in 2, 3, 7 and more runs than k has
    // slices (which become one slice a run), every epilogue and transpose; one run is the
    // one-pass kernel. `ops::matmul` splits the long products itself.
    let shapes = [(5, 1100, 3), (70, 1031, 65), (128, 2050, 129), (1, 33, 1)];
    let tiles = [MatmulTile::Tiled, MatmulTile::SplitK(2), MatmulTile::SplitK(3), MatmulTile::SplitK(7)];
    on_both("split_k", |ctx| {
        let mut rng = Rng::new(12);
        let mut outputs = Vec::new();
        for (i, &(m, k, n)) in shapes.iter().enumerate() {
            for (t, shape) in every_transpose(m, k, n) {
                outputs.extend(check_matmul(ctx, &mut rng, shape, i * 4 + t, &tiles));
            }
        }
        let shape = MatmulShape::new(3, 40, 2);
        outputs.extend(check_matmul(ctx, &mut rng, shape, 5, &[MatmulTile::SplitK(100), MatmulTile::SplitK(0)]));
        outputs
    });
    // The default MLP's products (k = 784 and 512) stay one pass; long ones with few tiles split.
    assert_eq!(ops::split_parts(MatmulShape::new(128, 784, 512)), 1);
    assert_eq!(ops::split_parts(MatmulShape::new(128, 512, 512)), 1);
    assert_eq!(ops::split_parts(MatmulShape::new(128, 2048, 512)), 8);
    assert_eq!(ops::split_parts(MatmulShape::new(7, 4096, 9)), 16);
    assert_eq!(ops::split_parts(MatmulShape::new(512, 4096, 512)), 1);
}

#[test]
fn matmul_row_sums_match_the_cpu_product_and_sums() {
    // A weight gradient dzᵀ·x and its bias gradient: under, at and over the tiles, a batch (k)
    // that is not a slice multiple, both forms of A, and an output large enough for the wide
    // kernel (at least 256 of its tiles).
    let shapes = [(1, 1, 1), (10, 128, 64), (63, 17, 65), (130, 37, 129), (512, 100, 785), (2049, 5, 2050), (7, 0, 9)];
    on_both("matmul_row_sums", |ctx| {
        let mut rng = Rng::new(8);
        let mut outputs = Vec::new();
        for (m, k, n) in shapes {
            for trans_a in [true, false] {
                let shape = MatmulShape::new(m, k, n).transposed(trans_a, false);
                let (a, b) = (random(m * k, &mut rng, -1.0, 1.0), random(k * n, &mut rng, -1.0, 1.0));
                let (product, sums) = ops::matmul_row_sums(ctx, &upload(ctx, &a), &upload(ctx, &b), shape).unwrap();
                let at = |i: usize, q: usize| if trans_a { a[q * m + i] } else { a[i * k + q] };
                let want: Vec<f32> = (0..m).map(|i| (0..k).map(|q| at(i, q)).sum()).collect();
                let what = format!("{m}x{k}x{n} trans_a {trans_a}");
                assert_close(&format!("row sums {what}"), &download(&sums), &want, 1e-5, 1e-5);
                assert_close(&format!("product {what}"), &download(&product), &cpu_matmul(&a, &b, shape), 1e-4, 1e-5);
                outputs.extend([download(&product), download(&sums)]);
            }
        }
        let (a, b) = (upload(ctx, &[1.0; 6]), upload(ctx, &[]));
        let refused = ops::matmul_row_sums(ctx, &a, &b, MatmulShape::new(2, 3, 0));
        assert!(matches!(refused, Err(GpuError::Shape { .. })), "no columns to carry the sums");
        outputs
    });
}

#[test]
fn matmul_with_empty_dimensions() {
    on_both("matmul_empty", |ctx| {
        let a = upload(ctx, &[]);
        let b = upload(ctx, &[1.0, 2.0, 3.0]);
        // k = 0: every output is the epilogue of zero.
        let bias = upload(ctx, &[1.0, -2.0, 0.5]);
        let shape = MatmulShape::new(2, 0, 3);
        let empty_b = upload(ctx, &[]);
        let c =
            ops::matmul(ctx, &a, &empty_b, shape, Epilogue { bias: Some(&bias), relu: true, relu_mask: None }).unwrap();
        assert_eq!(download(&c), [1.0, 0.0, 0.5, 1.0, 0.0, 0.5]);
        // m = 0: an empty result.
        let c = ops::matmul(ctx, &a, &b, MatmulShape::new(0, 1, 3), Epilogue::default()).unwrap();
        assert!(c.is_empty());
        vec![]
    });
}

/// A binary op's name, its GPU result, and its CPU formula.
type BinaryCase = (&'static str, GpuBuffer, fn(f32, f32) -> f32);

#[test]
fn elementwise_ops_match_cpu() {
    on_both("elementwise", |ctx| {
        let mut rng = Rng::new(2);
        let mut outputs = Vec::new();
        for n in [1, 255, 256, 257, 10_000] {
            let (a, b) = (random(n, &mut rng, -2.0, 2.0), random(n, &mut rng, -2.0, 2.0));
            let (ga, gb) = (upload(ctx, &a), upload(ctx, &b));
            let mut want = vec![0.0; n];
            let cases: [BinaryCase; 3] = [
                ("add", ops::add(ctx, &ga, &gb).unwrap(), |x, y| x + y),
                ("mul", ops::mul(ctx, &ga, &gb).unwrap(), |x, y| x * y),
                ("relu_mask", ops::relu_mask(ctx, &ga, &gb).unwrap(), |x, g| if x > 0.0 { g } else { 0.0 }),
            ];
            for (name, got, f) in cases {
                cpu::zip_map(&a, &b, &mut want, f);
                let got = download(&got);
                assert_close(name, &got, &want, 0.0, 0.0);
                outputs.push(got);
            }
            let got = download(&ops::scale(ctx, &ga, -0.37).unwrap());
            cpu::map(&a, &mut want, |x| x * -0.37);
            assert_close("scale", &got, &want, 0.0, 0.0);
            outputs.push(got);
            let got = download(&ops::relu(ctx, &ga).unwrap());
            cpu::map(&a, &mut want, |x| x.max(0.0));
            assert_close("relu", &got, &want, 0.0, 0.0);
            outputs.push(got);
            let got = download(&ops::fill(ctx, n, 2.5).unwrap());
            assert!(got.iter().all(|&v| v == 2.5));
            let acc = upload(ctx, &b);
            ops::axpy(ctx, &acc, &ga, 0.25, false).unwrap();
            ops::axpy(ctx, &acc, &ga, -2.0, false).unwrap();
            let mut want = b.clone();
            cpu::update(&mut want, &a, |acc, x| acc + 0.25 * x);
            cpu::update(&mut want, &a, |acc, x| acc + -2.0 * x);
            let got = download(&acc);
            assert_close("axpy", &got, &want, 1e-6, 1e-6);
            // A reset stores the scaled operand, whatever the accumulator held.
            ops::axpy(ctx, &acc, &upload(ctx, &vec![f32::NAN; n]), 1.0, false).unwrap();
            ops::axpy(ctx, &acc, &ga, 0.5, true).unwrap();
            let reset = download(&acc);
            assert_eq!(reset, a.iter().map(|x| 0.5 * x).collect::<Vec<_>>());
            outputs.extend([got, reset]);
        }
        outputs
    });
}

#[test]
fn add_bias_matches_cpu() {
    on_both("add_bias", |ctx| {
        let mut rng = Rng::new(3);
        let mut outputs = Vec::new();
        for (rows, cols) in [(1, 1), (7, 3), (128, 512), (33, 10)] {
            let (x, bias) = (random(rows * cols, &mut rng, -1.0, 1.0), random(cols, &mut rng, -1.0, 1.0));
            let (gx, gbias) = (upload(ctx, &x), upload(ctx, &bias));
            let mut want = vec![0.0; x.len()];
            cpu::add_bias(&x, &bias, &mut want);
            let got = download(&ops::add_bias(ctx, &gx, &gbias, rows, cols).unwrap());
            assert_close("add_bias", &got, &want, 0.0, 0.0);
            outputs.push(got);
        }
        outputs
    });
}

#[test]
fn column_sums_match_cpu() {
    on_both("sum_rows", |ctx| {
        let mut rng = Rng::new(4);
        let mut outputs = Vec::new();
        for (rows, cols) in [(1, 1), (128, 512), (1000, 10), (3, 70), (5, 0)] {
            let x = random(rows * cols, &mut rng, -1.0, 1.0);
            let mut want = vec![0.0; cols];
            cpu::sum_rows(&x, rows, cols, &mut want);
            let got = download(&ops::sum_rows(ctx, &upload(ctx, &x), rows, cols).unwrap());
            assert_close("sum_rows", &got, &want, 1e-4, 1e-5);
            outputs.push(got);
        }
        outputs
    });
}

#[test]
fn sum_and_mean_match_cpu_and_are_deterministic() {
    on_both("sum", |ctx| {
        let mut rng = Rng::new(5);
        let mut outputs = Vec::new();
        // One pass, the chunk edges, two passes, three passes.
        for n in [0, 1, 4095, 4096, 4097, 1_000_000, 4096 * 4096 + 3] {
            let x = random(n, &mut rng, -1.0, 1.0);
            let gx = upload(ctx, &x);
            let want = cpu::sum(&x);
            let got = download(&ops::sum(ctx, &gx).unwrap());
            let abs_sum: f32 = x.iter().map(|v| v.abs()).sum();
            assert_close(&format!("sum of {n}"), &got, &[want], 1e-6 * abs_sum + 1e-6, 0.0);
            let again = download(&ops::sum(ctx, &gx).unwrap());
            assert_eq!(got[0].to_bits(), again[0].to_bits(), "sum of {n} is not deterministic");
            let mean = download(&ops::mean(ctx, &gx).unwrap());
            assert_close("mean", &mean, &[want / n.max(1) as f32], 1e-6 * abs_sum / n.max(1) as f32 + 1e-7, 1e-5);
            outputs.push(got);
        }
        outputs
    });
}

#[test]
fn softmax_forward_and_backward_match_cpu() {
    on_both("softmax", |ctx| {
        let mut rng = Rng::new(6);
        let mut outputs = Vec::new();
        // Rows of 1, 10 and 5000 columns, values of ordinary size and around 1e4.
        for (rows, cols, spread) in [(4, 1, 1.0), (33, 10, 3.0), (3, 5000, 5.0), (5, 10, 1e4), (2, 700, 1e4)] {
            let x = random(rows * cols, &mut rng, -spread, spread);
            let mut want = vec![0.0; x.len()];
            cpu::softmax_rows(&x, cols, &mut want);
            let gy = ops::softmax_rows(ctx, &upload(ctx, &x), rows, cols).unwrap();
            let y = download(&gy);
            assert!(y.iter().all(|v| v.is_finite()), "softmax of values up to {spread} is not finite");
            assert_close("softmax", &y, &want, 1e-6, 1e-4);

            let dy = random(rows * cols, &mut rng, -1.0, 1.0);
            let mut want_dx = vec![0.0; x.len()];
            cpu::softmax_rows_backward(&want, &dy, cols, &mut want_dx);
            let dx = download(&ops::softmax_rows_backward(ctx, &gy, &upload(ctx, &dy), rows, cols).unwrap());
            assert_close("softmax backward", &dx, &want_dx, 1e-5, 1e-3);
            outputs.push(y);
            outputs.push(dx);
        }
        outputs
    });
}

#[test]
fn grids_wrap_into_a_second_dimension() {
    // Contexts whose grids wrap past 5 workgroups: every launcher then dispatches a 2-D grid
    // with spare workgroups at the end, which must do nothing.
    if contexts().is_none() {
        return;
    }
    compare_builds("wrapped grids", &wrapped_contexts(5), |ctx| {
        let mut rng = Rng::new(7);
        let (rows, cols) = (37, 11);
        let x = random(rows * cols, &mut rng, -3.0, 3.0);
        let gx = upload(ctx, &x);
        let mut want = vec![0.0; x.len()];
        cpu::softmax_rows(&x, cols, &mut want);
        let y = download(&ops::softmax_rows(ctx, &gx, rows, cols).unwrap());
        assert_close("softmax", &y, &want, 1e-6, 1e-4);
        let arg = download(&ops::argmax_rows(ctx, &gx, rows, cols).unwrap());
        let want_arg: Vec<f32> = cpu::argmax_rows(&x, cols).into_iter().map(|i| i as f32).collect();
        assert_eq!(arg, want_arg);
        let labels: Vec<f32> = (0..rows).map(|_| rng.below(cols) as f32).collect();
        let losses = download(&ops::cross_entropy_rows(ctx, &gx, &upload(ctx, &labels), rows, cols).unwrap());
        assert_close("cross_entropy", &losses, &cpu::cross_entropy_rows(&x, &labels, cols), 1e-5, 1e-5);
        let mut want_sums = vec![0.0; cols];
        cpu::sum_rows(&x, rows, cols, &mut want_sums);
        let sums = download(&ops::sum_rows(ctx, &gx, rows, cols).unwrap());
        assert_close("sum_rows", &sums, &want_sums, 1e-5, 1e-5);
        let doubled = download(&ops::scale(ctx, &gx, 2.0).unwrap());
        assert_close("scale", &doubled, &x.iter().map(|v| v * 2.0).collect::<Vec<_>>(), 0.0, 0.0);
        let big = random(30_000, &mut rng, -1.0, 1.0);
        let total = download(&ops::sum(ctx, &upload(ctx, &big)).unwrap());
        assert_close("sum", &total, &[cpu::sum(&big)], 1e-3, 0.0);
        let mut outputs = vec![y, arg, losses, sums, doubled, total];
        for (i, &(m, k, n)) in [(200, 20, 150), (17, 9, 400)].iter().enumerate() {
            let shape = MatmulShape::new(m, k, n).transposed(i == 1, i == 0);
            outputs.extend(check_matmul(ctx, &mut rng, shape, i, &[MatmulTile::Wide, MatmulTile::Naive]));
        }
        outputs
    });
}

#[test]
fn elementwise_grid_wraps_past_65535_workgroups() {
    on_both("large elementwise", |ctx| {
        let n = 65_536 * 256 + 300;
        let x: Vec<f32> = (0..n).map(|i| (i % 1000) as f32).collect();
        let got = download(&ops::scale(ctx, &upload(ctx, &x), 2.0).unwrap());
        for (i, (&g, &v)) in got.iter().zip(&x).enumerate() {
            assert_eq!(g, v * 2.0, "element {i}");
        }
        vec![]
    });
}

#[test]
fn cross_entropy_forward_and_backward_match_cpu() {
    on_both("cross_entropy", |ctx| {
        let mut rng = Rng::new(8);
        let mut outputs = Vec::new();
        for (rows, cols, spread) in [(1, 1, 1.0), (128, 10, 4.0), (3, 5000, 3.0), (16, 10, 1e4)] {
            let logits = random(rows * cols, &mut rng, -spread, spread);
            let labels: Vec<f32> = (0..rows).map(|_| rng.below(cols) as f32).collect();
            let (gl, gy) = (upload(ctx, &logits), upload(ctx, &labels));

            let want_rows = cpu::cross_entropy_rows(&logits, &labels, cols);
            let got_rows = download(&ops::cross_entropy_rows(ctx, &gl, &gy, rows, cols).unwrap());
            let atol = 1e-5 * (1.0 + spread);
            assert_close("cross_entropy rows", &got_rows, &want_rows, atol, 1e-5);
            let want_mean = want_rows.iter().map(|&l| l as f64).sum::<f64>() / rows as f64;
            let got_mean = download(&ops::cross_entropy_mean(ctx, &gl, &gy, rows, cols).unwrap());
            assert_close("cross_entropy mean", &got_mean, &[want_mean as f32], atol, 1e-5);

            let scale = 0.7 / rows as f32;
            let mut want_dx = vec![0.0; logits.len()];
            cpu::cross_entropy_backward(&logits, &labels, cols, scale, &mut want_dx);
            let dx = download(&ops::cross_entropy_backward(ctx, &gl, &gy, rows, cols, scale).unwrap());
            assert_close("cross_entropy backward", &dx, &want_dx, 1e-6, 1e-4);
            outputs.extend([got_rows, got_mean, dx]);
        }
        // A label that is no class index poisons its row instead of reading out of bounds.
        let gl = upload(ctx, &[0.0, 1.0, 2.0, 0.5, 0.5, 0.5]);
        let gy = upload(ctx, &[3.0, 1.0]);
        let rows = download(&ops::cross_entropy_rows(ctx, &gl, &gy, 2, 3).unwrap());
        assert!(rows[0].is_nan() && rows[1].is_finite());
        let dx = download(&ops::cross_entropy_backward(ctx, &gl, &gy, 2, 3, 1.0).unwrap());
        assert!(dx[..3].iter().all(|v| v.is_nan()) && dx[3..].iter().all(|v| v.is_finite()));
        outputs.push(rows);
        outputs
    });
}

#[test]
fn fused_last_layer_and_loss_match_cpu() {
    on_both("linear_cross_entropy", |ctx| {
        let mut rng = Rng::new(9);
        let mut outputs = Vec::new();
        // One row; two passes of 128 rows, the second partial; k under, at and past a slice of
        // 16; one class, ten, the most.
        for (rows, k, classes) in [(1, 1, 1), (130, 17, 10), (300, 512, 16), (128, 16, 3)] {
            let x = random(rows * k, &mut rng, -1.0, 1.0);
            let w = random(classes * k, &mut rng, -1.0, 1.0);
            let b = random(classes, &mut rng, -1.0, 1.0);
            let mut labels: Vec<f32> = (0..rows).map(|_| rng.below(classes) as f32).collect();
            let mut logits = vec![0.0; rows * classes];
            cpu::add_bias(
                &cpu_matmul(&x, &w, MatmulShape::new(rows, k, classes).transposed(false, true)),
                &b,
                &mut logits,
            );
            let mean = |labels: &[f32]| {
                let rows = cpu::cross_entropy_rows(&logits, labels, classes);
                (rows.iter().map(|&l| l as f64).sum::<f64>() / rows.len() as f64) as f32
            };
            let mut grad = vec![0.0; logits.len()];
            cpu::cross_entropy_backward(&logits, &labels, classes, 1.0 / rows as f32, &mut grad);

            let (gx, gw, gb, gy) = (upload(ctx, &x), upload(ctx, &w), upload(ctx, &b), upload(ctx, &labels));
            let sum = upload(ctx, &[f32::NAN]);
            let fused = |gy: &GpuBuffer, reset| {
                let running = ops::RunningSum { sum: &sum, scale: 3.0, reset };
                ops::linear_cross_entropy(ctx, &gx, &gw, &gb, gy, [rows, k, classes], Some(running)).unwrap()
            };
            let got = fused(&gy, true);
            let tol = 1e-5 * (1.0 + k as f32).sqrt();
            assert_close("logits", &download(&got.logits), &logits, tol, 1e-5);
            assert_close("loss", &download(&got.loss), &[mean(&labels)], tol, 1e-5);
            assert_close("gradient", &download(&got.grad), &grad, 1e-6, 1e-4);
            assert_close("running sum", &download(&sum), &[3.0 * mean(&labels)], tol, 1e-5);
            // Without a reset the next loss adds to the sum.
            let again = fused(&gy, false);
            assert_close("running sum", &download(&sum), &[6.0 * mean(&labels)], tol, 1e-5);
            outputs.extend([got.logits, got.loss, got.grad, again.loss].iter().map(download));
            // A label that is no class index poisons its row's gradient, the loss and the sum.
            labels[rows - 1] = classes as f32;
            let bad = fused(&upload(ctx, &labels), false);
            let bad_grad = download(&bad.grad);
            assert!(bad_grad[(rows - 1) * classes..].iter().all(|v| v.is_nan()));
            assert!(bad_grad[..(rows - 1) * classes].iter().all(|v| v.is_finite()));
            assert!(download(&bad.loss)[0].is_nan() && download(&sum)[0].is_nan());
            outputs.push(bad_grad);
        }
        let (x, w, b, y) =
            (upload(ctx, &[0.0; 17]), upload(ctx, &[0.0; 17]), upload(ctx, &[0.0; 17]), upload(ctx, &[0.0]));
        let too_many = ops::linear_cross_entropy(ctx, &x, &w, &b, &y, [1, 1, 17], None);
        assert!(matches!(too_many, Err(GpuError::Shape { .. })), "17 classes");
        outputs
    });
}

#[test]
fn dropout_draws_the_cpu_mask_bit_for_bit() {
    on_both("dropout", |ctx| {
        let mut rng = Rng::new(21);
        let mut outputs = Vec::new();
        for (n, p, key) in [(1, 0.5, 7u64), (1000, 0.3, 0xdead_beef_0123_4567), (70_001, 0.9, u64::MAX)] {
            let x = random(n, &mut rng, -2.0, 2.0);
            let scale = 1.0 / (1.0 - p);
            let mut want = vec![0.0; n];
            cpu::dropout(&x, key, p, scale, &mut want);
            let got = download(&ops::dropout(ctx, &upload(ctx, &x), key, p, scale).unwrap());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(g.to_bits(), w.to_bits(), "dropout n {n} p {p}: element {i}: gpu {g}, cpu {w}");
            }
            outputs.push(got);
        }
        outputs
    });
}

#[test]
fn argmax_matches_cpu_with_ties() {
    on_both("argmax", |ctx| {
        let mut rng = Rng::new(9);
        let mut outputs = Vec::new();
        for (rows, cols) in [(1, 1), (64, 10), (5, 5000), (9, 300)] {
            // Few distinct values, so that ties are common.
            let x: Vec<f32> = (0..rows * cols).map(|_| rng.below(7) as f32).collect();
            let want: Vec<f32> = cpu::argmax_rows(&x, cols).into_iter().map(|i| i as f32).collect();
            let got = download(&ops::argmax_rows(ctx, &upload(ctx, &x), rows, cols).unwrap());
            assert_eq!(got, want, "argmax of {rows}x{cols}");
            outputs.push(got);
        }
        let x = [f32::NEG_INFINITY, f32::NEG_INFINITY, -1e30, f32::NAN, -1e30, -5.0];
        let got = download(&ops::argmax_rows(ctx, &upload(ctx, &x), 2, 3).unwrap());
        let want: Vec<f32> = cpu::argmax_rows(&x, 3).into_iter().map(|i| i as f32).collect();
        assert_eq!(got, want);
        outputs.push(got);
        outputs
    });
}

#[test]
fn adam_and_adamw_steps_match_cpu() {
    // Nine parameters (sizes that end mid-workgroup): six in one dispatch, then a pair, then one
    // alone. Lavapipe binds the six kernel's 24 buffers, as most GPUs do.
    on_both("adam", |ctx| {
        assert!(ctx.limits().binds(Kernel::AdamSix), "the device binds 24 storage buffers");
        let mut rng = Rng::new(10);
        let mut outputs = Vec::new();
        for (decoupled, weight_decay) in [(false, 0.0), (false, 0.01), (true, 0.05)] {
            let sizes = [1000, 257, 3, 70, 5, 300, 9, 11, 1];
            let mut p: Vec<Vec<f32>> = sizes.iter().map(|&n| random(n, &mut rng, -1.0, 1.0)).collect();
            let mut m: Vec<Vec<f32>> = sizes.iter().map(|&n| vec![0.0; n]).collect();
            let mut v = m.clone();
            let gp: Vec<GpuBuffer> = p.iter().map(|p| upload(ctx, p)).collect();
            let gm: Vec<GpuBuffer> = m.iter().map(|m| upload(ctx, m)).collect();
            let gv: Vec<GpuBuffer> = v.iter().map(|v| upload(ctx, v)).collect();
            let (beta1, beta2) = (0.9f32, 0.999f32);
            for t in 1..=5 {
                let h = AdamStep {
                    lr: 1e-2,
                    beta1,
                    beta2,
                    eps: 1e-8,
                    weight_decay,
                    decoupled,
                    bias_correction1: 1.0 - beta1.powi(t),
                    bias_correction2: 1.0 - beta2.powi(t),
                };
                let g: Vec<Vec<f32>> = sizes.iter().map(|&n| random(n, &mut rng, -1.0, 1.0)).collect();
                let gg: Vec<GpuBuffer> = g.iter().map(|g| upload(ctx, g)).collect();
                for i in 0..sizes.len() {
                    cpu::adam_step(&mut p[i], &g[i], &mut m[i], &mut v[i], h);
                }
                let buffers: Vec<ops::AdamBuffers> = (0..sizes.len())
                    .map(|i| ops::AdamBuffers { param: &gp[i], grad: &gg[i], m: &gm[i], v: &gv[i] })
                    .collect();
                let before = ctx.stats().dispatches;
                ops::adam_steps(ctx, &buffers, h).unwrap();
                assert_eq!(ctx.stats().dispatches - before, 3, "six parameters, a pair, one alone");
            }
            for i in 0..sizes.len() {
                let (got_p, got_m, got_v) = (download(&gp[i]), download(&gm[i]), download(&gv[i]));
                assert_close(&format!("adam p{i}"), &got_p, &p[i], 1e-6, 1e-5);
                assert_close(&format!("adam m{i}"), &got_m, &m[i], 1e-7, 1e-5);
                assert_close(&format!("adam v{i}"), &got_v, &v[i], 1e-8, 1e-5);
                outputs.extend([got_p, got_m, got_v]);
            }
        }
        outputs
    });
}

#[test]
fn sgd_steps_match_cpu() {
    on_both("sgd", |ctx| {
        let mut rng = Rng::new(11);
        let mut outputs = Vec::new();
        for (momentum, weight_decay) in [(0.0, 0.0), (0.9, 0.0), (0.9, 1e-3)] {
            let n = 777;
            let mut p = random(n, &mut rng, -1.0, 1.0);
            let mut buf = vec![0.0; n];
            let (gp, gbuf) = (upload(ctx, &p), upload(ctx, &buf));
            for step in 0..4 {
                let g = random(n, &mut rng, -1.0, 1.0);
                let h = SgdStep { lr: 0.05, momentum, weight_decay, first_step: step == 0 };
                cpu::sgd_step(&mut p, &g, &mut buf, h);
                ops::sgd_step(ctx, &gp, &upload(ctx, &g), &gbuf, h).unwrap();
            }
            let (got_p, got_buf) = (download(&gp), download(&gbuf));
            assert_close("sgd p", &got_p, &p, 1e-6, 1e-5);
            assert_close("sgd momentum", &got_buf, &buf, 1e-6, 1e-5);
            outputs.extend([got_p, got_buf]);
        }
        outputs
    });
}

#[test]
fn gather_normalises_a_batch_of_u8_samples() {
    on_both("gather", |ctx| {
        let mut rng = Rng::new(12);
        let mut outputs = Vec::new();
        // One gray channel of 7 bytes (samples straddle the packed words), and three RGB
        // planes of 5x3 bytes each: every plane ends inside a word.
        let gray = ChannelAffine::from((1.0 / 255.0 / 0.3530, -0.2860 / 0.3530));
        let rgb = ChannelAffine::new(&[(1.0 / 255.0, 0.0), (2.0 / 255.0, -0.5), (-1.0 / 64.0, 3.0)]).unwrap();
        for (features, affine) in [(7, gray), (45, rgb)] {
            let samples = 50;
            let images: Vec<u8> = (0..samples * features).map(|_| rng.below(256) as u8).collect();
            let labels: Vec<u8> = (0..samples).map(|_| rng.below(10) as u8).collect();
            let mut order: Vec<u32> = (0..samples as u32).collect();
            rng.shuffle(&mut order);
            let gimages = GpuBuffer::from_u8_packed(ctx, &images).unwrap();
            let glabels = GpuBuffer::from_u8_packed(ctx, &labels).unwrap();
            let gorder = GpuBuffer::from_u32(ctx, &order).unwrap();
            let (first, batch) = (13, 20);

            let spec = GatherSpec { samples, features, first, batch, affine };
            let (got, got_labels) = ops::gather_batch(ctx, &gimages, &glabels, &gorder, spec).unwrap();
            let (got, got_labels) = (download(&got), download(&got_labels));
            let entries: Vec<usize> = order[first..first + batch].iter().map(|&s| s as usize).collect();
            let (mut want, mut want_labels) = (Vec::new(), Vec::new());
            cpu::gather_batch(&images, &labels, features, &entries, affine, &mut want, &mut want_labels);
            // The same arithmetic as the CPU's: the same bits.
            assert_eq!(bits(&got), bits(&want), "{features} bytes");
            assert_eq!(got_labels, want_labels);
            // Each channel has its own affine: the first byte of each plane of the first row.
            let row = &images[entries[0] * features..];
            for (c, &(scale, shift)) in affine.per_channel().iter().enumerate() {
                let f = c * features / affine.channels();
                assert_eq!(got[f], row[f] as f32 * scale + shift, "channel {c}");
            }
            outputs.extend([got, got_labels]);
        }

        let (samples, features) = (50, 7);
        let images: Vec<u8> = (0..samples * features).map(|_| rng.below(256) as u8).collect();
        let labels: Vec<u8> = (0..samples).map(|_| rng.below(10) as u8).collect();
        let gimages = GpuBuffer::from_u8_packed(ctx, &images).unwrap();
        let glabels = GpuBuffer::from_u8_packed(ctx, &labels).unwrap();
        // A sample index past the dataset gives a NaN row and label, not an out-of-bounds read.
        let bad = GpuBuffer::from_u32(ctx, &[1, 50, 2]).unwrap();
        let spec = GatherSpec { samples, features, first: 0, batch: 3, affine: (1.0, 0.0).into() };
        let (rows, bad_labels) = ops::gather_batch(ctx, &gimages, &glabels, &bad, spec).unwrap();
        let (rows, bad_labels) = (download(&rows), download(&bad_labels));
        assert!(rows[..7].iter().all(|v| v.is_finite()));
        assert!(rows[7..14].iter().all(|v| v.is_nan()));
        assert!(rows[14..].iter().all(|v| v.is_finite()));
        assert!(bad_labels[0] == labels[1] as f32 && bad_labels[1].is_nan() && bad_labels[2] == labels[2] as f32);

        // Samples without bytes still get their labels.
        let order = GpuBuffer::from_u32(ctx, &[4, 0, 9]).unwrap();
        let spec = GatherSpec { samples, features: 0, first: 0, batch: 3, affine: gray };
        let empty = GpuBuffer::from_u8_packed(ctx, &[]).unwrap();
        let (none, only_labels) = ops::gather_batch(ctx, &empty, &glabels, &order, spec).unwrap();
        assert_eq!(none.len(), 0);
        assert_eq!(download(&only_labels), [4, 0, 9].map(|i| labels[i] as f32));
        // A labels buffer of the wrong size is an error.
        let spec = GatherSpec { samples, features, first: 0, batch: 3, affine: gray };
        assert!(matches!(ops::gather_batch(ctx, &gimages, &gimages, &order, spec), Err(GpuError::Shape { .. })));
        outputs.extend([rows, bad_labels]);
        outputs
    });
}

#[test]
fn a_first_layer_gathers_its_batch_in_its_loads() {
    on_both("linear_gathered", |ctx| {
        let mut rng = Rng::new(13);
        let mut outputs = Vec::new();
        let gray = ChannelAffine::from((1.0 / 255.0, -0.5));
        let rgb = ChannelAffine::new(&[(1.0 / 255.0, 0.0), (2.0 / 255.0, -0.5), (-1.0 / 64.0, 3.0)]).unwrap();
        // 70 rows and 100 outputs: full and partial tiles both ways; gray samples of 7 bytes and
        // RGB ones of three planes of 15, neither a multiple of the 16-deep slices.
        let (samples, batch, n, first) = (90, 70, 100, 11);
        for (features, affine, relu) in [(7, gray, true), (45, rgb, false)] {
            let images: Vec<u8> = (0..samples * features).map(|_| rng.below(256) as u8).collect();
            let labels: Vec<u8> = (0..samples).map(|_| rng.below(10) as u8).collect();
            let mut order: Vec<u32> = (0..samples as u32).collect();
            rng.shuffle(&mut order);
            let (w, b) = (random(n * features, &mut rng, -1.0, 1.0), random(n, &mut rng, -1.0, 1.0));
            let entries: Vec<usize> = order[first..first + batch].iter().map(|&s| s as usize).collect();
            let (mut x, mut y) = (Vec::new(), Vec::new());
            cpu::gather_batch(&images, &labels, features, &entries, affine, &mut x, &mut y);
            let mut want = vec![0.0; batch * n];
            let shape = MatmulShape::new(batch, features, n).transposed(false, true);
            cpu::add_bias(&cpu_matmul(&x, &w, shape), &b, &mut want);
            if relu {
                want.iter_mut().for_each(|v| *v = v.max(0.0));
            }

            let (gimages, glabels) =
                (GpuBuffer::from_u8_packed(ctx, &images).unwrap(), GpuBuffer::from_u8_packed(ctx, &labels).unwrap());
            let gorder = GpuBuffer::from_u32(ctx, &order).unwrap();
            let dataset = ops::DatasetBuffers { samples: &gimages, labels: &glabels, order: &gorder };
            let spec = GatherSpec { samples, features, first, batch, affine };
            let got = ops::linear_gathered(ctx, dataset, spec, &upload(ctx, &w), &upload(ctx, &b), relu).unwrap();
            let (out, gx, gy) = (download(&got.out), download(&got.x), download(&got.labels));
            assert_eq!(bits(&gx), bits(&x), "{features} bytes: the stored batch is the CPU's gather");
            assert_eq!(gy, y);
            assert_close("first layer", &out, &want, 1e-5, 1e-5);

            // A sample index past the dataset gives a NaN row, output row and label.
            let bad = GpuBuffer::from_u32(ctx, &[1, samples as u32, 2]).unwrap();
            let dataset = ops::DatasetBuffers { order: &bad, ..dataset };
            let spec = GatherSpec { first: 0, batch: 3, ..spec };
            let poisoned = ops::linear_gathered(ctx, dataset, spec, &upload(ctx, &w), &upload(ctx, &b), false).unwrap();
            let (rows, bad_out, bad_labels) =
                (download(&poisoned.x), download(&poisoned.out), download(&poisoned.labels));
            assert!(rows[features..2 * features].iter().all(|v| v.is_nan()));
            assert!(bad_out[n..2 * n].iter().all(|v| v.is_nan()) && bad_out[..n].iter().all(|v| v.is_finite()));
            assert!(bad_labels[1].is_nan() && bad_labels[0] == labels[1] as f32);
            outputs.extend([out, gx, gy, rows, bad_out]);
        }
        outputs
    });
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn long_chains_cross_the_batch_limit_and_keep_their_parameters() {
    // Each dispatch has its own uniform slot: 600 dispatches with different factors, submitted
    // in several batches, must each see their own factor. Each result takes the buffer its input
    // had two steps before, retired in the same batch.
    let dispatches = 600;
    assert!(dispatches > 2 * engine::backend::gpu::MAX_BATCH);
    on_both("chain", |ctx| {
        let mut x = upload(ctx, &[1.0, 2.0, 3.0]);
        let mut want = [1.0f32, 2.0, 3.0];
        for i in 0..dispatches {
            let factor = if i % 2 == 0 { 2.0 } else { 0.5 + (i % 7) as f32 * 1e-3 };
            x = ops::scale(ctx, &x, factor).unwrap();
            want.iter_mut().for_each(|v| *v *= factor);
        }
        let got = download(&x);
        assert_close("chain", &got, &want, 0.0, 1e-5);
        vec![got]
    });
}

#[test]
fn pool_reuses_dropped_buffers_and_uploads_do_not_overtake_pending_reads() {
    let Some([ctx, _]) = contexts() else { return };
    let a = upload(ctx, &[1.0; 1000]);
    // `b` is read by a pending dispatch, then dropped; its memory must not take the next upload
    // before that dispatch has run.
    let b = upload(ctx, &[2.0; 1000]);
    let sum = ops::add(ctx, &a, &b).unwrap();
    drop(b);
    let c = upload(ctx, &[5.0; 1000]);
    assert!(download(&sum).iter().all(|&v| v == 3.0));
    assert!(download(&c).iter().all(|&v| v == 5.0));
    drop(c);
    ctx.synchronize().unwrap();
    assert!(ctx.pooled_bytes() >= 4096, "dropped buffers go back to the pool");
}

#[test]
fn a_batch_records_one_compute_pass_until_a_copy_ends_it() {
    if contexts().is_none() {
        return;
    }
    // A context of its own: the shared ones count the work of tests running beside this one.
    let ctx = GpuContext::new().expect("a context");
    let x = upload(&ctx, &[1.5; 300]);
    ctx.synchronize().unwrap();
    let before = ctx.stats();
    let doubled = ops::scale(&ctx, &x, 2.0).unwrap();
    let sum = ops::add(&ctx, &x, &doubled).unwrap();
    let copy = sum.duplicate().unwrap();
    let out = ops::scale(&ctx, &copy, -1.0).unwrap();
    let again = ops::scale(&ctx, &out, 1.0).unwrap();
    assert!(download(&again).iter().all(|&v| v == -4.5));
    assert!(download(&sum).iter().all(|&v| v == 4.5));
    let after = ctx.stats();
    assert_eq!(after.dispatches - before.dispatches, 4);
    assert_eq!(after.passes - before.passes, 2, "the copy ends the first pass");
    assert_eq!(after.submits - before.submits, 2, "one per download");
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let Some([ctx, other]) = contexts() else { return };
    let a = upload(ctx, &[1.0; 6]);
    let b = upload(ctx, &[1.0; 5]);
    assert!(matches!(ops::add(ctx, &a, &b), Err(GpuError::Shape { .. })));
    assert!(matches!(
        ops::matmul(ctx, &a, &b, MatmulShape::new(2, 3, 2), Epilogue::default()),
        Err(GpuError::Shape { .. })
    ));
    let elsewhere = upload(other, &[1.0; 6]);
    assert!(matches!(ops::add(ctx, &a, &elsewhere), Err(GpuError::ContextMismatch { .. })));
    let h = SgdStep { lr: 0.1, momentum: 0.9, weight_decay: 0.0, first_step: true };
    assert!(matches!(ops::sgd_step(ctx, &a, &a.clone(), &a, h), Err(GpuError::Aliased { .. })));
    let (g, m, v) = (upload(ctx, &[0.5; 6]), upload(ctx, &[0.0; 6]), upload(ctx, &[0.0; 6]));
    let twice = ops::AdamBuffers { param: &a, grad: &g, m: &m, v: &v };
    let adam = AdamStep {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
        bias_correction1: 0.1,
        bias_correction2: 0.001,
    };
    assert!(matches!(ops::adam_steps(ctx, &[twice, twice], adam), Err(GpuError::Aliased { .. })));
    let short = ops::AdamBuffers { grad: &b, ..twice };
    assert!(matches!(ops::adam_steps(ctx, &[short], adam), Err(GpuError::Shape { .. })));
    assert!(matches!(ops::axpy(ctx, &a, &a, 1.0, false), Err(GpuError::Aliased { .. })));
    let limit = ctx.limits().max_storage_buffer_binding_size.min(ctx.limits().max_buffer_size);
    let too_many = (limit / 4 + 1) as usize;
    assert!(matches!(ops::fill(ctx, too_many, 0.0), Err(GpuError::TooLarge { .. })));
    let labels = upload(ctx, &[0.0]);
    assert!(matches!(ops::cross_entropy_rows(ctx, &a, &labels, 2, 3), Err(GpuError::Shape { .. })));
    assert!(ctx.synchronize().is_ok(), "errors caught on the host leave the device clean");
}

#[test]
fn adapters_are_listed() {
    let Some([ctx, _]) = contexts() else { return };
    let adapters = engine::backend::gpu::adapters();
    assert!(!adapters.is_empty());
    assert!(adapters.iter().any(|a| a.name == ctx.adapter().name), "{adapters:?}");
}

#[test]
fn one_training_step_without_poisoning_matches_cpu() {
    // The production path (no NaN fill before kernels), as a training step chains the kernels:
    // gather a batch, forward through a 2-layer MLP with fused epilogues, the loss, backward,
    // and an Adam step on the first layer's weights.
    if contexts().is_none() {
        return;
    }
    let ctx = GpuContext::new().expect("a context");
    let mut rng = Rng::new(13);
    let (samples, features, hidden, classes, batch) = (40, 12, 16, 5, 8);
    let images: Vec<u8> = (0..samples * features).map(|_| rng.below(256) as u8).collect();
    let labels: Vec<u8> = (0..samples).map(|_| rng.below(classes) as u8).collect();
    let mut order: Vec<u32> = (0..samples as u32).collect();
    rng.shuffle(&mut order);
    let (w1, b1) = (random(hidden * features, &mut rng, -0.5, 0.5), random(hidden, &mut rng, -0.1, 0.1));
    let (w2, b2) = (random(classes * hidden, &mut rng, -0.5, 0.5), random(classes, &mut rng, -0.1, 0.1));
    let (scale, shift) = (1.0 / 255.0, -0.5);

    // CPU.
    let first = 16;
    let picked = &order[first..first + batch];
    let x: Vec<f32> = picked
        .iter()
        .flat_map(|&s| images[s as usize * features..(s as usize + 1) * features].iter())
        .map(|&b| b as f32 * scale + shift)
        .collect();
    let y: Vec<f32> = picked.iter().map(|&s| labels[s as usize] as f32).collect();
    let shape1 = MatmulShape::new(batch, features, hidden).transposed(false, true);
    let shape2 = MatmulShape::new(batch, hidden, classes).transposed(false, true);
    let mut h = vec![0.0; batch * hidden];
    cpu::add_bias(&cpu_matmul(&x, &w1, shape1), &b1, &mut h);
    h.iter_mut().for_each(|v| *v = v.max(0.0));
    let mut logits = vec![0.0; batch * classes];
    cpu::add_bias(&cpu_matmul(&h, &w2, shape2), &b2, &mut logits);
    let loss = cpu::cross_entropy_rows(&logits, &y, classes).iter().sum::<f32>() / batch as f32;
    let mut dlogits = vec![0.0; logits.len()];
    cpu::cross_entropy_backward(&logits, &y, classes, 1.0 / batch as f32, &mut dlogits);
    let dh = cpu_matmul(&dlogits, &w2, MatmulShape::new(batch, classes, hidden));
    let mut dpre = vec![0.0; dh.len()];
    cpu::zip_map(&h, &dh, &mut dpre, |h, g| if h > 0.0 { g } else { 0.0 });
    let dw1 = cpu_matmul(&dpre, &x, MatmulShape::new(hidden, batch, features).transposed(true, false));
    let mut db1 = vec![0.0; hidden];
    cpu::sum_rows(&dpre, batch, hidden, &mut db1);
    let step = AdamStep {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
        bias_correction1: 0.1,
        bias_correction2: 0.001,
    };
    let (mut w1_new, mut m, mut v) = (w1.clone(), vec![0.0; w1.len()], vec![0.0; w1.len()]);
    cpu::adam_step(&mut w1_new, &dw1, &mut m, &mut v, step);

    // GPU.
    let gimages = GpuBuffer::from_u8_packed(&ctx, &images).unwrap();
    let glabels = GpuBuffer::from_u8_packed(&ctx, &labels).unwrap();
    let gorder = GpuBuffer::from_u32(&ctx, &order).unwrap();
    let (gw1, gb1, gw2, gb2) = (upload(&ctx, &w1), upload(&ctx, &b1), upload(&ctx, &w2), upload(&ctx, &b2));
    let spec = GatherSpec { samples, features, first, batch, affine: (scale, shift).into() };
    let (gx, gy) = ops::gather_batch(&ctx, &gimages, &glabels, &gorder, spec).unwrap();
    let gh = ops::matmul(&ctx, &gx, &gw1, shape1, Epilogue { bias: Some(&gb1), relu: true, relu_mask: None }).unwrap();
    let glogits =
        ops::matmul(&ctx, &gh, &gw2, shape2, Epilogue { bias: Some(&gb2), relu: false, relu_mask: None }).unwrap();
    let gloss = ops::cross_entropy_mean(&ctx, &glogits, &gy, batch, classes).unwrap();
    let gdlogits = ops::cross_entropy_backward(&ctx, &glogits, &gy, batch, classes, 1.0 / batch as f32).unwrap();
    let gdh =
        ops::matmul(&ctx, &gdlogits, &gw2, MatmulShape::new(batch, classes, hidden), Epilogue::default()).unwrap();
    let gdpre = ops::relu_mask(&ctx, &gh, &gdh).unwrap();
    let dw1_shape = MatmulShape::new(hidden, batch, features).transposed(true, false);
    let gdw1 = ops::matmul(&ctx, &gdpre, &gx, dw1_shape, Epilogue::default()).unwrap();
    let gdb1 = ops::sum_rows(&ctx, &gdpre, batch, hidden).unwrap();
    let (gm, gv) = (ops::fill(&ctx, w1.len(), 0.0).unwrap(), ops::fill(&ctx, w1.len(), 0.0).unwrap());
    let w1_before = gw1.duplicate().unwrap();
    ops::adam_steps(&ctx, &[ops::AdamBuffers { param: &gw1, grad: &gdw1, m: &gm, v: &gv }], step).unwrap();

    assert_close("loss", &download(&gloss), &[loss], 1e-5, 1e-5);
    assert_close("dW1", &download(&gdw1), &dw1, 1e-6, 1e-4);
    assert_close("db1", &download(&gdb1), &db1, 1e-6, 1e-4);
    assert_close("W1 after Adam", &download(&gw1), &w1_new, 1e-6, 1e-5);
    assert_eq!(download(&w1_before), w1, "a duplicate is a copy taken before later updates");
    assert_eq!(gorder.to_u32_vec().unwrap(), order);
    ctx.synchronize().unwrap();
}
