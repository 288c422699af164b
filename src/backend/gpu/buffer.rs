//! Device buffers and the pool they come from.
//!
//! Allocating device memory costs far more than a dispatch, and a training step needs the same
//! sizes again and again, so buffers are kept in power-of-two buckets and handed out again when
//! a [`GpuBuffer`] is dropped. A buffer dropped while the pending encoder may still use it goes
//! back to the pool only after that encoder is submitted: an upload into it (`write_buffer`,
//! which lands before the next submit's commands) can then never overtake the commands that
//! read it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{GpuContext, GpuError, lock};
use crate::ids::IdMap;

/// Smallest bucket: tiny buffers (scalars, uniforms of shape) all share it.
const MIN_BUCKET: u64 = 256;

/// A raw wgpu buffer with the size of its bucket and an id that no other buffer of the process
/// has (bind groups are cached by it).
#[derive(Clone)]
pub(crate) struct RawBuffer {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) bucket: u64,
    pub(crate) id: u64,
}

/// Free buffers by bucket size.
#[derive(Default)]
pub(crate) struct BufferPool {
    free: IdMap<u64, Vec<RawBuffer>>,
    free_bytes: u64,
}

impl BufferPool {
    fn acquire(&mut self, bucket: u64) -> Option<RawBuffer> {
        let raw = self.free.get_mut(&bucket)?.pop()?;
        self.free_bytes -= bucket;
        Some(raw)
    }

    pub(crate) fn release(&mut self, raw: RawBuffer) {
        self.free_bytes += raw.bucket;
        self.free.entry(raw.bucket).or_default().push(raw);
    }

    pub(crate) fn free_bytes(&self) -> u64 {
        self.free_bytes
    }
}

/// The bucket for `bytes`: the next power of two, or the size itself rounded to 256 bytes when
/// the power of two would pass the device's largest buffer.
pub(super) fn bucket_size(bytes: u64, max_buffer_size: u64) -> u64 {
    let pow2 = bytes.max(MIN_BUCKET).next_power_of_two();
    if pow2 <= max_buffer_size { pow2 } else { bytes.next_multiple_of(MIN_BUCKET).min(max_buffer_size) }
}

struct Inner {
    ctx: Arc<GpuContext>,
    raw: RawBuffer,
    /// Elements of 4 bytes (`f32` or `u32`).
    len: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ctx.retire(self.raw.clone());
    }
}

/// A buffer of `len` 4-byte elements (`f32`, or `u32` for indices and packed bytes) on one
/// context's device. Clones share the same device memory; the memory goes back to the
/// context's pool when the last clone is dropped.
#[derive(Clone)]
pub struct GpuBuffer(Arc<Inner>);

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer({} elements)", self.0.len)
    }
}

impl GpuBuffer {
    /// Elements (of 4 bytes) in the buffer.
    pub fn len(&self) -> usize {
        self.0.len
    }

    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// The context the buffer lives on.
    pub fn context(&self) -> &Arc<GpuContext> {
        &self.0.ctx
    }

    /// Whether two handles share the same device memory.
    pub fn same_buffer(&self, other: &GpuBuffer) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    pub(crate) fn raw(&self) -> &wgpu::Buffer {
        &self.0.raw.buffer
    }

    /// The id of the device memory under this handle (reused when the pool hands it out again).
    pub(crate) fn pool_id(&self) -> u64 {
        self.0.raw.id
    }

    /// Bytes a binding of this buffer covers: the data, at least one element (a binding cannot
    /// be empty).
    pub(crate) fn binding_bytes(&self) -> u64 {
        (self.0.len as u64 * 4).max(4)
    }

    /// Uploads `data` into a new buffer.
    pub fn from_f32(ctx: &GpuContext, data: &[f32]) -> Result<GpuBuffer, GpuError> {
        let buffer = ctx.alloc_upload(data.len())?;
        ctx.write(&buffer, bytemuck::cast_slice(data));
        Ok(buffer)
    }

    /// Uploads `data` into a new buffer of `u32` elements (indices).
    pub fn from_u32(ctx: &GpuContext, data: &[u32]) -> Result<GpuBuffer, GpuError> {
        let buffer = ctx.alloc_upload(data.len())?;
        ctx.write(&buffer, bytemuck::cast_slice(data));
        Ok(buffer)
    }

    /// Uploads bytes packed four to a `u32` element, little-endian, the last word padded with
    /// zeros: how a `u8` dataset lives on the device for [`super::ops::gather_batch`].
    pub fn from_u8_packed(ctx: &GpuContext, data: &[u8]) -> Result<GpuBuffer, GpuError> {
        let words: Vec<u32> = data
            .chunks(4)
            .map(|c| {
                let mut word = [0u8; 4];
                word[..c.len()].copy_from_slice(c);
                u32::from_le_bytes(word)
            })
            .collect();
        GpuBuffer::from_u32(ctx, &words)
    }

    /// Downloads the buffer as `f32`. Submits the pending work and waits for it.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>, GpuError> {
        let bytes = self.0.ctx.read(self)?;
        Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// Downloads the buffer as `u32`. Submits the pending work and waits for it.
    pub fn to_u32_vec(&self) -> Result<Vec<u32>, GpuError> {
        let bytes = self.0.ctx.read(self)?;
        Ok(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    /// A copy in a new buffer, ordered after the work recorded so far.
    pub fn duplicate(&self) -> Result<GpuBuffer, GpuError> {
        let ctx = &self.0.ctx;
        let copy = ctx.alloc(self.len(), "a copy")?;
        ctx.copy(self, &copy);
        Ok(copy)
    }
}

impl GpuContext {
    /// A buffer for `len` elements that recorded commands will write first (a kernel's result,
    /// a copy): one retired in the pending batch when there is one of the size (commands run in
    /// order, so its earlier uses are over when they write it), else from the pool, else new.
    /// Checks the device's limits on buffer and storage-binding sizes.
    pub(crate) fn alloc(&self, len: usize, what: &'static str) -> Result<GpuBuffer, GpuError> {
        let bucket = self.bucket_for(len, what)?;
        let retired = {
            let mut pending = lock(&self.pending);
            let found = pending.retired.iter().rposition(|raw| raw.bucket == bucket);
            found.map(|i| pending.retired.swap_remove(i))
        };
        let raw = match retired {
            Some(raw) => raw,
            None => self.pooled_or_new(bucket),
        };
        Ok(self.wrap(raw, len))
    }

    /// A buffer for `len` elements to upload into: never one the pending batch still uses, since
    /// an upload lands before the batch's commands run.
    fn alloc_upload(&self, len: usize) -> Result<GpuBuffer, GpuError> {
        let bucket = self.bucket_for(len, "an upload")?;
        Ok(self.wrap(self.pooled_or_new(bucket), len))
    }

    fn bucket_for(&self, len: usize, what: &'static str) -> Result<u64, GpuError> {
        let bytes = (len as u64).saturating_mul(4).max(4);
        let limit = self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size);
        if bytes > limit {
            return Err(GpuError::TooLarge { what, bytes, limit });
        }
        if len > u32::MAX as usize {
            return Err(GpuError::TooLarge { what, bytes, limit: u32::MAX as u64 * 4 });
        }
        Ok(bucket_size(bytes, self.limits.max_buffer_size))
    }

    fn pooled_or_new(&self, bucket: u64) -> RawBuffer {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        lock(&self.pool).acquire(bucket).unwrap_or_else(|| RawBuffer {
            buffer: self.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: bucket,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            bucket,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    fn wrap(&self, raw: RawBuffer, len: usize) -> GpuBuffer {
        GpuBuffer(Arc::new(Inner { ctx: self.arc(), raw, len }))
    }

    /// Takes back the memory of a dropped buffer: into the pool now when nothing is pending,
    /// else after the pending encoder is submitted.
    fn retire(&self, raw: RawBuffer) {
        let mut pending = lock(&self.pending);
        if pending.encoder.is_some() {
            pending.retired.push(raw);
        } else {
            drop(pending);
            lock(&self.pool).release(raw);
        }
    }

    /// Writes `bytes` at the start of a buffer that no recorded command uses yet (a fresh one).
    fn write(&self, buffer: &GpuBuffer, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.queue.write_buffer(buffer.raw(), 0, bytes);
        }
    }

    fn copy(&self, from: &GpuBuffer, to: &GpuBuffer) {
        if from.is_empty() {
            return;
        }
        let mut pending = lock(&self.pending);
        pending.encoder(&self.device).copy_buffer_to_buffer(from.raw(), 0, to.raw(), 0, from.len() as u64 * 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_within_the_limit() {
        assert_eq!(bucket_size(4, 1 << 30), 256);
        assert_eq!(bucket_size(257, 1 << 30), 512);
        assert_eq!(bucket_size(1 << 20, 1 << 30), 1 << 20);
        // Past the largest buffer: the size itself, rounded to 256 bytes.
        assert_eq!(bucket_size(600 << 20, 800 << 20), 600 << 20);
        assert_eq!(bucket_size(1000, 1000), 1000);
    }
}
