//! Backward warping by a dense flow (RIFE's `warplayer.warp`).

use burn::prelude::Backend;
use burn::tensor::ops::{GridSampleOptions, GridSamplePaddingMode, InterpolateMode};
use burn::tensor::{Int, Tensor};

/// Samples `image` at `pixel + flow`: bilinear, border padding, corner-aligned grid, the flow
/// normalised by `(size - 1) / 2` (the reference's `grid_sample(..., padding_mode='border',
/// align_corners=True)`; burn's `grid_sample_2d` clamps and weights exactly that way).
///
/// # Shapes
/// - `image`: `[b, c, h, w]`; `flow`: `[b, 2, h, w]` in pixels (x, y); `h, w >= 2`
/// - returns `[b, c, h, w]`
pub fn warp<B: Backend>(image: Tensor<B, 4>, flow: Tensor<B, 4>) -> Tensor<B, 4> {
    let [b, _, h, w] = flow.dims();
    let (dtype, device) = (flow.dtype(), flow.device());
    // torch.linspace(-1, 1, n), built on the device in the flow's dtype.
    let linspace = |n: usize| {
        Tensor::<B, 1, Int>::arange(0..n as i64, &device)
            .float()
            .cast(dtype)
            .mul_scalar(2.0 / (n as f64 - 1.0))
            .sub_scalar(1.0)
    };
    let base_x = linspace(w).reshape([1, 1, w]).expand([b, h, w]);
    let base_y = linspace(h).reshape([1, h, 1]).expand([b, h, w]);
    let flow_x = flow
        .clone()
        .narrow(1, 0, 1)
        .reshape([b, h, w])
        .div_scalar((w as f64 - 1.0) / 2.0);
    let flow_y = flow
        .narrow(1, 1, 1)
        .reshape([b, h, w])
        .div_scalar((h as f64 - 1.0) / 2.0);
    let grid = Tensor::stack::<4>(vec![base_x.add(flow_x), base_y.add(flow_y)], 3); // [b, h, w, 2]
    image.grid_sample_2d(
        grid,
        GridSampleOptions::new(InterpolateMode::Bilinear)
            .with_padding_mode(GridSamplePaddingMode::Border)
            .with_align_corners(true),
    )
}
