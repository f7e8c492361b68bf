//! Stages 2 and 3: the CLIP embedding and VAE encoding of the portrait, then Whisper, the
//! audio tokens and the motion buckets (scaled by `dynamic_scale` and, for the head bucket,
//! `motion_scale`), gathered into the sampler's [`Conditioning`].

use burn::prelude::Backend;
use burn::tensor::{DType, Tensor};
use sonic_core::audio_conditioning::AudioWindowConfig;
use sonic_core::nn::dtype::cast_to;
use sonic_core::sampler::Conditioning;

use super::prepare::Prepared;
use super::{Reporter, host};
use crate::pipeline::error::PipelineError;
use crate::pipeline::models::SonicModels;
use crate::pipeline::params::GenerationParams;
use crate::pipeline::progress::Stage;
use crate::pipeline::stages::StageTensor;

impl<B: Backend> SonicModels<B> {
    /// CLIP, VAE encoding and the audio conditioning.
    pub(super) fn encode(
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
            r.stages
                .tensor(StageTensor::ClipImageEmbeds, || embeds.clone());
            let ref_img = Tensor::<B, 4>::from_data(
                host(prepared.ref_image.clone(), [1, 3, h, w]),
                (device, DType::F32),
            );
            let latents = self.vae.encode(ref_img)?;
            r.stages
                .tensor(StageTensor::VaeEncodeMean, || latents.mean.clone());
            let ref_latents = latents.mean.clone().mul_scalar(self.vae.scaling_factor()); // [1, 4, h/8, w/8]
            r.stages
                .tensor(StageTensor::RefImageLatents, || ref_latents.clone());
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
            r.stages.tensor(StageTensor::WhisperHiddenStatesUsed, || {
                states.hidden_states().unsqueeze_dim::<4>(0)
            });
            r.stages.tensor(StageTensor::Audio2TokenInput, || {
                states.token_windows(0..frames)
            });
            r.stages.tensor(StageTensor::Audio2BucketInput, || {
                states.bucket_windows(0..frames)
            });
            let audio = self.audio.condition(&states, embeds.clone())?;
            drop(states);
            r.stages
                .tensor(StageTensor::AudioTokensCond, || audio.tokens.clone());
            r.stages
                .tensor(StageTensor::AudioTokensUncond, || audio.uncond_tokens());
            r.stages
                .tensor(StageTensor::Audio2BucketRaw, || audio.buckets_raw.clone());
            let buckets = audio.motion_buckets(); // [N, 2, 1]
            r.stages
                .tensor(StageTensor::MotionBuckets, || buckets.clone());
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
                StageTensor::MotionBucketsScaled,
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
            r.stages.tensor(StageTensor::ImageLatents, || {
                conditioning.image_latents_cfg()
            });
            r.stages.tensor(StageTensor::ImageEmbeddingsCfg, || {
                conditioning.image_embeddings_cfg()
            });
            r.stages.tensor(StageTensor::AudioPromptsCfg, || {
                conditioning.audio_prompts_cfg()
            });
            Ok(conditioning)
        })?;
        Ok((conditioning, cast_to(ref_latents, self.dtype)))
    }
}
