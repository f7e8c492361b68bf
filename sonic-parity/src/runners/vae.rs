//! The `autoencoder_kl_temporal_decoder` case (SVD-xt VAE): encode, then decode one clip.

use burn::prelude::Backend;
use burn::tensor::Tensor;

use crate::{Case, ParityError, ParityOptions, ParityReport};
use sonic_core::models::vae::load_vae;
use sonic_core::weights::LoadOptions;

pub(super) fn vae<B: Backend>(
    case: &Case,
    device: &B::Device,
    options: &ParityOptions,
    report: &mut ParityReport,
) -> Result<(), ParityError> {
    let load_options = LoadOptions {
        dtype: options.dtype,
    };
    // The real loader: config.json + diffusion_pytorch_model.fp16.safetensors of `vae/`.
    let (model, _) = load_vae::<B>(case.file("vae"), load_options, device)?;
    let component = |e: sonic_core::models::vae::VaeError| ParityError::Component(e.to_string());

    let image: Tensor<B, 4> = case.input("image", device)?;
    let latents = model.encode(image).map_err(component)?;
    report.check_tensor(case, "latent_mean", latents.mean.clone())?;
    report.check_tensor(case, "latent_mode", latents.mode())?;
    report.check_tensor(case, "latent_logvar", latents.logvar)?;

    // One clip of all the stored frames, as `vae.decode(z, num_frames=len(z))`.
    let z: Tensor<B, 4> = case.input("z", device)?;
    let num_frames = z.dims()[0];
    let decoded = model.decode(z, num_frames).map_err(component)?;
    report.check_tensor(case, "decoded", decoded)?;
    Ok(())
}
