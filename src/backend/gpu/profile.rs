//! GPU time per kernel, for finding where a step goes: with [`PROFILE_VARIABLE`]`=1` a context
//! writes a timestamp before and after every dispatch (where the adapter can write them inside
//! compute passes: lavapipe and most GPUs), reads them back after each submit and adds each
//! dispatch's time to its kernel. The read waits for the GPU at every submit, so a profiled
//! run is slower; an unprofiled context has no profiler and pays one branch per dispatch.

use std::sync::Mutex;

use super::{GpuError, Kernel, lock, readback};
use crate::ids::IdMap;

/// The variable that turns profiling on: `1` or `true`.
pub const PROFILE_VARIABLE: &str = "ENGINE_GPU_PROFILE";

/// What the device needs for timestamps between dispatches of one pass.
pub(super) const FEATURES: wgpu::Features =
    wgpu::Features::TIMESTAMP_QUERY.union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);

/// Whether [`PROFILE_VARIABLE`] asks for profiling.
pub(super) fn requested() -> bool {
    std::env::var(PROFILE_VARIABLE).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The GPU time of one kernel's dispatches since its context opened.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelTime {
    pub kernel: Kernel,
    pub dispatches: u64,
    pub seconds: f64,
}

/// The timestamps of one batch of dispatches and the totals they add up to.
pub(super) struct Profiler {
    /// Two timestamps per dispatch slot of a batch: before and after.
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    readback: wgpu::Buffer,
    nanoseconds_per_tick: f64,
    /// The kernel of each dispatch of the pending batch, in slot order.
    recorded: Mutex<Vec<Kernel>>,
    totals: Mutex<IdMap<Kernel, (u64, f64)>>,
}

impl Profiler {
    /// A profiler for batches of up to `slots` dispatches, on a device with [`FEATURES`].
    pub(super) fn new(device: &wgpu::Device, queue: &wgpu::Queue, slots: u32) -> Self {
        let queries = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("engine kernel timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: 2 * slots,
        });
        let bytes = 2 * slots as u64 * wgpu::QUERY_SIZE as u64;
        let buffer = |label, usage| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        Self {
            queries,
            resolved: buffer("engine timestamps", wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
            readback: buffer("engine timestamp readback", wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
            nanoseconds_per_tick: queue.get_timestamp_period() as f64,
            recorded: Mutex::default(),
            totals: Mutex::default(),
        }
    }

    /// Records the timestamp before the dispatch in `slot`.
    pub(super) fn before(&self, pass: &mut wgpu::ComputePass<'_>, slot: u32) {
        pass.write_timestamp(&self.queries, 2 * slot);
    }

    /// Records the timestamp after the dispatch of `kernel` in `slot`.
    pub(super) fn after(&self, pass: &mut wgpu::ComputePass<'_>, slot: u32, kernel: Kernel) {
        pass.write_timestamp(&self.queries, 2 * slot + 1);
        lock(&self.recorded).push(kernel);
    }

    /// Records the copy of the batch's timestamps to the readback buffer, at the end of its
    /// encoder (no compute pass open). False when the batch dispatched nothing.
    pub(super) fn resolve(&self, encoder: &mut wgpu::CommandEncoder) -> bool {
        let count = lock(&self.recorded).len() as u32;
        if count == 0 {
            return false;
        }
        encoder.resolve_query_set(&self.queries, 0..2 * count, &self.resolved, 0);
        let bytes = 2 * count as u64 * wgpu::QUERY_SIZE as u64;
        encoder.copy_buffer_to_buffer(&self.resolved, 0, &self.readback, 0, bytes);
        true
    }

    /// Waits for the submitted batch whose timestamps [`Profiler::resolve`] copied and adds
    /// each dispatch's time to its kernel.
    pub(super) fn collect(&self, device: &wgpu::Device, index: wgpu::SubmissionIndex) -> Result<(), GpuError> {
        let kernels = std::mem::take(&mut *lock(&self.recorded));
        let bytes = 2 * kernels.len() as u64 * wgpu::QUERY_SIZE as u64;
        let slice = self.readback.slice(..bytes);
        let mapped = readback::request_map(&slice);
        let poll = wgpu::PollType::Wait { submission_index: Some(index), timeout: None };
        device.poll(poll).map_err(|e| GpuError::Device(e.to_string()))?;
        readback::await_map(&mapped)?;
        let ticks: Vec<u64> = {
            let view = slice.get_mapped_range().map_err(|e| GpuError::Readback(e.to_string()))?;
            view.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect()
        };
        self.readback.unmap();
        let mut totals = lock(&self.totals);
        for (kernel, pair) in kernels.iter().zip(ticks.chunks_exact(2)) {
            let total = totals.entry(*kernel).or_default();
            total.0 += 1;
            total.1 += pair[1].saturating_sub(pair[0]) as f64 * self.nanoseconds_per_tick * 1e-9;
        }
        Ok(())
    }

    /// Each kernel's time so far, the longest first.
    pub(super) fn times(&self) -> Vec<KernelTime> {
        let mut times: Vec<_> = lock(&self.totals)
            .iter()
            .map(|(&kernel, &(dispatches, seconds))| KernelTime { kernel, dispatches, seconds })
            .collect();
        times.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        times
    }
}
