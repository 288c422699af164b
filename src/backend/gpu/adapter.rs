//! Which adapter a context opens: what wgpu reports about each one, and the choice among them
//! (a hardware GPU before a software one, unless [`ADAPTER_VARIABLE`] names another).

use super::GpuError;

/// What wgpu reports about one adapter: enough for `engine devices` and for run metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterSummary {
    /// The adapter's name, e.g. `NVIDIA H200` or `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// `Vulkan`, `Metal`, `Dx12`, `Gl`...
    pub backend: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `Cpu` (lavapipe, WARP)...
    pub device_type: String,
    /// The driver's name and version, where the backend reports them (may be empty).
    pub driver: String,
    pub driver_info: String,
}

impl AdapterSummary {
    pub(super) fn from_info(info: &wgpu::AdapterInfo) -> Self {
        Self {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
        }
    }

    /// Whether this adapter is a software rasteriser on the CPU (lavapipe, WARP, SwiftShader).
    pub fn is_cpu(&self) -> bool {
        self.device_type == "Cpu"
    }
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {}", self.name, self.backend, self.device_type)?;
        if !self.driver.is_empty() {
            write!(f, ", {}", self.driver)?;
            if !self.driver_info.is_empty() {
                write!(f, " {}", self.driver_info)?;
            }
        }
        write!(f, ")")
    }
}

/// Vulkan, Metal and DX12 (`WGPU_BACKEND` overrides): compute needs no GL, whose probing only
/// prints warnings on headless machines.
pub(super) fn new_instance() -> wgpu::Instance {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
    descriptor.backends = wgpu::Backends::PRIMARY;
    wgpu::Instance::new(descriptor.with_env())
}

/// Every adapter wgpu can see on this machine, on every backend it was built with, in the order
/// whose indices [`ADAPTER_VARIABLE`] takes.
pub fn adapters() -> Vec<AdapterSummary> {
    enumerate(&new_instance()).iter().map(|a| AdapterSummary::from_info(&a.get_info())).collect()
}

pub(super) fn enumerate(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
}

/// The variable that picks the adapter [`GpuContext::new`](super::GpuContext::new) opens: an index of [`adapters`] or a
/// case-insensitive part of its name. wgpu's own `WGPU_ADAPTER_NAME` (a part of the name) is
/// read when it is unset.
pub const ADAPTER_VARIABLE: &str = "ENGINE_GPU_ADAPTER";

/// The index in `adapters` of the one [`GpuContext::new`](super::GpuContext::new) opens: the one [`ADAPTER_VARIABLE`]
/// or `WGPU_ADAPTER_NAME` names, else the first discrete GPU, else the first integrated one,
/// and so on to software adapters last. Fails when there is none, or none of that name.
pub fn choose_adapter(adapters: &[AdapterSummary]) -> Result<usize, GpuError> {
    let wanted = [ADAPTER_VARIABLE, "WGPU_ADAPTER_NAME"]
        .into_iter()
        .find_map(|variable| Some((variable, std::env::var(variable).ok().filter(|v| !v.trim().is_empty())?)));
    pick_adapter(adapters, wanted.as_ref().map(|(variable, wanted)| (*variable, wanted.trim())))
}

/// [`choose_adapter`] given the variable and its value, if any.
fn pick_adapter(adapters: &[AdapterSummary], wanted: Option<(&'static str, &str)>) -> Result<usize, GpuError> {
    if adapters.is_empty() {
        return Err(GpuError::NoAdapter);
    }
    let Some((variable, wanted)) = wanted else {
        let rank = |a: &AdapterSummary| match a.device_type.as_str() {
            "DiscreteGpu" => 0,
            "IntegratedGpu" => 1,
            "VirtualGpu" => 2,
            "Cpu" => 4,
            _ => 3,
        };
        return Ok((0..adapters.len()).min_by_key(|&i| rank(&adapters[i])).unwrap_or(0));
    };
    let by_index = (variable == ADAPTER_VARIABLE).then(|| wanted.parse::<usize>().ok()).flatten();
    let found = match by_index {
        Some(i) => (i < adapters.len()).then_some(i),
        None => adapters.iter().position(|a| a.name.to_lowercase().contains(&wanted.to_lowercase())),
    };
    found.ok_or_else(|| GpuError::NoSuchAdapter {
        variable,
        wanted: wanted.to_string(),
        available: adapters.iter().enumerate().map(|(i, a)| format!("{i}: {a}")).collect::<Vec<_>>().join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter(name: &str, device_type: &str) -> AdapterSummary {
        let (backend, driver, driver_info) = ("Vulkan".into(), String::new(), String::new());
        AdapterSummary { name: name.into(), backend, device_type: device_type.into(), driver, driver_info }
    }

    #[test]
    fn a_hardware_gpu_is_chosen_before_a_software_one_unless_named() {
        let found = [adapter("llvmpipe (LLVM 15)", "Cpu"), adapter("NVIDIA H200", "DiscreteGpu")];
        assert_eq!(pick_adapter(&found, None).unwrap(), 1);
        assert_eq!(pick_adapter(&found[..1], None).unwrap(), 0);
        assert_eq!(pick_adapter(&found, Some((ADAPTER_VARIABLE, "0"))).unwrap(), 0);
        assert_eq!(pick_adapter(&found, Some((ADAPTER_VARIABLE, "LLVMpipe"))).unwrap(), 0);
        assert_eq!(pick_adapter(&found, Some(("WGPU_ADAPTER_NAME", "h200"))).unwrap(), 1);
        assert!(matches!(pick_adapter(&[], None), Err(GpuError::NoAdapter)));
    }

    #[test]
    fn a_name_or_index_that_matches_nothing_lists_the_adapters() {
        let found = [adapter("llvmpipe (LLVM 15)", "Cpu")];
        for wanted in ["1", "radeon"] {
            let message = pick_adapter(&found, Some((ADAPTER_VARIABLE, wanted))).unwrap_err().to_string();
            assert!(message.starts_with(&format!("ENGINE_GPU_ADAPTER={wanted} names no GPU adapter")), "{message}");
            assert!(message.contains("0: llvmpipe (LLVM 15) (Vulkan, Cpu)"), "{message}");
        }
    }
}
