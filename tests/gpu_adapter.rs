//! Which adapter `--device gpu` opens: a software one (lavapipe here) only when
//! `ENGINE_ALLOW_SOFTWARE_GPU` allows it, the one `ENGINE_GPU_ADAPTER` names by index or name,
//! and an error listing the adapters when it names none. Needs a software adapter (lavapipe, in
//! CI); skips without one, unless `ENGINE_REQUIRE_GPU=1` (or `true`).
#![cfg(feature = "gpu")]

#[path = "common/cli.rs"]
mod cli;
#[path = "common/devices.rs"]
#[allow(dead_code)] // only `gpu_required`
mod devices;

use std::process::{Command, Output};

use cli::{stderr, stdout, text};
use engine::backend::gpu::{self, AdapterSummary};

/// The first software adapter and its index, or `None` after saying why.
fn software_adapter() -> Option<(usize, AdapterSummary)> {
    let found = gpu::adapters().into_iter().enumerate().find(|(_, a)| a.is_cpu());
    if found.is_none() {
        assert!(!devices::gpu_required(), "no software adapter (lavapipe) among {:?}", gpu::adapters());
        eprintln!("SKIPPED: no software adapter (lavapipe)");
    }
    found
}

/// `engine ARGS` with `ENGINE_GPU_ADAPTER` set to `adapter` (unset when `None`) and software
/// adapters allowed or not, in a clean environment.
fn engine(name: &str, args: &[&str], adapter: Option<&str>, allow_software: bool) -> Output {
    let store = cli::unused_path(name);
    let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
    cli::clean_env(command.args(args), &store.join("store"), None).env_remove("WGPU_ADAPTER_NAME");
    match adapter {
        Some(adapter) => command.env("ENGINE_GPU_ADAPTER", adapter),
        None => command.env_remove("ENGINE_GPU_ADAPTER"),
    };
    if allow_software {
        command.env("ENGINE_ALLOW_SOFTWARE_GPU", "1");
    } else {
        command.env_remove("ENGINE_ALLOW_SOFTWARE_GPU");
    }
    if args[0] == "train" {
        command.arg("--output-dir").arg(&store);
    }
    let output = command.output().expect("the engine binary runs");
    let _ = std::fs::remove_dir_all(&store);
    output
}

const TRAIN: [&str; 10] =
    ["train", "--device", "gpu", "--epochs", "1", "--train-limit", "300", "--hidden", "8", "--json"];

#[test]
fn a_software_adapter_is_refused_unless_allowed_then_trains() {
    let Some((index, adapter)) = software_adapter() else { return };
    let index = index.to_string();
    let refused = engine("adapter-refused", &TRAIN, Some(&index), false);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let why = stderr(&refused);
    assert!(why.contains(&adapter.name) && why.contains("software"), "names the adapter: {why}");
    assert!(why.contains("ENGINE_ALLOW_SOFTWARE_GPU=1"), "names the variable: {why}");

    let allowed = engine("adapter-allowed", &TRAIN, Some(&index), true);
    let summary = cli::json_line(&allowed);
    let device = summary["device"].as_str().unwrap();
    assert!(device.starts_with("gpu: ") && device.contains(&adapter.name), "{device}");
    assert!(summary["test_accuracy"].as_f64().unwrap() > 0.0, "{summary}");
}

#[test]
fn engine_gpu_adapter_picks_by_name_and_lists_the_adapters_when_it_names_none() {
    let Some((index, adapter)) = software_adapter() else { return };
    // The name in another case, as a part: "llvmpipe (LLVM 15.0.6, 256 bits)" -> "LLVMPIPE".
    let part = adapter.name.split_whitespace().next().unwrap().to_uppercase();
    let picked = cli::json_line(&engine("adapter-by-name", &TRAIN, Some(&part), true));
    assert!(picked["device"].as_str().unwrap().contains(&adapter.name), "{picked}");

    let missing = engine("adapter-missing", &TRAIN, Some("nonexistent"), true);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    let why = stderr(&missing);
    assert!(why.contains("ENGINE_GPU_ADAPTER=nonexistent names no GPU adapter"), "{why}");
    for (i, a) in gpu::adapters().iter().enumerate() {
        assert!(why.contains(&format!("{i}: {a}")), "lists {a}: {why}");
    }
    assert!(why.contains(&format!("{index}: {}", adapter.name)), "{why}");
}

#[test]
fn engine_devices_lists_indices_and_marks_the_adapter_gpu_opens() {
    let Some((index, adapter)) = software_adapter() else { return };
    let listed = engine("adapter-devices", &["devices"], Some(&index.to_string()), false);
    let out = stdout(&listed);
    assert!(listed.status.success(), "{}", text(&listed));
    let line = out
        .lines()
        .find(|l| l.starts_with(&format!("gpu {index}\t{}", adapter.name)))
        .unwrap_or_else(|| panic!("no line `gpu {index}\t{}` in:\n{out}", adapter.name));
    assert!(line.ends_with("<- --device gpu with ENGINE_ALLOW_SOFTWARE_GPU=1 (a software adapter)"), "{line}");

    let allowed = stdout(&engine("adapter-devices-allowed", &["devices"], Some(&index.to_string()), true));
    assert!(allowed.lines().any(|l| l.starts_with(&format!("gpu {index}\t")) && l.ends_with("\t<- --device gpu")));
    let missing = stdout(&engine("adapter-devices-missing", &["devices"], Some("nonexistent"), false));
    assert!(missing.contains("ENGINE_GPU_ADAPTER=nonexistent names no GPU adapter"), "{missing}");
}
