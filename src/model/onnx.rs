//! The MLP as an ONNX model (`model.onnx`), encoded by hand with [`super::protobuf`] so no
//! ONNX library is needed. The graph takes what any user can compute without reading our code,
//! pixels scaled to [0, 1], and applies the training normalisation itself:
//!
//! `pixels [N, 784] float32` → (`Sub mean`, `Div std` for `meanstd`) → `Gemm`, `Relu`, … →
//! `Gemm` → `Softmax` → `probabilities [N, 10] float32`.
//!
//! The weights keep PyTorch's names (`0.weight`, `0.bias`, …) and `[out, in]` layout; `Gemm`
//! multiplies by their transpose (`transB = 1`). IR version 8 and opset 17 are read by
//! onnxruntime 1.13 and later.

use super::protobuf::Message;
use super::{ModelMetadata, WEIGHTS_FILE};
use crate::data::Normalization;
use crate::nn::Mlp;

/// Name of the graph's input: `[N, 784]` float32 pixels in [0, 1] (`pixel / 255`), each row a
/// 28x28 image in row-major order.
pub const INPUT_NAME: &str = "pixels";
/// Name of the graph's output: `[N, 10]` float32 class probabilities (each row sums to 1).
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
    pub const ATTRIBUTE_TYPE: u32 = 20;
    pub const ATTRIBUTE_TYPE_INT: i64 = 2;
    pub const TENSOR_DIMS: u32 = 1;
    pub const TENSOR_DATA_TYPE: u32 = 2;
    pub const TENSOR_NAME: u32 = 8;
    pub const TENSOR_RAW_DATA: u32 = 9;
    pub const DATA_TYPE_FLOAT: i64 = 1;
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
pub fn encode(model: &Mlp, meta: &ModelMetadata) -> crate::error::Result<Vec<u8>> {
    let sizes = model.sizes();
    let (inputs, outputs) = (sizes.first().copied().unwrap_or(0), sizes.last().copied().unwrap_or(0));
    let mut nodes = Vec::new();
    let mut initializers = Vec::new();
    let mut current = INPUT_NAME.to_string();
    if meta.normalize == Normalization::Meanstd {
        initializers.push(tensor("mean", &[], &[Normalization::MEAN]));
        initializers.push(tensor("std", &[], &[Normalization::STD]));
        nodes.push(node("Sub", "normalize_sub", &[INPUT_NAME, "mean"], "centered", &[]));
        nodes.push(node("Div", "normalize_div", &["centered", "std"], "normalized", &[]));
        current = "normalized".into();
    }
    let last = model.layers.len().saturating_sub(1);
    for (i, layer) in model.layers.iter().enumerate() {
        // PyTorch's Sequential index of the layer: Linear, ReLU, Linear, …
        let index = 2 * i;
        let (weight, bias) = (format!("{index}.weight"), format!("{index}.bias"));
        initializers.push(tensor(&weight, layer.weight.shape(), &layer.weight.to_vec()?));
        initializers.push(tensor(&bias, layer.bias.shape(), &layer.bias.to_vec()?));
        let linear = if i == last { "logits".to_string() } else { format!("linear_{index}") };
        let gemm_inputs = [current.as_str(), weight.as_str(), bias.as_str()];
        nodes.push(node("Gemm", &format!("gemm_{index}"), &gemm_inputs, &linear, &[("transB", 1)]));
        current = linear;
        if i != last {
            let activation = format!("relu_{}", index + 1);
            nodes.push(node("Relu", &activation, &[current.as_str()], &activation, &[]));
            current = activation;
        }
    }
    nodes.push(node("Softmax", "softmax", &[current.as_str()], OUTPUT_NAME, &[("axis", 1)]));

    let input_doc =
        format!("{inputs} float32 pixels per row, pixel / 255 in [0, 1], one 28x28 image in row-major order per row");
    let output_doc = format!("{outputs} class probabilities per row: {}", meta.class_names.join(", "));
    let mut graph = Message::new().string(field::GRAPH_NAME, "engine_mlp");
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
        .string(field::MODEL_DOC_STRING, &format!("FashionMNIST classifier, the weights of {WEIGHTS_FILE}"))
        .message(field::MODEL_GRAPH, &graph)
        .message(field::MODEL_OPSET_IMPORT, &opset);
    for (key, value) in metadata_props(meta) {
        let entry = Message::new().string(field::ENTRY_KEY, &key).string(field::ENTRY_VALUE, &value);
        encoded = encoded.message(field::MODEL_METADATA_PROPS, &entry);
    }
    Ok(encoded.into_bytes())
}

fn graph_doc(meta: &ModelMetadata) -> String {
    let normalisation = match meta.normalize {
        Normalization::Unit => "none beyond pixel / 255".to_string(),
        Normalization::Meanstd => {
            format!("(x - {}) / {} inside the graph", Normalization::MEAN, Normalization::STD)
        }
    };
    format!(
        "MLP {:?}. Input '{INPUT_NAME}' [N, 784] float32 = pixel / 255; normalisation: {normalisation}. \
         Output '{OUTPUT_NAME}' [N, 10] float32 softmax probabilities.",
        meta.sizes
    )
}

/// Key-value pairs readable with `onnxruntime.InferenceSession(...).get_modelmeta().custom_metadata_map`.
fn metadata_props(meta: &ModelMetadata) -> Vec<(String, String)> {
    let mut props = vec![
        ("format".to_string(), meta.format.clone()),
        ("class_names".to_string(), serde_json::Value::from(meta.class_names.clone()).to_string()),
        ("normalize".to_string(), meta.normalize.to_string()),
        ("weights_sha256".to_string(), meta.weights_sha256.clone()),
    ];
    props.extend(meta.run_id.clone().map(|id| ("run_id".to_string(), id)));
    props.extend(meta.model_id.clone().map(|id| ("model_id".to_string(), id)));
    props
}

/// A float32 initializer, its values little-endian in `raw_data`.
fn tensor(name: &str, dims: &[usize], values: &[f32]) -> Message {
    let mut t = Message::new();
    for &d in dims {
        t = t.int(field::TENSOR_DIMS, d as i64);
    }
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t.int(field::TENSOR_DATA_TYPE, field::DATA_TYPE_FLOAT)
        .string(field::TENSOR_NAME, name)
        .bytes(field::TENSOR_RAW_DATA, &raw)
}

fn node(op_type: &str, name: &str, inputs: &[&str], output: &str, int_attributes: &[(&str, i64)]) -> Message {
    let mut n = Message::new();
    for input in inputs {
        n = n.string(field::NODE_INPUT, input);
    }
    n = n.string(field::NODE_OUTPUT, output).string(field::NODE_NAME, name).string(field::NODE_OP_TYPE, op_type);
    for &(attribute, value) in int_attributes {
        let a = Message::new()
            .string(field::ATTRIBUTE_NAME, attribute)
            .int(field::ATTRIBUTE_I, value)
            .int(field::ATTRIBUTE_TYPE, field::ATTRIBUTE_TYPE_INT);
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
