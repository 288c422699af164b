//! The GPU kernel tests' shared contexts and helpers: an unchecked and a checked context (shaders
//! built without and with naga's runtime bounds checks), both filling every launcher's output
//! with NaN before its kernel runs, and comparisons of the two builds with each other and with
//! the CPU.
//!
//! ```ignore
//! #[path = "common/gpu.rs"]
//! mod gpu;
//! ```
//! Without an adapter the tests say so and skip; with `ENGINE_REQUIRE_GPU=1` (or `true`) they
//! fail instead.
#![allow(dead_code)] // each test binary uses a different part

use std::io::Write;
use std::sync::{Arc, OnceLock};

use engine::backend::gpu::{GpuBuffer, GpuContext};
use engine::rng::Rng;

#[path = "devices.rs"]
mod devices;

/// The shared contexts: `[unchecked, checked]`, or the reason there are none.
pub fn contexts() -> Option<&'static [Arc<GpuContext>; 2]> {
    static CONTEXTS: OnceLock<Result<[Arc<GpuContext>; 2], String>> = OnceLock::new();
    let contexts = CONTEXTS.get_or_init(|| {
        let open = |checked| {
            let ctx = GpuContext::with_options(checked).map_err(|e| e.to_string())?;
            ctx.set_poison_outputs(true);
            Ok::<_, String>(ctx)
        };
        Ok([open(false)?, open(true)?])
    });
    match contexts {
        Ok(contexts) => Some(contexts),
        Err(reason) => {
            if devices::gpu_required() {
                panic!("ENGINE_REQUIRE_GPU is set but no GPU context could be opened: {reason}");
            }
            // Straight to stderr, past the test harness's capture, so that a skip is never silent.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED the GPU kernel tests: no GPU context ({reason}); set ENGINE_REQUIRE_GPU=1 to fail instead"
                );
            });
            None
        }
    }
}

/// Runs `body` on the unchecked and the checked context; their outputs must be identical.
/// Returns the unchecked outputs (or `None` when skipping).
pub fn on_both(name: &str, body: impl Fn(&Arc<GpuContext>) -> Vec<Vec<f32>>) -> Option<Vec<Vec<f32>>> {
    let contexts = contexts()?;
    Some(compare_builds(name, contexts, body))
}

/// Runs `body` on `[unchecked, checked]` contexts of the caller's (with a test hook set, say),
/// compares their outputs as [`on_both`] does, and returns the unchecked ones.
/// A fresh `[unchecked, checked]` pair whose grids wrap into a second dimension past `limit`
/// workgroups, so that every launcher dispatches a 2-D grid with spare workgroups at the end.
pub fn wrapped_contexts(limit: u32) -> [Arc<GpuContext>; 2] {
    let open = |checked| {
        let ctx = GpuContext::with_options(checked).expect("a second context");
        ctx.set_poison_outputs(true);
        ctx.set_grid_limit(limit);
        ctx
    };
    [open(false), open(true)]
}

pub fn compare_builds(
    name: &str,
    [unchecked, checked]: &[Arc<GpuContext>; 2],
    body: impl Fn(&Arc<GpuContext>) -> Vec<Vec<f32>>,
) -> Vec<Vec<f32>> {
    assert!(!unchecked.is_checked() && checked.is_checked());
    let fast = body(unchecked);
    let safe = body(checked);
    assert_eq!(fast.len(), safe.len());
    for (i, (f, s)) in fast.iter().zip(&safe).enumerate() {
        assert_eq!(f.len(), s.len(), "{name}: output {i} lengths differ between builds");
        for (j, (a, b)) in f.iter().zip(s).enumerate() {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{name}: output {i}[{j}] differs between unchecked ({a}) and checked ({b}) shaders"
            );
        }
    }
    fast
}

pub fn random(len: usize, rng: &mut Rng, low: f32, high: f32) -> Vec<f32> {
    (0..len).map(|_| rng.uniform(low, high)).collect()
}

pub fn upload(ctx: &GpuContext, data: &[f32]) -> GpuBuffer {
    GpuBuffer::from_f32(ctx, data).expect("upload")
}

pub fn download(buffer: &GpuBuffer) -> Vec<f32> {
    buffer.to_f32_vec().expect("download")
}

/// `|got - want| <= atol + rtol * |want|` everywhere; NaN only where expected.
pub fn assert_close(name: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{name}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() {
            assert!(g.is_nan(), "{name}[{i}]: expected NaN, got {g}");
            continue;
        }
        assert!((g - w).abs() <= atol + rtol * w.abs(), "{name}[{i}]: got {g}, want {w}");
    }
}
