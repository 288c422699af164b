//! GPU against CPU. Matmul: naive vs tiled (64x64, 4x4 per thread) vs wide (128x128, 8x8 per
//! thread) vs the CPU's packed kernel, at the MLP's forward and backward shapes and at 1024²,
//! 2048² and 4096². `gpu_tiled` is `ops::matmul`, which takes the wide kernel by itself for large
//! outputs. Throughput is in FLOP (2·m·k·n per product), so criterion's `elem/s` reads as FLOP/s.
//! Row softmax: GPU vs CPU, in bytes read and written (GB/s).
//! Convolution: the CNN's two layers at a batch of 128, forward and both backward products, for
//! the implicit-GEMM kernels (`gpu`), the CPU's unrolled images and packed matmul (`cpu`) and the
//! definition as a loop (`naive`, on 8 images), in FLOP (2 per multiply-add of the definition).
//! For stable CPU figures, run single-threaded: `RAYON_NUM_THREADS=1 cargo bench --bench gpu conv`.
//! Each GPU sample is timed with `iter_custom` between two device syncs, so it counts the
//! kernels' execution, not only their recording. Run with `cargo bench --bench gpu`.
//!
//! On a CPU adapter (lavapipe, about 0.5 GFLOP/s) only the MLP's shapes run, to keep the run
//! to a minute or two; set `ENGINE_BENCH_FULL=1` to run the large ones too.

#[path = "common/shapes.rs"]
mod shapes;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use engine::backend::cpu::{self, conv::Conv2dShape, matmul::MatRef};
use engine::backend::gpu::conv as gpu_conv;
use engine::backend::gpu::ops::{self, Epilogue, MatmulShape, MatmulTile};
use engine::backend::gpu::{GpuBuffer, GpuContext};
use engine::rng::Rng;

fn random(len: usize, rng: &mut Rng) -> Vec<f32> {
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

/// Row softmax shapes (rows, columns): the MLP's logits and a wide one.
const SOFTMAX_SHAPES: [(usize, usize); 3] = [(128, 10), (4096, 1000), (65536, 1000)];

/// The GPU context, or `None` (with the reason printed) where no adapter can run the benches.
fn context() -> Option<Arc<GpuContext>> {
    let ctx = GpuContext::new();
    match ctx {
        Ok(ctx) => {
            eprintln!("adapter: {}", ctx.adapter());
            Some(ctx)
        }
        Err(e) => {
            eprintln!("SKIPPED the GPU benches: {e}");
            None
        }
    }
}

/// Large shapes only on a real GPU, or when asked for.
fn full_run(ctx: &GpuContext) -> bool {
    !ctx.adapter().is_cpu() || std::env::var("ENGINE_BENCH_FULL").is_ok_and(|v| v == "1")
}

/// Times `run` on the GPU between two device syncs.
fn bench_gpu<T>(group: &mut BenchmarkGroup<WallTime>, id: BenchmarkId, ctx: &GpuContext, run: impl Fn() -> T) {
    group.bench_function(id, |bench| {
        bench.iter_custom(|iters| {
            ctx.synchronize().expect("device sync");
            let start = Instant::now();
            for _ in 0..iters {
                black_box(run());
            }
            ctx.synchronize().expect("device sync");
            start.elapsed()
        })
    });
}

fn matmul(c: &mut Criterion) {
    let Some(ctx) = context() else { return };
    let full = full_run(&ctx);
    let mut rng = Rng::new(0);
    let mut group = c.benchmark_group("matmul");
    group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    for (name, m, k, n, trans_a, trans_b) in shapes::with_squares(&[1024, 2048, 4096]) {
        if m * k * n > 1 << 28 && !full {
            continue;
        }
        let shape = MatmulShape { m, k, n, trans_a, trans_b };
        let (a_host, b_host) = (random(m * k, &mut rng), random(k * n, &mut rng));
        let (Ok(a), Ok(b)) = (GpuBuffer::from_f32(&ctx, &a_host), GpuBuffer::from_f32(&ctx, &b_host)) else {
            eprintln!("SKIPPED {name}: upload failed");
            continue;
        };
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        for kind in ["gpu_naive", "gpu_tiled", "gpu_wide"] {
            let run = || match kind {
                "gpu_naive" => ops::matmul_by(&ctx, MatmulTile::Naive, &a, &b, shape, Epilogue::default()),
                "gpu_wide" => ops::matmul_by(&ctx, MatmulTile::Wide, &a, &b, shape, Epilogue::default()),
                _ => ops::matmul(&ctx, &a, &b, shape, Epilogue::default()),
            };
            bench_gpu(&mut group, BenchmarkId::new(kind, &name), &ctx, || run().expect("matmul"));
        }
        let (a, b) = (MatRef::new(&a_host, m, k, trans_a).unwrap(), MatRef::new(&b_host, k, n, trans_b).unwrap());
        let mut out = vec![0.0; m * n];
        group.bench_function(BenchmarkId::new("cpu", &name), |bench| {
            bench.iter(|| cpu::matmul::gemm(black_box(a), black_box(b), &mut out, false).unwrap())
        });
    }
    group.finish();
}

fn softmax(c: &mut Criterion) {
    let Some(ctx) = context() else { return };
    let full = full_run(&ctx);
    let mut rng = Rng::new(1);
    let mut group = c.benchmark_group("softmax");
    group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    for (rows, cols) in SOFTMAX_SHAPES {
        if rows * cols > 1 << 22 && !full {
            continue;
        }
        let name = format!("{rows}x{cols}");
        let x_host = random(rows * cols, &mut rng);
        let Ok(x) = GpuBuffer::from_f32(&ctx, &x_host) else {
            eprintln!("SKIPPED softmax {name}: upload failed");
            continue;
        };
        group.throughput(Throughput::Bytes((2 * rows * cols * 4) as u64));
        bench_gpu(&mut group, BenchmarkId::new("gpu", &name), &ctx, || {
            ops::softmax_rows(&ctx, &x, rows, cols).expect("softmax")
        });
        let mut out = vec![0.0; rows * cols];
        group.bench_function(BenchmarkId::new("cpu", &name), |bench| {
            bench.iter(|| cpu::softmax_rows(black_box(&x_host), cols, &mut out))
        });
    }
    group.finish();
}

/// The CNN's convolutions: (name, shape at a batch of 128).
fn conv_layers() -> [(&'static str, Conv2dShape); 2] {
    let layer = |in_channels, side, out_channels| Conv2dShape {
        batch: 128,
        in_channels,
        height: side,
        width: side,
        out_channels,
        kernel_h: 3,
        kernel_w: 3,
        padding: 1,
    };
    [("conv1_1to32_28x28", layer(1, 28, 32)), ("conv2_32to64_14x14", layer(32, 14, 64))]
}

fn conv(c: &mut Criterion) {
    let ctx = context();
    let mut rng = Rng::new(2);
    let mut group = c.benchmark_group("conv");
    group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    for (name, s) in conv_layers() {
        let (x, w, b, dy) = (
            random(s.input_len(), &mut rng),
            random(s.weight_len(), &mut rng),
            random(s.out_channels, &mut rng),
            random(s.output_len(), &mut rng),
        );
        group.throughput(Throughput::Elements(s.flops()));
        let (mut out, mut dx, mut dw) =
            (vec![0.0; s.output_len()], vec![0.0; s.input_len()], vec![0.0; s.weight_len()]);
        group.bench_function(BenchmarkId::new("cpu_forward", name), |bench| {
            bench.iter(|| cpu::conv::conv2d(black_box(&x), &w, &b, s, &mut out).unwrap())
        });
        group.bench_function(BenchmarkId::new("cpu_backward_input", name), |bench| {
            bench.iter(|| cpu::conv::conv2d_backward_input(black_box(&dy), &w, s, &mut dx).unwrap())
        });
        group.bench_function(BenchmarkId::new("cpu_backward_weight", name), |bench| {
            bench.iter(|| cpu::conv::conv2d_backward_weight(black_box(&x), &dy, s, &mut dw).unwrap())
        });
        // About 2 s a product on lavapipe: only on a real GPU, or when asked for.
        if let Some(ctx) = ctx.as_ref().filter(|ctx| full_run(ctx)) {
            let upload = |v: &[f32]| GpuBuffer::from_f32(ctx, v).expect("upload");
            let (x, w, b, dy) = (upload(&x), upload(&w), upload(&b), upload(&dy));
            bench_gpu(&mut group, BenchmarkId::new("gpu_forward", name), ctx, || {
                gpu_conv::conv2d(ctx, &x, &w, &b, s, false).expect("conv2d")
            });
            bench_gpu(&mut group, BenchmarkId::new("gpu_backward_input", name), ctx, || {
                gpu_conv::conv2d_backward_input(ctx, &dy, &w, s).expect("conv2d_backward_input")
            });
            bench_gpu(&mut group, BenchmarkId::new("gpu_backward_weight", name), ctx, || {
                gpu_conv::conv2d_backward_weight(ctx, &x, &dy, s).expect("conv2d_backward_weight")
            });
        }
        let s = Conv2dShape { batch: 8, ..s };
        group.throughput(Throughput::Elements(s.flops()));
        let mut out = vec![0.0; s.output_len()];
        group.bench_function(BenchmarkId::new("naive_forward_8_images", name), |bench| {
            bench.iter(|| cpu::conv::conv2d_naive(black_box(&x[..s.input_len()]), &w, &b, s, &mut out).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, matmul, softmax, conv);
criterion_main!(benches);
