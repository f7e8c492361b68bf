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
