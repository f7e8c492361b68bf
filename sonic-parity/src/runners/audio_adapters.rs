//! audio2token and audio2bucket cases.

use burn::prelude::Backend;
use burn::tensor::Tensor;

use crate::{Case, ParityError, ParityOptions, ParityReport};
use sonic_core::models::audio_adapters::{
    Audio2BucketConfig, Audio2TokenConfig, load_audio2bucket, load_audio2token,
};
use sonic_core::weights::LoadOptions;

fn load_options(options: &ParityOptions) -> LoadOptions {
    LoadOptions {
        dtype: options.dtype,
    }
}

pub(super) fn audio2token<B: Backend>(
    case: &Case,
    device: &B::Device,
    options: &ParityOptions,
    report: &mut ParityReport,
) -> Result<(), ParityError> {
    let config: Audio2TokenConfig = case.module_config()?;
    let (model, _) = load_audio2token::<B>(
        &config,
        case.file("audio2token.pth"),
        load_options(options),
        device,
    )?;
    let window: Tensor<B, 5> = case.input("audio_window", device)?;
    report.check_tensor(case, "tokens", model.forward(window.clone()))?;
    let [batch, _, seq_len, blocks, channels] = window.dims();
    let zeros = Tensor::<B, 5>::zeros([batch, 1, seq_len, blocks, channels], device);
    report.check_tensor(case, "null_tokens", model.forward(zeros))?;
    Ok(())
}

pub(super) fn audio2bucket<B: Backend>(
    case: &Case,
    device: &B::Device,
    options: &ParityOptions,
    report: &mut ParityReport,
) -> Result<(), ParityError> {
    let config: Audio2BucketConfig = case.module_config()?;
    let (model, _) = load_audio2bucket::<B>(
        &config,
        case.file("audio2bucket.pth"),
        load_options(options),
        device,
    )?;
    let window: Tensor<B, 5> = case.input("audio_window", device)?;
    let clip: Tensor<B, 2> = case.input("clip_embeds", device)?;
    report.check_tensor(
        case,
        "bucket_raw",
        model.forward(window.clone(), clip.clone()),
    )?;
    report.check_tensor(
        case,
        "bucket_raw_frame0_sonic_call",
        model.forward(window.clone().narrow(1, 0, 1), clip.clone()),
    )?;
    report.check_tensor(case, "motion_bucket", model.buckets(window, clip))?;
    Ok(())
}
