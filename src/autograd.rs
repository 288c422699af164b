//! Reverse-mode automatic differentiation.
//!
//! A tensor computed from tracked inputs keeps the `Op` that made it. `backward()` sorts the graph
//! topologically, walks it from the output back, and applies one rule per op. Gradients of
//! intermediate results are dropped as soon as they have been pushed to their inputs; only those
//! of variables (parameters) are returned.

use crate::error::{Error, Result};
use crate::ids::{IdMap, IdSet};
use crate::op::{Op, no_grad};
use crate::tensor::{Tensor, TensorId};

/// The gradients of the variables reached by one backward pass.
#[derive(Default)]
pub struct Gradients(IdMap<TensorId, Tensor>);

impl Gradients {
    pub fn get(&self, tensor: &Tensor) -> Option<&Tensor> {
        self.0.get(&tensor.id())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Tensor {
    /// Gradients of this scalar with respect to every variable it depends on.
    pub fn backward(&self) -> Result<Gradients> {
        if self.len() != 1 {
            return Err(Error::NotScalar(self.shape().to_vec()));
        }
        no_grad(|| {
            let order = topological_order(self);
            let mut pending: IdMap<TensorId, Pending> = IdMap::default();
            let mut variables = Gradients::default();
            for node in order.iter().rev() {
                // The root's gradient is the seed 1, made only where a rule reads it.
                let pushed = if node.id() == self.id() { None } else { pending.remove(&node.id()) };
                if pushed.is_none() && node.id() != self.id() {
                    continue;
                }
                let relu_masked = pushed.as_ref().is_some_and(|p| p.relu_masked);
                let grad = pushed.map(|p| p.grad);
                let Some(op) = node.op() else {
                    if node.is_variable() {
                        variables.0.insert(node.id(), or_seed(grad, node)?);
                    }
                    continue;
                };
                for pushed in backward_rule(op, node, grad, relu_masked)? {
                    if !pushed.input.tracks() {
                        continue;
                    }
                    let total = match pending.remove(&pushed.input.id()) {
                        Some(previous) => Pending {
                            grad: previous.grad.add(&pushed.grad)?,
                            relu_masked: previous.relu_masked && pushed.relu_masked,
                        },
                        None => Pending { grad: pushed.grad, relu_masked: pushed.relu_masked },
                    };
                    pending.insert(pushed.input.id(), total);
                }
            }
            Ok(variables)
        })
    }
}

/// The gradient gathered so far for one node.
struct Pending {
    grad: Tensor,
    /// Every part of `grad` came through [`Tensor::matmul_relu_mask`] with this node (a linear
    /// layer's relu output) as the mask, so its own relu backward is done already. Masking is
    /// linear and idempotent, so a sum of masked parts is masked, and masking twice changes
    /// nothing: a sum with an unmasked part is simply masked again.
    relu_masked: bool,
}

/// A gradient one rule pushes to one input of its op.
struct Pushed<'a> {
    input: &'a Tensor,
    grad: Tensor,
    relu_masked: bool,
}

fn push(input: &Tensor, grad: Tensor) -> Pushed<'_> {
    Pushed { input, grad, relu_masked: false }
}

/// `input`'s gradient from `compute`, computed only when gradients flow through `input`: an
/// input that does not track (data, a dropout mask) costs no kernel.
fn push_if_tracks<'a>(input: &'a Tensor, compute: impl FnOnce() -> Result<Tensor>) -> Result<Option<Pushed<'a>>> {
    input.tracks().then(|| compute().map(|grad| push(input, grad))).transpose()
}

/// `grad`, or the seed of backward (ones shaped like the root `node`) where it is `None`.
fn or_seed(grad: Option<Tensor>, node: &Tensor) -> Result<Tensor> {
    match grad {
        Some(grad) => Ok(grad),
        None => Tensor::from_vec(vec![1.0; node.len()], node.shape(), &node.device()),
    }
}

/// Tracked nodes reachable from `root`, each after all of its inputs.
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut seen = IdSet::default();
    // An explicit stack: (node, inputs already pushed).
    let mut stack = vec![(root.clone(), false)];
    while let Some((node, expanded)) = stack.pop() {
        if expanded {
            order.push(node);
            continue;
        }
        if !seen.insert(node.id()) {
            continue;
        }
        stack.push((node.clone(), true));
        if let Some(op) = node.op() {
            for input in op.inputs() {
                if input.tracks() && !seen.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order
}

/// The gradient of each input of `op`, given the gradient of its output `node` (`None`: `node`
/// is where backward started, and its gradient is the seed 1). `relu_masked`: `grad` has been
/// through the relu backward of `node`, a linear layer with relu, already.
fn backward_rule<'a>(op: &'a Op, node: &Tensor, grad: Option<Tensor>, relu_masked: bool) -> Result<Vec<Pushed<'a>>> {
    let grad = match (grad, op) {
        // A loss at the root: the factor is 1, and nothing is uploaded or read back (the fused
        // last layer computed its gradient already).
        (None, Op::CrossEntropy { logits, labels }) => {
            return Ok(vec![push(logits, logits.cross_entropy_backward(labels, None)?)]);
        }
        (None, Op::LinearCrossEntropy { x, weight, bias, grad, .. }) => return linear_rule(x, weight, bias, grad),
        (grad, _) => &or_seed(grad, node)?,
    };
    Ok(match op {
        // C = op(A)·op(B). dA = dC·op(B)ᵀ (transposed back if A was), dB likewise.
        Op::Matmul { a, b, trans_a, trans_b } => [
            push_if_tracks(a, || {
                if *trans_a { b.matmul_t(grad, *trans_b, true) } else { grad.matmul_t(b, false, !*trans_b) }
            })?,
            push_if_tracks(b, || {
                if *trans_b { grad.matmul_t(a, true, *trans_a) } else { a.matmul_t(grad, !*trans_a, false) }
            })?,
        ]
        .into_iter()
        .flatten()
        .collect(),
        Op::Linear { x, weight, bias, relu } => {
            // y = act(x·Wᵀ + b): dz = dy masked by the relu.
            let dz = if *relu && !relu_masked { node.relu_mask(grad)? } else { grad.clone() };
            linear_rule(x, weight, bias, &dz)?
        }
        Op::LinearCrossEntropy { x, weight, bias, labels, logits, .. } => {
            linear_rule(x, weight, bias, &logits.cross_entropy_backward(labels, Some(grad))?)?
        }
        Op::Conv2d { x, weight, bias, padding } => [
            push_if_tracks(x, || grad.conv2d_backward_input(x, weight, *padding))?,
            push_if_tracks(weight, || grad.conv2d_backward_weight(x, weight, *padding))?,
            push_if_tracks(bias, || grad.channel_sums())?,
        ]
        .into_iter()
        .flatten()
        .collect(),
        Op::MaxPool2d(x) => vec![push(x, x.max_pool2d_backward(grad)?)],
        Op::Reshape(x) => vec![push(x, grad.reshape(x.shape())?)],
        Op::AddBias { x, bias } => {
            push_if_tracks(bias, || grad.sum_rows())?.into_iter().chain([push(x, grad.clone())]).collect()
        }
        Op::Relu(x) => vec![push(x, x.relu_mask(grad)?)],
        Op::Scale(x, factor) => vec![push(x, grad.scale(*factor)?)],
        Op::Add(a, b) => vec![push(a, grad.clone()), push(b, grad.clone())],
        // A constant factor needs no gradient: one product, not two.
        Op::Mul(a, b) => {
            [push_if_tracks(a, || grad.mul(b))?, push_if_tracks(b, || grad.mul(a))?].into_iter().flatten().collect()
        }
        // Linear in x: the gradient goes through the same mask, drawn again from its key.
        Op::Dropout { x, p, key } => vec![push(x, grad.dropout_with_key(*p, *key)?)],
        Op::Sum(x) => vec![push(x, grad.broadcast_scalar(x.shape())?)],
        Op::SumRows(x) => vec![push(x, grad.broadcast_rows(x.shape()[0])?)],
        Op::Softmax(x) => vec![push(x, node.softmax_backward(grad)?)],
        Op::CrossEntropy { logits, labels } => vec![push(logits, logits.cross_entropy_backward(labels, Some(grad))?)],
    })
}

/// The gradients of a linear layer's input, weight and bias from `dz`, the gradient of its
/// output before any relu: `dx = dz·W`, `dW = dzᵀ·x`, `db = Σ dz`.
fn linear_rule<'a>(x: &'a Tensor, weight: &'a Tensor, bias: &'a Tensor, dz: &Tensor) -> Result<Vec<Pushed<'a>>> {
    let mut grads = Vec::new();
    if x.tracks() {
        // When x is itself a linear layer's relu output, its relu backward goes into
        // this product's epilogue: one kernel instead of two.
        grads.push(match x.op() {
            Some(Op::Linear { relu: true, .. }) => {
                Pushed { input: x, grad: dz.matmul_relu_mask(weight, x)?, relu_masked: true }
            }
            _ => push(x, dz.matmul(weight)?),
        });
    }
    if weight.tracks() && bias.tracks() {
        let (dw, db) = dz.matmul_tn_and_sum_rows(x)?;
        grads.extend([push(weight, dw), push(bias, db)]);
    } else {
        grads.extend(push_if_tracks(weight, || dz.matmul_tn(x))?);
        grads.extend(push_if_tracks(bias, || dz.sum_rows())?);
    }
    Ok(grads)
}
