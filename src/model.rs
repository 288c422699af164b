//! Saving and loading trained models. The weights are safetensors with PyTorch's tensor names and
//! layouts, so `torch.nn.Sequential(Linear, ReLU, Linear, ReLU, Linear).load_state_dict(load_file(path))`
//! reads an MLP's unchanged, and the `Sequential` of [`Description::cnn`](crate::nn::Description::cnn) a CNN's. A model directory is an
//! MLflow model that both this engine and stock MLflow load: an `MLmodel` file with this engine's
//! own flavor beside the `onnx` and `python_function` flavors ([`mlflow`]), the weights, the same
//! network as `model.onnx` ([`onnx`]), and `engine_model.json` with everything needed to use them
//! (architecture, class names, the input contract, hyperparameters, a SHA-256 of the weights).
//! Files are written to a temporary name and renamed into place.

pub mod mlflow;
pub mod onnx;
mod protobuf;
mod weights;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use weights::{network_from_safetensors, save_safetensors};

use crate::data::{FASHION_MNIST_CLASSES, InputContract, Normalization};
use crate::nn::{Architecture, ImageShape, Network};
use crate::tensor::Device;

/// The weights file inside a model directory.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The metadata file inside a model directory.
pub const METADATA_FILE: &str = "engine_model.json";
/// The ONNX model inside a model directory.
pub const ONNX_FILE: &str = "model.onnx";
/// The MLflow model file inside a model directory.
pub const MLMODEL_FILE: &str = "MLmodel";
/// The files of a model directory, in upload order (the files an `MLmodel` names before it).
pub const MODEL_FILES: [&str; 9] = [
    WEIGHTS_FILE,
    ONNX_FILE,
    METADATA_FILE,
    mlflow::INPUT_EXAMPLE_FILE,
    mlflow::SERVING_INPUT_EXAMPLE_FILE,
    mlflow::REQUIREMENTS_FILE,
    mlflow::PYTHON_ENV_FILE,
    mlflow::CONDA_FILE,
    MLMODEL_FILE,
];
/// The files this engine reads; model directories written before the ONNX export hold only these.
pub const ENGINE_FILES: [&str; 3] = [WEIGHTS_FILE, METADATA_FILE, MLMODEL_FILE];
/// Largest weights file (safetensors or ONNX) accepted from a server: a model with 250M
/// parameters, far past what `engine train` builds, so only a broken or hostile server reaches it.
pub const MAX_WEIGHTS_BYTES: u64 = 1 << 30;
/// Largest text file of a model (`engine_model.json`, `MLmodel`, ...) accepted from a server
/// (they hold a few hundred bytes).
pub const MAX_MODEL_TEXT_BYTES: u64 = 1 << 20;

/// The most bytes a download of the model file `name` may have.
pub fn max_file_bytes(name: &str) -> u64 {
    if name == WEIGHTS_FILE || name == ONNX_FILE { MAX_WEIGHTS_BYTES } else { MAX_MODEL_TEXT_BYTES }
}

/// Identifies this layout, with an MLP, in `engine_model.json` and the MLmodel flavor.
pub const FORMAT: &str = "engine-mlp-v1";
/// The same layout with a CNN ([`Description::cnn`](crate::nn::Description::cnn)).
pub const FORMAT_CNN: &str = "engine-cnn-v1";

/// The format name of a model directory holding `architecture`.
pub fn format_of(architecture: Architecture) -> &'static str {
    match architecture {
        Architecture::Mlp => FORMAT,
        Architecture::Cnn => FORMAT_CNN,
    }
}

/// What a model directory says about its model.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ModelMetadata {
    pub format: String,
    /// The sizes that define the network ([`Network::sizes`]): an MLP's layer widths from input
    /// to output, e.g. `[784, 512, 512, 10]`, a CNN's `[784, 32, 64, 128, 10]`.
    pub sizes: Vec<usize>,
    /// The image each input row holds. Written only when it is not FashionMNIST's 28x28 grey
    /// images, the shape of every file from before it was recorded.
    #[serde(default = "ImageShape::fashion_mnist", skip_serializing_if = "ImageShape::is_fashion_mnist")]
    pub image: ImageShape,
    pub class_names: Vec<String>,
    pub normalize: Normalization,
    /// How raw pixels become the network's input. Absent from files written before it was
    /// recorded; [`read_metadata`] fills it in from `normalize` and the contract.
    #[serde(default)]
    pub input: Option<NetworkInput>,
    /// The input contract of the data the model was trained on: image size, channels, layout,
    /// pixel scale, per-channel mean and std, class names. Absent from files written before it
    /// was recorded; [`read_metadata`] fills it in as [`assumed_contract`] (FashionMNIST's).
    #[serde(default)]
    pub contract: Option<InputContract>,
    /// The training configuration, as logged.
    pub hyperparameters: serde_json::Value,
    pub engine_version: String,
    pub weights_sha256: String,
    pub run_id: Option<String>,
    pub model_id: Option<String>,
    /// UTC, `YYYY-MM-DD HH:MM:SS.ffffff` as MLflow writes it.
    pub created: String,
}

/// The input the network expects, spelled out for users of other frameworks: an image of
/// `u8` pixels becomes `(pixel * pixel_scale - mean) / std`, flattened as `layout` says.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetworkInput {
    /// `[-1, 784]`: any number of flattened images.
    pub shape: Vec<i64>,
    pub dtype: String,
    /// Where each value of a row comes from.
    pub layout: String,
    /// Multiplies the raw 0-255 pixel first: 1/255.
    pub pixel_scale: f64,
    /// Subtracted after scaling (0 for `unit`).
    pub mean: ChannelValues,
    /// Divides last (1 for `unit`).
    pub std: ChannelValues,
}

/// A statistic of the input: one number for every channel (always so for gray images, and
/// written as a plain number, as before colour), or one per channel.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum ChannelValues {
    Shared(f32),
    PerChannel(Vec<f32>),
}

impl ChannelValues {
    /// `Shared` when every channel has the same value.
    pub fn of(values: &[f32]) -> ChannelValues {
        match values {
            [first, rest @ ..] if rest.iter().all(|v| v == first) => ChannelValues::Shared(*first),
            _ => ChannelValues::PerChannel(values.to_vec()),
        }
    }
}

impl ModelMetadata {
    /// The network the format names (checked by [`read_metadata`]).
    pub fn architecture(&self) -> Architecture {
        if self.format == FORMAT_CNN { Architecture::Cnn } else { Architecture::Mlp }
    }

    /// The input contract: the recorded one, else what a file without one means.
    pub fn input_contract(&self) -> InputContract {
        self.contract.clone().unwrap_or_else(|| assumed_contract(self.image, &self.class_names))
    }
}

impl NetworkInput {
    /// The input of a network reading `contract`'s images, trained with `normalize`.
    pub fn of(normalize: Normalization, contract: &InputContract) -> NetworkInput {
        let image = image_of(contract);
        let (mean, std) = match normalize {
            Normalization::Unit => (ChannelValues::Shared(0.0), ChannelValues::Shared(1.0)),
            Normalization::Meanstd => (ChannelValues::of(&contract.mean), ChannelValues::of(&contract.std)),
        };
        NetworkInput {
            shape: vec![-1, image.pixels() as i64],
            dtype: "float32".into(),
            layout: image.layout(),
            pixel_scale: 1.0 / 255.0,
            mean,
            std,
        }
    }
}

/// The shape of `contract`'s images, as the network description takes it.
pub fn image_of(contract: &InputContract) -> ImageShape {
    ImageShape { channels: contract.channels, height: contract.height, width: contract.width }
}

/// The contract of a model saved without one: FashionMNIST's statistics (what training used
/// then) on every channel of `image`, and the recorded `class_names`.
pub fn assumed_contract(image: ImageShape, class_names: &[String]) -> InputContract {
    let fashion = InputContract::fashion_mnist();
    InputContract {
        channels: image.channels,
        height: image.height,
        width: image.width,
        mean: vec![InputContract::FASHION_MNIST_MEAN; image.channels],
        std: vec![InputContract::FASHION_MNIST_STD; image.channels],
        class_names: class_names.to_vec(),
        ..fashion
    }
}

/// Whether `contract` can describe the input of `network`: a valid contract of the network's
/// image shape and class count, whose pixels are scaled by 1/255 as the ONNX input and the
/// server's requests are.
fn check_contract(contract: &InputContract, image: ImageShape, classes: usize) -> Result<(), String> {
    contract.validate()?;
    let shape = image_of(contract);
    if shape != image {
        return Err(format!(
            "the input contract's {}x{}x{} images are not the network's {}x{}x{}",
            shape.channels, shape.height, shape.width, image.channels, image.height, image.width
        ));
    }
    if contract.classes() != classes {
        return Err(format!("the input contract names {} classes; the network has {classes}", contract.classes()));
    }
    if contract.pixel_scale != 1.0 / 255.0 {
        return Err(format!("the input contract scales pixels by {}; only 1/255 is supported", contract.pixel_scale));
    }
    Ok(())
}

/// Errors while saving or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot access {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid model file: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

/// Writes a model directory (module docs) and returns its metadata. `contract` describes the
/// data the model was trained on; without one, FashionMNIST's statistics and class names (or
/// `0..N-1` for another class count) are recorded at the network's input shape. The first image
/// of `example` (`u8` pixels laid out by the contract) is saved as the MLflow input example, or
/// a blank image when it holds less than one. `run_id` and `model_id` name the run and logged
/// model it belongs to, when known.
#[allow(clippy::too_many_arguments)]
pub fn save_model_dir(
    dir: &Path,
    model: &Network,
    contract: Option<&InputContract>,
    normalize: Normalization,
    hyperparameters: serde_json::Value,
    example: &[u8],
    run_id: Option<&str>,
    model_id: Option<&str>,
) -> Result<ModelMetadata, ModelError> {
    let image = model.description().input();
    let classes = model.sizes().last().copied().unwrap_or(0);
    let contract = match contract {
        Some(contract) => contract.clone(),
        None if classes == FASHION_MNIST_CLASSES.len() => {
            assumed_contract(image, &FASHION_MNIST_CLASSES.map(String::from))
        }
        None => assumed_contract(image, &crate::data::contract::numbered(classes)),
    };
    check_contract(&contract, image, classes)
        .map_err(|problem| ModelError::Invalid { path: dir.join(METADATA_FILE), problem })?;
    std::fs::create_dir_all(dir).map_err(|source| ModelError::Io { path: dir.to_path_buf(), source })?;
    let header = HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights_sha256 = save_safetensors(model, &dir.join(WEIGHTS_FILE), header)?;
    let metadata = ModelMetadata {
        format: format_of(model.architecture()).to_string(),
        sizes: model.sizes(),
        image,
        class_names: contract.class_names.clone(),
        normalize,
        input: Some(NetworkInput::of(normalize, &contract)),
        contract: Some(contract),
        hyperparameters,
        engine_version: env!("CARGO_PKG_VERSION").to_string(),
        weights_sha256,
        run_id: run_id.map(String::from),
        model_id: model_id.map(String::from),
        created: utc_timestamp(std::time::SystemTime::now()),
    };
    save_onnx(model, &metadata, &dir.join(ONNX_FILE))?;
    let json = serde_json::to_vec_pretty(&metadata)
        .map_err(|e| ModelError::Invalid { path: dir.join(METADATA_FILE), problem: e.to_string() })?;
    write_atomic(&dir.join(METADATA_FILE), &json)?;
    let blank = vec![0; image.pixels()];
    let example = example.get(..image.pixels()).unwrap_or(&blank);
    let examples = mlflow::input_examples(example, image.pixels())
        .map_err(|problem| ModelError::Invalid { path: dir.join(mlflow::INPUT_EXAMPLE_FILE), problem })?;
    for (name, contents) in examples.into_iter().chain(mlflow::environment_files()) {
        write_atomic(&dir.join(name), contents.as_bytes())?;
    }
    // What MLflow records as `model_size_bytes`: the files beside `MLmodel`.
    let mut size = 0;
    for name in MODEL_FILES.iter().filter(|&&f| f != MLMODEL_FILE) {
        let path = dir.join(name);
        size += std::fs::metadata(&path).map_err(|source| ModelError::Io { path, source })?.len();
    }
    write_atomic(&dir.join(MLMODEL_FILE), mlflow::mlmodel_yaml(&metadata, size).as_bytes())?;
    Ok(metadata)
}

/// Writes `model` as ONNX to `path` (see [`onnx`]).
pub fn save_onnx(model: &Network, metadata: &ModelMetadata, path: &Path) -> Result<(), ModelError> {
    let bytes = onnx::encode(model, metadata)
        .map_err(|e| ModelError::Invalid { path: path.to_path_buf(), problem: e.to_string() })?;
    write_atomic(path, &bytes)
}

/// Reads a model directory, verifying the weights against their recorded SHA-256 and the
/// architecture against the metadata and the signature (the image's values in, a probability
/// per class name out).
pub fn load_model_dir(dir: &Path, device: &Device) -> Result<(Network, ModelMetadata), ModelError> {
    let invalid = |path: &Path, problem: String| ModelError::Invalid { path: path.to_path_buf(), problem };
    let metadata = read_metadata(dir)?;
    let weights_path = dir.join(WEIGHTS_FILE);
    let weights =
        std::fs::read(&weights_path).map_err(|source| ModelError::Io { path: weights_path.clone(), source })?;
    let actual = sha256_hex(&weights);
    if actual != metadata.weights_sha256 {
        return Err(invalid(
            &weights_path,
            format!(
                "SHA-256 {actual} does not match the recorded {}: the file is corrupt or truncated",
                metadata.weights_sha256
            ),
        ));
    }
    let model = network_from_safetensors(&weights, metadata.architecture(), metadata.image, device)
        .map_err(|problem| invalid(&weights_path, problem))?;
    let (inputs, classes) = (metadata.image.pixels(), metadata.class_names.len());
    let expected_io = (metadata.sizes.first(), metadata.sizes.last()) == (Some(&inputs), Some(&classes));
    if model.sizes() != metadata.sizes || !expected_io {
        return Err(invalid(
            &weights_path,
            format!(
                "network sizes {:?} do not match the metadata {:?} and the signature [-1, {inputs}] -> [-1, {classes}]",
                model.sizes(),
                metadata.sizes
            ),
        ));
    }
    Ok((model, metadata))
}

/// Reads a model directory's `engine_model.json` (without touching the weights).
pub fn read_metadata(dir: &Path) -> Result<ModelMetadata, ModelError> {
    let path = dir.join(METADATA_FILE);
    let invalid = |problem: String| ModelError::Invalid { path: path.clone(), problem };
    let bytes = std::fs::read(&path).map_err(|source| ModelError::Io { path: path.clone(), source })?;
    let mut metadata: ModelMetadata = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    if metadata.format != FORMAT && metadata.format != FORMAT_CNN {
        return Err(invalid(format!("format '{}' is neither {FORMAT} nor {FORMAT_CNN}", metadata.format)));
    }
    metadata.image.validate().map_err(|e| invalid(e.to_string()))?;
    let contract = metadata.input_contract();
    check_contract(&contract, metadata.image, metadata.class_names.len()).map_err(&invalid)?;
    if contract.class_names != metadata.class_names {
        return Err(invalid(format!(
            "the input contract's class names {:?} are not the recorded {:?}",
            contract.class_names, metadata.class_names
        )));
    }
    // The engine normalises by `normalize` and the contract; a recorded input saying otherwise
    // would mislead.
    let expected = NetworkInput::of(metadata.normalize, &contract);
    match &metadata.input {
        None => metadata.input = Some(expected),
        Some(recorded) if *recorded != expected => {
            return Err(invalid(format!(
                "the recorded input {recorded:?} does not match normalize '{}' and the input contract",
                metadata.normalize
            )));
        }
        Some(_) => {}
    }
    metadata.contract = Some(contract);
    Ok(metadata)
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` in UTC.
pub fn utc_timestamp(time: std::time::SystemTime) -> String {
    let since_epoch = time.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:06}", crate::utc::date_time(since_epoch.as_secs() as i64), since_epoch.subsec_micros())
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::hex::lower_hex(&Sha256::digest(bytes))
}

/// Writes `bytes` to a temporary file beside `path`, then renames it: readers see the whole
/// file or none ([`crate::files::write_atomic`], with the error naming the file).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    crate::files::write_atomic(path, bytes).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })
}
