//! Reading buffers back to the host: a copy into a mappable staging buffer after the pending
//! work, submitted, then mapped. [`GpuBuffer::start_read`] returns as soon as the copy is
//! submitted, so the host goes on recording while the GPU gets there (the training loop reads
//! its loss this way, one window late, and the GPU never idles while the host waits for it);
//! [`PendingRead::finish`] waits only for what is not done yet. Staging buffers are kept in a
//! small ring by size, so a read in a loop allocates nothing.

use std::sync::Arc;
use std::sync::mpsc::Receiver;

use super::{GpuBuffer, GpuContext, GpuError, lock};

/// Staging buffers kept for the next reads.
const RING: usize = 4;

/// A read in flight: [`PendingRead::finish`] returns the buffer's contents as they were when
/// [`GpuBuffer::start_read`] was called, after the work recorded before it.
pub struct PendingRead {
    ctx: Arc<GpuContext>,
    staging: Option<wgpu::Buffer>,
    bytes: u64,
    index: Option<wgpu::SubmissionIndex>,
    mapped: Option<Receiver<Result<(), wgpu::BufferAsyncError>>>,
}

impl GpuBuffer {
    /// Starts a download: records a copy after the pending work and submits it, without
    /// waiting for the device.
    pub fn start_read(&self) -> Result<PendingRead, GpuError> {
        let ctx = self.context().clone();
        let bytes = self.len() as u64 * 4;
        if bytes == 0 {
            ctx.flush()?;
            return Ok(PendingRead { ctx, staging: None, bytes, index: None, mapped: None });
        }
        let staging = ctx.staging(bytes);
        let index = {
            let mut pending = lock(&ctx.pending);
            pending.encoder(&ctx.device).copy_buffer_to_buffer(self.raw(), 0, &staging, 0, bytes);
            ctx.submit(&mut pending, None)
        };
        let mapped = request_map(&staging.slice(..bytes));
        Ok(PendingRead { ctx, staging: Some(staging), bytes, index, mapped: Some(mapped) })
    }
}

/// Asks for `slice` to be mapped for reading; the receiver hears when it is (after the device
/// is polled past the work that writes it).
pub(super) fn request_map(slice: &wgpu::BufferSlice) -> Receiver<Result<(), wgpu::BufferAsyncError>> {
    let (sender, receiver) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |result| {
        // The caller waits for it; if it gave up there is nobody left to tell.
        let _ = sender.send(result);
    });
    receiver
}

/// The outcome of a [`request_map`], once the device has been polled past it.
pub(super) fn await_map(mapped: &Receiver<Result<(), wgpu::BufferAsyncError>>) -> Result<(), GpuError> {
    match mapped.recv() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(GpuError::Readback(e.to_string())),
        Err(_) => Err(GpuError::Readback("the map callback never ran".into())),
    }
}

impl PendingRead {
    /// The bytes read, after waiting for the device where it has not got there yet.
    pub fn finish(mut self) -> Result<Vec<u8>, GpuError> {
        let (Some(staging), Some(mapped)) = (self.staging.take(), self.mapped.take()) else {
            return Ok(Vec::new());
        };
        self.ctx.wait(self.index.take())?;
        self.ctx.take_errors()?;
        await_map(&mapped)?;
        let data = {
            let view = staging.slice(..self.bytes).get_mapped_range().map_err(|e| GpuError::Readback(e.to_string()))?;
            view.to_vec()
        };
        staging.unmap();
        self.ctx.keep_staging(staging);
        Ok(data)
    }

    /// [`PendingRead::finish`] as `f32`.
    pub fn finish_f32(self) -> Result<Vec<f32>, GpuError> {
        let bytes = self.finish()?;
        Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}

impl GpuContext {
    /// A mappable buffer of at least `bytes`: one of the ring's, else a new one of the
    /// buffer pool's bucket size, so that the ring's buffers fit the next reads of a size.
    fn staging(&self, bytes: u64) -> wgpu::Buffer {
        let size = super::buffer::bucket_size(bytes, self.limits.max_buffer_size);
        let mut ring = lock(&self.staging);
        if let Some(i) = ring.iter().position(|b| b.size() == size) {
            return ring.swap_remove(i);
        }
        drop(ring);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("engine readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Keeps an unmapped staging buffer for the next read, the oldest one giving way.
    fn keep_staging(&self, buffer: wgpu::Buffer) {
        let mut ring = lock(&self.staging);
        if ring.len() == RING {
            ring.remove(0);
        }
        ring.push(buffer);
    }

    /// Copies a buffer to a mappable one after the pending work, submits, waits, and reads it.
    pub(super) fn read(&self, buffer: &GpuBuffer) -> Result<Vec<u8>, GpuError> {
        buffer.start_read()?.finish()
    }
}
