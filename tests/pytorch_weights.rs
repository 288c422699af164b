//! Weights written by PyTorch itself (`fixtures/pytorch/make.py`, run once with torch 2.15): the
//! engine loads an `nn.Sequential` MLP and CNN's `state_dict` unchanged and computes the logits
//! PyTorch computed for the same inputs.

use engine::model::network_from_safetensors;
use engine::nn::{Architecture, ImageShape};
use engine::{Device, Tensor};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pytorch");

fn reproduces_pytorch(name: &str, architecture: Architecture) {
    let weights = std::fs::read(format!("{FIXTURES}/{name}.safetensors")).unwrap();
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(format!("{FIXTURES}/{name}.json")).unwrap()).unwrap();
    let floats = |key: &str| -> Vec<f32> {
        expected[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()
    };
    let (inputs, want) = (floats("inputs"), floats("logits"));
    let rows = inputs.len() / 784;
    let network = network_from_safetensors(&weights, architecture, ImageShape::FASHION_MNIST, &Device::Cpu).unwrap();
    let x = Tensor::from_vec(inputs, &[rows, 784], &Device::Cpu).unwrap();
    let got = engine::no_grad(|| network.forward(&x)).unwrap().to_vec().unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{name} logit {i}: engine {g}, PyTorch {w}");
    }
}

#[test]
fn an_mlp_written_by_pytorch_gives_pytorch_s_logits() {
    reproduces_pytorch("mlp", Architecture::Mlp);
}

#[test]
fn a_cnn_written_by_pytorch_gives_pytorch_s_logits() {
    reproduces_pytorch("cnn", Architecture::Cnn);
}
