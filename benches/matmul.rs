//! Matmul and softmax + cross-entropy on the CPU: naive vs packed (ours) vs the
//! `matrixmultiply` crate, in GFLOP/s. Run single-threaded for stable figures:
//! `RAYON_NUM_THREADS=1 cargo bench --bench matmul`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use engine::backend::cpu::matmul::{MatRef, gemm, gemm_naive};
use engine::rng::Rng;
use engine::{Device, Tensor};
use std::hint::black_box;

/// (name, m, k, n, a transposed, b transposed): the MLP's forward and backward products.
const SHAPES: [(&str, usize, usize, usize, bool, bool); 9] = [
    ("fwd1_128x784x512_nt", 128, 784, 512, false, true),
    ("fwd2_128x512x512_nt", 128, 512, 512, false, true),
    ("fwd3_128x512x10_nt", 128, 512, 10, false, true),
    ("dw1_512x128x784_tn", 512, 128, 784, true, false),
    ("dx2_128x512x512_nn", 128, 512, 512, false, false),
    ("dw2_512x128x512_tn", 512, 128, 512, true, false),
    ("sq256", 256, 256, 256, false, false),
    ("sq512", 512, 512, 512, false, false),
    ("sq1024", 1024, 1024, 1024, false, false),
];

fn random(len: usize, rng: &mut Rng) -> Vec<f32> {
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

fn matmul(c: &mut Criterion) {
    let mut rng = Rng::new(0);
    let mut group = c.benchmark_group("matmul");
    for (name, m, k, n, ta, tb) in SHAPES {
        let (a, b) = (random(m * k, &mut rng), random(k * n, &mut rng));
        let mut out = vec![0.0f32; m * n];
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        let (ar, br) = (MatRef::new(&a, m, k, ta), MatRef::new(&b, k, n, tb));
        group.bench_function(BenchmarkId::new("ours", name), |bench| {
            bench.iter(|| gemm(black_box(ar), black_box(br), &mut out, false))
        });
        group.bench_function(BenchmarkId::new("matrixmultiply", name), |bench| {
            bench.iter(|| unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    ar.row_stride as isize,
                    ar.col_stride as isize,
                    b.as_ptr(),
                    br.row_stride as isize,
                    br.col_stride as isize,
                    0.0,
                    out.as_mut_ptr(),
                    n as isize,
                    1,
                )
            })
        });
        if m * k * n <= 256 * 256 * 256 {
            group.bench_function(BenchmarkId::new("naive", name), |bench| {
                bench.iter(|| gemm_naive(black_box(ar), black_box(br), &mut out))
            });
        }
    }
    group.finish();
}

fn softmax_cross_entropy(c: &mut Criterion) {
    let mut rng = Rng::new(1);
    let mut group = c.benchmark_group("softmax_cross_entropy");
    for (rows, cols) in [(128, 10), (4096, 1000)] {
        let logits = Tensor::from_vec(random(rows * cols, &mut rng), &[rows, cols], &Device::Cpu).unwrap();
        let labels: Vec<f32> = (0..rows).map(|_| rng.below(cols) as f32).collect();
        let labels = Tensor::from_vec(labels, &[rows], &Device::Cpu).unwrap();
        group.throughput(Throughput::Bytes((rows * cols * 4) as u64));
        group.bench_function(BenchmarkId::new("softmax", format!("{rows}x{cols}")), |b| {
            b.iter(|| logits.softmax().unwrap())
        });
        group.bench_function(BenchmarkId::new("cross_entropy", format!("{rows}x{cols}")), |b| {
            b.iter(|| logits.cross_entropy(&labels).unwrap())
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = matmul, softmax_cross_entropy
}
criterion_main!(benches);
