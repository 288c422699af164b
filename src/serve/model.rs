//! The model behind a server: a verified model directory held on its device, turning pixels in
//! [0, 1] into class probabilities the way the directory's `model.onnx` does (`(x - mean) / std`
//! for a `meanstd` model, the MLP, softmax), and what it is, for `/version` and the headers.

use std::path::Path;
use std::sync::Arc;

use crate::data::{CLASSES, IMAGE_PIXELS, Normalization};
use crate::model::{self, ModelError};
use crate::nn::Mlp;
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
    /// Layer widths, e.g. `[784, 512, 512, 10]`.
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
    mlp: Mlp,
    normalize: Normalization,
    device: Device,
    info: Arc<ModelInfo>,
}

impl ServedModel {
    /// Loads and verifies the model directory `dir` (checksum, architecture, finite weights)
    /// onto `device`, described as `device_name`.
    pub fn load(dir: &Path, device: &Device, device_name: &str, source: ModelSource) -> Result<Self, ModelError> {
        let (mlp, meta) = model::load_model_dir(dir, device)?;
        let info = ModelInfo {
            model_uri: source.model_uri,
            name: source.name,
            version: source.version,
            run_id: meta.run_id,
            model_id: meta.model_id,
            weights_sha256: meta.weights_sha256,
            sizes: meta.sizes,
            normalize: meta.normalize.name().to_string(),
            device: device_name.to_string(),
            loaded_at: model::utc_timestamp(std::time::SystemTime::now()),
        };
        Ok(ServedModel { mlp, normalize: meta.normalize, device: device.clone(), info: Arc::new(info) })
    }

    pub fn info(&self) -> &Arc<ModelInfo> {
        &self.info
    }

    /// Class probabilities, `[rows, 10]` row-major, for `pixels` `[rows, 784]` in [0, 1].
    pub fn predict(&self, mut pixels: Vec<f32>, rows: usize) -> crate::Result<Vec<f32>> {
        if pixels.len() != rows * IMAGE_PIXELS {
            return Err(crate::Error::ElementCount { len: pixels.len(), shape: vec![rows, IMAGE_PIXELS] });
        }
        if self.normalize == Normalization::Meanstd {
            // The ONNX graph's `Sub` and `Div`, in the same order and precision.
            for p in &mut pixels {
                *p = (*p - Normalization::MEAN) / Normalization::STD;
            }
        }
        let probabilities = crate::no_grad(|| {
            let x = Tensor::from_vec(pixels, &[rows, IMAGE_PIXELS], &self.device)?;
            self.mlp.forward(&x)?.softmax()?.to_vec()
        })?;
        debug_assert_eq!(probabilities.len(), rows * CLASSES);
        Ok(probabilities)
    }
}
