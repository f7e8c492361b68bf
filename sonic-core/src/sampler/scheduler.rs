//! The Euler sampler with EDM preconditioning, as Stable Video Diffusion XT configures
//! diffusers' `EulerDiscreteScheduler` (and Sonic uses it).
//!
//! Reference: diffusers v0.29.0 `schedulers/scheduling_euler_discrete.py` with the SVD-xt
//! `scheduler/scheduler_config.json` (v-prediction, continuous timesteps, Karras sigmas from
//! 700 to 0.002 with rho 7, then a final 0).
//!
//! The schedule is computed on the host in f64 and rounded to f32 once, as diffusers does
//! (numpy f64 -> f32). The per-step arithmetic then repeats the reference's f32 operations in
//! the same order, so the f32 results agree to the last bits.

use std::path::Path;

use burn::prelude::Backend;
use burn::tensor::{DType, Tensor};
use serde::{Deserialize, Serialize};

/// The `rho` of the Karras et al. (2022) noise schedule; diffusers hard-codes it.
pub const KARRAS_RHO: f64 = 7.0;

/// What the denoising model predicts (`prediction_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PredictionType {
    /// The velocity `v` (SVD-xt and Sonic).
    VPrediction,
    /// The noise `epsilon` (not supported by [`EulerEdmScheduler`]).
    Epsilon,
    /// The clean sample (not supported by [`EulerEdmScheduler`]).
    Sample,
}

/// How timesteps are fed to the model (`timestep_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TimestepType {
    /// `c_noise = 0.25 ln sigma` (SVD-xt and Sonic).
    Continuous,
    /// Integer training timesteps (not supported by [`EulerEdmScheduler`]).
    Discrete,
}

/// `timestep_spacing`; with Karras sigmas it only decides [`EulerEdmScheduler::init_noise_sigma`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TimestepSpacing {
    /// `linspace`: `init_noise_sigma = sigma_max`.
    Linspace,
    /// `leading` (SVD-xt): `init_noise_sigma = sqrt(sigma_max^2 + 1)`.
    Leading,
    /// `trailing`: `init_noise_sigma = sigma_max`.
    Trailing,
}

/// `final_sigmas_type`: the sigma appended after the last step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FinalSigmas {
    /// 0: the last step returns the denoised sample (SVD-xt and Sonic).
    Zero,
    /// The smallest training sigma (not supported by [`EulerEdmScheduler`]).
    SigmaMin,
}

/// The fields of diffusers' `scheduler_config.json` that decide the sampler. Other fields
/// (`beta_*`, `steps_offset`, `interpolation_type`, ...) have no effect with Karras sigmas and
/// are ignored when reading the file. A field missing from the file takes diffusers' default
/// (as `from_pretrained` would), not SVD-xt's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchedulerConfig {
    /// What the model predicts (diffusers default: `epsilon`).
    #[serde(default = "defaults::prediction_type")]
    pub prediction_type: PredictionType,
    /// How timesteps are fed to the model (diffusers default: `discrete`).
    #[serde(default = "defaults::timestep_type")]
    pub timestep_type: TimestepType,
    /// Whether the sigmas follow Karras et al.'s schedule (diffusers default: false).
    #[serde(default)]
    pub use_karras_sigmas: bool,
    /// Smallest sigma of the schedule (the last before the final one).
    #[serde(default)]
    pub sigma_min: Option<f64>,
    /// Largest sigma of the schedule (the first step's).
    #[serde(default)]
    pub sigma_max: Option<f64>,
    /// Timestep spacing, only decides `init_noise_sigma` here (diffusers default: `linspace`).
    #[serde(default = "defaults::timestep_spacing")]
    pub timestep_spacing: TimestepSpacing,
    /// The sigma appended after the last step (diffusers default: `zero`).
    #[serde(default = "defaults::final_sigmas_type")]
    pub final_sigmas_type: FinalSigmas,
}

/// diffusers' `EulerDiscreteScheduler.__init__` defaults, for fields absent from a file.
mod defaults {
    use super::*;

    pub(super) fn prediction_type() -> PredictionType {
        PredictionType::Epsilon
    }
    pub(super) fn timestep_type() -> TimestepType {
        TimestepType::Discrete
    }
    pub(super) fn timestep_spacing() -> TimestepSpacing {
        TimestepSpacing::Linspace
    }
    pub(super) fn final_sigmas_type() -> FinalSigmas {
        FinalSigmas::Zero
    }
}

impl SchedulerConfig {
    /// Stable Video Diffusion XT's `scheduler/scheduler_config.json` (the one Sonic loads):
    /// v-prediction, continuous timesteps, Karras sigmas from 700 to 0.002, spacing `leading`,
    /// final sigma 0.
    pub fn svd_xt() -> Self {
        Self {
            prediction_type: PredictionType::VPrediction,
            timestep_type: TimestepType::Continuous,
            use_karras_sigmas: true,
            sigma_min: Some(0.002),
            sigma_max: Some(700.0),
            timestep_spacing: TimestepSpacing::Leading,
            final_sigmas_type: FinalSigmas::Zero,
        }
    }

    /// Parses a diffusers `scheduler_config.json`.
    pub fn from_json(text: &str) -> Result<Self, SchedulerError> {
        serde_json::from_str(text).map_err(|source| SchedulerError::Config {
            file: None,
            source: source.into(),
        })
    }

    /// Reads a diffusers `scheduler_config.json` (e.g. `<svd>/scheduler/scheduler_config.json`).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SchedulerError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SchedulerError::Config {
            file: Some(path.to_path_buf()),
            source: source.into(),
        })?;
        Self::from_json(&text).map_err(|e| match e {
            SchedulerError::Config { source, .. } => SchedulerError::Config {
                file: Some(path.to_path_buf()),
                source,
            },
            other => other,
        })
    }
}

/// Why a scheduler could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    /// The config file could not be read or parsed.
    #[error("cannot read the scheduler config{}", file.as_ref().map(|f| format!(" {}", f.display())).unwrap_or_default())]
    Config {
        /// The file, when read from one.
        file: Option<std::path::PathBuf>,
        /// The read or parse error (a [`std::io::Error`] or a [`serde_json::Error`]).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The config asks for a variant this sampler does not implement.
    #[error(
        "unsupported scheduler setting `{field}` = {value} (only the SVD-xt EDM setup is implemented)"
    )]
    Unsupported {
        /// The config field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// A parameter is out of range.
    #[error("scheduler parameter `{name}` = {value} out of range: {expected}")]
    OutOfRange {
        /// The parameter.
        name: &'static str,
        /// Its value.
        value: String,
        /// The accepted range.
        expected: &'static str,
    },
}

/// The EDM preconditioning of one step (all f32, computed as the reference does).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EdmCoefficients {
    /// The step's sigma.
    pub sigma: f32,
    /// Input scale `1 / sqrt(sigma^2 + 1)`.
    pub c_in: f32,
    /// Skip scale `1 / (sigma^2 + 1)` of the denoised estimate.
    pub c_skip: f32,
    /// Output scale `-sigma / sqrt(sigma^2 + 1)` of the denoised estimate.
    pub c_out: f32,
    /// The timestep the model sees, `0.25 ln sigma`.
    pub c_noise: f32,
}

/// Result of one Euler step.
#[derive(Debug, Clone)]
pub struct EulerStep<B: Backend, const D: usize> {
    /// The sample at the next (smaller) sigma.
    pub prev_sample: Tensor<B, D>,
    /// The denoised estimate `c_skip x + c_out v`.
    pub pred_original_sample: Tensor<B, D>,
}

/// Euler sampler with EDM preconditioning and a v-predicting model, for a fixed number of
/// steps (diffusers' `EulerDiscreteScheduler` after `set_timesteps(n)`, as SVD-xt configures
/// it).
///
/// Stateless once built: every method takes the step index, so the windows of one step can be
/// stepped in any order (Sonic resets diffusers' `_step_index` before each window for the same
/// effect).
#[derive(Debug, Clone, PartialEq)]
pub struct EulerEdmScheduler {
    sigmas: Vec<f32>,
    timesteps: Vec<f32>,
    init_noise_sigma: f32,
}

impl EulerEdmScheduler {
    /// The schedule of `num_inference_steps` steps for `config`.
    pub fn new(
        config: &SchedulerConfig,
        num_inference_steps: usize,
    ) -> Result<Self, SchedulerError> {
        if num_inference_steps == 0 {
            return Err(SchedulerError::OutOfRange {
                name: "num_inference_steps",
                value: "0".into(),
                expected: ">= 1",
            });
        }
        let unsupported = |field, value: String| Err(SchedulerError::Unsupported { field, value });
        if config.prediction_type != PredictionType::VPrediction {
            return unsupported("prediction_type", format!("{:?}", config.prediction_type));
        }
        if config.timestep_type != TimestepType::Continuous {
            return unsupported("timestep_type", format!("{:?}", config.timestep_type));
        }
        if !config.use_karras_sigmas {
            return unsupported("use_karras_sigmas", "false".into());
        }
        if config.final_sigmas_type != FinalSigmas::Zero {
            return unsupported(
                "final_sigmas_type",
                format!("{:?}", config.final_sigmas_type),
            );
        }
        // Without explicit bounds diffusers falls back to the training betas' sigmas; SVD-xt
        // always sets them.
        let (Some(sigma_min), Some(sigma_max)) = (config.sigma_min, config.sigma_max) else {
            return unsupported("sigma_min/sigma_max", "null".into());
        };
        if !(sigma_min.is_finite()
            && sigma_max.is_finite()
            && 0.0 < sigma_min
            && sigma_min < sigma_max)
        {
            return Err(SchedulerError::OutOfRange {
                name: "sigma_min/sigma_max",
                value: format!("{sigma_min}/{sigma_max}"),
                expected: "0 < sigma_min < sigma_max, finite",
            });
        }

        let sigmas: Vec<f32> = karras_sigmas(sigma_min, sigma_max, num_inference_steps)
            .into_iter()
            .map(|s| s as f32)
            .chain(std::iter::once(0.0))
            .collect();
        // torch: `0.25 * sigma.log()` on the f32 sigmas (0.25 is exact in binary).
        let timesteps = sigmas[..num_inference_steps]
            .iter()
            .map(|&s| ((s as f64).ln() as f32) * 0.25)
            .collect();
        let max = sigmas[0];
        let init_noise_sigma = match config.timestep_spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max,
            TimestepSpacing::Leading => (max * max + 1.0).sqrt(),
        };
        Ok(Self {
            sigmas,
            timesteps,
            init_noise_sigma,
        })
    }

    /// The SVD-xt schedule ([`SchedulerConfig::svd_xt`]) with `num_inference_steps` steps.
    pub fn svd_xt(num_inference_steps: usize) -> Result<Self, SchedulerError> {
        Self::new(&SchedulerConfig::svd_xt(), num_inference_steps)
    }

    /// Number of denoising steps.
    pub fn num_steps(&self) -> usize {
        self.timesteps.len()
    }

    /// The sigmas, one per step plus the final 0.
    pub fn sigmas(&self) -> &[f32] {
        &self.sigmas
    }

    /// The model timesteps `0.25 ln sigma`, one per step.
    pub fn timesteps(&self) -> &[f32] {
        &self.timesteps
    }

    /// The first (largest) sigma.
    pub fn sigma_max(&self) -> f32 {
        self.sigmas[0]
    }

    /// diffusers' `init_noise_sigma` (not used by Sonic, which starts from
    /// `x0 + sigma_max * noise`, see [`EulerEdmScheduler::add_noise`]).
    pub fn init_noise_sigma(&self) -> f32 {
        self.init_noise_sigma
    }

    /// The preconditioning of `step`.
    ///
    /// # Panics
    /// If `step >= self.num_steps()`.
    pub fn coefficients(&self, step: usize) -> EdmCoefficients {
        let sigma = self.sigmas[step];
        let s2p1 = sigma * sigma + 1.0;
        let root = s2p1.sqrt();
        EdmCoefficients {
            sigma,
            c_in: 1.0 / root,
            c_skip: 1.0 / s2p1,
            c_out: -sigma / root,
            c_noise: self.timesteps[step],
        }
    }

    /// Scales the model input of `step`: `sample / sqrt(sigma^2 + 1)`.
    ///
    /// # Panics
    /// If `step >= self.num_steps()`.
    pub fn scale_model_input<B: Backend, const D: usize>(
        &self,
        sample: Tensor<B, D>,
        step: usize,
    ) -> Tensor<B, D> {
        let sigma = self.sigmas[step];
        sample.div_scalar((sigma * sigma + 1.0).sqrt())
    }

    /// One Euler step from `sigma[step]` to `sigma[step + 1]` given the model's v-prediction.
    ///
    /// Computed in f32 whatever the tensors' dtype (as diffusers upcasts); `prev_sample` comes
    /// back in `model_output`'s dtype.
    ///
    /// # Shapes
    /// `model_output` and `sample` have the same shape; so do both outputs.
    ///
    /// # Panics
    /// If `step >= self.num_steps()`.
    pub fn step<B: Backend, const D: usize>(
        &self,
        step: usize,
        model_output: Tensor<B, D>,
        sample: Tensor<B, D>,
    ) -> EulerStep<B, D> {
        let out_dtype = model_output.dtype();
        let sigma = self.sigmas[step];
        let sigma_next = self.sigmas[step + 1];
        let sample = to_f32(sample);
        let v = to_f32(model_output);
        let s2p1 = sigma * sigma + 1.0;
        // denoised = v * c_out + x * c_skip, in the reference's operation order.
        let pred_original_sample = v
            .mul_scalar(-sigma / s2p1.sqrt())
            .add(sample.clone().div_scalar(s2p1));
        // s_churn = 0, so sigma_hat = sigma.
        let derivative = sample
            .clone()
            .sub(pred_original_sample.clone())
            .div_scalar(sigma);
        let prev_sample = sample.add(derivative.mul_scalar(sigma_next - sigma));
        EulerStep {
            prev_sample: prev_sample.cast(out_dtype),
            pred_original_sample,
        }
    }

    /// Noises `original` to `sigma[step]`: `original + noise * sigma` (diffusers' `add_noise`;
    /// at step 0 this is Sonic's start `x0 + sigma_max * noise`, not SVD's
    /// `noise * init_noise_sigma`).
    ///
    /// # Shapes
    /// `original` broadcasts to `noise`'s shape (size-1 dimensions are expanded); returns
    /// `noise`'s shape.
    ///
    /// # Panics
    /// If `step >= self.num_steps()` or the shapes do not broadcast.
    pub fn add_noise<B: Backend, const D: usize>(
        &self,
        original: Tensor<B, D>,
        noise: Tensor<B, D>,
        step: usize,
    ) -> Tensor<B, D> {
        let shape = noise.shape();
        noise
            .mul_scalar(self.sigmas[step])
            .add(original.expand(shape))
    }
}

fn to_f32<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Tensor<B, D> {
    if tensor.dtype() == DType::F32 {
        tensor
    } else {
        tensor.cast(DType::F32)
    }
}

/// Karras et al. (2022) sigmas in f64, as diffusers' `_convert_to_karras` computes them
/// (numpy `linspace` ramp, rho = 7); without the final 0.
fn karras_sigmas(sigma_min: f64, sigma_max: f64, steps: usize) -> Vec<f64> {
    let min_inv_rho = sigma_min.powf(1.0 / KARRAS_RHO);
    let max_inv_rho = sigma_max.powf(1.0 / KARRAS_RHO);
    // numpy.linspace(0, 1, n): i * (1 / (n - 1)), last value exactly 1.
    let step = if steps > 1 {
        1.0 / (steps - 1) as f64
    } else {
        0.0
    };
    (0..steps)
        .map(|i| {
            let ramp = if steps > 1 && i == steps - 1 {
                1.0
            } else {
                i as f64 * step
            };
            (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)).powf(KARRAS_RHO)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svd_xt_schedule_endpoints() {
        let s = EulerEdmScheduler::svd_xt(25).unwrap();
        assert_eq!(s.sigmas().len(), 26);
        assert_eq!(s.sigmas()[0], 700.0);
        assert!((s.sigmas()[24] - 0.002).abs() < 1e-9);
        assert_eq!(s.sigmas()[25], 0.0);
        assert!((s.timesteps()[0] - 0.25 * 700f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn single_step_schedule_starts_at_sigma_max() {
        let s = EulerEdmScheduler::svd_xt(1).unwrap();
        assert_eq!(s.sigmas(), &[700.0, 0.0]);
    }

    #[test]
    fn rejects_what_it_does_not_implement() {
        let mut config = SchedulerConfig::svd_xt();
        config.prediction_type = PredictionType::Epsilon;
        assert!(matches!(
            EulerEdmScheduler::new(&config, 25),
            Err(SchedulerError::Unsupported {
                field: "prediction_type",
                ..
            })
        ));
        assert!(matches!(
            EulerEdmScheduler::svd_xt(0),
            Err(SchedulerError::OutOfRange {
                name: "num_inference_steps",
                ..
            })
        ));
        let mut config = SchedulerConfig::svd_xt();
        config.sigma_min = Some(800.0);
        assert!(matches!(
            EulerEdmScheduler::new(&config, 25),
            Err(SchedulerError::OutOfRange { .. })
        ));
    }

    #[test]
    fn reads_the_diffusers_file_format() {
        let text = r#"{"_class_name": "EulerDiscreteScheduler", "beta_end": 0.012,
            "prediction_type": "v_prediction", "sigma_max": 700.0, "sigma_min": 0.002,
            "timestep_spacing": "leading", "timestep_type": "continuous", "trained_betas": null,
            "use_karras_sigmas": true}"#;
        assert_eq!(
            SchedulerConfig::from_json(text).unwrap(),
            SchedulerConfig::svd_xt()
        );
        assert!(matches!(
            SchedulerConfig::from_json(r#"{"prediction_type": "banana"}"#),
            Err(SchedulerError::Config { file: None, .. })
        ));
        let missing = std::path::Path::new("/nonexistent/scheduler_config.json");
        let err = SchedulerConfig::from_file(missing).unwrap_err();
        assert!(matches!(&err, SchedulerError::Config { file: Some(f), .. } if f == missing));
        assert!(
            err.to_string()
                .contains("/nonexistent/scheduler_config.json"),
            "{err}"
        );
    }
}
