//! Training throughput on the real FashionMNIST training set, measured like the PyTorch anchor
//! (`shared/anchors/cpu/train.py --loader preloaded`): the default 784-512-512-10 MLP, Adam 1e-3,
//! batch 128, all 60,000 images per epoch, no validation or evaluation inside the timing.
//!
//! `RAYON_NUM_THREADS=1 cargo bench --bench train -- [epochs]`

use std::time::Instant;

use engine::data::{self, IMAGE_PIXELS, Normalization};
use engine::nn::Mlp;
use engine::optim::{Adam, Optimizer};
use engine::rng::Rng;
use engine::{Device, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let epochs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3);
    let data = data::load(std::env::var_os("ENGINE_DATA_DIR").as_deref().map(std::path::Path::new))?;
    let train = data.train;
    let device = Device::Cpu;
    let mut rng = Rng::new(0);
    let model = Mlp::new(IMAGE_PIXELS, &[512, 512], 10, 0.0, &mut rng, &device)?;
    let mut optimizer = Adam::new(model.parameters(), 1e-3, 0.0);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let (mut inputs, mut labels) = (Vec::new(), Vec::new());
    println!("threads {}  batch 128  images {}", rayon::current_num_threads(), train.len());
    for epoch in 1..=epochs {
        rng.shuffle(&mut order);
        let start = Instant::now();
        let mut loss_sum = 0.0;
        for batch in order.chunks(128) {
            data::gather_batch(&train, batch, Normalization::Unit, &mut inputs, &mut labels);
            let x = Tensor::from_vec(std::mem::take(&mut inputs), &[batch.len(), IMAGE_PIXELS], &device)?;
            let y = Tensor::from_vec(std::mem::take(&mut labels), &[batch.len()], &device)?;
            let loss = model.forward(&x)?.cross_entropy(&y)?;
            loss_sum += loss.to_scalar()? as f64 * batch.len() as f64;
            let grads = loss.backward()?;
            engine::no_grad(|| optimizer.step(&grads))?;
        }
        let seconds = start.elapsed().as_secs_f64();
        println!(
            "epoch {epoch}  {seconds:.3} s  {:.0} samples/s  train_loss {:.4}",
            train.len() as f64 / seconds,
            loss_sum / train.len() as f64
        );
    }
    Ok(())
}
