//! The GPU kernels that `scripts/gpu-bench.sh` sets beside PyTorch's: square matmuls in GFLOP/s
//! and row softmax in GB/s (bytes read and written), on the shapes of
//! `shared/anchors/gpu/torch_gpu_anchor.py`. One line per figure, `name value`, for the script.
//!
//! `cargo bench --bench gpu_report -- [--small]`: `--small` takes sizes a CPU adapter (lavapipe)
//! runs in seconds.
//!
//! Each figure is the median over 5 timed batches; a batch records several dispatches and
//! waits for the device once, so the ~100 us of a submit and wait is spread over them (the
//! PyTorch anchor times single kernels with CUDA events, which exclude it).

use std::time::Instant;

use engine::backend::gpu::ops::{self, Epilogue, MatmulShape};
use engine::backend::gpu::{GpuBuffer, GpuContext, GpuError};
use engine::rng::Rng;

/// Timed batches per figure.
const BATCHES: usize = 5;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let small = std::env::args().any(|a| a == "--small");
    let ctx = GpuContext::new()?;
    println!("adapter {}", ctx.adapter());
    let (squares, softmaxes): (&[usize], &[(usize, usize)]) =
        if small { (&[256, 512], &[(512, 1000)]) } else { (&[1024, 4096], &[(4096, 1000), (65536, 1000)]) };
    let mut rng = Rng::new(0);
    for &size in squares {
        let a = GpuBuffer::from_f32(&ctx, &random(size * size, &mut rng))?;
        let b = GpuBuffer::from_f32(&ctx, &random(size * size, &mut rng))?;
        let shape = MatmulShape::new(size, size, size);
        let seconds = time(&ctx, || ops::matmul(&ctx, &a, &b, shape, Epilogue::default()).map(drop))?;
        println!("matmul_{size} {:.1}", 2.0 * (size as f64).powi(3) / seconds / 1e9);
    }
    for &(rows, cols) in softmaxes {
        let x = GpuBuffer::from_f32(&ctx, &random(rows * cols, &mut rng))?;
        let bytes = (2 * rows * cols * 4) as f64;
        let seconds = time(&ctx, || ops::softmax_rows(&ctx, &x, rows, cols).map(drop))?;
        println!("softmax_{rows}x{cols} {:.1}", bytes / seconds / 1e9);
    }
    Ok(())
}

/// Seconds per run of `run`: the median over [`BATCHES`] timed batches. A batch has as many runs
/// as fill about 20 ms (1 to 50, from one untimed run that also warms up), so a submit and
/// wait costs at most a few percent of it.
fn time(ctx: &GpuContext, run: impl Fn() -> Result<(), GpuError>) -> Result<f64, GpuError> {
    let batch = |runs: usize| {
        ctx.synchronize()?;
        let start = Instant::now();
        for _ in 0..runs {
            run()?;
        }
        ctx.synchronize()?;
        Ok::<_, GpuError>(start.elapsed().as_secs_f64())
    };
    let runs = (0.02 / batch(1)?).clamp(1.0, 50.0) as usize;
    let mut seconds = (0..BATCHES).map(|_| Ok(batch(runs)? / runs as f64)).collect::<Result<Vec<f64>, GpuError>>()?;
    seconds.sort_by(f64::total_cmp);
    Ok(seconds[BATCHES / 2])
}

fn random(len: usize, rng: &mut Rng) -> Vec<f32> {
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}
