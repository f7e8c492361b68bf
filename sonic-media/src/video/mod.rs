//! Video out: a streaming writer of H.264 (OpenH264) + AAC (FDK AAC) MP4 files, muxed by
//! muxide with the index in front (fast start), playable in browsers.
//!
//! ```no_run
//! use sonic_media::video::{AudioTrack, Mp4Writer, VideoOptions};
//! # fn main() -> Result<(), sonic_media::MediaError> {
//! let file = std::fs::File::create("out.mp4").unwrap();
//! let speech = vec![0.0f32; 16_000 * 2];
//! let mut writer = Mp4Writer::new(
//!     std::io::BufWriter::new(file),
//!     512,
//!     512,
//!     &VideoOptions::default(),
//!     Some(AudioTrack::mono(speech, 16_000)),
//! )?;
//! for _ in 0..50 {
//!     writer.push_frame(&vec![128u8; 512 * 512 * 3])?;
//! }
//! let summary = writer.finish()?;
//! assert_eq!(summary.frames, 50);
//! # Ok(()) }
//! ```

mod aac;
mod h264;
mod writer;

pub use writer::{AudioTrack, Mp4Writer, VideoOptions, VideoQuality, VideoSummary};

use crate::MediaError;

/// The longest side the H.264 encoder takes (OpenH264 at level 5.1: 3840x2160 or 2160x3840).
pub const MAX_LONG_SIDE: u32 = 3840;
/// The shortest side's limit at the longest side (see [`MAX_LONG_SIDE`]).
pub const MAX_SHORT_SIDE: u32 = 2160;

/// The size [`Mp4Writer`] encodes a `width` x `height` frame at (each side rounded down to an
/// even number, as 4:2:0 chroma needs), or why it cannot: callers check this before any
/// compute, so a job that could never be written is refused before it renders.
///
/// # Errors
/// [`MediaError::VideoSize`] for a side under 2 pixels or a size over
/// [`MAX_LONG_SIDE`] x [`MAX_SHORT_SIDE`] (either orientation).
pub fn check_frame_size(width: u32, height: u32) -> Result<(u32, u32), MediaError> {
    let (even_w, even_h) = (width & !1, height & !1);
    let refuse = |reason: String| MediaError::VideoSize {
        width,
        height,
        reason,
    };
    if even_w == 0 || even_h == 0 {
        return Err(refuse(
            "H.264 frames are at least 2x2 pixels (each side is rounded down to an even number)"
                .into(),
        ));
    }
    let (long, short) = (even_w.max(even_h), even_w.min(even_h));
    if long > MAX_LONG_SIDE || short > MAX_SHORT_SIDE {
        return Err(refuse(format!(
            "the H.264 encoder takes at most {MAX_LONG_SIDE}x{MAX_SHORT_SIDE} \
             ({MAX_SHORT_SIDE}x{MAX_LONG_SIDE} upright)"
        )));
    }
    Ok((even_w, even_h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_are_checked_against_the_encoder() {
        assert_eq!(check_frame_size(64, 64).unwrap(), (64, 64));
        assert_eq!(check_frame_size(65, 3).unwrap(), (64, 2));
        assert_eq!(check_frame_size(3840, 2160).unwrap(), (3840, 2160));
        assert_eq!(check_frame_size(2160, 3840).unwrap(), (2160, 3840));
        for (w, h) in [
            (1, 1),
            (1, 64),
            (64, 0),
            (4032, 3024),
            (3840, 2162),
            (2200, 2200),
        ] {
            let err = check_frame_size(w, h).unwrap_err();
            assert!(
                matches!(err, MediaError::VideoSize { width, height, .. } if (width, height) == (w, h)),
                "{w}x{h}: {err:?}"
            );
            assert!(err.to_string().contains(&format!("{w}x{h}")), "{err}");
        }
    }
}
