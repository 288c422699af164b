//! System metrics under MLflow's names (`system/cpu_utilization_percentage`, ...), sampled by a
//! background thread from `/proc` and `statvfs` every interval, so the MLflow UI's "System
//! metrics" tab shows an engine run as it shows a Python one. Each sample is one step (0, 1, 2,
//! ...), as MLflow's own sampler logs them. GPU figures (`system/gpu_*`) are not sampled: wgpu
//! exposes no utilisation, memory or power counters for an adapter.
//!
//! The same `/proc/meminfo` answers how much memory the system can still give
//! ([`available_memory_bytes`]), which the command line weighs a training config against.
//!
//! Only Linux has these sources; elsewhere the sampler logs nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::tracking::Metric;

/// MLflow's default sampling interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Whether to sample, and how often: `MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING` (`false`/`0` turns
/// it off) and `MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL` (seconds), unless a flag decided.
pub fn settings_from_env(flag: Option<bool>) -> Option<Duration> {
    let get = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_ascii_lowercase());
    let enabled =
        flag.unwrap_or_else(|| !matches!(get("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING").as_deref(), Some("false" | "0")));
    let interval = get("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(DEFAULT_INTERVAL, Duration::from_secs_f64);
    enabled.then_some(interval)
}

/// A running sampler; its points wait in a buffer until [`take`](Self::take)n.
pub struct Sampler {
    points: Arc<Mutex<Vec<Metric>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Samples now and then every `interval` until stopped.
    pub fn start(interval: Duration) -> Sampler {
        let points = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (buffer, stopped) = (points.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("system-metrics".into())
            .spawn(move || {
                let mut probe = Probe::new();
                let mut step = 0;
                // Sleep in short slices so that stopping never waits a whole interval.
                let slice = Duration::from_millis(100).min(interval);
                loop {
                    let sample = probe.sample(step);
                    if let Ok(mut points) = buffer.lock() {
                        points.extend(sample);
                    }
                    step += 1;
                    let mut slept = Duration::ZERO;
                    while slept < interval {
                        if stopped.load(Ordering::SeqCst) {
                            return;
                        }
                        std::thread::sleep(slice);
                        slept += slice;
                    }
                }
            })
            .ok();
        Sampler { points, stop, thread }
    }

    /// The points sampled since the last call (none while the sampler holds the buffer).
    pub fn take(&self) -> Vec<Metric> {
        match self.points.try_lock() {
            Ok(mut points) => std::mem::take(&mut *points),
            Err(_) => Vec::new(),
        }
    }

    /// Stops the thread and returns the points not yet taken.
    pub fn finish(mut self) -> Vec<Metric> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.points.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Reads the counters; keeps what a rate or a difference needs from the previous sample.
struct Probe {
    cpu: Option<CpuTimes>,
    network_start: Option<(u64, u64)>,
}

#[derive(Clone, Copy)]
struct CpuTimes {
    busy: u64,
    total: u64,
}

impl Probe {
    fn new() -> Probe {
        Probe { cpu: cpu_times(), network_start: network_bytes() }
    }

    fn sample(&mut self, step: i64) -> Vec<Metric> {
        let mut out = Vec::new();
        let mut push = |name: &str, value: f64| out.push(Metric::new(format!("system/{name}"), value, step));
        let now = cpu_times();
        if let (Some(before), Some(now)) = (self.cpu, now)
            && now.total > before.total
        {
            let busy = now.busy.saturating_sub(before.busy) as f64;
            push("cpu_utilization_percentage", 100.0 * busy / (now.total - before.total) as f64);
        }
        self.cpu = now.or(self.cpu);
        if let Some((total, available)) = memory_bytes() {
            let used = total.saturating_sub(available) as f64;
            push("system_memory_usage_megabytes", used / 1e6);
            push("system_memory_usage_percentage", 100.0 * used / total.max(1) as f64);
        }
        if let Some((used, free)) = disk_bytes("/") {
            push("disk_usage_percentage", 100.0 * used as f64 / (used + free).max(1) as f64);
            push("disk_usage_megabytes", used as f64 / 1e6);
            push("disk_available_megabytes", free as f64 / 1e6);
        }
        if let (Some((rx0, tx0)), Some((rx, tx))) = (self.network_start, network_bytes()) {
            push("network_receive_megabytes", rx.saturating_sub(rx0) as f64 / 1e6);
            push("network_transmit_megabytes", tx.saturating_sub(tx0) as f64 / 1e6);
        }
        out
    }
}

/// The first line of `/proc/stat`: busy and total jiffies over all CPUs.
fn cpu_times() -> Option<CpuTimes> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_times(stat.lines().next()?)
}

fn parse_cpu_times(line: &str) -> Option<CpuTimes> {
    let mut fields = line.split_whitespace();
    (fields.next()? == "cpu").then_some(())?;
    let values: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: idle and iowait are not busy.
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4).unwrap_or(&0);
    Some(CpuTimes { busy: total.saturating_sub(idle), total })
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in bytes.
fn memory_bytes() -> Option<(u64, u64)> {
    meminfo_bytes(&["MemTotal:", "MemAvailable:"]).map(|[total, available]| (total, available))
}

/// The memory the system can still give this process (`MemAvailable` of `/proc/meminfo`), in
/// bytes, where the platform has it.
pub fn available_memory_bytes() -> Option<u64> {
    meminfo_bytes(&["MemAvailable:"]).map(|[available]| available)
}

/// Fields of `/proc/meminfo` (`"MemTotal:"`, ...), in bytes.
fn meminfo_bytes<const N: usize>(names: &[&str; N]) -> Option<[u64; N]> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].split_whitespace().next()?.parse::<u64>().ok()?.checked_mul(1024)
    };
    let mut out = [0; N];
    for (value, name) in out.iter_mut().zip(names) {
        *value = field(name)?;
    }
    Some(out)
}

/// Bytes received and sent over all interfaces since boot (`/proc/net/dev`).
fn network_bytes() -> Option<(u64, u64)> {
    let dev = std::fs::read_to_string("/proc/net/dev").ok()?;
    parse_network_bytes(&dev)
}

fn parse_network_bytes(dev: &str) -> Option<(u64, u64)> {
    let mut sums = (0u64, 0u64);
    for line in dev.lines().skip(2) {
        let (_, counters) = line.split_once(':')?;
        let values: Vec<u64> = counters.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        sums.0 = sums.0.saturating_add(*values.first()?);
        sums.1 = sums.1.saturating_add(*values.get(8)?);
    }
    Some(sums)
}

/// Used and available bytes of the filesystem holding `path`, as `df` counts them.
#[cfg(unix)]
fn disk_bytes(path: &str) -> Option<(u64, u64)> {
    let path = std::ffi::CString::new(path).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a valid C string and `stat` is written by statvfs before it is read.
    let stat = unsafe {
        if libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return None;
        }
        stat.assume_init()
    };
    let block = stat.f_frsize as u64;
    let used = (stat.f_blocks as u64).saturating_sub(stat.f_bfree as u64).saturating_mul(block);
    Some((used, (stat.f_bavail as u64).saturating_mul(block)))
}

#[cfg(not(unix))]
fn disk_bytes(_path: &str) -> Option<(u64, u64)> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_counters() {
        let cpu = parse_cpu_times("cpu  100 0 50 800 50 0 0 0 0 0").unwrap();
        assert_eq!((cpu.busy, cpu.total), (150, 1000));
        assert!(parse_cpu_times("intr 1 2 3").is_none());
        let dev = "Inter-|   Receive\n face |bytes\n    lo: 100 1 0 0 0 0 0 0 200 2 0 0 0 0 0 0\n  eth0: 1000 5 0 0 0 0 0 0 3000 6 0 0 0 0 0 0\n";
        assert_eq!(parse_network_bytes(dev), Some((1100, 3200)));
    }

    #[test]
    fn samples_carry_mlflow_names_and_steps() {
        let sampler = Sampler::start(Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(180));
        let points = sampler.finish();
        let keys: std::collections::BTreeSet<&str> = points.iter().map(|m| m.key.as_str()).collect();
        for key in [
            "system/system_memory_usage_megabytes",
            "system/disk_usage_percentage",
            "system/cpu_utilization_percentage",
        ] {
            assert!(keys.contains(key), "{key} missing from {keys:?}");
        }
        assert!(points.iter().any(|m| m.step >= 2), "one step per sample");
        assert!(points.iter().all(|m| m.value.is_finite() && m.value >= 0.0));
    }

    #[test]
    fn environment_decides_unless_a_flag_does() {
        assert_eq!(settings_from_env(Some(false)), None);
        assert!(settings_from_env(Some(true)).is_some());
    }
}
