//! Tensors on the GPU against the same tensors on the CPU: every op's forward and backward,
//! one optimizer step of the MLP, and a short `engine train --device gpu` run. On a machine
//! without an adapter these tests skip with a printed reason, unless `ENGINE_REQUIRE_GPU=1`.
#![cfg(feature = "gpu")]

#[path = "common/devices.rs"]
#[allow(dead_code)]
mod devices;

use devices::gpu;
use engine::nn::{Description, ImageShape, Network};
use engine::optim::{Adam, Optimizer, Sgd};
use engine::rng::Rng;
use engine::tensor::RunningLoss;
use engine::train::TrainError;
use engine::{Device, Tensor};

fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

fn assert_close(what: &str, gpu: &[f32], cpu: &[f32]) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths");
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        assert!((g - c).abs() <= 1e-4 * (1.0 + c.abs()), "{what}[{i}]: gpu {g} vs cpu {c}");
    }
}

/// Runs `f` on variables with the same values on both devices; compares outputs and gradients.
fn same_on_both(device: &Device, shapes: &[&[usize]], f: impl Fn(&[Tensor]) -> engine::Result<Tensor>, what: &str) {
    let run = |device: &Device| {
        let vars: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| Tensor::variable(random(s.iter().product(), i as u64 + 1), s, device).unwrap())
            .collect();
        let out = f(&vars).unwrap();
        let probe = Tensor::from_vec(random(out.len(), 99), out.shape(), device).unwrap();
        let loss = out.mul(&probe).unwrap().sum().unwrap();
        let grads = loss.backward().unwrap();
        let grads: Vec<Vec<f32>> = vars.iter().map(|v| grads.get(v).unwrap().to_vec().unwrap()).collect();
        (out.to_vec().unwrap(), grads)
    };
    let (gpu_out, gpu_grads) = run(device);
    let (cpu_out, cpu_grads) = run(&Device::Cpu);
    assert_close(&format!("{what} forward"), &gpu_out, &cpu_out);
    for (i, (g, c)) in gpu_grads.iter().zip(&cpu_grads).enumerate() {
        assert_close(&format!("{what} gradient of input {i}"), g, c);
    }
}

#[test]
fn every_op_and_its_backward_matches_the_cpu() {
    let Some(device) = gpu() else { return };
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        let (m, k, n) = (67, 130, 33);
        let a: &[usize] = if ta { &[k, m] } else { &[m, k] };
        let b: &[usize] = if tb { &[n, k] } else { &[k, n] };
        same_on_both(&device, &[a, b], |v| v[0].matmul_t(&v[1], ta, tb), &format!("matmul ta={ta} tb={tb}"));
    }
    same_on_both(&device, &[&[67, 130], &[33, 130], &[33]], |v| v[0].linear(&v[1], &v[2], false), "linear");
    same_on_both(&device, &[&[67, 130], &[33, 130], &[33]], |v| v[0].linear(&v[1], &v[2], true), "linear + relu");
    for also_h1 in [false, true] {
        same_on_both(
            &device,
            &[&[67, 130], &[33, 130], &[33], &[33, 33], &[33]],
            |v| {
                let h1 = v[0].linear(&v[1], &v[2], true)?;
                let h2 = h1.linear(&v[3], &v[4], true)?;
                if also_h1 { h2.add(&h1) } else { Ok(h2) }
            },
            &format!("stacked relu layers, h1 also an output: {also_h1}"),
        );
    }
    same_on_both(&device, &[&[9, 13], &[13]], |v| v[0].add_bias(&v[1]), "add_bias");
    same_on_both(&device, &[&[5, 7]], |v| v[0].relu(), "relu");
    same_on_both(&device, &[&[33, 70]], |v| v[0].dropout(0.4, &mut Rng::new(3)), "dropout");
    same_on_both(&device, &[&[5, 7]], |v| v[0].scale(-1.5), "scale");
    same_on_both(&device, &[&[5, 7], &[5, 7]], |v| v[0].add(&v[1]), "add");
    same_on_both(&device, &[&[5, 7], &[5, 7]], |v| v[0].mul(&v[1]), "mul");
    same_on_both(&device, &[&[5, 7]], |v| v[0].sum(), "sum");
    same_on_both(&device, &[&[5, 7]], |v| v[0].mean(), "mean");
    same_on_both(&device, &[&[5, 7]], |v| v[0].sum_rows(), "sum_rows");
    same_on_both(&device, &[&[6, 10]], |v| v[0].softmax(), "softmax");
    same_on_both(&device, &[&[3, 3]], |v| v[0].mul(&v[0])?.add(&v[0]), "a tensor used twice");
    same_on_both(&device, &[&[3, 5, 9, 7], &[6, 5, 3, 3], &[6]], |v| v[0].conv2d(&v[1], &v[2], 1), "conv2d");
    same_on_both(&device, &[&[2, 3, 7, 6]], |v| v[0].max_pool2d(), "max_pool2d");
    same_on_both(&device, &[&[2, 3, 4], &[5, 12]], |v| v[0].reshape(&[2, 12])?.matmul_t(&v[1], false, true), "reshape");
    let labels = |device: &Device| Tensor::from_vec(vec![3.0, 0.0, 9.0, 9.0, 1.0, 4.0], &[6], device).unwrap();
    let (gpu_labels, cpu_labels) = (labels(&device), labels(&Device::Cpu));
    same_on_both(
        &device,
        &[&[6, 10]],
        |v| v[0].cross_entropy(if v[0].device() == Device::Cpu { &cpu_labels } else { &gpu_labels }),
        "cross_entropy",
    );
}

#[test]
fn an_accumulator_adds_in_place_on_both_devices() {
    let Some(device) = gpu() else { return };
    let run = |device: &Device| {
        let acc = Tensor::from_vec(vec![1.0, -2.0, 0.5], &[3], device).unwrap();
        let x = Tensor::from_vec(vec![0.25, 4.0, -1.0], &[3], device).unwrap();
        acc.add_scaled_in_place(&x, 3.0).unwrap();
        acc.add_scaled_in_place(&x, -0.5).unwrap();
        assert!(acc.add_scaled_in_place(&acc, 1.0).is_err(), "its own operand");
        let tracked = Tensor::variable(vec![0.0; 3], &[3], device).unwrap();
        assert!(tracked.add_scaled_in_place(&x, 1.0).is_err(), "a tensor of the graph");
        let short = Tensor::from_vec(vec![0.0; 2], &[2], device).unwrap();
        assert!(acc.add_scaled_in_place(&short, 1.0).is_err(), "another shape");
        acc.to_vec().unwrap()
    };
    assert_close("accumulator", &run(&device), &run(&Device::Cpu));
    assert_close("accumulator", &run(&Device::Cpu), &[1.625, 8.0, -2.0]);
}

#[test]
fn mixing_devices_is_an_error() {
    let Some(device) = gpu() else { return };
    let a = Tensor::from_vec(vec![1.0; 4], &[2, 2], &device).unwrap();
    let b = Tensor::from_vec(vec![1.0; 4], &[2, 2], &Device::Cpu).unwrap();
    assert!(matches!(a.matmul(&b), Err(engine::Error::DeviceMismatch("matmul"))));
    assert!(matches!(a.add(&b), Err(engine::Error::DeviceMismatch("add"))));
}

/// Two forward, backward and optimizer steps of the MLP (with dropout when `dropout` > 0), the
/// last layer and the loss as one op whose losses go into a running sum; returns every
/// parameter after them, then that sum.
fn one_step(device: &Device, optimizer: &str, dropout: f32) -> Vec<Vec<f32>> {
    let mlp = Description::mlp(ImageShape::FASHION_MNIST, &[96, 40], 10).unwrap();
    let mlp = Network::new(mlp, dropout, &mut Rng::new(5), device).unwrap();
    let mut masks = Rng::new(8);
    let x = Tensor::from_vec(random(50 * 784, 6), &[50, 784], device).unwrap();
    let y: Vec<f32> = (0..50).map(|i| (i * 7 % 10) as f32).collect();
    let y = Tensor::from_vec(y, &[50], device).unwrap();
    let mut opt: Box<dyn Optimizer> = match optimizer {
        "adam" => Box::new(Adam::new(mlp.parameters(), 1e-2, 1e-3)),
        _ => Box::new(Sgd::new(mlp.parameters(), 0.1, 0.9, 1e-3)),
    };
    let sum = Tensor::from_vec(vec![f32::NAN], &[], device).unwrap();
    for step in 0..2 {
        let running = RunningLoss { sum: &sum, scale: 50.0, restart: step == 0 };
        let loss = mlp.training_loss(&x, &y, &mut masks, Some(running)).unwrap();
        let grads = loss.backward().unwrap();
        engine::no_grad(|| opt.step(&grads)).unwrap();
    }
    let mut values: Vec<Vec<f32>> = mlp.parameters().iter().map(|p| p.to_vec().unwrap()).collect();
    values.push(sum.to_vec().unwrap());
    values
}

#[test]
fn training_steps_on_the_gpu_equal_those_on_the_cpu() {
    let Some(device) = gpu() else { return };
    for (optimizer, dropout) in [("adam", 0.0), ("sgd", 0.0), ("adam", 0.3)] {
        let (gpu, cpu) = (one_step(&device, optimizer, dropout), one_step(&Device::Cpu, optimizer, dropout));
        for (i, (g, c)) in gpu.iter().zip(&cpu).enumerate() {
            assert_close(&format!("{optimizer}, dropout {dropout}: parameter {i} after two steps"), g, c);
        }
    }
}

/// Two SGD steps of a small CNN with dropout; returns every parameter after them.
fn cnn_steps(device: &Device) -> Vec<Vec<f32>> {
    let cnn = Description::cnn(ImageShape::FASHION_MNIST, [4, 6, 16], 10).unwrap();
    let cnn = Network::new(cnn, 0.25, &mut Rng::new(5), device).unwrap();
    let mut masks = Rng::new(8);
    let x = Tensor::from_vec(random(12 * 784, 6), &[12, 784], device).unwrap();
    let y = Tensor::from_vec((0..12).map(|i| (i * 7 % 10) as f32).collect(), &[12], device).unwrap();
    let mut opt = Sgd::new(cnn.parameters(), 0.1, 0.9, 1e-3);
    for _ in 0..2 {
        let grads = cnn.forward_train(&x, &mut masks).unwrap().cross_entropy(&y).unwrap().backward().unwrap();
        engine::no_grad(|| opt.step(&grads)).unwrap();
    }
    cnn.parameters().iter().map(|p| p.to_vec().unwrap()).collect()
}

#[test]
fn cnn_training_steps_on_the_gpu_equal_those_on_the_cpu() {
    let Some(device) = gpu() else { return };
    for (i, (g, c)) in cnn_steps(&device).iter().zip(&cnn_steps(&Device::Cpu)).enumerate() {
        assert_close(&format!("CNN parameter {i} after two steps"), g, c);
    }
}

#[test]
fn engine_train_on_the_gpu_reaches_the_cpu_accuracy() {
    if gpu().is_none() {
        return;
    }
    let run = |device: &str| {
        let out = std::env::temp_dir().join(format!("engine-gpu-train-{device}-{}", std::process::id()));
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(["train", "--device", device, "--epochs", "1", "--train-limit", "3000", "--hidden", "64", "--json"])
            .arg("--output-dir")
            .arg(&out)
            .env("ENGINE_LOCAL_STORE", out.join("store"))
            .env("ENGINE_ALLOW_SOFTWARE_GPU", "1") // lavapipe, where there is no GPU
            .env_remove("MLFLOW_TRACKING_URI")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        let _ = std::fs::remove_dir_all(&out);
        (summary["test_accuracy"].as_f64().unwrap(), summary["device"].as_str().unwrap().to_string())
    };
    let ((gpu_accuracy, gpu_device), (cpu_accuracy, _)) = (run("gpu"), run("cpu"));
    assert!(gpu_device.starts_with("gpu"), "{gpu_device}");
    assert!((gpu_accuracy - cpu_accuracy).abs() <= 0.005, "gpu {gpu_accuracy} vs cpu {cpu_accuracy}");
}

/// Every parameter of a model, in order.
type Parameters = Vec<Vec<f32>>;

/// The training loop's progress events and its end on `device`, 40 steps of batch 128 at `lr`
/// with `dropout`: the trained parameters, or the error.
fn fit_events(device: &Device, lr: f64, dropout: f64) -> (Vec<(usize, f32)>, Result<Parameters, TrainError>) {
    use engine::train::{self, Event, LrSchedule, OptimizerKind, TrainConfig};
    let data = engine::data::load(None).expect("FashionMNIST");
    let config = TrainConfig {
        epochs: 1,
        batch_size: 128,
        lr,
        optimizer: OptimizerKind::Adam,
        momentum: 0.0,
        weight_decay: 0.0,
        dropout,
        lr_schedule: LrSchedule::Constant,
        normalize: engine::data::Normalization::Unit,
        model: engine::nn::Architecture::Mlp,
        hidden: vec![32],
        seed: 5,
        val_split: 0.0,
        train_limit: Some(40 * 128),
        early_stop_patience: None,
    };
    let mut steps = Vec::new();
    let mut observe = |event: Event| {
        if let Event::Step { step, loss, .. } = event {
            steps.push((step, loss));
        }
        Ok(())
    };
    let end = train::fit(&config, &data.train, &engine::data::InputContract::fashion_mnist(), device, &mut observe);
    (steps, end.map(|trained| trained.model.parameters().iter().map(|p| p.to_vec().unwrap()).collect()))
}

#[test]
fn training_with_the_batch_gathered_in_the_first_layer_equals_the_cpu_with_dropout() {
    let Some(device) = gpu() else { return };
    // On a GPU each batch is gathered inside the first layer's product, and dropout follows it:
    // the same masks as the CPU's, so the same parameters after 40 steps.
    let ((_, gpu), (_, cpu)) = (fit_events(&device, 1e-3, 0.3), fit_events(&Device::Cpu, 1e-3, 0.3));
    for (i, (g, c)) in gpu.unwrap().iter().zip(&cpu.unwrap()).enumerate() {
        assert_close(&format!("parameter {i} after 40 steps with dropout"), g, c);
    }
}

#[test]
fn the_gpu_loss_is_read_a_window_late_with_the_same_losses_and_nan_check() {
    let Some(device) = gpu() else { return };
    // A GPU reads the loss every 32 steps, while the next window runs; the last window at the
    // epoch's end. Its window means match the CPU's per-step losses.
    let (gpu_steps, end) = fit_events(&device, 1e-3, 0.0);
    assert!(end.is_ok(), "{:?}", end.err());
    let (cpu_steps, _) = fit_events(&Device::Cpu, 1e-3, 0.0);
    assert_eq!(gpu_steps.iter().map(|s| s.0).collect::<Vec<_>>(), [32, 40]);
    for (&(step, loss), first) in gpu_steps.iter().zip([0, 32]) {
        let cpu: f32 = cpu_steps[first..step].iter().map(|s| s.1).sum::<f32>() / (step - first) as f32;
        assert!((loss - cpu).abs() <= 1e-3 * cpu.abs(), "window to step {step}: gpu {loss} vs cpu {cpu}");
    }

    // Diverging: the window with the first NaN or infinity is reported with its own step and the same
    // message as on the CPU, which stops at the step itself.
    let (gpu_steps, gpu_end) = fit_events(&device, 1e30, 0.0);
    let (_, cpu_end) = fit_events(&Device::Cpu, 1e30, 0.0);
    let (gpu_error, cpu_error) = (gpu_end.unwrap_err().to_string(), cpu_end.unwrap_err().to_string());
    let step = |message: &str| message.split("step ").nth(1).and_then(|s| s.split(':').next()?.parse::<usize>().ok());
    let (gpu_step, cpu_step) = (step(&gpu_error).expect(&gpu_error), step(&cpu_error).expect(&cpu_error));
    assert!(gpu_error.starts_with("the loss became ") && gpu_error.contains(" at epoch 1, step "), "{gpu_error}");
    assert!(gpu_error.ends_with("training diverged; try a smaller --lr"), "{gpu_error}");
    assert_eq!(gpu_step, if cpu_step <= 32 { 32 } else { 40 }, "gpu: {gpu_error}; cpu: {cpu_error}");
    assert!(gpu_steps.iter().all(|s| s.1.is_finite() && s.0 < gpu_step), "{gpu_steps:?}");
}
