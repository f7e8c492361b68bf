//! Audio in: decode, mix to mono, resample to 16 kHz, Whisper log-mel, and the frame timeline.
//!
//! ```no_run
//! use sonic_media::audio::{AudioTimeline, LogMelExtractor, TimelineOptions, load_speech};
//! # fn main() -> Result<(), sonic_media::MediaError> {
//! let bytes = std::fs::read("speech.m4a").unwrap();
//! let waveform = load_speech(&bytes, "speech.m4a")?; // 16 kHz mono
//! let timeline = AudioTimeline::new(waveform.len(), &TimelineOptions::default())?;
//! let features = LogMelExtractor::whisper().extract(&timeline.model_waveform(&waveform));
//! assert_eq!(features.n_mels, 80);
//! # Ok(()) }
//! ```

mod decode;
mod mel;
mod mp4_edit;
mod resample;
mod timeline;

pub use decode::{AudioHeader, DecodedAudio, decode_audio, decode_audio_with, probe_audio};
pub use mel::{LogMel, LogMelConfig, LogMelExtractor};
pub use resample::{SAMPLE_RATE, load_speech, resample};
pub use timeline::{
    AudioTimeline, DEFAULT_STEP_CAP, SAMPLES_PER_STEP, TOKENS_PER_FRAME, TimelineOptions,
};
