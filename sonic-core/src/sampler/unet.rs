//! The UNet as the sampler's [`Denoiser`]: one window's [`WindowInput`] turned into a
//! [`UNetInput`] with the clip's face mask.

use std::convert::Infallible;

use burn::prelude::Backend;
use burn::tensor::{DType, Tensor, TensorData};

use super::denoise::{Denoiser, WindowInput};
use crate::models::unet::{FaceMask, UNet, UNetInput};

/// The UNet with the face mask of the clip, as the sampler's model (Sonic's `unet(...)` call
/// in `SonicPipeline.__call__`).
#[derive(Debug, Clone, Copy)]
pub struct MaskedUNet<'a, B: Backend> {
    unet: &'a UNet<B>,
    mask: Option<&'a FaceMask>,
}

impl<'a, B: Backend> MaskedUNet<'a, B> {
    /// `unet` with its spatial audio attention masked by `mask`.
    pub fn new(unet: &'a UNet<B>, mask: &'a FaceMask) -> Self {
        Self {
            unet,
            mask: Some(mask),
        }
    }

    /// `unet` without a face mask.
    pub fn unmasked(unet: &'a UNet<B>) -> Self {
        Self { unet, mask: None }
    }

    /// The UNet's input for one window: the timestep as an f32 `[1]` tensor on the sample's
    /// device, the rest as the sampler built it.
    ///
    /// # Shapes
    /// As [`WindowInput`] (batch 3: the guidance branches) and [`UNetInput`].
    pub fn unet_input(&self, input: WindowInput<B>) -> UNetInput<'a, B> {
        let device = input.sample.device();
        let timestep = Tensor::<B, 1>::from_data(
            TensorData::new(vec![input.timestep], [1]),
            (&device, DType::F32),
        );
        let unet_input = UNetInput::new(
            input.sample,
            timestep,
            input.clip_context,
            input.audio_context,
            input.added_time_ids,
        );
        match self.mask {
            Some(mask) => unet_input.with_face_mask(mask),
            None => unet_input,
        }
    }
}

impl<B: Backend> Denoiser<B> for MaskedUNet<'_, B> {
    type Error = Infallible;

    fn predict_v(&mut self, input: WindowInput<B>) -> Result<Tensor<B, 5>, Infallible> {
        Ok(self.unet.forward(self.unet_input(input)))
    }
}
