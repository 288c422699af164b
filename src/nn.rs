//! Layers with PyTorch's conventions: `Linear` keeps its weight as `[out, in]` and initialises it
//! like `torch.nn.Linear`, so weights move between the two without reshaping.

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::{Device, Tensor};

/// `y = x · Wᵀ + b`.
pub struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Linear {
    /// PyTorch's default: kaiming-uniform with a = sqrt(5) for the weight, which is uniform in
    /// ±1/sqrt(fan_in), and the same bound for the bias.
    pub fn new(inputs: usize, outputs: usize, rng: &mut Rng, device: &Device) -> Result<Linear> {
        let bound = 1.0 / (inputs as f32).sqrt();
        let weight: Vec<f32> = (0..inputs * outputs).map(|_| rng.uniform(-bound, bound)).collect();
        let bias: Vec<f32> = (0..outputs).map(|_| rng.uniform(-bound, bound)).collect();
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
