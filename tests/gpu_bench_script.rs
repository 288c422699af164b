//! `scripts/gpu-bench.sh` as it is meant to meet a bare GPU machine, here on this machine's
//! adapter (lavapipe without a GPU): `--collect` gathers the bundle (the engine and the bench
//! binaries of the release profile, so this test's build is reused; the Vulkan loader and glvnd
//! libraries; FashionMNIST; the script) within 60 MB, and the bundle's script, `--small DIR`, runs
//! from it with the bundle's loader (a broken `libvulkan.so.1` earlier on the caller's library
//! path and an unset `HOME` change nothing): `engine train --device gpu`, three short epochs and
//! small kernels, and its table, here beside a PyTorch result given as a file. Without `--small`
//! it refuses the software adapter. Skips without an adapter, unless `ENGINE_REQUIRE_GPU=1` (or
//! `true`).
#![cfg(feature = "gpu")]

#[path = "common/devices.rs"]
#[allow(dead_code)] // only `gpu_required`
mod devices;

use std::path::Path;
use std::process::{Command, Output};

use engine::backend::gpu::{self, GpuContext};

/// The cells of the table row whose label starts with `label`.
fn row<'a>(table: &'a str, label: &str) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|l| l.trim_start_matches("| ").starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?} in:\n{table}"));
    line.split('|').map(str::trim).filter(|c| !c.is_empty()).collect()
}

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/gpu-bench.sh");

fn number(cell: &str) -> f64 {
    cell.parse().unwrap_or_else(|_| panic!("{cell:?} is not a number"))
}

/// `SCRIPT ARGS` (`scripts/gpu-bench.sh` or its copy in a bundle) with `env` and without `unset`, and none of the caller's choices
/// of binaries, data, driver file or software adapter.
fn gpu_bench(script: &Path, args: &[&Path], env: &[(&str, &Path)], unset: &[&str]) -> Output {
    let mut command = Command::new("bash");
    command.arg(script).args(args);
    for name in ["ENGINE", "ENGINE_TRAIN_BENCH", "ENGINE_GPU_REPORT", "ENGINE_DATA_DIR", "ENGINE_TORCH_JSON"] {
        command.env_remove(name);
    }
    for name in ["ENGINE_ALLOW_SOFTWARE_GPU", "ENGINE_GPU_ADAPTER", "VK_DRIVER_FILES", "VK_ICD_FILENAMES"] {
        command.env_remove(name);
    }
    for name in unset {
        command.env_remove(name);
    }
    command.envs(env.iter().copied()).output().unwrap()
}

fn text(output: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn a_bundle_collected_here_runs_with_its_own_loader_and_prints_the_table_at_small_sizes() {
    if let Err(e) = GpuContext::new() {
        assert!(!devices::gpu_required(), "no GPU adapter: {e}");
        eprintln!("SKIPPED: no GPU adapter ({e})");
        return;
    }
    let dir = std::env::temp_dir().join(format!("engine-gpu-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (bundle, decoy) = (dir.join("bundle"), dir.join("decoy"));
    std::fs::create_dir_all(&decoy).unwrap();
    std::fs::write(decoy.join("libvulkan.so.1"), "not a library").unwrap();
    let torch = dir.join("torch_gpu_anchor.json");
    let recorded = r#"{"device": "Recorded GPU", "torch": "2.11",
        "train_preloaded_bs128": {"epoch_s": [2.0, 1.0, 0.5], "test_acc": [0.8, 0.8, 0.8]},
        "matmul_fp32_notf32": {"128x784x512": {"s": 1e-5, "gflops": 9.0}, "256x256x256": {"s": 1e-3, "gflops": 2.0}},
        "softmax": {"512x1000": {"s": 1e-4, "GBps": 0.5}}}"#;
    std::fs::write(&torch, recorded).unwrap();

    let collected = gpu_bench(Path::new(SCRIPT), &[Path::new("--collect"), &bundle], &[], &[]);
    assert!(collected.status.success(), "{}", text(&collected));
    let said = text(&collected);
    let megabytes: u64 = said
        .split_once("gpu-bench: ")
        .and_then(|(_, rest)| rest.split_once(" MB in "))
        .map(|(mb, _)| mb.parse().unwrap())
        .unwrap_or_else(|| panic!("no size: {said}"));
    assert!(megabytes <= 60, "{said}");
    for file in [
        "gpu-bench.sh",
        "bin/engine.gz",
        "bin/train.gz",
        "bin/gpu_report.gz",
        "lib/libvulkan.so.1",
        "lib/libGLdispatch.so.0",
    ] {
        assert!(bundle.join(file).is_file(), "no {file} in the bundle: {said}");
    }
    assert!(bundle.join("data/train-images-idx3-ubyte.gz").is_file(), "no FashionMNIST in the bundle: {said}");

    let environment = [("ENGINE_TORCH_JSON", torch.as_path()), ("LD_LIBRARY_PATH", &decoy)];
    let own_script = bundle.join("gpu-bench.sh");
    let ran = gpu_bench(&own_script, &[Path::new("--small"), &bundle], &environment, &["HOME", "XDG_CACHE_HOME"]);
    let table = String::from_utf8_lossy(&ran.stdout).into_owned();
    assert!(ran.status.success(), "{}", text(&ran));
    let loader = bundle.canonicalize().unwrap().join("lib/libvulkan.so.1");
    assert!(table.contains(&format!("gpu-bench: Vulkan loader {}", loader.display())), "{table}");
    let adapter = GpuContext::new().unwrap().adapter().name.clone();
    assert!(table.contains(&format!("gpu-bench: gpu 0\t{adapter}")), "lists the adapters: {table}");
    let trained = table.lines().find(|l| l.starts_with("gpu-bench: engine train --device gpu: test accuracy "));
    assert!(trained.is_some_and(|l| l.contains(&format!("on gpu: {adapter}"))), "{table}");

    assert!(table.contains("small sizes") && table.contains("(Recorded GPU, torch 2.11)"), "{table}");
    let cold = row(&table, "epoch 1, cold");
    assert!(number(cold[1]) > 0.0 && cold[2] == "2.000", "{cold:?}");
    assert!((number(cold[3]) - number(cold[1]) / 2.0).abs() < 0.01, "ratio {cold:?}");
    let warm = row(&table, "warm epoch");
    assert!(number(warm[1]) > 0.0 && warm[2] == "0.750", "{warm:?}");
    let matmul = row(&table, "matmul 256x256x256");
    assert!(number(matmul[1]) > 0.0 && matmul[2] == "2.0", "{matmul:?}");
    let matmul = row(&table, "matmul 512x512x512");
    assert!(number(matmul[1]) > 0.0 && matmul[2] == "-" && matmul.len() == 3, "{matmul:?}");
    assert!(number(row(&table, "row softmax 512x1000")[1]) > 0.0);
    // One layer of 64: the first product with the batch gathered in its loads, the last with
    // the loss, its gradient and the running loss, 3 backward products (2 weight gradients with
    // their bias gradients, 1 input gradient with the relu's in its epilogue), Adam on 2 pairs of
    // parameters.
    assert_eq!(number(row(&table, "dispatches per step")[1]), 7.0);
    let passes = number(row(&table, "compute passes per step")[1]);
    assert!(passes > 0.0 && passes <= 1.0, "a step's dispatches share compute passes: {passes}");
    let made = number(row(&table, "bind groups made per step")[1]);
    assert!(made < 1.0, "bind groups come from the cache after the first epoch: {made} a step");
    for opened in ["GPU open, empty pipeline cache", "GPU open, filled pipeline cache"] {
        assert!(number(row(&table, opened)[1]) > 0.0, "{table}");
    }
    // The profiled epoch's five costliest kernels, in shares of its GPU time.
    let kernels: Vec<&str> = table.lines().filter(|l| l.contains("(% of a step's GPU time)")).collect();
    let shares: Vec<f64> = kernels.iter().map(|l| number(l.split('|').nth(2).map_or("", str::trim))).collect();
    assert!((1..=5).contains(&kernels.len()) && kernels.iter().any(|l| l.contains("| MatmulTiled ")), "{table}");
    assert!(shares.iter().all(|&s| s > 0.0) && shares.iter().sum::<f64>() <= 100.5, "{shares:?}");
    assert!(shares.windows(2).all(|w| w[0] >= w[1]), "largest first: {shares:?}");

    // Without --small a software adapter is refused, even where the caller allows one.
    let found = gpu::adapters();
    if gpu::choose_adapter(&found).is_ok_and(|i| found[i].is_cpu()) {
        let refused =
            gpu_bench(&own_script, &[bundle.as_path()], &[("ENGINE_ALLOW_SOFTWARE_GPU", Path::new("1"))], &[]);
        let said = text(&refused);
        assert_eq!(refused.status.code(), Some(1), "{said}");
        assert!(said.contains("is a software one") && said.contains(&adapter), "{said}");
        assert!(!said.contains("| measure"), "nothing measured: {said}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
