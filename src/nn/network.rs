//! A trainable network: a [`Description`] and the weights of its layers, with PyTorch's layouts
//! (`[out, in]` for a linear layer, `[out, in, kh, kw]` for a convolution) and initialisation, so
//! weights move between the two without reshaping.

use super::description::{Architecture, Description, Step};
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::{Device, RunningLoss, Tensor};

/// A layer's weight and bias.
pub struct Weights {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Weights {
    /// PyTorch's default initialisation of a `shape` weight (`[out, …]`, `fan_in` the product of
    /// the rest): kaiming-uniform with a = sqrt(5), which is uniform in ±1/sqrt(fan_in), and the
    /// same bound for the `out` biases.
    pub fn init(shape: &[usize], rng: &mut Rng, device: &Device) -> Result<Weights> {
        let outputs = shape.first().copied().unwrap_or(0);
        let fan_in: usize = shape.iter().skip(1).product();
        let bound = 1.0 / (fan_in as f32).sqrt();
        let weight = rng.uniform_vec(outputs * fan_in, -bound, bound);
        let bias = rng.uniform_vec(outputs, -bound, bound);
        Weights::from_values(weight, bias, shape, device)
    }

    /// Existing values: a `shape` weight and its `shape[0]` biases.
    pub fn from_values(weight: Vec<f32>, bias: Vec<f32>, shape: &[usize], device: &Device) -> Result<Weights> {
        Ok(Weights {
            weight: Tensor::variable(weight, shape, device)?,
            bias: Tensor::variable(bias, &shape[..1.min(shape.len())], device)?,
        })
    }
}

/// A classifier of flattened images, built from its description.
pub struct Network {
    description: Description,
    /// The weights of each layer that has them, in layer order, beside the layer's index.
    weights: Vec<(usize, Weights)>,
    /// The probability of dropping an activation at a dropout layer while training.
    pub dropout: f32,
}

impl Network {
    /// The network `description` describes, initialised like `torch.nn`'s layers in layer order
    /// from `rng`, with `dropout` while training.
    pub fn new(description: Description, dropout: f32, rng: &mut Rng, device: &Device) -> Result<Network> {
        let shapes = description.weight_shapes();
        let weights = shapes.iter().map(|(_, shape)| Weights::init(shape, rng, device)).collect::<Result<_>>()?;
        Network::from_weights(description, weights, dropout)
    }

    /// The network `description` describes with `weights`, one per layer with parameters in
    /// layer order, each of the shape the description gives it ([`Description::weight_shapes`]).
    pub fn from_weights(description: Description, weights: Vec<Weights>, dropout: f32) -> Result<Network> {
        if !(0.0..1.0).contains(&dropout) {
            return Err(Error::InvalidArgument(format!("dropout {dropout} is outside [0, 1)")));
        }
        let expected = description.weight_shapes();
        if expected.len() != weights.len() {
            return Err(Error::InvalidArgument(format!(
                "{} layers have parameters but {} weights were given",
                expected.len(),
                weights.len()
            )));
        }
        for ((layer, shape), w) in expected.iter().zip(&weights) {
            if w.weight.shape() != shape.as_slice() || w.bias.shape() != &shape[..1] {
                let index = description.torch_index(*layer);
                return Err(Error::InvalidArgument(format!(
                    "layer {index}: weight {:?} and bias {:?} are not {shape:?} and [{}]",
                    w.weight.shape(),
                    w.bias.shape(),
                    shape[0]
                )));
            }
        }
        let weights = expected.into_iter().map(|(layer, _)| layer).zip(weights).collect();
        Ok(Network { description, weights, dropout })
    }

    pub fn description(&self) -> &Description {
        &self.description
    }

    pub fn architecture(&self) -> Architecture {
        self.description.architecture()
    }

    /// The weights of layer `layer`; an error for a layer without parameters.
    pub fn weights(&self, layer: usize) -> Result<&Weights> {
        let found = self.weights.iter().find(|(i, _)| *i == layer).map(|(_, w)| w);
        found.ok_or_else(|| Error::InvalidArgument(format!("layer {layer} of the description has no weights")))
    }

    /// Logits for a `[batch, inputs]` batch, in evaluation mode (no dropout).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.description.steps(false).into_iter().try_fold(x.clone(), |h, step| self.apply(step, &h, None))
    }

    /// Logits in training mode: dropout where the description has it, its masks drawn from `rng`.
    pub fn forward_train(&self, x: &Tensor, rng: &mut Rng) -> Result<Tensor> {
        let mut h = x.clone();
        for step in self.description.steps(true) {
            h = self.apply(step, &h, Some(&mut *rng))?;
        }
        Ok(h)
    }

    /// The mean cross-entropy of the logits of `x` in training mode (as [`Network::forward_train`])
    /// at `labels`, with the last linear layer and the loss as one op (one kernel on a GPU);
    /// with `running`, the loss also goes into that sum.
    pub fn training_loss(
        &self,
        x: &Tensor,
        labels: &Tensor,
        rng: &mut Rng,
        running: Option<RunningLoss>,
    ) -> Result<Tensor> {
        self.training_loss_after(0, x, labels, rng, running)
    }

    /// The weights of the first layer and whether a relu follows it, where the network starts
    /// with a linear layer that is not also its last (an MLP): a GPU gathers the batch inside
    /// that layer's product, and [`Network::training_loss_after`] goes on from its output.
    pub fn first_linear(&self) -> Option<(&Weights, bool)> {
        match self.description.steps(true).as_slice() {
            [Step::Linear { layer, relu }, _, ..] => Some((self.weights(*layer).ok()?, *relu)),
            _ => None,
        }
    }

    /// As [`Network::training_loss`] from `h`, the output of the first `done` steps of the
    /// training forward pass.
    pub fn training_loss_after(
        &self,
        done: usize,
        h: &Tensor,
        labels: &Tensor,
        rng: &mut Rng,
        running: Option<RunningLoss>,
    ) -> Result<Tensor> {
        let mut steps = self.description.steps(true);
        let last = steps.pop();
        let mut h = h.clone();
        for step in steps.into_iter().skip(done) {
            h = self.apply(step, &h, Some(&mut *rng))?;
        }
        if let Some(Step::Linear { layer, relu: false }) = last {
            let w = self.weights(layer)?;
            return h.linear_cross_entropy(&w.weight, &w.bias, labels, running);
        }
        if let Some(step) = last {
            h = self.apply(step, &h, Some(rng))?;
        }
        let loss = h.cross_entropy(labels)?;
        if let Some(running) = running {
            running.add(&loss)?;
        }
        Ok(loss)
    }

    /// One step of the forward pass on `h` (`[batch, …]`); dropout only with an `rng`.
    pub fn apply(&self, step: Step, h: &Tensor, rng: Option<&mut Rng>) -> Result<Tensor> {
        let batch = h.shape().first().copied().unwrap_or(0);
        match step {
            Step::Linear { layer, relu } => {
                let w = self.weights(layer)?;
                h.linear(&w.weight, &w.bias, relu)
            }
            Step::Conv2d { layer, padding, image } => {
                let w = self.weights(layer)?;
                let image = match h.shape().len() {
                    2 => h.reshape(&[batch, image.channels, image.height, image.width])?,
                    _ => h.clone(),
                };
                image.conv2d(&w.weight, &w.bias, padding)
            }
            Step::Relu => h.relu(),
            Step::MaxPool2d { relu: true } => h.max_pool2d()?.relu(),
            Step::MaxPool2d { relu: false } => h.max_pool2d(),
            Step::Flatten { width } => h.reshape(&[batch, width]),
            Step::Dropout => match rng {
                Some(rng) => h.dropout(self.dropout, rng),
                None => Ok(h.clone()),
            },
        }
    }

    /// Parameters with the names of the matching `torch.nn.Sequential`, in `state_dict` order.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.weights
            .iter()
            .flat_map(|(layer, w)| {
                let [weight, bias] = self.description.parameter_names(*layer);
                [(weight, w.weight.clone()), (bias, w.bias.clone())]
            })
            .collect()
    }

    /// Parameters in `state_dict` order.
    pub fn parameters(&self) -> Vec<Tensor> {
        self.weights.iter().flat_map(|(_, w)| [w.weight.clone(), w.bias.clone()]).collect()
    }

    pub fn parameter_count(&self) -> usize {
        self.parameters().iter().map(Tensor::len).sum()
    }

    /// The sizes that define the network ([`Description::sizes`]).
    pub fn sizes(&self) -> Vec<usize> {
        self.description.sizes()
    }
}
