//! Every model of the pipeline, loaded once from a [`WeightsLayout`] onto one device.

use burn::module::Module;
use burn::prelude::Backend;
use burn::tensor::DType;
use sonic_core::audio_conditioning::AudioModels;
use sonic_core::models::ConfigError;
use sonic_core::models::audio_adapters::{load_audio2bucket, load_audio2token};
use sonic_core::models::clip::{ClipVisionConfig, ClipVisionModelWithProjection, load_clip_vision};
use sonic_core::models::rife::{IfNet, load_rife};
use sonic_core::models::unet::{UNet, UNetConfig, load_unet};
use sonic_core::models::vae::{
    AutoencoderKLTemporalDecoder, AutoencoderKLTemporalDecoderConfig, CONFIG_FILE, load_vae_file,
};
use sonic_core::models::whisper::{WhisperEncoderConfig, load_whisper_encoder};
use sonic_core::sampler::SchedulerConfig;
use sonic_core::weights::{LoadError, LoadOptions};

use super::component::Component;
use super::error::PipelineError;
use super::weights::WeightsLayout;

/// The configurations the models were built from (for the memory estimate and reports).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ModelConfigs {
    /// The UNet.
    pub unet: UNetConfig,
    /// The VAE.
    pub vae: AutoencoderKLTemporalDecoderConfig,
    /// The CLIP vision tower.
    pub clip: ClipVisionConfig,
    /// The Whisper encoder.
    pub whisper: WhisperEncoderConfig,
    /// The Euler/EDM schedule.
    pub scheduler: SchedulerConfig,
    /// RIFE's block width.
    pub rife_c: usize,
}

/// Sonic's models on one device.
///
/// UNet, VAE and CLIP are loaded in the chosen dtype (`Sonic.__init__` casts them to its
/// `weight_dtype`); Whisper, the audio adapters and RIFE stay in f32, as in Sonic.
#[derive(Debug)]
#[non_exhaustive]
pub struct SonicModels<B: Backend> {
    /// Whisper-tiny, audio2token, audio2bucket.
    pub audio: AudioModels<B>,
    /// CLIP ViT-H/14 with projection.
    pub clip: ClipVisionModelWithProjection<B>,
    /// SVD-xt's temporal VAE.
    pub vae: AutoencoderKLTemporalDecoder<B>,
    /// Sonic's UNet.
    pub unet: UNet<B>,
    /// RIFE HDv3.
    pub rife: IfNet<B>,
    /// The configurations.
    pub configs: ModelConfigs,
    /// The dtype of UNet, VAE and CLIP.
    pub dtype: DType,
    /// The device.
    pub device: B::Device,
}

fn load<T>(
    component: Component,
    result: Result<(T, sonic_core::weights::LoadReport), LoadError>,
) -> Result<T, PipelineError> {
    let (model, report) = result.map_err(|source| PipelineError::Load { component, source })?;
    tracing::info!(
        %component,
        file = %report.file.display(),
        tensors = report.loaded,
        "loaded"
    );
    Ok(model)
}

fn config<T>(component: Component, result: Result<T, LoadError>) -> Result<T, PipelineError> {
    result.map_err(|source| PipelineError::Load { component, source })
}

impl<B: Backend> SonicModels<B> {
    /// Loads every model of `layout` onto `device`; UNet, VAE and CLIP as `dtype`.
    ///
    /// # Errors
    /// [`PipelineError::Weights`] for a missing file, [`PipelineError::Load`] for a file that
    /// does not load (wrong keys or shapes, corrupt file, bad config).
    pub fn load(
        layout: &WeightsLayout,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self, PipelineError> {
        layout.check()?;
        let files: std::collections::BTreeMap<_, _> =
            layout.checkpoint_files()?.into_iter().collect();
        let model_dtype = LoadOptions::with_dtype(dtype);
        let f32_dtype = LoadOptions::with_dtype(DType::F32);

        let whisper_config = config(
            Component::Whisper,
            WhisperEncoderConfig::from_hf_config(layout.whisper_dir.join("config.json")),
        )?;
        let whisper = load(
            Component::Whisper,
            load_whisper_encoder::<B>(
                &whisper_config,
                &files[&Component::Whisper],
                f32_dtype,
                device,
            ),
        )?;
        let audio2token = load(
            Component::Audio2Token,
            load_audio2token::<B>(
                &layout.audio2token_config,
                &layout.audio2token,
                f32_dtype,
                device,
            ),
        )?;
        let audio2bucket = load(
            Component::Audio2Bucket,
            load_audio2bucket::<B>(
                &layout.audio2bucket_config,
                &layout.audio2bucket,
                f32_dtype,
                device,
            ),
        )?;
        let clip_config = config(
            Component::ImageEncoder,
            ClipVisionConfig::from_hf_config(layout.image_encoder_dir.join("config.json")),
        )?;
        let clip = load(
            Component::ImageEncoder,
            load_clip_vision::<B>(
                &clip_config,
                &files[&Component::ImageEncoder],
                model_dtype,
                device,
            ),
        )?;
        let vae_config = config(
            Component::Vae,
            AutoencoderKLTemporalDecoderConfig::from_diffusers_json(
                layout.vae_dir.join(CONFIG_FILE),
            ),
        )?;
        let vae = load(
            Component::Vae,
            load_vae_file::<B>(&vae_config, &files[&Component::Vae], model_dtype, device),
        )?;
        let unet_config = config(
            Component::Unet,
            UNetConfig::from_diffusers_file(&layout.unet_config),
        )?
        .with_audio_tokens(layout.unet_audio_tokens);
        let unet = load(
            Component::Unet,
            load_unet::<B>(&unet_config, &layout.unet, model_dtype, device),
        )?;
        let rife = load(
            Component::Rife,
            load_rife::<B>(&layout.rife_config, &layout.rife, f32_dtype, device),
        )?;
        let scheduler = SchedulerConfig::from_file(&layout.scheduler_config).map_err(|e| {
            PipelineError::Load {
                component: Component::Scheduler,
                source: LoadError::Config {
                    file: layout.scheduler_config.clone(),
                    source: ConfigError::Scheduler { source: e },
                },
            }
        })?;
        Ok(Self {
            audio: AudioModels {
                whisper,
                audio2token,
                audio2bucket,
            },
            clip,
            vae,
            unet,
            rife,
            configs: ModelConfigs {
                unet: unet_config,
                vae: vae_config,
                clip: clip_config,
                whisper: whisper_config,
                scheduler,
                rife_c: layout.rife_config.c,
            },
            dtype,
            device: device.clone(),
        })
    }

    /// Bytes of every loaded parameter (f32 models at 4 bytes, the others at the dtype's size).
    pub fn weight_bytes(&self) -> u64 {
        let model = self.dtype.size() as u64;
        let f32_params = self.audio.whisper.num_params()
            + self.audio.audio2token.num_params()
            + self.audio.audio2bucket.num_params()
            + self.rife.num_params();
        let model_params = self.clip.num_params() + self.vae.num_params() + self.unet.num_params();
        4 * f32_params as u64 + model * model_params as u64
    }
}
