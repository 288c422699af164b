//! What tracking to a slow MLflow server costs a training run: the same `engine train` run with
//! the local store only, and with a real MLflow server behind a proxy that answers each request
//! only after a delay (1 s by default), alternating, a few rounds.
//!
//! `cargo bench --bench tracking -- [rounds] [delay_ms]` (needs `scripts/mlflow-venv.sh`)

#[path = "../tests/common/mlflow.rs"]
mod mlflow;
#[path = "../tests/common/proxy.rs"]
mod proxy;

use std::process::Command;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let rounds = args.first().copied().unwrap_or(3);
    let delay = Duration::from_millis(args.get(1).copied().unwrap_or(1000));
    let server = mlflow::MlflowServer::start().ok_or("no MLflow server: run scripts/mlflow-venv.sh")?;
    let port = server.uri().rsplit(':').next().and_then(|p| p.parse().ok()).ok_or("no port")?;
    let slow = proxy::FaultProxy::start_slow(Some(port), delay, |_| None);
    let dir = mlflow::scratch_dir("engine-bench-tracking");
    println!(
        "each request answered after {} ms; train_seconds is the training loop, wall the whole command",
        delay.as_millis()
    );
    println!("{:<10} {:>14} {:>10}", "tracking", "train_seconds", "wall_s");
    for round in 0..rounds {
        for (label, uri) in [("none", None), ("slow", Some(slow.uri()))] {
            let started = Instant::now();
            let mut command = Command::new(env!("CARGO_BIN_EXE_engine"));
            command
                .args(["train", "--device", "cpu", "--epochs", "3", "--train-limit", "20000", "--json"])
                .arg("--output-dir")
                .arg(dir.join(format!("out-{round}-{label}")))
                .env("ENGINE_LOCAL_STORE", dir.join("store"))
                .env("ENGINE_TRACKING_DRAIN_SECONDS", "600");
            match &uri {
                Some(uri) => command.env("MLFLOW_TRACKING_URI", uri),
                None => command.env_remove("MLFLOW_TRACKING_URI"),
            };
            let output = command.output()?;
            if !output.status.success() {
                return Err(String::from_utf8_lossy(&output.stderr).into_owned().into());
            }
            let stdout = String::from_utf8_lossy(&output.stdout);
            let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())?;
            let train_seconds = summary["train_seconds"].as_f64().unwrap_or(f64::NAN);
            println!("{label:<10} {train_seconds:>14.2} {:>10.1}", started.elapsed().as_secs_f64());
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
