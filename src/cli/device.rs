//! `--device cpu|gpu|auto` and `engine devices`. `gpu` never falls back silently: without an
//! adapter it is an error saying how to get one, and a software adapter (lavapipe, llvmpipe,
//! WARP: a GPU driver running on the CPU, slower than the CPU backend) is refused unless
//! [`ALLOW_SOFTWARE_VARIABLE`] allows it, so a run meant for a GPU never measures a CPU by
//! mistake. `auto` takes a hardware GPU, else the CPU, and says which. `ENGINE_GPU_ADAPTER`
//! picks among several adapters, by the index `engine devices` shows or a part of the name.
//!
//! The refusal lives here, not in the library: `GpuContext::new` still opens lavapipe, which is
//! what the kernel tests run on.

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

/// The variable that lets `--device gpu` run on a software adapter: `1` or `true`.
pub const ALLOW_SOFTWARE_VARIABLE: &str = "ENGINE_ALLOW_SOFTWARE_GPU";

fn software_allowed() -> bool {
    std::env::var(ALLOW_SOFTWARE_VARIABLE).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Opens the chosen device; returns it with a description for logs and run parameters.
pub fn open_device(choice: DeviceChoice) -> anyhow::Result<(Device, String)> {
    let cpu = || (Device::Cpu, format!("cpu ({} threads)", rayon::current_num_threads()));
    match choice {
        DeviceChoice::Cpu => Ok(cpu()),
        DeviceChoice::Gpu => match open_gpu()? {
            (_, name, true) if !software_allowed() => anyhow::bail!(
                "--device gpu: the adapter {} is a software one that runs on the CPU, slower than \
                 --device cpu; set {ALLOW_SOFTWARE_VARIABLE}=1 to use it anyway, or pick another with \
                 ENGINE_GPU_ADAPTER (`engine devices` lists them)",
                name.trim_start_matches("gpu: ")
            ),
            (device, name, _) => Ok((device, name)),
        },
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

/// `engine devices`: the CPU and every adapter wgpu sees, with the index `ENGINE_GPU_ADAPTER`
/// takes; the one `--device gpu` opens is marked.
pub fn list() -> anyhow::Result<ExitCode> {
    println!("cpu\t{} threads (rayon)", rayon::current_num_threads());
    #[cfg(feature = "gpu")]
    {
        use engine::backend::gpu;
        let adapters = gpu::adapters();
        if adapters.is_empty() {
            println!(
                "gpu\tnone: install a Vulkan, Metal or DX12 driver (on Linux without a GPU: apt-get install mesa-vulkan-drivers)"
            );
        }
        let chosen = gpu::choose_adapter(&adapters);
        for (i, adapter) in adapters.iter().enumerate() {
            let mark = match &chosen {
                Ok(c) if *c == i && adapter.is_cpu() && !software_allowed() => {
                    format!("\t<- --device gpu with {ALLOW_SOFTWARE_VARIABLE}=1 (a software adapter)")
                }
                Ok(c) if *c == i => "\t<- --device gpu".to_string(),
                _ => String::new(),
            };
            println!("gpu {i}\t{adapter}{mark}");
        }
        if let (Err(why @ gpu::GpuError::NoSuchAdapter { .. }), false) = (&chosen, adapters.is_empty()) {
            println!("gpu\t{why}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
