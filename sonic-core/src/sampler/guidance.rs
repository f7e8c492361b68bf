//! Sonic's three-way classifier-free guidance on the velocity prediction.
//!
//! Reference: Sonic `src/pipelines/pipeline_sonic.py`:
//! `v = v_u + g1 * (v_i - v_u) + g2 * (v_c - v_i)` with `g1 = linspace(min, max, steps)` for
//! the image (constant 2.0 in `sonic.yaml`) and `g2` for the audio (constant 7.5).

use burn::prelude::Backend;
use burn::tensor::Tensor;

use super::conditioning::CFG_BRANCHES;

/// The two guidance scales of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuidanceScales {
    /// `g1`: pull from the unconditional towards the portrait.
    pub image: f32,
    /// `g2`: pull from the portrait-only towards the portrait + audio prediction.
    pub audio: f32,
}

/// Combines the three branch predictions of a window.
///
/// # Shapes
/// - `branches`: `[3, frames, channels, h, w]`, branches in the order uncond, image,
///   image + audio;
/// - returns `[1, frames, channels, h, w]`.
///
/// # Panics
/// If the first dimension is not 3.
pub fn combine<B: Backend>(branches: Tensor<B, 5>, scales: GuidanceScales) -> Tensor<B, 5> {
    let [n, ..] = branches.dims();
    assert_eq!(
        n, CFG_BRANCHES,
        "guidance needs the 3 branches stacked on dim 0"
    );
    let mut parts = branches.chunk(CFG_BRANCHES, 0).into_iter();
    let (v_u, v_i, v_c) = (
        parts.next().expect("uncond"),
        parts.next().expect("image"),
        parts.next().expect("cond"),
    );
    let image_term = v_i.clone().sub(v_u.clone()).mul_scalar(scales.image);
    let audio_term = v_c.sub(v_i).mul_scalar(scales.audio);
    v_u.add(image_term).add(audio_term)
}
