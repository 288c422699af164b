//! Training throughput on the real FashionMNIST training set, measured like the PyTorch anchor
//! (`shared/anchors/cpu/train.py --loader preloaded`): the default 784-512-512-10 MLP, Adam 1e-3,
//! batch 128, all 60,000 images per epoch, no validation or evaluation inside the timing. It runs
//! the real training loop (`engine::train::fit`), so the numbers are those of `engine train`.
//!
//! `RAYON_NUM_THREADS=1 cargo bench --bench train -- [epochs] [cpu|gpu]`

use engine::Device;
use engine::data::{self, Normalization};
use engine::train::{self, Event, LrSchedule, OptimizerKind, TrainConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let epochs: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(3);
    let device = if args.iter().any(|a| a == "gpu") { gpu()? } else { Device::Cpu };
    let data = data::load(std::env::var_os("ENGINE_DATA_DIR").as_deref().map(std::path::Path::new))?;
    let config = TrainConfig {
        epochs,
        batch_size: 128,
        lr: 1e-3,
        optimizer: OptimizerKind::Adam,
        momentum: 0.0,
        weight_decay: 0.0,
        dropout: 0.0,
        lr_schedule: LrSchedule::Constant,
        normalize: Normalization::Unit,
        hidden: vec![512, 512],
        seed: 0,
        val_split: 0.0,
        train_limit: None,
        early_stop_patience: None,
    };
    println!("device {device:?}  threads {}  batch 128  images {}", rayon::current_num_threads(), data.train.len());
    let mut report = |event: Event| {
        if let Event::EpochEnd(m) = event {
            println!(
                "epoch {}  {:.3} s  {:.0} samples/s  train_loss {:.4}",
                m.epoch, m.seconds, m.samples_per_second, m.train_loss
            );
        }
        Ok(())
    };
    train::fit(&config, &data.train, &device, &mut report)?;
    Ok(())
}

#[cfg(feature = "gpu")]
fn gpu() -> Result<Device, Box<dyn std::error::Error>> {
    Ok(Device::Gpu(engine::backend::gpu::GpuContext::new()?))
}

#[cfg(not(feature = "gpu"))]
fn gpu() -> Result<Device, Box<dyn std::error::Error>> {
    Err("built without the gpu feature".into())
}
