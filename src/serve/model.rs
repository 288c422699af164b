//! The model behind a server: a verified model directory held on its device, turning pixels in
//! [0, 1] into class probabilities the way the directory's `model.onnx` does (`(x - mean) / std`
//! per channel of its input contract for a `meanstd` model, the network, softmax), and what it
//! is, for `/version` and the headers.
//!
//! It runs the steps of the network's description ([`crate::nn::Description::steps`]). On the
//! CPU each linear layer has its weights packed for the matmul kernel once, at load: packing them
//! for every batch took three quarters of a one-image forward pass. The answers keep the bits of
//! `Network::forward` (the same kernels, depth blocks and summation order). The other layers,
//! and every layer on a GPU, run as [`Network::apply`] runs them in training.

use std::path::Path;
use std::sync::Arc;

use crate::backend::cpu::matmul;
use crate::data::{InputContract, Normalization};
use crate::model::{self, ModelError};
use crate::nn::{ImageShape, Network, Step};
use crate::tensor::{Device, Tensor};

/// Which model answers: where it came from and what it is.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelInfo {
    /// The URI or directory the server was started with.
    pub model_uri: String,
    /// The registered model's name, when served from the registry.
    pub name: Option<String>,
    /// The registered version, when served from the registry.
    pub version: Option<String>,
    pub run_id: Option<String>,
    pub model_id: Option<String>,
    pub weights_sha256: String,
    /// `engine-mlp-v1` or `engine-cnn-v1`: which network `sizes` describe.
    pub format: String,
    /// The network's sizes ([`Network::sizes`]), e.g. `[784, 512, 512, 10]` for an MLP.
    pub sizes: Vec<usize>,
    pub normalize: String,
    /// The device it runs on, as `engine devices` names it.
    pub device: String,
    /// UTC, when this server loaded it.
    pub loaded_at: String,
    /// What each input row holds (the image's shape and statistics) and the class names,
    /// indexed by class.
    pub contract: InputContract,
}

impl ModelInfo {
    /// The image each input row holds.
    pub fn image(&self) -> ImageShape {
        model::image_of(&self.contract)
    }
}

/// Where a model comes from, as far as the caller knows before reading it.
#[derive(Debug, Clone, Default)]
pub struct ModelSource {
    pub model_uri: String,
    pub name: Option<String>,
    pub version: Option<String>,
}

/// A model ready to predict.
pub struct ServedModel {
    network: Network,
    device: Device,
    /// The evaluation steps, each linear one with its weights packed when on the CPU.
    steps: Vec<(Step, Option<PackedLayer>)>,
    normalize: Normalization,
    info: Arc<ModelInfo>,
}

/// `relu?(x · Wᵀ + b)`.
struct PackedLayer {
    weight: matmul::PackedMatrix,
    bias: Vec<f32>,
    relu: bool,
}

impl PackedLayer {
    fn new(network: &Network, layer: usize, relu: bool) -> crate::Result<PackedLayer> {
        let weights = network.weights(layer)?;
        let (outputs, inputs) = (weights.weight.shape()[0], weights.weight.shape()[1]);
        let weight = weights.weight.to_vec()?;
        let weight = matmul::PackedMatrix::new(matmul::MatRef::new(&weight, inputs, outputs, true)?)?;
        Ok(PackedLayer { weight, bias: weights.bias.to_vec()?, relu })
    }

    /// The layer's outputs for `rows` rows of `x`.
    fn forward(&self, x: &[f32], rows: usize) -> crate::Result<Vec<f32>> {
        let (inputs, outputs) = (self.weight.rows(), self.weight.cols());
        let mut out = vec![0.0; rows * outputs];
        let epilogue = matmul::Epilogue { bias: Some(&self.bias), relu: self.relu };
        matmul::gemm_packed(matmul::MatRef::new(x, rows, inputs, false)?, &self.weight, &mut out, epilogue)?;
        Ok(out)
    }
}

/// Activations between two steps: rows on the host (after a packed layer), or a tensor.
enum Activations {
    Rows(Vec<f32>),
    Tensor(Tensor),
}

impl ServedModel {
    /// Loads and verifies the model directory `dir` (checksum, architecture, finite weights)
    /// onto `device`, described as `device_name`.
    pub fn load(dir: &Path, device: &Device, device_name: &str, source: ModelSource) -> Result<Self, ModelError> {
        let (network, meta) = model::load_model_dir(dir, device)?;
        let invalid = |e: crate::Error| ModelError::Invalid { path: dir.to_path_buf(), problem: e.to_string() };
        let mut steps = Vec::new();
        for step in network.description().steps(false) {
            let packed = match (step, device) {
                (Step::Linear { layer, relu }, Device::Cpu) => {
                    Some(PackedLayer::new(&network, layer, relu).map_err(invalid)?)
                }
                _ => None,
            };
            steps.push((step, packed));
        }
        let contract = meta.input_contract();
        let info = ModelInfo {
            model_uri: source.model_uri,
            name: source.name,
            version: source.version,
            run_id: meta.run_id,
            model_id: meta.model_id,
            weights_sha256: meta.weights_sha256,
            format: meta.format,
            sizes: meta.sizes,
            normalize: meta.normalize.to_string(),
            device: device_name.to_string(),
            loaded_at: model::utc_timestamp(std::time::SystemTime::now()),
            contract,
        };
        Ok(ServedModel { network, device: device.clone(), steps, normalize: meta.normalize, info: Arc::new(info) })
    }

    pub fn info(&self) -> &Arc<ModelInfo> {
        &self.info
    }

    /// Values per input row: the image's pixels.
    pub fn inputs(&self) -> usize {
        self.network.description().input().pixels()
    }

    /// Class probabilities, `[rows, classes]` row-major, for `pixels` `[rows, inputs]` in [0, 1].
    pub fn predict(&self, mut pixels: Vec<f32>, rows: usize) -> crate::Result<Vec<f32>> {
        let inputs = self.inputs();
        if rows.checked_mul(inputs) != Some(pixels.len()) {
            return Err(crate::Error::ElementCount { len: pixels.len(), shape: vec![rows, inputs] });
        }
        if self.normalize == Normalization::Meanstd {
            // The ONNX graph's `Sub` and `Div`, in the same order and precision, plane by plane.
            let contract = &self.info.contract;
            let plane = (contract.height * contract.width).max(1);
            for image in pixels.chunks_mut(inputs.max(1)) {
                for ((values, mean), std) in image.chunks_mut(plane).zip(&contract.mean).zip(&contract.std) {
                    values.iter_mut().for_each(|p| *p = (*p - mean) / std);
                }
            }
        }
        crate::no_grad(|| {
            let mut x = Activations::Rows(pixels);
            for (step, packed) in &self.steps {
                x = match (packed, x) {
                    (Some(layer), Activations::Rows(values)) => Activations::Rows(layer.forward(&values, rows)?),
                    (Some(layer), Activations::Tensor(t)) => Activations::Rows(layer.forward(&t.to_vec()?, rows)?),
                    (None, x) => Activations::Tensor(self.network.apply(*step, &self.tensor(x, rows)?, None)?),
                };
            }
            self.tensor(x, rows)?.softmax()?.to_vec()
        })
    }

    /// `x` as a `[rows, …]` tensor on the model's device.
    fn tensor(&self, x: Activations, rows: usize) -> crate::Result<Tensor> {
        match x {
            Activations::Tensor(t) => Ok(t),
            Activations::Rows(values) => {
                let width = values.len() / rows.max(1);
                Tensor::from_vec(values, &[rows, width], &self.device)
            }
        }
    }
}
