//! The packed CPU matmul against the naive triple loop, on shapes that cross every block edge
//! (micro-tile 6x16, depth 128, task 144x256), for every transpose combination.

use engine::backend::cpu::matmul::{Epilogue, MatRef, gemm, gemm_epilogue, gemm_naive};
use engine::rng::Rng;

const SIZES: [usize; 8] = [1, 7, 63, 64, 65, 129, 511, 1000];

fn random(len: usize, rng: &mut Rng) -> Vec<f32> {
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

/// Like a layer's input after a relu: about `zeros` of the values are exactly zero.
fn sparse(len: usize, zeros: f32, rng: &mut Rng) -> Vec<f32> {
    (0..len).map(|_| if rng.uniform(0.0, 1.0) < zeros { 0.0 } else { rng.uniform(-1.0, 1.0) }).collect()
}

fn assert_close(got: &[f32], expected: &[f32], k: usize, what: &str) {
    let tolerance = 1e-5 * (k as f32).sqrt() * 4.0 + 1e-6;
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        assert!((g - e).abs() <= tolerance * (1.0 + e.abs()), "{what} [{i}]: {g} vs {e}");
    }
}

fn check(m: usize, k: usize, n: usize, ta: bool, tb: bool, accumulate: bool, rng: &mut Rng) {
    let a = random(m * k, rng);
    let b = random(k * n, rng);
    let (a, b) = (MatRef::new(&a, m, k, ta).unwrap(), MatRef::new(&b, k, n, tb).unwrap());
    let mut expected = vec![0.0; m * n];
    gemm_naive(a, b, &mut expected).unwrap();
    let start = random(m * n, rng);
    let mut got = if accumulate { start.clone() } else { vec![f32::NAN; m * n] };
    gemm(a, b, &mut got, accumulate).unwrap();
    if accumulate {
        expected.iter_mut().zip(&start).for_each(|(e, s)| *e += s);
    }
    assert_close(&got, &expected, k, &format!("{m}x{k}x{n} ta={ta} tb={tb}"));
}

#[test]
fn packed_matmul_matches_naive_across_block_edges() {
    let mut rng = Rng::new(1);
    for (i, &m) in SIZES.iter().enumerate() {
        // Each size meets every other size in some role, without the cost of the full cube.
        for shift in [0, 3, 5] {
            let k = SIZES[(i + shift) % SIZES.len()];
            let n = SIZES[(i + shift + 2) % SIZES.len()];
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                check(m, k, n, ta, tb, false, &mut rng);
            }
        }
    }
}

#[test]
fn accumulate_adds_to_the_output() {
    let mut rng = Rng::new(2);
    for (m, k, n) in [(1, 1, 1), (65, 300, 17), (7, 513, 129)] {
        check(m, k, n, false, true, true, &mut rng);
    }
}

#[test]
fn epilogue_adds_the_bias_then_applies_relu() {
    let mut rng = Rng::new(4);
    // Few rows (columns split across tasks) and many (one task per row block), edges everywhere.
    for (m, k, n) in [(1, 1, 1), (5, 17, 33), (128, 784, 512), (1000, 300, 250), (7, 0, 20)] {
        let (a, b, bias) = (random(m * k, &mut rng), random(n * k, &mut rng), random(n, &mut rng));
        let (a, b) = (MatRef::new(&a, m, k, false).unwrap(), MatRef::new(&b, k, n, true).unwrap());
        let mut product = vec![0.0; m * n];
        gemm_naive(a, b, &mut product).unwrap();
        for relu in [false, true] {
            let mut got = vec![f32::NAN; m * n];
            gemm_epilogue(a, b, &mut got, Epilogue { bias: Some(&bias), relu }).unwrap();
            let expected: Vec<f32> = product
                .iter()
                .enumerate()
                .map(|(i, p)| if relu { (p + bias[i % n]).max(0.0) } else { p + bias[i % n] })
                .collect();
            assert_close(&got, &expected, k, &format!("{m}x{k}x{n} relu={relu}"));
        }
    }
}

/// A mostly-zero A takes the compressed-rows path: the same sums, on shapes that cross its edges
/// (groups of 64 columns, depth blocks of 128, blocks of 144 rows, more than 576 rows).
#[test]
fn mostly_zero_inputs_match_naive() {
    let mut rng = Rng::new(5);
    for (m, k, n) in [(1, 1, 64), (7, 95, 65), (145, 97, 130), (300, 784, 512), (700, 300, 130), (13, 193, 79)] {
        for zeros in [0.5, 0.9, 1.0] {
            let (a, b, bias) = (sparse(m * k, zeros, &mut rng), random(n * k, &mut rng), random(n, &mut rng));
            let (a, b) = (MatRef::new(&a, m, k, false).unwrap(), MatRef::new(&b, k, n, true).unwrap());
            let mut expected = vec![0.0; m * n];
            gemm_naive(a, b, &mut expected).unwrap();
            let what = format!("{m}x{k}x{n} zeros={zeros}");

            let mut got = vec![f32::NAN; m * n];
            gemm(a, b, &mut got, false).unwrap();
            assert_close(&got, &expected, k, &what);

            let start = random(m * n, &mut rng);
            let mut got = start.clone();
            gemm(a, b, &mut got, true).unwrap();
            let with_start: Vec<f32> = expected.iter().zip(&start).map(|(e, s)| e + s).collect();
            assert_close(&got, &with_start, k, &format!("{what} accumulate"));

            let mut got = vec![f32::NAN; m * n];
            gemm_epilogue(a, b, &mut got, Epilogue { bias: Some(&bias), relu: true }).unwrap();
            let activated: Vec<f32> = expected.iter().enumerate().map(|(i, e)| (e + bias[i % n]).max(0.0)).collect();
            assert_close(&got, &activated, k, &format!("{what} epilogue"));
        }
    }
}

#[test]
fn a_nan_among_zeros_still_propagates() {
    let (m, k, n) = (20, 100, 64);
    let mut a = vec![0.0; m * k];
    a[3 * k + 50] = f32::NAN;
    a[5 * k + 7] = 1.0;
    let b = vec![1.0; k * n];
    let mut c = vec![0.0; m * n];
    gemm(MatRef::new(&a, m, k, false).unwrap(), MatRef::new(&b, k, n, false).unwrap(), &mut c, false).unwrap();
    assert!(c[3 * n..4 * n].iter().all(|v| v.is_nan()));
    assert!(c[5 * n..6 * n].iter().all(|&v| v == 1.0));
    assert!(c[..3 * n].iter().all(|&v| v == 0.0));
}

#[test]
fn empty_inner_dimension_gives_zeros() {
    let mut c = vec![f32::NAN; 6];
    gemm(MatRef::new(&[], 2, 0, false).unwrap(), MatRef::new(&[], 0, 3, false).unwrap(), &mut c, false).unwrap();
    assert_eq!(c, vec![0.0; 6]);
}

#[test]
fn same_bits_with_one_and_two_threads() {
    let mut rng = Rng::new(3);
    let (m, k, n) = (300, 700, 520);
    let a = random(m * k, &mut rng);
    let a_sparse = sparse(m * k, 0.6, &mut rng);
    let b = random(k * n, &mut rng);
    let run = |a: &[f32], threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut c = vec![0.0; m * n];
        pool.install(|| {
            gemm(MatRef::new(a, m, k, false).unwrap(), MatRef::new(&b, k, n, true).unwrap(), &mut c, false).unwrap()
        });
        c.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    assert_eq!(run(&a, 1), run(&a, 2));
    assert_eq!(run(&a_sparse, 1), run(&a_sparse, 2));
}
