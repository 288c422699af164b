//! Training throughput on the real FashionMNIST training set, measured like the PyTorch anchor
//! (`shared/anchors/cpu/train.py --loader preloaded`): the default 784-512-512-10 MLP, Adam 1e-3,
//! batch 128, all 60,000 images per epoch, no validation or evaluation inside the timing. It runs
//! the real training loop (`engine::train::fit`), so the numbers are those of `engine train`.
//!
//! `RAYON_NUM_THREADS=1 cargo bench --bench train -- [epochs] [cpu|gpu|noop] [dropout]
//! [limit=IMAGES] [hidden=512,512]`
//!
//! `noop` (built with `--features noop`) trains on wgpu's noop backend, which runs no shader:
//! its epoch is the host's cost of recording and submitting the GPU steps. On a GPU backend each
//! epoch also prints the dispatches, compute passes, submits and newly made bind groups per step,
//! and with `ENGINE_GPU_PROFILE=1` a line `kernel NAME SHARE% US/step` for each kernel: its
//! share of the epoch's GPU time, measured by timestamp queries (which slow the epoch down).

use engine::Device;
use engine::data::{self, InputContract, Normalization};
use engine::train::{self, Event, LrSchedule, OptimizerKind, TrainConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let epochs: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(3);
    let device = if args.iter().any(|a| a == "noop") {
        noop()?
    } else if args.iter().any(|a| a == "gpu") {
        gpu()?
    } else {
        Device::Cpu
    };
    let dropout = if args.iter().any(|a| a == "dropout") { 0.2 } else { 0.0 };
    let value = |key: &str| args.iter().find_map(|a| a.strip_prefix(key)?.strip_prefix('='));
    let train_limit = value("limit").map(str::parse).transpose()?;
    let hidden = match value("hidden") {
        Some(sizes) => sizes.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![512, 512],
    };
    let data = data::load(std::env::var_os("ENGINE_DATA_DIR").as_deref().map(std::path::Path::new))?;
    let config = TrainConfig {
        epochs,
        batch_size: 128,
        lr: 1e-3,
        optimizer: OptimizerKind::Adam,
        momentum: 0.0,
        weight_decay: 0.0,
        dropout,
        lr_schedule: LrSchedule::Constant,
        normalize: Normalization::Unit,
        model: engine::nn::Architecture::Mlp,
        hidden: hidden.clone(),
        seed: 0,
        val_split: 0.0,
        train_limit,
        early_stop_patience: None,
    };
    println!(
        "device {device:?}  threads {}  batch 128  hidden {hidden:?}  dropout {dropout}  images {}",
        rayon::current_num_threads(),
        train_limit.map_or(data.train.len(), |l: usize| l.min(data.train.len()))
    );
    let mut counts = Counts::new(&device);
    let mut report = |event: Event| {
        match event {
            Event::EpochStart { steps, .. } => counts.start(steps),
            Event::EpochEnd(m) => {
                println!(
                    "epoch {}  {:.3} s  {:.1} us/step  {:.0} samples/s  train_loss {:.4}{}",
                    m.epoch,
                    m.seconds,
                    m.seconds * 1e6 / counts.steps.max(1) as f64,
                    m.samples_per_second,
                    m.train_loss,
                    counts.report()
                );
                counts.print_kernels();
            }
            Event::Step { .. } => {}
        }
        Ok(())
    };
    train::fit(&config, &data.train, &InputContract::fashion_mnist(), &device, &mut report)?;
    Ok(())
}

/// Dispatches, passes and submits per step over one epoch, on a GPU device.
struct Counts {
    #[cfg(feature = "gpu")]
    ctx: Option<std::sync::Arc<engine::backend::gpu::GpuContext>>,
    #[cfg(feature = "gpu")]
    start: engine::backend::gpu::GpuStats,
    #[cfg(feature = "gpu")]
    kernels_start: Vec<engine::backend::gpu::KernelTime>,
    steps: usize,
}

#[cfg(feature = "gpu")]
impl Counts {
    fn new(device: &Device) -> Counts {
        let ctx = match device {
            Device::Gpu(ctx) => Some(ctx.clone()),
            Device::Cpu => None,
        };
        Counts { ctx, start: Default::default(), kernels_start: Vec::new(), steps: 0 }
    }

    fn start(&mut self, steps: usize) {
        self.steps = steps;
        self.start = self.ctx.as_ref().map(|c| c.stats()).unwrap_or_default();
        self.kernels_start = self.ctx.as_ref().and_then(|c| c.kernel_times()).unwrap_or_default();
    }

    /// Each kernel's share of the epoch's GPU time, the largest first, when profiling.
    fn print_kernels(&self) {
        let Some(now) = self.ctx.as_ref().and_then(|c| c.kernel_times()) else { return };
        let before = |k| self.kernels_start.iter().find(|t| t.kernel == k).map_or(0.0, |t| t.seconds);
        let mut epoch: Vec<_> = now.iter().map(|t| (t.kernel, t.seconds - before(t.kernel))).collect();
        epoch.sort_by(|a, b| b.1.total_cmp(&a.1));
        let total: f64 = epoch.iter().map(|(_, s)| s).sum::<f64>().max(f64::MIN_POSITIVE);
        for (kernel, seconds) in epoch {
            let per_step = seconds * 1e6 / self.steps.max(1) as f64;
            println!("kernel {kernel:?} {:.1}% {per_step:.1}", 100.0 * seconds / total);
        }
    }

    fn report(&self) -> String {
        let Some(ctx) = &self.ctx else { return String::new() };
        let (now, steps) = (ctx.stats(), self.steps.max(1) as f64);
        let per_step = |now: u64, then: u64| (now - then) as f64 / steps;
        format!(
            "  dispatches/step {:.2}  passes/step {:.2}  submits/step {:.3}  new_bind_groups/step {:.2}",
            per_step(now.dispatches, self.start.dispatches),
            per_step(now.passes, self.start.passes),
            per_step(now.submits, self.start.submits),
            per_step(now.bind_groups, self.start.bind_groups)
        )
    }
}

#[cfg(not(feature = "gpu"))]
impl Counts {
    fn new(_: &Device) -> Counts {
        Counts { steps: 0 }
    }

    fn start(&mut self, steps: usize) {
        self.steps = steps;
    }

    fn report(&self) -> String {
        String::new()
    }

    fn print_kernels(&self) {}
}

/// The GPU, after printing how long it took to open: every kernel's pipeline is built then,
/// from the driver's cache on disk when an earlier run left one.
#[cfg(feature = "gpu")]
fn gpu() -> Result<Device, Box<dyn std::error::Error>> {
    let start = std::time::Instant::now();
    let ctx = engine::backend::gpu::GpuContext::new()?;
    println!("open {:.3} s", start.elapsed().as_secs_f64());
    Ok(Device::Gpu(ctx))
}

#[cfg(not(feature = "gpu"))]
fn gpu() -> Result<Device, Box<dyn std::error::Error>> {
    Err("built without the gpu feature".into())
}

#[cfg(feature = "noop")]
fn noop() -> Result<Device, Box<dyn std::error::Error>> {
    Ok(Device::Gpu(engine::backend::gpu::GpuContext::noop()?))
}

#[cfg(not(feature = "noop"))]
fn noop() -> Result<Device, Box<dyn std::error::Error>> {
    Err("the noop backend needs a build with `--features noop`".into())
}
