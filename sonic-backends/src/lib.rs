//! # sonic-backends
//!
//! Picks the burn backend, device and precision sonic runs on: at build time with cargo
//! features, at run time with a [`BackendChoice`].
//!
//! | feature | backend type | devices | precisions |
//! |---|---|---|---|
//! | `cpu` (default) | [`Cpu`] (burn `Flex`, rayon + SIMD) | `cpu` | f32, f16, bf16 |
//! | `wgpu` | `Wgpu` (fusion + autotune) | `wgpu`, `wgpu:N` (Vulkan, Metal) | f32, f16 where the adapter has it |
//! | `cuda` | `Cuda` (fusion + autotune) | `cuda:N` | f32, f16, bf16 (sm_80+) |
//!
//! The `sonic` crate forwards the same three features. `cuda` builds without a CUDA toolkit
//! or GPU: kernels are compiled at run time by NVRTC. docs/backends.md in the repository
//! says what was verified on which hardware.
//!
//! ## Choosing at run time
//!
//! ```
//! use sonic_backends::{BackendChoice, BackendKind, Device, Precision};
//!
//! // The fastest device present (CUDA, then a GPU through WGPU, then the CPU), in f32.
//! let auto = BackendChoice::auto()?;
//! // From flags or the environment (`SONIC_DEVICE=cuda:1 SONIC_DTYPE=f16`).
//! let cpu = BackendChoice::parse("cpu", "bf16")?;
//! assert_eq!(cpu.device(), Device::Cpu);
//! assert_eq!(cpu.precision(), Precision::Bf16);
//! // Asking for a family that is not compiled in, or a device that is absent, is an error
//! // listing what this build and machine have.
//! if !BackendKind::Cuda.is_compiled() {
//!     let err = BackendChoice::parse("cuda:0", "f32").unwrap_err();
//!     assert!(err.to_string().contains("needs the cargo feature `cuda`"), "{err}");
//! }
//! # Ok::<(), sonic_backends::BackendError>(())
//! ```
//!
//! ## Running generic code on the choice
//!
//! sonic's models are generic over `B: Backend`. [`BackendChoice::run`] calls a
//! [`BackendFn`] monomorphised for the chosen backend (static dispatch: no per-op cost):
//!
//! ```
//! use burn::prelude::{Backend, Tensor};
//! use burn::tensor::{DType, ElementConversion};
//! use sonic_backends::{BackendChoice, BackendFn};
//!
//! struct SumOfSquares(Vec<f32>);
//!
//! impl BackendFn for SumOfSquares {
//!     type Output = f32;
//!
//!     fn run<B: Backend>(self, device: B::Device, _dtype: DType) -> f32 {
//!         // Created in the chosen precision: it is the device's default float dtype.
//!         let x = Tensor::<B, 1>::from_floats(self.0.as_slice(), &device);
//!         x.clone().mul(x).sum().into_scalar().elem::<f32>()
//!     }
//! }
//!
//! let choice = BackendChoice::parse("cpu", "f32")?;
//! assert_eq!(choice.run(SumOfSquares(vec![1.0, 2.0, 3.0]))?, 14.0);
//! # Ok::<(), sonic_backends::BackendError>(())
//! ```
//!
//! ## Precision
//!
//! One compiled backend runs every precision: burn 0.21 tensors carry a run-time dtype, and
//! the element type parameter of `Wgpu<F>`/`Cuda<F>` only sets the default. So the backend
//! types here keep f32 and the precision travels as a [`burn::tensor::DType`]: it becomes the
//! device's default float dtype (so inputs and intermediate tensors are created in it) and
//! the dtype weights are loaded as (`sonic_core::weights::LoadOptions { dtype }`). burn fixes
//! a device's default dtypes at its first tensor, so a process runs each device in one
//! precision ([`BackendError::PrecisionConflict`] otherwise).
#![warn(missing_docs)]

mod choice;
mod device;
mod error;
mod precision;
mod probe;

pub use choice::{BackendChoice, BackendFn, DEVICE_ENV, DTYPE_ENV, SelectableBackend};
pub use device::{BackendKind, Device};
pub use error::BackendError;
pub use precision::Precision;
pub use probe::{DeviceInfo, devices};

/// The CPU backend: burn's flex (rayon threads, SIMD).
#[cfg(feature = "cpu")]
pub type Cpu = burn::backend::Flex;

/// The WGPU backend (Vulkan on Linux/Windows, Metal on macOS; WGSL kernels), with kernel
/// fusion and autotuning. Its element types only set defaults; see [Precision](crate#precision).
#[cfg(feature = "wgpu")]
pub type Wgpu = burn::backend::Wgpu;

/// The CUDA backend, with kernel fusion and autotuning; kernels compiled at run time by NVRTC.
#[cfg(feature = "cuda")]
pub type Cuda = burn::backend::Cuda;
