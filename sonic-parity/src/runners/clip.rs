//! clip_vision_with_projection cases.

use burn::prelude::Backend;
use burn::tensor::Tensor;

use crate::{Case, ParityError, ParityOptions, ParityReport};
use sonic_core::models::clip::load_clip_vision_dir;
use sonic_core::weights::LoadOptions;

/// Runs the vision tower loaded from the case's `image_encoder/` directory on the stored
/// `pixel_values` (the preprocessing is checked separately); compares `image_embeds` and
/// `last_hidden_state`.
pub(super) fn clip_vision_with_projection<B: Backend>(
    case: &Case,
    device: &B::Device,
    options: &ParityOptions,
    report: &mut ParityReport,
) -> Result<(), ParityError> {
    let (model, _) = load_clip_vision_dir::<B>(
        case.file("image_encoder"),
        LoadOptions {
            dtype: options.dtype,
        },
        device,
    )?;
    let pixels: Tensor<B, 4> = case.input("pixel_values", device)?;
    let output = model
        .forward(pixels)
        .map_err(|e| ParityError::Component(e.to_string()))?;
    report.check_tensor(case, "image_embeds", output.image_embeds)?;
    report.check_tensor(case, "last_hidden_state", output.last_hidden_state)?;
    Ok(())
}
