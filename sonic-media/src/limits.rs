//! Limits on untrusted inputs, checked from the header before any sample or pixel is decoded.
//!
//! A small file can declare an enormous picture (a "decompression bomb": 1.2 MB of PNG holds
//! 20000x20000 pixels) or a very long or very slowly sampled sound (8 KB of WAV holds 4000 s at
//! 1 Hz, which resampling to 16 kHz turns into 64 million samples). The decoders read the
//! declared size first and refuse it with a typed error that names the limit, so such a file
//! costs a few kilobytes of memory, not gigabytes.
//!
//! - [`ImageLimits`]: width, height, pixel count and the decoder's allocation budget, used by
//!   [`decode_image`](crate::image::decode_image) (defaults) and
//!   [`decode_image_with`](crate::image::decode_image_with).
//! - [`AudioLimits`]: duration (checked from the container's header, then again while
//!   decoding, so a stream whose header says nothing or lies still stops at the limit) and the
//!   range of sample rates, used by [`decode_audio`](crate::audio::decode_audio) (defaults) and
//!   [`decode_audio_with`](crate::audio::decode_audio_with).
//!
//! ```
//! use sonic_media::{AudioLimits, ImageLimits, LongAudio};
//!
//! let pictures = ImageLimits::default().with_max_size(4096, 4096).with_max_pixels(16_000_000);
//! assert_eq!(pictures.max_width(), 4096);
//! // Use the first 60 s of a longer recording (and say so in the result) instead of refusing it.
//! let audio = AudioLimits::default().with_max_duration_secs(60.0).with_long_audio(LongAudio::Cut);
//! assert_eq!(audio.max_duration_secs(), 60.0);
//! ```

/// Default largest picture width and height, in pixels (admits any phone or camera portrait).
pub const DEFAULT_MAX_PICTURE_SIDE: u32 = 8192;
/// Default largest pixel count of a picture (40 megapixels).
pub const DEFAULT_MAX_PICTURE_PIXELS: u64 = 40_000_000;
/// Default budget of the picture decoder's allocations, in bytes (512 MiB, `image`'s default).
pub const DEFAULT_MAX_PICTURE_ALLOC: u64 = 512 * 1024 * 1024;
/// Default longest audio, in seconds (Sonic's cap: 10 000 steps of 40 ms).
pub const DEFAULT_MAX_AUDIO_SECS: f64 = 400.0;
/// Default shortest audio, in seconds: below it the MP4's audio track would hold no whole AAC
/// frame at 8 kHz (1024 samples = 128 ms; the video of a 0.14 s clip lasts 0.16 s at 25 fps).
pub const DEFAULT_MIN_AUDIO_SECS: f64 = 0.2;
/// Default lowest audio sample rate, in Hz (below it, speech is not intelligible and
/// resampling to 16 kHz multiplies the sample count by more than 4).
pub const DEFAULT_MIN_SAMPLE_RATE: u32 = 4_000;
/// Default highest audio sample rate, in Hz.
pub const DEFAULT_MAX_SAMPLE_RATE: u32 = 384_000;

/// Which limit of [`ImageLimits`] a picture is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PictureLimit {
    /// [`ImageLimits::max_width`].
    Width(u32),
    /// [`ImageLimits::max_height`].
    Height(u32),
    /// [`ImageLimits::max_pixels`].
    Pixels(u64),
}

impl std::fmt::Display for PictureLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Width(max) => write!(f, "width limit of {max} pixels"),
            Self::Height(max) => write!(f, "height limit of {max} pixels"),
            Self::Pixels(max) => write!(f, "limit of {max} pixels in all"),
        }
    }
}

/// Limits on a picture, checked from its header before it is decoded.
///
/// The defaults ([`DEFAULT_MAX_PICTURE_SIDE`] = 8192 per side, [`DEFAULT_MAX_PICTURE_PIXELS`]
/// = 40 Mpx, [`DEFAULT_MAX_PICTURE_ALLOC`] = 512 MiB) admit any real portrait: a 48 Mpx phone
/// photo is normally saved at 12 Mpx, and the model uses at most 1024 px per side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    max_width: u32,
    max_height: u32,
    max_pixels: u64,
    max_alloc: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            max_width: DEFAULT_MAX_PICTURE_SIDE,
            max_height: DEFAULT_MAX_PICTURE_SIDE,
            max_pixels: DEFAULT_MAX_PICTURE_PIXELS,
            max_alloc: DEFAULT_MAX_PICTURE_ALLOC,
        }
    }
}

impl ImageLimits {
    /// Sets the largest width and height, in pixels.
    #[must_use]
    pub fn with_max_size(mut self, width: u32, height: u32) -> Self {
        self.max_width = width;
        self.max_height = height;
        self
    }

    /// Sets the largest pixel count (width x height).
    #[must_use]
    pub fn with_max_pixels(mut self, pixels: u64) -> Self {
        self.max_pixels = pixels;
        self
    }

    /// Sets the budget of the decoder's allocations, in bytes (`image::Limits::max_alloc`).
    #[must_use]
    pub fn with_max_alloc(mut self, bytes: u64) -> Self {
        self.max_alloc = bytes;
        self
    }

    /// The largest width, in pixels.
    pub fn max_width(&self) -> u32 {
        self.max_width
    }

    /// The largest height, in pixels.
    pub fn max_height(&self) -> u32 {
        self.max_height
    }

    /// The largest pixel count.
    pub fn max_pixels(&self) -> u64 {
        self.max_pixels
    }

    /// The budget of the decoder's allocations, in bytes.
    pub fn max_alloc(&self) -> u64 {
        self.max_alloc
    }

    /// The first limit a picture of `width` x `height` pixels is over, if any.
    pub fn check(&self, width: u32, height: u32) -> Option<PictureLimit> {
        if width > self.max_width {
            Some(PictureLimit::Width(self.max_width))
        } else if height > self.max_height {
            Some(PictureLimit::Height(self.max_height))
        } else if u64::from(width) * u64::from(height) > self.max_pixels {
            Some(PictureLimit::Pixels(self.max_pixels))
        } else {
            None
        }
    }

    /// The same limits in `image`'s terms, for its decoders.
    pub(crate) fn to_image_limits(self) -> image::Limits {
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(self.max_width);
        limits.max_image_height = Some(self.max_height);
        limits.max_alloc = Some(self.max_alloc);
        limits
    }
}

/// What to do with audio longer than [`AudioLimits::max_duration_secs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LongAudio {
    /// Refuse it with [`MediaError::AudioTooLong`](crate::MediaError::AudioTooLong): from the
    /// container's header when it declares the length, otherwise as soon as decoding passes the
    /// limit. The default.
    #[default]
    Refuse,
    /// Keep the first `max_duration_secs` and stop decoding there; the result's
    /// [`truncated_at_secs`](crate::audio::DecodedAudio::truncated_at_secs) says so.
    Cut,
}

/// Limits on an audio input, checked from the container's header before decoding and again
/// while decoding.
///
/// The defaults: at most [`DEFAULT_MAX_AUDIO_SECS`] = 400 s (longer audio is refused, see
/// [`LongAudio`]), at least [`DEFAULT_MIN_AUDIO_SECS`] = 0.2 s, sample rates from [`DEFAULT_MIN_SAMPLE_RATE`] = 4 kHz to
/// [`DEFAULT_MAX_SAMPLE_RATE`] = 384 kHz.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioLimits {
    max_duration_secs: f64,
    long_audio: LongAudio,
    min_duration_secs: f64,
    min_sample_rate: u32,
    max_sample_rate: u32,
}

impl Default for AudioLimits {
    fn default() -> Self {
        Self {
            max_duration_secs: DEFAULT_MAX_AUDIO_SECS,
            long_audio: LongAudio::Refuse,
            min_duration_secs: DEFAULT_MIN_AUDIO_SECS,
            min_sample_rate: DEFAULT_MIN_SAMPLE_RATE,
            max_sample_rate: DEFAULT_MAX_SAMPLE_RATE,
        }
    }
}

impl AudioLimits {
    /// Sets the longest audio, in seconds (a non-finite or negative value is taken as 0).
    #[must_use]
    pub fn with_max_duration_secs(mut self, seconds: f64) -> Self {
        self.max_duration_secs = if seconds.is_finite() {
            seconds.max(0.0)
        } else if seconds == f64::INFINITY {
            f64::MAX
        } else {
            0.0
        };
        self
    }

    /// Sets the shortest audio, in seconds (0 admits any length; a non-finite or negative value
    /// is taken as 0).
    #[must_use]
    pub fn with_min_duration_secs(mut self, seconds: f64) -> Self {
        self.min_duration_secs = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        self
    }

    /// Sets what happens to audio longer than the limit.
    #[must_use]
    pub fn with_long_audio(mut self, long_audio: LongAudio) -> Self {
        self.long_audio = long_audio;
        self
    }

    /// Sets the range of accepted sample rates, in Hz.
    #[must_use]
    pub fn with_sample_rates(mut self, min: u32, max: u32) -> Self {
        self.min_sample_rate = min;
        self.max_sample_rate = max;
        self
    }

    /// The longest audio, in seconds.
    pub fn max_duration_secs(&self) -> f64 {
        self.max_duration_secs
    }

    /// The shortest audio, in seconds.
    pub fn min_duration_secs(&self) -> f64 {
        self.min_duration_secs
    }

    /// What happens to audio longer than the limit.
    pub fn long_audio(&self) -> LongAudio {
        self.long_audio
    }

    /// The lowest accepted sample rate, in Hz.
    pub fn min_sample_rate(&self) -> u32 {
        self.min_sample_rate
    }

    /// The highest accepted sample rate, in Hz.
    pub fn max_sample_rate(&self) -> u32 {
        self.max_sample_rate
    }

    /// The most sample frames (per channel) kept at `sample_rate`.
    pub(crate) fn max_frames(&self, sample_rate: u32) -> u64 {
        // The epsilon keeps 0.1 s x 44.1 kHz (4410.000000000001 in f64) at 4410 frames.
        let frames = (self.max_duration_secs * f64::from(sample_rate) - 1e-6)
            .ceil()
            .max(0.0);
        if frames >= u64::MAX as f64 {
            u64::MAX
        } else {
            frames as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picture_limits_name_the_first_one_passed() {
        let limits = ImageLimits::default();
        assert_eq!(limits.check(8192, 4000), None);
        assert_eq!(limits.check(8193, 10), Some(PictureLimit::Width(8192)));
        assert_eq!(limits.check(10, 20000), Some(PictureLimit::Height(8192)));
        assert_eq!(
            limits.check(8000, 8000),
            Some(PictureLimit::Pixels(40_000_000))
        );
    }

    #[test]
    fn audio_frame_cap_rounds_up_and_saturates() {
        let limits = AudioLimits::default().with_max_duration_secs(0.1);
        assert_eq!(limits.max_frames(16_000), 1600);
        assert_eq!(limits.max_frames(44_100), 4410);
        let open = AudioLimits::default().with_max_duration_secs(f64::INFINITY);
        assert_eq!(open.max_frames(48_000), u64::MAX);
        let nan = AudioLimits::default().with_max_duration_secs(f64::NAN);
        assert_eq!(nan.max_duration_secs(), 0.0);
    }
}
