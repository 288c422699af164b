//! Reading a one-element tensor without waiting: the training loop starts the read of a
//! window's loss and finishes it a window later, while a GPU runs the steps in between.

use crate::backend::gpu;
use crate::error::{Error, Result};

use super::{Storage, Tensor};

/// A one-element tensor's value on its way to the host ([`Tensor::start_scalar_read`]).
pub enum ScalarRead {
    Ready(f32),
    Gpu(gpu::PendingRead),
}

impl ScalarRead {
    /// The value, after waiting for the device where the read has not landed yet.
    pub fn finish(self) -> Result<f32> {
        match self {
            ScalarRead::Ready(v) => Ok(v),
            ScalarRead::Gpu(read) => match read.finish_f32()?.as_slice() {
                [v] => Ok(*v),
                values => Err(Error::NotScalar(vec![values.len()])),
            },
        }
    }
}

impl Tensor {
    /// Starts reading a one-element tensor's value without waiting for a GPU: the host goes on
    /// recording work meanwhile, and [`ScalarRead::finish`] waits only for what is left.
    pub fn start_scalar_read(&self) -> Result<ScalarRead> {
        if self.len() != 1 {
            return Err(Error::NotScalar(self.shape().to_vec()));
        }
        Ok(match &*self.storage() {
            Storage::Cpu(v) => ScalarRead::Ready(v[0]),
            Storage::Gpu(b) => ScalarRead::Gpu(b.start_read()?),
        })
    }
}
