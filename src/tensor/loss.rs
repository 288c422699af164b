//! The loss of a classifier: the fused log-softmax negative log-likelihood and its gradient,
//! and a classifier's last layer with its loss as one op, which a GPU runs as one kernel that
//! also computes the gradient and adds the loss to a running sum: the end of a training step
//! in one dispatch instead of four.

use crate::backend::cpu;
use crate::backend::gpu::{self, ops::RunningSum};
use crate::error::{Error, Result};
use crate::op::Op;

use super::{Storage, Tensor, gradient_of_two, shape_mismatch};

/// A running sum of losses, kept where they are computed: a loss op given one also stores
/// `scale * loss` in `sum` (when `restart`) or adds it there, so summing a window of losses
/// costs no op of its own.
#[derive(Clone, Copy)]
pub struct RunningLoss<'a> {
    /// A one-element tensor outside the graph.
    pub sum: &'a Tensor,
    pub scale: f32,
    pub restart: bool,
}

impl RunningLoss<'_> {
    /// Puts `loss` (one element) into the sum, as a loss op given this sum does.
    pub fn add(&self, loss: &Tensor) -> Result<()> {
        self.sum.accumulate(loss, self.scale, self.restart)
    }
}

impl Tensor {
    /// Mean over the rows of `-log_softmax(self)[row, label]`, fused: the loss of a classifier.
    /// `labels` holds one class index per row, stored as `f32`. On a GPU, a label outside the
    /// classes makes the loss NaN (a kernel cannot stop with an error).
    pub fn cross_entropy(&self, labels: &Tensor) -> Result<Tensor> {
        let (m, n) = self.dims2("cross_entropy")?;
        self.expect_shape_of(labels, &[m], "cross_entropy")?;
        let storage = match (&*self.storage(), &*labels.storage()) {
            (Storage::Cpu(x), Storage::Cpu(y)) => {
                check_labels(y, n)?;
                let losses = cpu::cross_entropy_rows(x, y, n);
                Storage::Cpu(vec![(losses.iter().map(|&l| l as f64).sum::<f64>() / m.max(1) as f64) as f32])
            }
            (Storage::Gpu(x), Storage::Gpu(y)) => Storage::Gpu(gpu::ops::cross_entropy_mean(x.context(), x, y, m, n)?),
            _ => return Err(Error::DeviceMismatch("cross_entropy")),
        };
        let op = Op::CrossEntropy { logits: self.clone(), labels: labels.clone() };
        Ok(Tensor::from_op(storage, Vec::new(), op))
    }

    /// The gradient of `cross_entropy` with respect to the logits, times the scalar `grad`
    /// (`None`: the loss is where backward started, so the factor is 1 and nothing is read back
    /// from a device).
    pub(crate) fn cross_entropy_backward(&self, labels: &Tensor, grad: Option<&Tensor>) -> Result<Tensor> {
        let (m, n) = self.dims2("cross_entropy")?;
        let scale = grad.map_or(Ok(1.0), Tensor::to_scalar)? / m.max(1) as f32;
        gradient_of_two(
            "cross_entropy",
            [self, labels],
            self.shape(),
            |x, y, dx| {
                cpu::cross_entropy_backward(x, y, n, scale, dx);
                Ok(())
            },
            |x, y| gpu::ops::cross_entropy_backward(x.context(), x, y, m, n, scale),
        )
    }

    /// `self.linear(weight, bias, false).cross_entropy(labels)` as one op: the loss of a
    /// classifier's last layer, for `self` `[m, k]`, `weight` `[n, k]`, `bias` `[n]` and `m`
    /// labels. With `running`, the loss also goes into its sum. On a GPU, for at most
    /// [`gpu::ops::LINEAR_LOSS_MAX_CLASSES`] classes, this is one kernel, which computes the
    /// logits' gradient for backward while it has them; elsewhere it is the two ops.
    pub fn linear_cross_entropy(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        labels: &Tensor,
        running: Option<RunningLoss>,
    ) -> Result<Tensor> {
        let (m, k) = self.dims2("linear")?;
        let (n, k2) = weight.dims2("linear")?;
        if k != k2 || bias.shape() != [n] {
            return Err(shape_mismatch("linear", self, weight));
        }
        self.expect_shape_of(labels, &[m], "cross_entropy")?;
        if let Some(r) = running
            && (r.sum.len() != 1 || r.sum.tracks())
        {
            return Err(Error::InvalidArgument("a running loss is a one-element tensor outside the graph".into()));
        }
        if let Some((storage, logits, grad)) = self.linear_cross_entropy_kernel(weight, bias, labels, running)? {
            let shape = vec![m, n];
            let op = Op::LinearCrossEntropy {
                x: self.clone(),
                weight: weight.clone(),
                bias: bias.clone(),
                labels: labels.clone(),
                logits: Tensor::constant(logits, shape.clone()),
                grad: Tensor::constant(grad, shape),
            };
            return Ok(Tensor::from_op(storage, Vec::new(), op));
        }
        let loss = self.linear(weight, bias, false)?.cross_entropy(labels)?;
        if let Some(running) = running {
            running.add(&loss)?;
        }
        Ok(loss)
    }

    /// The fused kernel of [`Tensor::linear_cross_entropy`] where the operands are on a GPU
    /// that runs it: the loss, the logits and their gradient.
    fn linear_cross_entropy_kernel(
        &self,
        weight: &Tensor,
        bias: &Tensor,
        labels: &Tensor,
        running: Option<RunningLoss>,
    ) -> Result<Option<(Storage, Storage, Storage)>> {
        let ((m, k), n) = (self.dims2("linear")?, bias.len());
        let sum = running.map(|r| r.sum.storage());
        let (x, w, b, y) = (self.storage(), weight.storage(), bias.storage(), labels.storage());
        let (Storage::Gpu(x), Storage::Gpu(w), Storage::Gpu(b), Storage::Gpu(y)) = (&*x, &*w, &*b, &*y) else {
            return Ok(None);
        };
        let running = match (running, sum.as_deref()) {
            (Some(r), Some(Storage::Gpu(sum))) => Some(RunningSum { sum, scale: r.scale, reset: r.restart }),
            (None, _) => None,
            _ => return Err(Error::DeviceMismatch("linear_cross_entropy")),
        };
        if n > gpu::ops::LINEAR_LOSS_MAX_CLASSES {
            return Ok(None);
        }
        let fused = gpu::ops::linear_cross_entropy(x.context(), x, w, b, y, [m, k, n], running)?;
        Ok(Some((Storage::Gpu(fused.loss), Storage::Gpu(fused.logits), Storage::Gpu(fused.grad))))
    }
}

fn check_labels(labels: &[f32], classes: usize) -> Result<()> {
    match labels.iter().find(|&&l| !(l >= 0.0 && (l as usize) < classes && l.fract() == 0.0)) {
        Some(&label) => Err(Error::LabelOutOfRange { label, classes }),
        None => Ok(()),
    }
}
