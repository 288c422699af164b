//! The GPU backend: wgpu compute kernels on device buffers. Every wgpu call of the crate lives in
//! this module, because wgpu's API changes between versions (it is pinned to 30) and one place
//! is all that has to follow it.
//!
//! A [`GpuContext`] owns the device and queue, a cache of compute pipelines built once per
//! kernel (`pipeline`), a size-bucketed buffer pool (`buffer`) and the pending work. Launchers in
//! [`ops`] and [`conv`] record dispatches into one open compute pass (wgpu puts the barriers
//! between them); the pass ends only where a copy must be recorded, and the batch is submitted
//! when the host needs a result (a download) or after [`MAX_BATCH`] dispatches: on an H200 a
//! dispatch costs about 6 us inside a pass, 36 us as a pass of its own, and a submit about 100 us.
//!
//! Each dispatch's shape parameters go to their own slot of a uniform ring, bound at a dynamic
//! offset; the slots of a batch are written in one `queue.write_buffer` just before its submit
//! (such a write lands at the next submit, before that submit's commands, so one shared uniform
//! would be overwritten before earlier recorded dispatches run). The bind group of a kernel and
//! its buffers is made once and kept: a training step binds the same pooled buffers every time.
//!
//! Shaders are built with naga's runtime bounds checks off by default (they cost 10-20x on real
//! GPUs), so each kernel guards its indices itself; [`GpuContext::with_options`] builds them
//! checked, and the tests run both ways.

mod adapter;
mod args;
mod batch;
mod buffer;
pub mod conv;
mod disk_cache;
mod loss;
pub mod ops;
mod params;
mod pipeline;
mod profile;
mod readback;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

pub use adapter::{ADAPTER_VARIABLE, AdapterSummary, adapters, choose_adapter};
use adapter::{enumerate, new_instance};
pub use buffer::GpuBuffer;
use buffer::{BufferPool, RawBuffer};
use disk_cache::DiskCache;
pub use pipeline::Kernel;
use pipeline::Pipelines;
use profile::Profiler;
pub use profile::{KernelTime, PROFILE_VARIABLE};
pub use readback::PendingRead;

use crate::ids::IdMap;

/// Dispatches recorded before the pending encoder is submitted without waiting for a download.
pub const MAX_BATCH: u32 = 256;

/// Bind groups kept before the cache starts again empty: a training step needs a few dozen, so
/// this bounds only programs whose shapes keep changing.
const MAX_BIND_GROUPS: usize = 4096;

/// Bytes of shape parameters one dispatch may pass in its uniform slot.
const PARAMS_BYTES: u64 = 128;

/// Errors of the GPU backend: a missing adapter, a size past the device's limits, a shape that
/// does not fit the buffers, or a failure reported by the driver.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "no GPU adapter found: install a Vulkan/Metal/DX12 driver; on Linux without a GPU, Mesa's lavapipe: apt-get install mesa-vulkan-drivers"
    )]
    /// wgpu found no adapter on any backend.
    NoAdapter,
    #[error("{variable}={wanted} names no GPU adapter; there are: {available}")]
    /// [`ADAPTER_VARIABLE`] (or `WGPU_ADAPTER_NAME`) matches no adapter's index or name.
    NoSuchAdapter { variable: &'static str, wanted: String, available: String },
    #[error("the GPU adapter {adapter} refused a device: {reason}")]
    /// The adapter exists but would not open a device with its own limits.
    RequestDevice { adapter: String, reason: String },
    #[error("{what} needs {bytes} bytes, past the device limit of {limit} bytes")]
    /// A buffer would pass the device's largest buffer or storage binding.
    TooLarge { what: &'static str, bytes: u64, limit: u64 },
    #[error("{what} needs {groups} workgroups, past the device limit of {limit}")]
    /// A dispatch would need more workgroups than even a 2-D grid holds.
    TooManyWorkgroups { what: &'static str, groups: u64, limit: u64 },
    #[error("{op}: {detail}")]
    /// Buffers that do not hold the elements the given sizes need, or sizes past 32 bits.
    Shape { op: &'static str, detail: String },
    #[error("{op}: a buffer belongs to another GPU context")]
    /// Buffers of different contexts (devices) in one op.
    ContextMismatch { op: &'static str },
    #[error("{op}: the same buffer is bound twice where one of the bindings writes it")]
    /// An in-place op given the same buffer for two of its operands.
    Aliased { op: &'static str },
    #[error("building the {kernel:?} kernel failed: {reason}")]
    /// A shader failed to compile or a pipeline failed to build (a bug, or a driver's limit).
    Pipeline { kernel: Kernel, reason: String },
    #[error("the GPU device reported an error: {0}")]
    /// An error the driver reported for recorded work: out of memory, validation, device lost.
    Device(String),
    #[error("reading a buffer back from the GPU failed: {0}")]
    /// Mapping a buffer for a download failed.
    Readback(String),
}

/// Size limits of the device that the launchers check before they allocate or dispatch.
#[derive(Clone, Copy, Debug)]
pub struct DeviceLimits {
    /// Bytes of the largest buffer.
    pub max_buffer_size: u64,
    /// Bytes of the largest storage binding: every buffer a kernel reads or writes.
    pub max_storage_buffer_binding_size: u64,
    /// Workgroups per grid dimension (65,535 on most devices).
    pub max_compute_workgroups_per_dimension: u32,
    /// Storage buffers one kernel binds (8 in WebGPU's minimum limits, more on most GPUs).
    pub max_storage_buffers_per_shader_stage: u32,
}

impl DeviceLimits {
    /// The limits this engine reads, of a device's.
    fn of(raw: &wgpu::Limits) -> DeviceLimits {
        DeviceLimits {
            max_buffer_size: raw.max_buffer_size,
            max_storage_buffer_binding_size: raw.max_storage_buffer_binding_size,
            max_compute_workgroups_per_dimension: raw.max_compute_workgroups_per_dimension,
            max_storage_buffers_per_shader_stage: raw.max_storage_buffers_per_shader_stage,
        }
    }

    /// Whether a kernel's storage bindings fit the device's limit.
    pub fn binds(&self, kernel: Kernel) -> bool {
        kernel.bindings().len() <= self.max_storage_buffers_per_shader_stage as usize
    }
}

/// Work recorded and submitted since the context opened, counted for benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuStats {
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Compute passes they were recorded in.
    pub passes: u64,
    /// Command buffers submitted to the queue.
    pub submits: u64,
    /// Bind groups made (the others came from the cache).
    pub bind_groups: u64,
}

/// A kernel and the buffers bound to it (pool ids and bound bytes): what a bind group holds.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct BindKey {
    kernel: Kernel,
    buffers: [(u64, u64); MAX_BINDINGS],
}

/// Storage bindings of the kernel that has the most.
const MAX_BINDINGS: usize = 24;

/// The recorded but not yet submitted work.
struct Pending {
    stats: GpuStats,
    /// The open compute pass of `encoder` (declared first: it must be dropped before it).
    pass: Option<wgpu::ComputePass<'static>>,
    encoder: Option<wgpu::CommandEncoder>,
    /// The kernel last set on `pass`.
    pass_kernel: Option<Kernel>,
    /// Dispatches in `encoder`; also the next free slot of the uniform ring.
    dispatches: u32,
    /// The uniform slots of those dispatches, written to the ring just before the submit.
    params: Vec<u8>,
    /// Buffers dropped while `encoder` may still use them: pooled again after the submit, and
    /// meanwhile handed out again only for results of recorded commands, never for uploads.
    retired: Vec<RawBuffer>,
    bind_groups: IdMap<BindKey, wgpu::BindGroup>,
}

impl Pending {
    /// The encoder, created if none is pending, with no compute pass open on it.
    fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.pass_kernel = None;
        self.encoder
            .get_or_insert_with(|| device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None }))
    }
}

/// How a context opens: [`GpuOptions::from_env`] is what [`GpuContext::new`] takes.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Shaders built with naga's runtime bounds checks (slower; the tests compare both builds).
    pub checked: bool,
    /// Where the driver's compiled pipelines are kept between runs (none: not kept). A
    /// missing, corrupt or foreign cache file there is a note on stderr, never an error.
    pub cache_dir: Option<PathBuf>,
    /// Time every dispatch with timestamp queries, where the adapter can
    /// ([`GpuContext::kernel_times`]).
    pub profile: bool,
}

impl GpuOptions {
    /// Unchecked shaders, the pipeline cache under the user's cache directory
    /// (`$XDG_CACHE_HOME/engine/pipelines`, else `~/.cache/engine/pipelines`), and profiling
    /// when [`PROFILE_VARIABLE`] is `1`.
    pub fn from_env() -> Self {
        Self { checked: false, cache_dir: disk_cache::default_dir(), profile: profile::requested() }
    }
}

/// One GPU device with its queue, kernels, buffer pool and pending commands. Shared as
/// `Arc<GpuContext>`; every [`GpuBuffer`] keeps its context alive.
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: AdapterSummary,
    limits: DeviceLimits,
    checked: bool,
    pipelines: Pipelines,
    /// Timestamps around every dispatch, when profiling.
    profiler: Option<Profiler>,
    pool: Mutex<BufferPool>,
    /// Mappable buffers for the next downloads.
    staging: Mutex<Vec<wgpu::Buffer>>,
    pending: Mutex<Pending>,
    /// `MAX_BATCH` parameter slots, one per dispatch of a batch.
    uniforms: wgpu::Buffer,
    uniform_stride: u64,
    /// Errors the driver reported outside an error scope, returned at the next flush.
    errors: Arc<Mutex<Vec<String>>>,
    poison_outputs: AtomicBool,
    /// Workgroups per grid dimension before a dispatch wraps into y (the device's limit, or
    /// less for tests of the wrapping).
    grid_limit: AtomicU32,
    this: Weak<GpuContext>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext").field("adapter", &self.info).field("checked", &self.checked).finish()
    }
}

impl GpuContext {
    /// Opens the adapter [`choose_adapter`] picks (a hardware GPU before a software one, unless
    /// [`ADAPTER_VARIABLE`] names another) with its full limits, and builds every kernel's
    /// pipeline, shaders without runtime bounds checks, the driver's compiled pipelines kept
    /// under the user's cache directory where the backend supports it (Vulkan). Fails with
    /// [`GpuError::NoAdapter`] when wgpu finds no adapter, and with [`GpuError::NoSuchAdapter`]
    /// when the variable names none of them.
    pub fn new() -> Result<Arc<GpuContext>, GpuError> {
        Self::with_options(false)
    }

    /// As [`GpuContext::new`]; `checked` builds every shader with naga's runtime bounds checks
    /// (slower, for tests that compare the two builds).
    pub fn with_options(checked: bool) -> Result<Arc<GpuContext>, GpuError> {
        Self::open_with(&GpuOptions { checked, ..GpuOptions::from_env() })
    }

    /// As [`GpuContext::new`], with `options` instead of the environment's.
    pub fn open_with(options: &GpuOptions) -> Result<Arc<GpuContext>, GpuError> {
        let mut adapters = enumerate(&new_instance());
        let summaries: Vec<_> = adapters.iter().map(|a| AdapterSummary::from_info(&a.get_info())).collect();
        Self::open(adapters.swap_remove(choose_adapter(&summaries)?), options)
    }

    /// A context on wgpu's noop backend: buffers are created, written, copied and mapped, but
    /// no shader runs (downloads read zeros or stale data). What a step costs there is what the
    /// host spends recording and submitting it; only benchmarks use it.
    #[cfg(feature = "noop")]
    pub fn noop() -> Result<Arc<GpuContext>, GpuError> {
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
        descriptor.backends = wgpu::Backends::NOOP;
        descriptor.backend_options.noop = wgpu::NoopBackendOptions { enable: true, ..Default::default() };
        let instance = wgpu::Instance::new(descriptor);
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .map_err(|_| GpuError::NoAdapter)?;
        Self::open(adapter, &GpuOptions::default())
    }

    fn open(adapter: wgpu::Adapter, options: &GpuOptions) -> Result<Arc<GpuContext>, GpuError> {
        let raw_info = adapter.get_info();
        let info = AdapterSummary::from_info(&raw_info);
        let checked = options.checked;
        let has = |features| adapter.features().contains(features);
        let cache_dir = options.cache_dir.as_deref().filter(|_| has(wgpu::Features::PIPELINE_CACHE));
        let profile = options.profile && has(profile::FEATURES);
        if options.profile && !profile {
            eprintln!(
                "note: {PROFILE_VARIABLE}: {info} cannot write timestamps inside compute passes; no kernel times"
            );
        }
        let mut features = wgpu::Features::empty();
        features.set(wgpu::Features::PIPELINE_CACHE, cache_dir.is_some());
        features.set(profile::FEATURES, profile);
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("engine"),
            required_features: features,
            required_limits: adapter.limits(),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&descriptor))
            .map_err(|e| GpuError::RequestDevice { adapter: info.to_string(), reason: e.to_string() })?;

        let errors = collect_errors(&device);
        let raw = device.limits();
        let limits = DeviceLimits::of(&raw);
        let uniform_stride = (raw.min_uniform_buffer_offset_alignment as u64).max(PARAMS_BYTES).next_multiple_of(16);
        let uniforms = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("engine uniform ring"),
            size: uniform_stride * MAX_BATCH as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let disk_cache = cache_dir.and_then(|dir| DiskCache::open(&device, &raw_info, checked, dir));
        let pipelines = Pipelines::new(checked, disk_cache.as_ref().map(|disk| disk.cache().clone()));
        let profiler = profile.then(|| Profiler::new(&device, &queue, MAX_BATCH));
        // Every kernel now, in parallel, rather than one by one inside the first epoch.
        // Those the device can bind: the launchers fall back from the others.
        let kernels: Vec<Kernel> = Kernel::ALL.into_iter().filter(|k| limits.binds(*k)).collect();
        pipelines.build_all(&device, &kernels)?;
        if let Some(disk) = &disk_cache {
            disk.save();
        }
        Ok(Arc::new_cyclic(|this| GpuContext {
            device,
            queue,
            info,
            limits,
            checked,
            pipelines,
            profiler,
            pool: Mutex::new(BufferPool::default()),
            staging: Mutex::default(),
            pending: Mutex::new(Pending {
                stats: GpuStats::default(),
                pass: None,
                encoder: None,
                pass_kernel: None,
                dispatches: 0,
                params: Vec::new(),
                retired: Vec::new(),
                bind_groups: IdMap::default(),
            }),
            uniforms,
            uniform_stride,
            errors,
            poison_outputs: AtomicBool::new(false),
            grid_limit: AtomicU32::new(limits.max_compute_workgroups_per_dimension.max(1)),
            this: this.clone(),
        }))
    }

    /// The adapter this context runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.info
    }

    /// The size limits the launchers check.
    pub fn limits(&self) -> DeviceLimits {
        self.limits
    }

    /// Whether the shaders were built with runtime bounds checks.
    pub fn is_checked(&self) -> bool {
        self.checked
    }

    /// A test hook: while on, every buffer a launcher allocates for its output is filled with
    /// NaN first (one extra dispatch), so an element the kernel fails to write shows up.
    pub fn set_poison_outputs(&self, on: bool) {
        self.poison_outputs.store(on, Ordering::Relaxed);
    }

    /// A test hook: wrap grids into a second dimension past `limit` workgroups (at most the
    /// device's limit), so that the wrapping can be tested on small inputs.
    pub fn set_grid_limit(&self, limit: u32) {
        let limit = limit.clamp(1, self.limits.max_compute_workgroups_per_dimension.max(1));
        self.grid_limit.store(limit, Ordering::Relaxed);
    }

    /// Submits the recorded work without waiting for it.
    pub fn flush(&self) -> Result<(), GpuError> {
        let mut pending = lock(&self.pending);
        self.submit(&mut pending, None);
        self.take_errors()
    }

    /// Submits the recorded work and waits until the device has finished it.
    pub fn synchronize(&self) -> Result<(), GpuError> {
        let index = {
            let mut pending = lock(&self.pending);
            self.submit(&mut pending, None)
        };
        self.wait(index)?;
        self.take_errors()
    }

    /// The GPU time of each kernel's dispatches so far, the longest first, counted up to the
    /// last submit; `None` when the context is not profiling (see [`GpuOptions::profile`]).
    pub fn kernel_times(&self) -> Option<Vec<KernelTime>> {
        self.profiler.as_ref().map(Profiler::times)
    }

    /// The work recorded and submitted so far.
    pub fn stats(&self) -> GpuStats {
        lock(&self.pending).stats
    }

    /// Bytes held by free buffers in the pool.
    pub fn pooled_bytes(&self) -> u64 {
        lock(&self.pool).free_bytes()
    }

    fn arc(&self) -> Arc<GpuContext> {
        // A context is only ever built inside an Arc (`with_options`), and `&self` proves the Arc
        // is alive, so the upgrade cannot fail.
        self.this.upgrade().expect("a GpuContext lives in an Arc")
    }

    /// Submits the pending encoder (an empty one too, when `extra` carries a command buffer)
    /// and returns the pooled buffers it held back.
    fn submit(&self, pending: &mut Pending, extra: Option<wgpu::CommandBuffer>) -> Option<wgpu::SubmissionIndex> {
        pending.pass = None;
        pending.pass_kernel = None;
        if !pending.params.is_empty() {
            self.queue.write_buffer(&self.uniforms, 0, &pending.params);
            pending.params.clear();
        }
        let mut buffers = Vec::with_capacity(2);
        let mut profiled = false;
        if let Some(mut encoder) = pending.encoder.take() {
            profiled = self.profiler.as_ref().is_some_and(|p| p.resolve(&mut encoder));
            buffers.push(encoder.finish());
        }
        buffers.extend(extra);
        pending.dispatches = 0;
        pending.stats.submits += !buffers.is_empty() as u64;
        let index = (!buffers.is_empty()).then(|| self.queue.submit(buffers));
        if let (true, Some(profiler), Some(index)) = (profiled, &self.profiler, &index) {
            // The next batch reuses the timestamp slots: read this one's now.
            if let Err(e) = profiler.collect(&self.device, index.clone()) {
                lock(&self.errors).push(format!("reading the kernel timestamps: {e}"));
            }
        }
        if !pending.retired.is_empty() {
            let mut pool = lock(&self.pool);
            for raw in pending.retired.drain(..) {
                pool.release(raw);
            }
        }
        index
    }

    fn wait(&self, index: Option<wgpu::SubmissionIndex>) -> Result<(), GpuError> {
        let poll = wgpu::PollType::Wait { submission_index: index, timeout: None };
        self.device.poll(poll).map(|_| ()).map_err(|e| GpuError::Device(e.to_string()))
    }

    fn take_errors(&self) -> Result<(), GpuError> {
        let mut errors = lock(&self.errors);
        if errors.is_empty() {
            return Ok(());
        }
        let message = errors.join("; ");
        errors.clear();
        Err(GpuError::Device(message))
    }

    /// Records one dispatch of `kernel` over `groups` workgroups, with `params` (the kernel's
    /// `#[repr(C)]` parameter struct, laid out as the shader's `Params`) in its uniform slot and
    /// `buffers` bound in order from binding 1.
    fn dispatch<P: bytemuck::Pod>(
        &self,
        kernel: Kernel,
        params: &P,
        buffers: &[&GpuBuffer],
        groups: u64,
        what: &'static str,
    ) -> Result<(), GpuError> {
        const { assert!(size_of::<P>() <= PARAMS_BYTES as usize, "more parameters than a uniform slot holds") };
        self.dispatch_bytes(kernel, bytemuck::bytes_of(params), buffers, groups, what)
    }

    fn dispatch_bytes(
        &self,
        kernel: Kernel,
        params: &[u8],
        buffers: &[&GpuBuffer],
        groups: u64,
        what: &'static str,
    ) -> Result<(), GpuError> {
        debug_assert_eq!(buffers.len(), kernel.bindings().len(), "{kernel:?}: wrong number of buffers");
        debug_assert!(buffers.len() <= MAX_BINDINGS, "{kernel:?}: more bindings than a bind key holds");
        if groups == 0 {
            return Ok(());
        }
        let bindings = kernel.bindings();
        for (i, buffer) in buffers.iter().enumerate() {
            let writes = bindings.get(i) == Some(&pipeline::Access::ReadWrite);
            if writes && buffers.iter().enumerate().any(|(j, other)| j != i && other.same_buffer(buffer)) {
                return Err(GpuError::Aliased { op: what });
            }
        }
        let (x, y) = self.grid(groups, what)?;
        let pipeline = self.pipelines.get(&self.device, kernel)?;
        let mut guard = lock(&self.pending);
        if guard.dispatches >= MAX_BATCH {
            self.submit(&mut guard, None);
        }
        let pending = &mut *guard;
        let offset = pending.dispatches as usize * self.uniform_stride as usize;
        pending.params.resize(offset + self.uniform_stride as usize, 0);
        pending.params[offset..offset + params.len()].copy_from_slice(params);

        let mut key = BindKey { kernel, buffers: [(0, 0); MAX_BINDINGS] };
        for (slot, buffer) in key.buffers.iter_mut().zip(buffers) {
            *slot = (buffer.pool_id(), buffer.binding_bytes());
        }
        if pending.bind_groups.len() >= MAX_BIND_GROUPS && !pending.bind_groups.contains_key(&key) {
            pending.bind_groups.clear();
        }
        let bind_group = pending.bind_groups.entry(key).or_insert_with(|| {
            pending.stats.bind_groups += 1;
            self.bind_group(&pipeline, buffers)
        });

        if pending.pass.is_none() {
            let device = &self.device;
            let encoder = pending
                .encoder
                .get_or_insert_with(|| device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None }));
            let pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
            pending.pass = Some(pass.forget_lifetime());
            pending.pass_kernel = None;
            pending.stats.passes += 1;
        }
        if let Some(pass) = pending.pass.as_mut() {
            if pending.pass_kernel != Some(kernel) {
                pass.set_pipeline(&pipeline.pipeline);
                pending.pass_kernel = Some(kernel);
            }
            pass.set_bind_group(0, &*bind_group, &[offset as u32]);
            if let Some(profiler) = &self.profiler {
                profiler.before(pass, pending.dispatches);
                pass.dispatch_workgroups(x, y, 1);
                profiler.after(pass, pending.dispatches, kernel);
            } else {
                pass.dispatch_workgroups(x, y, 1);
            }
        }
        pending.dispatches += 1;
        pending.stats.dispatches += 1;
        Ok(())
    }

    /// A bind group of `buffers` in order from binding 1, after the uniform ring's slot (bound
    /// at a dynamic offset) at binding 0.
    fn bind_group(&self, pipeline: &pipeline::CompiledKernel, buffers: &[&GpuBuffer]) -> wgpu::BindGroup {
        let mut entries = Vec::with_capacity(buffers.len() + 1);
        entries.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.uniforms,
                offset: 0,
                size: wgpu::BufferSize::new(PARAMS_BYTES),
            }),
        });
        for (i, buffer) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: buffer.raw(),
                    offset: 0,
                    size: wgpu::BufferSize::new(buffer.binding_bytes()),
                }),
            });
        }
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.layout,
            entries: &entries,
        })
    }

    /// A 2-D grid of at least `groups` workgroups: x up to the per-dimension limit, then rows.
    /// Kernels recover the flat index as `x + y * num_workgroups.x` and skip those past it.
    fn grid(&self, groups: u64, what: &'static str) -> Result<(u32, u32), GpuError> {
        let limit = self.grid_limit.load(Ordering::Relaxed) as u64;
        let x = groups.min(limit);
        let y = groups.div_ceil(x);
        let max_y = self.limits.max_compute_workgroups_per_dimension as u64;
        if y > max_y {
            return Err(GpuError::TooManyWorkgroups { what, groups, limit: limit * max_y });
        }
        Ok((x as u32, y as u32))
    }
}

/// Locks a mutex, taking the data of a poisoned one: every critical section here leaves its
/// state consistent, so a panic elsewhere need not stop the GPU.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The device's validation errors and its loss, kept for the next check instead of wgpu's
/// default of a panic.
fn collect_errors(device: &wgpu::Device) -> Arc<Mutex<Vec<String>>> {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = errors.clone();
    device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| lock(&sink).push(e.to_string())));
    let lost = errors.clone();
    device.set_device_lost_callback(move |reason, message| {
        lock(&lost).push(format!("device lost ({reason:?}): {message}"));
    });
    errors
}
