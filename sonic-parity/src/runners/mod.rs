//! One runner per component named in a case's `config.json`.
//!
//! A runner loads the case's weights with the real loader, runs the component on the stored
//! inputs and compares every output. Adding a component = one file here + one match arm.

use std::path::Path;

use burn::prelude::Backend;

use super::{Case, ParityError, ParityOptions, ParityReport};

mod audio_adapters;
mod clip;
mod media;
mod pipeline;
mod rife;
mod scheduler;
mod unet;
mod vae;
mod whisper;

/// The component names [`run_case`] knows, as written in `config.json`.
pub fn components() -> &'static [&'static str] {
    &[
        "audio2token",
        "audio2bucket",
        "whisper_encoder",
        "clip_vision_with_projection",
        "euler_discrete_scheduler",
        "rife_ifnet_hdv3",
        "unet_spatio_temporal_condition_with_audio_ip_adapter",
        "ip_adapter_mask_downsample",
        "autoencoder_kl_temporal_decoder",
        "whisper_log_mel",
        "image_preprocess",
        "sonic_pipeline_end_to_end",
    ]
}

/// Runs the case in `dir` on `device` and compares every output with its reference.
///
/// Returns `Ok` with a report whether or not the tolerances hold (see
/// [`ParityReport::passed`]); `Err` when the case cannot be run at all.
pub fn run_case<B: Backend>(
    dir: impl AsRef<Path>,
    device: &B::Device,
    options: &ParityOptions,
) -> Result<ParityReport, ParityError> {
    let case = Case::open(dir)?;
    let mut report = ParityReport::new(&case, B::name(device), options);
    match case.component() {
        "audio2token" => audio_adapters::audio2token::<B>(&case, device, options, &mut report)?,
        "audio2bucket" => audio_adapters::audio2bucket::<B>(&case, device, options, &mut report)?,
        "whisper_encoder" => whisper::whisper_encoder::<B>(&case, device, options, &mut report)?,
        "clip_vision_with_projection" => {
            // The case checks both the preprocessing (media) and the model.
            media::clip_preprocessing(&case, &mut report)?;
            clip::clip_vision_with_projection::<B>(&case, device, options, &mut report)?
        }
        "euler_discrete_scheduler" => {
            scheduler::euler_discrete_scheduler::<B>(&case, device, options, &mut report)?
        }
        "rife_ifnet_hdv3" => rife::rife_ifnet_hdv3::<B>(&case, device, options, &mut report)?,
        "unet_spatio_temporal_condition_with_audio_ip_adapter" => {
            unet::unet::<B>(&case, device, options, &mut report)?
        }
        "ip_adapter_mask_downsample" => unet::mask_downsample(&case, &mut report)?,
        "autoencoder_kl_temporal_decoder" => vae::vae::<B>(&case, device, options, &mut report)?,
        "whisper_log_mel" => media::log_mel(&case, &mut report)?,
        "image_preprocess" => media::image_preprocess(&case, &mut report)?,
        "sonic_pipeline_end_to_end" => {
            pipeline::pipeline_end_to_end::<B>(&case, device, options, &mut report)?
        }
        other => {
            return Err(ParityError::UnknownComponent {
                component: other.to_string(),
                known: components().join(", "),
            });
        }
    }
    Ok(report)
}
