//! What a model costs beyond its accuracy: inference latency and the process's peak memory.
//!
//! Comparing runs only by accuracy favours ever bigger models; these numbers (logged with every
//! run next to `train_seconds` and `parameter_count`) let a comparison prefer the cheaper model
//! when accuracy is comparable.

use std::time::Instant;

use crate::data::{Dataset, InputContract, Normalization};
use crate::nn::Network;
use crate::tensor::Device;

/// Mean milliseconds of one forward pass (no gradients) over `data` in batches of
/// `batch_size`, timed over the whole set (the last batch may be smaller), on the loop
/// [`crate::train::infer_batches`] that evaluation runs. Gathering and normalising the pixels
/// is included, as it is part of serving a batch. `inputs` are the examples' contract and the
/// model's normalisation.
pub fn inference_ms_per_batch(
    model: &Network,
    data: &Dataset,
    inputs: (&InputContract, Normalization),
    batch_size: usize,
    device: &Device,
) -> Result<f64, crate::Error> {
    let indices: Vec<usize> = (0..data.len()).collect();
    let started = Instant::now();
    let mut batches = 0usize;
    crate::train::infer_batches(model, device, data, &indices, inputs, batch_size, |_, _, logits| {
        std::hint::black_box(logits.argmax()?);
        batches += 1;
        Ok(())
    })?;
    Ok(started.elapsed().as_secs_f64() * 1000.0 / batches.max(1) as f64)
}

/// The peak resident set size of this process in MiB (`VmHWM` of `/proc/self/status`), where
/// the platform has it.
pub fn peak_rss_mb() -> Option<f64> {
    std::fs::read_to_string("/proc/self/status").ok().as_deref().and_then(parse_vm_hwm_mb)
}

/// `VmHWM:   123456 kB` in a `/proc/<pid>/status` text, in MiB.
pub fn parse_vm_hwm_mb(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut parts = line["VmHWM:".len()..].split_whitespace();
    let value: f64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value / 1024.0),
        _ => None,
    }
}

/// Resets the peak RSS to the current RSS (Linux: `5` into `/proc/self/clear_refs`), so that
/// each run of a sweep reports its own peak rather than the sweep's. Best effort: false where
/// it is not possible, and the next peak then includes earlier runs.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::IMAGE_PIXELS;

    #[test]
    fn parses_vm_hwm() {
        let status = "Name:\tengine\nVmPeak:\t  900000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_vm_hwm_mb(status), Some(200.0));
        assert_eq!(parse_vm_hwm_mb("VmRSS: 1 kB\n"), None);
        assert_eq!(parse_vm_hwm_mb("VmHWM: x kB\n"), None);
        assert_eq!(parse_vm_hwm_mb("VmHWM: 10 MB\n"), None);
    }

    #[test]
    fn peak_rss_is_measurable_on_linux() {
        if cfg!(target_os = "linux") {
            let mb = peak_rss_mb().expect("VmHWM on Linux");
            assert!(mb > 1.0, "{mb}");
        }
    }

    #[test]
    fn times_a_forward_pass() {
        let mut rng = crate::rng::Rng::new(0);
        let mlp = crate::nn::Description::mlp(crate::nn::ImageShape::FASHION_MNIST, &[16], 10).unwrap();
        let model = Network::new(mlp, 0.0, &mut rng, &Device::Cpu).unwrap();
        let data = Dataset { pixels: vec![7; 130 * IMAGE_PIXELS], labels: vec![1; 130] };
        let ms = inference_ms_per_batch(
            &model,
            &data,
            (&InputContract::fashion_mnist(), Normalization::Unit),
            64,
            &Device::Cpu,
        )
        .unwrap();
        assert!(ms > 0.0 && ms.is_finite(), "{ms}");
    }
}
