//! Serving a model over HTTP with MLflow's scoring protocol, so that a client moves between
//! `mlflow models serve` and `engine serve` by changing the URL: [`protocol`] reads MLflow's
//! request formats (with [`json`], a strict streaming reader), [`answer`] writes its answers,
//! [`batcher`] gathers concurrent requests into shared forward passes and swaps models between
//! them, [`model`] is the model behind it, [`images`] reads image bodies, [`page`] and [`card`] are
//! the page for trying the model in a browser, and [`http`] puts the routes on axum.

pub mod answer;
pub mod batcher;
pub mod card;
pub mod http;
pub mod images;
pub mod json;
pub mod model;
pub mod page;
pub mod protocol;

pub use batcher::{BatchConfig, BatchHandle, Batcher, PredictError, Prediction};
pub use card::{ModelCard, ReportSources};
pub use http::{HttpConfig, MODEL_RUN_HEADER, MODEL_VERSION_HEADER};
pub use model::{ModelInfo, ModelSource, ServedModel};
pub use protocol::{Images, InputError};
