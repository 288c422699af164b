//! One description of a network, every way of running it. For MLPs of one to three hidden layers
//! (built with and without dropout, which evaluation skips), the CNN, and a CNN and an MLP of
//! 3-channel 21x17 images, the probabilities of `Network::forward` are those of the network read
//! back from its model directory and of the server's model (bit for bit on the CPU, within
//! 1e-4 on the GPU), and of the directory's `model.onnx` run by the real onnxruntime; for the
//! CNNs also those of a NumPy rewrite of PyTorch's `nn.Sequential` fed `model.safetensors` by
//! name (within 1e-5).

#[path = "common/devices.rs"]
mod devices;
#[path = "common/mlflow.rs"]
mod mlflow;

use std::path::{Path, PathBuf};
use std::process::Command;

use engine::data::{InputContract, Normalization};
use engine::nn::{Description, ImageShape, Network};
use engine::rng::Rng;
use engine::serve::model::{ModelSource, ServedModel};
use engine::{Device, Tensor, model};

/// Images of another shape than FashionMNIST's: colour, odd and not square.
const RGB: ImageShape = ImageShape { channels: 3, height: 21, width: 17 };
const CLASSES: usize = 10;
/// Images per batch.
const ROWS: usize = 5;

/// Every architecture, named.
fn networks() -> Vec<(String, Network)> {
    let build = |description: engine::Result<Description>, dropout: f32, seed: u64| {
        Network::new(description.unwrap(), dropout, &mut Rng::new(seed), &Device::Cpu).unwrap()
    };
    let mut networks = Vec::new();
    for (seed, hidden) in [vec![24], vec![24, 16], vec![24, 16, 12]].into_iter().enumerate() {
        for dropout in [0.0, 0.3] {
            let network = build(Description::mlp(ImageShape::FASHION_MNIST, &hidden, CLASSES), dropout, seed as u64);
            networks.push((format!("mlp-{hidden:?}-dropout-{dropout}"), network));
        }
    }
    networks.push(("cnn".into(), build(Description::cnn(ImageShape::FASHION_MNIST, [4, 6, 16], CLASSES), 0.25, 7)));
    networks.push(("cnn-rgb-21x17".into(), build(Description::cnn(RGB, [4, 6, 16], CLASSES), 0.25, 8)));
    networks.push(("mlp-rgb-21x17".into(), build(Description::mlp(RGB, &[16], CLASSES), 0.3, 9)));
    networks
}

/// `network` saved as a model directory under `root`, with `ROWS` random images (`u8`) beside it.
fn save(root: &Path, name: &str, network: &Network) -> (PathBuf, Vec<u8>) {
    let dir = root.join(name);
    let pixels = network.description().input().pixels();
    let mut rng = Rng::new(11);
    let images: Vec<u8> = (0..ROWS * pixels).map(|_| rng.below(256) as u8).collect();
    model::save_model_dir(
        &dir,
        network,
        None,
        Normalization::Meanstd,
        serde_json::json!({}),
        &images[..pixels],
        None,
        None,
    )
    .unwrap();
    std::fs::write(dir.join("images.u8"), &images).unwrap();
    (dir, images)
}

/// Probabilities of `network` on `images`, normalised as training normalises them.
fn probabilities(network: &Network, images: &[u8]) -> Vec<f32> {
    let rows = images.len() / network.description().input().pixels();
    let inputs: Vec<f32> = images
        .iter()
        .map(|&p| (f32::from(p) / 255.0 - InputContract::FASHION_MNIST_MEAN) / InputContract::FASHION_MNIST_STD)
        .collect();
    let x = Tensor::from_vec(inputs, &[rows, images.len() / rows], &Device::Cpu).unwrap();
    engine::no_grad(|| network.forward(&x)?.softmax()?.to_vec()).unwrap()
}

fn unit(images: &[u8]) -> Vec<f32> {
    images.iter().map(|&p| f32::from(p) / 255.0).collect()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

#[test]
fn the_saved_network_and_the_served_model_give_forward_s_probabilities() {
    let root = mlflow::scratch_dir("engine-network-paths");
    for (name, network) in networks() {
        let (dir, images) = save(&root, &name, &network);
        let expected = probabilities(&network, &images);
        assert_eq!(expected.len(), ROWS * CLASSES, "{name}");

        let (loaded, meta) = model::load_model_dir(&dir, &Device::Cpu).unwrap();
        assert_eq!(loaded.description(), network.description(), "{name}: the description read back");
        assert_eq!(meta.image, network.description().input(), "{name}");
        assert_eq!(probabilities(&loaded, &images), expected, "{name}: the network read back");

        let pixels = network.description().input().pixels();
        for device in devices::devices() {
            let served = ServedModel::load(&dir, &device, "device", ModelSource::default()).unwrap();
            let (all, first) =
                (served.predict(unit(&images), ROWS).unwrap(), served.predict(unit(&images[..pixels]), 1));
            match device {
                Device::Cpu => {
                    assert_eq!(all, expected, "{name}: served on the CPU");
                    assert_eq!(first.unwrap(), expected[..CLASSES], "{name}: one image served alone");
                }
                _ => {
                    let difference = max_difference(&all, &expected);
                    assert!(difference <= 1e-4, "{name}: served on the GPU, {difference} away");
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// For each model directory in `argv[1:]`: runs `model.onnx` on its `images.u8` with
/// onnxruntime, and for a CNN the forward pass of PyTorch's `nn.Sequential` in NumPy (float64)
/// on `model.safetensors`, shaped by `engine_model.json`; writes `onnxruntime.f32` and
/// `numpy.f32` beside them and prints the graph's input and output shapes as JSON.
const SCRIPT: &str = r#"
import json, os, sys
import numpy as np, onnx, onnxruntime as ort
from safetensors.numpy import load_file

def conv(h, weight, bias):  # Conv2d(kernel 3, stride 1, padding 1): a cross-correlation
    padded = np.pad(h, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(2, 3))
    return np.tensordot(windows, weight, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2) + bias[:, None, None]

def max_pool(h):  # MaxPool2d(2): an odd last row or column is dropped
    n, c, height, width = h.shape
    h = h[:, :, : height // 2 * 2, : width // 2 * 2]
    return h.reshape(n, c, height // 2, 2, width // 2, 2).max(axis=(3, 5))

relu = lambda h: np.maximum(h, 0)
shapes = {}
for model_dir in sys.argv[1:]:
    meta = json.load(open(os.path.join(model_dir, "engine_model.json")))
    image = meta.get("image", {"channels": 1, "height": 28, "width": 28})
    pixels = np.fromfile(os.path.join(model_dir, "images.u8"), dtype=np.uint8)
    x = pixels.reshape(-1, meta["sizes"][0]).astype(np.float32) / 255
    path = os.path.join(model_dir, "model.onnx")
    onnx.checker.check_model(onnx.load(path), full_check=True)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    shapes[os.path.basename(model_dir)] = [inp.shape, out.shape]
    session.run(None, {"pixels": x})[0].astype("<f4").tofile(os.path.join(model_dir, "onnxruntime.f32"))
    if meta["format"] != "engine-cnn-v1":
        continue
    weights = load_file(os.path.join(model_dir, "model.safetensors"))
    layer = lambda index: [weights[f"{index}.{part}"].astype(np.float64) for part in ("weight", "bias")]
    contract = meta["input"]
    h = pixels.astype(np.float64).reshape(-1, image["channels"], image["height"], image["width"])
    h = (h * contract["pixel_scale"] - contract["mean"]) / contract["std"]
    for index in (0, 3):  # Conv2d, ReLU, MaxPool2d
        h = max_pool(relu(conv(h, *layer(index))))
    h = h.reshape(len(h), -1)  # Flatten
    for index in (7, 10):  # Linear, ReLU, Dropout (the identity in eval mode), Linear
        weight, bias = layer(index)
        h = h @ weight.T + bias
        h = relu(h) if index == 7 else np.exp(h - h.max(axis=1, keepdims=True))
    (h / h.sum(axis=1, keepdims=True)).astype("<f4").tofile(os.path.join(model_dir, "numpy.f32"))
print(json.dumps(shapes))
"#;

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

#[test]
fn onnxruntime_and_a_numpy_pytorch_forward_pass_give_forward_s_probabilities() {
    let Some(mlflow) = mlflow::mlflow_or_skip() else { return };
    let root = mlflow::scratch_dir("engine-network-onnx");
    let saved: Vec<(String, PathBuf, Vec<f32>)> = networks()
        .into_iter()
        .map(|(name, network)| {
            let (dir, images) = save(&root, &name, &network);
            (name, dir, probabilities(&network, &images))
        })
        .collect();
    let output = Command::new(mlflow.with_file_name("python"))
        .arg("-c")
        .arg(SCRIPT)
        .args(saved.iter().map(|(_, dir, _)| dir))
        .output()
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python failed:\n{stderr}");
    let shapes: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for (name, dir, expected) in &saved {
        let inputs = model::read_metadata(dir).unwrap().image.pixels();
        assert_eq!(shapes[name], serde_json::json!([["N", inputs], ["N", CLASSES]]), "{name}: the graph's signature");
        let mut sources = vec!["onnxruntime"];
        if name.starts_with("cnn") {
            sources.push("numpy");
        }
        for source in sources {
            let difference = max_difference(&read_f32(&dir.join(format!("{source}.f32"))), expected);
            assert!(difference <= 1e-5, "{name}: {source} is {difference} away from the engine");
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}
