//! Kernels on raw buffers, one module per device. Nothing here knows about tensors or autograd.

pub mod cpu;
#[cfg(feature = "gpu")]
pub mod gpu;
#[cfg(not(feature = "gpu"))]
#[path = "gpu_stub.rs"]
pub mod gpu;

/// Hyperparameters of one Adam/AdamW step, with the bias corrections of step `t` folded in:
/// what both devices' kernels take.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// AdamW: decay the weights directly instead of adding `weight_decay * p` to the gradient.
    pub decoupled: bool,
    pub bias_correction1: f32,
    pub bias_correction2: f32,
}

/// Hyperparameters of one SGD step.
#[derive(Clone, Copy, Debug)]
pub struct SgdStep {
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    /// The first step initialises the momentum buffer with the gradient, as PyTorch does.
    pub first_step: bool,
}

/// The most channels a batch gather normalises one by one (RGBA).
pub const MAX_CHANNELS: usize = 4;

/// How the bytes of a sample become inputs: a sample is `channels` equal planes one after
/// another (CHW), and byte `f` becomes `byte * scale + shift` with the `(scale, shift)` of its
/// channel, `f / (features / channels)`. One channel is one affine for every byte.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChannelAffine {
    affine: [(f32, f32); MAX_CHANNELS],
    channels: usize,
}

impl ChannelAffine {
    /// `(scale, shift)` per channel, in channel order: one to [`MAX_CHANNELS`] of them.
    pub fn new(per_channel: &[(f32, f32)]) -> Result<ChannelAffine, String> {
        if per_channel.is_empty() || per_channel.len() > MAX_CHANNELS {
            return Err(format!(
                "{} channels to normalise; a batch gather normalises 1 to {MAX_CHANNELS} channels",
                per_channel.len()
            ));
        }
        let mut affine = [(1.0, 0.0); MAX_CHANNELS];
        affine[..per_channel.len()].copy_from_slice(per_channel);
        Ok(ChannelAffine { affine, channels: per_channel.len() })
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The `(scale, shift)` of each channel.
    pub fn per_channel(&self) -> &[(f32, f32)] {
        &self.affine[..self.channels]
    }

    /// The `(scale, shift)` of each channel, then filler up to [`MAX_CHANNELS`].
    pub fn padded(&self) -> [(f32, f32); MAX_CHANNELS] {
        self.affine
    }

    /// Bytes per channel plane of a sample of `features` bytes; an error naming both when the
    /// planes would not be equal.
    pub fn plane(&self, features: usize) -> Result<usize, String> {
        if !features.is_multiple_of(self.channels) {
            return Err(format!(
                "samples of {features} bytes do not split into {} equal channel planes",
                self.channels
            ));
        }
        Ok(features / self.channels)
    }
}

impl From<(f32, f32)> for ChannelAffine {
    /// One `(scale, shift)` for every byte.
    fn from(affine: (f32, f32)) -> ChannelAffine {
        ChannelAffine { affine: [affine; MAX_CHANNELS], channels: 1 }
    }
}
