//! The driver's compiled pipelines kept on disk: a context saves them under its cache directory
//! (one file per adapter, driver and shader build), the next one starts from them and computes
//! the same, and a corrupt, truncated or foreign file, or a directory that cannot be written,
//! never stops a context from opening. Needs a Vulkan adapter (lavapipe in CI); skips without
//! one, unless `ENGINE_REQUIRE_GPU=1` (or `true`).
#![cfg(feature = "gpu")]

#[path = "common/devices.rs"]
#[allow(dead_code)] // only `gpu_required`
mod devices;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::backend::gpu::ops::{self, Epilogue, MatmulShape};
use engine::backend::gpu::{GpuBuffer, GpuContext, GpuOptions};
use sha2::{Digest, Sha256};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("engine-pipeline-cache-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A context with its pipeline cache in `dir`, or `None` after saying why there is no adapter.
fn open(checked: bool, dir: Option<&Path>) -> Option<Arc<GpuContext>> {
    let options = GpuOptions { checked, cache_dir: dir.map(Path::to_path_buf), profile: false };
    match GpuContext::open_with(&options) {
        Ok(ctx) => Some(ctx),
        Err(e) if !devices::gpu_required() => {
            eprintln!("SKIPPED: no GPU context ({e})");
            None
        }
        Err(e) => panic!("ENGINE_REQUIRE_GPU is set but no GPU context opened: {e}"),
    }
}

/// A 33x70 by 70x45 product with a bias and relu: the wide, tiled and epilogue paths at sizes
/// that are not tile multiples.
fn product(ctx: &Arc<GpuContext>) -> Vec<f32> {
    let (m, k, n) = (33, 70, 45);
    let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 8.0).collect();
    let bias: Vec<f32> = (0..n).map(|i| i as f32 / 10.0 - 2.0).collect();
    let (a, b, bias) = (
        GpuBuffer::from_f32(ctx, &a).unwrap(),
        GpuBuffer::from_f32(ctx, &b).unwrap(),
        GpuBuffer::from_f32(ctx, &bias).unwrap(),
    );
    let epilogue = Epilogue { bias: Some(&bias), relu: true, ..Epilogue::default() };
    ops::matmul(ctx, &a, &b, MatmulShape::new(m, k, n), epilogue).unwrap().to_f32_vec().unwrap()
}

fn cache_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir).map_or(Vec::new(), |d| d.flatten().map(|e| e.path()).collect());
    files.sort();
    files
}

#[test]
fn a_saved_cache_is_loaded_and_computes_the_same() {
    let dir = temp_dir("saved");
    let Some(first) = open(false, Some(&dir)) else { return };
    let expected = product(&open(false, None).unwrap());
    assert_eq!(product(&first), expected);
    let files = cache_files(&dir);
    if files.is_empty() {
        // Only Vulkan keeps a cache: another backend writes nothing, and says nothing.
        assert_ne!(first.adapter().backend, "Vulkan", "a Vulkan context saved no pipeline cache");
        return;
    }
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("wgpu_pipeline_cache_vulkan_") && name.ends_with("_unchecked.bin"), "{name}");
    let saved = std::fs::read(&files[0]).unwrap();
    assert!(saved.starts_with(b"ENGPLC01"), "the engine's header");

    let again = open(false, Some(&dir)).unwrap();
    assert_eq!(product(&again), expected, "pipelines built from the saved cache compute the same");
    let checked = open(true, Some(&dir)).unwrap();
    assert_eq!(product(&checked), expected);
    assert_eq!(cache_files(&dir).len(), 2, "the checked build keeps its own file");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_or_foreign_cache_file_is_replaced_not_an_error() {
    let dir = temp_dir("corrupt");
    let Some(first) = open(false, Some(&dir)) else { return };
    let expected = product(&first);
    let Some(file) = cache_files(&dir).pop() else {
        assert_ne!(first.adapter().backend, "Vulkan", "a Vulkan context saved no pipeline cache");
        return;
    };
    let good = std::fs::read(&file).unwrap();
    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x55;
    // The engine's header over bytes that are not wgpu's: the checksum holds, wgpu refuses them.
    let payload = b"WGPUPLCH and then nothing wgpu wrote".to_vec();
    let mut foreign = b"ENGPLC01".to_vec();
    foreign.extend_from_slice(&Sha256::digest(&payload));
    foreign.extend_from_slice(&payload);
    let damaged: [(&str, Vec<u8>); 5] = [
        ("empty", Vec::new()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("a flipped byte", flipped),
        ("another program's file", b"not a pipeline cache".repeat(10)),
        ("foreign bytes under a valid checksum", foreign),
    ];
    for (what, bytes) in damaged {
        std::fs::write(&file, &bytes).unwrap();
        let ctx = open(false, Some(&dir)).unwrap_or_else(|| panic!("{what}: the context did not open"));
        assert_eq!(product(&ctx), expected, "{what}");
        let rewritten = std::fs::read(&file).unwrap();
        assert!(rewritten.starts_with(b"ENGPLC01") && rewritten != bytes, "{what}: the file was not replaced");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cache_directory_that_cannot_be_written_is_not_an_error() {
    let blocker = temp_dir("blocked");
    std::fs::write(&blocker, b"a file where the directory would go").unwrap();
    let Some(ctx) = open(false, Some(&blocker.join("pipelines"))) else { return };
    assert_eq!(product(&ctx), product(&open(false, None).unwrap()));
    let _ = std::fs::remove_file(&blocker);
}
