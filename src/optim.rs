//! Optimizers with `torch.optim`'s update formulas. Each keeps its state on the parameters'
//! device and updates the parameters in place.

use crate::autograd::Gradients;
use crate::backend::cpu::{self, AdamStep, SgdStep};
#[cfg(feature = "gpu")]
use crate::backend::gpu;
use crate::error::{Error, Result};
use crate::tensor::{Storage, Tensor};

/// Updates parameters from their gradients.
pub trait Optimizer {
    fn step(&mut self, grads: &Gradients) -> Result<()>;
    fn learning_rate(&self) -> f32;
    fn set_learning_rate(&mut self, lr: f32);
}

/// `torch.optim.SGD` with momentum and weight decay (no dampening, no Nesterov).
pub struct Sgd {
    params: Vec<Tensor>,
    momentum_buffers: Vec<Tensor>,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    steps: u64,
}

impl Sgd {
    pub fn new(params: Vec<Tensor>, lr: f32, momentum: f32, weight_decay: f32) -> Sgd {
        Sgd { params, momentum_buffers: Vec::new(), lr, momentum, weight_decay, steps: 0 }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &Gradients) -> Result<()> {
        if self.momentum_buffers.is_empty() {
            self.momentum_buffers = zeros_like(&self.params)?;
        }
        let h = SgdStep {
            lr: self.lr,
            momentum: self.momentum,
            weight_decay: self.weight_decay,
            first_step: self.steps == 0,
        };
        for (p, buf) in self.params.iter().zip(&self.momentum_buffers) {
            let g = gradient_of(grads, p)?;
            match (&mut *p.storage_mut(), &*g.storage(), &mut *buf.storage_mut()) {
                (Storage::Cpu(p), Storage::Cpu(g), Storage::Cpu(buf)) => cpu::sgd_step(p, g, buf, h),
                #[cfg(feature = "gpu")]
                (Storage::Gpu(p), Storage::Gpu(g), Storage::Gpu(buf)) => gpu::ops::sgd_step(p.context(), p, g, buf, h)?,
                #[cfg(feature = "gpu")]
                _ => return Err(Error::DeviceMismatch("sgd_step")),
            }
        }
        self.steps += 1;
        Ok(())
    }

    fn learning_rate(&self) -> f32 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.lr = lr;
    }
}

/// `torch.optim.Adam` (L2 weight decay) or `torch.optim.AdamW` (decoupled weight decay).
pub struct Adam {
    params: Vec<Tensor>,
    first_moments: Vec<Tensor>,
    second_moments: Vec<Tensor>,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub decoupled: bool,
    steps: u64,
}

impl Adam {
    /// Adam with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8.
    pub fn new(params: Vec<Tensor>, lr: f32, weight_decay: f32) -> Adam {
        Adam {
            params,
            first_moments: Vec::new(),
            second_moments: Vec::new(),
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            decoupled: false,
            steps: 0,
        }
    }

    /// AdamW: weight decay applied to the weights, not through the gradient.
    pub fn adamw(params: Vec<Tensor>, lr: f32, weight_decay: f32) -> Adam {
        Adam { decoupled: true, ..Adam::new(params, lr, weight_decay) }
    }
}

impl Optimizer for Adam {
    fn step(&mut self, grads: &Gradients) -> Result<()> {
        if self.first_moments.is_empty() {
            (self.first_moments, self.second_moments) = (zeros_like(&self.params)?, zeros_like(&self.params)?);
        }
        self.steps += 1;
        // `powi` takes an i32; past i32::MAX steps both powers are 0 in f32 anyway.
        let t = i32::try_from(self.steps).unwrap_or(i32::MAX);
        let h = AdamStep {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            decoupled: self.decoupled,
            bias_correction1: 1.0 - self.beta1.powi(t),
            bias_correction2: 1.0 - self.beta2.powi(t),
        };
        #[cfg(feature = "gpu")]
        if let Some(buffers) = self.gpu_buffers(grads)? {
            let views: Vec<gpu::ops::AdamBuffers> =
                buffers.iter().map(|[param, grad, m, v]| gpu::ops::AdamBuffers { param, grad, m, v }).collect();
            if let Some(first) = buffers.first() {
                gpu::ops::adam_steps(first[0].context(), &views, h)?;
            }
            return Ok(());
        }
        for ((p, m), v) in self.params.iter().zip(&self.first_moments).zip(&self.second_moments) {
            let g = gradient_of(grads, p)?;
            match (&mut *p.storage_mut(), &*g.storage(), &mut *m.storage_mut(), &mut *v.storage_mut()) {
                (Storage::Cpu(p), Storage::Cpu(g), Storage::Cpu(m), Storage::Cpu(v)) => cpu::adam_step(p, g, m, v, h),
                #[cfg(feature = "gpu")]
                _ => return Err(Error::DeviceMismatch("adam_step")),
            }
        }
        Ok(())
    }

    fn learning_rate(&self) -> f32 {
        self.lr
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.lr = lr;
    }
}

#[cfg(feature = "gpu")]
impl Adam {
    /// Each parameter's buffer, gradient and moments when all of them are on a GPU (`None` when
    /// any is on the CPU), so that one launcher updates them all. Handles share the memory,
    /// so the updates land in the tensors.
    fn gpu_buffers(&self, grads: &Gradients) -> Result<Option<Vec<[gpu::GpuBuffer; 4]>>> {
        let on_gpu = |t: &Tensor| match &*t.storage() {
            Storage::Gpu(b) => Some(b.clone()),
            Storage::Cpu(_) => None,
        };
        let mut buffers = Vec::with_capacity(self.params.len());
        for ((p, m), v) in self.params.iter().zip(&self.first_moments).zip(&self.second_moments) {
            let g = gradient_of(grads, p)?;
            match (on_gpu(p), on_gpu(g), on_gpu(m), on_gpu(v)) {
                (Some(p), Some(g), Some(m), Some(v)) => buffers.push([p, g, m, v]),
                (None, None, None, None) => return Ok(None),
                _ => return Err(Error::DeviceMismatch("adam_step")),
            }
        }
        Ok(Some(buffers))
    }
}

/// Optimizer state: zeros shaped like each parameter, on its device (made at the first step).
fn zeros_like(params: &[Tensor]) -> Result<Vec<Tensor>> {
    params.iter().map(|p| Tensor::zeros(p.shape(), &p.device())).collect()
}

fn gradient_of<'a>(grads: &'a Gradients, param: &Tensor) -> Result<&'a Tensor> {
    grads
        .get(param)
        .ok_or_else(|| Error::InvalidArgument(format!("no gradient for parameter of shape {:?}", param.shape())))
}
