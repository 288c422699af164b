//! A first linear layer whose input a GPU gathers from a `u8` dataset inside the same kernel:
//! a training step's batch and its first product in one dispatch.

use crate::backend::gpu::{
    self,
    ops::{DatasetBuffers, GatherSpec},
};
use crate::error::{Error, Result};
use crate::op::Op;

use super::{Storage, Tensor};

impl Tensor {
    /// `x.linear(weight, bias, relu)` for the batch `x` that `spec` gathers from `dataset` on
    /// a GPU (as `gpu::ops::gather_batch` would make it), with `x` gathered inside the product:
    /// the layer's output, recorded as a linear layer of `x` (the kernel stores `x` for the
    /// weight gradient), and the batch's labels.
    pub(crate) fn linear_of_gathered(
        dataset: DatasetBuffers,
        spec: GatherSpec,
        weight: &Tensor,
        bias: &Tensor,
        relu: bool,
    ) -> Result<(Tensor, Tensor)> {
        let (n, k) = weight.dims2("linear")?;
        if k != spec.features || bias.shape() != [n] {
            let (lhs, rhs) = (vec![spec.batch, spec.features], weight.shape().to_vec());
            return Err(Error::ShapeMismatch { op: "linear", lhs, rhs });
        }
        let out = match (&*weight.storage(), &*bias.storage()) {
            (Storage::Gpu(w), Storage::Gpu(b)) => gpu::ops::linear_gathered(w.context(), dataset, spec, w, b, relu)?,
            _ => return Err(Error::DeviceMismatch("linear")),
        };
        let x = Tensor::constant(Storage::Gpu(out.x), vec![spec.batch, k]);
        let op = Op::Linear { x, weight: weight.clone(), bias: bias.clone(), relu };
        let h = Tensor::from_op(Storage::Gpu(out.out), vec![spec.batch, n], op);
        Ok((h, Tensor::constant(Storage::Gpu(out.labels), vec![spec.batch])))
    }
}
