//! Kernel times from timestamp queries: a profiling context counts every dispatch of each
//! kernel with a positive GPU time and computes exactly what an unprofiled one does; an
//! unprofiled context reports no times. Needs an adapter that writes timestamps inside compute
//! passes (lavapipe does, in CI); skips without one, unless `ENGINE_REQUIRE_GPU=1` (or `true`).
#![cfg(feature = "gpu")]

#[path = "common/devices.rs"]
#[allow(dead_code)] // only `gpu_required`
mod devices;

use std::sync::Arc;

use engine::backend::gpu::ops::{self, Epilogue, MatmulShape};
use engine::backend::gpu::{GpuBuffer, GpuContext, GpuOptions, Kernel};

fn open(checked: bool, profile: bool) -> Option<Arc<GpuContext>> {
    match GpuContext::open_with(&GpuOptions { checked, cache_dir: None, profile }) {
        Ok(ctx) => Some(ctx),
        Err(e) if !devices::gpu_required() => {
            eprintln!("SKIPPED: no GPU context ({e})");
            None
        }
        Err(e) => panic!("ENGINE_REQUIRE_GPU is set but no GPU context opened: {e}"),
    }
}

/// Three products (tiled kernel) and two row softmaxes, more dispatches than one batch holds
/// when `repeats` is large, so that timestamps are read after several submits.
fn work(ctx: &Arc<GpuContext>, repeats: usize) -> Vec<f32> {
    let (m, k, n) = (37, 70, 19);
    let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 8.0).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 8.0).collect();
    let (a, b) = (GpuBuffer::from_f32(ctx, &a).unwrap(), GpuBuffer::from_f32(ctx, &b).unwrap());
    let mut out = Vec::new();
    for _ in 0..repeats {
        for _ in 0..3 {
            out =
                ops::matmul(ctx, &a, &b, MatmulShape::new(m, k, n), Epilogue::default()).unwrap().to_f32_vec().unwrap();
        }
        for _ in 0..2 {
            let y = GpuBuffer::from_f32(ctx, &out).unwrap();
            out = ops::softmax_rows(ctx, &y, m, n).unwrap().to_f32_vec().unwrap();
        }
    }
    out
}

#[test]
fn a_profiling_context_times_every_dispatch_and_computes_the_same() {
    for checked in [false, true] {
        let Some(plain) = open(checked, false) else { return };
        assert!(plain.kernel_times().is_none(), "an unprofiled context keeps no times");
        let profiled = open(checked, true).unwrap();
        let Some(before) = profiled.kernel_times() else {
            assert!(!devices::gpu_required(), "{} writes no timestamps inside passes", profiled.adapter());
            eprintln!("SKIPPED: {} writes no timestamps inside passes", profiled.adapter());
            return;
        };
        assert!(before.is_empty(), "no dispatch yet: {before:?}");
        assert_eq!(work(&profiled, 4), work(&plain, 4), "profiling changes no result");
        profiled.synchronize().unwrap();
        let times = profiled.kernel_times().unwrap();
        let of = |kernel| times.iter().find(|t| t.kernel == kernel).copied();
        let matmul = of(Kernel::MatmulTiled).expect("the products were timed");
        let softmax = of(Kernel::SoftmaxRows).expect("the softmaxes were timed");
        assert_eq!((matmul.dispatches, softmax.dispatches), (12, 8), "{times:?}");
        assert!(matmul.seconds > 0.0 && softmax.seconds > 0.0, "{times:?}");
        assert!(times.windows(2).all(|w| w[0].seconds >= w[1].seconds), "longest first: {times:?}");
        assert_eq!(times.iter().map(|t| t.dispatches).sum::<u64>(), profiled.stats().dispatches);
    }
}
