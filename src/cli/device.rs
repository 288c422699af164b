//! `--device cpu|gpu|auto` and `engine devices`. `gpu` never falls back silently: without an
//! adapter it is an error saying how to get one. `auto` takes a hardware GPU, else the CPU,
//! and says which.

use std::process::ExitCode;

use engine::Device;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    Cpu,
    /// Any GPU wgpu reaches (Vulkan, Metal, DX12); `cuda` is accepted for it.
    #[value(alias = "cuda")]
    Gpu,
    Auto,
}

/// Opens the chosen device; returns it with a description for logs and run parameters.
pub fn open_device(choice: DeviceChoice) -> anyhow::Result<(Device, String)> {
    let cpu = || (Device::Cpu, format!("cpu ({} threads)", rayon::current_num_threads()));
    match choice {
        DeviceChoice::Cpu => Ok(cpu()),
        DeviceChoice::Gpu => open_gpu().map(|(device, name, _)| (device, name)),
        DeviceChoice::Auto => match open_gpu() {
            Ok((device, name, false)) => {
                eprintln!("device: {name}");
                Ok((device, name))
            }
            Ok((_, name, true)) => {
                eprintln!("device: the only GPU adapter is a software one ({name}); using the CPU");
                Ok(cpu())
            }
            Err(e) => {
                eprintln!("device: no GPU ({e}); using the CPU");
                Ok(cpu())
            }
        },
    }
}

/// The GPU, its description, and whether it is a software adapter (lavapipe, WARP).
#[cfg(feature = "gpu")]
fn open_gpu() -> anyhow::Result<(Device, String, bool)> {
    let ctx = engine::backend::gpu::GpuContext::new()?;
    let (name, software) = (format!("gpu: {}", ctx.adapter()), ctx.adapter().is_cpu());
    Ok((Device::Gpu(ctx), name, software))
}

#[cfg(not(feature = "gpu"))]
fn open_gpu() -> anyhow::Result<(Device, String, bool)> {
    anyhow::bail!(
        "--device gpu: this build has no GPU backend (it was built without the `gpu` feature); use --device cpu"
    )
}

/// `engine devices`: the CPU and every adapter wgpu sees.
pub fn list() -> anyhow::Result<ExitCode> {
    println!("cpu\t{} threads (rayon)", rayon::current_num_threads());
    #[cfg(feature = "gpu")]
    {
        let adapters = engine::backend::gpu::adapters();
        if adapters.is_empty() {
            println!(
                "gpu\tnone: install a Vulkan, Metal or DX12 driver (on Linux without a GPU: apt-get install mesa-vulkan-drivers)"
            );
        }
        for adapter in adapters {
            println!("gpu\t{adapter}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
