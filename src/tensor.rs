//! `Tensor`: an `f32` row-major array with a shape, its storage on a device, and (when it was
//! computed from tensors that need gradients) the operation that produced it.
//!
//! Every op dispatches with one `match` over the storage of its inputs (convolution and pooling
//! in `conv`); the autograd (`crate::autograd`) is written once in terms of these ops. The two
//! in-place jobs that are not ops match on storage the same way beside their only users: the
//! optimizers' steps (`crate::optim`) and the training loop's batches (`crate::train`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::backend::cpu::{self, matmul::MatRef};
use crate::backend::gpu::{
    self, GpuBuffer, GpuContext, GpuError,
    ops::{Epilogue, MatmulShape},
};
use crate::error::{Error, Result, element_count};
use crate::op::{self, Op};

mod conv;
mod gathered;
mod loss;
mod read;

pub use loss::RunningLoss;
pub use read::ScalarRead;

/// Where a tensor's data lives.
#[derive(Clone)]
pub enum Device {
    Cpu,
    /// A GPU through wgpu; tensors on it share its context. (None exists in a build without
    /// the `gpu` feature: its context type is uninhabited there.)
    Gpu(Arc<GpuContext>),
}

impl PartialEq for Device {
    fn eq(&self, other: &Device) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            (Device::Gpu(a), Device::Gpu(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => write!(f, "Cpu"),
            Device::Gpu(ctx) => write!(f, "Gpu({})", ctx.adapter().name),
        }
    }
}

/// The data of a tensor on its device.
pub enum Storage {
    Cpu(Vec<f32>),
    Gpu(GpuBuffer),
}

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Gpu(b) => Device::Gpu(b.context().clone()),
        }
    }

    fn upload(data: Vec<f32>, device: &Device) -> Result<Storage> {
        Ok(match device {
            Device::Cpu => Storage::Cpu(data),
            Device::Gpu(ctx) => Storage::Gpu(GpuBuffer::from_f32(ctx, &data)?),
        })
    }

    fn duplicate(&self) -> Result<Storage> {
        Ok(match self {
            Storage::Cpu(v) => Storage::Cpu(v.clone()),
            Storage::Gpu(b) => Storage::Gpu(b.duplicate()?),
        })
    }
}

/// A unique identity, used by the autograd to key gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(usize);

impl TensorId {
    fn next() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        TensorId(COUNTER.fetch_add(1, Ordering::Relaxed))
    }
}

struct TensorInner {
    id: TensorId,
    shape: Vec<usize>,
    /// Shared by the views [`Tensor::reshape`] makes.
    storage: Arc<RwLock<Storage>>,
    op: Option<Op>,
    is_variable: bool,
}

/// A cheaply clonable handle to an immutable-shape tensor.
#[derive(Clone)]
pub struct Tensor(Arc<TensorInner>);

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, shape {:?})", self.id(), self.shape())
    }
}

impl Tensor {
    fn build(storage: Storage, shape: Vec<usize>, op: Option<Op>, is_variable: bool) -> Tensor {
        Tensor::over(Arc::new(RwLock::new(storage)), shape, op, is_variable)
    }

    fn over(storage: Arc<RwLock<Storage>>, shape: Vec<usize>, op: Option<Op>, is_variable: bool) -> Tensor {
        Tensor(Arc::new(TensorInner { id: TensorId::next(), shape, storage, op, is_variable }))
    }

    /// A constant tensor from row-major data.
    pub fn from_vec(data: Vec<f32>, shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::leaf(data, shape, device, false)
    }

    /// A trainable tensor: the autograd computes its gradient.
    pub fn variable(data: Vec<f32>, shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::leaf(data, shape, device, true)
    }

    fn leaf(data: Vec<f32>, shape: &[usize], device: &Device, is_variable: bool) -> Result<Tensor> {
        if data.len() != element_count("from_vec", shape)? {
            return Err(Error::ElementCount { len: data.len(), shape: shape.to_vec() });
        }
        Ok(Tensor::build(Storage::upload(data, device)?, shape.to_vec(), None, is_variable))
    }

    pub fn zeros(shape: &[usize], device: &Device) -> Result<Tensor> {
        let len = element_count("zeros", shape)?;
        let storage = match device {
            Device::Cpu => Storage::Cpu(vec![0.0; len]),
            Device::Gpu(ctx) => Storage::Gpu(gpu::ops::fill(ctx, len, 0.0)?),
        };
        Ok(Tensor::build(storage, shape.to_vec(), None, false))
    }

    /// A result of `op`; the op is kept only if gradients are being recorded.
    fn from_op(storage: Storage, shape: Vec<usize>, op: Op) -> Tensor {
        let op = (op::is_recording() && op.inputs().iter().any(|t| t.tracks())).then_some(op);
        Tensor::build(storage, shape, op, false)
    }

    pub(crate) fn constant(storage: Storage, shape: Vec<usize>) -> Tensor {
        Tensor::build(storage, shape, None, false)
    }

    pub fn id(&self) -> TensorId {
        self.0.id
    }

    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// The number of elements (never overflows: every shape is checked when a tensor is made).
    pub fn len(&self) -> usize {
        self.0.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn device(&self) -> Device {
        self.storage().device()
    }

    pub fn is_variable(&self) -> bool {
        self.0.is_variable
    }

    pub(crate) fn op(&self) -> Option<&Op> {
        self.0.op.as_ref()
    }

    /// Whether gradients flow through this tensor.
    pub fn tracks(&self) -> bool {
        self.0.is_variable || self.0.op.is_some()
    }

    /// The same data, cut off from the graph.
    pub fn detach(&self) -> Result<Tensor> {
        Ok(Tensor::constant(self.storage().duplicate()?, self.0.shape.clone()))
    }

    pub fn storage(&self) -> RwLockReadGuard<'_, Storage> {
        self.0.storage.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Write access for in-place updates (optimizer steps); the shape never changes. Crate-private:
    /// a graph may still reference the tensor.
    pub(crate) fn storage_mut(&self) -> RwLockWriteGuard<'_, Storage> {
        self.0.storage.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Copies the data to the host, row-major (waiting for a GPU to finish).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        Ok(match &*self.storage() {
            Storage::Cpu(v) => v.clone(),
            Storage::Gpu(b) => b.to_f32_vec()?,
        })
    }

    /// The value of a one-element tensor.
    pub fn to_scalar(&self) -> Result<f32> {
        match self.to_vec()?.as_slice() {
            [v] => Ok(*v),
            _ => Err(Error::NotScalar(self.shape().to_vec())),
        }
    }

    /// The same data seen with another shape of as many elements: nothing is copied, and the
    /// gradient flows back reshaped.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if element_count("reshape", shape)? != self.len() {
            return Err(Error::ElementCount { len: self.len(), shape: shape.to_vec() });
        }
        let op = (op::is_recording() && self.tracks()).then(|| Op::Reshape(self.clone()));
        Ok(Tensor::over(self.0.storage.clone(), shape.to_vec(), op, false))
    }

    fn dims2(&self, op: &'static str) -> Result<(usize, usize)> {
        match self.shape() {
            &[r, c] => Ok((r, c)),
            shape => Err(Error::Rank { op, expected: 2, shape: shape.to_vec() }),
        }
    }

    fn same_shape(&self, other: &Tensor, op: &'static str) -> Result<()> {
        if self.shape() != other.shape() {
            return Err(shape_mismatch(op, self, other));
        }
        Ok(())
    }

    /// `self · rhs` for `[m, k] · [k, n]`.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.matmul_t(rhs, false, false)
    }

    /// `selfᵀ · rhs` for `[k, m]ᵀ · [k, n]`: a weight gradient, without materialising a transpose.
    pub fn matmul_tn(&self, rhs: &Tensor) -> Result<Tensor> {
        self.matmul_t(rhs, true, false)
    }

    /// `selfᵀ · rhs` and `self.sum_rows()`: a linear layer's weight and bias gradients from
    /// its output gradient `self`, in one dispatch on a GPU.
    pub fn matmul_tn_and_sum_rows(&self, rhs: &Tensor) -> Result<(Tensor, Tensor)> {
        let ((rows, m), (k, n)) = (self.dims2("matmul")?, rhs.dims2("matmul")?);
        if let (Storage::Gpu(a), Storage::Gpu(b)) = (&*self.storage(), &*rhs.storage())
            && rows == k
            && n > 0
        {
            let shape = MatmulShape::new(m, k, n).transposed(true, false);
            let (product, sums) = gpu::ops::matmul_row_sums(a.context(), a, b, shape)?;
            let op = Op::Matmul { a: self.clone(), b: rhs.clone(), trans_a: true, trans_b: false };
            let sums = Tensor::from_op(Storage::Gpu(sums), vec![m], Op::SumRows(self.clone()));
            return Ok((Tensor::from_op(Storage::Gpu(product), vec![m, n], op), sums));
        }
        Ok((self.matmul_tn(rhs)?, self.sum_rows()?))
    }

    /// `op(self) · op(rhs)` where `op` transposes when the flag is set.
    pub fn matmul_t(&self, rhs: &Tensor, trans_a: bool, trans_b: bool) -> Result<Tensor> {
        let (ar, ac) = self.dims2("matmul")?;
        let (br, bc) = rhs.dims2("matmul")?;
        let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
        let (k2, n) = if trans_b { (bc, br) } else { (br, bc) };
        if k != k2 {
            return Err(shape_mismatch("matmul", self, rhs));
        }
        let storage = match (&*self.storage(), &*rhs.storage()) {
            (Storage::Cpu(a), Storage::Cpu(b)) => {
                let mut c = vec![0.0; element_count("matmul", &[m, n])?];
                let a = MatRef::new(a, m, k, trans_a)?;
                let b = MatRef::new(b, k, n, trans_b)?;
                cpu::matmul::gemm(a, b, &mut c, false)?;
                Storage::Cpu(c)
            }
            (Storage::Gpu(a), Storage::Gpu(b)) => {
                let shape = MatmulShape::new(m, k, n).transposed(trans_a, trans_b);
                Storage::Gpu(gpu::ops::matmul(a.context(), a, b, shape, Epilogue::default())?)
            }
            _ => return Err(Error::DeviceMismatch("matmul")),
        };
        let op = Op::Matmul { a: self.clone(), b: rhs.clone(), trans_a, trans_b };
        Ok(Tensor::from_op(storage, vec![m, n], op))
    }

    /// A linear layer in one op: `self · weightᵀ + bias`, through a relu when `relu`, for
    /// `self` `[m, k]`, PyTorch's `weight` `[n, k]` and `bias` `[n]`. The bias and relu are
    /// applied where the product is written (on a GPU, in the matmul kernel's epilogue).
    pub fn linear(&self, weight: &Tensor, bias: &Tensor, relu: bool) -> Result<Tensor> {
        let (m, k) = self.dims2("linear")?;
        let (n, k2) = weight.dims2("linear")?;
        if k != k2 || bias.shape() != [n] {
            return Err(shape_mismatch("linear", self, weight));
        }
        let storage = match (&*self.storage(), &*weight.storage(), &*bias.storage()) {
            (Storage::Cpu(x), Storage::Cpu(w), Storage::Cpu(b)) => {
                let mut out = vec![0.0; element_count("linear", &[m, n])?];
                let epilogue = cpu::matmul::Epilogue { bias: Some(b), relu };
                cpu::matmul::gemm_epilogue(
                    MatRef::new(x, m, k, false)?,
                    MatRef::new(w, k, n, true)?,
                    &mut out,
                    epilogue,
                )?;
                Storage::Cpu(out)
            }
            (Storage::Gpu(x), Storage::Gpu(w), Storage::Gpu(b)) => {
                let shape = MatmulShape::new(m, k, n).transposed(false, true);
                let epilogue = Epilogue { bias: Some(b), relu, relu_mask: None };
                Storage::Gpu(gpu::ops::matmul(x.context(), x, w, shape, epilogue)?)
            }
            _ => return Err(Error::DeviceMismatch("linear")),
        };
        let op = Op::Linear { x: self.clone(), weight: weight.clone(), bias: bias.clone(), relu };
        Ok(Tensor::from_op(storage, vec![m, n], op))
    }

    /// `self · rhs` for `[m, k] · [k, n]`, zeroed where `relu_output` (`[m, n]`) is not positive:
    /// the gradient flowing into a relu's output taken on through that relu's backward, in one
    /// kernel on a GPU. Records nothing (backward rules use it).
    pub(crate) fn matmul_relu_mask(&self, rhs: &Tensor, relu_output: &Tensor) -> Result<Tensor> {
        let (m, k) = self.dims2("matmul")?;
        let (k2, n) = rhs.dims2("matmul")?;
        if k != k2 || relu_output.shape() != [m, n] {
            return Err(shape_mismatch("matmul", self, rhs));
        }
        let storage = match (&*self.storage(), &*rhs.storage(), &*relu_output.storage()) {
            (Storage::Cpu(a), Storage::Cpu(b), Storage::Cpu(mask)) => {
                let mut c = vec![0.0; relu_output.len()];
                cpu::matmul::gemm(MatRef::new(a, m, k, false)?, MatRef::new(b, k, n, false)?, &mut c, false)?;
                c.iter_mut().zip(mask).for_each(|(v, &keep)| *v = if keep > 0.0 { *v } else { 0.0 });
                Storage::Cpu(c)
            }
            (Storage::Gpu(a), Storage::Gpu(b), Storage::Gpu(mask)) => {
                let epilogue = Epilogue { relu_mask: Some(mask), ..Epilogue::default() };
                Storage::Gpu(gpu::ops::matmul(a.context(), a, b, MatmulShape::new(m, k, n), epilogue)?)
            }
            _ => return Err(Error::DeviceMismatch("matmul")),
        };
        Ok(Tensor::constant(storage, vec![m, n]))
    }

    /// A shape mismatch of `self` and `other` unless `other` has exactly `shape`.
    fn expect_shape_of(&self, other: &Tensor, shape: &[usize], op: &'static str) -> Result<()> {
        if other.shape() != shape {
            return Err(shape_mismatch(op, self, other));
        }
        Ok(())
    }

    pub(crate) fn expect_len(&self, len: usize, op: &'static str) -> Result<()> {
        if self.len() != len {
            return Err(Error::ShapeMismatch { op, lhs: self.shape().to_vec(), rhs: vec![len] });
        }
        Ok(())
    }

    /// `self + bias` with a `[n]` bias broadcast over the rows of a `[m, n]` matrix. (A layer's
    /// bias and relu go through [`Tensor::linear`], which applies them inside the matmul.)
    pub fn add_bias(&self, bias: &Tensor) -> Result<Tensor> {
        let (m, n) = self.dims2("add_bias")?;
        self.expect_shape_of(bias, &[n], "add_bias")?;
        let storage = match (&*self.storage(), &*bias.storage()) {
            (Storage::Cpu(x), Storage::Cpu(b)) => {
                let mut out = vec![0.0; m * n];
                cpu::add_bias(x, b, &mut out);
                Storage::Cpu(out)
            }
            (Storage::Gpu(x), Storage::Gpu(b)) => Storage::Gpu(gpu::ops::add_bias(x.context(), x, b, m, n)?),
            _ => return Err(Error::DeviceMismatch("add_bias")),
        };
        let op = Op::AddBias { x: self.clone(), bias: bias.clone() };
        Ok(Tensor::from_op(storage, self.shape().to_vec(), op))
    }

    pub fn relu(&self) -> Result<Tensor> {
        let storage = self.unary(Unary::Relu)?;
        Ok(Tensor::from_op(storage, self.shape().to_vec(), Op::Relu(self.clone())))
    }

    /// Elementwise `self * factor`.
    pub fn scale(&self, factor: f32) -> Result<Tensor> {
        let storage = self.unary(Unary::Scale(factor))?;
        Ok(Tensor::from_op(storage, self.shape().to_vec(), Op::Scale(self.clone(), factor)))
    }

    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        let storage = self.binary(rhs, Binary::Add)?;
        Ok(Tensor::from_op(storage, self.shape().to_vec(), Op::Add(self.clone(), rhs.clone())))
    }

    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        let storage = self.binary(rhs, Binary::Mul)?;
        Ok(Tensor::from_op(storage, self.shape().to_vec(), Op::Mul(self.clone(), rhs.clone())))
    }

    /// `self += alpha * x` in place: an accumulator outside the graph (a running loss), updated
    /// without a new buffer. Refuses a tensor that gradients flow through (its graph would see
    /// the new value) and `x` being `self`.
    pub fn add_scaled_in_place(&self, x: &Tensor, alpha: f32) -> Result<()> {
        self.accumulate(x, alpha, false)
    }

    /// `self = alpha * x`, plus the old `self` unless `reset`, in place, with the checks of
    /// [`Tensor::add_scaled_in_place`].
    fn accumulate(&self, x: &Tensor, alpha: f32, reset: bool) -> Result<()> {
        self.same_shape(x, "add_scaled_in_place")?;
        if self.tracks() || self.id() == x.id() {
            return Err(Error::InvalidArgument(
                "add_scaled_in_place needs an accumulator outside the graph, distinct from its operand".into(),
            ));
        }
        match (&mut *self.storage_mut(), &*x.storage()) {
            (Storage::Cpu(acc), Storage::Cpu(x)) if reset => acc.iter_mut().zip(x).for_each(|(a, &x)| *a = alpha * x),
            (Storage::Cpu(acc), Storage::Cpu(x)) => acc.iter_mut().zip(x).for_each(|(a, &x)| *a += alpha * x),
            (Storage::Gpu(acc), Storage::Gpu(x)) => gpu::ops::axpy(acc.context(), acc, x, alpha, reset)?,
            _ => return Err(Error::DeviceMismatch("add_scaled_in_place")),
        }
        Ok(())
    }

    /// Sum of all elements, as a scalar.
    pub fn sum(&self) -> Result<Tensor> {
        let storage = match &*self.storage() {
            Storage::Cpu(x) => Storage::Cpu(vec![cpu::sum(x)]),
            Storage::Gpu(x) => Storage::Gpu(gpu::ops::sum(x.context(), x)?),
        };
        Ok(Tensor::from_op(storage, Vec::new(), Op::Sum(self.clone())))
    }

    /// Mean of all elements, as a scalar.
    pub fn mean(&self) -> Result<Tensor> {
        self.sum()?.scale(1.0 / self.len().max(1) as f32)
    }

    /// Column sums of a `[m, n]` matrix: `[n]`.
    pub fn sum_rows(&self) -> Result<Tensor> {
        let (m, n) = self.dims2("sum_rows")?;
        let storage = match &*self.storage() {
            Storage::Cpu(x) => {
                let mut out = vec![0.0; n];
                cpu::sum_rows(x, m, n, &mut out);
                Storage::Cpu(out)
            }
            Storage::Gpu(x) => Storage::Gpu(gpu::ops::sum_rows(x.context(), x, m, n)?),
        };
        Ok(Tensor::from_op(storage, vec![n], Op::SumRows(self.clone())))
    }

    /// Row-wise softmax of a `[m, n]` matrix.
    pub fn softmax(&self) -> Result<Tensor> {
        let (m, n) = self.dims2("softmax")?;
        let storage = match &*self.storage() {
            Storage::Cpu(x) => {
                let mut out = vec![0.0; m * n];
                cpu::softmax_rows(x, n, &mut out);
                Storage::Cpu(out)
            }
            Storage::Gpu(x) => Storage::Gpu(gpu::ops::softmax_rows(x.context(), x, m, n)?),
        };
        Ok(Tensor::from_op(storage, self.shape().to_vec(), Op::Softmax(self.clone())))
    }

    /// Softmax backward from the softmax output `self` and the incoming gradient.
    pub(crate) fn softmax_backward(&self, grad: &Tensor) -> Result<Tensor> {
        let (m, n) = self.dims2("softmax")?;
        gradient_of_two(
            "softmax_backward",
            [self, grad],
            self.shape(),
            |y, g, dx| {
                cpu::softmax_rows_backward(y, g, n, dx);
                Ok(())
            },
            |y, g| gpu::ops::softmax_rows_backward(y.context(), y, g, m, n),
        )
    }

    /// `grad` where `self > 0`, else zero: the backward of relu.
    pub(crate) fn relu_mask(&self, grad: &Tensor) -> Result<Tensor> {
        let storage = self.binary(grad, Binary::ReluMask)?;
        Ok(Tensor::constant(storage, self.shape().to_vec()))
    }

    /// A tensor of `shape` filled with the value of the scalar `self`.
    pub(crate) fn broadcast_scalar(&self, shape: &[usize]) -> Result<Tensor> {
        let value = self.to_scalar()?;
        let len = element_count("broadcast", shape)?;
        let storage = match &*self.storage() {
            Storage::Cpu(_) => Storage::Cpu(vec![value; len]),
            Storage::Gpu(x) => Storage::Gpu(gpu::ops::fill(x.context(), len, value)?),
        };
        Ok(Tensor::constant(storage, shape.to_vec()))
    }

    /// `rows` copies of the vector `self` (`[n]`) as a `[rows, n]` matrix: the backward of
    /// `sum_rows`. On a GPU it is a fill and an `add_bias` onto it, as no kernel copies a row.
    pub(crate) fn broadcast_rows(&self, rows: usize) -> Result<Tensor> {
        let n = self.len();
        element_count("broadcast_rows", &[rows, n])?;
        let storage = match &*self.storage() {
            Storage::Cpu(x) => Storage::Cpu(x.repeat(rows)),
            Storage::Gpu(x) => {
                let zeros = gpu::ops::fill(x.context(), rows * n, 0.0)?;
                Storage::Gpu(gpu::ops::add_bias(x.context(), &zeros, x, rows, n)?)
            }
        };
        Ok(Tensor::constant(storage, vec![rows, n]))
    }

    /// Inverted dropout: zeroes each element with probability `p` and scales the rest by
    /// `1 / (1 - p)`, so evaluation needs no rescaling. The mask is drawn from one draw of `rng`
    /// (see [`cpu::dropout_keeps`]): the same on every device, made where the data is.
    pub fn dropout(&self, p: f32, rng: &mut crate::rng::Rng) -> Result<Tensor> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::InvalidArgument(format!("dropout probability {p} is outside [0, 1)")));
        }
        if p == 0.0 {
            return Ok(self.clone());
        }
        self.dropout_with_key(p, rng.next_u64())
    }

    /// Dropout with the mask of `key`; with the same key it is also its own backward.
    pub(crate) fn dropout_with_key(&self, p: f32, key: u64) -> Result<Tensor> {
        if self.len() > u32::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "dropout masks index 32-bit positions; {:?} has more elements",
                self.shape()
            )));
        }
        let scale = 1.0 / (1.0 - p);
        let storage = match &*self.storage() {
            Storage::Cpu(x) => {
                let mut out = vec![0.0; x.len()];
                cpu::dropout(x, key, p, scale, &mut out);
                Storage::Cpu(out)
            }
            Storage::Gpu(x) => Storage::Gpu(gpu::ops::dropout(x.context(), x, key, p, scale)?),
        };
        Ok(Tensor::from_op(storage, self.shape().to_vec(), Op::Dropout { x: self.clone(), p, key }))
    }

    /// Index of the largest element of each row of a `[m, n]` matrix (no gradient).
    pub fn argmax(&self) -> Result<Vec<usize>> {
        let (m, n) = self.dims2("argmax")?;
        Ok(match &*self.storage() {
            Storage::Cpu(x) => cpu::argmax_rows(&x[..m * n], n),
            Storage::Gpu(x) => {
                gpu::ops::argmax_rows(x.context(), x, m, n)?.to_f32_vec()?.into_iter().map(|i| i as usize).collect()
            }
        })
    }

    fn unary(&self, f: Unary) -> Result<Storage> {
        Ok(match &*self.storage() {
            Storage::Cpu(x) => {
                let mut out = vec![0.0; x.len()];
                match f {
                    Unary::Relu => cpu::map(x, &mut out, |v| v.max(0.0)),
                    Unary::Scale(factor) => cpu::map(x, &mut out, |v| v * factor),
                }
                Storage::Cpu(out)
            }
            Storage::Gpu(x) => Storage::Gpu(match f {
                Unary::Relu => gpu::ops::relu(x.context(), x)?,
                Unary::Scale(factor) => gpu::ops::scale(x.context(), x, factor)?,
            }),
        })
    }

    fn binary(&self, rhs: &Tensor, f: Binary) -> Result<Storage> {
        self.same_shape(rhs, f.name())?;
        Ok(match (&*self.storage(), &*rhs.storage()) {
            (Storage::Cpu(a), Storage::Cpu(b)) => {
                let mut out = vec![0.0; a.len()];
                match f {
                    Binary::Add => cpu::zip_map(a, b, &mut out, |a, b| a + b),
                    Binary::Mul => cpu::zip_map(a, b, &mut out, |a, b| a * b),
                    Binary::ReluMask => cpu::zip_map(a, b, &mut out, |x, g| if x > 0.0 { g } else { 0.0 }),
                }
                Storage::Cpu(out)
            }
            (Storage::Gpu(a), Storage::Gpu(b)) => Storage::Gpu(match f {
                Binary::Add => gpu::ops::add(a.context(), a, b)?,
                Binary::Mul => gpu::ops::mul(a.context(), a, b)?,
                Binary::ReluMask => gpu::ops::relu_mask(a.context(), a, b)?,
            }),
            _ => return Err(Error::DeviceMismatch(f.name())),
        })
    }
}

#[derive(Clone, Copy)]
enum Unary {
    Relu,
    Scale(f32),
}

#[derive(Clone, Copy)]
enum Binary {
    Add,
    Mul,
    /// `b` where `a > 0`, else 0.
    ReluMask,
}

impl Binary {
    fn name(self) -> &'static str {
        match self {
            Binary::Add => "add",
            Binary::Mul => "mul",
            Binary::ReluMask => "relu_mask",
        }
    }
}

/// Runs a backward kernel of two inputs on their device and returns its result, shaped
/// `shape`, recording nothing: `cpu` fills a zeroed output, `gpu` allocates its own.
fn gradient_of_two(
    op: &'static str,
    [a, b]: [&Tensor; 2],
    shape: &[usize],
    cpu: impl FnOnce(&[f32], &[f32], &mut [f32]) -> Result<()>,
    gpu: impl FnOnce(&GpuBuffer, &GpuBuffer) -> std::result::Result<GpuBuffer, GpuError>,
) -> Result<Tensor> {
    let storage = match (&*a.storage(), &*b.storage()) {
        (Storage::Cpu(a), Storage::Cpu(b)) => {
            let mut out = vec![0.0; element_count(op, shape)?];
            cpu(a, b, &mut out)?;
            Storage::Cpu(out)
        }
        (Storage::Gpu(a), Storage::Gpu(b)) => Storage::Gpu(gpu(a, b)?),
        _ => return Err(Error::DeviceMismatch(op)),
    };
    Ok(Tensor::constant(storage, shape.to_vec()))
}

fn shape_mismatch(op: &'static str, lhs: &Tensor, rhs: &Tensor) -> Error {
    Error::ShapeMismatch { op, lhs: lhs.shape().to_vec(), rhs: rhs.shape().to_vec() }
}
