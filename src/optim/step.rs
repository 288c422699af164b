//! The optimizers' in-place updates on tensors: each step dispatched with one `match` over the
//! storage of the parameter, its gradient and its state, to the CPU kernel or the GPU launcher.

use crate::backend::cpu;
use crate::backend::gpu::{self, GpuBuffer};
use crate::backend::{AdamStep, SgdStep};
use crate::error::{Error, Result};
use crate::tensor::{Storage, Tensor};

/// A parameter that [`Tensor::adam_step_`] updates in place, with its gradient and moments.
pub(crate) struct AdamSlot<'a> {
    pub param: &'a Tensor,
    pub grad: &'a Tensor,
    pub m: &'a Tensor,
    pub v: &'a Tensor,
}

impl Tensor {
    /// One SGD step in place on the parameter `self` and its momentum buffer, from `grad`
    /// (`torch.optim.SGD`'s formulas, see [`cpu::sgd_step`]).
    pub(crate) fn sgd_step_(&self, grad: &Tensor, momentum: &Tensor, h: SgdStep) -> Result<()> {
        grad.expect_len(self.len(), "sgd_step")?;
        momentum.expect_len(self.len(), "sgd_step")?;
        match (&mut *self.storage_mut(), &*grad.storage(), &mut *momentum.storage_mut()) {
            (Storage::Cpu(p), Storage::Cpu(g), Storage::Cpu(buf)) => cpu::sgd_step(p, g, buf, h),
            (Storage::Gpu(p), Storage::Gpu(g), Storage::Gpu(buf)) => gpu::ops::sgd_step(p.context(), p, g, buf, h)?,
            _ => return Err(Error::DeviceMismatch("sgd_step")),
        }
        Ok(())
    }

    /// One Adam/AdamW step in place on every parameter of `slots` and its moments (see
    /// [`cpu::adam_step`]). On a GPU one launcher updates them all, up to six parameters per dispatch.
    pub(crate) fn adam_step_(slots: &[AdamSlot], h: AdamStep) -> Result<()> {
        // On a GPU: each parameter's buffer, gradient and moments, in fours.
        let mut on_gpu: Vec<GpuBuffer> = Vec::new();
        for s in slots {
            for t in [s.grad, s.m, s.v] {
                t.expect_len(s.param.len(), "adam_step")?;
            }
            match (&mut *s.param.storage_mut(), &*s.grad.storage(), &mut *s.m.storage_mut(), &mut *s.v.storage_mut()) {
                (Storage::Cpu(p), Storage::Cpu(g), Storage::Cpu(m), Storage::Cpu(v)) => cpu::adam_step(p, g, m, v, h),
                (Storage::Gpu(p), Storage::Gpu(g), Storage::Gpu(m), Storage::Gpu(v)) => {
                    on_gpu.extend([p, g, m, v].into_iter().cloned());
                }
                _ => return Err(Error::DeviceMismatch("adam_step")),
            }
        }
        if let Some(first) = on_gpu.first() {
            let buffers: Vec<_> = on_gpu
                .chunks_exact(4)
                .map(|b| gpu::ops::AdamBuffers { param: &b[0], grad: &b[1], m: &b[2], v: &b[3] })
                .collect();
            gpu::ops::adam_steps(first.context(), &buffers, h)?;
        }
        Ok(())
    }
}
