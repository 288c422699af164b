//! Training that stops, saves a checkpoint and goes on gives the bits of training without a
//! stop (what successive halving relies on to promote a trial), with SGD's momentum and Adam's
//! moments, on the CPU and the GPU; a checkpoint of another run or a damaged file is refused.

#[path = "common/devices.rs"]
#[allow(dead_code)]
mod devices;

use engine::Device;
use engine::data::{Dataset, IMAGE_PIXELS, InputContract, Normalization};
use engine::rng::Rng;
use engine::train::{self, Checkpoint, LrSchedule, OptimizerKind, TrainConfig, TrainError};

fn data(n: usize) -> Dataset {
    let mut rng = Rng::new(11);
    Dataset {
        pixels: (0..n * IMAGE_PIXELS).map(|_| rng.below(256) as u8).collect(),
        labels: (0..n).map(|_| rng.below(10) as u8).collect(),
    }
}

fn config(optimizer: OptimizerKind, epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        lr: 0.01,
        optimizer,
        momentum: 0.9,
        weight_decay: 0.0,
        dropout: 0.2,
        lr_schedule: LrSchedule::Constant,
        normalize: Normalization::Unit,
        model: engine::nn::Architecture::Mlp,
        hidden: vec![24],
        seed: 5,
        val_split: 0.25,
        train_limit: None,
        early_stop_patience: None,
    }
}

fn weights(trained: &train::Trained) -> Vec<Vec<f32>> {
    trained.model.parameters().iter().map(|p| p.to_vec().unwrap()).collect()
}

fn continuing_equals_training_at_once(device: &Device) {
    let data = data(150);
    let dir = std::env::temp_dir().join(format!("engine-checkpoint-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for optimizer in [OptimizerKind::Sgd, OptimizerKind::Adam] {
        let at_once =
            train::fit(&config(optimizer, 3), &data, &InputContract::fashion_mnist(), device, &mut |_| Ok(())).unwrap();

        let (first, checkpoint) =
            train::fit_from(&config(optimizer, 2), &data, &InputContract::fashion_mnist(), device, None, &mut |_| {
                Ok(())
            })
            .unwrap();
        assert_eq!(first.history.len(), 2);
        let path = dir.join(format!("{optimizer}.ckpt"));
        checkpoint.save(&path).unwrap();
        let loaded = Checkpoint::load(&path).unwrap();
        assert_eq!(loaded.epochs_done(), 2);
        let mut seen = Vec::new();
        let mut observe = |e: train::Event| {
            if let train::Event::EpochEnd(m) = e {
                seen.push(m.epoch);
            }
            Ok(())
        };
        let (continued, after) = train::fit_from(
            &config(optimizer, 3),
            &data,
            &InputContract::fashion_mnist(),
            device,
            Some(loaded),
            &mut observe,
        )
        .unwrap();
        assert_eq!(seen, [3], "{optimizer}: only the new epoch is trained");
        assert_eq!(after.epochs_done(), 3);
        assert_eq!(weights(&continued), weights(&at_once), "{optimizer} on {device:?}: continued weights");
        let losses = |t: &train::Trained| t.history.iter().map(|m| (m.train_loss, m.val_loss)).collect::<Vec<_>>();
        assert_eq!(losses(&continued), losses(&at_once), "{optimizer}: every epoch's losses");
        // From scratch, the third epoch would not match: the checkpoint is what carried it.
        let scratch =
            train::fit(&config(optimizer, 1), &data, &InputContract::fashion_mnist(), device, &mut |_| Ok(())).unwrap();
        assert_ne!(weights(&scratch), weights(&at_once));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn continuing_from_a_checkpoint_equals_training_at_once_on_the_cpu() {
    continuing_equals_training_at_once(&Device::Cpu);
}

#[test]
fn continuing_from_a_checkpoint_equals_training_at_once_on_the_gpu() {
    let Some(gpu) = devices::gpu() else { return };
    continuing_equals_training_at_once(&gpu);
}

#[test]
fn a_checkpoint_of_other_settings_or_a_damaged_file_is_refused() {
    let data = data(60);
    let sgd = config(OptimizerKind::Sgd, 1);
    let (_, checkpoint) =
        train::fit_from(&sgd, &data, &InputContract::fashion_mnist(), &Device::Cpu, None, &mut |_| Ok(())).unwrap();
    let other = TrainConfig { lr: 0.02, epochs: 2, ..sgd.clone() };
    let refused = train::fit_from(
        &other,
        &data,
        &InputContract::fashion_mnist(),
        &Device::Cpu,
        Some(checkpoint.clone()),
        &mut |_| Ok(()),
    );
    match refused {
        Err(TrainError::Checkpoint(e)) => assert!(e.to_string().contains("lr"), "{e}"),
        Err(e) => panic!("expected a checkpoint mismatch, got {e}"),
        Ok(_) => panic!("a checkpoint of another learning rate continued"),
    }

    let path = std::env::temp_dir().join(format!("engine-checkpoint-damaged-{}.ckpt", std::process::id()));
    checkpoint.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let e = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(e.contains("ends in its numbers"), "{e}");
    std::fs::write(&path, b"not a checkpoint").unwrap();
    let e = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(e.contains("is not a training checkpoint"), "{e}");
    let _ = std::fs::remove_file(&path);
}
