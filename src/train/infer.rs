//! The inference loop: a model run without dropout or gradients over a dataset's examples in
//! batches, the pixels gathered and normalised on the host as the examples' contract says; the
//! evaluation (loss, accuracy, every prediction) is one use of it, timing inference another.

use crate::backend::ChannelAffine;
use crate::data::{self, CLASSES, Dataset, InputContract, Normalization};
use crate::nn::Network;
use crate::tensor::{Device, Tensor};

/// Predictions of a model on a set of examples.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    pub accuracy: f64,
    pub labels: Vec<u8>,
    pub predictions: Vec<u8>,
    /// The model's probability for its own prediction, per example.
    pub prob_of_pred: Vec<f32>,
}

/// Runs `model` (without dropout or gradients) over `data[indices]` in batches, the pixels
/// normalised by `inputs` (the examples' contract and the model's normalisation).
pub fn evaluate(
    model: &Network,
    data: &Dataset,
    indices: &[usize],
    inputs: (&InputContract, Normalization),
    batch_size: usize,
    device: &Device,
) -> Result<Evaluation, crate::Error> {
    let mut eval =
        Evaluation { loss: 0.0, accuracy: 0.0, labels: Vec::new(), predictions: Vec::new(), prob_of_pred: Vec::new() };
    let classes = model.sizes().last().copied().unwrap_or(CLASSES);
    infer_batches(model, device, data, indices, inputs, batch_size, |batch, labels, logits| {
        let y = Tensor::from_vec(labels.to_vec(), &[batch.len()], device)?;
        eval.loss += logits.cross_entropy(&y)?.to_scalar()? as f64 * batch.len() as f64;
        let probs = logits.softmax()?.to_vec()?;
        for (row, predicted) in logits.argmax()?.into_iter().enumerate() {
            eval.predictions.push(predicted as u8);
            eval.prob_of_pred.push(probs[row * classes + predicted]);
        }
        eval.labels.extend(batch.iter().map(|&i| data.labels[i]));
        Ok(())
    })?;
    let n = indices.len().max(1) as f64;
    eval.loss /= n;
    eval.accuracy = eval.labels.iter().zip(&eval.predictions).filter(|(a, b)| a == b).count() as f64 / n;
    Ok(eval)
}

/// The one inference loop: runs `model` (without dropout or gradients) over `data[indices]` in
/// batches of `batch_size` (at least 1), gathering and normalising each batch's pixels on the
/// host, and hands `each` the batch's indices, its labels and its logits `[batch, classes]`.
/// `each` runs without gradients too. [`evaluate`] and [`crate::cost::inference_ms_per_batch`]
/// are both this loop.
pub fn infer_batches(
    model: &Network,
    device: &Device,
    data: &Dataset,
    indices: &[usize],
    (contract, norm): (&InputContract, Normalization),
    batch_size: usize,
    mut each: impl FnMut(&[usize], &[f32], Tensor) -> Result<(), crate::Error>,
) -> Result<(), crate::Error> {
    crate::no_grad(|| {
        let (mut inputs, mut labels) = (Vec::new(), Vec::new());
        let affine = ChannelAffine::new(&contract.affine(norm)).map_err(crate::Error::InvalidArgument)?;
        for batch in indices.chunks(batch_size.max(1)) {
            data::gather_batch(data, batch, &affine, &mut inputs, &mut labels);
            let x = Tensor::from_vec(std::mem::take(&mut inputs), &[batch.len(), contract.pixels()], device)?;
            each(batch, &labels, model.forward(&x)?)?;
        }
        Ok(())
    })
}
