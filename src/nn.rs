//! Layers with PyTorch's conventions: `Linear` keeps its weight as `[out, in]` and `Conv2d` as
//! `[out, in, kh, kw]`, initialised like `torch.nn`'s, so weights move between the two without
//! reshaping. The two networks name their parameters as the matching `torch.nn.Sequential` does.

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::{Device, Tensor};

/// `y = x · Wᵀ + b`.
pub struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
}

/// PyTorch's default initialisation of a layer with `fan_in` inputs per output: kaiming-uniform
/// with a = sqrt(5) for the `weights` values, which is uniform in ±1/sqrt(fan_in), and the same
/// bound for the `outputs` biases.
fn default_init(fan_in: usize, weights: usize, outputs: usize, rng: &mut Rng) -> (Vec<f32>, Vec<f32>) {
    let bound = 1.0 / (fan_in as f32).sqrt();
    (rng.uniform_vec(weights, -bound, bound), rng.uniform_vec(outputs, -bound, bound))
}

impl Linear {
    pub fn new(inputs: usize, outputs: usize, rng: &mut Rng, device: &Device) -> Result<Linear> {
        let (weight, bias) = default_init(inputs, inputs * outputs, outputs, rng);
        Linear::from_weights(weight, bias, inputs, outputs, device)
    }

    /// A layer from existing `[out, in]` weights and `[out]` bias.
    pub fn from_weights(
        weight: Vec<f32>,
        bias: Vec<f32>,
        inputs: usize,
        outputs: usize,
        device: &Device,
    ) -> Result<Linear> {
        Ok(Linear {
            weight: Tensor::variable(weight, &[outputs, inputs], device)?,
            bias: Tensor::variable(bias, &[outputs], device)?,
        })
    }

    pub fn inputs(&self) -> usize {
        self.weight.shape()[1]
    }

    pub fn outputs(&self) -> usize {
        self.weight.shape()[0]
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.weight, &self.bias, false)
    }

    /// `relu(x · Wᵀ + b)`, with bias and relu fused into the matmul's output.
    pub fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.weight, &self.bias, true)
    }
}

/// A multilayer perceptron: linear layers with relu (and dropout while training) between them.
pub struct Mlp {
    pub layers: Vec<Linear>,
    pub dropout: f32,
}

impl Mlp {
    /// `inputs → hidden[0] → … → outputs`.
    pub fn new(
        inputs: usize,
        hidden: &[usize],
        outputs: usize,
        dropout: f32,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Mlp> {
        if hidden.contains(&0) || inputs == 0 || outputs == 0 {
            return Err(Error::InvalidArgument(format!(
                "layer sizes must be positive, got {inputs}, {hidden:?}, {outputs}"
            )));
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(Error::InvalidArgument(format!("dropout {dropout} is outside [0, 1)")));
        }
        let sizes: Vec<usize> = std::iter::once(inputs).chain(hidden.iter().copied()).chain([outputs]).collect();
        let layers = sizes.windows(2).map(|w| Linear::new(w[0], w[1], rng, device)).collect::<Result<_>>()?;
        Ok(Mlp { layers, dropout })
    }

    /// Logits for a `[batch, inputs]` batch, in evaluation mode (no dropout).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, None)
    }

    /// Logits in training mode: dropout after each hidden activation, its masks drawn from `rng`.
    pub fn forward_train(&self, x: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        self.run(x, Some(rng))
    }

    fn run(&self, x: &Tensor, mut rng: Option<&mut Rng>) -> Result<Tensor> {
        let (last, hidden) =
            self.layers.split_last().ok_or_else(|| Error::InvalidArgument("an MLP needs a layer".into()))?;
        let mut h = x.clone();
        for layer in hidden {
            h = layer.forward_relu(&h)?;
            if let Some(rng) = rng.as_deref_mut() {
                h = h.dropout(self.dropout, rng)?;
            }
        }
        last.forward(&h)
    }

    /// Parameters in PyTorch's `state_dict` order: weight then bias, layer by layer.
    pub fn parameters(&self) -> Vec<Tensor> {
        self.layers.iter().flat_map(|l| [l.weight.clone(), l.bias.clone()]).collect()
    }

    /// Parameters with the names `torch.nn.Sequential(Linear, ReLU, Linear, …)` gives them:
    /// `0.weight`, `0.bias`, `2.weight`, …
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| {
                [(format!("{}.weight", 2 * i), l.weight.clone()), (format!("{}.bias", 2 * i), l.bias.clone())]
            })
            .collect()
    }

    pub fn parameter_count(&self) -> usize {
        self.parameters().iter().map(Tensor::len).sum()
    }

    /// Layer widths from input to output, e.g. `[784, 512, 512, 10]`.
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes: Vec<usize> = self.layers.iter().map(Linear::inputs).collect();
        sizes.extend(self.layers.last().map(Linear::outputs));
        sizes
    }
}

/// A stride-1 convolution with a square kernel, zero-padded to keep the image size for odd
/// kernels of `2 * padding + 1`.
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub padding: usize,
}

impl Conv2d {
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        padding: usize,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Conv2d> {
        let fan_in = in_channels * kernel * kernel;
        let (weight, bias) = default_init(fan_in, out_channels * fan_in, out_channels, rng);
        Conv2d::from_weights(weight, bias, [out_channels, in_channels, kernel, kernel], padding, device)
    }

    /// A layer from existing `[out, in, kh, kw]` weights and `[out]` bias.
    pub fn from_weights(
        weight: Vec<f32>,
        bias: Vec<f32>,
        shape: [usize; 4],
        padding: usize,
        device: &Device,
    ) -> Result<Conv2d> {
        Ok(Conv2d {
            weight: Tensor::variable(weight, &shape, device)?,
            bias: Tensor::variable(bias, &shape[..1], device)?,
            padding,
        })
    }

    pub fn in_channels(&self) -> usize {
        self.weight.shape()[1]
    }

    pub fn out_channels(&self) -> usize {
        self.weight.shape()[0]
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(&self.weight, &self.bias, self.padding)
    }
}

/// The two-convolution network of PyTorch's examples, sized for 28x28 images:
/// `conv 1→c1 3x3 pad 1, relu, maxpool 2 → conv c1→c2 3x3 pad 1, relu, maxpool 2 → flatten →
/// linear c2·7·7→hidden, relu, dropout → linear hidden→classes`. Its parameters are those of
/// `torch.nn.Sequential(Conv2d, ReLU, MaxPool2d, Conv2d, ReLU, MaxPool2d, Flatten, Linear, ReLU,
/// Dropout, Linear)`: `0.*`, `3.*`, `7.*` and `10.*`.
pub struct Cnn {
    pub conv1: Conv2d,
    pub conv2: Conv2d,
    pub hidden: Linear,
    pub output: Linear,
    pub dropout: f32,
}

impl Cnn {
    /// Image side the network is built for; two poolings leave `SIDE / 4`.
    pub const SIDE: usize = 28;
    /// The layer widths of the network PyTorch's examples train: 32 and 64 channels, 128 hidden.
    pub const WIDTHS: [usize; 3] = [32, 64, 128];

    /// A network of `widths` `[c1, c2, hidden]` for `SIDE x SIDE` grey images and `classes`.
    pub fn new(widths: [usize; 3], classes: usize, dropout: f32, rng: &mut Rng, device: &Device) -> Result<Cnn> {
        let [c1, c2, hidden] = widths;
        if widths.contains(&0) || classes == 0 {
            return Err(Error::InvalidArgument(format!("layer sizes must be positive, got {widths:?} and {classes}")));
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(Error::InvalidArgument(format!("dropout {dropout} is outside [0, 1)")));
        }
        let flat = c2 * (Cnn::SIDE / 4) * (Cnn::SIDE / 4);
        Ok(Cnn {
            conv1: Conv2d::new(1, c1, 3, 1, rng, device)?,
            conv2: Conv2d::new(c1, c2, 3, 1, rng, device)?,
            hidden: Linear::new(flat, hidden, rng, device)?,
            output: Linear::new(hidden, classes, rng, device)?,
            dropout,
        })
    }

    /// Logits for a `[batch, SIDE * SIDE]` batch of flattened images, in evaluation mode.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, None)
    }

    /// Logits in training mode: dropout after the hidden layer, its mask drawn from `rng`.
    pub fn forward_train(&self, x: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        self.run(x, Some(rng))
    }

    fn run(&self, x: &Tensor, rng: Option<&mut Rng>) -> Result<Tensor> {
        let batch = x.shape().first().copied().unwrap_or(0);
        let image = x.reshape(&[batch, 1, Cnn::SIDE, Cnn::SIDE])?;
        // Pooling before the relu, on a quarter of the values: `relu(max(..)) = max(relu(..))`,
        // and the gradients are the same too (a window whose largest value is not positive
        // passes none either way).
        let h = self.conv1.forward(&image)?.max_pool2d()?.relu()?;
        let h = self.conv2.forward(&h)?.max_pool2d()?.relu()?;
        let h = self.hidden.forward_relu(&h.reshape(&[batch, self.hidden.inputs()])?)?;
        let h = match rng {
            Some(rng) => h.dropout(self.dropout, rng)?,
            None => h,
        };
        self.output.forward(&h)
    }

    /// Parameters with the names of the `torch.nn.Sequential` above, in `state_dict` order.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        [(0, &self.conv1.weight, &self.conv1.bias), (3, &self.conv2.weight, &self.conv2.bias)]
            .into_iter()
            .chain([(7, &self.hidden.weight, &self.hidden.bias), (10, &self.output.weight, &self.output.bias)])
            .flat_map(|(i, w, b)| [(format!("{i}.weight"), w.clone()), (format!("{i}.bias"), b.clone())])
            .collect()
    }

    /// `[784, c1, c2, hidden, classes]`: the input, the widths and the output.
    pub fn sizes(&self) -> Vec<usize> {
        vec![
            Cnn::SIDE * Cnn::SIDE,
            self.conv1.out_channels(),
            self.conv2.out_channels(),
            self.hidden.outputs(),
            self.output.outputs(),
        ]
    }
}

/// Which kind of network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    #[default]
    Mlp,
    Cnn,
}

crate::choice::choice!(Architecture { Mlp => "mlp", Cnn => "cnn" });

/// A classifier of flattened images: either network, used the same way.
pub enum Network {
    Mlp(Mlp),
    Cnn(Cnn),
}

impl Network {
    pub fn architecture(&self) -> Architecture {
        match self {
            Network::Mlp(_) => Architecture::Mlp,
            Network::Cnn(_) => Architecture::Cnn,
        }
    }

    /// Logits for a `[batch, inputs]` batch, in evaluation mode (no dropout).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Network::Mlp(m) => m.forward(x),
            Network::Cnn(m) => m.forward(x),
        }
    }

    /// Logits in training mode, dropout masks drawn from `rng`.
    pub fn forward_train(&self, x: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        match self {
            Network::Mlp(m) => m.forward_train(x, rng),
            Network::Cnn(m) => m.forward_train(x, rng),
        }
    }

    /// Parameters with PyTorch's names, in `state_dict` order.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        match self {
            Network::Mlp(m) => m.named_parameters(),
            Network::Cnn(m) => m.named_parameters(),
        }
    }

    /// Parameters in `state_dict` order.
    pub fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters().into_iter().map(|(_, t)| t).collect()
    }

    pub fn parameter_count(&self) -> usize {
        self.parameters().iter().map(Tensor::len).sum()
    }

    /// The sizes that define the network: the MLP's layer widths from input to output, e.g.
    /// `[784, 512, 512, 10]`, or the CNN's `[784, 32, 64, 128, 10]`.
    pub fn sizes(&self) -> Vec<usize> {
        match self {
            Network::Mlp(m) => m.sizes(),
            Network::Cnn(m) => m.sizes(),
        }
    }
}
