//! Model directories: a round trip keeps every weight and the metadata and writes every file
//! MLflow needs, for an MLP and a CNN; a corrupted, truncated, reshaped or non-finite weights
//! file, or a CNN layer of the wrong shape, is an error naming the file (and the layer), never a
//! panic; older metadata without the input contract, or an MLP's hyperparameters from before the
//! CNN, still read.

use std::path::{Path, PathBuf};

use engine::data::{InputContract, Normalization};
use engine::model::ChannelValues::Shared;
use engine::model::{self, ModelError};
use engine::nn::{Architecture, Description, ImageShape, Network};
use engine::rng::Rng;
use engine::train::TrainConfig;
use engine::{Device, Tensor};

/// A CPU MLP for 28x28 images and 10 classes.
fn mlp(hidden: &[usize], seed: u64) -> Network {
    let description = Description::mlp(ImageShape::FASHION_MNIST, hidden, 10).unwrap();
    Network::new(description, 0.0, &mut Rng::new(seed), &Device::Cpu).unwrap()
}

fn saved(name: &str, hidden: &[usize]) -> (PathBuf, Network) {
    let mlp = mlp(hidden, 4);
    (save(name, &mlp, serde_json::json!({"lr": 0.05})), mlp)
}

/// `network` written as a model directory of its own.
fn save(name: &str, network: &Network, hyperparameters: serde_json::Value) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("engine-model-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let example = [0u8; 784];
    model::save_model_dir(
        &dir,
        network,
        None,
        Normalization::Meanstd,
        hyperparameters,
        &example,
        Some("abc"),
        Some("m-1"),
    )
    .unwrap();
    dir
}

/// A small CNN: 4 and 6 channels, 16 hidden units.
fn small_cnn(seed: u64) -> Network {
    let description = Description::cnn(ImageShape::FASHION_MNIST, [4, 6, 16], 10).unwrap();
    Network::new(description, 0.0, &mut Rng::new(seed), &Device::Cpu).unwrap()
}

/// Every parameter's name, shape and values.
type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

fn tensors(network: &Network) -> Tensors {
    network.named_parameters().into_iter().map(|(name, t)| (name, t.shape().to_vec(), t.to_vec().unwrap())).collect()
}

/// Every parameter's name, shape and bits.
fn parameters(network: &Network) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    let bits = |t: &Tensor| t.to_vec().unwrap().iter().map(|v| v.to_bits()).collect();
    network.named_parameters().iter().map(|(name, t)| (name.clone(), t.shape().to_vec(), bits(t))).collect()
}

/// Replaces the weights file of `dir` with `tensors`, recording their checksum so that only
/// their shapes can be wrong.
fn replace_weights(dir: &Path, tensors: &Tensors) {
    let views = tensors.iter().map(|(name, shape, values)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytemuck::cast_slice(values));
        (name.clone(), view.unwrap())
    });
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.join(model::WEIGHTS_FILE), &bytes).unwrap();
    let sha = model::sha256_hex(&bytes);
    let meta_path = dir.join(model::METADATA_FILE);
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["weights_sha256"] = sha.into();
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
}

#[test]
fn a_model_directory_round_trips() {
    let (dir, mlp) = saved("roundtrip", &[32, 16]);
    let (loaded, meta) = model::load_model_dir(&dir, &Device::Cpu).unwrap();
    assert_eq!(loaded.sizes(), [784, 32, 16, 10]);
    for ((name, a), (_, b)) in mlp.named_parameters().iter().zip(loaded.named_parameters()) {
        assert_eq!(a.to_vec().unwrap(), b.to_vec().unwrap(), "{name} changed");
        assert_eq!(a.shape(), b.shape());
    }
    assert_eq!((meta.run_id.as_deref(), meta.model_id.as_deref()), (Some("abc"), Some("m-1")));
    assert_eq!(meta.normalize, Normalization::Meanstd);
    assert_eq!(meta.class_names.len(), 10);
    let mlmodel = std::fs::read_to_string(dir.join("MLmodel")).unwrap();
    for line in [
        "  engine:",
        "  onnx:",
        "  python_function:",
        "    loader_module: mlflow.onnx",
        "    data: model.onnx",
        "mlflow_version: 3.17.2",
        "run_id: abc",
        "model_id: m-1",
        r#""shape": [-1, 784]"#,
        r#""shape": [-1, 10]"#,
    ] {
        assert!(mlmodel.contains(line), "MLmodel lacks {line}:\n{mlmodel}");
    }
    for file in model::MODEL_FILES {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let others: u64 = model::MODEL_FILES[..8].iter().map(|f| std::fs::metadata(dir.join(f)).unwrap().len()).sum();
    assert!(mlmodel.contains(&format!("model_size_bytes: {others}\n")), "{mlmodel}");
    let requirements = std::fs::read_to_string(dir.join("requirements.txt")).unwrap();
    for package in ["mlflow", "numpy", "onnx", "onnxruntime"] {
        assert!(requirements.lines().any(|l| l.starts_with(package)), "{requirements}");
    }
}

#[test]
fn an_mlp_directory_from_before_the_cnn_still_loads_as_an_mlp() {
    // The hyperparameters `engine train` wrote before `--model` existed: no `model` key.
    let hyper = serde_json::json!({
        "epochs": 1, "batch_size": 128, "lr": 0.05, "optimizer": "sgd", "momentum": 0.9,
        "weight_decay": 0.0, "dropout": 0.0, "lr_schedule": "cosine", "normalize": "meanstd",
        "hidden": [8], "seed": 0, "val_split": 0.1, "train_limit": 500
    });
    let mlp = mlp(&[8], 4);
    let dir = save("old-mlp", &mlp, hyper);
    let (loaded, meta) = model::load_model_dir(&dir, &Device::Cpu).unwrap();
    assert_eq!((meta.format.as_str(), meta.architecture()), (model::FORMAT, Architecture::Mlp));
    assert_eq!(loaded.architecture(), Architecture::Mlp);
    assert_eq!(parameters(&loaded), parameters(&mlp));
    let names: Vec<String> = loaded.named_parameters().into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
    let config: TrainConfig = serde_json::from_value(meta.hyperparameters).unwrap();
    assert_eq!((config.model, config.hidden), (Architecture::Mlp, vec![8]));
    let mlmodel = std::fs::read_to_string(dir.join(model::MLMODEL_FILE)).unwrap();
    assert!(mlmodel.contains("    format: engine-mlp-v1\n"), "{mlmodel}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cnn_model_directory_round_trips_bit_for_bit() {
    let cnn = small_cnn(6);
    let dir = save("cnn-roundtrip", &cnn, serde_json::json!({"model": "cnn"}));
    let (loaded, meta) = model::load_model_dir(&dir, &Device::Cpu).unwrap();
    assert_eq!(loaded.architecture(), Architecture::Cnn);
    assert_eq!((meta.format.as_str(), meta.architecture()), (model::FORMAT_CNN, Architecture::Cnn));
    assert_eq!(meta.sizes, [784, 4, 6, 16, 10]);
    assert_eq!(loaded.sizes(), meta.sizes);
    assert_eq!(loaded.parameter_count(), 4 * 9 + 4 + 6 * 4 * 9 + 6 + 16 * 294 + 16 + 10 * 16 + 10);
    let shapes: Vec<(String, Vec<usize>)> =
        parameters(&loaded).into_iter().map(|(name, shape, _)| (name, shape)).collect();
    let expected: [(&str, &[usize]); 8] = [
        ("0.weight", &[4, 1, 3, 3]),
        ("0.bias", &[4]),
        ("3.weight", &[6, 4, 3, 3]),
        ("3.bias", &[6]),
        ("7.weight", &[16, 294]),
        ("7.bias", &[16]),
        ("10.weight", &[10, 16]),
        ("10.bias", &[10]),
    ];
    let expected: Vec<(String, Vec<usize>)> = expected.iter().map(|(n, s)| (n.to_string(), s.to_vec())).collect();
    assert_eq!(shapes, expected, "PyTorch's names and layouts, in state_dict order");
    assert_eq!(parameters(&loaded), parameters(&cnn), "every parameter bit-identical");
    assert_eq!(loaded.description(), cnn.description(), "the same layers, paddings included");

    // The same network: the same logits, bit for bit.
    let mut rng = Rng::new(9);
    let pixels: Vec<f32> = (0..3 * 784).map(|_| rng.uniform(-1.0, 2.0)).collect();
    let logits = |network: &Network| {
        engine::no_grad(|| network.forward(&Tensor::from_vec(pixels.clone(), &[3, 784], &Device::Cpu)?)?.to_vec())
            .unwrap()
    };
    assert_eq!(logits(&loaded), logits(&cnn));

    let mlmodel = std::fs::read_to_string(dir.join(model::MLMODEL_FILE)).unwrap();
    for line in ["    format: engine-cnn-v1\n", "    loader_module: mlflow.onnx\n", r#""shape": [-1, 784]"#] {
        assert!(mlmodel.contains(line), "MLmodel lacks {line}:\n{mlmodel}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The weights of `cnn` with one layer's replaced by a tensor of the wrong shape.
fn reshaped(case: &str, cnn: &Network) -> Tensors {
    let (name, shape): (&str, &[usize]) = match case {
        "conv1 takes 2 channels" => ("0.weight", &[4, 2, 3, 3]),
        "conv1 is 5x5" => ("0.weight", &[4, 1, 5, 5]),
        "conv2 takes 5 channels" => ("3.weight", &[6, 5, 3, 3]),
        "hidden takes 300 inputs" => ("7.weight", &[16, 300]),
        "output takes 15 inputs" => ("10.weight", &[10, 15]),
        "9 classes" => ("10.weight", &[9, 16]),
        other => panic!("no case {other}"),
    };
    let mut tensors = tensors(cnn);
    for (n, s, values) in &mut tensors {
        let replaced = match n.as_str() {
            "10.bias" if shape[0] == 9 => vec![9],
            n if n == name => shape.to_vec(),
            _ => continue,
        };
        *values = vec![0.01; replaced.iter().product()];
        *s = replaced;
    }
    tensors
}

#[test]
fn cnn_layers_of_the_wrong_shape_are_errors_naming_the_layer() {
    let cases = [
        ("conv1 takes 2 channels", "layer 0: weight [4, 2, 3, 3] and bias [4] are not [out, 1, 3, 3] and [out]"),
        ("conv1 is 5x5", "layer 0: weight [4, 1, 5, 5]"),
        ("conv2 takes 5 channels", "layer 3: weight [6, 5, 3, 3] and bias [6] are not [out, 4, 3, 3] and [out]"),
        ("hidden takes 300 inputs", "layer 7 takes 300 inputs but layer 3 gives 294 (6 channels of 7x7)"),
        ("output takes 15 inputs", "layer 10 takes 15 inputs but layer 7 gives 16"),
        ("9 classes", "network sizes [784, 4, 6, 16, 9] do not match the metadata [784, 4, 6, 16, 10]"),
    ];
    for (i, (case, expected)) in cases.into_iter().enumerate() {
        let dir = save(&format!("cnn-reshaped-{i}"), &small_cnn(6), serde_json::json!({}));
        replace_weights(&dir, &reshaped(case, &small_cnn(7)));
        let error = load_error(&dir);
        assert!(error.contains(model::WEIGHTS_FILE) && error.contains(expected), "{case}: {error}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    // An MLP's weights where the metadata says CNN, and a CNN's where it says MLP.
    let dir = save("cnn-holds-mlp", &small_cnn(6), serde_json::json!({}));
    replace_weights(&dir, &tensors(&mlp(&[8], 1)));
    let error = load_error(&dir);
    assert!(error.contains("layer 0: weight [8, 784] and bias [8] are not [out, 1, 3, 3] and [out]"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
    let (dir, _) = saved("mlp-holds-cnn", &[8]);
    replace_weights(&dir, &tensors(&small_cnn(6)));
    let error = load_error(&dir);
    assert!(error.contains("layer 0: weight [4, 1, 3, 3] and bias [4] are not [out, in] and [out]"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_input_contract_is_recorded_for_both_normalisations() {
    let (dir, _) = saved("contract", &[8]);
    let input = model::read_metadata(&dir).unwrap().input.unwrap();
    assert_eq!((input.shape.as_slice(), input.dtype.as_str()), ([-1, 784].as_slice(), "float32"));
    assert_eq!((input.pixel_scale, input.mean, input.std), (1.0 / 255.0, Shared(0.286), Shared(0.353)));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(model::METADATA_FILE)).unwrap()).unwrap();
    assert_eq!(json["input"]["mean"], 0.286, "the JSON holds the decimal, not its f32 expansion");
    let unit = model::NetworkInput::of(Normalization::Unit, &InputContract::fashion_mnist());
    assert_eq!((unit.mean, unit.std), (Shared(0.0), Shared(1.0)));
}

#[test]
fn metadata_written_before_the_input_contract_still_reads() {
    let (dir, _) = saved("old-metadata", &[8]);
    let meta_path = dir.join(model::METADATA_FILE);
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta.as_object_mut().unwrap().remove("input");
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let (_, loaded) = model::load_model_dir(&dir, &Device::Cpu).unwrap();
    assert_eq!(loaded.input, Some(model::NetworkInput::of(Normalization::Meanstd, &InputContract::fashion_mnist())));

    // A recorded contract that contradicts the normalisation is refused.
    meta["input"] =
        serde_json::to_value(model::NetworkInput::of(Normalization::Unit, &InputContract::fashion_mnist())).unwrap();
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    assert!(load_error(&dir).contains("does not match normalize"));
}

fn load_error(dir: &std::path::Path) -> String {
    match model::load_model_dir(dir, &Device::Cpu) {
        Err(e @ (ModelError::Invalid { .. } | ModelError::Io { .. })) => e.to_string(),
        Ok(_) => panic!("a damaged model loaded"),
    }
}

#[test]
fn corrupted_weights_fail_the_checksum() {
    let (dir, _) = saved("corrupt", &[8]);
    let path = dir.join(model::WEIGHTS_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    assert!(load_error(&dir).contains("SHA-256"));
}

#[test]
fn truncated_weights_fail_the_checksum() {
    let (dir, _) = saved("truncated", &[8]);
    let path = dir.join(model::WEIGHTS_FILE);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(load_error(&dir).contains("model.safetensors"));
}

#[test]
fn weights_that_disagree_with_the_metadata_are_rejected() {
    let (dir, _) = saved("reshaped", &[8]);
    // Valid weights of another architecture, with a matching checksum: the shapes still differ.
    replace_weights(&dir, &tensors(&mlp(&[9], 1)));
    assert!(load_error(&dir).contains("do not match"));
}

#[test]
fn non_finite_weights_with_a_matching_checksum_are_refused() {
    let (dir, _) = saved("nan", &[8]);
    let mut nan = tensors(&mlp(&[8], 2));
    assert_eq!(nan[3].0, "2.bias");
    nan[3].2[3] = f32::NAN;
    replace_weights(&dir, &nan);
    let error = load_error(&dir);
    assert!(error.contains("model.safetensors") && error.contains("2.bias[3] is NaN"), "{error}");
}

#[test]
fn weights_files_of_too_many_tensors_or_an_impossible_image_are_refused() {
    let (dir, _) = saved("many-tensors", &[8]);
    let many: Tensors = (0..300).map(|i| (format!("{i}.weight"), vec![1], vec![0.0])).collect();
    replace_weights(&dir, &many);
    let error = load_error(&dir);
    assert!(error.contains("model.safetensors") && error.contains("300 tensors"), "{error}");

    let (dir, network) = saved("huge-image", &[8]);
    replace_weights(&dir, &tensors(&network));
    let meta_path = dir.join(model::METADATA_FILE);
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["image"] = serde_json::json!({"channels": 3, "height": u64::MAX / 2, "width": 5});
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let error = load_error(&dir);
    assert!(error.contains("positive sizes whose product"), "{error}");
}

#[test]
fn missing_files_are_errors() {
    let (dir, _) = saved("missing", &[8]);
    std::fs::remove_file(dir.join(model::METADATA_FILE)).unwrap();
    assert!(load_error(&dir).contains(model::METADATA_FILE));
}

#[test]
fn timestamps_use_mlflow_s_format() {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_764_147_000_123_456);
    assert_eq!(model::utc_timestamp(t), "2025-11-26 08:50:00.123456");
}
