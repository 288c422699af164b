//! `scripts/gpu-bench.sh --small` end to end on this machine's adapter (lavapipe without a GPU),
//! so that the one command meant for a real GPU is known to work before it meets one: it builds
//! the bench binaries (release profile, so the library of this test's build is reused), trains
//! three short epochs, times small kernels and prints its table, here beside a PyTorch result
//! given as a file. Skips without an adapter, unless `ENGINE_REQUIRE_GPU=1` (or `true`).
#![cfg(feature = "gpu")]

#[path = "common/devices.rs"]
#[allow(dead_code)] // only `gpu_required`
mod devices;

use engine::backend::gpu::GpuContext;

/// The cells of the table row whose label starts with `label`.
fn row<'a>(table: &'a str, label: &str) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|l| l.trim_start_matches("| ").starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?} in:\n{table}"));
    line.split('|').map(str::trim).filter(|c| !c.is_empty()).collect()
}

fn number(cell: &str) -> f64 {
    cell.parse().unwrap_or_else(|_| panic!("{cell:?} is not a number"))
}

#[test]
fn the_gpu_bench_script_prints_its_table_at_small_sizes() {
    if let Err(e) = GpuContext::new() {
        assert!(!devices::gpu_required(), "no GPU adapter: {e}");
        eprintln!("SKIPPED: no GPU adapter ({e})");
        return;
    }
    let dir = std::env::temp_dir().join(format!("engine-gpu-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let torch = dir.join("torch_gpu_anchor.json");
    let recorded = r#"{"device": "Recorded GPU", "torch": "2.11",
        "train_preloaded_bs128": {"epoch_s": [2.0, 1.0, 0.5], "test_acc": [0.8, 0.8, 0.8]},
        "matmul_fp32_notf32": {"128x784x512": {"s": 1e-5, "gflops": 9.0}, "256x256x256": {"s": 1e-3, "gflops": 2.0}},
        "softmax": {"512x1000": {"s": 1e-4, "GBps": 0.5}}}"#;
    std::fs::write(&torch, recorded).unwrap();

    let output = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/gpu-bench.sh"))
        .arg("--small")
        .env("ENGINE_TORCH_JSON", &torch)
        .env_remove("ENGINE_TRAIN_BENCH")
        .env_remove("ENGINE_GPU_REPORT")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{table}\n{}", String::from_utf8_lossy(&output.stderr));

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
    // One layer of 64: the gather, 2 forward products, the loss, 6 backward kernels (the loss
    // gradient, 2 weight and 2 bias gradients, 1 input gradient with the relu's in its epilogue),
    // Adam on 2 pairs of parameters and the running loss.
    assert_eq!(number(row(&table, "dispatches per step")[1]), 13.0);
    let passes = number(row(&table, "compute passes per step")[1]);
    assert!(passes > 0.0 && passes <= 1.0, "a step's dispatches share compute passes: {passes}");
    let made = number(row(&table, "bind groups made per step")[1]);
    assert!(made < 1.0, "bind groups come from the cache after the first epoch: {made} a step");
}
