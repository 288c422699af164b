//! Training batches made where the data is: the dataset's bytes kept on the host for the CPU,
//! or uploaded once to a GPU, and each batch gathered and normalised there.

use crate::backend::gpu::{self, GpuBuffer, ops::DatasetBuffers};
use crate::backend::{ChannelAffine, cpu};
use crate::error::{Error, Result};
use crate::nn::Weights;
use crate::tensor::{Device, Storage, Tensor};

/// A dataset of `u8` samples (`features` bytes each, with one label byte) held where training
/// batches are made from it, in the order of an epoch: the host's bytes for the CPU; on a GPU
/// the bytes uploaded once and each epoch's order once, so that a kernel gathers and normalises
/// every batch there and nothing crosses the bus per step but the loss.
pub(crate) struct BatchSource<'a> {
    storage: BatchStorage<'a>,
    /// Samples in the dataset, and bytes per sample.
    samples: usize,
    features: usize,
    /// An input is `byte * scale + shift` with the affine of the byte's channel.
    affine: ChannelAffine,
}

enum BatchStorage<'a> {
    Cpu {
        samples: &'a [u8],
        labels: &'a [u8],
        order: Vec<usize>,
    },
    Gpu {
        samples: GpuBuffer,
        labels: GpuBuffer,
        /// The epoch's order as `u32` indices.
        order: Option<GpuBuffer>,
    },
}

impl<'a> BatchSource<'a> {
    /// `samples` holds `labels.len()` samples of `features` bytes each, in equal CHW planes of
    /// the channels of `per_channel`, which gives each channel's `(scale, shift)` (one to
    /// [`crate::backend::MAX_CHANNELS`] of them).
    pub(crate) fn new(
        samples: &'a [u8],
        labels: &'a [u8],
        features: usize,
        per_channel: &[(f32, f32)],
        device: &Device,
    ) -> Result<BatchSource<'a>> {
        if Some(samples.len()) != labels.len().checked_mul(features) {
            return Err(Error::ElementCount { len: samples.len(), shape: vec![labels.len(), features] });
        }
        let affine = ChannelAffine::new(per_channel).map_err(Error::InvalidArgument)?;
        affine.plane(features).map_err(Error::InvalidArgument)?;
        let storage = match device {
            Device::Cpu => BatchStorage::Cpu { samples, labels, order: Vec::new() },
            Device::Gpu(ctx) => BatchStorage::Gpu {
                samples: GpuBuffer::from_u8_packed(ctx, samples)?,
                labels: GpuBuffer::from_u8_packed(ctx, labels)?,
                order: None,
            },
        };
        Ok(BatchSource { storage, samples: labels.len(), features, affine })
    }

    /// Takes an epoch's order of the samples: batches are runs of its entries.
    pub(crate) fn set_order(&mut self, order: &[usize]) -> Result<()> {
        match &mut self.storage {
            BatchStorage::Cpu { order: current, .. } => *current = order.to_vec(),
            BatchStorage::Gpu { samples, order: current, .. } => {
                let order: Vec<u32> = order.iter().map(|&i| i as u32).collect();
                *current = Some(GpuBuffer::from_u32(samples.context(), &order)?);
            }
        }
        Ok(())
    }

    /// The output of a first layer, linear with `weights` (through a relu when `relu`), on the
    /// batch at entries `first..first + len` of the order, and the batch's labels, where the data
    /// is on a GPU: one kernel gathers the batch inside the layer's product. `None` on the CPU,
    /// where [`BatchSource::batch`] makes the batch.
    pub(crate) fn first_layer(
        &self,
        first: usize,
        len: usize,
        weights: &Weights,
        relu: bool,
    ) -> Result<Option<(Tensor, Tensor)>> {
        let BatchStorage::Gpu { samples, labels, order } = &self.storage else {
            return Ok(None);
        };
        let order = order.as_ref().ok_or_else(|| Error::InvalidArgument("no epoch order".into()))?;
        let dataset = DatasetBuffers { samples, labels, order };
        let spec = self.spec(first, len);
        Tensor::linear_of_gathered(dataset, spec, &weights.weight, &weights.bias, relu).map(Some)
    }

    /// Where the batch at entries `first..first + len` is, and how its bytes become inputs.
    fn spec(&self, first: usize, len: usize) -> gpu::ops::GatherSpec {
        gpu::ops::GatherSpec { samples: self.samples, features: self.features, first, batch: len, affine: self.affine }
    }

    /// The samples at entries `first..first + len` of the order as inputs `[len, features]`,
    /// and their labels as `f32` `[len]`, on the device.
    pub(crate) fn batch(&self, first: usize, len: usize) -> Result<(Tensor, Tensor)> {
        let features = self.features;
        let (x, y) = match &self.storage {
            BatchStorage::Cpu { samples, labels, order } => {
                let entries = first.checked_add(len).and_then(|end| order.get(first..end)).ok_or_else(|| {
                    Error::InvalidArgument(format!("entries {first}..{first}+{len} are past the epoch's order"))
                })?;
                let (mut x, mut y) = (Vec::with_capacity(len * features), Vec::with_capacity(len));
                cpu::gather_batch(samples, labels, features, entries, self.affine, &mut x, &mut y);
                (Storage::Cpu(x), Storage::Cpu(y))
            }
            BatchStorage::Gpu { samples, labels, order } => {
                let order = order.as_ref().ok_or_else(|| Error::InvalidArgument("no epoch order".into()))?;
                let (x, y) = gpu::ops::gather_batch(samples.context(), samples, labels, order, self.spec(first, len))?;
                (Storage::Gpu(x), Storage::Gpu(y))
            }
        };
        Ok((Tensor::constant(x, vec![len, features]), Tensor::constant(y, vec![len])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_plane_gets_its_own_affine() {
        // Two samples of three planes of two bytes.
        let samples: Vec<u8> = (0..12).collect();
        let affine = [(1.0, 0.0), (2.0, 0.5), (-1.0, 100.0)];
        let mut source = BatchSource::new(&samples, &[7, 8], 6, &affine, &Device::Cpu).unwrap();
        source.set_order(&[1, 0]).unwrap();
        let (x, y) = source.batch(0, 2).unwrap();
        let want = [6.0, 7.0, 16.5, 18.5, 90.0, 89.0, 0.0, 1.0, 4.5, 6.5, 96.0, 95.0];
        assert_eq!(x.to_vec().unwrap(), want);
        assert_eq!(y.to_vec().unwrap(), [8.0, 7.0]);
    }

    #[test]
    fn channels_that_do_not_fit_are_refused_when_the_source_is_made() {
        let samples = [0u8; 10];
        let error = |affine: &[(f32, f32)], features| {
            BatchSource::new(&samples, &[0; 2], features, affine, &Device::Cpu).err().map(|e| e.to_string())
        };
        let five = error(&[(1.0, 0.0); 5], 5).unwrap();
        assert!(five.contains("5 channels") && five.contains("1 to 4"), "{five}");
        let uneven = error(&[(1.0, 0.0); 3], 5).unwrap();
        assert!(uneven.contains("5 bytes") && uneven.contains("3 equal channel planes"), "{uneven}");
        assert!(error(&[(1.0, 0.0)], 5).is_none());
    }
}
