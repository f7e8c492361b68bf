//! Sonic's x2 frame interpolation as a stream: frames go in one at a time, output frames come
//! out as soon as they are known, and at most two input frames are held.
//!
//! Reference: Sonic `sonic.py` `Sonic.process`: for each consecutive pair keep frame `i`, then
//! `clamp(RIFE(frame i, frame i+1), 0, 1)`; the last frame is appended, giving `2N - 1`
//! frames. The reference moves the whole video to the GPU first; here memory does not grow
//! with the clip.

use burn::prelude::Backend;
use burn::tensor::Tensor;

use super::{IfNet, RifeError};

/// Streams frames through RIFE midpoint interpolation.
#[derive(Debug)]
pub struct FrameInterpolator<B: Backend> {
    model: IfNet<B>,
    previous: Option<Tensor<B, 4>>,
    frames_in: usize,
}

impl<B: Backend> FrameInterpolator<B> {
    /// An interpolator running `model`.
    pub fn new(model: IfNet<B>) -> Self {
        Self {
            model,
            previous: None,
            frames_in: 0,
        }
    }

    /// Takes the next frame `[1, 3, h, w]` in `[0, 1]` and returns the output frames it
    /// completes, in order: the first frame alone, then for every later frame the midpoint
    /// before it and the frame itself.
    ///
    /// Fails, keeping its state, if the frame's shape differs from the first frame's or does
    /// not suit the model (see [`IfNet::forward`]).
    pub fn push(&mut self, frame: Tensor<B, 4>) -> Result<Vec<Tensor<B, 4>>, RifeError> {
        let dims = frame.dims();
        match &self.previous {
            None => super::check_frame(dims, &self.model)?,
            Some(previous) if previous.dims() != dims => {
                return Err(RifeError::FrameShape {
                    index: self.frames_in,
                    got: dims.to_vec(),
                    expected: format!("{:?} like the first frame", previous.dims()),
                });
            }
            Some(_) => {}
        }
        self.frames_in += 1;
        let out = match self.previous.replace(frame.clone()) {
            None => vec![frame],
            Some(previous) => {
                let middle = self
                    .model
                    .forward(previous, frame.clone())
                    .merged
                    .clamp(0.0, 1.0);
                vec![middle, frame]
            }
        };
        Ok(out)
    }

    /// Number of frames pushed so far.
    pub fn frames_in(&self) -> usize {
        self.frames_in
    }

    /// Number of frames emitted so far (`2 * frames_in - 1`, or 0).
    pub fn frames_out(&self) -> usize {
        (2 * self.frames_in).saturating_sub(1)
    }

    /// Ends the stream and gives the model back. Every frame was already emitted by
    /// [`FrameInterpolator::push`].
    pub fn finish(self) -> IfNet<B> {
        self.model
    }
}
