//! Optimizers with `torch.optim`'s update formulas. Each keeps its state on the parameters'
//! device and updates the parameters in place.

use crate::autograd::Gradients;
use crate::backend::{AdamStep, SgdStep};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

mod step;

use step::AdamSlot;

/// Updates parameters from their gradients.
pub trait Optimizer {
    fn step(&mut self, grads: &Gradients) -> Result<()>;
    fn learning_rate(&self) -> f32;
    fn set_learning_rate(&mut self, lr: f32);
    /// The state a checkpoint keeps, copied to the host.
    fn state(&self) -> Result<OptimizerState>;
    /// Puts back a [`Optimizer::state`] of an optimizer of the same kind over the same shapes.
    fn load_state(&mut self, state: OptimizerState) -> Result<()>;
}

/// An optimizer's state on the host, for checkpoints: its step count and its buffers (SGD's
/// momentum; Adam's first moments, then its second), each flattened like its parameter. No
/// buffers before the first step.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OptimizerState {
    pub steps: u64,
    pub buffers: Vec<Vec<f32>>,
}

/// `torch.optim.SGD` with momentum and weight decay (no dampening, no Nesterov).
pub struct Sgd {
    params: Vec<Tensor>,
    momentum_buffers: Vec<Tensor>,
    /// The hyperparameters; each step says whether it is the first.
    hyper: SgdStep,
    steps: u64,
}

impl Sgd {
    pub fn new(params: Vec<Tensor>, lr: f32, momentum: f32, weight_decay: f32) -> Sgd {
        let hyper = SgdStep { lr, momentum, weight_decay, first_step: true };
        Sgd { params, momentum_buffers: Vec::new(), hyper, steps: 0 }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &Gradients) -> Result<()> {
        if self.momentum_buffers.is_empty() {
            self.momentum_buffers = zeros_like(&self.params)?;
        }
        let h = SgdStep { first_step: self.steps == 0, ..self.hyper };
        for (p, buf) in self.params.iter().zip(&self.momentum_buffers) {
            p.sgd_step_(gradient_of(grads, p)?, buf, h)?;
        }
        self.steps += 1;
        Ok(())
    }

    fn learning_rate(&self) -> f32 {
        self.hyper.lr
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.hyper.lr = lr;
    }

    fn state(&self) -> Result<OptimizerState> {
        Ok(OptimizerState { steps: self.steps, buffers: to_host(&self.momentum_buffers)? })
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        let mut buffers = from_host(&self.params, state.buffers, 1)?;
        self.momentum_buffers = buffers.pop().unwrap_or_default();
        self.steps = state.steps;
        Ok(())
    }
}

/// `torch.optim.Adam` (L2 weight decay) or `torch.optim.AdamW` (decoupled weight decay).
pub struct Adam {
    params: Vec<Tensor>,
    first_moments: Vec<Tensor>,
    second_moments: Vec<Tensor>,
    /// The hyperparameters; each step fills in its own bias corrections.
    hyper: AdamStep,
    steps: u64,
}

impl Adam {
    /// Adam with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8.
    pub fn new(params: Vec<Tensor>, lr: f32, weight_decay: f32) -> Adam {
        let hyper = AdamStep {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            decoupled: false,
            bias_correction1: 1.0,
            bias_correction2: 1.0,
        };
        Adam { params, first_moments: Vec::new(), second_moments: Vec::new(), hyper, steps: 0 }
    }

    /// AdamW: weight decay applied to the weights, not through the gradient.
    pub fn adamw(params: Vec<Tensor>, lr: f32, weight_decay: f32) -> Adam {
        let mut adam = Adam::new(params, lr, weight_decay);
        adam.hyper.decoupled = true;
        adam
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
            bias_correction1: 1.0 - self.hyper.beta1.powi(t),
            bias_correction2: 1.0 - self.hyper.beta2.powi(t),
            ..self.hyper
        };
        let mut slots = Vec::with_capacity(self.params.len());
        for ((param, m), v) in self.params.iter().zip(&self.first_moments).zip(&self.second_moments) {
            slots.push(AdamSlot { param, grad: gradient_of(grads, param)?, m, v });
        }
        Tensor::adam_step_(&slots, h)
    }

    fn learning_rate(&self) -> f32 {
        self.hyper.lr
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.hyper.lr = lr;
    }

    fn state(&self) -> Result<OptimizerState> {
        let mut buffers = to_host(&self.first_moments)?;
        buffers.extend(to_host(&self.second_moments)?);
        Ok(OptimizerState { steps: self.steps, buffers })
    }

    fn load_state(&mut self, state: OptimizerState) -> Result<()> {
        let mut sets = from_host(&self.params, state.buffers, 2)?.into_iter();
        self.first_moments = sets.next().unwrap_or_default();
        self.second_moments = sets.next().unwrap_or_default();
        self.steps = state.steps;
        Ok(())
    }
}

fn to_host(buffers: &[Tensor]) -> Result<Vec<Vec<f32>>> {
    buffers.iter().map(Tensor::to_vec).collect()
}

/// `sets` sets of buffers shaped like `params`, from host data laid out as [`to_host`] gives them
/// (none at all before the first step: then no sets).
fn from_host(params: &[Tensor], data: Vec<Vec<f32>>, sets: usize) -> Result<Vec<Vec<Tensor>>> {
    if data.is_empty() {
        return Ok(Vec::new());
    }
    if data.len() != params.len() * sets {
        return Err(Error::InvalidArgument(format!(
            "optimizer state holds {} buffers, this optimizer {}",
            data.len(),
            params.len() * sets
        )));
    }
    let mut tensors =
        data.into_iter().zip(params.iter().cycle()).map(|(d, p)| Tensor::from_vec(d, p.shape(), &p.device()));
    (0..sets).map(|_| tensors.by_ref().take(params.len()).collect()).collect()
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
