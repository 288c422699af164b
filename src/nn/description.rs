//! The one description of a network: its input image, an ordered list of layers named after the
//! `torch.nn` modules they match, and the class count it ends on. Training ([`super::Network`]),
//! the server's packed CPU layers, the ONNX graph and the PyTorch parameter names all read it, so
//! a new layer kind is one variant of [`Layer`] and one arm per concern, and none can drift from
//! another.

use crate::error::{Error, Result};

/// The shape of one input image. The network reads each image as one row of
/// `channels * height * width` values, channel by channel, each plane row by row (NCHW).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    /// FashionMNIST's 28x28 grey images, the shape of every model saved before shapes were recorded.
    pub const FASHION_MNIST: ImageShape = ImageShape { channels: 1, height: 28, width: 28 };

    /// Values per image (saturating: [`Description`]s refuse shapes whose product overflows).
    pub fn pixels(&self) -> usize {
        self.channels.saturating_mul(self.height).saturating_mul(self.width)
    }

    /// How a row holds an image, in words.
    pub fn layout(&self) -> String {
        let (h, w) = (self.height, self.width);
        match self.channels {
            1 => format!("one row per image: the {h}x{w} pixels in row-major order (index {w} * row + column)"),
            c => format!(
                "one row per image: {c} channels of {h}x{w} pixels, channel by channel, each in row-major order \
                 (index {} * channel + {w} * row + column)",
                h * w
            ),
        }
    }

    /// Whether a network can read it: positive sizes whose product fits in memory.
    pub fn validate(&self) -> Result<()> {
        let ImageShape { channels, height, width } = *self;
        match channels.checked_mul(height).and_then(|p| p.checked_mul(width)) {
            Some(p) if p > 0 => Ok(()),
            _ => Err(Error::InvalidArgument(format!(
                "an input image needs positive sizes whose product fits in memory, got {self:?}"
            ))),
        }
    }

    /// FashionMNIST's shape: what a metadata file without a recorded shape means.
    pub fn fashion_mnist() -> ImageShape {
        ImageShape::FASHION_MNIST
    }

    /// Whether this is FashionMNIST's shape (which metadata files leave unwritten, as before).
    pub fn is_fashion_mnist(&self) -> bool {
        *self == ImageShape::FASHION_MNIST
    }
}

/// What flows between two layers of one example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A row of values.
    Flat(usize),
    /// Channels of 2-D planes (NCHW without the batch).
    Image(ImageShape),
}

impl Shape {
    /// Values per example.
    pub fn len(&self) -> usize {
        match self {
            Shape::Flat(n) => *n,
            Shape::Image(image) => image.pixels(),
        }
    }

    /// Whether it holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One layer, as the `torch.nn` module it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// `nn.Linear(inputs, outputs)`, its inputs those of the layer before.
    Linear { outputs: usize },
    /// `nn.Conv2d(in, channels, kernel, padding=padding)`, stride 1, `in` from the layer before.
    /// A convolution that reads the network's input rows sees them as images of the input shape.
    Conv2d { channels: usize, kernel: usize, padding: usize },
    /// `nn.ReLU()`.
    Relu,
    /// `nn.MaxPool2d(2)`: the largest of each 2x2 window; an odd last row or column is dropped.
    MaxPool2d,
    /// `nn.Flatten()`: images to rows.
    Flatten,
    /// Dropout while training, the identity in evaluation. `module` says whether it is an
    /// `nn.Dropout` of the `Sequential` (and takes an index there) or applied in `forward` (and
    /// takes none, as in the MLP, whose parameter names predate it).
    Dropout { module: bool },
}

impl Layer {
    /// The shape this layer makes of `input`, or why it cannot take it. `first` says whether it
    /// reads the network's input rows, which a convolution sees as images of `image`.
    fn output(&self, input: Shape, first: bool, image: ImageShape) -> std::result::Result<Shape, String> {
        match (*self, input) {
            (Layer::Linear { outputs }, Shape::Flat(_)) => Ok(Shape::Flat(outputs)),
            (Layer::Conv2d { channels, kernel, padding }, input) => {
                let input = match input {
                    Shape::Image(input) => input,
                    Shape::Flat(_) if first => image,
                    Shape::Flat(n) => return Err(format!("a convolution cannot read {n} flat values")),
                };
                let side = |s: usize| s.checked_add(2 * padding)?.checked_sub(kernel).map(|s| s + 1).filter(|&s| s > 0);
                match (side(input.height), side(input.width)) {
                    (Some(height), Some(width)) => Ok(Shape::Image(ImageShape { channels, height, width })),
                    _ => Err(format!(
                        "a {kernel}x{kernel} convolution with padding {padding} cannot read {}x{} images",
                        input.height, input.width
                    )),
                }
            }
            (Layer::MaxPool2d, Shape::Image(i)) if i.height >= 2 && i.width >= 2 => {
                Ok(Shape::Image(ImageShape { height: i.height / 2, width: i.width / 2, ..i }))
            }
            (Layer::MaxPool2d, _) => Err(format!("2x2 pooling needs images of at least 2x2, got {input:?}")),
            (Layer::Flatten, input) => Ok(Shape::Flat(input.len())),
            (Layer::Relu | Layer::Dropout { .. }, input) => Ok(input),
            (Layer::Linear { .. }, Shape::Image(_)) => {
                Err("a linear layer reads rows: flatten the images first".into())
            }
        }
    }

    /// Whether the layer takes an index of the `torch.nn.Sequential`.
    fn is_module(&self) -> bool {
        !matches!(self, Layer::Dropout { module: false })
    }
}

/// Which family of network: the format name of its files and how its sizes read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    #[default]
    Mlp,
    Cnn,
}

crate::choice::choice!(Architecture { Mlp => "mlp", Cnn => "cnn" });

/// One step of a forward pass: a layer, or two layers computed together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The linear layer `layer`, with the relu after it applied where the product is written.
    Linear {
        layer: usize,
        relu: bool,
    },
    /// The convolution `layer`, reading `[N, C, H, W]` (rows are viewed as `image` first).
    Conv2d {
        layer: usize,
        padding: usize,
        image: ImageShape,
    },
    Relu,
    /// 2x2 max pooling, then the relu when `relu`: a relu before the pooling computed after it,
    /// on a quarter of the values (`relu(max(..)) = max(relu(..))`, and the gradients agree: a
    /// window whose largest value is not positive passes none either way).
    MaxPool2d {
        relu: bool,
    },
    /// Images to rows of `width`.
    Flatten {
        width: usize,
    },
    Dropout,
}

/// A network: input image, layers, and the classes its last layer scores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    architecture: Architecture,
    input: ImageShape,
    layers: Vec<Layer>,
}

impl Description {
    /// The widths of the CNN PyTorch's examples train: 32 and 64 channels, 128 hidden.
    pub const CNN_WIDTHS: [usize; 3] = [32, 64, 128];

    /// `Linear, ReLU, (dropout,) … Linear`: `input → hidden[0] → … → classes`, dropout after
    /// each hidden activation, the `Sequential` indices 0, 2, 4, …
    pub fn mlp(input: ImageShape, hidden: &[usize], classes: usize) -> Result<Description> {
        let mut layers = Vec::new();
        for &outputs in hidden {
            layers.extend([Layer::Linear { outputs }, Layer::Relu, Layer::Dropout { module: false }]);
        }
        layers.push(Layer::Linear { outputs: classes });
        Description::new(Architecture::Mlp, input, layers)
    }

    /// The two-convolution network of PyTorch's examples with `widths` `[c1, c2, hidden]`:
    /// `Sequential(Conv2d(C, c1, 3, padding=1), ReLU, MaxPool2d(2), Conv2d(c1, c2, 3, padding=1),
    /// ReLU, MaxPool2d(2), Flatten, Linear(c2·H/4·W/4, hidden), ReLU, Dropout, Linear(hidden,
    /// classes))`, its parameters `0.*`, `3.*`, `7.*` and `10.*`.
    pub fn cnn(input: ImageShape, widths: [usize; 3], classes: usize) -> Result<Description> {
        let [c1, c2, hidden] = widths;
        let conv = |channels| Layer::Conv2d { channels, kernel: 3, padding: 1 };
        let layers = vec![
            conv(c1),
            Layer::Relu,
            Layer::MaxPool2d,
            conv(c2),
            Layer::Relu,
            Layer::MaxPool2d,
            Layer::Flatten,
            Layer::Linear { outputs: hidden },
            Layer::Relu,
            Layer::Dropout { module: true },
            Layer::Linear { outputs: classes },
        ];
        Description::new(Architecture::Cnn, input, layers)
    }

    /// A description whose layers fit together, with positive sizes. Private: loading rebuilds
    /// a network from its architecture's constructor, so each architecture has one.
    fn new(architecture: Architecture, input: ImageShape, layers: Vec<Layer>) -> Result<Description> {
        input.validate()?;
        let description = Description { architecture, input, layers };
        let zero_width = description.sizes().contains(&0);
        if zero_width || !matches!(description.layers.last(), Some(Layer::Linear { .. })) {
            return Err(Error::InvalidArgument(format!(
                "layer sizes must be positive and the last layer linear, got {:?}",
                description.sizes()
            )));
        }
        description.checked_shapes()?;
        Ok(description)
    }

    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// The image each input row holds.
    pub fn input(&self) -> ImageShape {
        self.input
    }

    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The shape entering each layer, then the output's.
    pub fn shapes(&self) -> Vec<Shape> {
        // `new` checked them.
        self.checked_shapes().unwrap_or_default()
    }

    fn checked_shapes(&self) -> Result<Vec<Shape>> {
        let mut shapes = vec![Shape::Flat(self.input.pixels())];
        for (i, layer) in self.layers.iter().enumerate() {
            let next = layer
                .output(shapes[i], i == 0, self.input)
                .map_err(|problem| Error::InvalidArgument(format!("layer {}: {problem}", self.torch_index(i))))?;
            shapes.push(next);
        }
        Ok(shapes)
    }

    /// The same layers with the widths of those with parameters (a linear layer's outputs, a
    /// convolution's channels) replaced by `widths`, in layer order; layers past `widths` keep theirs.
    pub fn with_widths(&self, widths: &[usize]) -> Result<Description> {
        let mut widths = widths.iter().copied();
        let layers = self.layers.iter().map(|layer| match *layer {
            Layer::Linear { outputs } => Layer::Linear { outputs: widths.next().unwrap_or(outputs) },
            Layer::Conv2d { channels, kernel, padding } => {
                Layer::Conv2d { channels: widths.next().unwrap_or(channels), kernel, padding }
            }
            other => other,
        });
        Description::new(self.architecture, self.input, layers.collect())
    }

    /// The shape `layer` reads.
    pub fn input_of(&self, layer: usize) -> Shape {
        self.shapes().get(layer).copied().unwrap_or(Shape::Flat(0))
    }

    /// Each layer with parameters and the shape of its weight in PyTorch's layout: `[out, in]`
    /// for a linear layer, `[out, in_channels, kernel, kernel]` for a convolution.
    pub fn weight_shapes(&self) -> Vec<(usize, Vec<usize>)> {
        let shapes = self.shapes();
        let weight_shape = |(i, layer): (usize, &Layer)| match *layer {
            Layer::Linear { outputs } => Some((i, vec![outputs, shapes[i].len()])),
            Layer::Conv2d { channels, kernel, .. } => {
                Some((i, vec![channels, self.image_at(&shapes, i).channels, kernel, kernel]))
            }
            _ => None,
        };
        self.layers.iter().enumerate().filter_map(weight_shape).collect()
    }

    /// The number of classes: the last layer's width.
    pub fn classes(&self) -> usize {
        self.sizes().last().copied().unwrap_or(0)
    }

    /// The sizes that define the network: the input's values, then the width of every layer with
    /// parameters, e.g. `[784, 512, 512, 10]` for an MLP, `[784, 32, 64, 128, 10]` for the CNN.
    pub fn sizes(&self) -> Vec<usize> {
        let widths = self.layers.iter().filter_map(|layer| match *layer {
            Layer::Linear { outputs } => Some(outputs),
            Layer::Conv2d { channels, .. } => Some(channels),
            _ => None,
        });
        std::iter::once(self.input.pixels()).chain(widths).collect()
    }

    /// The index of layer `layer` in the matching `torch.nn.Sequential` (a dropout applied in
    /// `forward` shares its predecessor's).
    pub fn torch_index(&self, layer: usize) -> usize {
        self.layers[..layer].iter().filter(|l| l.is_module()).count()
    }

    /// The PyTorch `state_dict` names of layer `layer`'s weight and bias, e.g. `3.weight`, `3.bias`.
    pub fn parameter_names(&self, layer: usize) -> [String; 2] {
        let index = self.torch_index(layer);
        [format!("{index}.weight"), format!("{index}.bias")]
    }

    /// The forward pass as steps, without dropout unless `training`.
    pub fn steps(&self, training: bool) -> Vec<Step> {
        let shapes = self.shapes();
        let next_is = |i: usize, layer: Layer| self.layers.get(i + 1) == Some(&layer);
        let mut steps = Vec::with_capacity(self.layers.len());
        let mut i = 0;
        while i < self.layers.len() {
            let (step, fused) = match self.layers[i] {
                Layer::Linear { .. } => {
                    (Step::Linear { layer: i, relu: next_is(i, Layer::Relu) }, next_is(i, Layer::Relu))
                }
                Layer::Conv2d { padding, .. } => {
                    (Step::Conv2d { layer: i, padding, image: self.image_at(&shapes, i) }, false)
                }
                Layer::Relu if next_is(i, Layer::MaxPool2d) => (Step::MaxPool2d { relu: true }, true),
                Layer::Relu => (Step::Relu, false),
                Layer::MaxPool2d => (Step::MaxPool2d { relu: false }, false),
                Layer::Flatten => (Step::Flatten { width: shapes.get(i + 1).map_or(0, Shape::len) }, false),
                Layer::Dropout { .. } => (Step::Dropout, false),
            };
            if training || step != Step::Dropout {
                steps.push(step);
            }
            i += 1 + usize::from(fused);
        }
        steps
    }

    /// The image layer `layer` reads (the input's when it reads the input rows).
    fn image_at(&self, shapes: &[Shape], layer: usize) -> ImageShape {
        match shapes.get(layer) {
            Some(Shape::Image(image)) => *image,
            _ => self.input,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RGB: ImageShape = ImageShape { channels: 3, height: 20, width: 18 };

    #[test]
    fn the_cnn_flattens_what_its_pools_leave_of_any_input() {
        let cnn = Description::cnn(RGB, [4, 6, 16], 3).unwrap();
        let flat = cnn.input_of(7);
        assert_eq!(flat, Shape::Flat(6 * 5 * 4), "20x18 pooled twice is 5x4");
        assert_eq!(cnn.sizes(), [3 * 20 * 18, 4, 6, 16, 3]);
        let names: Vec<_> = cnn.weight_shapes().iter().map(|(i, _)| cnn.parameter_names(*i)).collect();
        let shapes: Vec<_> = cnn.weight_shapes().into_iter().map(|(_, shape)| shape).collect();
        assert_eq!(shapes, [vec![4, 3, 3, 3], vec![6, 4, 3, 3], vec![16, 120], vec![3, 16]]);
        assert_eq!(
            names.concat(),
            ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias", "10.weight", "10.bias"]
        );
    }

    #[test]
    fn mlp_dropout_takes_no_index_and_fuses_with_nothing() {
        let mlp = Description::mlp(ImageShape::FASHION_MNIST, &[8, 6], 10).unwrap();
        assert_eq!([mlp.torch_index(3), mlp.torch_index(6)], [2, 4]);
        let linear = |layer| Step::Linear { layer, relu: true };
        assert_eq!(
            mlp.steps(true),
            [linear(0), Step::Dropout, linear(3), Step::Dropout, Step::Linear { layer: 6, relu: false }]
        );
        assert_eq!(mlp.steps(false).len(), 3);
    }

    #[test]
    fn impossible_networks_are_errors() {
        let tiny = ImageShape { channels: 1, height: 3, width: 3 };
        let error = Description::cnn(tiny, [4, 6, 16], 3).unwrap_err().to_string();
        assert!(error.contains("layer 5: 2x2 pooling needs images of at least 2x2"), "{error}");
        assert!(Description::mlp(RGB, &[0], 3).is_err());
        assert!(Description::cnn(RGB, [4, 6, 16], 0).is_err());
        let huge = ImageShape { channels: 3, height: usize::MAX / 2, width: 5 };
        assert!(Description::mlp(huge, &[4], 3).unwrap_err().to_string().contains("positive sizes whose product"));
        let tall = ImageShape { channels: 1, height: usize::MAX, width: 1 };
        assert!(Description::cnn(tall, [4, 6, 16], 3).is_err());
    }
}
