//! Saving and loading trained models as safetensors with PyTorch's tensor names and layouts, so
//! `torch.nn.Sequential(Linear, ReLU, Linear, ReLU, Linear).load_state_dict(load_file(path))`
//! reads our weights unchanged. Files are written to a temporary name and renamed into place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use sha2::{Digest, Sha256};

use crate::nn::{Linear, Mlp};
use crate::tensor::Device;

/// Errors while saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot access {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid model file: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

/// Writes the MLP's weights to `path` with `metadata` in the safetensors header.
/// Returns the SHA-256 of the written file.
pub fn save_safetensors(model: &Mlp, path: &Path, metadata: HashMap<String, String>) -> Result<String, ModelError> {
    let named: Vec<(String, Vec<usize>, Vec<u8>)> = model
        .named_parameters()
        .into_iter()
        .map(|(name, t)| (name, t.shape().to_vec(), bytemuck::cast_slice::<f32, u8>(&t.to_vec()).to_vec()))
        .collect();
    let invalid = |problem: String| ModelError::Invalid { path: path.to_path_buf(), problem };
    let views = named
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| invalid(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| invalid(e.to_string()))?;
    write_atomically(path, &bytes)?;
    Ok(sha256_hex(&bytes))
}

/// Reads an MLP saved by `save_safetensors` (or by PyTorch with the same layer names).
pub fn load_safetensors(path: &Path, device: &Device) -> Result<Mlp, ModelError> {
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
    mlp_from_safetensors(&bytes, device).map_err(|problem| ModelError::Invalid { path: path.to_path_buf(), problem })
}

fn mlp_from_safetensors(bytes: &[u8], device: &Device) -> Result<Mlp, String> {
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    let mut layers = Vec::new();
    for index in (0..).step_by(2) {
        let (Ok(weight), Ok(bias)) =
            (tensors.tensor(&format!("{index}.weight")), tensors.tensor(&format!("{index}.bias")))
        else {
            break;
        };
        let (&[outputs, inputs], &[bias_len]) = (weight.shape(), bias.shape()) else {
            return Err(format!(
                "layer {index}: weight {:?} and bias {:?} are not [out, in] and [out]",
                weight.shape(),
                bias.shape()
            ));
        };
        if weight.dtype() != Dtype::F32 || bias.dtype() != Dtype::F32 || bias_len != outputs {
            return Err(format!("layer {index}: expected f32 weight [out, in] and bias [out]"));
        }
        if let Some(previous) = layers.last().map(Linear::outputs).filter(|&p| p != inputs) {
            return Err(format!("layer {index} takes {inputs} inputs but the previous layer gives {previous}"));
        }
        let floats = |data: &[u8]| -> Vec<f32> {
            data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        };
        let layer = Linear::from_weights(floats(weight.data()), floats(bias.data()), inputs, outputs, device)
            .map_err(|e| e.to_string())?;
        layers.push(layer);
    }
    if layers.is_empty() {
        return Err("no layers named 0.weight/0.bias".into());
    }
    Ok(Mlp { layers, dropout: 0.0 })
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` to a temporary file beside `path`, then renames it: readers see the whole
/// file or none.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let io = |source| ModelError::Io { path: path.to_path_buf(), source };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
