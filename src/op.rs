//! The ops a tensor can be computed by, kept with their inputs while gradients are recorded,
//! and the switch that stops recording. The backward rules are in [`crate::autograd`].

use std::cell::Cell;

use crate::tensor::Tensor;

/// How a tensor was computed, with the inputs its backward rule needs.
pub(crate) enum Op {
    Matmul {
        a: Tensor,
        b: Tensor,
        trans_a: bool,
        trans_b: bool,
    },
    AddBias {
        x: Tensor,
        bias: Tensor,
    },
    Linear {
        x: Tensor,
        weight: Tensor,
        bias: Tensor,
        relu: bool,
    },
    Conv2d {
        x: Tensor,
        weight: Tensor,
        bias: Tensor,
        padding: usize,
    },
    MaxPool2d(Tensor),
    /// A view with another shape: the gradient is reshaped back.
    Reshape(Tensor),
    Relu(Tensor),
    Scale(Tensor, f32),
    Add(Tensor, Tensor),
    Mul(Tensor, Tensor),
    /// Inverted dropout with the mask of `key` (see `cpu::dropout_keeps`).
    Dropout {
        x: Tensor,
        p: f32,
        key: u64,
    },
    Sum(Tensor),
    SumRows(Tensor),
    Softmax(Tensor),
    CrossEntropy {
        logits: Tensor,
        labels: Tensor,
    },
    /// A linear layer without relu and the mean cross-entropy of its output, computed by one
    /// kernel with the output's gradient (`grad`, for backward from this loss itself).
    LinearCrossEntropy {
        x: Tensor,
        weight: Tensor,
        bias: Tensor,
        labels: Tensor,
        logits: Tensor,
        grad: Tensor,
    },
}

impl Op {
    pub(crate) fn inputs(&self) -> Vec<&Tensor> {
        match self {
            Op::Matmul { a, b, .. } | Op::Add(a, b) | Op::Mul(a, b) => vec![a, b],
            Op::AddBias { x, bias } => vec![x, bias],
            Op::Linear { x, weight, bias, .. } | Op::Conv2d { x, weight, bias, .. } => vec![x, weight, bias],
            Op::CrossEntropy { logits, labels } => vec![logits, labels],
            Op::LinearCrossEntropy { x, weight, bias, labels, .. } => vec![x, weight, bias, labels],
            Op::Relu(x)
            | Op::Scale(x, _)
            | Op::Sum(x)
            | Op::SumRows(x)
            | Op::Softmax(x)
            | Op::Dropout { x, .. }
            | Op::MaxPool2d(x)
            | Op::Reshape(x) => vec![x],
        }
    }
}

thread_local! {
    static RECORDING: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops on this thread record their inputs for backward.
pub fn is_recording() -> bool {
    RECORDING.with(Cell::get)
}

/// Runs `f` without recording any op: evaluation and optimizer steps.
pub fn no_grad<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            RECORDING.with(|r| r.set(self.0));
        }
    }
    let _restore = Restore(RECORDING.with(|r| r.replace(false)));
    f()
}
