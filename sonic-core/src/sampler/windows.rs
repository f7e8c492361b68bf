//! Sonic's "time-aware position shift fusion": at every step the frames are cut into windows of
//! `frames_per_batch` frames that wrap around the clip's end, and the cut moves by
//! `shift_offset` frames per step, so no window boundary stays at the same frame.
//!
//! Reference: Sonic `src/pipelines/pipeline_sonic.py`, the loop over
//! `range(0, num_frames, frames_per_batch - overlap)` with `index_start -= shift` and the
//! `idx % num_frames` slicing.

use std::ops::Range;

use burn::prelude::Backend;
use burn::tensor::Tensor;

/// The frames of one window: `frame_indices[j] = (index_start + j) mod num_frames`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowPlan {
    /// Denoising step.
    pub step: usize,
    /// Window number within the step.
    pub window: usize,
    /// `window * (frames_per_batch - overlap) - shift_offset * step` (may be negative).
    pub index_start: i64,
    /// The clip frame of each window position (repeats when the clip is shorter than a window).
    pub frame_indices: Vec<usize>,
}

/// A run of window positions that maps onto consecutive clip frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Positions in the window.
    pub window: Range<usize>,
    /// The clip frames they hold (same length).
    pub frames: Range<usize>,
}

impl WindowPlan {
    /// Number of frames in the window.
    pub fn len(&self) -> usize {
        self.frame_indices.len()
    }

    /// Whether the window holds no frame.
    pub fn is_empty(&self) -> bool {
        self.frame_indices.is_empty()
    }

    /// The window as runs of consecutive frames (split where it wraps), so gathering and
    /// scattering are slices, not index lists: no backend has to add duplicate indices.
    pub fn segments(&self) -> Vec<Segment> {
        let mut segments: Vec<Segment> = Vec::new();
        for (position, &frame) in self.frame_indices.iter().enumerate() {
            match segments.last_mut() {
                Some(last) if last.frames.end == frame => {
                    last.window.end += 1;
                    last.frames.end += 1;
                }
                _ => segments.push(Segment {
                    window: position..position + 1,
                    frames: frame..frame + 1,
                }),
            }
        }
        segments
    }

    /// Gathers the window's frames from `tensor` along `dim` (which must have `num_frames`
    /// entries).
    pub fn gather<B: Backend, const D: usize>(
        &self,
        tensor: &Tensor<B, D>,
        dim: usize,
    ) -> Tensor<B, D> {
        let parts: Vec<_> = self
            .segments()
            .into_iter()
            .map(|s| tensor.clone().narrow(dim, s.frames.start, s.frames.len()))
            .collect();
        if parts.len() == 1 {
            parts.into_iter().next().expect("one part")
        } else {
            Tensor::cat(parts, dim)
        }
    }

    /// Adds the window's frames `values` (window positions along `dim`) into `accumulator`
    /// (clip frames along `dim`); a frame the window holds twice is added twice.
    pub fn scatter_add<B: Backend, const D: usize>(
        &self,
        mut accumulator: Tensor<B, D>,
        values: &Tensor<B, D>,
        dim: usize,
    ) -> Tensor<B, D> {
        for s in self.segments() {
            let mut target = accumulator.shape().dims::<D>().map(|n| 0..n);
            target[dim] = s.frames.clone();
            let part = values.clone().narrow(dim, s.window.start, s.window.len());
            let current = accumulator.clone().slice(target.clone());
            accumulator = accumulator.slice_assign(target, current.add(part));
        }
        accumulator
    }
}

/// The windows of one denoising step, in execution order.
///
/// `ceil(num_frames / (frames_per_batch - overlap))` windows, the k-th starting at
/// `k * (frames_per_batch - overlap) - shift_offset * step`, every index taken modulo
/// `num_frames`.
///
/// # Panics
/// If `num_frames == 0` or `overlap >= frames_per_batch` (validated by the sampler's config).
pub fn plan_step(
    num_frames: usize,
    frames_per_batch: usize,
    overlap: usize,
    shift_offset: usize,
    step: usize,
) -> Vec<WindowPlan> {
    assert!(num_frames > 0, "no frames to plan");
    assert!(
        overlap < frames_per_batch,
        "overlap must be < frames_per_batch"
    );
    let stride = frames_per_batch - overlap;
    let shift = (shift_offset as i64) * (step as i64);
    let n = num_frames as i64;
    (0..num_frames.div_ceil(stride))
        .map(|window| {
            let index_start = (window * stride) as i64 - shift;
            WindowPlan {
                step,
                window,
                index_start,
                frame_indices: (0..frames_per_batch as i64)
                    .map(|j| (index_start + j).rem_euclid(n) as usize)
                    .collect(),
            }
        })
        .collect()
}

/// How many times each frame is covered by the windows of a step (the divisor of Sonic's
/// per-frame averaging).
pub fn frame_counts(num_frames: usize, windows: &[WindowPlan]) -> Vec<u32> {
    let mut counts = vec![0u32; num_frames];
    for plan in windows {
        for &f in &plan.frame_indices {
            counts[f] += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_wrap_and_shift() {
        // The pipeline_e2e fixture's layout: 33 frames, 2 windows per step.
        let step1 = plan_step(33, 25, 0, 7, 1);
        assert_eq!(step1.len(), 2);
        assert_eq!(step1[0].index_start, -7);
        assert_eq!(step1[0].frame_indices[..8], [26, 27, 28, 29, 30, 31, 32, 0]);
        assert_eq!(step1[1].index_start, 18);
        assert_eq!(
            step1[0].segments(),
            vec![
                Segment {
                    window: 0..7,
                    frames: 26..33
                },
                Segment {
                    window: 7..25,
                    frames: 0..18
                },
            ]
        );
        let counts = frame_counts(33, &step1);
        assert_eq!(counts.iter().sum::<u32>(), 50);
        assert!(counts.iter().all(|&c| c == 1 || c == 2));
    }

    #[test]
    fn short_clip_repeats_frames_within_a_window() {
        let plan = &plan_step(10, 25, 0, 7, 3)[0];
        assert_eq!(plan.index_start, -21);
        assert_eq!(plan.frame_indices[0], 9);
        assert_eq!(plan.segments().len(), 4);
        assert_eq!(
            frame_counts(10, std::slice::from_ref(plan))
                .iter()
                .sum::<u32>(),
            25
        );
    }
}
