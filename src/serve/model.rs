//! The model behind a server: a verified model directory held on its device, turning pixels in
//! [0, 1] into class probabilities the way the directory's `model.onnx` does (`(x - mean) / std`
//! for a `meanstd` model, the network, softmax), and what it is, for `/version` and the headers.
//!
//! On the CPU each layer of an MLP has its weights packed for the matmul kernel once, at load:
//! packing them for every batch took three quarters of a one-image forward pass. The answers keep
//! the bits of `Mlp::forward` (the same kernels, depth blocks and summation order). A CNN, and
//! any network on a GPU, runs through its tensors.

use std::path::Path;
use std::sync::Arc;

use crate::backend::cpu::{self, matmul};
use crate::data::{CLASSES, IMAGE_PIXELS, Normalization};
use crate::model::{self, ModelError};
use crate::nn::Network;
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
    predictor: Predictor,
    normalize: Normalization,
    info: Arc<ModelInfo>,
}

enum Predictor {
    /// An MLP's layers with their weights packed for the CPU kernel.
    PackedMlp(Vec<PackedLayer>),
    /// The network's tensors on their device.
    Tensors(Network, Device),
}

/// `relu?(x · Wᵀ + b)`.
struct PackedLayer {
    weight: matmul::PackedMatrix,
    bias: Vec<f32>,
    relu: bool,
}

impl ServedModel {
    /// Loads and verifies the model directory `dir` (checksum, architecture, finite weights)
    /// onto `device`, described as `device_name`.
    pub fn load(dir: &Path, device: &Device, device_name: &str, source: ModelSource) -> Result<Self, ModelError> {
        let (network, meta) = model::load_model_dir(dir, device)?;
        let predictor = match (network, device) {
            (Network::Mlp(mlp), Device::Cpu) => {
                let invalid = |e: crate::Error| ModelError::Invalid { path: dir.to_path_buf(), problem: e.to_string() };
                let last = mlp.layers.len().saturating_sub(1);
                let mut layers = Vec::with_capacity(mlp.layers.len());
                for (i, layer) in mlp.layers.iter().enumerate() {
                    let weight = layer.weight.to_vec().map_err(invalid)?;
                    let view = matmul::MatRef::new(&weight, layer.inputs(), layer.outputs(), true).map_err(invalid)?;
                    let bias = layer.bias.to_vec().map_err(invalid)?;
                    let weight = matmul::PackedMatrix::new(view).map_err(invalid)?;
                    layers.push(PackedLayer { weight, bias, relu: i != last });
                }
                Predictor::PackedMlp(layers)
            }
            (network, _) => Predictor::Tensors(network, device.clone()),
        };
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
        };
        Ok(ServedModel { predictor, normalize: meta.normalize, info: Arc::new(info) })
    }

    pub fn info(&self) -> &Arc<ModelInfo> {
        &self.info
    }

    /// Class probabilities, `[rows, 10]` row-major, for `pixels` `[rows, 784]` in [0, 1].
    pub fn predict(&self, mut pixels: Vec<f32>, rows: usize) -> crate::Result<Vec<f32>> {
        if rows.checked_mul(IMAGE_PIXELS) != Some(pixels.len()) {
            return Err(crate::Error::ElementCount { len: pixels.len(), shape: vec![rows, IMAGE_PIXELS] });
        }
        if self.normalize == Normalization::Meanstd {
            // The ONNX graph's `Sub` and `Div`, in the same order and precision.
            for p in &mut pixels {
                *p = (*p - Normalization::MEAN) / Normalization::STD;
            }
        }
        match &self.predictor {
            Predictor::PackedMlp(layers) => {
                let mut x = pixels;
                for layer in layers {
                    let (inputs, outputs) = (layer.weight.rows(), layer.weight.cols());
                    let mut out = vec![0.0; rows * outputs];
                    let epilogue = matmul::Epilogue { bias: Some(&layer.bias), relu: layer.relu };
                    matmul::gemm_packed(
                        matmul::MatRef::new(&x, rows, inputs, false)?,
                        &layer.weight,
                        &mut out,
                        epilogue,
                    )?;
                    x = out;
                }
                let mut probabilities = vec![0.0; rows * CLASSES];
                cpu::softmax_rows(&x, CLASSES, &mut probabilities);
                Ok(probabilities)
            }
            Predictor::Tensors(network, device) => crate::no_grad(|| {
                let x = Tensor::from_vec(pixels, &[rows, IMAGE_PIXELS], device)?;
                network.forward(&x)?.softmax()?.to_vec()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Cnn, Mlp};
    use crate::rng::Rng;

    /// The packed CPU path gives the bits of `Mlp::forward` and softmax, at any batch size, and
    /// a CNN answers through its tensors.
    #[test]
    fn served_models_answer_like_their_networks() {
        let mlp = Mlp::new(IMAGE_PIXELS, &[64, 32], CLASSES, 0.0, &mut Rng::new(3), &Device::Cpu).unwrap();
        let cnn = Cnn::new([4, 6, 16], CLASSES, 0.0, &mut Rng::new(5), &Device::Cpu).unwrap();
        for (name, network) in [("mlp", Network::Mlp(mlp)), ("cnn", Network::Cnn(cnn))] {
            answers_like(name, &network);
        }
    }

    fn answers_like(name: &str, network: &Network) {
        let dir = std::env::temp_dir().join(format!("engine-served-{name}-{}", std::process::id()));
        let example = vec![0u8; IMAGE_PIXELS];
        model::save_model_dir(&dir, network, Normalization::Meanstd, serde_json::json!({}), &example, None, None)
            .unwrap();
        let served = ServedModel::load(&dir, &Device::Cpu, "cpu", ModelSource::default()).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let mut rng = Rng::new(4);
        for rows in [1, 3, 64] {
            let pixels = rng.uniform_vec(rows * IMAGE_PIXELS, 0.0, 1.0);
            let normalized: Vec<f32> = pixels.iter().map(|p| (p - Normalization::MEAN) / Normalization::STD).collect();
            let expected = crate::no_grad(|| {
                let x = Tensor::from_vec(normalized, &[rows, IMAGE_PIXELS], &Device::Cpu)?;
                network.forward(&x)?.softmax()?.to_vec()
            })
            .unwrap();
            assert_eq!(served.predict(pixels, rows).unwrap(), expected, "{name}: {rows} rows");
        }
    }
}
