//! A checked (device, precision) pair, and running generic code on it.

use std::fmt;

use burn::prelude::Backend;
use burn::tensor::{DType, Element};

use crate::probe;
use crate::{BackendError, BackendKind, Device, Precision};

/// Environment variable naming the device (`cpu`, `wgpu`, `wgpu:1`, `cuda:0`).
pub const DEVICE_ENV: &str = "SONIC_DEVICE";
/// Environment variable naming the precision (`f32`, `f16`, `bf16`).
pub const DTYPE_ENV: &str = "SONIC_DTYPE";

/// Code generic over the backend, run on the backend a [`BackendChoice`] picked at run time.
///
/// Rust closures cannot be generic, so this is the closure: put its captures in a struct and
/// its body in [`BackendFn::run`]. [`BackendChoice::run`] calls it once, monomorphised for
/// the chosen backend, so the code inside runs at full static speed.
pub trait BackendFn {
    /// What the code returns.
    type Output;

    /// Runs on `device` of backend `B`, whose tensors are created in `dtype` by default (load
    /// weights with `LoadOptions { dtype: Some(dtype) }`).
    fn run<B: Backend>(self, device: B::Device, dtype: DType) -> Self::Output;
}

/// A burn backend that a [`Device`] can name: [`crate::Cpu`], `Wgpu` and
/// `Cuda`, as compiled in. Sealed.
pub trait SelectableBackend: Backend + sealed::Sealed {
    /// The family of this backend.
    const KIND: BackendKind;

    /// burn's device for `device`, which must be of family [`Self::KIND`].
    fn burn_device(device: Device) -> Result<Self::Device, BackendError>;
}

mod sealed {
    pub trait Sealed {}
    #[cfg(feature = "cpu")]
    impl Sealed for crate::Cpu {}
    #[cfg(feature = "wgpu")]
    impl Sealed for crate::Wgpu {}
    #[cfg(feature = "cuda")]
    impl Sealed for crate::Cuda {}
}

#[cfg(feature = "cpu")]
impl SelectableBackend for crate::Cpu {
    const KIND: BackendKind = BackendKind::Cpu;

    fn burn_device(device: Device) -> Result<Self::Device, BackendError> {
        match device {
            Device::Cpu => Ok(Default::default()),
            other => Err(BackendError::WrongBackend {
                device: other,
                backend: Self::KIND,
            }),
        }
    }
}

#[cfg(feature = "wgpu")]
impl SelectableBackend for crate::Wgpu {
    const KIND: BackendKind = BackendKind::Wgpu;

    fn burn_device(device: Device) -> Result<Self::Device, BackendError> {
        match device {
            Device::Wgpu(None) => Ok(burn::backend::wgpu::WgpuDevice::DefaultDevice),
            Device::Wgpu(Some(index)) => {
                let adapters = crate::probe::wgpu_support::adapters();
                crate::probe::wgpu_support::burn_device(index, &adapters)
                    .map_err(|reason| not_present(device, reason))
            }
            other => Err(BackendError::WrongBackend {
                device: other,
                backend: Self::KIND,
            }),
        }
    }
}

#[cfg(feature = "cuda")]
impl SelectableBackend for crate::Cuda {
    const KIND: BackendKind = BackendKind::Cuda;

    fn burn_device(device: Device) -> Result<Self::Device, BackendError> {
        match device {
            Device::Cuda(index) => Ok(burn::backend::cuda::CudaDevice { index }),
            other => Err(BackendError::WrongBackend {
                device: other,
                backend: Self::KIND,
            }),
        }
    }
}

/// A device that is compiled in and present, and a precision it supports.
///
/// Build one with [`BackendChoice::auto`], [`BackendChoice::new`], [`BackendChoice::parse`]
/// or [`BackendChoice::from_env`]; every way checks, so holding one means it can run. Then
/// either run backend-generic code on it with [`BackendChoice::run`], or, in code already
/// written for one backend type, get that backend's device with
/// [`BackendChoice::burn_device`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendChoice {
    device: Device,
    precision: Precision,
}

impl BackendChoice {
    /// Checks that `device` is compiled in and present and supports `precision`.
    ///
    /// For a GPU this starts burn's runtime on it (to ask which dtypes it supports).
    pub fn new(device: Device, precision: Precision) -> Result<Self, BackendError> {
        let kind = device.kind();
        if !kind.is_compiled() {
            return Err(BackendError::NotCompiled {
                device,
                compiled: BackendKind::compiled(),
            });
        }
        let present = match probe::probe(kind) {
            Ok(found) => match device {
                Device::Wgpu(None) => !found.is_empty(),
                _ => found.iter().any(|info| info.device == device),
            },
            Err(reason) => return Err(not_present(device, reason.clone())),
        };
        if !present {
            return Err(not_present(
                device,
                format!("there is no {kind} device with that index"),
            ));
        }
        let supported = supported_precisions(device)?;
        if !supported.contains(&precision) {
            return Err(BackendError::UnsupportedPrecision {
                device,
                precision,
                supported,
            });
        }
        Ok(Self { device, precision })
    }

    /// The fastest device present, in f32: CUDA, then a hardware WGPU adapter, then the CPU
    /// (then a software WGPU adapter, in a build without `cpu`).
    pub fn auto() -> Result<Self, BackendError> {
        let hardware = |kind: BackendKind| {
            kind.is_compiled()
                && probe::probe(kind)
                    .as_ref()
                    .is_ok_and(|found| found.iter().any(|info| !info.software))
        };
        let device = if hardware(BackendKind::Cuda) {
            Device::Cuda(0)
        } else if hardware(BackendKind::Wgpu) {
            Device::Wgpu(None)
        } else if BackendKind::Cpu.is_compiled() {
            Device::Cpu
        } else if BackendKind::Wgpu.is_compiled() && probe::probe(BackendKind::Wgpu).is_ok() {
            Device::Wgpu(None)
        } else {
            return Err(BackendError::NoDevice {
                compiled: BackendKind::compiled(),
            });
        };
        Self::new(device, Precision::F32)
    }

    /// Parses and checks a device (`cpu`, `wgpu:1`, `cuda:0`, or `auto`) and a precision
    /// (`f32`, `f16`, `bf16`), e.g. from `--device` and `--dtype` flags.
    pub fn parse(device: &str, precision: &str) -> Result<Self, BackendError> {
        let precision: Precision = precision.parse()?;
        if device.trim().eq_ignore_ascii_case("auto") {
            let auto = Self::auto()?;
            return Self::new(auto.device, precision);
        }
        Self::new(device.parse()?, precision)
    }

    /// From `SONIC_DEVICE` (default: [`BackendChoice::auto`]) and `SONIC_DTYPE` (default f32).
    pub fn from_env() -> Result<Self, BackendError> {
        Self::from_vars(None, |var| std::env::var(var).ok())
    }

    /// From `SONIC_DEVICE` (default: `default`) and `SONIC_DTYPE` (default f32).
    pub fn from_env_or(default: Device) -> Result<Self, BackendError> {
        Self::from_vars(Some(default), |var| std::env::var(var).ok())
    }

    /// `from_env*` with the variables read through `lookup`. Unset, empty or `auto` means
    /// the default.
    fn from_vars(
        default: Option<Device>,
        lookup: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Self, BackendError> {
        let read = |var: &'static str| {
            lookup(var).filter(|text| {
                let text = text.trim();
                !text.is_empty() && !text.eq_ignore_ascii_case("auto")
            })
        };
        let in_var = |var: &'static str| {
            move |source: BackendError| BackendError::Env {
                var,
                source: Box::new(source),
            }
        };
        let precision = match read(DTYPE_ENV) {
            Some(text) => text.parse().map_err(in_var(DTYPE_ENV))?,
            None => Precision::F32,
        };
        let device = match (read(DEVICE_ENV), default) {
            (Some(text), _) => text.parse().map_err(in_var(DEVICE_ENV))?,
            (None, Some(device)) => device,
            (None, None) => Self::auto()?.device,
        };
        Self::new(device, precision)
    }

    /// The device.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The precision.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The dtype of the precision (for `LoadOptions` and tensor creation).
    pub fn dtype(&self) -> DType {
        self.precision.dtype()
    }

    /// Runs `f` monomorphised for the chosen backend, on its device, with the precision set
    /// as the device's default float dtype (see [`BackendChoice::burn_device`]).
    pub fn run<F: BackendFn>(&self, f: F) -> Result<F::Output, BackendError> {
        match self.device.kind() {
            #[cfg(feature = "cpu")]
            BackendKind::Cpu => self.run_on::<crate::Cpu, F>(f),
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => self.run_on::<crate::Wgpu, F>(f),
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => self.run_on::<crate::Cuda, F>(f),
            #[allow(unreachable_patterns)]
            _ => Err(BackendError::NotCompiled {
                device: self.device,
                compiled: BackendKind::compiled(),
            }),
        }
    }

    fn run_on<B: SelectableBackend, F: BackendFn>(&self, f: F) -> Result<F::Output, BackendError> {
        let device = self.burn_device::<B>()?;
        tracing::debug!(device = %self.device, precision = %self.precision, backend = %B::name(&device), "running");
        Ok(f.run::<B>(device, self.dtype()))
    }

    /// burn's device for this choice on backend `B`, with the precision made the device's
    /// default float dtype, for code written for one backend type (tests, benches).
    ///
    /// burn fixes a device's default dtypes at its first tensor, for the whole process: call
    /// this before any tensor exists on the device. Fails with
    /// [`BackendError::PrecisionConflict`] if the device already defaults to another
    /// precision, and [`BackendError::WrongBackend`] if `B` is not the device's family.
    pub fn burn_device<B: SelectableBackend>(&self) -> Result<B::Device, BackendError> {
        if self.device.kind() != B::KIND {
            return Err(BackendError::WrongBackend {
                device: self.device,
                backend: B::KIND,
            });
        }
        let device = B::burn_device(self.device)?;
        let dtype = self.dtype();
        let int_dtype = <B::IntElem as Element>::dtype();
        if burn::tensor::set_default_dtypes::<B>(&device, dtype, int_dtype).is_err() {
            let current: DType = burn::tensor::get_device_settings::<B>(&device)
                .float_dtype
                .into();
            if current != dtype {
                return Err(BackendError::PrecisionConflict {
                    device: self.device,
                    requested: self.precision,
                    current: Precision::from_dtype(current)
                        .map_or_else(|| format!("{current:?}"), |p| p.to_string()),
                });
            }
        }
        Ok(device)
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.device, self.precision)
    }
}

/// The precisions a present device computes in (burn's `supports_dtype`: storage,
/// conversion and arithmetic). Starts the GPU runtime.
fn supported_precisions(device: Device) -> Result<Vec<Precision>, BackendError> {
    fn on<B: SelectableBackend>(device: Device) -> Result<Vec<Precision>, BackendError> {
        let device = B::burn_device(device)?;
        Ok(Precision::ALL
            .into_iter()
            .filter(|p| B::supports_dtype(&device, p.dtype()))
            .collect())
    }
    match device.kind() {
        #[cfg(feature = "cpu")]
        BackendKind::Cpu => on::<crate::Cpu>(device),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => on::<crate::Wgpu>(device),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => on::<crate::Cuda>(device),
        #[allow(unreachable_patterns)]
        _ => Err(BackendError::NotCompiled {
            device,
            compiled: BackendKind::compiled(),
        }),
    }
}

fn not_present(device: Device, reason: String) -> BackendError {
    BackendError::NotPresent {
        device,
        reason,
        available: crate::devices(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects what `run` was called with.
    struct Probe;

    impl BackendFn for Probe {
        type Output = (String, DType, DType);

        fn run<B: Backend>(self, device: B::Device, dtype: DType) -> Self::Output {
            let x = burn::tensor::Tensor::<B, 1>::from_floats([1.0, 2.0], &device);
            (B::name(&device), dtype, x.dtype())
        }
    }

    #[test]
    fn families_not_compiled_in_are_refused_with_the_feature_to_enable() {
        for (text, kind) in [("cuda:0", BackendKind::Cuda), ("wgpu", BackendKind::Wgpu)] {
            let result = BackendChoice::parse(text, "f32");
            if kind.is_compiled() {
                // Compiled in: usable, or refused for this machine, never for the build.
                assert!(
                    matches!(result, Ok(_) | Err(BackendError::NotPresent { .. })),
                    "{text}: {result:?}"
                );
                continue;
            }
            let err = result.unwrap_err();
            let BackendError::NotCompiled { device, compiled } = &err else {
                panic!("{text}: expected NotCompiled, got {err}");
            };
            assert_eq!(device.kind(), kind);
            assert_eq!(compiled, &BackendKind::compiled());
            let message = err.to_string();
            assert!(message.contains(&format!("`{kind}`")), "{message}");
            assert!(message.contains("cpu"), "{message}");
        }
    }

    #[test]
    fn environment_values_are_parsed_and_named_in_errors() {
        let vars = |device: &'static str, dtype: &'static str| {
            move |var: &'static str| match var {
                DEVICE_ENV => Some(device.to_string()),
                DTYPE_ENV => Some(dtype.to_string()),
                _ => None,
            }
        };
        let err = BackendChoice::from_vars(None, vars("gpu0", "f32")).unwrap_err();
        assert!(
            matches!(&err, BackendError::Env { var: DEVICE_ENV, source } if matches!(**source, BackendError::InvalidDevice { .. })),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "environment variable SONIC_DEVICE is invalid"
        );
        let cause = std::error::Error::source(&err).map(|e| e.to_string());
        assert!(
            cause.as_deref().is_some_and(|c| c.starts_with("`gpu0`")),
            "{cause:?}"
        );
        let err = BackendChoice::from_vars(None, vars("cpu", "fp8")).unwrap_err();
        assert!(
            matches!(&err, BackendError::Env { var: DTYPE_ENV, .. }),
            "{err}"
        );
        #[cfg(feature = "cpu")]
        {
            let choice = BackendChoice::from_vars(None, vars("cpu", " BF16 ")).unwrap();
            assert_eq!(
                (choice.device(), choice.precision()),
                (Device::Cpu, Precision::Bf16)
            );
            // Empty and `auto` fall back to the default device and f32.
            let choice = BackendChoice::from_vars(Some(Device::Cpu), vars("auto", "")).unwrap();
            assert_eq!(
                (choice.device(), choice.precision()),
                (Device::Cpu, Precision::F32)
            );
        }
    }

    #[test]
    fn bad_text_is_refused_before_probing() {
        assert!(matches!(
            BackendChoice::parse("tpu", "f32"),
            Err(BackendError::InvalidDevice { .. })
        ));
        assert!(matches!(
            BackendChoice::parse("cpu", "f8"),
            Err(BackendError::InvalidPrecision { .. })
        ));
    }

    #[cfg(feature = "cpu")]
    #[test]
    fn cpu_runs_generic_code_and_keeps_one_precision_per_process() {
        let auto = BackendChoice::auto().unwrap();
        if !BackendKind::Cuda.is_compiled() && !BackendKind::Wgpu.is_compiled() {
            assert_eq!(auto, BackendChoice::parse("cpu", "f32").unwrap());
        }
        for precision in Precision::ALL {
            let choice = BackendChoice::new(Device::Cpu, precision).unwrap();
            assert_eq!(choice.to_string(), format!("cpu {precision}"));
        }

        // The only test of this binary that creates tensors on the CPU device.
        let f32_choice = BackendChoice::parse("cpu", "f32").unwrap();
        let (name, dtype, created) = f32_choice.run(Probe).unwrap();
        assert_eq!(name, crate::Cpu::name(&Default::default()));
        assert_eq!((dtype, created), (DType::F32, DType::F32));

        let bf16 = BackendChoice::parse("cpu", "bf16").unwrap();
        let err = bf16.run(Probe).unwrap_err();
        assert_eq!(
            err,
            BackendError::PrecisionConflict {
                device: Device::Cpu,
                requested: Precision::Bf16,
                current: "f32".into(),
            }
        );
        assert!(f32_choice.burn_device::<crate::Cpu>().is_ok());
    }

    #[cfg(all(feature = "cpu", not(feature = "cuda")))]
    #[test]
    fn a_device_of_another_family_is_refused_by_typed_code() {
        let choice = BackendChoice::parse("cpu", "f32").unwrap();
        assert!(choice.burn_device::<crate::Cpu>().is_ok());
        let err = crate::Cpu::burn_device(Device::Cuda(0)).unwrap_err();
        assert_eq!(
            err,
            BackendError::WrongBackend {
                device: Device::Cuda(0),
                backend: BackendKind::Cpu,
            }
        );
        assert!(err.to_string().contains("cuda device"), "{err}");
    }
}
