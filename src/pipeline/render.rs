//! One generation on one backend: picture + speech bytes in, MP4 bytes out to any
//! [`Write`], with progress, cancellation, the memory check and the stage-observer hook.
//!
//! Reference: Sonic `sonic.py` `Sonic.process` and `test()`, `src/pipelines/pipeline_sonic.py`
//! `SonicPipeline.__call__`. The order of work:
//!
//! 1. preprocess (host): decode the audio, 16 kHz, timeline, log-mel; decode the picture, face,
//!    crop, Lanczos resize, face mask, CLIP input; **memory estimate and budget check**;
//! 2. CLIP embedding and VAE encoding of the portrait;
//! 3. Whisper, audio tokens and motion buckets (scaled by `dynamic_scale` and, for the head
//!    bucket, `motion_scale`);
//! 4. initial latents (`ref * 0.18215 + sigma_max * noise`) and the shifted-window loop;
//! 5. VAE decoding one chunk at a time -> `x * 0.5 + 0.5` clamped -> RIFE midpoints -> RGB
//!    bytes -> MP4 writer. No stage holds the frames of the whole clip.

use std::cell::RefCell;
use std::convert::Infallible;
use std::io::Write;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use burn::prelude::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use sonic_core::audio_conditioning::AudioWindowConfig;
use sonic_core::models::rife::FrameInterpolator;
use sonic_core::models::unet::{FaceMask, UNet};
use sonic_core::nn::dtype::cast_to;
use sonic_core::sampler::{
    Conditioning, Denoiser, EulerEdmScheduler, LoopObserver, NoiseSource, Sampler, SamplerConfig,
    WindowDone, WindowInput, initial_latents, seeded_noise,
};
use sonic_media::audio::{
    AudioTimeline, DEFAULT_STEP_CAP, LogMel, LogMelExtractor, SAMPLE_RATE, SAMPLES_PER_STEP,
    TimelineOptions, decode_audio, resample,
};
use sonic_media::face::{FaceDetector, locate_face};
use sonic_media::image::{
    FaceBox, PortraitOptions, crop, decode_image, preprocess_portrait, square_crop_box,
};
use sonic_media::video::{AudioTrack, Mp4Writer, VideoOptions, VideoSummary};

use super::error::PipelineError;
use super::frames::{FrameRate, FrameSink, frames_for, to_rgb};
use super::memory::{JobShape, MemoryEstimate, estimate};
use super::models::SonicModels;
use super::params::GenerationParams;
use super::progress::{CancellationToken, Progress, ProgressFn, Stage, StageClock};
use super::stages::{StageObserver, Stages};

/// Sonic's face-mask enlargement (`sonic.yaml` `area`).
const MASK_AREA: f64 = 1.1;

/// AAC sample rates the MP4 writer takes as they are (others get the 16 kHz waveform).
const AAC_RATES: [u32; 9] = [
    8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000,
];

/// A named input (the name appears in error messages: a file name or object key).
#[derive(Debug, Clone)]
pub struct NamedBytes {
    /// Key or file name.
    pub name: String,
    /// The file's bytes.
    pub bytes: bytes::Bytes,
}

impl NamedBytes {
    /// Bytes with a name.
    pub fn new(name: impl Into<String>, bytes: impl Into<bytes::Bytes>) -> Self {
        Self {
            name: name.into(),
            bytes: bytes.into(),
        }
    }
}

/// What one render reads.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RenderInputs {
    /// The portrait (PNG, JPEG, WebP).
    pub picture: NamedBytes,
    /// The speech (WAV, MP3, FLAC, AAC/M4A, Ogg Vorbis). Its sound is the video's audio track.
    pub audio: NamedBytes,
    /// Log-mel features to use instead of computing them from the audio (`[80, 3000 K]`,
    /// e.g. a reference run's `input_features`); the lip-sync offset is not applied to them.
    pub features: Option<LogMel>,
    /// Initial noise to use instead of drawing it from the seed, `[1, N, 4, h, w]` (e.g. a
    /// reference run's `latent_noise`).
    pub noise: Option<TensorData>,
}

impl RenderInputs {
    /// A picture and a speech recording.
    pub fn new(picture: NamedBytes, audio: NamedBytes) -> Self {
        Self {
            picture,
            audio,
            features: None,
            noise: None,
        }
    }

    /// Uses these log-mel features instead of computing them.
    pub fn with_features(mut self, features: LogMel) -> Self {
        self.features = Some(features);
        self
    }

    /// Uses this initial noise instead of the seed's.
    pub fn with_noise(mut self, noise: TensorData) -> Self {
        self.noise = Some(noise);
        self
    }
}

/// How a render reports and stops.
pub struct RenderControl<'a> {
    /// Receives progress reports.
    pub progress: Option<ProgressFn>,
    /// Stops the render when cancelled.
    pub cancel: CancellationToken,
    /// Receives intermediate tensors.
    pub stages: Option<&'a mut dyn StageObserver>,
    /// Finds the face when the parameters ask for detection.
    pub face_detector: &'a dyn FaceDetector,
}

/// What a render did.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RenderOutput {
    /// The written video.
    pub video: VideoSummary,
    /// The memory estimate checked before the first step.
    pub estimate: MemoryEstimate,
    /// Frames generated by the model (N, at 12.5 fps).
    pub generated_frames: usize,
    /// Model input size (width, height).
    pub model_size: (u32, u32),
    /// The face box used (in the coordinates of the picture after any crop).
    pub face: FaceBox,
    /// Seconds spent per stage (`preprocess`, `encode_image`, `encode_audio`, `denoise`,
    /// `vae_decode`, `rife`, `video_encode`).
    pub timings: Vec<(String, Duration)>,
}

/// Everything preprocessing derives from the inputs, on the host.
struct Prepared {
    model_width: usize,
    model_height: usize,
    output_size: (u32, u32),
    face: FaceBox,
    ref_image: Vec<f32>,
    face_mask: FaceMask,
    clip_pixels: Vec<f32>,
    mel: LogMel,
    timeline: AudioTimeline,
    track: AudioTrack,
    audio_samples: usize,
}

struct Reporter<'a> {
    progress: Option<ProgressFn>,
    cancel: CancellationToken,
    stages: Stages<'a>,
    timings: Vec<(String, Duration)>,
}

impl Reporter<'_> {
    fn report(&self, progress: Progress) {
        if let Some(f) = &self.progress {
            f(&progress);
        }
    }

    fn check_cancelled(&self, stage: Stage) -> Result<(), PipelineError> {
        if self.cancel.is_cancelled() {
            Err(PipelineError::Cancelled { stage })
        } else {
            Ok(())
        }
    }

    /// Runs a one-unit stage with its start and end reports and its timing.
    fn stage<T>(
        &mut self,
        stage: Stage,
        f: impl FnOnce(&mut Self) -> Result<T, PipelineError>,
    ) -> Result<T, PipelineError> {
        self.check_cancelled(stage)?;
        let mut clock = StageClock::new(stage, 1);
        self.report(clock.current());
        let out = f(self)?;
        self.report(clock.advance(1, None, None));
        self.timings
            .push((stage.name().to_owned(), clock.elapsed()));
        Ok(out)
    }
}

fn host<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> TensorData {
    TensorData::new(values, shape)
}

impl<B: Backend> SonicModels<B> {
    /// Generates the video of `inputs` with `params`, writing the MP4 to `sink`.
    ///
    /// Parameters are validated first; the memory estimate is checked against
    /// `params.memory_budget` after preprocessing, before any model runs.
    ///
    /// # Errors
    /// Every [`PipelineError`] of a job except the storage ones; on error the sink may hold
    /// part of a file (write to a temporary file and discard it, as
    /// [`Pipeline::generate`](super::Pipeline::generate) does).
    pub fn render<W: Write>(
        &self,
        params: &GenerationParams,
        inputs: RenderInputs,
        sink: W,
        control: RenderControl<'_>,
    ) -> Result<RenderOutput, PipelineError> {
        params.validate()?;
        let mut reporter = Reporter {
            progress: control.progress,
            cancel: control.cancel,
            stages: Stages::new(control.stages),
            timings: Vec::new(),
        };
        let detector = control.face_detector;
        let RenderInputs {
            picture,
            audio,
            features,
            noise,
        } = inputs;

        let prepared = reporter.stage(Stage::Preprocess, |r| {
            prepare(params, &picture, &audio, features, detector, &mut r.stages)
        })?;
        drop((picture, audio));

        let shape = JobShape {
            width: prepared.model_width,
            height: prepared.model_height,
            frames: prepared.timeline.generated_frames(),
            output_frames: prepared.output_frames(params) as usize,
            output_width: prepared.output_size.0 as usize,
            output_height: prepared.output_size.1 as usize,
            audio_samples: prepared.audio_samples,
            audio_samples_16k: prepared.timeline.samples(),
            whisper_windows: prepared.mel.n_frames / 3000,
            audio_len: prepared.timeline.audio_len(),
            decode_chunk_size: params.decode_chunk_size,
            interpolation: params.interpolation,
        };
        let estimate = estimate(&self.configs, self.weight_bytes(), self.dtype, &shape);
        tracing::info!(
            total = estimate.total,
            peak_stage = estimate.peak_stage,
            frames = shape.frames,
            width = shape.width,
            height = shape.height,
            "memory estimate"
        );
        if let Some(budget) = params.memory_budget
            && estimate.total > budget
        {
            return Err(PipelineError::MemoryBudget {
                estimate: Box::new(estimate),
                budget,
            });
        }

        let (conditioning, ref_latents) = self.encode(params, &prepared, &mut reporter)?;
        let latents = self.denoise(
            params,
            &prepared,
            conditioning,
            ref_latents,
            noise,
            &mut reporter,
        )?;
        let output_frames = prepared.output_frames(params);
        let video = self.decode(
            params,
            prepared.output_size,
            output_frames,
            prepared.track,
            latents,
            sink,
            &mut reporter,
        )?;
        Ok(RenderOutput {
            video,
            estimate,
            generated_frames: shape.frames,
            model_size: (prepared.model_width as u32, prepared.model_height as u32),
            face: prepared.face,
            timings: reporter.timings,
        })
    }

    /// CLIP, VAE encoding and the audio conditioning.
    fn encode(
        &self,
        params: &GenerationParams,
        prepared: &Prepared,
        reporter: &mut Reporter<'_>,
    ) -> Result<(Conditioning<B>, Tensor<B, 4>), PipelineError> {
        let device = &self.device;
        let (w, h) = (prepared.model_width, prepared.model_height);
        let (embeds, ref_latents, image_latents) = reporter.stage(Stage::EncodeImage, |r| {
            let pixels = Tensor::<B, 4>::from_data(
                host(prepared.clip_pixels.clone(), [1, 3, 224, 224]),
                (device, DType::F32),
            );
            let embeds = self.clip.forward(pixels)?.image_embeds; // [1, clip_dim]
            r.stages.tensor("clip_image_embeds", || embeds.clone());
            let ref_img = Tensor::<B, 4>::from_data(
                host(prepared.ref_image.clone(), [1, 3, h, w]),
                (device, DType::F32),
            );
            let latents = self.vae.encode(ref_img)?;
            r.stages.tensor("vae_encode_mean", || latents.mean.clone());
            let ref_latents = latents.mean.clone().mul_scalar(self.vae.scaling_factor()); // [1, 4, h/8, w/8]
            r.stages.tensor("ref_image_latents", || ref_latents.clone());
            Ok((embeds, ref_latents, latents.mode()))
        })?;

        let conditioning = reporter.stage(Stage::EncodeAudio, |r| {
            let mel = &prepared.mel;
            let mel = Tensor::<B, 2>::from_data(
                host(mel.data.clone(), [mel.n_mels, mel.n_frames]),
                (device, DType::F32),
            );
            let states = self.audio.encode(
                mel,
                prepared.timeline.audio_len(),
                &AudioWindowConfig::sonic(),
            )?;
            let frames = states.num_frames();
            r.stages.tensor("whisper_hidden_states_used", || {
                states.hidden_states().unsqueeze_dim::<4>(0)
            });
            r.stages
                .tensor("audio2token_input", || states.token_windows(0..frames));
            r.stages
                .tensor("audio2bucket_input", || states.bucket_windows(0..frames));
            let audio = self.audio.condition(&states, embeds.clone())?;
            drop(states);
            r.stages
                .tensor("audio_tokens_cond", || audio.tokens.clone());
            r.stages
                .tensor("audio_tokens_uncond", || audio.uncond_tokens());
            r.stages
                .tensor("audio2bucket_raw", || audio.buckets_raw.clone());
            let buckets = audio.motion_buckets(); // [N, 2, 1]
            r.stages.tensor("motion_buckets", || buckets.clone());
            let buckets = buckets
                .cast(DType::F32)
                .into_data()
                .into_vec::<f32>()
                .expect("cast to f32");
            // Sonic's `motion_buckets * motion_bucket_scale`; motion_scale scales the head only.
            let head = params.dynamic_scale * params.motion_scale;
            let scaled: Vec<[f32; 2]> = buckets
                .chunks_exact(2)
                .map(|b| [b[0] * head, b[1] * params.dynamic_scale])
                .collect();
            r.stages.data(
                "motion_buckets_scaled",
                host(
                    scaled.iter().flatten().copied().collect(),
                    [frames, 1, 2, 1],
                ),
            );
            let [tokens, dim] = audio.null_tokens.dims();
            let conditioning = Conditioning::new(
                cast_to(embeds.clone(), self.dtype),
                cast_to(audio.tokens, self.dtype),
                cast_to(audio.null_tokens.reshape([1, tokens, dim]), self.dtype),
                cast_to(image_latents, self.dtype),
                scaled,
            )?;
            r.stages
                .tensor("image_latents", || conditioning.image_latents_cfg());
            r.stages.tensor("image_embeddings_cfg", || {
                conditioning.image_embeddings_cfg()
            });
            r.stages
                .tensor("audio_prompts_cfg", || conditioning.audio_prompts_cfg());
            Ok(conditioning)
        })?;
        Ok((conditioning, cast_to(ref_latents, self.dtype)))
    }

    /// Initial latents and the shifted-window loop.
    fn denoise(
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
        reporter
            .stages
            .data("timesteps", host(scheduler.timesteps().to_vec(), [steps]));
        reporter.stages.data(
            "guidance_scale1",
            host(vec![params.image_guidance; steps], [steps]),
        );
        reporter.stages.data(
            "guidance_scale2",
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
        reporter.stages.tensor("latent_noise", || noise.clone());
        let latents = initial_latents(
            &scheduler,
            ref_latents,
            frames,
            NoiseSource::Injected(noise),
        )?;
        reporter
            .stages
            .tensor("initial_latents", || latents.clone());

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
        let mut model = UNetDenoiser {
            unet: &self.unet,
            mask: &prepared.face_mask,
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

    /// VAE decoding, RIFE and encoding, one chunk of frames at a time.
    #[allow(clippy::too_many_arguments)]
    fn decode<W: Write>(
        &self,
        params: &GenerationParams,
        output_size: (u32, u32),
        output_frames: u64,
        track: AudioTrack,
        latents: Tensor<B, 5>,
        sink: W,
        reporter: &mut Reporter<'_>,
    ) -> Result<VideoSummary, PipelineError> {
        reporter.check_cancelled(Stage::Decode)?;
        let [_, frames, channels, h, w] = latents.dims();
        let latents = latents.reshape([frames, channels, h, w]);
        let frame_size = ((w * 8) as u32, (h * 8) as u32);
        let native_frames = if params.interpolation {
            2 * frames - 1
        } else {
            frames
        };
        let rate = FrameRate::new(params.native_fps(), params.output_fps(), output_frames);
        let writer = Mp4Writer::new(
            sink,
            output_size.0,
            output_size.1,
            &VideoOptions {
                fps: params.output_fps(),
                ..VideoOptions::default()
            },
            Some(track),
        )?;
        let mut sink = FrameSink::new(writer, frame_size, output_size, rate, native_frames);
        let mut interpolator = params
            .interpolation
            .then(|| FrameInterpolator::new(self.rife.clone()));
        // RIFE is loaded in f32, as Sonic keeps it.
        let rife_dtype = DType::F32;

        let chunk_size = NonZeroUsize::new(params.decode_chunk_size).expect("validated >= 1");
        let mut clock = StageClock::new(Stage::Decode, frames as u64);
        reporter.report(clock.current());
        let (mut vae_time, mut rife_time, mut encode_time) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut chunks = self.vae.decode_latents_chunked(latents, chunk_size)?;
        loop {
            reporter.check_cancelled(Stage::Decode)?;
            let started = Instant::now();
            let Some(chunk) = chunks.next() else { break };
            // `decode_latents` casts to f32, then `test()` maps [-1, 1] to [0, 1].
            let decoded = chunk
                .frames
                .cast(DType::F32)
                .mul_scalar(0.5)
                .add_scalar(0.5)
                .clamp(0.0, 1.0); // [len, 3, H, W]
            let len = decoded.dims()[0];
            reporter.stages.tensor("decoded_frames", || decoded.clone());
            vae_time += started.elapsed();
            for i in 0..len {
                let frame = decoded.clone().narrow(0, i, 1); // [1, 3, H, W]
                let out = match interpolator.as_mut() {
                    Some(rife) => {
                        let started = Instant::now();
                        let out = rife.push(cast_to(frame, rife_dtype))?;
                        if out.len() == 2 {
                            reporter
                                .stages
                                .tensor("rife_middle_frames", || out[0].clone());
                        }
                        rife_time += started.elapsed();
                        out
                    }
                    None => vec![frame],
                };
                let started = Instant::now();
                for frame in out {
                    sink.push(to_rgb(frame))?;
                }
                encode_time += started.elapsed();
            }
            reporter.report(clock.advance((chunk.start + len) as u64, None, None));
        }
        let started = Instant::now();
        let summary = sink.finish()?;
        encode_time += started.elapsed();
        debug_assert_eq!(summary.frames, output_frames);
        reporter.timings.extend([
            ("vae_decode".to_owned(), vae_time),
            ("rife".to_owned(), rife_time),
            ("video_encode".to_owned(), encode_time),
        ]);
        Ok(summary)
    }
}

impl Prepared {
    /// Frames of the written video: enough to cover the audio used (within half a frame).
    /// Sonic writes `2N - 1` frames and cuts the audio to them (`ffmpeg -shortest`), losing
    /// up to 120 ms of the end; here the last frame is held instead.
    fn output_frames(&self, params: &GenerationParams) -> u64 {
        let capped = (DEFAULT_STEP_CAP * SAMPLES_PER_STEP) as f64 / f64::from(SAMPLE_RATE);
        let seconds = (self.timeline.samples() as f64 / f64::from(SAMPLE_RATE)).min(capped);
        frames_for(seconds, params.output_fps())
    }
}

/// Host-side preprocessing of both inputs.
fn prepare(
    params: &GenerationParams,
    picture: &NamedBytes,
    audio: &NamedBytes,
    features: Option<LogMel>,
    detector: &dyn FaceDetector,
    stages: &mut Stages<'_>,
) -> Result<Prepared, PipelineError> {
    // Audio: the file's own samples for the track, 16 kHz for the model.
    let decoded = decode_audio(&audio.bytes, &audio.name)?;
    let waveform = resample(&decoded.samples, decoded.sample_rate, SAMPLE_RATE)?;
    let timeline = AudioTimeline::new(
        waveform.len(),
        &TimelineOptions {
            max_duration: params.duration,
            lip_sync_offset: params.lip_sync_offset,
            ..TimelineOptions::default()
        },
    )?;
    if timeline.generated_frames() == 0 {
        return Err(PipelineError::AudioTooShort {
            name: audio.name.clone(),
            seconds: timeline.samples() as f64 / f64::from(SAMPLE_RATE),
            min_seconds: 0.08,
        });
    }
    let mel = match features {
        Some(features) => features,
        None => LogMelExtractor::whisper().extract(&timeline.model_waveform(&waveform)),
    };
    stages.data(
        "input_features",
        host(mel.data.clone(), [mel.n_mels, mel.n_frames]),
    );
    let audio_samples = decoded.samples.len();
    let track = if AAC_RATES.contains(&decoded.sample_rate) {
        AudioTrack::mono(decoded.samples, decoded.sample_rate)
    } else {
        AudioTrack::mono(waveform, SAMPLE_RATE)
    };

    // Picture: face, optional square crop around it, model-size tensors.
    let image = decode_image(&picture.bytes, &picture.name)?;
    let face = locate_face(&image, &picture.name, detector, params.face.region())?;
    let (image, face) = if params.crop {
        let (w, h) = image.dimensions();
        let crop_box = square_crop_box(&face, params.expand_ratio, w, h)?;
        let cropped = crop(&image, crop_box)?;
        // The crop's clamped origin; the box moves with the picture.
        let (x0, y0) = (
            crop_box.x1.clamp(0, i64::from(w)) as f64,
            crop_box.y1.clamp(0, i64::from(h)) as f64,
        );
        let face = FaceBox::new(face.x - x0, face.y - y0, face.width, face.height);
        (cropped, face)
    } else {
        (image, face)
    };
    let output_size = (image.width() & !1, image.height() & !1);
    let portrait = preprocess_portrait(
        &image,
        &face,
        &PortraitOptions {
            min_resolution: params.min_resolution,
            mask_area: MASK_AREA,
        },
    )?;
    let (width, height) = (portrait.width as usize, portrait.height as usize);
    stages.data(
        "ref_img",
        host(portrait.ref_image.clone(), [3, height, width]),
    );
    stages.data(
        "face_mask",
        host(portrait.face_mask.clone(), [3, height, width]),
    );
    let face_mask = FaceMask::new(portrait.face_mask[..width * height].to_vec(), height, width)?;
    Ok(Prepared {
        model_width: width,
        model_height: height,
        output_size: if params.keep_resolution {
            output_size
        } else {
            (portrait.width, portrait.height)
        },
        face,
        ref_image: portrait.ref_image,
        face_mask,
        clip_pixels: portrait.clip_pixels,
        mel,
        timeline,
        track,
        audio_samples,
    })
}

/// State shared by the denoiser and the loop observer.
struct LoopState<'r, 'a> {
    reporter: &'r mut Reporter<'a>,
    clock: StageClock,
}

/// The UNet with the face mask, as the sampler's model.
struct UNetDenoiser<'s, 'r, 'a, B: Backend> {
    unet: &'s UNet<B>,
    mask: &'s FaceMask,
    state: &'s RefCell<LoopState<'r, 'a>>,
}

impl<B: Backend> Denoiser<B> for UNetDenoiser<'_, '_, '_, B> {
    type Error = Infallible;

    fn predict_v(&mut self, input: WindowInput<B>) -> Result<Tensor<B, 5>, Infallible> {
        let mut state = self.state.borrow_mut();
        let stages = &mut state.reporter.stages;
        let plan = &input.plan;
        let frames = plan.len();
        stages.data(
            "window_frame_indices",
            TensorData::new(
                plan.frame_indices.iter().map(|&i| i as i64).collect(),
                [frames],
            ),
        );
        stages.data(
            "window_index_start",
            TensorData::new(vec![plan.index_start], [1]),
        );
        stages.data("window_timestep", host(vec![input.timestep], [1]));
        stages.tensor("window_added_time_ids", || input.added_time_ids.clone());
        stages.tensor("window_clip_context", || input.clip_context.clone());
        stages.tensor("window_audio_context", || input.audio_context.clone());
        let device = input.sample.device();
        let timestep = Tensor::<B, 1>::from_data(
            TensorData::new(vec![input.timestep], [1]),
            (&device, DType::F32),
        );
        let out = self.unet.forward(
            input.sample,
            timestep,
            input.clip_context,
            input.audio_context,
            input.added_time_ids,
            Some(self.mask),
        ); // [3, f, 4, h, w]
        stages.tensor("window_unet_output", || out.clone());
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
        stages.tensor("window_v_guided", || {
            done.v_guided.clone().squeeze_dim::<4>(0)
        });
        stages.tensor("window_latents_after_step", || {
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
        let name = format!("latents_after_step_{step}");
        state.reporter.stages.tensor(&name, || latents.clone());
    }
}
