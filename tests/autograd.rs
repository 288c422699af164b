//! Every backward rule against central finite differences of an f64 reference of the same
//! function, on every device (the CPU, and the GPU when there is one: see `common/devices.rs`).
//! Each check reduces the op's output to a scalar with a random probe, `L = sum(op(x) * R)`, so
//! every output element's gradient path is exercised.

#[path = "common/devices.rs"]
mod devices;

use engine::rng::Rng;
use engine::{Device, Tensor};

type Reference = dyn Fn(&[Vec<f64>]) -> Vec<f64>;

/// Compares the engine's gradients of `sum(op(inputs) * probe)` with finite differences of
/// `reference`, the same op in f64 written the obvious way, on every device.
fn check_gradients(
    shapes: &[&[usize]],
    engine_op: impl Fn(&[Tensor]) -> engine::Result<Tensor>,
    reference: &Reference,
    seed: u64,
) {
    for device in devices::devices() {
        check_gradients_on(&device, shapes, &engine_op, reference, seed);
    }
}

fn check_gradients_on(
    device: &Device,
    shapes: &[&[usize]],
    engine_op: &impl Fn(&[Tensor]) -> engine::Result<Tensor>,
    reference: &Reference,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    let data: Vec<Vec<f32>> = shapes
        .iter()
        .map(|s| (0..s.iter().product()).map(|_| away_from_zero(rng.uniform(-1.0, 1.0))).collect())
        .collect();
    let vars: Vec<Tensor> =
        data.iter().zip(shapes).map(|(d, s)| Tensor::variable(d.clone(), s, device).unwrap()).collect();
    let output = engine_op(&vars).unwrap();
    let probe: Vec<f32> = (0..output.len()).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let probe_t = Tensor::from_vec(probe.clone(), output.shape(), device).unwrap();
    let probed = output.mul(&probe_t).unwrap().sum().unwrap();
    let scalar = |xs: &[Vec<f64>]| -> f64 { reference(xs).iter().zip(&probe).map(|(y, &r)| y * r as f64).sum() };
    compare_with_differences(device, &vars, &data, &probed, &scalar);
    // A scalar is also checked with backward starting at it, as from a training step's loss.
    if output.len() == 1 {
        compare_with_differences(device, &vars, &data, &output, &|xs| reference(xs)[0]);
    }
}

/// Checks `loss` (computed from `vars`, holding `data`) and its gradients against `scalar`, the
/// same function in f64, and its central finite differences.
fn compare_with_differences(
    device: &Device,
    vars: &[Tensor],
    data: &[Vec<f32>],
    loss: &Tensor,
    scalar: &dyn Fn(&[Vec<f64>]) -> f64,
) {
    let grads = loss.backward().unwrap();
    let as_f64: Vec<Vec<f64>> = data.iter().map(|d| d.iter().map(|&v| v as f64).collect()).collect();
    let forward = scalar(&as_f64);
    let engine_forward = loss.to_scalar().unwrap() as f64;
    assert!(
        (forward - engine_forward).abs() <= 1e-4 * (1.0 + forward.abs()),
        "{device:?}: forward {engine_forward} vs {forward}"
    );

    let h = 1e-6;
    for (i, var) in vars.iter().enumerate() {
        let analytic =
            grads.get(var).unwrap_or_else(|| panic!("{device:?}: input {i} got no gradient")).to_vec().unwrap();
        assert_eq!(analytic.len(), as_f64[i].len());
        for j in 0..as_f64[i].len() {
            let mut plus = as_f64.clone();
            plus[i][j] += h;
            let mut minus = as_f64.clone();
            minus[i][j] -= h;
            let numeric = (scalar(&plus) - scalar(&minus)) / (2.0 * h);
            let got = analytic[j] as f64;
            assert!(
                (got - numeric).abs() <= 2e-3 * (1.0 + numeric.abs()),
                "{device:?}: input {i} element {j}: backward {got} vs finite difference {numeric}"
            );
        }
    }
}

/// Keeps inputs off relu's kink, where a finite difference is not a derivative.
fn away_from_zero(v: f32) -> f32 {
    if v.abs() < 0.05 { v + 0.1f32.copysign(v) } else { v }
}

fn matmul_ref(a: &[f64], b: &[f64], m: usize, k: usize, n: usize, ta: bool, tb: bool) -> Vec<f64> {
    let at = |i: usize, p: usize| if ta { a[p * m + i] } else { a[i * k + p] };
    let bt = |p: usize, j: usize| if tb { b[j * k + p] } else { b[p * n + j] };
    (0..m * n).map(|idx| (0..k).map(|p| at(idx / n, p) * bt(p, idx % n)).sum()).collect()
}

fn softmax_ref(x: &[f64], cols: usize) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|row| {
            let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = row.iter().map(|v| (v - max).exp()).sum();
            row.iter().map(move |v| (v - max).exp() / total).collect::<Vec<_>>()
        })
        .collect()
}

const SIZES: [(usize, usize, usize); 3] = [(1, 1, 1), (3, 5, 7), (9, 4, 6)];

#[test]
fn matmul_every_transpose_combination() {
    for (m, k, n) in SIZES {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let a_shape = if ta { [k, m] } else { [m, k] };
            let b_shape = if tb { [n, k] } else { [k, n] };
            check_gradients(
                &[&a_shape, &b_shape],
                |v| v[0].matmul_t(&v[1], ta, tb),
                &move |x| matmul_ref(&x[0], &x[1], m, k, n, ta, tb),
                (m * 100 + k * 10 + n) as u64,
            );
        }
    }
}

#[test]
fn add_bias() {
    for (m, _, n) in SIZES {
        let bias = move |x: &[Vec<f64>]| -> Vec<f64> { (0..m * n).map(|i| x[0][i] + x[1][i % n]).collect() };
        check_gradients(&[&[m, n], &[n]], |v| v[0].add_bias(&v[1]), &bias, 1);
    }
}

#[test]
fn fused_linear_layer_with_and_without_relu() {
    for (m, k, n) in SIZES {
        for relu in [false, true] {
            check_gradients(
                &[&[m, k], &[n, k], &[n]],
                |v| v[0].linear(&v[1], &v[2], relu),
                &move |x| {
                    let z = matmul_ref(&x[0], &x[1], m, k, n, false, true);
                    z.iter()
                        .enumerate()
                        .map(|(i, v)| v + x[2][i % n])
                        .map(|v| if relu { v.max(0.0) } else { v })
                        .collect()
                },
                (m * 10 + n) as u64 + relu as u64,
            );
        }
    }
}

#[test]
fn stacked_relu_layers_with_the_relu_backward_in_the_next_product() {
    // h1 = relu(x·W1ᵀ + b1), h2 = relu(h1·W2ᵀ + b2): h1's gradient comes out of h2's rule already
    // through h1's relu. With `also_h1`, h1 also reaches the output directly, so one part of its
    // gradient is not masked and the sum must be.
    let (m, k, n) = (4, 3, 5);
    for also_h1 in [false, true] {
        check_gradients(
            &[&[m, k], &[n, k], &[n], &[n, n], &[n]],
            |v| {
                let h1 = v[0].linear(&v[1], &v[2], true)?;
                let h2 = h1.linear(&v[3], &v[4], true)?;
                if also_h1 { h2.add(&h1) } else { Ok(h2) }
            },
            &move |x| {
                let layer = |input: &[f64], w: &[f64], b: &[f64], k: usize| -> Vec<f64> {
                    let z = matmul_ref(input, w, m, k, n, false, true);
                    z.iter().enumerate().map(|(i, v)| (v + b[i % n]).max(0.0)).collect()
                };
                let h1 = layer(&x[0], &x[1], &x[2], k);
                let h2 = layer(&h1, &x[3], &x[4], n);
                h2.iter().zip(&h1).map(|(a, b)| if also_h1 { a + b } else { *a }).collect()
            },
            40 + also_h1 as u64,
        );
    }
}

#[test]
fn elementwise_ops() {
    for shape in [[1usize, 1], [3, 7]] {
        let s: &[usize] = &shape;
        check_gradients(&[s], |v| v[0].relu(), &|x| x[0].iter().map(|v| v.max(0.0)).collect(), 3);
        check_gradients(&[s], |v| v[0].scale(-2.5), &|x| x[0].iter().map(|v| v * -2.5).collect(), 4);
        check_gradients(&[s, s], |v| v[0].add(&v[1]), &|x| x[0].iter().zip(&x[1]).map(|(a, b)| a + b).collect(), 5);
        check_gradients(&[s, s], |v| v[0].mul(&v[1]), &|x| x[0].iter().zip(&x[1]).map(|(a, b)| a * b).collect(), 6);
    }
}

#[test]
fn reductions() {
    for shape in [[1usize, 1], [5, 3]] {
        let s: &[usize] = &shape;
        check_gradients(&[s], |v| v[0].sum(), &|x| vec![x[0].iter().sum()], 7);
        check_gradients(&[s], |v| v[0].mean(), &|x| vec![x[0].iter().sum::<f64>() / x[0].len() as f64], 8);
        let cols = shape[1];
        check_gradients(
            &[s],
            |v| v[0].sum_rows(),
            &move |x| (0..cols).map(|j| x[0].iter().skip(j).step_by(cols).sum()).collect(),
            9,
        );
    }
}

#[test]
fn softmax_rows() {
    for shape in [[1usize, 1], [4, 10], [3, 7]] {
        let cols = shape[1];
        check_gradients(&[&shape], |v| v[0].softmax(), &move |x| softmax_ref(&x[0], cols), 10);
    }
}

#[test]
fn fused_cross_entropy_matches_log_softmax_nll() {
    for (rows, cols) in [(1usize, 1usize), (1, 10), (7, 10), (5, 3)] {
        let labels: Vec<f32> = (0..rows).map(|r| ((r * 7 + 3) % cols) as f32).collect();
        let labels_t = |device: &Device| Tensor::from_vec(labels.clone(), &[rows], device);
        let expected = labels.clone();
        check_gradients(
            &[&[rows, cols]],
            |v| v[0].cross_entropy(&labels_t(&v[0].device())?),
            &move |x| {
                let p = softmax_ref(&x[0], cols);
                let nll: f64 = expected.iter().enumerate().map(|(r, &l)| -p[r * cols + l as usize].ln()).sum();
                vec![nll / rows as f64]
            },
            11,
        );
    }
}

#[test]
fn fused_last_layer_and_loss() {
    // Classes up to the fused kernel's most, and past it (the two ops instead).
    for (m, k, n) in [(1, 1, 1), (3, 5, 7), (9, 4, 16), (2, 3, 17)] {
        let labels: Vec<f32> = (0..m).map(|r| ((r * 5 + 2) % n) as f32).collect();
        let labels_t = |device: &Device| Tensor::from_vec(labels.clone(), &[m], device);
        let expected = labels.clone();
        check_gradients(
            &[&[m, k], &[n, k], &[n]],
            |v| v[0].linear_cross_entropy(&v[1], &v[2], &labels_t(&v[0].device())?, None),
            &move |x| {
                let z: Vec<f64> = matmul_ref(&x[0], &x[1], m, k, n, false, true)
                    .iter()
                    .enumerate()
                    .map(|(i, v)| v + x[2][i % n])
                    .collect();
                let p = softmax_ref(&z, n);
                let nll: f64 = expected.iter().enumerate().map(|(r, &l)| -p[r * n + l as usize].ln()).sum();
                vec![nll / m as f64]
            },
            (m * 10 + n) as u64,
        );
    }
}

/// `[n, c, h, w]` convolved with `[o, c, kh, kw]` and a bias, stride 1, zero padding `pad`.
fn conv2d_ref(
    x: &[f64],
    w: &[f64],
    b: &[f64],
    [n, c, h, wd]: [usize; 4],
    [o, kh, kw]: [usize; 3],
    pad: usize,
) -> Vec<f64> {
    let (oh, ow) = (h + 2 * pad + 1 - kh, wd + 2 * pad + 1 - kw);
    let mut out = Vec::with_capacity(n * o * oh * ow);
    for img in 0..n {
        for oc in 0..o {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut sum = b[oc];
                    for ic in 0..c {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let (iy, ix) = ((oy + ky) as isize - pad as isize, (ox + kx) as isize - pad as isize);
                                if (0..h as isize).contains(&iy) && (0..wd as isize).contains(&ix) {
                                    let xv = x[((img * c + ic) * h + iy as usize) * wd + ix as usize];
                                    sum += w[((oc * c + ic) * kh + ky) * kw + kx] * xv;
                                }
                            }
                        }
                    }
                    out.push(sum);
                }
            }
        }
    }
    out
}

#[test]
fn conv2d_on_odd_shapes_and_paddings() {
    // [n, c, h, w], [o, kh, kw], padding.
    let cases: [([usize; 4], [usize; 3], usize); 4] = [
        ([2, 3, 5, 4], [2, 3, 3], 1),
        ([1, 1, 4, 6], [3, 2, 3], 0),
        ([3, 2, 3, 3], [1, 1, 1], 0),
        ([1, 2, 3, 2], [2, 3, 3], 2),
    ];
    for (i, (input, [o, kh, kw], pad)) in cases.into_iter().enumerate() {
        check_gradients(
            &[&input, &[o, input[1], kh, kw], &[o]],
            |v| v[0].conv2d(&v[1], &v[2], pad),
            &move |x| conv2d_ref(&x[0], &x[1], &x[2], input, [o, kh, kw], pad),
            20 + i as u64,
        );
    }
}

#[test]
fn max_pooling_on_even_and_odd_sides() {
    for (i, [n, c, h, w]) in [[2usize, 3, 4, 6], [1, 2, 5, 3], [1, 1, 2, 2]].into_iter().enumerate() {
        check_gradients(
            &[&[n, c, h, w]],
            |v| v[0].max_pool2d(),
            &move |x| {
                let mut out = Vec::new();
                for plane in x[0].chunks(h * w) {
                    for oy in 0..h / 2 {
                        for ox in 0..w / 2 {
                            let at = |dy: usize, dx: usize| plane[(2 * oy + dy) * w + 2 * ox + dx];
                            out.push(at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1)));
                        }
                    }
                }
                out
            },
            30 + i as u64,
        );
    }
}

#[test]
fn reshape_is_a_view_whose_gradient_is_reshaped_back() {
    // A reshape between two ops, as a CNN flattens its feature maps into a linear layer.
    check_gradients(
        &[&[2, 3, 2, 2], &[5, 12], &[5]],
        |v| v[0].relu()?.reshape(&[2, 12])?.linear(&v[1], &v[2], false),
        &|x| {
            let h: Vec<f64> = x[0].iter().map(|v| v.max(0.0)).collect();
            let z = matmul_ref(&h, &x[1], 2, 12, 5, false, true);
            z.iter().enumerate().map(|(i, v)| v + x[2][i % 5]).collect()
        },
        35,
    );
    for device in devices::devices() {
        let x = Tensor::variable((0..6).map(|v| v as f32).collect(), &[2, 3], &device).unwrap();
        let view = x.reshape(&[3, 2]).unwrap();
        assert_eq!((view.shape(), view.to_vec().unwrap()), (&[3usize, 2][..], x.to_vec().unwrap()));
        assert!(matches!(x.reshape(&[4, 2]), Err(engine::Error::ElementCount { .. })));
    }
}

#[test]
fn dropout_scales_kept_elements_and_routes_gradients_through_the_mask() {
    let p = 0.3;
    let mask: Vec<f64> = {
        let key = Rng::new(42).next_u64();
        let keep = 1.0 / (1.0 - p) as f64;
        (0..35).map(|i| if engine::backend::cpu::dropout_keeps(key, i, p) { keep } else { 0.0 }).collect()
    };
    assert!(mask.contains(&0.0) && mask.iter().any(|&m| m > 1.0), "the mask should drop and keep elements");
    check_gradients(
        &[&[5, 7]],
        |v| v[0].dropout(p, &mut Rng::new(42)),
        &move |x| x[0].iter().zip(&mask).map(|(v, m)| v * m).collect(),
        12,
    );
}

#[test]
fn dropout_masks_drop_the_asked_share_and_differ_between_keys() {
    use engine::backend::cpu::dropout_keeps;
    let n = 200_000u32;
    for p in [0.1f32, 0.5, 0.9] {
        let kept = (0..n).filter(|&i| dropout_keeps(12345, i, p)).count() as f64 / n as f64;
        assert!((kept - (1.0 - p as f64)).abs() < 0.005, "p {p}: kept {kept}");
    }
    // Keys that differ in one bit, low or high half, give unrelated masks (half the elements agree).
    for other in [12344u64, 12345 ^ (1 << 40)] {
        let same = (0..n).filter(|&i| dropout_keeps(12345, i, 0.5) == dropout_keeps(other, i, 0.5)).count();
        assert!((same as f64 / n as f64 - 0.5).abs() < 0.01, "key {other}: {same} of {n} agree");
    }
    // Neighbouring elements are not correlated.
    let pairs = (0..n - 1).filter(|&i| dropout_keeps(99, i, 0.5) == dropout_keeps(99, i + 1, 0.5)).count();
    assert!((pairs as f64 / n as f64 - 0.5).abs() < 0.01, "{pairs} neighbours agree");
}

#[test]
fn a_tensor_used_twice_accumulates_both_gradients() {
    // f(x, w) = relu(x·w + x·w) ∘ x : x appears three times, w twice.
    check_gradients(
        &[&[3, 3], &[3, 3]],
        |v| {
            let xw = v[0].matmul(&v[1])?;
            xw.add(&xw)?.relu()?.mul(&v[0])
        },
        &|x| {
            let xw = matmul_ref(&x[0], &x[1], 3, 3, 3, false, false);
            xw.iter().zip(&x[0]).map(|(v, x)| (2.0 * v).max(0.0) * x).collect()
        },
        13,
    );
    check_gradients(&[&[2, 2]], |v| v[0].mul(&v[0]), &|x| x[0].iter().map(|v| v * v).collect(), 14);
}

#[test]
fn no_grad_records_nothing_and_backward_needs_a_scalar() {
    let x = Tensor::variable(vec![1.0, 2.0], &[1, 2], &Device::Cpu).unwrap();
    let y = engine::no_grad(|| x.scale(2.0)).unwrap();
    assert!(!y.tracks());
    assert!(x.scale(2.0).unwrap().tracks());
    assert!(matches!(x.scale(2.0).unwrap().backward(), Err(engine::Error::NotScalar(_))));
}

#[test]
fn gradients_of_intermediates_are_not_kept() {
    let x = Tensor::variable(vec![0.5; 6], &[2, 3], &Device::Cpu).unwrap();
    let hidden = x.scale(3.0).unwrap().relu().unwrap();
    let grads = hidden.sum().unwrap().backward().unwrap();
    assert_eq!(grads.len(), 1, "only the variable's gradient survives the walk");
    assert!(grads.get(&hidden).is_none());
    assert_eq!(grads.get(&x).unwrap().to_vec().unwrap(), vec![3.0; 6]);
}
