//! Backend families and device names (`cpu`, `wgpu`, `wgpu:1`, `cuda:0`).

use std::fmt;
use std::str::FromStr;

use crate::BackendError;

/// A backend family, each behind its own cargo feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum BackendKind {
    /// burn's flex CPU backend (feature `cpu`).
    Cpu,
    /// burn's WGPU backend: Vulkan on Linux and Windows, Metal on macOS (feature `wgpu`).
    Wgpu,
    /// burn's CUDA backend (feature `cuda`).
    Cuda,
}

impl BackendKind {
    /// Every family, in the order [`crate::BackendChoice::auto`] prefers them (fastest first).
    pub const ALL: [BackendKind; 3] = [BackendKind::Cuda, BackendKind::Wgpu, BackendKind::Cpu];

    /// The families compiled into this build.
    pub fn compiled() -> Vec<BackendKind> {
        Self::ALL.into_iter().filter(|k| k.is_compiled()).collect()
    }

    /// Whether this family's cargo feature is enabled in this build.
    pub const fn is_compiled(self) -> bool {
        match self {
            BackendKind::Cpu => cfg!(feature = "cpu"),
            BackendKind::Wgpu => cfg!(feature = "wgpu"),
            BackendKind::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The cargo feature that compiles this family in (same name on `sonic` and `sonic-backends`).
    pub const fn feature(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::Wgpu => "wgpu",
            BackendKind::Cuda => "cuda",
        }
    }

    /// The first device of this family (`cpu`, `wgpu` (default adapter), `cuda:0`).
    pub const fn default_device(self) -> Device {
        match self {
            BackendKind::Cpu => Device::Cpu,
            BackendKind::Wgpu => Device::Wgpu(None),
            BackendKind::Cuda => Device::Cuda(0),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.feature())
    }
}

/// A device to run on, by family and index, as written on a command line or in `SONIC_DEVICE`.
///
/// | text | device |
/// |---|---|
/// | `cpu` | the CPU (all cores) |
/// | `wgpu` | WGPU's default adapter (a high-performance GPU if there is one) |
/// | `wgpu:N` | the N-th adapter of [`crate::devices`] (0-based), e.g. a second GPU or lavapipe |
/// | `cuda`, `cuda:N` | the N-th CUDA device (0-based; `cuda` is `cuda:0`) |
///
/// Parsing only checks the syntax; [`crate::BackendChoice::new`] checks that the family is
/// compiled in and the device present.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Device {
    /// The CPU.
    Cpu,
    /// A WGPU adapter: `None` is the default adapter, `Some(n)` the n-th enumerated one.
    Wgpu(Option<usize>),
    /// The CUDA device with this ordinal.
    Cuda(usize),
}

impl Device {
    /// The family of this device.
    pub const fn kind(&self) -> BackendKind {
        match self {
            Device::Cpu => BackendKind::Cpu,
            Device::Wgpu(_) => BackendKind::Wgpu,
            Device::Cuda(_) => BackendKind::Cuda,
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Wgpu(None) => f.write_str("wgpu"),
            Device::Wgpu(Some(index)) => write!(f, "wgpu:{index}"),
            Device::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

impl FromStr for Device {
    type Err = BackendError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || BackendError::InvalidDevice {
            input: text.to_string(),
        };
        let lower = text.trim().to_ascii_lowercase();
        let (family, index) = match lower.split_once(':') {
            Some((family, index)) => (family, Some(index.parse::<usize>().map_err(|_| invalid())?)),
            None => (lower.as_str(), None),
        };
        match (family, index) {
            ("cpu", None | Some(0)) => Ok(Device::Cpu),
            ("wgpu", index) => Ok(Device::Wgpu(index)),
            ("cuda", index) => Ok(Device::Cuda(index.unwrap_or(0))),
            _ => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for (text, device, printed) in [
            ("cpu", Device::Cpu, "cpu"),
            ("CPU:0", Device::Cpu, "cpu"),
            ("wgpu", Device::Wgpu(None), "wgpu"),
            ("wgpu:1", Device::Wgpu(Some(1)), "wgpu:1"),
            ("cuda", Device::Cuda(0), "cuda:0"),
            (" cuda:3 ", Device::Cuda(3), "cuda:3"),
        ] {
            let parsed: Device = text.parse().unwrap();
            assert_eq!(parsed, device, "{text}");
            assert_eq!(parsed.to_string(), printed);
            assert_eq!(printed.parse::<Device>().unwrap(), device);
        }
    }

    #[test]
    fn rejects_unknown_names_and_bad_indices() {
        for text in ["", "gpu", "cuda:x", "cuda:-1", "cpu:1", "wgpu:", "metal"] {
            let err = text.parse::<Device>().unwrap_err();
            assert!(
                matches!(&err, BackendError::InvalidDevice { input } if input == text),
                "{text}: {err}"
            );
            assert!(err.to_string().contains("cuda:N"), "{err}");
        }
    }

    #[test]
    fn compiled_kinds_follow_features() {
        assert_eq!(BackendKind::Cpu.is_compiled(), cfg!(feature = "cpu"));
        assert_eq!(BackendKind::Cuda.is_compiled(), cfg!(feature = "cuda"));
        assert!(
            BackendKind::compiled()
                .iter()
                .all(|kind| kind.is_compiled())
        );
        assert_eq!(BackendKind::Cuda.default_device(), Device::Cuda(0));
    }
}
