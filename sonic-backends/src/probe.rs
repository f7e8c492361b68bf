//! Which devices are present, found without starting burn's runtimes (they panic when a
//! driver or adapter is missing; probing returns a reason instead).

use std::fmt;
use std::sync::OnceLock;

use crate::{BackendKind, Device};

/// A device present on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceInfo {
    /// How to ask for it.
    pub device: Device,
    /// What it is, e.g. `NVIDIA H100 80GB HBM3` or `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)`.
    pub name: String,
    /// Whether it is a CPU emulating a GPU (lavapipe, SwiftShader, WARP): correct but slow,
    /// so [`crate::BackendChoice::auto`] prefers the CPU backend to it.
    pub software: bool,
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.device, self.name)
    }
}

/// Every device of the compiled-in families present on this machine, CUDA first.
///
/// WGPU adapters are listed as `wgpu:N` in enumeration order, plus nothing for the default
/// adapter (`wgpu`), which is one of them. Probed once per process.
pub fn devices() -> Vec<DeviceInfo> {
    BackendKind::ALL
        .into_iter()
        .filter(|kind| kind.is_compiled())
        .flat_map(|kind| probe(kind).clone().unwrap_or_default())
        .collect()
}

/// The devices of one compiled-in family, or why there are none.
pub(crate) fn probe(kind: BackendKind) -> &'static Result<Vec<DeviceInfo>, String> {
    static CPU: OnceLock<Result<Vec<DeviceInfo>, String>> = OnceLock::new();
    static WGPU: OnceLock<Result<Vec<DeviceInfo>, String>> = OnceLock::new();
    static CUDA: OnceLock<Result<Vec<DeviceInfo>, String>> = OnceLock::new();
    match kind {
        BackendKind::Cpu => CPU.get_or_init(cpu),
        BackendKind::Wgpu => WGPU.get_or_init(wgpu),
        BackendKind::Cuda => CUDA.get_or_init(cuda),
    }
}

fn cpu() -> Result<Vec<DeviceInfo>, String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(vec![DeviceInfo {
        device: Device::Cpu,
        name: format!(
            "{} {}, {threads} threads",
            std::env::consts::ARCH,
            std::env::consts::OS
        ),
        software: false,
    }])
}

#[cfg(feature = "wgpu")]
fn wgpu() -> Result<Vec<DeviceInfo>, String> {
    let adapters = wgpu_support::adapters();
    if adapters.is_empty() {
        return Err(format!(
            "WGPU found no {:?} adapter (no GPU driver, or no Vulkan ICD such as mesa-vulkan-drivers)",
            wgpu_support::graphics_backend()
        ));
    }
    Ok(adapters
        .iter()
        .enumerate()
        .map(|(index, info)| DeviceInfo {
            device: Device::Wgpu(Some(index)),
            name: format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type),
            software: info.device_type == wgpu::DeviceType::Cpu,
        })
        .collect())
}

#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Result<Vec<DeviceInfo>, String> {
    Err("not compiled in".to_string())
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<Vec<DeviceInfo>, String> {
    use cudarc::driver::result;
    // SAFETY: only tries to dlopen the driver and NVRTC libraries, as burn's runtime does on
    // first use; nothing is called through them here.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err("the NVIDIA driver library (libcuda) is not installed".to_string());
    }
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(
            "NVRTC (libnvrtc, from the CUDA toolkit), which compiles the kernels at run time, is not installed"
                .to_string(),
        );
    }
    result::init().map_err(|e| format!("the CUDA driver does not start: {e:?}"))?;
    let count = result::device::get_count().map_err(|e| format!("cuDeviceGetCount: {e:?}"))?;
    if count <= 0 {
        return Err("the CUDA driver reports no device".to_string());
    }
    Ok((0..count)
        .map(|ordinal| DeviceInfo {
            device: Device::Cuda(ordinal as usize),
            name: result::device::get(ordinal)
                .and_then(result::device::get_name)
                .unwrap_or_else(|e| format!("unnamed ({e:?})")),
            software: false,
        })
        .collect())
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Vec<DeviceInfo>, String> {
    Err("not compiled in".to_string())
}

#[cfg(feature = "wgpu")]
pub(crate) mod wgpu_support {
    use burn::backend::wgpu::WgpuDevice;
    use burn::backend::wgpu::graphics::{AutoGraphicsApi, GraphicsApi};

    /// The graphics API burn's `Wgpu` backend uses: Vulkan, or Metal on macOS.
    pub fn graphics_backend() -> wgpu::Backend {
        AutoGraphicsApi::backend()
    }

    /// The adapters of that API, in the order burn's runtime enumerates them.
    pub fn adapters() -> Vec<wgpu::AdapterInfo> {
        let backend = graphics_backend();
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: backend.into(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        block_on(instance.enumerate_adapters(backend.into()))
            .iter()
            .map(wgpu::Adapter::get_info)
            .collect()
    }

    /// burn's name for the `index`-th adapter: burn counts adapters per type.
    pub fn burn_device(index: usize, adapters: &[wgpu::AdapterInfo]) -> Result<WgpuDevice, String> {
        let info = adapters
            .get(index)
            .ok_or_else(|| format!("there are {} WGPU adapter(s)", adapters.len()))?;
        let same_type_before = adapters[..index]
            .iter()
            .filter(|a| a.device_type == info.device_type)
            .count();
        match info.device_type {
            wgpu::DeviceType::DiscreteGpu => Ok(WgpuDevice::DiscreteGpu(same_type_before)),
            wgpu::DeviceType::IntegratedGpu => Ok(WgpuDevice::IntegratedGpu(same_type_before)),
            wgpu::DeviceType::VirtualGpu => Ok(WgpuDevice::VirtualGpu(same_type_before)),
            wgpu::DeviceType::Cpu if same_type_before == 0 => Ok(WgpuDevice::Cpu),
            other => Err(format!(
                "burn cannot address adapter {index} ({}, type {other:?}) by index; use `wgpu`",
                info.name
            )),
        }
    }

    /// Drives a future that is ready at once (native wgpu enumeration) without an executor.
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return output;
            }
            std::thread::yield_now();
        }
    }
}
