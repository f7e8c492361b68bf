//! Parity against the Python reference: run a component on a reference case and compare
//! every output tensor within the case's tolerance.
//!
//! A case directory is laid out like the golden fixtures (`config.json` naming the component
//! and tolerances, `io.safetensors` with inputs and expected outputs, weight files). The
//! `parity` example runs [`run_case`] on a chosen backend and exits non-zero on failure; the
//! test suites call it on every fixture.

mod case;
mod runners;

pub use case::{Case, HostData, HostTensor, Tolerance, read_io};
pub use runners::{components, run_case};

/// How a case is run.
#[derive(Debug, Clone, PartialEq)]
pub struct ParityOptions {
    /// Float dtype the weights are loaded as (`None`: the backend's default, f32 on CPU).
    pub dtype: Option<burn::tensor::DType>,
    /// Factor applied to every tolerance of the case (1.0 for f32).
    pub tolerance_scale: f64,
}

impl Default for ParityOptions {
    fn default() -> Self {
        Self {
            dtype: None,
            tolerance_scale: 1.0,
        }
    }
}

impl ParityOptions {
    /// Options for a run in `dtype`, with that precision's [`tolerance_scale`].
    pub fn for_dtype(dtype: burn::tensor::DType) -> Self {
        Self {
            dtype: Some(dtype),
            tolerance_scale: tolerance_scale(dtype),
        }
    }
}

/// Factor applied to the fixtures' tolerances (set for f32) for a run in `dtype`.
///
/// The fixtures allow 20x the reference's own f32-vs-f64 error. Rounding error grows with the
/// unit roundoff: 2^-24 for f32, 2^-11 for f16 (8192x), 2^-8 for bf16 (65536x), but weights
/// and inputs are the only values rounded once, and burn accumulates matmuls and reductions
/// in f32, so the observed error is far below those ratios. The factors are the ratios
/// divided by 8, which passed every fixture with margin on the CPU (docs/backends.md); they
/// still fail a wrong op, which is off by the size of the values.
pub fn tolerance_scale(dtype: burn::tensor::DType) -> f64 {
    use burn::tensor::DType;
    match dtype {
        DType::F16 => 1024.0,
        DType::BF16 => 8192.0,
        _ => 1.0,
    }
}

use std::path::PathBuf;

/// Why a case could not be run (as opposed to running and failing its tolerance).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParityError {
    /// A case file could not be read.
    #[error("cannot read {}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A case file is malformed.
    #[error("{}: {message}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The case lacks a tensor the runner needs.
    #[error("{}: io.safetensors has no tensor `{name}`", case.display())]
    MissingTensor {
        /// The case directory.
        case: PathBuf,
        /// The tensor name.
        name: String,
    },
    /// No runner for the case's component.
    #[error("no parity runner for component `{component}` (known: {known})")]
    UnknownComponent {
        /// The component named in `config.json`.
        component: String,
        /// The components this build can run.
        known: String,
    },
    /// Loading the case's weights failed.
    #[error(transparent)]
    Load(#[from] sonic_core::weights::LoadError),
    /// The component itself failed.
    #[error("{0}")]
    Component(String),
    /// The pipeline of an end-to-end case failed (bad settings, weights that do not load,
    /// a render error).
    #[error("the pipeline failed")]
    Pipeline(#[source] Box<sonic::pipeline::PipelineError>),
}

impl From<sonic::pipeline::PipelineError> for ParityError {
    fn from(error: sonic::pipeline::PipelineError) -> Self {
        Self::Pipeline(Box::new(error))
    }
}

/// A pass/fail check of a run that is not a tensor comparison: an expected tensor the run did
/// not produce, a property of the written video.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// What was checked (a tensor name, `mp4` ...).
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// What was found.
    pub detail: String,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.passed { "ok  " } else { "FAIL" };
        write!(f, "{verdict} {:<32} {}", self.name, self.detail)
    }
}

/// Error statistics of one output tensor against its reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Tensor name in the case.
    pub name: String,
    /// Shape compared.
    pub shape: Vec<usize>,
    /// Shape produced, when it differs from the reference (then the comparison fails).
    pub got_shape: Option<Vec<usize>>,
    /// Largest `|got - ref|`.
    pub max_abs: f64,
    /// Largest `|got - ref| / |ref|` over elements with `ref != 0`.
    pub max_rel: f64,
    /// Number of elements outside the tolerance (NaN counts as outside).
    pub failing: usize,
    /// Flat index of the worst element relative to its tolerance.
    pub worst_index: usize,
    /// Tolerance applied.
    pub tolerance: Tolerance,
}

impl Comparison {
    /// Compares `got` with `expected` elementwise.
    pub fn new(
        name: &str,
        got: &[f32],
        got_shape: &[usize],
        expected: &HostTensor,
        tolerance: Tolerance,
    ) -> Self {
        let reference = expected.to_f32_vec();
        let shape_ok = got_shape == expected.shape.as_slice();
        let mut c = Self {
            name: name.to_string(),
            shape: expected.shape.clone(),
            got_shape: (!shape_ok).then(|| got_shape.to_vec()),
            max_abs: 0.0,
            max_rel: 0.0,
            failing: 0,
            worst_index: 0,
            tolerance,
        };
        if !shape_ok || got.len() != reference.len() {
            c.failing = reference.len().max(1);
            c.max_abs = f64::INFINITY;
            c.max_rel = f64::INFINITY;
            return c;
        }
        let mut worst_ratio = -1.0f64;
        for (i, (&g, &r)) in got.iter().zip(&reference).enumerate() {
            let (g, r) = (g as f64, r as f64);
            let diff = (g - r).abs();
            let allowed = tolerance.abs + tolerance.rel * r.abs();
            let diff_or_inf = if diff.is_nan() { f64::INFINITY } else { diff };
            if diff_or_inf > allowed {
                c.failing += 1;
            }
            c.max_abs = c.max_abs.max(diff_or_inf);
            if r != 0.0 {
                c.max_rel = c.max_rel.max(diff_or_inf / r.abs());
            }
            let ratio = diff_or_inf / allowed.max(f64::MIN_POSITIVE);
            if ratio > worst_ratio {
                worst_ratio = ratio;
                c.worst_index = i;
            }
        }
        c
    }

    /// Whether every element is within tolerance and the shapes agree.
    pub fn passed(&self) -> bool {
        self.failing == 0 && self.got_shape.is_none()
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.passed() { "ok  " } else { "FAIL" };
        write!(
            f,
            "{verdict} {:<32} {:>18} max_abs {:.3e}  max_rel {:.3e}  (tol abs {:.1e} rel {:.1e})",
            self.name,
            format!("{:?}", self.shape),
            self.max_abs,
            self.max_rel,
            self.tolerance.abs,
            self.tolerance.rel
        )?;
        if let Some(got) = &self.got_shape {
            write!(f, "  produced shape {got:?}")?;
        } else if self.failing > 0 {
            write!(
                f,
                "  {} element(s) out of tolerance, worst at flat index {}",
                self.failing, self.worst_index
            )?;
        }
        Ok(())
    }
}

/// All comparisons of one case run.
#[derive(Debug, Clone, PartialEq)]
pub struct ParityReport {
    /// The case directory.
    pub case: PathBuf,
    /// The component run.
    pub component: String,
    /// Backend name as burn reports it.
    pub backend: String,
    /// Factor applied to every case tolerance (1.0 for f32; larger for f16/bf16 runs).
    pub tolerance_scale: f64,
    /// One entry per compared tensor.
    pub comparisons: Vec<Comparison>,
    /// Checks that are not tensor comparisons (expected tensors the run did not produce,
    /// properties of a written video).
    pub checks: Vec<Check>,
}

impl ParityReport {
    /// An empty report for a case run with `options` on the backend named `backend`.
    pub fn new(case: &Case, backend: String, options: &ParityOptions) -> Self {
        Self {
            case: case.dir().to_path_buf(),
            component: case.component().to_string(),
            backend,
            tolerance_scale: options.tolerance_scale,
            comparisons: Vec::new(),
            checks: Vec::new(),
        }
    }

    /// Records a check that is not a tensor comparison.
    pub fn check_that(&mut self, name: impl Into<String>, passed: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            passed,
            detail: detail.into(),
        });
    }

    /// Compares a produced tensor with the case's tensor of the same name, at the case's
    /// tolerance for it times [`ParityReport::tolerance_scale`].
    pub fn check(&mut self, case: &Case, name: &str, got: &HostTensor) -> Result<(), ParityError> {
        let expected = case.tensor(name)?;
        self.comparisons.push(Comparison::new(
            name,
            &got.to_f32_vec(),
            &got.shape,
            expected,
            case.tolerance(name).scaled(self.tolerance_scale),
        ));
        Ok(())
    }

    /// Compares a produced device tensor (read back as f32) with the case's tensor.
    pub fn check_tensor<B: burn::prelude::Backend, const D: usize>(
        &mut self,
        case: &Case,
        name: &str,
        got: burn::tensor::Tensor<B, D>,
    ) -> Result<(), ParityError> {
        self.check(case, name, &HostTensor::from_tensor(got))
    }

    /// Whether every comparison and every check passed (and there was at least one
    /// comparison).
    pub fn passed(&self) -> bool {
        !self.comparisons.is_empty()
            && self.comparisons.iter().all(Comparison::passed)
            && self.checks.iter().all(|c| c.passed)
    }
}

impl std::fmt::Display for ParityReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} ({}) on {}: {}",
            self.case.display(),
            self.component,
            self.backend,
            if self.passed() { "PASS" } else { "FAIL" }
        )?;
        for c in &self.comparisons {
            writeln!(f, "  {c}")?;
        }
        for c in &self.checks {
            writeln!(f, "  {c}")?;
        }
        Ok(())
    }
}
