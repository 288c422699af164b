//! The devices every backward rule and op is checked on: the CPU, and the GPU when one can be
//! opened (lavapipe in CI). Without one the tests say so on stderr, past the harness's capture,
//! and go on with the CPU; with `ENGINE_REQUIRE_GPU=1` (or `true`) they fail instead.

use std::io::Write;
use std::sync::OnceLock;

use engine::Device;

/// True when `ENGINE_REQUIRE_GPU=1` or `true`: a missing GPU fails the test instead of skipping.
pub fn gpu_required() -> bool {
    std::env::var("ENGINE_REQUIRE_GPU").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// A GPU device shared by the tests of this binary, or `None` after saying why once.
/// Panics when the GPU is required and missing.
pub fn gpu() -> Option<Device> {
    static GPU: OnceLock<Result<Device, String>> = OnceLock::new();
    match GPU.get_or_init(open_gpu) {
        Ok(device) => Some(device.clone()),
        Err(why) if gpu_required() => panic!("ENGINE_REQUIRE_GPU is set but {why}"),
        Err(why) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let _ = writeln!(std::io::stderr(), "SKIPPED the GPU half of these tests: {why}");
            });
            None
        }
    }
}

#[cfg(feature = "gpu")]
fn open_gpu() -> Result<Device, String> {
    engine::backend::gpu::GpuContext::new().map(Device::Gpu).map_err(|e| format!("no GPU context ({e})"))
}

#[cfg(not(feature = "gpu"))]
fn open_gpu() -> Result<Device, String> {
    Err("the engine was built without the `gpu` feature".into())
}

/// The CPU, then the GPU when there is one.
pub fn devices() -> Vec<Device> {
    std::iter::once(Device::Cpu).chain(gpu()).collect()
}
