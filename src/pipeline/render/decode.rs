//! Stage 5: VAE decoding one chunk at a time -> `x * 0.5 + 0.5` clamped -> RIFE midpoints ->
//! RGB bytes -> MP4 writer. No step holds the frames of the whole clip.

use std::io::Write;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use burn::prelude::Backend;
use burn::tensor::{DType, Tensor};
use sonic_core::models::rife::FrameInterpolator;
use sonic_core::nn::dtype::cast_to;
use sonic_media::video::{AudioTrack, Mp4Writer, VideoOptions, VideoSummary};

use super::Reporter;
use crate::pipeline::error::PipelineError;
use crate::pipeline::frames::{FrameRate, FrameSink, to_rgb};
use crate::pipeline::models::SonicModels;
use crate::pipeline::params::GenerationParams;
use crate::pipeline::progress::{Stage, StageClock};
use crate::pipeline::stages::StageTensor;

impl<B: Backend> SonicModels<B> {
    /// VAE decoding, RIFE and encoding, one chunk of frames at a time.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn decode<W: Write>(
        &self,
        params: &GenerationParams,
        output_size: (u32, u32),
        output_frames: u64,
        track: AudioTrack,
        latents: Tensor<B, 5>,
        sink: W,
        reporter: &mut Reporter<'_>,
    ) -> Result<VideoSummary, PipelineError> {
        reporter.check_cancelled(Stage::Decode)?;
        let [_, frames, channels, h, w] = latents.dims();
        let latents = latents.reshape([frames, channels, h, w]);
        let frame_size = ((w * 8) as u32, (h * 8) as u32);
        let native_frames = if params.interpolation {
            2 * frames - 1
        } else {
            frames
        };
        let rate = FrameRate::new(params.native_fps(), params.output_fps(), output_frames);
        let writer = Mp4Writer::new(
            sink,
            output_size.0,
            output_size.1,
            &VideoOptions {
                fps: params.output_fps(),
                ..VideoOptions::default()
            },
            Some(track),
        )?;
        let mut sink = FrameSink::new(writer, frame_size, output_size, rate, native_frames);
        let mut interpolator = params
            .interpolation
            .then(|| FrameInterpolator::new(self.rife.clone()));
        // RIFE is loaded in f32, as Sonic keeps it.
        let rife_dtype = DType::F32;

        let chunk_size = NonZeroUsize::new(params.decode_chunk_size).expect("validated >= 1");
        let mut clock = StageClock::new(Stage::Decode, frames as u64);
        reporter.report(clock.current());
        let (mut vae_time, mut rife_time, mut encode_time) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut chunks = self.vae.decode_latents_chunked(latents, chunk_size)?;
        loop {
            reporter.check_cancelled(Stage::Decode)?;
            let started = Instant::now();
            let Some(chunk) = chunks.next() else { break };
            // `decode_latents` casts to f32, then `test()` maps [-1, 1] to [0, 1].
            let decoded = chunk
                .frames
                .cast(DType::F32)
                .mul_scalar(0.5)
                .add_scalar(0.5)
                .clamp(0.0, 1.0); // [len, 3, H, W]
            let len = decoded.dims()[0];
            reporter
                .stages
                .tensor(StageTensor::DecodedFrames, || decoded.clone());
            vae_time += started.elapsed();
            for i in 0..len {
                let frame = decoded.clone().narrow(0, i, 1); // [1, 3, H, W]
                let out = match interpolator.as_mut() {
                    Some(rife) => {
                        let started = Instant::now();
                        let out = rife.push(cast_to(frame, rife_dtype))?;
                        if out.len() == 2 {
                            reporter
                                .stages
                                .tensor(StageTensor::RifeMiddleFrames, || out[0].clone());
                        }
                        rife_time += started.elapsed();
                        out
                    }
                    None => vec![frame],
                };
                let started = Instant::now();
                for frame in out {
                    sink.push(to_rgb(frame))?;
                }
                encode_time += started.elapsed();
            }
            reporter.report(clock.advance((chunk.start + len) as u64, None, None));
        }
        let started = Instant::now();
        let summary = sink.finish()?;
        encode_time += started.elapsed();
        debug_assert_eq!(summary.frames, output_frames);
        reporter.timings.extend([
            ("vae_decode".to_owned(), vae_time),
            ("rife".to_owned(), rife_time),
            ("video_encode".to_owned(), encode_time),
        ]);
        Ok(summary)
    }
}
