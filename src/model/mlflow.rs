//! The MLflow side of a model directory, laid out as `mlflow.onnx.save_model` (MLflow 3.17.2)
//! lays it out, so stock MLflow loads the model with `mlflow.pyfunc.load_model` and serves it with
//! `mlflow models serve`: an `MLmodel` with `onnx` and `python_function` flavors (besides this
//! engine's own), the tensor signature, an input example in both of MLflow's forms, and the
//! Python environment as `requirements.txt`, `python_env.yaml` and `conda.yaml`.
//!
//! MLflow pins the packages it finds installed when it saves; this engine runs no Python, so it
//! writes the oldest releases that read the ONNX file instead (IR 8, opset 17).

use super::{METADATA_FILE, ModelMetadata, ONNX_FILE, WEIGHTS_FILE, onnx};

/// The MLflow release whose model layout these files follow.
pub const MLFLOW_VERSION: &str = "3.17.2";
/// An input example as `mlflow.pyfunc` reads it: a JSON array of rows.
pub const INPUT_EXAMPLE_FILE: &str = "input_example.json";
/// The same example as the body of a `POST /invocations` request.
pub const SERVING_INPUT_EXAMPLE_FILE: &str = "serving_input_example.json";
pub const REQUIREMENTS_FILE: &str = "requirements.txt";
pub const PYTHON_ENV_FILE: &str = "python_env.yaml";
pub const CONDA_FILE: &str = "conda.yaml";

/// The Python of the environment files: the one the tests load the model with.
const PYTHON_VERSION: &str = "3.11";
/// The first onnx release with opset 17.
const ONNX_VERSION: &str = "1.12.0";
/// The first onnxruntime release with opset 17.
const ONNXRUNTIME_VERSION: &str = "1.13.1";
/// Packages the `python_function` flavor imports, as pip requirements.
fn requirements() -> [String; 4] {
    [
        format!("mlflow=={MLFLOW_VERSION}"),
        "numpy".into(),
        format!("onnx>={ONNX_VERSION}"),
        format!("onnxruntime>={ONNXRUNTIME_VERSION}"),
    ]
}

/// The `MLmodel` file of a directory whose other files take `model_size_bytes`.
pub fn mlmodel_yaml(meta: &ModelMetadata, model_size_bytes: u64) -> String {
    let tensor = |name: Option<&str>, width: usize| {
        let name = name.map(|n| format!(r#""name": "{n}", "#)).unwrap_or_default();
        format!(r#"'[{{{name}"type": "tensor", "tensor-spec": {{"dtype": "float32", "shape": [-1, {width}]}}}}]'"#)
    };
    let contract = meta.input_contract();
    let (inputs, outputs) = (contract.pixels(), contract.classes());
    let model_id = meta.model_id.as_deref().map_or_else(|| "null".to_string(), scalar);
    let mut yaml = format!(
        "flavors:
  engine:
    data: {WEIGHTS_FILE}
    engine_version: {engine_version}
    format: {format}
    metadata: {METADATA_FILE}
  onnx:
    code: null
    data: {ONNX_FILE}
    onnx_session_options: null
    onnx_version: {ONNX_VERSION}
    providers:
    - CUDAExecutionProvider
    - CPUExecutionProvider
  python_function:
    data: {ONNX_FILE}
    env:
      conda: {CONDA_FILE}
      virtualenv: {PYTHON_ENV_FILE}
    loader_module: mlflow.onnx
    python_version: '{PYTHON_VERSION}'
is_signature_from_type_hint: false
{metadata}mlflow_version: {MLFLOW_VERSION}
model_id: {model_id}
model_size_bytes: {model_size_bytes}
",
        engine_version = scalar(&meta.engine_version),
        format = scalar(&meta.format),
        metadata = metadata_yaml(meta),
    );
    if let Some(id) = &meta.model_id {
        yaml += &format!("model_uuid: {}\n", scalar(id));
    }
    yaml += "prompts: null\n";
    if let Some(id) = &meta.run_id {
        yaml += &format!("run_id: {}\n", scalar(id));
    }
    yaml += &format!(
        "saved_input_example_info:
  artifact_path: {INPUT_EXAMPLE_FILE}
  serving_input_path: {SERVING_INPUT_EXAMPLE_FILE}
  type: ndarray
signature:
  inputs: {}
  outputs: {}
  params: null
type_hint_from_example: false
utc_time_created: {}
",
        tensor(None, inputs),
        tensor(Some(onnx::OUTPUT_NAME), outputs),
        quoted(&meta.created),
    );
    yaml
}

/// The MLmodel's `metadata` (which `mlflow.pyfunc` models show as `metadata.metadata`): the
/// class names, indexed by class, and the input contract the `pixels` rows follow.
fn metadata_yaml(meta: &ModelMetadata) -> String {
    let contract = meta.input_contract();
    let list =
        |indent: &str, items: Vec<String>| -> String { items.iter().map(|i| format!("{indent}- {i}\n")).collect() };
    let floats = |values: &[f32]| values.iter().map(|&v| yaml_float(v)).collect();
    let names = contract.class_names.iter().map(|n| scalar(n)).collect();
    let layout = serde_json::to_value(contract.layout).ok().and_then(|v| v.as_str().map(String::from));
    format!(
        "metadata:\n  class_names:\n{}  input:\n    channels: {}\n    height: {}\n    width: {}\n    layout: {}\n    \
         pixel_scale: {}\n    mean:\n{}    std:\n{}    normalize: {}\n",
        list("  ", names),
        contract.channels,
        contract.height,
        contract.width,
        layout.unwrap_or_default(),
        yaml_float(contract.pixel_scale),
        list("    ", floats(&contract.mean)),
        list("    ", floats(&contract.std)),
        meta.normalize,
    )
}

/// A YAML float: with a decimal point, so that YAML 1.1 readers (PyYAML) read a float.
fn yaml_float(value: f32) -> String {
    let text = value.to_string();
    if text.contains('.') { text } else { format!("{text}.0") }
}

/// `input_example.json` and `serving_input_example.json` for the images in `pixels` (`u8`,
/// `image_pixels` per image), scaled to [0, 1] as the ONNX input expects.
pub fn input_examples(pixels: &[u8], image_pixels: usize) -> Result<[(&'static str, String); 2], String> {
    if pixels.is_empty() || image_pixels == 0 || !pixels.len().is_multiple_of(image_pixels) {
        return Err(format!("an input example needs whole images of {image_pixels} pixels, got {}", pixels.len()));
    }
    let rows: Vec<Vec<f32>> =
        pixels.chunks(image_pixels).map(|image| image.iter().map(|&p| f32::from(p) / 255.0).collect()).collect();
    let example = serde_json::to_string(&rows).map_err(|e| e.to_string())?;
    let serving = serde_json::to_string_pretty(&serde_json::json!({ "inputs": rows })).map_err(|e| e.to_string())?;
    Ok([(INPUT_EXAMPLE_FILE, example), (SERVING_INPUT_EXAMPLE_FILE, serving)])
}

/// `requirements.txt`, `python_env.yaml` and `conda.yaml`.
pub fn environment_files() -> [(&'static str, String); 3] {
    let requirements = requirements();
    let python_env = format!(
        "python: '{PYTHON_VERSION}'\nbuild_dependencies:\n- pip\n- setuptools\n- wheel\ndependencies:\n- -r {REQUIREMENTS_FILE}\n"
    );
    let pip: String = requirements.iter().map(|r| format!("  - {r}\n")).collect();
    let conda = format!(
        "channels:\n- conda-forge\ndependencies:\n- python={PYTHON_VERSION}\n- pip\n- pip:\n{pip}name: mlflow-env\n"
    );
    [(REQUIREMENTS_FILE, requirements.join("\n") + "\n"), (PYTHON_ENV_FILE, python_env), (CONDA_FILE, conda)]
}

/// `value` as a YAML scalar: plain when YAML would read it back as the same string, else quoted.
fn scalar(value: &str) -> String {
    let plain = value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.parse::<f64>().is_err()
        && !["true", "false", "null", "yes", "no", "on", "off"].contains(&value.to_ascii_lowercase().as_str());
    if plain { value.to_string() } else { quoted(value) }
}

/// A single-quoted YAML scalar (quotes are doubled, the only escape YAML has there).
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::IMAGE_PIXELS;

    #[test]
    fn scalars_are_quoted_only_when_yaml_would_change_them() {
        assert_eq!(scalar("m-0a1b"), "m-0a1b");
        assert_eq!(scalar("0.1.0"), "0.1.0");
        assert_eq!(scalar("123"), "'123'");
        assert_eq!(scalar("1e5"), "'1e5'");
        assert_eq!(scalar("null"), "'null'");
        assert_eq!(scalar("a: b"), "'a: b'");
        assert_eq!(scalar("it's"), "'it''s'");
        assert_eq!(scalar(""), "''");
    }

    #[test]
    fn input_examples_hold_whole_images_scaled_to_unit() {
        let mut image = vec![0u8; IMAGE_PIXELS];
        image[1] = 255;
        let [(_, example), (_, serving)] = input_examples(&image, IMAGE_PIXELS).unwrap();
        let rows: Vec<Vec<f32>> = serde_json::from_str(&example).unwrap();
        assert_eq!((rows.len(), rows[0].len(), rows[0][1]), (1, IMAGE_PIXELS, 1.0));
        let body: serde_json::Value = serde_json::from_str(&serving).unwrap();
        assert_eq!(body["inputs"][0].as_array().map(Vec::len), Some(IMAGE_PIXELS));
        assert!(input_examples(&image[1..], IMAGE_PIXELS).is_err());
        assert!(input_examples(&[], IMAGE_PIXELS).is_err());
    }
}
