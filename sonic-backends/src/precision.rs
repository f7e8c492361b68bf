//! Float precision of weights and activations.

use std::fmt;
use std::str::FromStr;

use burn::tensor::DType;

use crate::BackendError;

/// The float type weights are loaded as and activations computed in.
///
/// It is a run-time choice: burn 0.21 tensors carry their dtype, so one compiled backend runs
/// any of these where the device supports it (see [`crate::BackendChoice::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Precision {
    /// 32-bit IEEE floats: the reference precision, supported everywhere.
    #[default]
    F32,
    /// 16-bit IEEE floats (10-bit mantissa): half the memory, fast on GPUs.
    F16,
    /// bfloat16 (8-bit mantissa, f32's range): CUDA on Ampere and newer, and the CPU.
    Bf16,
}

impl Precision {
    /// Every precision, widest first.
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::F16, Precision::Bf16];

    /// The burn dtype of tensors in this precision.
    pub const fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
            Precision::Bf16 => DType::BF16,
        }
    }

    /// The precision of a float dtype (`None` for f64, integers, quantised types).
    pub fn from_dtype(dtype: DType) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.dtype() == dtype)
    }

    /// Its name as parsed and printed (`f32`, `f16`, `bf16`).
    pub const fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = BackendError;

    /// Accepts `f32`/`fp32`/`float32`, `f16`/`fp16`/`float16`/`half`, `bf16`/`bfloat16`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "f16" | "fp16" | "float16" | "half" => Ok(Precision::F16),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            _ => Err(BackendError::InvalidPrecision {
                input: text.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_aliases_and_round_trips() {
        for (text, precision) in [
            ("f32", Precision::F32),
            ("FP16", Precision::F16),
            ("half", Precision::F16),
            ("bfloat16", Precision::Bf16),
        ] {
            assert_eq!(text.parse::<Precision>().unwrap(), precision);
        }
        for precision in Precision::ALL {
            assert_eq!(precision.name().parse::<Precision>().unwrap(), precision);
            assert_eq!(Precision::from_dtype(precision.dtype()), Some(precision));
        }
        assert_eq!(Precision::from_dtype(DType::F64), None);
    }

    #[test]
    fn rejects_unknown_names() {
        let err = "f64".parse::<Precision>().unwrap_err();
        assert!(matches!(&err, BackendError::InvalidPrecision { input } if input == "f64"));
        assert!(err.to_string().contains("bf16"), "{err}");
    }
}
