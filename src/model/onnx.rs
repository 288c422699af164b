//! A network as an ONNX model (`model.onnx`), encoded by hand with `super::protobuf` so no
//! ONNX library is needed. The graph takes what any user can compute without reading our code,
//! pixels scaled to [0, 1], and applies the training normalisation itself:
//!
//! `pixels [N, C·H·W] float32` → (`Sub mean`, `Div std` for `meanstd`, per channel: the rows
//! seen as `[N, C, H·W]` planes when the channels' statistics differ) → the network →
//! `Softmax` → `probabilities [N, classes] float32` (`[N, 784]` and `[N, 10]` for FashionMNIST), where the network is one node per layer of its
//! description (none for dropout): `Gemm`, `Relu`, … `Gemm` for an MLP, and `Reshape` to
//! `[N, C, H, W]`, `Conv`, `Relu`, `MaxPool`, `Conv`, `Relu`, `MaxPool`, `Flatten`, `Gemm`,
//! `Relu`, `Gemm` for a CNN.
//!
//! The weights keep PyTorch's names (`0.weight`, `0.bias`, …) and layouts (`[out, in]`, and
//! `[out, in, kh, kw]` as `Conv` wants); `Gemm` multiplies by the transpose (`transB = 1`).
//! IR version 8 and opset 17 are read by onnxruntime 1.13 and later.

use super::protobuf::Message;
use super::{ChannelValues, ModelMetadata, WEIGHTS_FILE};
use crate::data::{InputContract, Normalization};
use crate::nn::{ImageShape, Layer, Network, Shape, Weights};
use crate::tensor::Tensor;

/// Name of the graph's input: `[N, C·H·W]` float32 pixels in [0, 1] (`pixel / 255`), each row
/// an image (FashionMNIST's: 784 values, 28x28 in row-major order).
pub const INPUT_NAME: &str = "pixels";
/// Name of the graph's output: `[N, classes]` float32 class probabilities (each row sums to 1).
pub const OUTPUT_NAME: &str = "probabilities";
/// Symbolic name of the batch dimension.
pub const BATCH_DIM: &str = "N";
/// The ONNX IR version written.
pub const IR_VERSION: i64 = 8;
/// The version of the default operator set used.
pub const OPSET_VERSION: i64 = 17;

// Field numbers and enum values from onnx/onnx.proto.
mod field {
    pub const MODEL_IR_VERSION: u32 = 1;
    pub const MODEL_PRODUCER_NAME: u32 = 2;
    pub const MODEL_PRODUCER_VERSION: u32 = 3;
    pub const MODEL_DOC_STRING: u32 = 6;
    pub const MODEL_GRAPH: u32 = 7;
    pub const MODEL_OPSET_IMPORT: u32 = 8;
    pub const MODEL_METADATA_PROPS: u32 = 14;
    pub const OPSET_VERSION: u32 = 2;
    pub const ENTRY_KEY: u32 = 1;
    pub const ENTRY_VALUE: u32 = 2;
    pub const GRAPH_NODE: u32 = 1;
    pub const GRAPH_NAME: u32 = 2;
    pub const GRAPH_INITIALIZER: u32 = 5;
    pub const GRAPH_DOC_STRING: u32 = 10;
    pub const GRAPH_INPUT: u32 = 11;
    pub const GRAPH_OUTPUT: u32 = 12;
    pub const NODE_INPUT: u32 = 1;
    pub const NODE_OUTPUT: u32 = 2;
    pub const NODE_NAME: u32 = 3;
    pub const NODE_OP_TYPE: u32 = 4;
    pub const NODE_ATTRIBUTE: u32 = 5;
    pub const ATTRIBUTE_NAME: u32 = 1;
    pub const ATTRIBUTE_I: u32 = 3;
    pub const ATTRIBUTE_INTS: u32 = 8;
    pub const ATTRIBUTE_TYPE: u32 = 20;
    pub const ATTRIBUTE_TYPE_INT: i64 = 2;
    pub const ATTRIBUTE_TYPE_INTS: i64 = 7;
    pub const TENSOR_DIMS: u32 = 1;
    pub const TENSOR_DATA_TYPE: u32 = 2;
    pub const TENSOR_NAME: u32 = 8;
    pub const TENSOR_RAW_DATA: u32 = 9;
    pub const DATA_TYPE_FLOAT: i64 = 1;
    pub const DATA_TYPE_INT64: i64 = 7;
    pub const VALUE_INFO_NAME: u32 = 1;
    pub const VALUE_INFO_TYPE: u32 = 2;
    pub const VALUE_INFO_DOC_STRING: u32 = 3;
    pub const TYPE_TENSOR_TYPE: u32 = 1;
    pub const TENSOR_TYPE_ELEM_TYPE: u32 = 1;
    pub const TENSOR_TYPE_SHAPE: u32 = 2;
    pub const SHAPE_DIM: u32 = 1;
    pub const DIM_VALUE: u32 = 1;
    pub const DIM_PARAM: u32 = 2;
}

/// The ONNX model of `model`, whose description (normalisation, classes, run) is `meta`.
pub fn encode(model: &Network, meta: &ModelMetadata) -> crate::error::Result<Vec<u8>> {
    let sizes = model.sizes();
    let (inputs, outputs) = (sizes.first().copied().unwrap_or(0), sizes.last().copied().unwrap_or(0));
    let contract = meta.input_contract();
    let mut g = Graph { nodes: Vec::new(), initializers: Vec::new(), current: INPUT_NAME.to_string() };
    if meta.normalize == Normalization::Meanstd {
        g.normalize(&contract);
    }
    layer_nodes(&mut g, model)?;
    g.then("Softmax", "softmax", &[], OUTPUT_NAME, &[("axis", Attribute::Int(1))]);
    let Graph { nodes, initializers, .. } = g;

    let input_doc = format!(
        "{inputs} float32 pixels per row, pixel / 255 in [0, 1], {} per row",
        image_words(model.description().input())
    );
    let output_doc = format!("{outputs} class probabilities per row: {}", meta.class_names.join(", "));
    let mut graph = Message::new().string(field::GRAPH_NAME, &format!("engine_{}", model.architecture()));
    for n in &nodes {
        graph = graph.message(field::GRAPH_NODE, n);
    }
    for t in &initializers {
        graph = graph.message(field::GRAPH_INITIALIZER, t);
    }
    let graph = graph
        .string(field::GRAPH_DOC_STRING, &graph_doc(meta))
        .message(field::GRAPH_INPUT, &value_info(INPUT_NAME, inputs, &input_doc))
        .message(field::GRAPH_OUTPUT, &value_info(OUTPUT_NAME, outputs, &output_doc));

    let opset = Message::new().int(field::OPSET_VERSION, OPSET_VERSION);
    let mut encoded = Message::new()
        .int(field::MODEL_IR_VERSION, IR_VERSION)
        .string(field::MODEL_PRODUCER_NAME, "engine")
        .string(field::MODEL_PRODUCER_VERSION, &meta.engine_version)
        .string(field::MODEL_DOC_STRING, &model_doc(&contract))
        .message(field::MODEL_GRAPH, &graph)
        .message(field::MODEL_OPSET_IMPORT, &opset);
    for (key, value) in metadata_props(meta) {
        let entry = Message::new().string(field::ENTRY_KEY, &key).string(field::ENTRY_VALUE, &value);
        encoded = encoded.message(field::MODEL_METADATA_PROPS, &entry);
    }
    Ok(encoded.into_bytes())
}

/// Nodes and weights so far, and the name of the value the next node reads.
struct Graph {
    nodes: Vec<Message>,
    initializers: Vec<Message>,
    current: String,
}

impl Graph {
    /// A node reading the current value (then `inputs`) and writing `output`, the new current.
    fn then(&mut self, op_type: &str, name: &str, inputs: &[&str], output: &str, attributes: &[(&str, Attribute)]) {
        let inputs: Vec<&str> = std::iter::once(self.current.as_str()).chain(inputs.iter().copied()).collect();
        self.nodes.push(node(op_type, name, &inputs, output, attributes));
        self.current = output.to_string();
    }

    /// The weights `{index}.weight` and `{index}.bias` (PyTorch's names), returned as such.
    fn weights(&mut self, index: usize, weight: &Tensor, bias: &Tensor) -> crate::error::Result<[String; 2]> {
        let names = [format!("{index}.weight"), format!("{index}.bias")];
        self.initializers.push(tensor(&names[0], weight.shape(), &weight.to_vec()?));
        self.initializers.push(tensor(&names[1], bias.shape(), &bias.to_vec()?));
        Ok(names)
    }

    /// `Gemm` with the layer `index` (`[out, in]` weights), writing `output`.
    fn linear(&mut self, index: usize, layer: &Weights, output: &str) -> crate::error::Result<()> {
        let [weight, bias] = self.weights(index, &layer.weight, &layer.bias)?;
        self.then("Gemm", &format!("gemm_{index}"), &[&weight, &bias], output, &[("transB", Attribute::Int(1))]);
        Ok(())
    }

    /// `Conv` with the layer `index` (`[out, in, k, k]` weights, stride 1).
    fn conv(&mut self, index: usize, layer: &Weights, padding: usize) -> crate::error::Result<()> {
        let [weight, bias] = self.weights(index, &layer.weight, &layer.bias)?;
        let (kernel, pad) = (layer.weight.shape()[2] as i64, padding as i64);
        let name = format!("conv_{index}");
        let attributes = [("kernel_shape", Attribute::Ints(&[kernel, kernel])), ("pads", Attribute::Ints(&[pad; 4]))];
        self.then("Conv", &name, &[&weight, &bias], &name, &attributes);
        Ok(())
    }

    /// `(x - mean) / std` with the contract's statistics: scalars when every channel shares them,
    /// else `[C, 1]` ones against the rows seen as `[N, C, H·W]` planes, flattened back after.
    fn normalize(&mut self, contract: &InputContract) {
        let shared = (ChannelValues::of(&contract.mean), ChannelValues::of(&contract.std));
        if let (ChannelValues::Shared(mean), ChannelValues::Shared(std)) = shared {
            self.initializers.push(tensor("mean", &[], &[mean]));
            self.initializers.push(tensor("std", &[], &[std]));
            self.then("Sub", "normalize_sub", &["mean"], "centered", &[]);
            self.then("Div", "normalize_div", &["std"], "normalized", &[]);
            return;
        }
        let (channels, plane) = (contract.channels, contract.height * contract.width);
        self.initializers.push(int64_tensor("channel_planes", &[-1, channels as i64, plane as i64]));
        self.initializers.push(int64_tensor("rows", &[-1, (channels * plane) as i64]));
        self.initializers.push(tensor("mean", &[channels, 1], &contract.mean));
        self.initializers.push(tensor("std", &[channels, 1], &contract.std));
        self.then("Reshape", "to_channel_planes", &["channel_planes"], "planes", &[]);
        self.then("Sub", "normalize_sub", &["mean"], "centered", &[]);
        self.then("Div", "normalize_div", &["std"], "normalized_planes", &[]);
        self.then("Reshape", "to_rows", &["rows"], "normalized", &[]);
    }

    /// `Reshape` of the input rows to `[N, C, H, W]` images.
    fn reshape_to_image(&mut self, image: ImageShape) {
        let dims = [image.channels, image.height, image.width].map(|d| d as i64);
        self.initializers.push(int64_tensor("image_shape", &[-1, dims[0], dims[1], dims[2]]));
        self.then("Reshape", "to_image", &["image_shape"], "image", &[]);
    }
}

/// One node per layer of the network's description, named by its `Sequential` index.
fn layer_nodes(g: &mut Graph, network: &Network) -> crate::error::Result<()> {
    let description = network.description();
    let last = description.layers().len().saturating_sub(1);
    for (i, layer) in description.layers().iter().enumerate() {
        let index = description.torch_index(i);
        match *layer {
            Layer::Linear { .. } => {
                let output = if i == last { "logits".to_string() } else { format!("linear_{index}") };
                g.linear(index, network.weights(i)?, &output)?;
            }
            Layer::Conv2d { padding, .. } => {
                if let Shape::Flat(_) = description.input_of(i) {
                    g.reshape_to_image(description.input());
                }
                g.conv(index, network.weights(i)?, padding)?;
            }
            Layer::Relu => {
                let name = format!("relu_{index}");
                g.then("Relu", &name, &[], &name, &[]);
            }
            Layer::MaxPool2d => {
                let name = format!("pool_{index}");
                let attributes = [("kernel_shape", Attribute::Ints(&[2, 2])), ("strides", Attribute::Ints(&[2, 2]))];
                g.then("MaxPool", &name, &[], &name, &attributes);
            }
            Layer::Flatten => {
                let name = format!("flatten_{index}");
                g.then("Flatten", &name, &[], &name, &[("axis", Attribute::Int(1))]);
            }
            // The identity in evaluation.
            Layer::Dropout { .. } => {}
        }
    }
    Ok(())
}

/// What one input row holds, in words.
fn image_words(image: ImageShape) -> String {
    match image.channels {
        1 => format!("one {}x{} image in row-major order", image.height, image.width),
        c => format!(
            "one {}x{} image of {c} channels, channel by channel, each in row-major order",
            image.height, image.width
        ),
    }
}

/// What the model is, for the model's doc string.
fn model_doc(contract: &InputContract) -> String {
    let (c, h, w) = (contract.channels, contract.height, contract.width);
    format!("Classifier of {c}x{h}x{w} images into {} classes, the weights of {WEIGHTS_FILE}", contract.classes())
}

fn graph_doc(meta: &ModelMetadata) -> String {
    let normalisation = match meta.normalize {
        Normalization::Unit => "none beyond pixel / 255".to_string(),
        Normalization::Meanstd => {
            let contract = meta.input_contract();
            let list = |values: &[f32]| values.iter().map(f32::to_string).collect::<Vec<_>>().join(", ");
            format!(
                "(x - mean) / std per channel inside the graph, mean [{}], std [{}]",
                list(&contract.mean),
                list(&contract.std)
            )
        }
    };
    let (inputs, outputs) = (meta.sizes.first().copied().unwrap_or(0), meta.sizes.last().copied().unwrap_or(0));
    format!(
        "{} {:?}. Input '{INPUT_NAME}' [N, {inputs}] float32 = pixel / 255; normalisation: {normalisation}. \
         Output '{OUTPUT_NAME}' [N, {outputs}] float32 softmax probabilities.",
        meta.architecture().to_string().to_uppercase(),
        meta.sizes
    )
}

/// Key-value pairs readable with `onnxruntime.InferenceSession(...).get_modelmeta().custom_metadata_map`.
fn metadata_props(meta: &ModelMetadata) -> Vec<(String, String)> {
    let mut props = vec![
        ("format".to_string(), meta.format.clone()),
        ("class_names".to_string(), serde_json::Value::from(meta.class_names.clone()).to_string()),
        ("normalize".to_string(), meta.normalize.to_string()),
        ("input_contract".to_string(), serde_json::to_string(&meta.input_contract()).unwrap_or_default()),
        ("weights_sha256".to_string(), meta.weights_sha256.clone()),
    ];
    props.extend(meta.run_id.clone().map(|id| ("run_id".to_string(), id)));
    props.extend(meta.model_id.clone().map(|id| ("model_id".to_string(), id)));
    props
}

/// A float32 initializer, its values little-endian in `raw_data`.
fn tensor(name: &str, dims: &[usize], values: &[f32]) -> Message {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    initializer(name, dims, field::DATA_TYPE_FLOAT, &raw)
}

/// A one-dimensional int64 initializer (a shape).
fn int64_tensor(name: &str, values: &[i64]) -> Message {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    initializer(name, &[values.len()], field::DATA_TYPE_INT64, &raw)
}

fn initializer(name: &str, dims: &[usize], data_type: i64, raw: &[u8]) -> Message {
    let mut t = Message::new();
    for &d in dims {
        t = t.int(field::TENSOR_DIMS, d as i64);
    }
    t.int(field::TENSOR_DATA_TYPE, data_type).string(field::TENSOR_NAME, name).bytes(field::TENSOR_RAW_DATA, raw)
}

/// A node attribute's value.
#[derive(Clone, Copy)]
enum Attribute<'a> {
    Int(i64),
    Ints(&'a [i64]),
}

fn node(op_type: &str, name: &str, inputs: &[&str], output: &str, attributes: &[(&str, Attribute)]) -> Message {
    let mut n = Message::new();
    for input in inputs {
        n = n.string(field::NODE_INPUT, input);
    }
    n = n.string(field::NODE_OUTPUT, output).string(field::NODE_NAME, name).string(field::NODE_OP_TYPE, op_type);
    for &(attribute, value) in attributes {
        let mut a = Message::new().string(field::ATTRIBUTE_NAME, attribute);
        a = match value {
            Attribute::Int(i) => a.int(field::ATTRIBUTE_I, i).int(field::ATTRIBUTE_TYPE, field::ATTRIBUTE_TYPE_INT),
            Attribute::Ints(values) => values
                .iter()
                .fold(a, |a, &v| a.int(field::ATTRIBUTE_INTS, v))
                .int(field::ATTRIBUTE_TYPE, field::ATTRIBUTE_TYPE_INTS),
        };
        n = n.message(field::NODE_ATTRIBUTE, &a);
    }
    n
}

/// A `[N, width]` float32 graph input or output.
fn value_info(name: &str, width: usize, doc: &str) -> Message {
    let shape = Message::new()
        .message(field::SHAPE_DIM, &Message::new().string(field::DIM_PARAM, BATCH_DIM))
        .message(field::SHAPE_DIM, &Message::new().int(field::DIM_VALUE, width as i64));
    let tensor_type = Message::new()
        .int(field::TENSOR_TYPE_ELEM_TYPE, field::DATA_TYPE_FLOAT)
        .message(field::TENSOR_TYPE_SHAPE, &shape);
    let type_proto = Message::new().message(field::TYPE_TENSOR_TYPE, &tensor_type);
    Message::new()
        .string(field::VALUE_INFO_NAME, name)
        .message(field::VALUE_INFO_TYPE, &type_proto)
        .string(field::VALUE_INFO_DOC_STRING, doc)
}
