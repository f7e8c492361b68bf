//! The media edges: what goes into the model and what comes out, with no external tool.
//!
//! - [`audio`]: WAV, MP3, FLAC, AAC/M4A and Ogg Vorbis decoding (symphonia), mono mix,
//!   resampling to 16 kHz (rubato), Whisper's log-mel features (realfft) and the frame
//!   timeline (frame counts, duration cap, lip-sync offset).
//! - [`image`]: PNG, JPEG and WebP decoding with EXIF orientation, Sonic's square crop,
//!   PIL-exact Lanczos resizing, the reference image, face mask and CLIP input tensors.
//! - [`face`]: the [`FaceDetector`](face::FaceDetector) trait and its default SeetaFace
//!   implementation (rustface, model bundled).
//! - [`video`]: a streaming MP4 writer, H.264 (OpenH264) + AAC (FDK AAC), muxed with muxide
//!   with the index in front (fast start).
//!
//! Everything works on bytes in memory or on any [`std::io::Write`], so inputs and outputs can
//! live in object storage. Nothing here spawns a process.

pub mod audio;
mod error;
pub mod face;
pub mod image;
pub mod limits;
pub mod video;

pub use error::MediaError;
pub use limits::{AudioLimits, ImageLimits, LongAudio, PictureLimit};
