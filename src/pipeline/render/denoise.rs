//! Stage 4: the initial latents (`ref * 0.18215 + sigma_max * noise`) and the shifted-window
//! loop, with the UNet as the sampler's model and the loop's progress, cancellation and stage
//! records.

use std::cell::RefCell;
use std::convert::Infallible;
use std::time::Instant;

use burn::prelude::Backend;
use burn::tensor::{Tensor, TensorData};
use sonic_core::sampler::{
    Conditioning, Denoiser, EulerEdmScheduler, LoopObserver, MaskedUNet, NoiseSource, Sampler,
    SamplerConfig, WindowDone, WindowInput, initial_latents, seeded_noise,
};

use super::prepare::Prepared;
use super::{Reporter, host};
use crate::pipeline::error::PipelineError;
use crate::pipeline::models::SonicModels;
use crate::pipeline::params::GenerationParams;
use crate::pipeline::progress::{Stage, StageClock};
use crate::pipeline::stages::StageTensor;

impl<B: Backend> SonicModels<B> {
    /// Initial latents and the shifted-window loop.
    pub(super) fn denoise(
        &self,
        params: &GenerationParams,
        prepared: &Prepared,
        conditioning: Conditioning<B>,
        ref_latents: Tensor<B, 4>,
        noise: Option<TensorData>,
        reporter: &mut Reporter<'_>,
    ) -> Result<Tensor<B, 5>, PipelineError> {
        reporter.check_cancelled(Stage::Denoise)?;
        let started = Instant::now();
        let device = &self.device;
        let frames = conditioning.num_frames();
        let scheduler = EulerEdmScheduler::new(&self.configs.scheduler, params.inference_steps)?;
        let steps = scheduler.num_steps();
        reporter.stages.data(
            StageTensor::Timesteps,
            host(scheduler.timesteps().to_vec(), [steps]),
        );
        reporter.stages.data(
            StageTensor::GuidanceScale1,
            host(vec![params.image_guidance; steps], [steps]),
        );
        reporter.stages.data(
            StageTensor::GuidanceScale2,
            host(vec![params.audio_guidance; steps], [steps]),
        );

        let [_, channels, h, w] = ref_latents.dims();
        let shape = [1, frames, channels, h, w];
        let dtype = ref_latents.dtype();
        let noise = match noise {
            Some(data) => Tensor::<B, 5>::from_data(data.convert_dtype(dtype), (device, dtype)),
            // The same draw as `NoiseSource::Seed`, made here so it can be observed.
            None => seeded_noise::<B, 5>(params.seed, shape, dtype, device),
        };
        reporter
            .stages
            .tensor(StageTensor::LatentNoise, || noise.clone());
        let latents = initial_latents(
            &scheduler,
            ref_latents,
            frames,
            NoiseSource::Injected(noise),
        )?;
        reporter
            .stages
            .tensor(StageTensor::InitialLatents, || latents.clone());

        let sampler = Sampler::new(
            SamplerConfig::sonic()
                .with_shift_offset(params.shift_offset)
                .with_image_guidance(params.image_guidance)
                .with_audio_guidance(params.audio_guidance)
                .with_fps_condition(params.generated_fps() as f32),
            scheduler,
        )?;
        let windows_per_step = sampler.windows(frames, 0).len();
        let total = (steps * windows_per_step) as u64;
        let clock = StageClock::new(Stage::Denoise, total).with_steps(steps, windows_per_step);
        reporter.report(clock.current());
        let shared = RefCell::new(LoopState { reporter, clock });
        let mut model = ObservedUNet {
            unet: MaskedUNet::new(&self.unet, &prepared.face_mask),
            state: &shared,
        };
        let mut observer = LoopHooks { state: &shared };
        let latents = sampler.denoise(latents, &conditioning, &mut model, &mut observer)?;
        let state = shared.into_inner();
        state
            .reporter
            .timings
            .push((Stage::Denoise.name().to_owned(), started.elapsed()));
        Ok(latents)
    }
}

/// State shared by the denoiser and the loop observer.
struct LoopState<'r, 'a> {
    reporter: &'r mut Reporter<'a>,
    clock: StageClock,
}

/// The [`MaskedUNet`] with the window's stage records around each call.
struct ObservedUNet<'s, 'r, 'a, B: Backend> {
    unet: MaskedUNet<'s, B>,
    state: &'s RefCell<LoopState<'r, 'a>>,
}

impl<B: Backend> Denoiser<B> for ObservedUNet<'_, '_, '_, B> {
    type Error = Infallible;

    fn predict_v(&mut self, input: WindowInput<B>) -> Result<Tensor<B, 5>, Infallible> {
        let mut state = self.state.borrow_mut();
        let stages = &mut state.reporter.stages;
        let plan = &input.plan;
        let frames = plan.len();
        stages.data(
            StageTensor::WindowFrameIndices,
            TensorData::new(
                plan.frame_indices.iter().map(|&i| i as i64).collect(),
                [frames],
            ),
        );
        stages.data(
            StageTensor::WindowIndexStart,
            TensorData::new(vec![plan.index_start], [1]),
        );
        stages.data(StageTensor::WindowTimestep, host(vec![input.timestep], [1]));
        stages.tensor(StageTensor::WindowAddedTimeIds, || {
            input.added_time_ids.clone()
        });
        stages.tensor(StageTensor::WindowClipContext, || {
            input.clip_context.clone()
        });
        stages.tensor(StageTensor::WindowAudioContext, || {
            input.audio_context.clone()
        });
        let out = self.unet.predict_v(input)?; // [3, f, 4, h, w]
        stages.tensor(StageTensor::WindowUnetOutput, || out.clone());
        Ok(out)
    }
}

/// Progress, cancellation and stage records of the loop.
struct LoopHooks<'s, 'r, 'a> {
    state: &'s RefCell<LoopState<'r, 'a>>,
}

impl<B: Backend> LoopObserver<B> for LoopHooks<'_, '_, '_> {
    fn is_cancelled(&self) -> bool {
        self.state.borrow().reporter.cancel.is_cancelled()
    }

    fn on_window(&mut self, done: &WindowDone<'_, B>) {
        let mut state = self.state.borrow_mut();
        let stages = &mut state.reporter.stages;
        stages.tensor(StageTensor::WindowVGuided, || {
            done.v_guided.clone().squeeze_dim::<4>(0)
        });
        stages.tensor(StageTensor::WindowLatentsAfterStep, || {
            done.latents.clone().squeeze_dim::<4>(0)
        });
        let p = done.progress;
        let report = state
            .clock
            .advance(p.windows_done() as u64, Some(p.step), Some(p.window));
        state.reporter.report(report);
    }

    fn on_step(&mut self, step: usize, latents: &Tensor<B, 5>) {
        let mut state = self.state.borrow_mut();
        state
            .reporter
            .stages
            .tensor(StageTensor::LatentsAfterStep(step), || latents.clone());
    }
}
