//! Inference over the 10,000 FashionMNIST test images with the default 784-512-512-10 MLP, like
//! the PyTorch anchor (`shared/anchors/cpu/infer.py`): a preloaded `f32` test set sliced into
//! batches of 10,000 and of 64, forward pass and argmax, no gradients.
//! `RAYON_NUM_THREADS=1 cargo bench --bench infer`
//!
//! The weights are a seeded random initialisation, as in the anchor. A trained model's hidden
//! activations hold more zeros, which the CPU matmul skips: `ENGINE_BENCH_MODEL=DIR` times the
//! model directory `DIR` (with its own input normalisation) instead.

use criterion::{Criterion, criterion_group, criterion_main};
use engine::backend::ChannelAffine;
use engine::data::{self, IMAGE_PIXELS, InputContract, Normalization};
use engine::nn::{Description, ImageShape, Network};
use engine::rng::Rng;
use engine::{Device, Tensor};

fn inference(c: &mut Criterion) {
    let test = data::load(None).expect("FashionMNIST (see README)").test;
    let (model, contract, normalization) = match std::env::var_os("ENGINE_BENCH_MODEL") {
        Some(dir) => {
            let (model, metadata) =
                engine::model::load_model_dir(dir.as_ref(), &Device::Cpu).expect("a model directory");
            (model, metadata.input_contract(), metadata.normalize)
        }
        None => {
            let mlp = Description::mlp(ImageShape::FASHION_MNIST, &[512, 512], 10).unwrap();
            let model = Network::new(mlp, 0.0, &mut Rng::new(0), &Device::Cpu).unwrap();
            (model, InputContract::fashion_mnist(), Normalization::Unit)
        }
    };
    let indices: Vec<usize> = (0..test.len()).collect();
    let (mut inputs, mut labels) = (Vec::new(), Vec::new());
    let affine = ChannelAffine::new(&contract.affine(normalization)).expect("one channel");
    data::gather_batch(&test, &indices, &affine, &mut inputs, &mut labels);
    let mut group = c.benchmark_group("inference_10k");
    group.sample_size(10);
    for batch in [10_000, 64] {
        // Preloaded like the anchor's float tensor: batches are built before the timing.
        let batches: Vec<(Tensor, &[f32])> = inputs
            .chunks(batch * IMAGE_PIXELS)
            .zip(labels.chunks(batch))
            .map(|(rows, ys)| (Tensor::from_vec(rows.to_vec(), &[ys.len(), IMAGE_PIXELS], &Device::Cpu).unwrap(), ys))
            .collect();
        group.bench_function(format!("batch{batch}"), |b| {
            b.iter(|| {
                engine::no_grad(|| {
                    let mut correct = 0;
                    for (x, ys) in &batches {
                        let predicted = model.forward(x).unwrap().argmax().unwrap();
                        correct += predicted.iter().zip(*ys).filter(|(p, y)| **p as f32 == **y).count();
                    }
                    correct
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, inference);
criterion_main!(benches);
