//! How many video frames a clip gives, and how the audio lines up with them.
//!
//! Sonic counts time in 25 fps steps of 640 samples at 16 kHz (`audio_len = samples // 640`,
//! capped at `frame_num` = 10 000 steps = 400 s), generates one frame every `step` = 2 of those
//! steps (12.5 fps, `N = audio_len // 2` frames) and, with RIFE, interpolates one frame between
//! every pair, writing `2N - 1` frames at 25 fps. Whisper's tokens are 50 Hz, so generated
//! frame `i` (time `80 i` ms) reads the audio tokens starting at `4 i`.
//!
//! Two user controls act before the features are computed:
//! - `max_duration`: only the first `max_duration` seconds of audio are used (ComfyUI_Sonic's
//!   `duration`); the written audio track is cut at the video's end anyway.
//! - `lip_sync_offset` (seconds): shifts the audio the model *hears* against the video frames;
//!   the audio *track* of the MP4 is never shifted. **Positive values delay the mouth**: the
//!   frame shown at time `t` is generated from the audio at `t - offset` (use it when the lips
//!   move before the sound). Negative values make the mouth lead the sound. The shift is
//!   applied to the 16 kHz waveform, so its resolution is one sample (62.5 us); samples
//!   shifted in are silence. The frame count never changes with the offset.

use crate::MediaError;

/// Samples per 25 fps step at 16 kHz (40 ms).
pub const SAMPLES_PER_STEP: usize = 640;
/// Sonic's cap on the number of 25 fps steps (`frame_num` in `sonic.yaml`).
pub const DEFAULT_STEP_CAP: usize = 10_000;
/// Whisper tokens per generated (12.5 fps) frame.
pub const TOKENS_PER_FRAME: usize = 4;

/// User controls of the audio timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimelineOptions {
    /// Use at most this many seconds of audio (`None`: all of it).
    pub max_duration: Option<f64>,
    /// Seconds by which the mouth follows the sound (positive) or leads it (negative).
    pub lip_sync_offset: f64,
    /// Cap on the 25 fps step count (Sonic's `frame_num`, 10 000).
    pub step_cap: usize,
    /// 25 fps steps per generated frame (Sonic's `step`, 2: 12.5 fps).
    pub step: usize,
}

impl Default for TimelineOptions {
    fn default() -> Self {
        Self {
            max_duration: None,
            lip_sync_offset: 0.0,
            step_cap: DEFAULT_STEP_CAP,
            step: 2,
        }
    }
}

/// Frame counts and audio alignment of one clip at 16 kHz.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioTimeline {
    samples: usize,
    audio_len: usize,
    step: usize,
    offset_samples: i64,
}

impl AudioTimeline {
    /// The timeline of a clip of `samples` samples at 16 kHz.
    ///
    /// # Errors
    /// [`MediaError::InvalidParameter`] for a non-finite or negative `max_duration`, a
    /// non-finite `lip_sync_offset`, or a zero `step`.
    pub fn new(samples: usize, options: &TimelineOptions) -> Result<Self, MediaError> {
        if options.step == 0 {
            return Err(MediaError::invalid("step", "must be at least 1"));
        }
        if !options.lip_sync_offset.is_finite() {
            return Err(MediaError::invalid(
                "lip_sync_offset",
                format!("{} is not a number of seconds", options.lip_sync_offset),
            ));
        }
        let samples = match options.max_duration {
            Some(d) if !(d.is_finite() && d >= 0.0) => {
                return Err(MediaError::invalid(
                    "max_duration",
                    format!("{d} is not a duration in seconds"),
                ));
            }
            Some(d) => samples.min((d * f64::from(super::SAMPLE_RATE)).floor() as usize),
            None => samples,
        };
        let audio_len = (samples / SAMPLES_PER_STEP).min(options.step_cap);
        let offset_samples =
            (options.lip_sync_offset * f64::from(super::SAMPLE_RATE)).round() as i64;
        Ok(Self {
            samples,
            audio_len,
            step: options.step,
            offset_samples,
        })
    }

    /// Samples used (after the duration cap).
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Sonic's `audio_len`: 25 fps steps, `min(cap, samples // 640)`.
    pub fn audio_len(&self) -> usize {
        self.audio_len
    }

    /// Frames the model generates (`N = audio_len // step`, 12.5 fps by default).
    pub fn generated_frames(&self) -> usize {
        self.audio_len / self.step
    }

    /// Whisper tokens the model reads (`2 * audio_len`, 50 Hz).
    pub fn whisper_tokens(&self) -> usize {
        2 * self.audio_len
    }

    /// Frames of the written video: `2N - 1` with RIFE interpolation, else `N`.
    pub fn output_frames(&self, interpolate: bool) -> usize {
        let n = self.generated_frames();
        if interpolate {
            (2 * n).saturating_sub(1)
        } else {
            n
        }
    }

    /// Frame rate of the written video: `25 * 2 / step` with interpolation (25 fps), else
    /// `25 / step` (12.5 fps).
    pub fn output_fps(&self, interpolate: bool) -> f64 {
        let generated = 25.0 / self.step as f64;
        if interpolate {
            2.0 * generated
        } else {
            generated
        }
    }

    /// Duration of the written video in seconds (the audio track is cut to it).
    pub fn video_duration(&self, interpolate: bool) -> f64 {
        self.output_frames(interpolate) as f64 / self.output_fps(interpolate)
    }

    /// The lip-sync shift in samples at 16 kHz (positive: the mouth follows the sound).
    pub fn offset_samples(&self) -> i64 {
        self.offset_samples
    }

    /// The waveform the feature extractor must see: the first [`samples`](Self::samples) of
    /// `waveform`, shifted by the lip-sync offset (silence shifted in), same length.
    pub fn model_waveform(&self, waveform: &[f32]) -> Vec<f32> {
        let used = &waveform[..self.samples.min(waveform.len())];
        let len = used.len();
        let mut out = vec![0.0f32; len];
        let shift = self.offset_samples.unsigned_abs().min(len as u64) as usize;
        if self.offset_samples >= 0 {
            // Delay: the frame at t hears t - offset.
            out[shift..].copy_from_slice(&used[..len - shift]);
        } else {
            // Advance: the frame at t hears t + |offset|.
            out[..len - shift].copy_from_slice(&used[shift..]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(samples: usize, options: TimelineOptions) -> AudioTimeline {
        AudioTimeline::new(samples, &options).unwrap()
    }

    #[test]
    fn counts_match_sonic() {
        // The pipeline_e2e fixture: 42586 samples -> audio_len 66, N 33, 65 frames at 25 fps.
        let t = timeline(42_586, TimelineOptions::default());
        assert_eq!(t.audio_len(), 66);
        assert_eq!(t.generated_frames(), 33);
        assert_eq!(t.output_frames(true), 65);
        assert_eq!(t.output_fps(true), 25.0);
        assert_eq!(t.whisper_tokens(), 132);
        assert!((t.video_duration(true) - 2.6).abs() < 1e-12);
        assert_eq!(t.output_frames(false), 33);
        assert_eq!(t.output_fps(false), 12.5);
        // Short clips: no frame at all rather than an underflow.
        assert_eq!(
            timeline(639, TimelineOptions::default()).output_frames(true),
            0
        );
        assert_eq!(
            timeline(1280, TimelineOptions::default()).output_frames(true),
            1
        );
    }

    #[test]
    fn caps_apply() {
        let capped = timeline(16_000 * 500, TimelineOptions::default());
        assert_eq!(capped.audio_len(), DEFAULT_STEP_CAP);
        let short = timeline(
            16_000 * 10,
            TimelineOptions {
                max_duration: Some(2.5),
                ..Default::default()
            },
        );
        assert_eq!((short.samples(), short.audio_len()), (40_000, 62));
    }

    #[test]
    fn positive_offset_delays_what_the_model_hears() {
        let wave: Vec<f32> = (1..=16_000).map(|i| i as f32).collect();
        let late = timeline(
            wave.len(),
            TimelineOptions {
                lip_sync_offset: 0.1,
                ..Default::default()
            },
        );
        assert_eq!(late.offset_samples(), 1600);
        let heard = late.model_waveform(&wave);
        assert_eq!(heard.len(), wave.len());
        assert!(heard[..1600].iter().all(|&s| s == 0.0));
        assert_eq!(heard[1600], 1.0, "sample 0 is heard 100 ms later");
        let early = timeline(
            wave.len(),
            TimelineOptions {
                lip_sync_offset: -0.05,
                ..Default::default()
            },
        );
        let heard = early.model_waveform(&wave);
        assert_eq!(heard[0], 801.0, "sample 800 is heard at 0");
        assert!(heard[16_000 - 800..].iter().all(|&s| s == 0.0));
        // The offset never changes the frame count; offsets longer than the clip give silence.
        assert_eq!(early.output_frames(true), late.output_frames(true));
        let far = timeline(
            100,
            TimelineOptions {
                lip_sync_offset: 1.0,
                ..Default::default()
            },
        );
        assert!(far.model_waveform(&wave[..100]).iter().all(|&s| s == 0.0));
    }

    #[test]
    fn resolution_is_one_sample() {
        let t = timeline(
            10,
            TimelineOptions {
                lip_sync_offset: 1.4 / 16_000.0,
                ..Default::default()
            },
        );
        assert_eq!(t.offset_samples(), 1);
    }

    #[test]
    fn bad_options_are_typed_errors() {
        for options in [
            TimelineOptions {
                lip_sync_offset: f64::NAN,
                ..Default::default()
            },
            TimelineOptions {
                max_duration: Some(-1.0),
                ..Default::default()
            },
            TimelineOptions {
                step: 0,
                ..Default::default()
            },
        ] {
            assert!(matches!(
                AudioTimeline::new(1000, &options),
                Err(MediaError::InvalidParameter { .. })
            ));
        }
    }
}
