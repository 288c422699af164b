//! Model directories: a round trip keeps every weight and the metadata; a corrupted, truncated
//! or reshaped weights file is an error naming the file, never a panic.

use std::path::PathBuf;

use engine::Device;
use engine::data::Normalization;
use engine::model::{self, ModelError};
use engine::nn::Mlp;
use engine::rng::Rng;

fn saved(name: &str, hidden: &[usize]) -> (PathBuf, Mlp) {
    let dir = std::env::temp_dir().join(format!("engine-model-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mlp = Mlp::new(784, hidden, 10, 0.0, &mut Rng::new(4), &Device::Cpu).unwrap();
    let hyper = serde_json::json!({"lr": 0.05});
    model::save_model_dir(&dir, &mlp, Normalization::Meanstd, hyper, Some("abc"), Some("m-1")).unwrap();
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
    for line in ["  engine:", "run_id: abc", "model_id: m-1", r#""shape": [-1, 784]"#, r#""shape": [-1, 10]"#] {
        assert!(mlmodel.contains(line), "MLmodel lacks {line}:\n{mlmodel}");
    }
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
    let other = Mlp::new(784, &[9], 10, 0.0, &mut Rng::new(1), &Device::Cpu).unwrap();
    let sha = model::save_safetensors(&other, &dir.join(model::WEIGHTS_FILE), Default::default()).unwrap();
    let meta_path = dir.join(model::METADATA_FILE);
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["weights_sha256"] = sha.into();
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    assert!(load_error(&dir).contains("do not match"));
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
