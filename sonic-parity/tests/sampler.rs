//! Sonic's denoising loop against the golden `pipeline_e2e` case, with a fake denoiser that
//! replays the recorded UNet outputs (step 0: the three raw branches, so the guidance
//! combination is exercised; later steps: the recorded guided velocity).

mod common;

use std::convert::Infallible;

use burn::tensor::{DType, Tensor};
use common::{TestBackend as B, golden};
use sonic_core::sampler::{
    Conditioning, Denoiser, EulerEdmScheduler, LoopObserver, NoiseSource, Sampler, SamplerConfig,
    SamplerError, SchedulerConfig, Unobserved, WindowDone, WindowInput, initial_latents,
};
use sonic_parity::{Case, ParityReport};

struct Fixture {
    case: Case,
    device: burn::tensor::Device<B>,
}

impl Fixture {
    fn open() -> Self {
        Self {
            case: Case::open(golden("pipeline_e2e")).expect("pipeline_e2e case"),
            device: common::device(),
        }
    }

    fn input<const D: usize>(&self, name: &str) -> Tensor<B, D> {
        self.case.input(name, &self.device).expect(name)
    }

    fn ints(&self, name: &str) -> Vec<i64> {
        self.case.tensor(name).expect(name).to_i64_vec()
    }

    fn report(&self) -> ParityReport {
        common::new_report(&self.case)
    }

    fn conditioning(&self) -> Conditioning<B> {
        let buckets = self
            .case
            .tensor("motion_buckets_scaled")
            .unwrap()
            .to_f32_vec();
        Conditioning::new(
            self.input("clip_image_embeds"),
            self.input("audio_tokens_cond"),
            self.input("audio_tokens_uncond"),
            self.input("vae_encode_mean"),
            buckets.chunks_exact(2).map(|b| [b[0], b[1]]).collect(),
        )
        .unwrap()
    }

    fn scheduler(&self) -> EulerEdmScheduler {
        let config =
            SchedulerConfig::from_file(golden("scheduler").join("scheduler/scheduler_config.json"))
                .unwrap();
        let steps = self.case.config()["config"]["inference_steps"]
            .as_u64()
            .unwrap();
        EulerEdmScheduler::new(&config, steps as usize).unwrap()
    }

    fn sampler(&self) -> Sampler {
        Sampler::new(SamplerConfig::sonic(), self.scheduler()).unwrap()
    }

    fn initial_latents(&self) -> Tensor<B, 5> {
        initial_latents(
            &self.scheduler(),
            self.input("ref_image_latents"),
            self.conditioning().num_frames(),
            NoiseSource::Injected(self.input("latent_noise")),
        )
        .unwrap()
    }
}

/// Replays the reference's UNet outputs and records what the loop fed it.
struct Replay {
    step0_branches: Tensor<B, 6>,
    guided: Tensor<B, 5>,
    windows_per_step: usize,
    inputs: Vec<WindowInput<B>>,
}

impl Denoiser<B> for Replay {
    type Error = Infallible;

    fn predict_v(&mut self, input: WindowInput<B>) -> Result<Tensor<B, 5>, Infallible> {
        let (step, window) = (input.plan.step, input.plan.window);
        self.inputs.push(input);
        Ok(if step == 0 {
            self.step0_branches
                .clone()
                .narrow(0, window, 1)
                .squeeze_dim::<5>(0)
        } else {
            // v_u = v_i = v_c = v_guided makes the guidance return v_guided exactly.
            self.guided
                .clone()
                .narrow(0, step * self.windows_per_step + window, 1)
                .repeat_dim(0, 3)
        })
    }
}

#[derive(Default)]
struct Recorder {
    v_guided: Vec<Tensor<B, 5>>,
    window_latents: Vec<Tensor<B, 5>>,
    step_latents: Vec<Tensor<B, 5>>,
    progress: Vec<(usize, usize, usize, usize)>,
}

impl LoopObserver<B> for Recorder {
    fn on_window(&mut self, done: &WindowDone<'_, B>) {
        self.v_guided.push(done.v_guided.clone());
        self.window_latents.push(done.latents.clone());
        let p = done.progress;
        self.progress
            .push((p.step, p.window, p.windows_done(), p.total_windows()));
    }

    fn on_step(&mut self, _step: usize, latents: &Tensor<B, 5>) {
        self.step_latents.push(latents.clone());
    }
}

#[test]
fn conditioning_matches_the_pipelines_cfg_tensors() {
    let f = Fixture::open();
    let cond = f.conditioning();
    let mut report = f.report();
    report
        .check_tensor(&f.case, "image_embeddings_cfg", cond.image_embeddings_cfg())
        .unwrap();
    report
        .check_tensor(&f.case, "audio_prompts_cfg", cond.audio_prompts_cfg())
        .unwrap();
    report
        .check_tensor(&f.case, "image_latents", cond.image_latents_cfg())
        .unwrap();
    common::assert_passed(&report);
}

#[test]
fn schedule_and_initial_latents_match() {
    let f = Fixture::open();
    let scheduler = f.scheduler();
    let mut report = f.report();
    report
        .check_tensor(
            &f.case,
            "timesteps",
            Tensor::<B, 1>::from_floats(scheduler.timesteps(), &f.device),
        )
        .unwrap();
    report
        .check_tensor(&f.case, "initial_latents", f.initial_latents())
        .unwrap();
    common::assert_passed(&report);
}

#[test]
fn denoising_loop_replays_the_reference_step_by_step() {
    let f = Fixture::open();
    let sampler = f.sampler();
    let cond = f.conditioning();
    let windows_per_step = f.case.config()["config"]["windows_per_step"]
        .as_u64()
        .unwrap() as usize;
    let mut replay = Replay {
        step0_branches: f.input("step0_unet_output"),
        guided: f.input("window_v_guided"),
        windows_per_step,
        inputs: Vec::new(),
    };
    let mut recorder = Recorder::default();
    let final_latents = sampler
        .denoise(f.initial_latents(), &cond, &mut replay, &mut recorder)
        .unwrap();

    // The window layout, exactly.
    let plans: Vec<_> = replay.inputs.iter().map(|i| &i.plan).collect();
    assert_eq!(
        plans.iter().map(|p| p.step as i64).collect::<Vec<_>>(),
        f.ints("window_step")
    );
    assert_eq!(
        plans.iter().map(|p| p.window as i64).collect::<Vec<_>>(),
        f.ints("window_index")
    );
    assert_eq!(
        plans.iter().map(|p| p.index_start).collect::<Vec<_>>(),
        f.ints("window_index_start")
    );
    assert_eq!(
        plans
            .iter()
            .flat_map(|p| p.frame_indices.iter().map(|&i| i as i64))
            .collect::<Vec<_>>(),
        f.ints("window_frame_indices")
    );
    assert_eq!(recorder.progress.last(), Some(&(3, 1, 8, 8)));

    let mut report = f.report();
    let check = |report: &mut ParityReport, name: &str, t: Tensor<B, 5>| {
        report.check_tensor(&f.case, name, t).unwrap()
    };
    report
        .check_tensor(
            &f.case,
            "window_timestep",
            Tensor::<B, 1>::from_floats(
                replay
                    .inputs
                    .iter()
                    .map(|i| i.timestep)
                    .collect::<Vec<_>>()
                    .as_slice(),
                &f.device,
            ),
        )
        .unwrap();
    report
        .check_tensor(
            &f.case,
            "window_added_time_ids",
            Tensor::stack::<3>(
                replay
                    .inputs
                    .iter()
                    .map(|i| i.added_time_ids.clone())
                    .collect(),
                0,
            ),
        )
        .unwrap();
    let step0: Vec<_> = replay.inputs.iter().filter(|i| i.plan.step == 0).collect();
    report
        .check_tensor(
            &f.case,
            "step0_clip_context",
            Tensor::stack::<4>(step0.iter().map(|i| i.clip_context.clone()).collect(), 0),
        )
        .unwrap();
    report
        .check_tensor(
            &f.case,
            "step0_audio_context",
            Tensor::stack::<4>(step0.iter().map(|i| i.audio_context.clone()).collect(), 0),
        )
        .unwrap();
    check(
        &mut report,
        "window_v_guided",
        Tensor::cat(recorder.v_guided.clone(), 0),
    );
    check(
        &mut report,
        "window_latents_after_step",
        Tensor::cat(recorder.window_latents.clone(), 0),
    );
    for (k, latents) in recorder.step_latents.iter().enumerate() {
        check(
            &mut report,
            &format!("latents_after_step_{k}"),
            latents.clone(),
        );
    }
    assert_eq!(recorder.step_latents.len(), 4);
    check(&mut report, "latents_after_step_3", final_latents);
    common::assert_passed(&report);

    // The UNet sample: scaled window latents, then the image latents [zeros, z, z] on channels.
    let first = &replay.inputs[0];
    assert_eq!(first.sample.dims(), [3, 25, 8, 8, 8]);
    let image_part = first.sample.clone().narrow(2, 4, 4);
    let expected = cond
        .image_latents_cfg()
        .unsqueeze_dim::<5>(1)
        .expand([3, 25, 4, 8, 8]);
    image_part
        .into_data()
        .assert_approx_eq::<f32>(&expected.into_data(), Default::default());
}

/// Cancels before the given (step, window).
struct CancelAt(usize, usize, usize);

impl LoopObserver<B> for CancelAt {
    fn is_cancelled(&self) -> bool {
        self.2 >= self.0 * 2 + self.1
    }

    fn on_window(&mut self, _done: &WindowDone<'_, B>) {
        self.2 += 1;
    }
}

/// Predicts zero velocity for every branch.
struct Zero;

impl Denoiser<B> for Zero {
    type Error = Infallible;

    fn predict_v(&mut self, input: WindowInput<B>) -> Result<Tensor<B, 5>, Infallible> {
        let [_, f, c2, h, w] = input.sample.dims();
        Ok(Tensor::zeros([3, f, c2 / 2, h, w], &input.sample.device()))
    }
}

#[test]
fn cancellation_stops_between_windows() {
    let f = Fixture::open();
    let err = f
        .sampler()
        .denoise(
            f.initial_latents(),
            &f.conditioning(),
            &mut Zero,
            &mut CancelAt(1, 1, 0),
        )
        .unwrap_err();
    assert!(
        matches!(err, SamplerError::Cancelled { step: 1, window: 1 }),
        "{err}"
    );
}

#[derive(Debug, thiserror::Error)]
#[error("device lost")]
struct DeviceLost;

struct Failing;

impl Denoiser<B> for Failing {
    type Error = DeviceLost;

    fn predict_v(&mut self, _input: WindowInput<B>) -> Result<Tensor<B, 5>, DeviceLost> {
        Err(DeviceLost)
    }
}

struct WrongShape;

impl Denoiser<B> for WrongShape {
    type Error = Infallible;

    fn predict_v(&mut self, input: WindowInput<B>) -> Result<Tensor<B, 5>, Infallible> {
        Ok(Tensor::zeros([1, 25, 4, 8, 8], &input.sample.device()))
    }
}

#[test]
fn denoiser_failures_are_typed_errors() {
    let f = Fixture::open();
    let sampler = f.sampler();
    let err = sampler
        .denoise(
            f.initial_latents(),
            &f.conditioning(),
            &mut Failing,
            &mut Unobserved,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            SamplerError::Denoiser {
                step: 0,
                window: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_some());
    let err = sampler
        .denoise(
            f.initial_latents(),
            &f.conditioning(),
            &mut WrongShape,
            &mut Unobserved,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            SamplerError::Shape {
                what: "denoiser output",
                ..
            }
        ),
        "{err}"
    );
    let err = sampler
        .step(
            0,
            f.input::<5>("initial_latents").narrow(1, 0, 5),
            &f.conditioning(),
            &mut Zero,
            &mut Unobserved,
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            SamplerError::Shape {
                what: "latents",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn out_of_range_loop_parameters_are_refused() {
    let f = Fixture::open();
    let config = SamplerConfig::sonic().with_overlap(25);
    assert!(matches!(
        Sampler::new(config, f.scheduler()),
        Err(SamplerError::InvalidConfig {
            name: "overlap",
            ..
        })
    ));
    let config = SamplerConfig::sonic().with_audio_guidance(f32::NAN);
    assert!(matches!(
        Sampler::new(config, f.scheduler()),
        Err(SamplerError::InvalidConfig {
            name: "audio_guidance",
            ..
        })
    ));
}

#[test]
fn frames_repeated_in_a_short_clip_are_averaged() {
    // 10 frames in windows of 25: each frame is stepped 2 or 3 times per step. With v = 0 the
    // Euler step scales every element by the same factor, so averaging must give exactly that.
    let device = common::device();
    let frames = 10;
    let scheduler = EulerEdmScheduler::svd_xt(3).unwrap();
    let sampler = Sampler::new(SamplerConfig::sonic(), scheduler.clone()).unwrap();
    let cond = Conditioning::<B>::new(
        Tensor::ones([1, 16], &device),
        Tensor::ones([frames, 4, 16], &device),
        Tensor::zeros([1, 4, 16], &device),
        Tensor::zeros([1, 4, 2, 2], &device),
        vec![[16.0, 16.0]; frames],
    )
    .unwrap();
    let latents = initial_latents(
        &scheduler,
        Tensor::zeros([1, 4, 2, 2], &device),
        frames,
        NoiseSource::Seed(0),
    )
    .unwrap();
    let mut expected = latents.clone();
    let mut got = latents;
    for step in 0..3 {
        got = sampler
            .step(step, got, &cond, &mut Zero, &mut Unobserved)
            .unwrap();
        let s = scheduler.sigmas();
        let c_skip = 1.0 / (s[step] * s[step] + 1.0);
        expected = expected.mul_scalar(1.0 + (1.0 - c_skip) * (s[step + 1] - s[step]) / s[step]);
        got.clone()
            .into_data()
            .assert_approx_eq::<f32>(&expected.clone().into_data(), Default::default());
    }
}

#[test]
fn seeded_noise_is_reproducible_for_every_seed_including_zero() {
    let device = common::device();
    let scheduler = EulerEdmScheduler::svd_xt(2).unwrap();
    let zero_ref = || Tensor::<B, 4>::zeros([1, 4, 2, 2], &device);
    let draw = |seed| {
        initial_latents(&scheduler, zero_ref(), 3, NoiseSource::Seed(seed))
            .unwrap()
            .into_data()
    };
    assert_eq!(draw(0), draw(0));
    assert_ne!(draw(0), draw(1));
    assert_ne!(draw(u64::MAX), draw(0));
    // Longer clips keep the noise of the first frames.
    let long = initial_latents(&scheduler, zero_ref(), 5, NoiseSource::Seed(0)).unwrap();
    assert_eq!(long.narrow(1, 0, 3).into_data(), draw(0));
    let half = initial_latents(
        &scheduler,
        zero_ref().cast(DType::F16),
        3,
        NoiseSource::Seed(0),
    )
    .unwrap();
    assert_eq!(half.dtype(), DType::F16);
}

#[test]
fn half_precision_run_stays_in_half_precision() {
    let device = common::device();
    let frames = 7;
    let scheduler = EulerEdmScheduler::svd_xt(2).unwrap();
    let sampler = Sampler::new(SamplerConfig::sonic(), scheduler.clone()).unwrap();
    let run = |dtype: DType| {
        let cond = Conditioning::<B>::new(
            Tensor::<B, 2>::ones([1, 16], &device).cast(dtype),
            Tensor::<B, 3>::ones([frames, 4, 16], &device).cast(dtype),
            Tensor::<B, 3>::zeros([frames, 4, 16], &device).cast(dtype),
            Tensor::<B, 4>::ones([1, 4, 2, 2], &device).cast(dtype),
            vec![[16.3, 17.3]; frames],
        )
        .unwrap();
        let latents = initial_latents(
            &scheduler,
            Tensor::<B, 4>::ones([1, 4, 2, 2], &device).cast(dtype),
            frames,
            NoiseSource::Seed(7),
        )
        .unwrap();
        let mut model = Echo(Vec::new());
        let out = sampler
            .denoise(latents, &cond, &mut model, &mut Unobserved)
            .unwrap();
        (out, model.0)
    };
    let (full, full_ids) = run(DType::F32);
    let (half, half_ids) = run(DType::F16);
    assert_eq!(half.dtype(), DType::F16);
    assert_eq!(half_ids[0].dtype(), DType::F16);
    assert_eq!(full_ids[0].dtype(), DType::F32);
    // Sonic builds added_time_ids in the UNet's dtype: the buckets are rounded to f16.
    let ids = half_ids[0]
        .clone()
        .cast(DType::F32)
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let rounded = |x: f32| half::f16::from_f32(x).to_f32();
    assert_eq!(ids[..3], [12.5, rounded(16.3), rounded(17.3)]);
    assert_ne!(rounded(16.3), 16.3);
    half.cast(DType::F32).into_data().assert_approx_eq::<f32>(
        &full.into_data(),
        burn::tensor::Tolerance::rel_abs(2e-2, 2e-2),
    );
}

/// Predicts `-0.1 * noisy latents` for every branch and keeps the added time ids it saw.
struct Echo(Vec<Tensor<B, 2>>);

impl Denoiser<B> for Echo {
    type Error = Infallible;

    fn predict_v(&mut self, input: WindowInput<B>) -> Result<Tensor<B, 5>, Infallible> {
        self.0.push(input.added_time_ids);
        let [_, _, c2, _, _] = input.sample.dims();
        Ok(input.sample.narrow(2, 0, c2 / 2).mul_scalar(-0.1))
    }
}
