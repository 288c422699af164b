//! Training that stops, saves a checkpoint and goes on gives the bits of training without a
//! stop (what successive halving relies on to promote a trial), with SGD's momentum and Adam's
//! moments, and a cosine learning rate annealed over the planned epochs, on the CPU and the GPU;
//! a checkpoint of another run or plan, or a damaged file, is refused.

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

fn config(optimizer: OptimizerKind, lr_schedule: LrSchedule, epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        lr: 0.01,
        optimizer,
        momentum: 0.9,
        weight_decay: 0.0,
        dropout: 0.2,
        lr_schedule,
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
    let cases = [
        (OptimizerKind::Sgd, LrSchedule::Constant),
        (OptimizerKind::Adam, LrSchedule::Constant),
        (OptimizerKind::Sgd, LrSchedule::Cosine),
    ];
    for (optimizer, schedule) in cases {
        let config = |epochs| config(optimizer, schedule, epochs);
        let at_once = train::fit(&config(3), &data, &InputContract::fashion_mnist(), device, &mut |_| Ok(())).unwrap();

        // Two epochs of a training planned for three.
        let (first, checkpoint) =
            train::fit_from(&config(2), &data, &InputContract::fashion_mnist(), device, None, Some(3), &mut |_| Ok(()))
                .unwrap();
        assert_eq!(first.history.len(), 2);
        let path = dir.join(format!("{optimizer}-{schedule}.ckpt"));
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
            &config(3),
            &data,
            &InputContract::fashion_mnist(),
            device,
            Some(loaded),
            None,
            &mut observe,
        )
        .unwrap();
        assert_eq!(seen, [3], "{optimizer} {schedule}: only the new epoch is trained");
        assert_eq!(after.epochs_done(), 3);
        assert_eq!(weights(&continued), weights(&at_once), "{optimizer} {schedule} on {device:?}: continued weights");
        let losses = |t: &train::Trained| {
            t.history.iter().map(|m| (m.train_loss, m.val_loss, m.learning_rate)).collect::<Vec<_>>()
        };
        assert_eq!(losses(&continued), losses(&at_once), "{optimizer} {schedule}: every epoch's losses and rate");
        // From scratch, the third epoch would not match: the checkpoint is what carried it.
        let scratch = train::fit(&config(1), &data, &InputContract::fashion_mnist(), device, &mut |_| Ok(())).unwrap();
        assert_ne!(weights(&scratch), weights(&at_once));
        if schedule == LrSchedule::Cosine {
            // Annealed over its own two epochs, the first part ends where the whole does not.
            let alone =
                train::fit(&config(2), &data, &InputContract::fashion_mnist(), device, &mut |_| Ok(())).unwrap();
            assert_ne!(losses(&alone), losses(&first), "the first part followed the 3-epoch curve");
            assert_eq!(losses(&first)[..], losses(&at_once)[..2], "the first part is the run's first two epochs");
        }
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
    let sgd = config(OptimizerKind::Sgd, LrSchedule::Cosine, 1);
    let (_, checkpoint) =
        train::fit_from(&sgd, &data, &InputContract::fashion_mnist(), &Device::Cpu, None, Some(3), &mut |_| Ok(()))
            .unwrap();
    let refused = |config: &TrainConfig, planned: Option<usize>, says: &str| {
        let start = Some(checkpoint.clone());
        match train::fit_from(config, &data, &InputContract::fashion_mnist(), &Device::Cpu, start, planned, &mut |_| {
            Ok(())
        }) {
            Err(TrainError::Checkpoint(e)) => assert!(e.to_string().contains(says), "{e}"),
            Err(e) => panic!("expected a checkpoint refusal, got {e}"),
            Ok(_) => panic!("a checkpoint of other settings continued ({says})"),
        }
    };
    let two = TrainConfig { epochs: 2, ..sgd.clone() };
    refused(&TrainConfig { lr: 0.02, ..two.clone() }, Some(3), "(lr differs)");
    refused(&two, Some(4), "(planned epochs differs)");
    refused(&two, None, "(planned epochs differs)");
    refused(&TrainConfig { epochs: 4, ..sgd.clone() }, Some(3), "planned for 3 epochs, fewer than the 4");

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
