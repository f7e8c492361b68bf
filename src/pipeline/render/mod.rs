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
//!
//! One module per stage: [`prepare`] (1), [`condition`] (2, 3), [`denoise`] (4), [`decode`]
//! (5); this one holds the inputs, the control, the output and the order.

mod condition;
mod decode;
mod denoise;
mod prepare;

use std::io::Write;
use std::time::Duration;

use burn::prelude::Backend;
use burn::tensor::TensorData;
use sonic_media::audio::LogMel;
use sonic_media::face::FaceDetector;
use sonic_media::image::FaceBox;
use sonic_media::video::VideoSummary;

use super::error::PipelineError;
use super::memory::{JobShape, MemoryEstimate, estimate, estimate_inputs};
use super::models::SonicModels;
use super::params::GenerationParams;
use super::progress::{CancellationToken, Progress, ProgressFn, Stage, StageClock};
use super::stages::{StageObserver, Stages};
use prepare::{prepare, read_headers};

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

/// How a render reports and stops: build it with [`RenderControl::new`] and the `with_*`
/// steps.
///
/// ```no_run
/// # fn f(detector: &dyn sonic_media::face::FaceDetector) {
/// use sonic::pipeline::{CancellationToken, RenderControl, StageRecorder};
///
/// let mut recorder = StageRecorder::all();
/// let control = RenderControl::new(detector)
///     .with_cancel(CancellationToken::new())
///     .with_stages(Some(&mut recorder));
/// # }
/// ```
#[non_exhaustive]
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

impl<'a> RenderControl<'a> {
    /// A render that finds faces with `face_detector`, reports nothing, records nothing and
    /// runs until done.
    pub fn new(face_detector: &'a dyn FaceDetector) -> Self {
        Self {
            progress: None,
            cancel: CancellationToken::new(),
            stages: None,
            face_detector,
        }
    }

    /// Reports progress to `progress` (`None`: to nobody).
    pub fn with_progress(mut self, progress: impl Into<Option<ProgressFn>>) -> Self {
        self.progress = progress.into();
        self
    }

    /// Stops when `cancel` is cancelled.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Gives intermediate tensors to `stages` (`None`: to nobody).
    pub fn with_stages(mut self, stages: Option<&'a mut dyn StageObserver>) -> Self {
        self.stages = stages;
        self
    }
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
    /// What the user should know about the result, in words (for example that the audio was
    /// cut at the longest duration a job takes). Also recorded in the job's manifest.
    pub warnings: Vec<String>,
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
    /// Parameters are validated first. Then, before any model runs: the inputs' headers
    /// (format, size, rate, declared duration; the cost of decoding them is checked against
    /// `params.memory_budget` before they are decoded), the face box against the picture, the
    /// video size against the encoder, and the job's whole memory estimate against
    /// `params.memory_budget` after preprocessing.
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
            // The headers first: what decoding costs is checked before anything is decoded.
            let headers = read_headers(params, &picture, &audio)?;
            if let Some(budget) = params.memory_budget {
                let pixels = u64::from(headers.picture.width) * u64::from(headers.picture.height);
                let estimate = estimate_inputs(self.weight_bytes(), pixels, headers.audio_bytes());
                if estimate.total > budget {
                    return Err(PipelineError::MemoryBudget {
                        estimate: Box::new(estimate),
                        budget,
                    });
                }
            }
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
            picture_pixels: prepared.picture_pixels,
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
        let warnings = prepared.warnings.clone();
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
            warnings,
        })
    }
}
