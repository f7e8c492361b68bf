//! Why a backend choice was refused.

use crate::{BackendKind, Device, DeviceInfo, Precision};

/// Why a device or precision cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The text does not name a device.
    #[error("`{input}` is not a device: expected cpu, wgpu, wgpu:N, cuda or cuda:N")]
    InvalidDevice {
        /// The text given.
        input: String,
    },
    /// The text does not name a precision.
    #[error("`{input}` is not a precision: expected f32, f16 or bf16")]
    InvalidPrecision {
        /// The text given.
        input: String,
    },
    /// An environment variable holds an invalid value.
    #[error("environment variable {var} is invalid")]
    Env {
        /// The variable (`SONIC_DEVICE` or `SONIC_DTYPE`).
        var: &'static str,
        /// What is wrong with its value.
        #[source]
        source: Box<BackendError>,
    },
    /// The device's family was not compiled in.
    #[error(
        "{device} needs the cargo feature `{}`, which this build lacks (compiled in: {})",
        device.kind().feature(), list(compiled)
    )]
    NotCompiled {
        /// The device asked for.
        device: Device,
        /// The families this build has.
        compiled: Vec<BackendKind>,
    },
    /// The family is compiled in but the device is not on this machine.
    #[error(
        "{device} is not present: {reason} (devices present: {})",
        list(available)
    )]
    NotPresent {
        /// The device asked for.
        device: Device,
        /// Why it is absent (no driver, no adapter, index out of range).
        reason: String,
        /// The devices this build can use on this machine.
        available: Vec<DeviceInfo>,
    },
    /// No compiled-in family has a device here (only possible in a build without `cpu`).
    #[error("no device found for the compiled-in backends ({})", list(compiled))]
    NoDevice {
        /// The families this build has.
        compiled: Vec<BackendKind>,
    },
    /// The device cannot compute in this precision.
    #[error(
        "{device} does not support {precision} (it supports: {})",
        list(supported)
    )]
    UnsupportedPrecision {
        /// The device asked for.
        device: Device,
        /// The precision asked for.
        precision: Precision,
        /// The precisions it does support.
        supported: Vec<Precision>,
    },
    /// Code built for one backend was given a device of another family.
    #[error("{device} is a {} device, but this code runs on the {backend} backend", device.kind())]
    WrongBackend {
        /// The device given.
        device: Device,
        /// The backend family of the code.
        backend: BackendKind,
    },
    /// The device already creates tensors in another precision in this process.
    ///
    /// burn fixes a device's default float dtype at its first tensor; a process runs each
    /// device in one precision.
    #[error("{device} already runs in {current} in this process; cannot switch it to {requested}")]
    PrecisionConflict {
        /// The device.
        device: Device,
        /// The precision asked for.
        requested: Precision,
        /// The precision the device already uses (its default float dtype).
        current: String,
    },
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".to_string();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
