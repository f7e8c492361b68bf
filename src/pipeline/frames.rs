//! The last meters of a frame: device tensor in `[0, 1]` -> RGB bytes -> (resize) -> (frame-rate
//! change) -> the MP4 writer. One frame at a time: nothing here holds more than one frame.

use std::io::Write;

use burn::prelude::Backend;
use burn::tensor::{DType, Tensor};
use image::RgbImage;
use sonic_media::MediaError;
use sonic_media::image::resize_lanczos;
use sonic_media::video::Mp4Writer;

/// RGB bytes of a `[1, 3, h, w]` frame in `[0, 1]`, as Sonic's `save_videos_grid` makes them:
/// `(x * 255).astype(uint8)` truncates.
pub(crate) fn to_rgb<B: Backend>(frame: Tensor<B, 4>) -> Vec<u8> {
    let [_, channels, height, width] = frame.dims();
    let plane = height * width;
    let values = frame
        .cast(DType::F32)
        .into_data()
        .into_vec::<f32>()
        .expect("cast to f32");
    let mut rgb = vec![0u8; plane * channels];
    for c in 0..channels {
        for (i, &v) in values[c * plane..(c + 1) * plane].iter().enumerate() {
            // Inputs are clamped to [0, 1]; `as u8` truncates like numpy's astype.
            rgb[i * channels + c] = (v * 255.0).clamp(0.0, 255.0) as u8;
        }
    }
    rgb
}

/// Picks output frames from a stream at `from` fps so they play at `to` fps: output frame `k`
/// shows the input frame nearest to its time (`floor((k + 0.5) * from / to)`), and the last
/// input frame is held to the end, so the output can run longer than the input (to cover the
/// audio's tail that the model's whole-frame count leaves out).
#[derive(Debug, Clone)]
pub(crate) struct FrameRate {
    ratio: f64,
    next_out: u64,
    total_out: u64,
}

impl FrameRate {
    /// `total_out` output frames from a stream at `from` fps, written at `to` fps.
    pub(crate) fn new(from: f64, to: f64, total_out: u64) -> Self {
        Self {
            ratio: from / to,
            next_out: 0,
            total_out,
        }
    }

    /// How many times input frame `index` is shown (0 to drop it); the last input frame takes
    /// every output frame left.
    pub(crate) fn repeats(&mut self, index: usize, last_input: bool) -> usize {
        let mut count = 0;
        while self.next_out < self.total_out {
            let source = ((self.next_out as f64 + 0.5) * self.ratio).floor() as usize;
            if source > index && !last_input {
                break;
            }
            self.next_out += 1;
            count += 1;
        }
        count
    }
}

/// Frames of a video at `fps` that covers `seconds`: `round(seconds * fps)`, at least one.
pub(crate) fn frames_for(seconds: f64, fps: f64) -> u64 {
    ((seconds * fps).round() as u64).max(1)
}

/// Writes frames to the MP4, resized and re-timed as asked.
pub(crate) struct FrameSink<W: Write> {
    writer: Mp4Writer<W>,
    frame_size: (u32, u32),
    output_size: (u32, u32),
    rate: FrameRate,
    frames_in: usize,
    input_frames: usize,
}

impl<W: Write> FrameSink<W> {
    pub(crate) fn new(
        writer: Mp4Writer<W>,
        frame_size: (u32, u32),
        output_size: (u32, u32),
        rate: FrameRate,
        input_frames: usize,
    ) -> Self {
        Self {
            writer,
            frame_size,
            output_size,
            rate,
            frames_in: 0,
            input_frames,
        }
    }

    /// Takes the next frame (RGB bytes at the model's size).
    pub(crate) fn push(&mut self, rgb: Vec<u8>) -> Result<(), MediaError> {
        let index = self.frames_in;
        self.frames_in += 1;
        let repeats = self
            .rate
            .repeats(index, self.frames_in == self.input_frames);
        if repeats == 0 {
            return Ok(());
        }
        let rgb = if self.output_size == self.frame_size {
            rgb
        } else {
            let (w, h) = self.frame_size;
            let image = RgbImage::from_raw(w, h, rgb).expect("frame buffer of its size");
            resize_lanczos(&image, self.output_size.0, self.output_size.1).into_raw()
        };
        for _ in 0..repeats {
            self.writer.push_frame(&rgb)?;
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<sonic_media::video::VideoSummary, MediaError> {
        self.writer.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(from: f64, to: f64, frames: usize) -> Vec<usize> {
        let out = frames_for(frames as f64 / from, to);
        let mut rate = FrameRate::new(from, to, out);
        (0..frames)
            .flat_map(|i| std::iter::repeat_n(i, rate.repeats(i, i + 1 == frames)))
            .collect()
    }

    #[test]
    fn same_rate_passes_through() {
        assert_eq!(pick(25.0, 25.0, 5), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn lower_rate_drops_and_higher_repeats() {
        assert_eq!(pick(25.0, 12.5, 6), vec![1, 3, 5]);
        assert_eq!(pick(12.5, 25.0, 3), vec![0, 0, 1, 1, 2, 2]);
        let thirty = pick(25.0, 30.0, 50);
        assert_eq!(thirty.len(), 60);
        assert_eq!((thirty[0], thirty[59]), (0, 49));
        assert!(thirty.windows(2).all(|w| w[1] >= w[0] && w[1] - w[0] <= 1));
    }

    #[test]
    fn the_last_frame_is_held_to_cover_the_audio() {
        // pipeline_e2e: 65 frames at 25 fps (2.6 s) for 2.6616 s of audio: 67 frames.
        let mut rate = FrameRate::new(25.0, 25.0, frames_for(42_586.0 / 16_000.0, 25.0));
        let shown: Vec<usize> = (0..65).map(|i| rate.repeats(i, i == 64)).collect();
        assert!(shown[..64].iter().all(|&n| n == 1));
        assert_eq!(shown[64], 3);
    }
}
