//! Convolution and pooling on tensors: a stride-1 convolution, 2x2 max pooling, and the
//! gradients their backward rules take, each dispatched with one `match` over the storage of
//! its inputs like every other op.

use crate::backend::cpu::{self, conv::Conv2dShape};
use crate::backend::gpu;
use crate::error::{Error, Result};
use crate::op::Op;

use super::{Storage, Tensor, gradient_of_two, shape_mismatch};

impl Tensor {
    /// A stride-1 convolution of `self` `[batch, in_channels, height, width]` with PyTorch's
    /// `weight` `[out_channels, in_channels, kh, kw]` and `bias` `[out_channels]`, zero-padded by
    /// `padding` on every side: `[batch, out_channels, height + 2p - kh + 1, width + 2p - kw + 1]`.
    pub fn conv2d(&self, weight: &Tensor, bias: &Tensor, padding: usize) -> Result<Tensor> {
        let s = conv_shape(self, weight, padding)?;
        if bias.shape() != [s.out_channels] {
            return Err(shape_mismatch("conv2d", weight, bias));
        }
        let storage = match (&*self.storage(), &*weight.storage(), &*bias.storage()) {
            (Storage::Cpu(x), Storage::Cpu(w), Storage::Cpu(b)) => {
                let mut out = vec![0.0; s.output_len()];
                cpu::conv::conv2d(x, w, b, s, &mut out)?;
                Storage::Cpu(out)
            }
            (Storage::Gpu(x), Storage::Gpu(w), Storage::Gpu(b)) => {
                Storage::Gpu(gpu::conv::conv2d(x.context(), x, w, b, s, false)?)
            }
            _ => return Err(Error::DeviceMismatch("conv2d")),
        };
        let op = Op::Conv2d { x: self.clone(), weight: weight.clone(), bias: bias.clone(), padding };
        Ok(Tensor::from_op(storage, vec![s.batch, s.out_channels, s.out_height(), s.out_width()], op))
    }

    /// The gradient of [`Tensor::conv2d`] with respect to its input `x`, from `self`, the
    /// output's gradient. Records nothing (backward rules use it).
    pub(crate) fn conv2d_backward_input(&self, x: &Tensor, weight: &Tensor, padding: usize) -> Result<Tensor> {
        let s = conv_shape(x, weight, padding)?;
        self.expect_len(s.output_len(), "conv2d_backward")?;
        gradient_of_two(
            "conv2d_backward",
            [self, weight],
            x.shape(),
            |dy, w, dx| cpu::conv::conv2d_backward_input(dy, w, s, dx),
            |dy, w| gpu::conv::conv2d_backward_input(dy.context(), dy, w, s),
        )
    }

    /// The gradient of [`Tensor::conv2d`] with respect to its weight, from `self`, the output's
    /// gradient. Records nothing.
    pub(crate) fn conv2d_backward_weight(&self, x: &Tensor, weight: &Tensor, padding: usize) -> Result<Tensor> {
        let s = conv_shape(x, weight, padding)?;
        self.expect_len(s.output_len(), "conv2d_backward")?;
        gradient_of_two(
            "conv2d_backward",
            [x, self],
            weight.shape(),
            |x, dy, dw| cpu::conv::conv2d_backward_weight(x, dy, s, dw),
            |x, dy| gpu::conv::conv2d_backward_weight(x.context(), x, dy, s),
        )
    }

    /// Sums over every axis but the second of a `[batch, channels, ...]` tensor: `[channels]`,
    /// the gradient of a convolution's bias. Records nothing.
    pub(crate) fn channel_sums(&self) -> Result<Tensor> {
        let (batch, channels) = match self.shape() {
            &[batch, channels, ..] => (batch, channels),
            shape => return Err(Error::Rank { op: "channel_sums", expected: 4, shape: shape.to_vec() }),
        };
        let storage = match &*self.storage() {
            Storage::Cpu(x) => {
                let mut out = vec![0.0; channels];
                cpu::conv::channel_sums(x, batch, channels, &mut out)?;
                Storage::Cpu(out)
            }
            Storage::Gpu(x) => Storage::Gpu(gpu::conv::channel_sums(x.context(), x, batch, channels)?),
        };
        Ok(Tensor::constant(storage, vec![channels]))
    }

    /// 2x2 max pooling with stride 2 of a `[batch, channels, height, width]` tensor, as
    /// PyTorch's `MaxPool2d(2)`: `[batch, channels, height / 2, width / 2]`.
    pub fn max_pool2d(&self) -> Result<Tensor> {
        let (planes, height, width) = self.planes("max_pool2d")?;
        let storage = match &*self.storage() {
            Storage::Cpu(x) => {
                let mut out = vec![0.0; planes * (height / 2) * (width / 2)];
                cpu::conv::max_pool2d(x, planes, height, width, &mut out)?;
                Storage::Cpu(out)
            }
            Storage::Gpu(x) => Storage::Gpu(gpu::conv::max_pool2d(x.context(), x, planes, height, width)?),
        };
        let shape = [&self.shape()[..2], &[height / 2, width / 2]].concat();
        Ok(Tensor::from_op(storage, shape, Op::MaxPool2d(self.clone())))
    }

    /// The gradient of `self.max_pool2d()` from `grad`, the output's gradient. Records nothing.
    pub(crate) fn max_pool2d_backward(&self, grad: &Tensor) -> Result<Tensor> {
        let (planes, height, width) = self.planes("max_pool2d")?;
        grad.expect_len(planes * (height / 2) * (width / 2), "max_pool2d_backward")?;
        gradient_of_two(
            "max_pool2d_backward",
            [self, grad],
            self.shape(),
            |x, dy, dx| cpu::conv::max_pool2d_backward(x, dy, planes, height, width, dx),
            |x, dy| gpu::conv::max_pool2d_backward(x.context(), x, dy, planes, height, width),
        )
    }

    /// A `[batch, channels, height, width]` tensor as `(batch * channels, height, width)`.
    fn planes(&self, op: &'static str) -> Result<(usize, usize, usize)> {
        match self.shape() {
            &[batch, channels, height, width] => Ok((batch * channels, height, width)),
            shape => Err(Error::Rank { op, expected: 4, shape: shape.to_vec() }),
        }
    }
}

/// The sizes of `x.conv2d(weight, _, padding)`, checked: NCHW input, `[out, in, kh, kw]`
/// weights with as many input channels, and a kernel that fits the padded image.
fn conv_shape(x: &Tensor, weight: &Tensor, padding: usize) -> Result<Conv2dShape> {
    let mismatch = || shape_mismatch("conv2d", x, weight);
    let (&[batch, in_channels, height, width], &[out_channels, weight_in, kernel_h, kernel_w]) =
        (x.shape(), weight.shape())
    else {
        return Err(mismatch());
    };
    let s = Conv2dShape { batch, in_channels, height, width, out_channels, kernel_h, kernel_w, padding };
    s.validate()?;
    // An empty batch is fine (an empty output, as in PyTorch); an empty image or kernel is not.
    if weight_in != in_channels || s.weight_len() == 0 || height * width == 0 || s.out_height() * s.out_width() == 0 {
        return Err(mismatch());
    }
    Ok(s)
}
