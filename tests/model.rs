//! Model directories: a round trip keeps every weight and the metadata and writes every file
//! MLflow needs; a corrupted, truncated, reshaped or non-finite weights file is an error naming
//! the file, never a panic; older metadata without the input contract still reads.

use std::path::PathBuf;

use engine::Device;
use engine::data::Normalization;
use engine::model::{self, ModelError};
use engine::nn::{Linear, Mlp, Network};
use engine::rng::Rng;

fn saved(name: &str, hidden: &[usize]) -> (PathBuf, Network) {
    let dir = std::env::temp_dir().join(format!("engine-model-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mlp = Network::Mlp(Mlp::new(784, hidden, 10, 0.0, &mut Rng::new(4), &Device::Cpu).unwrap());
    let hyper = serde_json::json!({"lr": 0.05});
    let example = [0u8; 784];
    model::save_model_dir(&dir, &mlp, Normalization::Meanstd, hyper, &example, Some("abc"), Some("m-1")).unwrap();
    (dir, mlp)
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
fn the_input_contract_is_recorded_for_both_normalisations() {
    let (dir, _) = saved("contract", &[8]);
    let input = model::read_metadata(&dir).unwrap().input.unwrap();
    assert_eq!((input.shape.as_slice(), input.dtype.as_str()), ([-1, 784].as_slice(), "float32"));
    assert_eq!((input.pixel_scale, input.mean, input.std), (1.0 / 255.0, 0.286, 0.353));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(model::METADATA_FILE)).unwrap()).unwrap();
    assert_eq!(json["input"]["mean"], 0.286, "the JSON holds the decimal, not its f32 expansion");
    let unit = model::InputContract::of(Normalization::Unit);
    assert_eq!((unit.mean, unit.std), (0.0, 1.0));
}

#[test]
fn metadata_written_before_the_input_contract_still_reads() {
    let (dir, _) = saved("old-metadata", &[8]);
    let meta_path = dir.join(model::METADATA_FILE);
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta.as_object_mut().unwrap().remove("input");
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let (_, loaded) = model::load_model_dir(&dir, &Device::Cpu).unwrap();
    assert_eq!(loaded.input, Some(model::InputContract::of(Normalization::Meanstd)));

    // A recorded contract that contradicts the normalisation is refused.
    meta["input"] = serde_json::to_value(model::InputContract::of(Normalization::Unit)).unwrap();
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
    let other = Network::Mlp(Mlp::new(784, &[9], 10, 0.0, &mut Rng::new(1), &Device::Cpu).unwrap());
    let sha = model::save_safetensors(&other, &dir.join(model::WEIGHTS_FILE), Default::default()).unwrap();
    let meta_path = dir.join(model::METADATA_FILE);
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["weights_sha256"] = sha.into();
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    assert!(load_error(&dir).contains("do not match"));
}

#[test]
fn non_finite_weights_with_a_matching_checksum_are_refused() {
    let (dir, _) = saved("nan", &[8]);
    let mut nan = Mlp::new(784, &[8], 10, 0.0, &mut Rng::new(2), &Device::Cpu).unwrap();
    let mut bias = nan.layers[1].bias.to_vec().unwrap();
    bias[3] = f32::NAN;
    let weight = nan.layers[1].weight.to_vec().unwrap();
    nan.layers[1] = Linear::from_weights(weight, bias, 8, 10, &Device::Cpu).unwrap();
    let sha = model::save_safetensors(&Network::Mlp(nan), &dir.join(model::WEIGHTS_FILE), Default::default()).unwrap();
    let meta_path = dir.join(model::METADATA_FILE);
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["weights_sha256"] = sha.into();
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let error = load_error(&dir);
    assert!(error.contains("model.safetensors") && error.contains("2.bias[3] is NaN"), "{error}");
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
