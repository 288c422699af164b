//! The weights as safetensors, with the names and layouts of the `torch.nn.Sequential` the
//! network's description matches, as `safetensors.torch.save_file(model.state_dict())` writes
//! them. Reading takes the layer kinds from the description of the architecture and the widths
//! from the file, so a file of another shape is an error naming the layer that does not fit.

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use super::{ModelError, sha256_hex, write_atomic};
use crate::nn::{Architecture, Description, ImageShape, Layer, Network, Shape, Weights};
use crate::tensor::Device;

/// The most tensors a weights file may hold: a weight and a bias for 128 layers, far past the
/// networks built here, so that a hostile file cannot make reading it slow.
const MAX_TENSORS: usize = 256;

/// Writes the network's weights to `path` with `metadata` in the safetensors header.
/// Returns the SHA-256 of the written file.
pub fn save_safetensors(model: &Network, path: &Path, metadata: HashMap<String, String>) -> Result<String, ModelError> {
    let invalid = |problem: String| ModelError::Invalid { path: path.to_path_buf(), problem };
    let named: Vec<(String, Vec<usize>, Vec<u8>)> = model
        .named_parameters()
        .into_iter()
        .map(|(name, t)| {
            let values = t.to_vec().map_err(|e| invalid(e.to_string()))?;
            Ok((name, t.shape().to_vec(), bytemuck::cast_slice::<f32, u8>(&values).to_vec()))
        })
        .collect::<Result<_, ModelError>>()?;
    let views = named
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| invalid(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| invalid(e.to_string()))?;
    write_atomic(path, &bytes)?;
    Ok(sha256_hex(&bytes))
}

/// The network of `architecture` reading `input` images whose weights are the safetensors
/// `bytes`; the error says what does not fit.
pub fn network_from_safetensors(
    bytes: &[u8],
    architecture: Architecture,
    input: ImageShape,
    device: &Device,
) -> Result<Network, String> {
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| e.to_string())?;
    if tensors.len() > MAX_TENSORS {
        return Err(format!("it holds {} tensors; a network here has at most {MAX_TENSORS}", tensors.len()));
    }
    let mut description = layer_kinds(architecture, input, &tensors)?;
    let mut weights = Vec::new();
    for (position, (layer, _)) in description.weight_shapes().into_iter().enumerate() {
        // The widths read so far decide what this layer must take.
        let expected = description.weight_shapes()[position].1.clone();
        let w = read_layer(&tensors, &description, layer, &expected, device)?;
        weights.push(w);
        let widths: Vec<usize> = weights.iter().map(|w| w.weight.shape()[0]).collect();
        let index = description.torch_index(layer);
        description = description.with_widths(&widths).map_err(|e| format!("with layer {index}'s weights: {e}"))?;
    }
    let names: Vec<String> =
        description.weight_shapes().iter().flat_map(|(layer, _)| description.parameter_names(*layer)).collect();
    if let Some(extra) = tensors.names().into_iter().find(|name| !names.iter().any(|n| n == name)) {
        return Err(format!("it holds {extra}, which the {architecture} it describes ({names:?}) does not have"));
    }
    Network::from_weights(description, weights, 0.0).map_err(|e| e.to_string())
}

/// The layers of `architecture`, widths to be read: the CNN's are fixed, and the MLP is the
/// deepest whose weight names the file holds.
fn layer_kinds(architecture: Architecture, input: ImageShape, tensors: &SafeTensors) -> Result<Description, String> {
    let description = |hidden: usize| match architecture {
        Architecture::Mlp => Description::mlp(input, &vec![1; hidden], 1),
        Architecture::Cnn => Description::cnn(input, [1; 3], 1),
    };
    let holds_last = |d: &Description| {
        let last = d.layers().len() - 1;
        tensors.tensor(&d.parameter_names(last)[0]).is_ok()
    };
    let mut found = description(0).map_err(|e| e.to_string())?;
    if architecture == Architecture::Mlp {
        for hidden in 1..tensors.len() {
            let deeper = description(hidden).map_err(|e| e.to_string())?;
            if !holds_last(&deeper) {
                break;
            }
            found = deeper;
        }
    }
    Ok(found)
}

/// The weight and bias of `layer` in `description`, whose weight must have the `expected` shape
/// but for its first (output) dimension.
fn read_layer(
    tensors: &SafeTensors,
    description: &Description,
    layer: usize,
    expected: &[usize],
    device: &Device,
) -> Result<Weights, String> {
    let [weight_name, bias_name] = description.parameter_names(layer);
    let (weight_shape, weight) = read_f32(tensors, &weight_name)?;
    let (bias_shape, bias) = read_f32(tensors, &bias_name)?;
    let index = description.torch_index(layer);
    let outputs = weight_shape.first().copied().unwrap_or(0);
    let fits = |dims: &[usize]| weight_shape.len() == expected.len() && weight_shape[1..] == dims[1..];
    match description.layers()[layer] {
        Layer::Conv2d { kernel, .. } if !fits(expected) || bias_shape != [outputs] => {
            return Err(format!(
                "layer {index}: weight {weight_shape:?} and bias {bias_shape:?} are not [out, {}, {kernel}, {kernel}] and [out]",
                expected[1]
            ));
        }
        Layer::Linear { .. } if weight_shape.len() != 2 || bias_shape != [outputs] => {
            return Err(format!(
                "layer {index}: weight {weight_shape:?} and bias {bias_shape:?} are not [out, in] and [out]"
            ));
        }
        Layer::Linear { .. } if weight_shape[1] != expected[1] => {
            return Err(format!(
                "layer {index} takes {} inputs but {}",
                weight_shape[1],
                source(description, layer, expected[1])
            ));
        }
        _ => {}
    }
    Weights::from_values(weight, bias, &weight_shape, device).map_err(|e| e.to_string())
}

/// What gives layer `layer` its `inputs` values, for an error: the layer with parameters before
/// it (and the images a flattening made them of), or the input.
fn source(description: &Description, layer: usize, inputs: usize) -> String {
    let before = description.weight_shapes().into_iter().map(|(i, _)| i).rfind(|&i| i < layer);
    let Some(before) = before else {
        return format!("the input has {inputs} values");
    };
    let flattened = match (layer.checked_sub(1).map(|i| description.layers()[i]), description.input_of(layer - 1)) {
        (Some(Layer::Flatten), Shape::Image(image)) => {
            format!(" ({} channels of {}x{})", image.channels, image.height, image.width)
        }
        _ => String::new(),
    };
    format!("layer {} gives {inputs}{flattened}", description.torch_index(before))
}

/// A tensor's shape and finite `f32` values, or what is wrong with it.
fn read_f32(tensors: &SafeTensors, name: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
    let tensor = tensors.tensor(name).map_err(|e| format!("{name}: {e}"))?;
    if tensor.dtype() != Dtype::F32 {
        return Err(format!("{name} is {:?}; every weight must be f32", tensor.dtype()));
    }
    let values: Vec<f32> =
        tensor.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    // A diverged run saves NaN or infinite weights; they would only show up as NaN predictions.
    match values.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(format!("{name}[{i}] is {}: every weight must be a finite number", values[i])),
        None => Ok((tensor.shape().to_vec(), values)),
    }
}
