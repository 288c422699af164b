//! The engine's error type: every failure a caller can cause is a variant that names the problem.

/// Errors from tensor operations and the layers built on them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op}: shapes {lhs:?} and {rhs:?} do not fit")]
    ShapeMismatch { op: &'static str, lhs: Vec<usize>, rhs: Vec<usize> },
    #[error("{op}: expected a tensor of rank {expected}, got shape {shape:?}")]
    Rank { op: &'static str, expected: usize, shape: Vec<usize> },
    #[error("{len} values cannot fill a tensor of shape {shape:?}")]
    ElementCount { len: usize, shape: Vec<usize> },
    #[error("{op}: shape {shape:?} has more elements than a buffer can address")]
    TooLarge { op: &'static str, shape: Vec<usize> },
    #[error("backward() starts from a scalar, got shape {0:?}")]
    NotScalar(Vec<usize>),
    #[error("label {label} is outside the {classes} classes")]
    LabelOutOfRange { label: f32, classes: usize },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}: the tensors are on different devices")]
    DeviceMismatch(&'static str),
    #[error(transparent)]
    Gpu(#[from] crate::backend::gpu::GpuError),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The number of elements of `shape`, or [`Error::TooLarge`] when the product overflows: every
/// length computed from outside numbers goes through here, so no wrapped size ever reaches a
/// kernel (a wrapped product can equal a small buffer's length).
pub fn element_count(op: &'static str, shape: &[usize]) -> Result<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| Error::TooLarge { op, shape: shape.to_vec() })
}
