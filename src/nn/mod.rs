//! Networks with PyTorch's conventions. A [`Description`] says what a network is (its input
//! image, its layers as the `torch.nn` modules they match, its classes); a [`Network`] is one
//! with weights, trained and evaluated here, and everything else (the saved weights' names, the
//! ONNX graph, the server's packed layers) is derived from the same description.

mod description;
mod network;

pub use description::{Architecture, Description, ImageShape, Layer, Shape, Step};
pub use network::{Network, Weights};
