//! The RIFE case: one IFNet call (middle frame, flow, mask) and Sonic's interpolation loop.

use burn::prelude::Backend;
use burn::tensor::Tensor;

use crate::{Case, ParityError, ParityOptions, ParityReport};
use sonic_core::models::rife::{FrameInterpolator, RifeConfig, load_rife};
use sonic_core::weights::LoadOptions;

pub(super) fn rife_ifnet_hdv3<B: Backend>(
    case: &Case,
    device: &B::Device,
    options: &ParityOptions,
    report: &mut ParityReport,
) -> Result<(), ParityError> {
    let config: RifeConfig = case.module_config()?;
    let (model, _) = load_rife::<B>(
        &config,
        case.file("flownet.pkl"),
        LoadOptions {
            dtype: options.dtype,
        },
        device,
    )?;
    let frame0: Tensor<B, 4> = case.input("frame0", device)?;
    let frame1: Tensor<B, 4> = case.input("frame1", device)?;
    let out = model.forward(frame0, frame1);
    report.check_tensor(case, "middle", out.merged)?;
    report.check_tensor(case, "flow", out.flow)?;
    report.check_tensor(case, "mask", out.mask)?;

    let clip: Tensor<B, 5> = case.input("clip_video", device)?; // [1, 3, t, h, w]
    let mut interpolator = FrameInterpolator::new(model);
    let mut frames = Vec::new();
    for t in 0..clip.dims()[2] {
        let frame = clip.clone().narrow(2, t, 1).squeeze_dim::<4>(2);
        frames.extend(
            interpolator
                .push(frame)
                .map_err(|e| ParityError::Component(e.to_string()))?,
        );
    }
    report.check_tensor(case, "interpolated_video", Tensor::stack::<5>(frames, 2))?;
    Ok(())
}
