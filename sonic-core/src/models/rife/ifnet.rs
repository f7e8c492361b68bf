//! IFNet HDv3: three coarse-to-fine [`IfBlock`]s estimating the flows from the middle frame to
//! both inputs and a fusion mask.

use burn::module::Module;
use burn::prelude::Backend;
use burn::tensor::Tensor;
use burn::tensor::activation::sigmoid;

use super::ifblock::IfBlock;
use super::warp::warp;

/// IFNet's outputs at the last scale.
#[derive(Debug, Clone)]
pub struct IfNetOutput<B: Backend> {
    /// Flow from the middle frame to frame 0 (channels 0-1) and frame 1 (2-3), in pixels:
    /// `[b, 4, h, w]`.
    pub flow: Tensor<B, 4>,
    /// Weight of warped frame 0 in the blend, `sigmoid(mask)`: `[b, 1, h, w]`.
    pub mask: Tensor<B, 4>,
    /// The middle frame, `warp(f0) * mask + warp(f1) * (1 - mask)`, not clamped: `[b, 3, h, w]`.
    pub merged: Tensor<B, 4>,
}

/// RIFE HDv3's `IFNet` (inference path). The training-only `block_tea` is not part of the
/// module: the loader drops its keys (see [`load_rife`](super::load_rife)).
#[derive(Module, Debug)]
pub struct IfNet<B: Backend> {
    /// Coarsest stage (scale 4 by default).
    pub block0: IfBlock<B>,
    /// Middle stage (scale 2).
    pub block1: IfBlock<B>,
    /// Finest stage (scale 1).
    pub block2: IfBlock<B>,
    scale_list: [f64; 3],
}

impl<B: Backend> IfNet<B> {
    pub(super) fn from_blocks(blocks: [IfBlock<B>; 3], scale_list: [f64; 3]) -> Self {
        let [block0, block1, block2] = blocks;
        Self {
            block0,
            block1,
            block2,
            scale_list,
        }
    }

    /// The stage scales (each stage works at `1/scale` resolution).
    pub fn scale_list(&self) -> [f64; 3] {
        self.scale_list
    }

    /// Estimates the middle frame between `frame0` and `frame1` (`IFNet.forward` with
    /// `training=False`; `RIFEModel.inference` returns `merged`).
    ///
    /// # Shapes
    /// - `frame0`, `frame1`: `[b, 3, h, w]` in `[0, 1]`, `h` and `w` multiples of
    ///   `4 * max(scale_list)` (16 by default)
    /// - returns [`IfNetOutput`] at `[b, _, h, w]`
    pub fn forward(&self, frame0: Tensor<B, 4>, frame1: Tensor<B, 4>) -> IfNetOutput<B> {
        let [b, _, h, w] = frame0.dims();
        let mut flow = Tensor::<B, 4>::zeros([b, 4, h, w], (&frame0.device(), frame0.dtype()));
        let mut mask = Tensor::<B, 4>::zeros([b, 1, h, w], (&frame0.device(), frame0.dtype()));
        let mut warped0 = frame0.clone();
        let mut warped1 = frame1.clone();
        for (block, &scale) in [&self.block0, &self.block1, &self.block2]
            .into_iter()
            .zip(&self.scale_list)
        {
            // The reference runs the block on (0 -> 1) and on the mirrored (1 -> 0) input;
            // both go through as one batch of 2b.
            let forward_in = Tensor::cat(vec![warped0.clone(), warped1.clone(), mask.clone()], 1);
            let mirrored_in = Tensor::cat(vec![warped1, warped0, mask.clone().neg()], 1);
            let input = Tensor::cat(vec![forward_in, mirrored_in], 0); // [2b, 7, h, w]
            let flows = Tensor::cat(vec![flow.clone(), swap_flow(flow.clone())], 0); // [2b, 4, h, w]
            let (delta_flow, delta_mask) = block.forward(input, flows, scale);
            let (f0, f1) = (
                delta_flow.clone().narrow(0, 0, b),
                delta_flow.narrow(0, b, b),
            );
            let (m0, m1) = (
                delta_mask.clone().narrow(0, 0, b),
                delta_mask.narrow(0, b, b),
            );
            flow = flow.add(f0.add(swap_flow(f1)).div_scalar(2.0));
            mask = mask.add(m0.add(m1.neg()).div_scalar(2.0));
            warped0 = warp(frame0.clone(), flow.clone().narrow(1, 0, 2));
            warped1 = warp(frame1.clone(), flow.clone().narrow(1, 2, 2));
        }
        let mask = sigmoid(mask);
        let merged = warped0
            .mul(mask.clone())
            .add(warped1.mul(mask.ones_like().sub(mask.clone())));
        IfNetOutput { flow, mask, merged }
    }
}

/// Exchanges the two flow pairs: `cat(flow[:, 2:4], flow[:, :2])`.
fn swap_flow<B: Backend>(flow: Tensor<B, 4>) -> Tensor<B, 4> {
    Tensor::cat(vec![flow.clone().narrow(1, 2, 2), flow.narrow(1, 0, 2)], 1)
}
