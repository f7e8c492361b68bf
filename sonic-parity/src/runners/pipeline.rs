//! The `sonic_pipeline_end_to_end` case: the whole pipeline ([`SonicModels::render`]) on the
//! case's portrait and speech, with the settings, weights and injected tensors its
//! `config.json` and `io.safetensors` name, compared stage by stage.
//!
//! From `config.json` `config`: `weights` (paths relative to the case directory),
//! `component_configs` (`audio2token`, `audio2bucket`, `rife`: the settings their checkpoints
//! do not carry), `image_wh` (the model size, checked), `min_resolution`, `face_bbox_xywh`
//! (absent: the face detector runs), `inference_steps`, `dynamic_scale`, `seed`, and from
//! `sonic_yaml_after_process_overrides` the guidance scales, `shift_offset`,
//! `decode_chunk_size` and `use_interframe`. Settings the pipeline cannot change
//! (`n_sample_frames`, `noise_aug_strength` ...) must have the values it implements.
//!
//! `latent_noise` and `input_features`, when the case holds them, replace the seed's noise
//! and the computed log-mel features (see `RenderInputs`). Every tensor of `io.safetensors`
//! is then compared with what the run produced (the stage-observer records, laid out as the
//! reference stores them); an expected tensor the run did not produce fails the report. The
//! written MP4 is checked too (container, size, audio track, duration).

use std::collections::BTreeSet;
use std::io::Cursor;
use std::path::Path;

use burn::prelude::Backend;
use burn::tensor::{DType, TensorData};
use serde::Deserialize;
use sonic::pipeline::{
    FRAMES_PER_WINDOW, FaceSpec, GenerationParams, NamedBytes, RenderControl, RenderInputs,
    RenderOutput, SonicModels, StageRecorder, WeightsLayout,
};
use sonic_core::models::audio_adapters::{Audio2BucketConfig, Audio2TokenConfig};
use sonic_core::models::rife::RifeConfig;
use sonic_media::audio::{LogMel, decode_audio};
use sonic_media::face::SeetaFaceDetector;

use crate::{Case, HostTensor, ParityError, ParityOptions, ParityReport};

/// The case's `config` object (what this runner reads of it).
#[derive(Debug, Deserialize)]
struct PipelineCase {
    image_wh: [u32; 2],
    min_resolution: u32,
    #[serde(default)]
    face_bbox_xywh: Option<[f64; 4]>,
    inference_steps: usize,
    dynamic_scale: f32,
    seed: u64,
    #[serde(default)]
    sonic_yaml_after_process_overrides: Overrides,
    weights: Weights,
    component_configs: ComponentConfigs,
}

/// Sonic's `sonic.yaml` as the reference run used it (every entry optional).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Overrides {
    audio_guidance_scale: Option<f32>,
    min_appearance_guidance_scale: Option<f32>,
    max_appearance_guidance_scale: Option<f32>,
    shift_offset: Option<usize>,
    decode_chunk_size: Option<usize>,
    use_interframe: Option<bool>,
    n_sample_frames: Option<usize>,
    overlap: Option<usize>,
    noise_aug_strength: Option<f64>,
    i2i_noise_strength: Option<f64>,
    ip_audio_scale: Option<f64>,
}

/// Weight paths, relative to the case directory.
#[derive(Debug, Deserialize)]
struct Weights {
    whisper: String,
    image_encoder: String,
    vae: String,
    unet: String,
    unet_config: String,
    audio2token: String,
    audio2bucket: String,
    scheduler: String,
    rife: String,
}

/// The settings the checkpoints do not carry, each an object of fields over the released
/// model's (`{"c": 16}` is RIFE with `c` = 16 and the released `scale_list`).
#[derive(Debug, Deserialize)]
struct ComponentConfigs {
    audio2token: serde_json::Value,
    audio2bucket: serde_json::Value,
    rife: serde_json::Value,
}

/// `released` with the fields of `given` (a JSON object) replaced.
fn over<T: serde::Serialize + serde::de::DeserializeOwned>(
    case: &Case,
    what: &str,
    released: T,
    given: &serde_json::Value,
) -> Result<T, ParityError> {
    let invalid = |message: String| ParityError::Invalid {
        file: case.file("config.json"),
        message: format!("`config.component_configs.{what}`: {message}"),
    };
    let mut value = serde_json::to_value(released).map_err(|e| invalid(e.to_string()))?;
    let (Some(fields), Some(given)) = (value.as_object_mut(), given.as_object()) else {
        return Err(invalid("not an object".into()));
    };
    for (key, v) in given {
        fields.insert(key.clone(), v.clone());
    }
    serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
}

/// The component configs, resolved.
struct Components {
    audio2token: Audio2TokenConfig,
    audio2bucket: Audio2BucketConfig,
    rife: RifeConfig,
}

impl ComponentConfigs {
    fn resolve(&self, case: &Case) -> Result<Components, ParityError> {
        Ok(Components {
            audio2token: over(
                case,
                "audio2token",
                Audio2TokenConfig::sonic(),
                &self.audio2token,
            )?,
            audio2bucket: over(
                case,
                "audio2bucket",
                Audio2BucketConfig::sonic(),
                &self.audio2bucket,
            )?,
            rife: over(case, "rife", RifeConfig::sonic(), &self.rife)?,
        })
    }
}

impl PipelineCase {
    fn layout(&self, case: &Case) -> Result<WeightsLayout, ParityError> {
        let w = &self.weights;
        let components = self.component_configs.resolve(case)?;
        let mut layout = WeightsLayout::released(case.dir());
        layout.unet = case.file(&w.unet);
        layout.unet_config = case.file(&w.unet_config);
        // The UNet's audio adapter takes the tokens audio2token makes per frame.
        layout.unet_audio_tokens = components.audio2token.context_tokens;
        layout.audio2token = case.file(&w.audio2token);
        layout.audio2token_config = components.audio2token;
        layout.audio2bucket = case.file(&w.audio2bucket);
        layout.audio2bucket_config = components.audio2bucket;
        layout.rife = case.file(&w.rife);
        layout.rife_config = components.rife;
        layout.vae_dir = case.file(&w.vae);
        layout.image_encoder_dir = case.file(&w.image_encoder);
        layout.whisper_dir = case.file(&w.whisper);
        layout.scheduler_config = case.file(&w.scheduler).join("scheduler_config.json");
        Ok(layout)
    }

    fn params(&self, case: &Case) -> Result<GenerationParams, ParityError> {
        let o = &self.sonic_yaml_after_process_overrides;
        let invalid = |message: String| ParityError::Invalid {
            file: case.file("config.json"),
            message,
        };
        // What the pipeline implements and cannot change.
        let fixed: [(&str, Option<f64>, f64); 5] = [
            (
                "n_sample_frames",
                o.n_sample_frames.map(|v| v as f64),
                FRAMES_PER_WINDOW as f64,
            ),
            ("overlap", o.overlap.map(|v| v as f64), 0.0),
            ("noise_aug_strength", o.noise_aug_strength, 0.0),
            ("i2i_noise_strength", o.i2i_noise_strength, 1.0),
            ("ip_audio_scale", o.ip_audio_scale, 1.0),
        ];
        for (name, value, supported) in fixed {
            if let Some(value) = value
                && value != supported
            {
                return Err(invalid(format!(
                    "`sonic_yaml_after_process_overrides.{name}` = {value}: the pipeline \
                     implements only {supported}"
                )));
            }
        }
        let defaults = GenerationParams::default();
        let image_guidance = match (
            o.min_appearance_guidance_scale,
            o.max_appearance_guidance_scale,
        ) {
            (Some(min), Some(max)) if min != max => {
                return Err(invalid(format!(
                    "appearance guidance {min}..{max}: the pipeline uses one value for every \
                     step"
                )));
            }
            (Some(g), _) | (None, Some(g)) => g,
            (None, None) => defaults.image_guidance,
        };
        let face = match self.face_bbox_xywh {
            Some([x, y, width, height]) => FaceSpec::Box {
                x,
                y,
                width,
                height,
            },
            None => FaceSpec::Detect,
        };
        Ok(GenerationParams {
            min_resolution: self.min_resolution,
            inference_steps: self.inference_steps,
            dynamic_scale: self.dynamic_scale,
            seed: self.seed,
            face,
            image_guidance,
            audio_guidance: o.audio_guidance_scale.unwrap_or(defaults.audio_guidance),
            shift_offset: o.shift_offset.unwrap_or(defaults.shift_offset),
            decode_chunk_size: o.decode_chunk_size.unwrap_or(defaults.decode_chunk_size),
            interpolation: o.use_interframe.unwrap_or(defaults.interpolation),
            ..defaults
        })
    }
}

/// The case's input file of one kind: the first file of `config.json` `files` with one of
/// `extensions`.
fn input_file(case: &Case, extensions: &[&str], what: &str) -> Result<NamedBytes, ParityError> {
    let name = case.config()["files"]
        .as_object()
        .and_then(|files| {
            files.keys().find(|name| {
                Path::new(name)
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| extensions.contains(&e.to_ascii_lowercase().as_str()))
            })
        })
        .ok_or_else(|| ParityError::Invalid {
            file: case.file("config.json"),
            message: format!("`files` names no {what} ({})", extensions.join(", ")),
        })?;
    let path = case.file(name);
    let bytes = std::fs::read(&path).map_err(|source| ParityError::Io { file: path, source })?;
    Ok(NamedBytes::new(name.clone(), bytes))
}

/// Where an expected tensor comes from in the run.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// One record of the stage of the same name.
    Once(String),
    /// The stage's records, one per window, stacked on a new first axis (records of shape
    /// `[1]` give `[windows]`).
    PerWindow(String),
    /// The `window_*` stage's records of the first step's windows, stacked.
    FirstStep(String),
    /// Frame chunks `[k, c, h, w]` joined into the reference's video layout
    /// `[1, c, frames, h, w]`.
    Video(String),
    /// The step (`window_step`) or the place within its step (`window_index`) of each window.
    WindowStep,
    /// See [`Source::WindowStep`].
    WindowIndex,
    /// `audio_len`: half the frames of `whisper_hidden_states_used`.
    AudioLen,
    /// `num_frames`: frames generated.
    NumFrames,
    /// `num_final_frames`: frames after interpolation (decoded + RIFE midpoints).
    NumFinalFrames,
    /// `final_fps`: the native frame rate of the output.
    FinalFps,
}

/// Stage whose records count the windows.
const WINDOW_STAGE: &str = "window_index_start";

impl Source {
    fn of(name: &str) -> Self {
        match name {
            "window_step" => Self::WindowStep,
            "window_index" => Self::WindowIndex,
            "audio_len" => Self::AudioLen,
            "num_frames" => Self::NumFrames,
            "num_final_frames" => Self::NumFinalFrames,
            "final_fps" => Self::FinalFps,
            "decoded_frames" | "rife_middle_frames" => Self::Video(name.into()),
            _ => {
                if let Some(rest) = name.strip_prefix("step0_") {
                    Self::FirstStep(format!("window_{rest}"))
                } else if name.starts_with("window_") {
                    Self::PerWindow(name.into())
                } else {
                    Self::Once(name.into())
                }
            }
        }
    }

    /// The stages this source reads.
    fn stages(&self) -> Vec<String> {
        match self {
            Self::Once(s) | Self::PerWindow(s) | Self::Video(s) => vec![s.clone()],
            Self::FirstStep(s) => vec![s.clone(), WINDOW_STAGE.into()],
            Self::WindowStep | Self::WindowIndex => vec![WINDOW_STAGE.into()],
            Self::AudioLen => vec!["whisper_hidden_states_used".into()],
            Self::NumFinalFrames => vec!["decoded_frames".into(), "rife_middle_frames".into()],
            Self::NumFrames | Self::FinalFps => Vec::new(),
        }
    }
}

/// What the run produced.
struct Run<'a> {
    recorder: &'a StageRecorder,
    output: &'a RenderOutput,
    params: &'a GenerationParams,
}

impl Run<'_> {
    fn records(&self, stage: &str) -> Result<&[TensorData], String> {
        match self.recorder.get(stage) {
            [] => Err(format!("stage `{stage}` was not recorded")),
            records => Ok(records),
        }
    }

    fn windows_per_step(&self) -> Result<usize, String> {
        let windows = self.records(WINDOW_STAGE)?.len();
        let steps = self.params.inference_steps;
        if windows % steps != 0 {
            return Err(format!("{windows} windows over {steps} steps"));
        }
        Ok(windows / steps)
    }

    /// The produced tensor for an expected one, or why there is none.
    fn produce(&self, source: &Source) -> Result<HostTensor, String> {
        let int = |values: Vec<usize>| {
            HostTensor::f32(
                vec![values.len()],
                values.into_iter().map(|v| v as f32).collect(),
            )
        };
        Ok(match source {
            Source::Once(stage) => match self.records(stage)? {
                [one] => host(one),
                many => return Err(format!("`{stage}` recorded {} times", many.len())),
            },
            Source::PerWindow(stage) => stack(self.records(stage)?),
            Source::FirstStep(stage) => {
                let per_step = self.windows_per_step()?;
                let records = self.records(stage)?;
                if records.len() < per_step {
                    return Err(format!("`{stage}` recorded {} times", records.len()));
                }
                stack(&records[..per_step])
            }
            Source::Video(stage) => frames_to_video(&concat(self.records(stage)?)?)?,
            Source::WindowStep | Source::WindowIndex => {
                let per_step = self.windows_per_step()?;
                let windows = self.records(WINDOW_STAGE)?.len();
                int((0..windows)
                    .map(|i| {
                        if *source == Source::WindowStep {
                            i / per_step
                        } else {
                            i % per_step
                        }
                    })
                    .collect())
            }
            Source::AudioLen => {
                let states = self.records("whisper_hidden_states_used")?;
                int(vec![states[0].shape[1] / 2])
            }
            Source::NumFrames => int(vec![self.output.generated_frames]),
            Source::NumFinalFrames => {
                let mut frames = 0;
                for stage in ["decoded_frames", "rife_middle_frames"] {
                    if stage == "rife_middle_frames" && !self.params.interpolation {
                        continue;
                    }
                    frames += self
                        .records(stage)?
                        .iter()
                        .map(|r| r.shape[0])
                        .sum::<usize>();
                }
                int(vec![frames])
            }
            Source::FinalFps => HostTensor::f32(vec![1], vec![self.params.native_fps() as f32]),
        })
    }
}

fn values(data: &TensorData) -> Vec<f32> {
    data.clone()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("converted to f32")
}

fn host(data: &TensorData) -> HostTensor {
    HostTensor::f32(data.shape.to_vec(), values(data))
}

/// Same-shaped records on a new first axis; `[1]`-shaped records give `[records]`.
fn stack(records: &[TensorData]) -> HostTensor {
    let mut shape = vec![records.len()];
    if records[0].shape.as_slice() != [1] {
        shape.extend(records[0].shape.iter().copied());
    }
    HostTensor::f32(shape, records.iter().flat_map(values).collect())
}

/// Records joined on their first axis.
fn concat(records: &[TensorData]) -> Result<HostTensor, String> {
    let mut shape = records[0].shape.to_vec();
    if records.iter().any(|r| r.shape[1..] != shape[1..]) {
        return Err("chunks of different shapes".into());
    }
    shape[0] = records.iter().map(|r| r.shape[0]).sum();
    Ok(HostTensor::f32(
        shape,
        records.iter().flat_map(values).collect(),
    ))
}

/// `[frames, c, h, w]` -> `[1, c, frames, h, w]` (the reference's video layout).
fn frames_to_video(frames: &HostTensor) -> Result<HostTensor, String> {
    let [n, c, h, w] = frames.shape[..] else {
        return Err(format!(
            "frames of shape {:?}, expected [frames, c, h, w]",
            frames.shape
        ));
    };
    let src = frames.to_f32_vec();
    let plane = h * w;
    let mut out = vec![0.0; src.len()];
    for f in 0..n {
        for ch in 0..c {
            let from = (f * c + ch) * plane;
            let to = (ch * n + f) * plane;
            out[to..to + plane].copy_from_slice(&src[from..from + plane]);
        }
    }
    Ok(HostTensor::f32(vec![1, c, n, h, w], out))
}

pub(super) fn pipeline_end_to_end<B: Backend>(
    case: &Case,
    device: &B::Device,
    options: &ParityOptions,
    report: &mut ParityReport,
) -> Result<(), ParityError> {
    let settings: PipelineCase = case.module_config()?;
    let params = settings.params(case)?;
    let picture = input_file(case, &["png", "jpg", "jpeg", "webp"], "picture")?;
    let audio = input_file(case, &["wav", "mp3", "flac", "m4a", "aac", "ogg"], "speech")?;
    let audio_secs = match decode_audio(&audio.bytes, &audio.name) {
        Ok(decoded) => decoded.samples.len() as f64 / f64::from(decoded.sample_rate),
        Err(e) => return Err(ParityError::Component(format!("{}: {e}", audio.name))),
    };

    let models = SonicModels::<B>::load(
        &settings.layout(case)?,
        options.dtype.unwrap_or(DType::F32),
        device,
    )?;
    let mut inputs = RenderInputs::new(picture, audio);
    if let Ok(features) = case.tensor("input_features") {
        let [n_mels, n_frames] = features.shape[..] else {
            return Err(ParityError::Invalid {
                file: case.file("io.safetensors"),
                message: format!(
                    "`input_features` has shape {:?}, expected [mels, frames]",
                    features.shape
                ),
            });
        };
        inputs = inputs.with_features(LogMel {
            data: features.to_f32_vec(),
            n_mels,
            n_frames,
        });
    }
    if let Ok(noise) = case.tensor("latent_noise") {
        inputs = inputs.with_noise(TensorData::new(noise.to_f32_vec(), noise.shape.clone()));
    }

    let expected: Vec<(String, Source)> = case
        .tensor_names()
        .map(|name| (name.to_string(), Source::of(name)))
        .collect();
    let stages: BTreeSet<String> = expected.iter().flat_map(|(_, s)| s.stages()).collect();
    let mut recorder = StageRecorder::only(stages);
    let detector = SeetaFaceDetector::bundled()
        .map_err(|e| ParityError::Component(format!("face detector: {e}")))?;
    let mut mp4 = Vec::new();
    let output = models.render(
        &params,
        inputs,
        Cursor::new(&mut mp4),
        RenderControl::new(&detector).with_stages(Some(&mut recorder)),
    )?;

    let run = Run {
        recorder: &recorder,
        output: &output,
        params: &params,
    };
    for (name, source) in &expected {
        match run.produce(source) {
            Ok(got) => report.check(case, name, &got)?,
            Err(why) => report.check_that(name.clone(), false, format!("not produced: {why}")),
        }
    }

    // The video.
    let [width, height] = settings.image_wh;
    report.check_that(
        "model_size",
        output.model_size == (width, height),
        format!("{:?} (case: {width}x{height})", output.model_size),
    );
    let video = &output.video;
    report.check_that(
        "mp4",
        mp4.len() > 8 && &mp4[4..8] == b"ftyp" && mp4.len() as u64 == video.bytes,
        format!("{} bytes, {} reported", mp4.len(), video.bytes),
    );
    let (even_w, even_h) = (width & !1, height & !1);
    report.check_that(
        "video_size",
        (video.width, video.height) == (even_w, even_h),
        format!(
            "{}x{} (expected {even_w}x{even_h})",
            video.width, video.height
        ),
    );
    report.check_that(
        "video_audio_track",
        video.audio_frames > 0,
        format!("{} AAC frames", video.audio_frames),
    );
    let frame = 1.0 / params.output_fps();
    report.check_that(
        "video_duration",
        (video.duration_secs - audio_secs).abs() <= frame,
        format!(
            "{} frames, {:.3} s for {audio_secs:.3} s of speech",
            video.frames, video.duration_secs
        ),
    );
    Ok(())
}
