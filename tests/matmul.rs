//! The packed CPU matmul against the naive triple loop, on shapes that cross every block edge
//! (micro-tile 6x16, depth 256, task 144x256), for every transpose combination.

use engine::backend::cpu::matmul::{MatRef, gemm, gemm_naive};
use engine::rng::Rng;

const SIZES: [usize; 8] = [1, 7, 63, 64, 65, 129, 511, 1000];

fn random(len: usize, rng: &mut Rng) -> Vec<f32> {
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

fn check(m: usize, k: usize, n: usize, ta: bool, tb: bool, accumulate: bool, rng: &mut Rng) {
    let a = random(m * k, rng);
    let b = random(k * n, rng);
    let (a, b) = (MatRef::new(&a, m, k, ta), MatRef::new(&b, k, n, tb));
    let mut expected = vec![0.0; m * n];
    gemm_naive(a, b, &mut expected);
    let start = random(m * n, rng);
    let mut got = if accumulate { start.clone() } else { vec![f32::NAN; m * n] };
    gemm(a, b, &mut got, accumulate);
    let tolerance = 1e-5 * (k as f32).sqrt() * 4.0 + 1e-6;
    for (i, (&g, &e)) in got.iter().zip(&expected).enumerate() {
        let e = if accumulate { e + start[i] } else { e };
        assert!((g - e).abs() <= tolerance * (1.0 + e.abs()), "{m}x{k}x{n} ta={ta} tb={tb} [{i}]: {g} vs {e}");
    }
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
fn empty_inner_dimension_gives_zeros() {
    let mut c = vec![f32::NAN; 6];
    gemm(MatRef::new(&[], 2, 0, false), MatRef::new(&[], 0, 3, false), &mut c, false);
    assert_eq!(c, vec![0.0; 6]);
}

#[test]
fn same_bits_with_one_and_two_threads() {
    let mut rng = Rng::new(3);
    let (m, k, n) = (300, 700, 520);
    let a = random(m * k, &mut rng);
    let b = random(k * n, &mut rng);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut c = vec![0.0; m * n];
        pool.install(|| gemm(MatRef::new(&a, m, k, false), MatRef::new(&b, k, n, true), &mut c, false));
        c.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    assert_eq!(run(1), run(2));
}
