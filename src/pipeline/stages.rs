//! The stage-observer hook: named intermediate tensors of a run, for parity tests and
//! debugging.
//!
//! Names and layouts follow the `pipeline_e2e` reference case
//! (`fixtures/golden/pipeline_e2e/README.md`); tensors recorded once per window or per chunk
//! arrive one call at a time, in execution order:
//!
//! | name | shape | when |
//! |---|---|---|
//! | `ref_img`, `face_mask` | `[3, H, W]` | once |
//! | `input_features` | `[80, 3000 K]` | once |
//! | `whisper_hidden_states_used` | `[1, 2 audio_len, blocks, d]` | once |
//! | `clip_image_embeds` | `[1, clip_dim]` | once |
//! | `audio2token_input` / `audio2bucket_input` | `[N, 10, blocks, d]` / `[N, 50, 1, d]` | once |
//! | `audio_tokens_cond`, `audio_tokens_uncond` | `[N, tokens, dim]` | once |
//! | `audio2bucket_raw`, `motion_buckets` | `[N, 2, 1]` | once |
//! | `motion_buckets_scaled` | `[N, 1, 2, 1]` | once |
//! | `vae_encode_mean`, `ref_image_latents` | `[1, 4, h, w]` | once |
//! | `image_latents` | `[3, 4, h, w]` | once |
//! | `image_embeddings_cfg`, `audio_prompts_cfg` | `[3, N, 1, clip_dim]`, `[3, N, tokens, dim]` | once |
//! | `latent_noise`, `initial_latents` | `[1, N, 4, h, w]` | once |
//! | `timesteps`, `guidance_scale1`, `guidance_scale2` | `[steps]` | once |
//! | `window_frame_indices` (i64) | `[25]` | per window |
//! | `window_index_start` (i64), `window_timestep` | `[1]` | per window |
//! | `window_added_time_ids` | `[3, 3]` | per window |
//! | `window_clip_context`, `window_audio_context` | `[75, 1, clip_dim]`, `[75, tokens, dim]` | per window |
//! | `window_unet_output` | `[3, 25, 4, h, w]` | per window |
//! | `window_v_guided`, `window_latents_after_step` | `[25, 4, h, w]` | per window |
//! | `latents_after_step_{i}` | `[1, N, 4, h, w]` | per step |
//! | `decoded_frames` | `[chunk, 3, H, W]` in `[0, 1]` | per VAE chunk |
//! | `rife_middle_frames` | `[1, 3, H, W]` | per interpolated frame |

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use burn::prelude::Backend;
use burn::tensor::{Tensor, TensorData};

/// An intermediate tensor of a run: its [`StageTensor::name`] is the tensor's key in the
/// `pipeline_e2e` reference case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum StageTensor {
    /// `ref_img`: The preprocessed portrait, `[3, H, W]`.
    RefImg,
    /// `face_mask`: The enlarged face mask, `[3, H, W]`.
    FaceMask,
    /// `input_features`: Whisper log-mel features, `[80, 3000 K]`.
    InputFeatures,
    /// `clip_image_embeds`: CLIP image embedding, `[1, clip_dim]`.
    ClipImageEmbeds,
    /// `vae_encode_mean`: Mean of the VAE posterior of the portrait, `[1, 4, h, w]`.
    VaeEncodeMean,
    /// `ref_image_latents`: The mean scaled by the VAE scaling factor, `[1, 4, h, w]`.
    RefImageLatents,
    /// `whisper_hidden_states_used`: Whisper encoder states used, `[1, 2 audio_len, blocks, d]`.
    WhisperHiddenStatesUsed,
    /// `audio2token_input`: Windows into `audio2token`, `[N, 10, blocks, d]`.
    Audio2TokenInput,
    /// `audio2bucket_input`: Windows into `audio2bucket`, `[N, 50, 1, d]`.
    Audio2BucketInput,
    /// `audio_tokens_cond`: Audio tokens, `[N, tokens, dim]`.
    AudioTokensCond,
    /// `audio_tokens_uncond`: Unconditional audio tokens, `[N, tokens, dim]`.
    AudioTokensUncond,
    /// `audio2bucket_raw`: `audio2bucket` output, `[N, 2, 1]`.
    Audio2BucketRaw,
    /// `motion_buckets`: Motion buckets, `[N, 2, 1]`.
    MotionBuckets,
    /// `motion_buckets_scaled`: Motion buckets scaled by the motion and dynamic scales, `[N, 1, 2, 1]`.
    MotionBucketsScaled,
    /// `image_latents`: Image latents of the three branches, `[3, 4, h, w]`.
    ImageLatents,
    /// `image_embeddings_cfg`: CLIP context of the three branches, `[3, N, 1, clip_dim]`.
    ImageEmbeddingsCfg,
    /// `audio_prompts_cfg`: Audio context of the three branches, `[3, N, tokens, dim]`.
    AudioPromptsCfg,
    /// `timesteps`: The schedule's timesteps, `[steps]`.
    Timesteps,
    /// `guidance_scale1`: Image guidance per step, `[steps]`.
    GuidanceScale1,
    /// `guidance_scale2`: Audio guidance per step, `[steps]`.
    GuidanceScale2,
    /// `latent_noise`: The initial noise, `[1, N, 4, h, w]`.
    LatentNoise,
    /// `initial_latents`: The initial latents, `[1, N, 4, h, w]`.
    InitialLatents,
    /// `window_frame_indices`: Frames of a window (i64), `[25]`, per window.
    WindowFrameIndices,
    /// `window_index_start`: Start of a window (i64), `[1]`, per window.
    WindowIndexStart,
    /// `window_timestep`: Timestep of a window, `[1]`, per window.
    WindowTimestep,
    /// `window_added_time_ids`: Added time ids of a window, `[3, 3]`, per window.
    WindowAddedTimeIds,
    /// `window_clip_context`: CLIP context of a window, `[75, 1, clip_dim]`, per window.
    WindowClipContext,
    /// `window_audio_context`: Audio context of a window, `[75, tokens, dim]`, per window.
    WindowAudioContext,
    /// `window_unet_output`: UNet output of a window, `[3, 25, 4, h, w]`, per window.
    WindowUnetOutput,
    /// `window_v_guided`: Guided velocity of a window, `[25, 4, h, w]`, per window.
    WindowVGuided,
    /// `window_latents_after_step`: Latents of a window after its step, `[25, 4, h, w]`, per window.
    WindowLatentsAfterStep,
    /// `decoded_frames`: Decoded frames in `[0, 1]`, `[chunk, 3, H, W]`, per VAE chunk.
    DecodedFrames,
    /// `rife_middle_frames`: RIFE middle frame, `[1, 3, H, W]`, per interpolated frame.
    RifeMiddleFrames,
    /// `latents_after_step_{i}`: the clip's latents after step `i`, `[1, N, 4, h, w]`, per
    /// step.
    LatentsAfterStep(usize),
}

impl StageTensor {
    /// Every stage recorded once per run or per window/chunk (all but
    /// [`StageTensor::LatentsAfterStep`]), in the order of the table above.
    pub const FIXED: [StageTensor; 33] = [
        Self::RefImg,
        Self::FaceMask,
        Self::InputFeatures,
        Self::ClipImageEmbeds,
        Self::VaeEncodeMean,
        Self::RefImageLatents,
        Self::WhisperHiddenStatesUsed,
        Self::Audio2TokenInput,
        Self::Audio2BucketInput,
        Self::AudioTokensCond,
        Self::AudioTokensUncond,
        Self::Audio2BucketRaw,
        Self::MotionBuckets,
        Self::MotionBucketsScaled,
        Self::ImageLatents,
        Self::ImageEmbeddingsCfg,
        Self::AudioPromptsCfg,
        Self::Timesteps,
        Self::GuidanceScale1,
        Self::GuidanceScale2,
        Self::LatentNoise,
        Self::InitialLatents,
        Self::WindowFrameIndices,
        Self::WindowIndexStart,
        Self::WindowTimestep,
        Self::WindowAddedTimeIds,
        Self::WindowClipContext,
        Self::WindowAudioContext,
        Self::WindowUnetOutput,
        Self::WindowVGuided,
        Self::WindowLatentsAfterStep,
        Self::DecodedFrames,
        Self::RifeMiddleFrames,
    ];

    /// The tensor's key, exactly as in the reference case (`clip_image_embeds`,
    /// `latents_after_step_3` ...).
    pub fn name(self) -> Cow<'static, str> {
        match self {
            Self::RefImg => Cow::Borrowed("ref_img"),
            Self::FaceMask => Cow::Borrowed("face_mask"),
            Self::InputFeatures => Cow::Borrowed("input_features"),
            Self::ClipImageEmbeds => Cow::Borrowed("clip_image_embeds"),
            Self::VaeEncodeMean => Cow::Borrowed("vae_encode_mean"),
            Self::RefImageLatents => Cow::Borrowed("ref_image_latents"),
            Self::WhisperHiddenStatesUsed => Cow::Borrowed("whisper_hidden_states_used"),
            Self::Audio2TokenInput => Cow::Borrowed("audio2token_input"),
            Self::Audio2BucketInput => Cow::Borrowed("audio2bucket_input"),
            Self::AudioTokensCond => Cow::Borrowed("audio_tokens_cond"),
            Self::AudioTokensUncond => Cow::Borrowed("audio_tokens_uncond"),
            Self::Audio2BucketRaw => Cow::Borrowed("audio2bucket_raw"),
            Self::MotionBuckets => Cow::Borrowed("motion_buckets"),
            Self::MotionBucketsScaled => Cow::Borrowed("motion_buckets_scaled"),
            Self::ImageLatents => Cow::Borrowed("image_latents"),
            Self::ImageEmbeddingsCfg => Cow::Borrowed("image_embeddings_cfg"),
            Self::AudioPromptsCfg => Cow::Borrowed("audio_prompts_cfg"),
            Self::Timesteps => Cow::Borrowed("timesteps"),
            Self::GuidanceScale1 => Cow::Borrowed("guidance_scale1"),
            Self::GuidanceScale2 => Cow::Borrowed("guidance_scale2"),
            Self::LatentNoise => Cow::Borrowed("latent_noise"),
            Self::InitialLatents => Cow::Borrowed("initial_latents"),
            Self::WindowFrameIndices => Cow::Borrowed("window_frame_indices"),
            Self::WindowIndexStart => Cow::Borrowed("window_index_start"),
            Self::WindowTimestep => Cow::Borrowed("window_timestep"),
            Self::WindowAddedTimeIds => Cow::Borrowed("window_added_time_ids"),
            Self::WindowClipContext => Cow::Borrowed("window_clip_context"),
            Self::WindowAudioContext => Cow::Borrowed("window_audio_context"),
            Self::WindowUnetOutput => Cow::Borrowed("window_unet_output"),
            Self::WindowVGuided => Cow::Borrowed("window_v_guided"),
            Self::WindowLatentsAfterStep => Cow::Borrowed("window_latents_after_step"),
            Self::DecodedFrames => Cow::Borrowed("decoded_frames"),
            Self::RifeMiddleFrames => Cow::Borrowed("rife_middle_frames"),
            Self::LatentsAfterStep(step) => Cow::Owned(format!("latents_after_step_{step}")),
        }
    }

    /// The stage whose [`StageTensor::name`] is `name` (`None` if no stage has it).
    pub fn from_name(name: &str) -> Option<Self> {
        if let Some(step) = name.strip_prefix("latents_after_step_") {
            return step
                .parse()
                .ok()
                .filter(|s: &usize| s.to_string() == step)
                .map(Self::LatentsAfterStep);
        }
        Self::FIXED.into_iter().find(|stage| stage.name() == name)
    }
}

impl fmt::Display for StageTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Receives named intermediate tensors of a run.
///
/// [`StageObserver::wants`] is asked first: a tensor nobody wants is never read back from the
/// device, so an observer that wants nothing costs nothing.
pub trait StageObserver: Send {
    /// Whether [`StageObserver::record`] should be called for `stage`.
    fn wants(&self, stage: StageTensor) -> bool {
        let _ = stage;
        true
    }

    /// One intermediate tensor (read back to the host, in its compute dtype).
    fn record(&mut self, stage: StageTensor, tensor: TensorData);
}

/// A [`StageObserver`] that keeps everything it is given (or only the stages it was told to
/// keep), in order, by the stage's name (the reference case's key).
#[derive(Debug, Default)]
pub struct StageRecorder {
    only: Option<Vec<String>>,
    /// Every recorded tensor by [`StageTensor::name`], in the order recorded.
    pub tensors: BTreeMap<String, Vec<TensorData>>,
}

impl StageRecorder {
    /// Records every stage.
    pub fn all() -> Self {
        Self::default()
    }

    /// Records only the stages named `names` (their [`StageTensor::name`], e.g. the keys of a
    /// reference case).
    pub fn only<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        Self {
            only: Some(names.into_iter().map(Into::into).collect()),
            tensors: BTreeMap::new(),
        }
    }

    /// Records only `stages`.
    pub fn only_stages(stages: impl IntoIterator<Item = StageTensor>) -> Self {
        Self::only(stages.into_iter().map(|s| s.name().into_owned()))
    }

    /// The tensors recorded under `name` (a [`StageTensor::name`]; empty if none).
    pub fn get(&self, name: &str) -> &[TensorData] {
        self.tensors.get(name).map_or(&[], Vec::as_slice)
    }

    /// The tensors recorded for `stage` (empty if none).
    pub fn stage(&self, stage: StageTensor) -> &[TensorData] {
        self.get(&stage.name())
    }
}

impl StageObserver for StageRecorder {
    fn wants(&self, stage: StageTensor) -> bool {
        self.only
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| *n == stage.name()))
    }

    fn record(&mut self, stage: StageTensor, tensor: TensorData) {
        self.tensors
            .entry(stage.name().into_owned())
            .or_default()
            .push(tensor);
    }
}

/// Optional observer plumbing used inside the pipeline.
pub(crate) struct Stages<'a> {
    observer: Option<&'a mut dyn StageObserver>,
}

impl<'a> Stages<'a> {
    pub(crate) fn new(observer: Option<&'a mut dyn StageObserver>) -> Self {
        Self { observer }
    }

    pub(crate) fn wants(&self, stage: StageTensor) -> bool {
        self.observer.as_ref().is_some_and(|o| o.wants(stage))
    }

    /// Records `tensor()` as `stage` if wanted (the closure runs only then).
    pub(crate) fn tensor<B: Backend, const D: usize>(
        &mut self,
        stage: StageTensor,
        tensor: impl FnOnce() -> Tensor<B, D>,
    ) {
        if self.wants(stage) {
            let data = tensor().into_data();
            self.data(stage, data);
        }
    }

    /// Records host data as `stage` if wanted.
    pub(crate) fn data(&mut self, stage: StageTensor, data: TensorData) {
        if let Some(observer) = self.observer.as_mut()
            && observer.wants(stage)
        {
            observer.record(stage, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for stage in StageTensor::FIXED {
            assert_eq!(StageTensor::from_name(&stage.name()), Some(stage));
        }
        let step = StageTensor::LatentsAfterStep(12);
        assert_eq!(step.name(), "latents_after_step_12");
        assert_eq!(StageTensor::from_name("latents_after_step_12"), Some(step));
        assert_eq!(StageTensor::from_name("latents_after_step_012"), None);
        assert_eq!(StageTensor::from_name("latents_after_step_"), None);
        assert_eq!(StageTensor::from_name("nope"), None);
        assert_eq!(
            StageTensor::ClipImageEmbeds.to_string(),
            "clip_image_embeds"
        );
    }

    #[test]
    fn recorder_keeps_only_what_it_was_told() {
        let mut recorder = StageRecorder::only_stages([StageTensor::LatentNoise]);
        assert!(recorder.wants(StageTensor::LatentNoise));
        assert!(!recorder.wants(StageTensor::InitialLatents));
        recorder.record(StageTensor::LatentNoise, TensorData::new(vec![1.0f32], [1]));
        assert_eq!(recorder.get("latent_noise").len(), 1);
        assert_eq!(recorder.stage(StageTensor::LatentNoise).len(), 1);
    }
}
