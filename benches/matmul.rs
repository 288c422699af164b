//! Matmul and softmax + cross-entropy on the CPU: naive vs packed (ours) vs the
//! `matrixmultiply` crate, in GFLOP/s. Run single-threaded for stable figures:
//! `RAYON_NUM_THREADS=1 cargo bench --bench matmul`.

#[path = "common/shapes.rs"]
mod shapes;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use engine::backend::cpu::matmul::{MatRef, gemm, gemm_naive};
use engine::rng::Rng;
use engine::{Device, Tensor};
use std::hint::black_box;

/// (name, m, k, n, share of zeros in A): a layer's input after a relu, which the packed matmul
/// compresses to its non-zeros. GFLOP/s count the dense product's arithmetic.
const SPARSE_SHAPES: [(&str, usize, usize, usize, f32); 2] =
    [("relu50_1000x784x512_nt", 1000, 784, 512, 0.5), ("relu70_1000x512x512_nt", 1000, 512, 512, 0.7)];

fn random(len: usize, rng: &mut Rng) -> Vec<f32> {
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

fn matmul(c: &mut Criterion) {
    let mut rng = Rng::new(0);
    let mut group = c.benchmark_group("matmul");
    for (name, m, k, n, ta, tb) in shapes::with_squares(&[256, 512, 1024]) {
        let (a, b) = (random(m * k, &mut rng), random(k * n, &mut rng));
        bench_shape(&mut group, &name, MatRef::new(&a, m, k, ta).unwrap(), MatRef::new(&b, k, n, tb).unwrap());
    }
    for (name, m, k, n, zeros) in SPARSE_SHAPES {
        let a: Vec<f32> =
            random(m * k, &mut rng).iter().map(|&v| if (v + 1.0) / 2.0 < zeros { 0.0 } else { v }).collect();
        let b = random(k * n, &mut rng);
        bench_shape(&mut group, name, MatRef::new(&a, m, k, false).unwrap(), MatRef::new(&b, k, n, true).unwrap());
    }
    group.finish();
}

/// Ours and `matrixmultiply` on one product, and the naive loop where it finishes in time.
fn bench_shape(group: &mut BenchmarkGroup<WallTime>, name: &str, a: MatRef, b: MatRef) {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    let ((a_rows, a_cols), (b_rows, b_cols)) = (a.strides(), b.strides());
    let mut out = vec![0.0f32; m * n];
    group.throughput(Throughput::Elements((2 * m * k * n) as u64));
    group.bench_function(BenchmarkId::new("ours", name), |bench| {
        bench.iter(|| gemm(black_box(a), black_box(b), &mut out, false).unwrap())
    });
    group.bench_function(BenchmarkId::new("matrixmultiply", name), |bench| {
        // SAFETY: the pointers and strides describe `a`, `b` and `out` exactly.
        bench.iter(|| unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.data().as_ptr(),
                a_rows as isize,
                a_cols as isize,
                b.data().as_ptr(),
                b_rows as isize,
                b_cols as isize,
                0.0,
                out.as_mut_ptr(),
                n as isize,
                1,
            )
        })
    });
    if m * k * n <= 256 * 256 * 256 {
        group.bench_function(BenchmarkId::new("naive", name), |bench| {
            bench.iter(|| gemm_naive(black_box(a), black_box(b), &mut out).unwrap())
        });
    }
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
