//! whisper_encoder cases.

use burn::prelude::Backend;
use burn::tensor::Tensor;

use crate::{Case, ParityError, ParityOptions, ParityReport};
use sonic_core::models::whisper::load_whisper_encoder_dir;
use sonic_core::weights::LoadOptions;

/// Runs the encoder loaded from the case's `whisper/` directory (config.json + weights) on
/// `input_features`; compares `hidden_states_stacked` and `last_hidden_state`.
pub(super) fn whisper_encoder<B: Backend>(
    case: &Case,
    device: &B::Device,
    options: &ParityOptions,
    report: &mut ParityReport,
) -> Result<(), ParityError> {
    let (model, _) = load_whisper_encoder_dir::<B>(
        case.file("whisper"),
        LoadOptions {
            dtype: options.dtype,
        },
        device,
    )?;
    let mel: Tensor<B, 3> = case.input("input_features", device)?;
    let output = model
        .forward(mel)
        .map_err(|e| ParityError::Component(e.to_string()))?;
    report.check_tensor(case, "last_hidden_state", output.last_hidden_state())?;
    report.check_tensor(case, "hidden_states_stacked", output.hidden_states)?;
    Ok(())
}
