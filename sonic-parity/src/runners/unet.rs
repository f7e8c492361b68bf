//! UNet and face-mask resampling cases.

use burn::prelude::Backend;
use burn::tensor::Tensor;
use serde::Deserialize;

use crate::{Case, HostTensor, ParityError, ParityOptions, ParityReport};
use sonic_core::models::unet::{FaceMask, UNetConfig, UNetInput, load_unet};
use sonic_core::weights::LoadOptions;

/// `add_ip_adapters(unet, num_adapter_embeds, scale)` as recorded in the case config.
#[derive(Deserialize)]
struct IpAdapterSettings {
    num_adapter_embeds: Vec<usize>,
    scale: Vec<f64>,
}

#[derive(Deserialize)]
struct UNetCaseConfig {
    add_ip_adapters: IpAdapterSettings,
}

fn invalid(case: &Case, message: String) -> ParityError {
    ParityError::Invalid {
        file: case.file("config.json"),
        message,
    }
}

pub(super) fn unet<B: Backend>(
    case: &Case,
    device: &B::Device,
    options: &ParityOptions,
    report: &mut ParityReport,
) -> Result<(), ParityError> {
    let settings: UNetCaseConfig = case.module_config()?;
    let adapters = settings.add_ip_adapters;
    let (&audio_tokens, &audio_scale) = match (
        adapters.num_adapter_embeds.as_slice(),
        adapters.scale.as_slice(),
    ) {
        ([tokens], [scale]) => (tokens, scale),
        _ => {
            return Err(invalid(
                case,
                "`add_ip_adapters`: exactly one audio adapter is supported".into(),
            ));
        }
    };
    let config = UNetConfig::from_diffusers_file(case.file("unet/config.json"))?
        .with_audio_tokens(audio_tokens)
        .with_audio_scale(audio_scale);
    let (model, _) = load_unet::<B>(
        &config,
        case.file("unet.pth"),
        LoadOptions {
            dtype: options.dtype,
        },
        device,
    )?;

    let cast = |t: Tensor<B, 3>| match options.dtype {
        Some(dtype) => t.cast(dtype),
        None => t,
    };
    let sample: Tensor<B, 5> = case.input("sample", device)?;
    let sample = options.dtype.map_or(sample.clone(), |d| sample.cast(d));
    let timestep: Tensor<B, 1> = case.input("timestep", device)?;
    let clip = cast(case.input("clip_context", device)?);
    let audio = cast(case.input("audio_context", device)?);
    let added_time_ids: Tensor<B, 2> = case.input("added_time_ids", device)?;
    let mask = FaceMask::from_tensor(case.input::<B, 4>("ip_adapter_mask", device)?)
        .map_err(|e| invalid(case, format!("`ip_adapter_mask`: {e}")))?;

    let (output, trace) = model.forward_traced(
        UNetInput::new(sample, timestep, clip, audio, added_time_ids).with_face_mask(&mask),
    );
    report.check_tensor(case, "output", output)?;
    report.check_tensor(case, "debug_time_embedding", trace.time_embedding)?;
    report.check_tensor(case, "debug_add_embedding", trace.add_embedding)?;
    report.check_tensor(case, "debug_mid_block", trace.mid_block)?;
    // The case records every down block and the first up block; check whatever it has.
    let stages = trace
        .down_blocks
        .into_iter()
        .enumerate()
        .map(|(i, t)| (format!("debug_down_block_{i}"), t))
        .chain(
            trace
                .up_blocks
                .into_iter()
                .enumerate()
                .map(|(i, t)| (format!("debug_up_block_{i}"), t)),
        );
    for (name, tensor) in stages {
        if case.tensor(&name).is_ok() {
            report.check_tensor(case, &name, tensor)?;
        }
    }
    Ok(())
}

/// One `IPAdapterMaskProcessor.downsample` call of the case config.
#[derive(Deserialize)]
struct DownsampleCall {
    mask: String,
    num_queries: usize,
    batch_size: usize,
    value_embed_dim: usize,
    output: String,
}

#[derive(Deserialize)]
struct MaskDownsampleConfig {
    calls: Vec<DownsampleCall>,
}

pub(super) fn mask_downsample(case: &Case, report: &mut ParityReport) -> Result<(), ParityError> {
    let config: MaskDownsampleConfig = case.module_config()?;
    for call in &config.calls {
        let input = case.tensor(&call.mask)?;
        let [_, height, width] = input.shape[..] else {
            return Err(invalid(
                case,
                format!(
                    "`{}` has shape {:?}, expected (1, H, W)",
                    call.mask, input.shape
                ),
            ));
        };
        let mask = FaceMask::new(input.to_f32_vec(), height, width)
            .map_err(|e| invalid(case, format!("`{}`: {e}", call.mask)))?;
        // The reference repeats the per-token values over the batch and the channels.
        let tokens = mask.downsample(call.num_queries);
        let mut values = Vec::with_capacity(call.batch_size * tokens.len() * call.value_embed_dim);
        for _ in 0..call.batch_size {
            for &v in &tokens {
                values.extend(std::iter::repeat_n(v, call.value_embed_dim));
            }
        }
        let got = HostTensor::f32(
            vec![call.batch_size, call.num_queries, call.value_embed_dim],
            values,
        );
        report.check(case, &call.output, &got)?;
    }
    Ok(())
}
