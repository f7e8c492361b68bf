//! The Euler/EDM scheduler case: schedules, input scaling, `step` and `add_noise`.

use burn::prelude::Backend;
use burn::tensor::Tensor;

use crate::{Case, HostTensor, ParityError, ParityOptions, ParityReport};
use sonic_core::sampler::{EulerEdmScheduler, SchedulerConfig};

pub(super) fn euler_discrete_scheduler<B: Backend>(
    case: &Case,
    device: &B::Device,
    _options: &ParityOptions,
    report: &mut ParityReport,
) -> Result<(), ParityError> {
    let component = |e: sonic_core::sampler::SchedulerError| ParityError::Component(e.to_string());
    let config = SchedulerConfig::from_file(case.file("scheduler/scheduler_config.json"))
        .map_err(component)?;
    let steps: Vec<usize> = serde_json::from_value(case.config()["config"]["steps"].clone())
        .map_err(|e| ParityError::Invalid {
            file: case.file("config.json"),
            message: format!("`config.steps`: {e}"),
        })?;
    for &n in &steps {
        let scheduler = EulerEdmScheduler::new(&config, n).map_err(component)?;
        let host = |v: Vec<f32>| HostTensor::f32(vec![v.len()], v);
        report.check(
            case,
            &format!("steps{n}_sigmas"),
            &host(scheduler.sigmas().to_vec()),
        )?;
        report.check(
            case,
            &format!("steps{n}_timesteps"),
            &host(scheduler.timesteps().to_vec()),
        )?;
        report.check(
            case,
            &format!("steps{n}_init_noise_sigma"),
            &host(vec![scheduler.init_noise_sigma()]),
        )?;
        let factors: Vec<Tensor<B, 1>> = (0..n)
            .map(|i| scheduler.scale_model_input(Tensor::<B, 1>::ones([1], device), i))
            .collect();
        report.check_tensor(
            case,
            &format!("steps{n}_scale_model_input_factor"),
            Tensor::cat(factors, 0),
        )?;

        let prefix = format!("steps{n}_step");
        let Ok(samples) = case.input::<B, 6>(&format!("{prefix}_sample"), device) else {
            continue;
        };
        let outputs: Tensor<B, 6> = case.input(&format!("{prefix}_model_output"), device)?;
        let (mut prev, mut pred) = (Vec::new(), Vec::new());
        for i in 0..n {
            let sample = samples.clone().narrow(0, i, 1).squeeze_dim::<5>(0);
            let v = outputs.clone().narrow(0, i, 1).squeeze_dim::<5>(0);
            let out = scheduler.step(i, v, sample);
            prev.push(out.prev_sample);
            pred.push(out.pred_original_sample);
        }
        report.check_tensor(
            case,
            &format!("{prefix}_prev_sample"),
            Tensor::stack::<6>(prev, 0),
        )?;
        report.check_tensor(
            case,
            &format!("{prefix}_pred_original_sample"),
            Tensor::stack::<6>(pred, 0),
        )?;

        if n == 5 {
            // The reference noises with the 5-step schedule's first timestep.
            let original: Tensor<B, 4> = case.input("add_noise_original", device)?;
            let noise: Tensor<B, 5> = case.input("add_noise_noise", device)?;
            report.check_tensor(
                case,
                "add_noise_result",
                scheduler.add_noise(original.unsqueeze_dim::<5>(1), noise, 0),
            )?;
        }
    }
    Ok(())
}
