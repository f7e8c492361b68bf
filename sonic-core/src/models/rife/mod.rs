//! RIFE HDv3 frame interpolation (the `IFNet` Sonic ships as `RIFE/flownet.pkl`), used to
//! double Sonic's 12.5 fps output to 25 fps.
//!
//! Reference: Sonic `src/utils/RIFE/IFNet_HDv3.py` (`IFNet`, `IFBlock`), `warplayer.py`
//! (`warp`), `RIFE_HDv3.py` (`RIFEModel.load_model` / `inference`), and the loop in `sonic.py`
//! (see [`FrameInterpolator`]).
//!
//! - [`IfNet`]: three [`IfBlock`]s at scales 4, 2, 1, each run on the frame pair and its
//!   mirror; the flows warp both frames ([`warp`]) and a mask blends them.
//! - [`load_rife`]: loads `flownet.pkl` as released (keys prefixed `module.`).

mod ifblock;
mod ifnet;
mod interpolator;
mod warp;

use std::path::Path;

use burn::config::Config;
use burn::prelude::Backend;

pub use ifblock::{ConvPrelu, IfBlock, UpsampleHead};
pub use ifnet::{IfNet, IfNetOutput};
pub use interpolator::FrameInterpolator;
pub use warp::warp;

use crate::weights::{Checkpoint, KeyAction, LoadError, LoadOptions, LoadReport, load_module};

/// Input channels of a stage: both (warped) frames, the mask, and the 4 flow channels.
const BLOCK_IN_PLANES: usize = 7 + 4;

/// Configuration of [`IfNet`].
#[derive(Config, Debug, PartialEq)]
pub struct RifeConfig {
    /// Width of every [`IfBlock`] (`IFBlock(11, c=90)` in the release; the fixtures use 16).
    #[config(default = 90)]
    pub c: usize,
    /// Per-stage downscale (`RIFEModel.inference(scale=1.0)`: `[4, 2, 1]`).
    #[config(default = "[4.0, 2.0, 1.0]")]
    pub scale_list: [f64; 3],
}

impl RifeConfig {
    /// The released model: `IFNet()` of `IFNet_HDv3.py` (c = 90) run with `scale_list
    /// [4, 2, 1]`, as Sonic's `RIFEModel.inference` does.
    pub fn sonic() -> Self {
        Self::new()
    }

    /// Builds the module (lazily initialised).
    pub fn init<B: Backend>(&self, device: &B::Device) -> IfNet<B> {
        let block = || IfBlock::new(BLOCK_IN_PLANES, self.c, device);
        IfNet::from_blocks([block(), block(), block()], self.scale_list)
    }
}

/// Why frames could not be interpolated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RifeError {
    /// A frame's shape does not suit the model or differs from the stream's first frame.
    #[error("frame {index} has shape {got:?}, expected {expected}")]
    FrameShape {
        /// 0-based index of the frame in the stream.
        index: usize,
        /// Its shape.
        got: Vec<usize>,
        /// What was expected.
        expected: String,
    },
}

/// Checks a first frame: `[1, 3, h, w]` with `h`, `w` multiples of `4 * max scale`.
fn check_frame<B: Backend>(dims: [usize; 4], model: &IfNet<B>) -> Result<(), RifeError> {
    let max_scale = model.scale_list().into_iter().fold(1.0, f64::max);
    let multiple = (4.0 * max_scale).round().max(1.0) as usize;
    let [b, c, h, w] = dims;
    if b != 1 || c != 3 || h == 0 || w == 0 || h % multiple != 0 || w % multiple != 0 {
        return Err(RifeError::FrameShape {
            index: 0,
            got: dims.to_vec(),
            expected: format!("[1, 3, h, w] with h and w positive multiples of {multiple}"),
        });
    }
    Ok(())
}

/// Why `block_tea` is not loaded.
pub const BLOCK_TEA_DROPPED: &str =
    "block_tea is RIFE's training-time teacher; IFNet.forward never runs it at inference";

/// Maps a `flownet.pkl` key onto the [`IfNet`] module path.
///
/// - strips the DataParallel prefix `module.` (as `RIFEModel.load_model` does; a key without it
///   is taken as is);
/// - drops `block_tea.*` with [`BLOCK_TEA_DROPPED`];
/// - names the `nn.Sequential` indices: in `conv0` / `convblockN`, `<i>.0` -> `<i>.conv` and
///   `<i>.1` -> `<i>.act`; in the heads `conv1` / `conv2`, `0` -> `up`, `1` -> `act`, `2` -> `out`.
///
/// Anything else is kept unchanged, so the strict loader reports it.
pub fn rife_key_action(key: &str) -> KeyAction {
    let key = key.strip_prefix("module.").unwrap_or(key);
    let mut parts: Vec<&str> = key.split('.').collect();
    if parts.first() == Some(&"block_tea") {
        return KeyAction::Drop(BLOCK_TEA_DROPPED);
    }
    if let [_, stage, rest @ ..] = parts.as_mut_slice() {
        let is_conv_stack = *stage == "conv0" || stage.starts_with("convblock");
        let is_head = *stage == "conv1" || *stage == "conv2";
        match rest {
            [_, layer, _] if is_conv_stack => {
                *layer = match *layer {
                    "0" => "conv",
                    "1" => "act",
                    other => other,
                }
            }
            [layer, _] if is_head => {
                *layer = match *layer {
                    "0" => "up",
                    "1" => "act",
                    "2" => "out",
                    other => other,
                }
            }
            _ => {}
        }
    }
    KeyAction::Keep(parts.join("."))
}

/// Loads `flownet.pkl` (as released, or any file with the same keys) into a model built from
/// `config`. The 40 `block_tea` keys are dropped and listed in the report.
pub fn load_rife<B: Backend>(
    config: &RifeConfig,
    path: impl AsRef<Path>,
    options: LoadOptions,
    device: &B::Device,
) -> Result<(IfNet<B>, LoadReport), LoadError> {
    let checkpoint = Checkpoint::open(path)?.map_keys(rife_key_action)?;
    load_module(config.init(device), &checkpoint, options)
}
