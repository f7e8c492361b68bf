//! The generation parameters users set, with Sonic's defaults, their ranges, and the check
//! that refuses an out-of-range value before any work is done.
//!
//! Defaults are those of Sonic's `config/inference/sonic.yaml`, `Sonic.process` and `demo.py`
//! (the table in `docs/pipeline.md` lists each with its source).

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};
use sonic_media::face::FaceRegion;
use sonic_media::image::FaceBox;

/// Frames per UNet window (`n_sample_frames`; the UNet's frame embeddings are trained on 25).
pub const FRAMES_PER_WINDOW: usize = 25;

/// Seconds of audio Sonic reads at most (`frame_num` = 10 000 steps of 40 ms).
pub const MAX_DURATION_SECS: f64 = 400.0;

/// Accepted values of each parameter (inclusive bounds; `duration` excludes 0).
pub mod ranges {
    use std::ops::RangeInclusive;

    /// `duration`, seconds (`None` = the whole clip, at most 400 s).
    pub const DURATION: RangeInclusive<f64> = 0.0..=super::MAX_DURATION_SECS;
    /// `min_resolution`, pixels.
    pub const MIN_RESOLUTION: RangeInclusive<u32> = 64..=2048;
    /// `expand_ratio`.
    pub const EXPAND_RATIO: RangeInclusive<f64> = 0.0..=5.0;
    /// `inference_steps`.
    pub const INFERENCE_STEPS: RangeInclusive<usize> = 1..=200;
    /// `dynamic_scale` and `motion_scale`.
    pub const MOTION: RangeInclusive<f32> = 0.0..=4.0;
    /// `lip_sync_offset`, seconds.
    pub const LIP_SYNC_OFFSET: RangeInclusive<f64> = -2.0..=2.0;
    /// `audio_guidance` and `image_guidance`.
    pub const GUIDANCE: RangeInclusive<f32> = 0.0..=30.0;
    /// `shift_offset`, frames (below the 25-frame window).
    pub const SHIFT_OFFSET: RangeInclusive<usize> = 0..=24;
    /// `decode_chunk_size`, frames.
    pub const DECODE_CHUNK_SIZE: RangeInclusive<usize> = 1..=64;
    /// `fps`, frames per second of the written video.
    pub const FPS: RangeInclusive<f64> = 1.0..=60.0;
    /// `memory_budget`, bytes (at least 1 MiB).
    pub const MEMORY_BUDGET: RangeInclusive<u64> = (1 << 20)..=u64::MAX;
}

/// Where the face is (Sonic detects it with YOLOv5m-face; see `docs/media.md`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum FaceSpec {
    /// Run the face detector; the largest face wins, none is
    /// [`PipelineError::NoFaceDetected`](super::PipelineError::NoFaceDetected).
    #[default]
    Detect,
    /// Use this box (pixels of the uploaded picture, before any crop).
    Box {
        /// Left edge.
        x: f64,
        /// Top edge.
        y: f64,
        /// Width.
        width: f64,
        /// Height.
        height: f64,
    },
    /// Use the whole picture as the face region.
    WholeFrame,
}

impl FaceSpec {
    /// The media layer's face region.
    pub fn region(self) -> FaceRegion {
        match self {
            Self::Detect => FaceRegion::Detect,
            Self::Box {
                x,
                y,
                width,
                height,
            } => FaceRegion::Given(FaceBox::new(x, y, width, height)),
            Self::WholeFrame => FaceRegion::WholeFrame,
        }
    }
}

/// Every setting of one generation. `Default` is Sonic's released configuration.
///
/// Build with struct update syntax and check with [`GenerationParams::validate`] (the
/// pipeline checks again before it starts):
///
/// ```
/// use sonic::pipeline::GenerationParams;
///
/// let params = GenerationParams { inference_steps: 10, seed: 0, ..Default::default() };
/// params.validate()?;
/// # Ok::<(), sonic::pipeline::ParamError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GenerationParams {
    /// Use at most this many seconds of the audio (`None`: all of it, capped at 400 s like
    /// Sonic's `frame_num`). ComfyUI_Sonic's `duration`.
    pub duration: Option<f64>,
    /// Short side of the model input before rounding to multiples of 64 (`Sonic.process`
    /// `min_resolution`, 512).
    pub min_resolution: u32,
    /// How much the face box grows on every side before the square crop (`demo.py` calls
    /// `preprocess(expand_ratio=0.5)`). Used when `crop` is on.
    pub expand_ratio: f64,
    /// Crop the picture to a square around the face first (`demo.py --crop`; off by default).
    pub crop: bool,
    /// Denoising steps (`num_inference_steps`, 25).
    pub inference_steps: usize,
    /// Scale of both motion buckets (head motion and expression), Sonic's `dynamic_scale`
    /// (`motion_bucket_scale`, 1.0).
    pub dynamic_scale: f32,
    /// Extra scale of the head-motion bucket only, on top of `dynamic_scale` (1.0 = Sonic's
    /// behaviour): lower keeps the head stiller without damping the expression.
    pub motion_scale: f32,
    /// Seconds by which the mouth follows the sound (positive) or leads it (negative); the
    /// audio track itself is never shifted (see `docs/media.md`).
    pub lip_sync_offset: f64,
    /// Audio guidance `g2` (`audio_guidance_scale`, 7.5).
    pub audio_guidance: f32,
    /// Image guidance `g1` (`min/max_appearance_guidance_scale`, 2.0).
    pub image_guidance: f32,
    /// Frames the window cut moves per denoising step (`shift_offset`, 7).
    pub shift_offset: usize,
    /// Frames the VAE decodes at once (`decode_chunk_size`, 8): the decoder's temporal context
    /// and its peak memory.
    pub decode_chunk_size: usize,
    /// Double the frame rate with RIFE (`use_interframe`, on): 2N - 1 frames at 25 fps instead
    /// of N at 12.5 fps.
    pub interpolation: bool,
    /// Write the video at the picture's own size (even sides) instead of the model's size
    /// (`Sonic.process` `keep_resolution`, off). Frames are resized with Lanczos.
    pub keep_resolution: bool,
    /// Frame rate of the written video (`None`: the native 25 fps, or 12.5 without
    /// interpolation). Other rates repeat or drop frames (nearest in time); the duration is
    /// unchanged.
    pub fps: Option<f64>,
    /// Seed of the initial noise; every value is honoured, 0 included (Sonic's `if seed:`
    /// ignores 0). Default: `sonic.yaml`'s 72589.
    pub seed: u64,
    /// Refuse the job before the first denoising step if its estimated peak memory is above
    /// this many bytes (`None`: no limit). See `docs/pipeline.md` for the memory model.
    pub memory_budget: Option<u64>,
    /// Where the face is.
    pub face: FaceSpec,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            duration: None,
            min_resolution: 512,
            expand_ratio: 0.5,
            crop: false,
            inference_steps: 25,
            dynamic_scale: 1.0,
            motion_scale: 1.0,
            lip_sync_offset: 0.0,
            audio_guidance: 7.5,
            image_guidance: 2.0,
            shift_offset: 7,
            decode_chunk_size: 8,
            interpolation: true,
            keep_resolution: false,
            fps: None,
            seed: 72589,
            memory_budget: None,
            face: FaceSpec::Detect,
        }
    }
}

/// A parameter outside its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ParamError {
    /// The value is outside the accepted range (or not a finite number).
    #[error("parameter `{parameter}` = {value} is out of range: expected {expected}")]
    OutOfRange {
        /// The parameter's name (as in [`GenerationParams`]).
        parameter: &'static str,
        /// The value given.
        value: String,
        /// The accepted range.
        expected: String,
    },
}

fn check<T: PartialOrd + std::fmt::Debug + std::fmt::Display>(
    parameter: &'static str,
    value: T,
    range: &RangeInclusive<T>,
) -> Result<(), ParamError> {
    // NaN fails `contains`, so non-finite floats are refused here too.
    if range.contains(&value) {
        Ok(())
    } else {
        Err(ParamError::OutOfRange {
            parameter,
            value: value.to_string(),
            expected: format!("{:?}..={:?}", range.start(), range.end()),
        })
    }
}

impl GenerationParams {
    /// Checks every parameter against its range (see [`ranges`]).
    ///
    /// # Errors
    /// [`ParamError::OutOfRange`] naming the first parameter that is out of range.
    pub fn validate(&self) -> Result<(), ParamError> {
        if let Some(duration) = self.duration {
            check("duration", duration, &ranges::DURATION)?;
            if duration <= 0.0 {
                return Err(ParamError::OutOfRange {
                    parameter: "duration",
                    value: duration.to_string(),
                    expected: format!("> 0 and <= {MAX_DURATION_SECS} seconds"),
                });
            }
        }
        check(
            "min_resolution",
            self.min_resolution,
            &ranges::MIN_RESOLUTION,
        )?;
        check("expand_ratio", self.expand_ratio, &ranges::EXPAND_RATIO)?;
        check(
            "inference_steps",
            self.inference_steps,
            &ranges::INFERENCE_STEPS,
        )?;
        check("dynamic_scale", self.dynamic_scale, &ranges::MOTION)?;
        check("motion_scale", self.motion_scale, &ranges::MOTION)?;
        check(
            "lip_sync_offset",
            self.lip_sync_offset,
            &ranges::LIP_SYNC_OFFSET,
        )?;
        check("audio_guidance", self.audio_guidance, &ranges::GUIDANCE)?;
        check("image_guidance", self.image_guidance, &ranges::GUIDANCE)?;
        check("shift_offset", self.shift_offset, &ranges::SHIFT_OFFSET)?;
        check(
            "decode_chunk_size",
            self.decode_chunk_size,
            &ranges::DECODE_CHUNK_SIZE,
        )?;
        if let Some(fps) = self.fps {
            check("fps", fps, &ranges::FPS)?;
        }
        if let Some(budget) = self.memory_budget {
            check("memory_budget", budget, &ranges::MEMORY_BUDGET)?;
        }
        if let FaceSpec::Box {
            x,
            y,
            width,
            height,
        } = self.face
            && !([x, y, width, height].iter().all(|v| v.is_finite()) && width > 0.0 && height > 0.0)
        {
            return Err(ParamError::OutOfRange {
                parameter: "face",
                value: format!("box x={x} y={y} width={width} height={height}"),
                expected: "finite coordinates and a positive width and height".into(),
            });
        }
        Ok(())
    }

    /// Frame rate the frames are generated at: 12.5 fps (Sonic's `fps` condition).
    pub fn generated_fps(&self) -> f64 {
        12.5
    }

    /// Frame rate before any `fps` resampling: 25 with interpolation, else 12.5.
    pub fn native_fps(&self) -> f64 {
        if self.interpolation { 25.0 } else { 12.5 }
    }

    /// Frame rate of the written video.
    pub fn output_fps(&self) -> f64 {
        self.fps.unwrap_or_else(|| self.native_fps())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sonics_and_valid() {
        let p = GenerationParams::default();
        p.validate().unwrap();
        assert_eq!(p.inference_steps, 25);
        assert_eq!(p.seed, 72589);
        assert_eq!((p.audio_guidance, p.image_guidance), (7.5, 2.0));
        assert_eq!((p.shift_offset, p.decode_chunk_size), (7, 8));
        assert_eq!(p.output_fps(), 25.0);
    }

    #[test]
    fn out_of_range_values_name_the_parameter() {
        let cases: Vec<(GenerationParams, &str)> = vec![
            (
                GenerationParams {
                    inference_steps: 0,
                    ..Default::default()
                },
                "inference_steps",
            ),
            (
                GenerationParams {
                    dynamic_scale: f32::NAN,
                    ..Default::default()
                },
                "dynamic_scale",
            ),
            (
                GenerationParams {
                    duration: Some(0.0),
                    ..Default::default()
                },
                "duration",
            ),
            (
                GenerationParams {
                    shift_offset: 25,
                    ..Default::default()
                },
                "shift_offset",
            ),
            (
                GenerationParams {
                    fps: Some(0.5),
                    ..Default::default()
                },
                "fps",
            ),
            (
                GenerationParams {
                    face: FaceSpec::Box {
                        x: 0.0,
                        y: 0.0,
                        width: -1.0,
                        height: 3.0,
                    },
                    ..Default::default()
                },
                "face",
            ),
        ];
        for (params, name) in cases {
            match params.validate() {
                Err(ParamError::OutOfRange { parameter, .. }) => assert_eq!(parameter, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn json_round_trip_and_unknown_fields() {
        let p = GenerationParams {
            seed: 0,
            face: FaceSpec::Box {
                x: 1.0,
                y: 2.0,
                width: 3.0,
                height: 4.0,
            },
            ..Default::default()
        };
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["seed"], 0);
        assert_eq!(json["face"]["mode"], "box");
        let back: GenerationParams = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
        let partial: GenerationParams = serde_json::from_str(r#"{"inference_steps": 10}"#).unwrap();
        assert_eq!(partial.inference_steps, 10);
        assert_eq!(partial.seed, 72589);
        assert!(serde_json::from_str::<GenerationParams>(r#"{"steps": 10}"#).is_err());
    }
}
